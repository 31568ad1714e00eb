//! Vault keys of every scheme: the form each is stored in, non-hardened child keys, and
//! BIP-340 vaults' Taproot output keys and addresses.
//!
//! - secp256k1 and P-256 (ECDSA): SEC1 compressed points; children by BIP-32/SLIP-10
//!   public derivation (`hd-wallet`'s `Slip10`, the crate and version the signing engine
//!   uses through `cggmp24`).
//! - ed25519: the 32-byte RFC 8032 encoding; children by `hd-wallet`'s `Edwards`
//!   derivation (the shift the devices add to their shares, see `docs/schemes.md`).
//! - bip340: the 32-byte x-only key (its point has an even y); the Taproot output key of
//!   BIP-341's key path, `Q = P + int(hash_TapTweak(x(P) ‖ merkle_root))·G`, and its
//!   bech32m address (witness version 1). No child keys.

use generic_ec::{curves, Point};
use hd_wallet::{Edwards, HdWallet, NonHardenedIndex, Slip10};
use k256::elliptic_curve::ff::PrimeField;
use k256::elliptic_curve::point::AffineCoordinates;
use k256::elliptic_curve::Group;
use sha2::{Digest, Sha256};

use crate::domain::Curve;
use crate::error::{Error, ErrorCode, Result};

/// A public key on an ECDSA curve in SEC1 compressed form (33 bytes); accepts compressed
/// or uncompressed input and checks that it is a point of the curve other than the
/// identity.
pub fn normalize_sec1_public_key(curve: Curve, bytes: &[u8]) -> Result<Vec<u8>> {
    fn normalize<E: generic_ec::Curve>(name: &str, bytes: &[u8]) -> Result<Vec<u8>> {
        let point = Point::<E>::from_bytes(bytes)
            .map_err(|_| Error::invalid_input(format!("publicKey is not a valid {name} point (SEC1 hex)")))?;
        if point.is_zero() {
            return Err(Error::invalid_input("publicKey is the identity point"));
        }
        Ok(point.to_bytes(true).to_vec())
    }
    match curve {
        Curve::Secp256k1 => normalize::<curves::Secp256k1>(curve.as_str(), bytes),
        Curve::Secp256r1 => normalize::<curves::Secp256r1>(curve.as_str(), bytes),
        Curve::Ed25519 | Curve::Bip340 => Err(Error::internal(
            "public key",
            format!("{} keys are not SEC1 points", curve.as_str()),
        )),
    }
}

/// Checks an Ed25519 vault public key (32 bytes, valid point).
pub fn check_ed25519_public_key(bytes: &[u8]) -> Result<Vec<u8>> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| Error::invalid_input("publicKey must be 32 bytes for ed25519"))?;
    ed25519_dalek::VerifyingKey::from_bytes(&arr)
        .map_err(|_| Error::invalid_input("publicKey is not a valid Ed25519 point"))?;
    Ok(arr.to_vec())
}

/// Checks a BIP-340 vault public key: 32 bytes, the x coordinate of a secp256k1 point.
pub fn check_bip340_public_key(bytes: &[u8]) -> Result<Vec<u8>> {
    k256::schnorr::VerifyingKey::from_bytes(bytes)
        .map_err(|_| Error::invalid_input("publicKey is not a valid BIP-340 x-only key (32 bytes hex)"))?;
    Ok(bytes.to_vec())
}

/// The non-hardened child at `path` of a vault key (in the vault's stored form), with the
/// vault's chain code. The root (`path` empty) is the key itself.
pub fn derive_child(curve: Curve, public_key: &[u8], chain_code: &[u8; 32], path: &[u32]) -> Result<Vec<u8>> {
    fn derive<E: generic_ec::Curve, H: HdWallet<E>>(
        public_key: &[u8],
        chain_code: &[u8; 32],
        indexes: Vec<NonHardenedIndex>,
    ) -> Result<Point<E>> {
        let point = Point::<E>::from_bytes(public_key)
            .map_err(|_| Error::internal("derive", "the stored vault key is not a point of its curve"))?;
        let parent = hd_wallet::ExtendedPublicKey::<E> {
            public_key: point,
            chain_code: *chain_code,
        };
        Ok(H::derive_child_public_key_with_path(&parent, indexes).public_key)
    }
    let indexes = path
        .iter()
        .map(|i| NonHardenedIndex::try_from(*i))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error::new(ErrorCode::InvalidDerivationPath, "derivation index is hardened"))?;
    Ok(match curve {
        Curve::Secp256k1 => derive::<curves::Secp256k1, Slip10>(public_key, chain_code, indexes)?
            .to_bytes(true)
            .to_vec(),
        Curve::Secp256r1 => derive::<curves::Secp256r1, Slip10>(public_key, chain_code, indexes)?
            .to_bytes(true)
            .to_vec(),
        Curve::Ed25519 => derive::<curves::Ed25519, Edwards>(public_key, chain_code, indexes)?
            .to_bytes(true)
            .to_vec(),
        Curve::Bip340 => {
            return Err(Error::new(
                ErrorCode::InvalidDerivationPath,
                "bip340 vaults have no child keys (sign for the vault key or its Taproot output key)",
            ))
        }
    })
}

