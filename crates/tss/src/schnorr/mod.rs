//! Threshold Schnorr by FROST (RFC 9591, ZF `frost-*` crates): EdDSA on ed25519 and BIP-340
//! (Taproot) on secp256k1.
//!
//! The `frost` crates give plain functions per protocol step; here they are driven as
//! `round_based` protocols over [`crate::WireMessage`]s, like the ECDSA protocols:
//! - [`keygen`]: FROST DKG (PedPoP) plus an **echo round** that makes the broadcast of
//!   round-1 commitments reliable: every party broadcasts a hash of all the round-1
//!   packages it received; a party whose echo differs is named and the run aborts, so no two
//!   honest parties can end with different group keys.
//! - [`sign`]: two broadcast rounds (nonce commitments, signature shares); every member
//!   aggregates, which checks each share and names the cheaters.

mod keygen;
mod reshare;
mod share;
mod signing;

pub use keygen::keygen;
pub use reshare::reshare;
pub use share::KeyShare;
pub use signing::{sign, sign_gated, Signature, TaprootTweak};

use cggmp24::generic_ec::{Point, Scalar};
use frost_core::keys::{KeyPackage, PublicKeyPackage};
use frost_core::{Ciphersuite, Identifier, VerifyingKey};

use crate::hd::DerivationPath;
use crate::{Error, PartyIndex};

/// EdDSA on ed25519 (RFC 8032 signatures).
pub type Ed25519 = frost_ed25519::Ed25519Sha512;
/// BIP-340 Schnorr on secp256k1, with optional BIP-341 Taproot tweak.
pub type Bip340 = frost_secp256k1_tr::Secp256K1Sha256TR;

/// The Schnorr schemes vsigner supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemeKind {
    /// EdDSA on ed25519.
    Ed25519,
    /// BIP-340 Schnorr on secp256k1.
    Bip340,
}

impl SchemeKind {
    /// Lower-case name used in configs, JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemeKind::Ed25519 => "ed25519",
            SchemeKind::Bip340 => "bip340",
        }
    }
}

/// A FROST ciphersuite usable here.
pub trait SchnorrScheme: Ciphersuite + Sized + 'static {
    /// Which scheme this is.
    const KIND: SchemeKind;
    /// The same curve in `generic_ec`, for resharing.
    type Curve: cggmp24::generic_ec::Curve;
    /// Whether the ciphersuite encodes scalars little endian (ed25519) or big endian.
    const SCALARS_LITTLE_ENDIAN: bool;

    /// Applies a Taproot tweak to the key material (BIP-340 only).
    fn tweak(
        key_package: KeyPackage<Self>,
        public_key_package: PublicKeyPackage<Self>,
        taproot: Option<&TaprootTweak>,
    ) -> Result<(KeyPackage<Self>, PublicKeyPackage<Self>), Error>;

    /// The public key in the scheme's usual encoding (ed25519: 32 bytes; BIP-340: 32-byte
    /// x-only key).
    fn public_key_bytes(key: &VerifyingKey<Self>) -> Result<Vec<u8>, Error>;

    /// The group key as a point, from [`SchnorrScheme::public_key_bytes`] (for resharing a
    /// key known by its usual encoding).
    fn public_key_point(bytes: &[u8]) -> Result<Point<Self::Curve>, Error>;

    /// Whether the scheme's keys have non-hardened child keys (a chain code made at keygen).
    const CHILD_KEYS: bool;

    /// The additive shift of the non-hardened child at `path` of `public_key` with
    /// `chain_code`: the child key is `public_key + shift·G`.
    fn child_shift(
        public_key: &Point<Self::Curve>,
        chain_code: &[u8; 32],
        path: &DerivationPath,
    ) -> Result<Scalar<Self::Curve>, Error>;

    /// Puts a fresh DKG's key material in the scheme's canonical form (BIP-340: the group
    /// key with an even y, so that its x-only encoding names exactly one point; every
    /// share is negated with it).
    fn normalize(
        key_package: KeyPackage<Self>,
        public_key_package: PublicKeyPackage<Self>,
    ) -> (KeyPackage<Self>, PublicKeyPackage<Self>);
}

impl SchnorrScheme for Ed25519 {
    const KIND: SchemeKind = SchemeKind::Ed25519;
    const CHILD_KEYS: bool = true;

    /// `hd-wallet`'s `Edwards` derivation, step by step along the path (the derivation
    /// `cggmp21`'s authors ship for EdDSA; see `docs/schemes.md` for which wallets agree).
    fn child_shift(
        public_key: &Point<Self::Curve>,
        chain_code: &[u8; 32],
        path: &DerivationPath,
    ) -> Result<Scalar<Self::Curve>, Error> {
        use hd_wallet::DeriveShift;
        let mut parent = hd_wallet::ExtendedPublicKey {
            public_key: *public_key,
            chain_code: *chain_code,
        };
        let mut shift = Scalar::zero();
        for index in path.indices() {
            let index = hd_wallet::NonHardenedIndex::try_from(*index)
                .map_err(|_| Error::invalid_args(format!("derivation index {index} is hardened")))?;
            let step = hd_wallet::Edwards::derive_public_shift(&parent, index);
            shift += step.shift;
            parent = step.child_public_key;
        }
        Ok(shift)
    }
    type Curve = cggmp24::generic_ec::curves::Ed25519;
    const SCALARS_LITTLE_ENDIAN: bool = true;

    fn tweak(
        key_package: KeyPackage<Self>,
        public_key_package: PublicKeyPackage<Self>,
        taproot: Option<&TaprootTweak>,
    ) -> Result<(KeyPackage<Self>, PublicKeyPackage<Self>), Error> {
        match taproot {
            None => Ok((key_package, public_key_package)),
            Some(_) => Err(Error::invalid_args(
                "a Taproot tweak applies to BIP-340 keys only",
            )),
        }
    }

    fn public_key_bytes(key: &VerifyingKey<Self>) -> Result<Vec<u8>, Error> {
        key.serialize()
            .map_err(|e| Error::InvalidKeyMaterial(e.to_string()))
    }

    fn public_key_point(bytes: &[u8]) -> Result<Point<Self::Curve>, Error> {
        Point::from_bytes(bytes).map_err(|_| Error::InvalidKeyMaterial("not an ed25519 point".into()))
    }

    fn normalize(
        key_package: KeyPackage<Self>,
        public_key_package: PublicKeyPackage<Self>,
    ) -> (KeyPackage<Self>, PublicKeyPackage<Self>) {
        (key_package, public_key_package)
    }
}

impl SchnorrScheme for Bip340 {
    const KIND: SchemeKind = SchemeKind::Bip340;
    const CHILD_KEYS: bool = false;

    fn child_shift(
        _: &Point<Self::Curve>,
        _: &[u8; 32],
        _: &DerivationPath,
    ) -> Result<Scalar<Self::Curve>, Error> {
        Err(Error::invalid_args(
            "BIP-340 keys have no child keys (sign for the key or its Taproot output key)",
        ))
    }
    type Curve = cggmp24::generic_ec::curves::Secp256k1;
    const SCALARS_LITTLE_ENDIAN: bool = false;

    fn tweak(
        key_package: KeyPackage<Self>,
        public_key_package: PublicKeyPackage<Self>,
        taproot: Option<&TaprootTweak>,
    ) -> Result<(KeyPackage<Self>, PublicKeyPackage<Self>), Error> {
        use frost_secp256k1_tr::keys::Tweak;
        match taproot {
            None => Ok((key_package, public_key_package)),
            Some(t) => {
                let root = t.merkle_root.as_ref().map(|r| r.as_slice());
                Ok((key_package.tweak(root), public_key_package.tweak(root)))
            }
        }
    }

    fn public_key_bytes(key: &VerifyingKey<Self>) -> Result<Vec<u8>, Error> {
        let sec1 = key
            .serialize()
            .map_err(|e| Error::InvalidKeyMaterial(e.to_string()))?;
        // 33-byte compressed SEC1; BIP-340 keys are the x coordinate (y is even after
        // `normalize`, and a reshare keeps the key).
        sec1.get(1..)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::InvalidKeyMaterial("short verifying key".into()))
    }

    fn public_key_point(bytes: &[u8]) -> Result<Point<Self::Curve>, Error> {
        let x: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::InvalidKeyMaterial("a BIP-340 key is 32 bytes".into()))?;
        let mut sec1 = [0x02; 33];
        sec1[1..].copy_from_slice(&x);
        Point::from_bytes(sec1).map_err(|_| Error::InvalidKeyMaterial("not a BIP-340 key".into()))
    }

    fn normalize(
        key_package: KeyPackage<Self>,
        public_key_package: PublicKeyPackage<Self>,
    ) -> (KeyPackage<Self>, PublicKeyPackage<Self>) {
        use frost_secp256k1_tr::keys::EvenY;
        (
            key_package.into_even_y(None),
            public_key_package.into_even_y(None),
        )
    }
}

/// FROST identifier of party `i` (identifiers start at 1).
pub(crate) fn identifier<C: Ciphersuite>(i: PartyIndex) -> Result<Identifier<C>, Error> {
    Identifier::try_from(i.saturating_add(1))
        .map_err(|e| Error::invalid_args(format!("party index {i}: {e}")))
}

/// Maps FROST culprit identifiers back to party indices of a run whose party `j` has
/// identifier `ids[j]`.
pub(crate) fn culprits_of<C: Ciphersuite>(err: &frost_core::Error<C>, ids: &[Identifier<C>]) -> Error {
    let culprits: Vec<PartyIndex> = err
        .culprits()
        .iter()
        .filter_map(|c| ids.iter().position(|id| id == c).map(|p| p as PartyIndex))
        .collect();
    if culprits.is_empty() {
        Error::Protocol(err.to_string())
    } else {
        Error::Aborted {
            culprits,
            reason: err.to_string(),
        }
    }
}