/// The Bitcoin network a Taproot address is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaprootNetwork {
    /// `bc1p…`.
    Mainnet,
    /// `tb1p…` (testnet and signet).
    Testnet,
    /// `bcrt1p…`.
    Regtest,
}

/// BIP-341's key-path output key: `x(P + int(hash_TapTweak(x(P) ‖ merkle_root))·G)` for the
/// x-only key `P` (`merkle_root` `None` for an output without a script tree).
pub fn taproot_output_key(internal_key: &[u8], merkle_root: Option<&[u8; 32]>) -> Result<[u8; 32]> {
    let p = k256::schnorr::VerifyingKey::from_bytes(internal_key)
        .map_err(|_| Error::invalid_input("the Taproot internal key is not a valid x-only key"))?;
    let tag = Sha256::digest(b"TapTweak");
    let mut h = Sha256::new();
    h.update(tag);
    h.update(tag);
    h.update(internal_key);
    if let Some(root) = merkle_root {
        h.update(root);
    }
    let t = Option::<k256::Scalar>::from(k256::Scalar::from_repr(h.finalize()))
        .ok_or_else(|| Error::invalid_input("the Taproot tweak is not below the group order"))?;
    let q = k256::ProjectivePoint::from(*p.as_affine()) + k256::ProjectivePoint::GENERATOR * t;
    if bool::from(q.is_identity()) {
        return Err(Error::invalid_input("the Taproot output key is the identity"));
    }
    Ok(q.to_affine().x().into())
}

/// The bech32m address (witness version 1) of a Taproot output key.
pub fn taproot_address(output_key: &[u8; 32], network: TaprootNetwork) -> Result<String> {
    let hrp = match network {
        TaprootNetwork::Mainnet => bech32::hrp::BC,
        TaprootNetwork::Testnet => bech32::hrp::TB,
        TaprootNetwork::Regtest => bech32::hrp::BCRT,
    };
    bech32::segwit::encode(hrp, bech32::segwit::VERSION_1, output_key)
        .map_err(|e| Error::internal("taproot address", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BIP-86's first test vector (`m/86'/0'/0'/0/0` of the "abandon … about" mnemonic):
    /// internal key, output key and mainnet address, for an output without a script tree.
    #[test]
    fn taproot_output_key_and_address_match_bip86() {
        let internal =
            hex::decode("cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115").unwrap();
        let q = taproot_output_key(&internal, None).unwrap();
        assert_eq!(
            hex::encode(q),
            "a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c"
        );
        assert_eq!(
            taproot_address(&q, TaprootNetwork::Mainnet).unwrap(),
            "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"
        );
        assert!(taproot_address(&q, TaprootNetwork::Regtest)
            .unwrap()
            .starts_with("bcrt1p"));
        // A script tree changes the key.
        assert_ne!(taproot_output_key(&internal, Some(&[7; 32])).unwrap(), q);
    }

    #[test]
    fn child_keys_of_every_scheme_that_has_them() {
        let cc = [1u8; 32];
        let k1 = Point::<curves::Secp256k1>::generator()
            .to_point()
            .to_bytes(true)
            .to_vec();
        let r1 = Point::<curves::Secp256r1>::generator()
            .to_point()
            .to_bytes(true)
            .to_vec();
        let ed = Point::<curves::Ed25519>::generator()
            .to_point()
            .to_bytes(true)
            .to_vec();
        for (curve, key) in [
            (Curve::Secp256k1, k1),
            (Curve::Secp256r1, r1),
            (Curve::Ed25519, ed),
        ] {
            let child = derive_child(curve, &key, &cc, &[0, 1]).unwrap();
            assert_ne!(child, key, "{curve:?}");
            assert_eq!(child.len(), key.len(), "{curve:?}");
            assert_eq!(derive_child(curve, &key, &cc, &[]).unwrap(), key, "{curve:?}");
        }
        assert_eq!(
            derive_child(Curve::Bip340, &[2; 32], &cc, &[0])
                .unwrap_err()
                .code(),
            ErrorCode::InvalidDerivationPath
        );
    }
}
