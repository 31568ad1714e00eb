//! ECDSA key material: the core share from keygen, the per-device-set aux-info, and the
//! complete key share that signs.
//!
//! # Security
//! - [`CoreShare`] and [`KeyShare`] hold the secret share `x_i` in a `SecretScalar`, which
//!   zeroizes on drop; [`AuxInfo`] holds the Paillier primes `p, q`.
//! - `Debug` shows only public facts (index, threshold, public key); never a secret.
//! - Serialization ([`CoreShare::to_bytes`] etc.) returns [`zeroize::Zeroizing`] buffers and
//!   uses the versioned format of [`crate::share`].

use cggmp24::generic_ec::{Curve, NonZero, Point};
use cggmp24::hd_wallet::{ExtendedPublicKey, Slip10};
use cggmp24::key_share::{DirtyAuxInfo, Validate};
use zeroize::Zeroizing;

use super::{EcdsaCurve, SecurityLevel};
use crate::hd::DerivationPath;
use crate::share::{self, Kind};
use crate::Error;

/// A device's share of an ECDSA key as output by [`super::keygen`], before aux-info is attached.
pub struct CoreShare<E: Curve>(pub(crate) cggmp24::IncompleteKeyShare<E>);

/// Aux-info of one device in one device set: its Paillier secret key and everyone's public
/// Paillier keys and ring-Pedersen parameters. Curve-independent; reused across vaults of the
/// same ordered device set.
#[derive(Clone)]
pub struct AuxInfo(pub(crate) cggmp24::key_share::AuxInfo<SecurityLevel>);

/// A complete ECDSA key share: a [`CoreShare`] and the matching [`AuxInfo`].
#[derive(Clone)]
pub struct KeyShare<E: Curve>(pub(crate) cggmp24::KeyShare<E, SecurityLevel>);

fn compressed<E: Curve>(p: &Point<E>) -> Vec<u8> {
    p.to_bytes(true).as_bytes().to_vec()
}

macro_rules! public_key_info {
    ($ty:ident, $inner:expr) => {
        impl<E: EcdsaCurve> $ty<E> {
            /// This device's index among the key's holders (`0..n`).
            pub fn index(&self) -> u16 {
                $inner(self).i
            }
            /// Number of holders.
            pub fn n(&self) -> u16 {
                $inner(self).key_info.public_shares.len() as u16
            }
            /// Signers needed.
            pub fn threshold(&self) -> u16 {
                $inner(self)
                    .key_info
                    .vss_setup
                    .as_ref()
                    .map_or(self.n(), |v| v.min_signers)
            }
            /// The shared public key.
            pub fn public_key(&self) -> Point<E> {
                *$inner(self).key_info.shared_public_key
            }
            /// The shared public key, SEC1 compressed.
            pub fn public_key_bytes(&self) -> Vec<u8> {
                compressed(&self.public_key())
            }
            /// The HD chain code, if the key was generated with HD support.
            pub fn chain_code(&self) -> Option<[u8; 32]> {
                $inner(self).key_info.chain_code
            }
            /// The public key derived at a non-hardened BIP-32 path (SLIP-10 compatible).
            pub fn derive_public_key(&self, path: &DerivationPath) -> Result<Point<E>, Error>
            where
                Slip10: cggmp24::hd_wallet::HdWallet<E>,
            {
                let epub: ExtendedPublicKey<E> = $inner(self)
                    .derive_child_public_key::<Slip10, _>(path.indices().iter().copied())
                    .map_err(|e| Error::InvalidKeyMaterial(format!("cannot derive child key: {e}")))?;
                Ok(epub.public_key)
            }
        }

        impl<E: EcdsaCurve> std::fmt::Debug for $ty<E> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("curve", &E::KIND)
                    .field("index", &self.index())
                    .field("threshold", &self.threshold())
                    .field("n", &self.n())
                    .field("public_key", &hex::encode(self.public_key_bytes()))
                    .field("secret", &"<redacted>")
                    .finish()
            }
        }
    };
}

fn core_of<E: Curve>(s: &CoreShare<E>) -> &cggmp24::key_share::DirtyIncompleteKeyShare<E> {
    &s.0
}
fn core_of_full<E: Curve>(s: &KeyShare<E>) -> &cggmp24::key_share::DirtyIncompleteKeyShare<E> {
    &s.0.core
}

public_key_info!(CoreShare, core_of);
public_key_info!(KeyShare, core_of_full);

impl<E: EcdsaCurve> CoreShare<E> {
    /// Serializes in the versioned share format.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        share::encode(Kind::ecdsa_core::<E>(), &*self.0)
    }

    /// Parses and validates bytes made by [`CoreShare::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let dirty: cggmp24::key_share::DirtyIncompleteKeyShare<E> =
            share::decode(Kind::ecdsa_core::<E>(), bytes)?;
        let valid = dirty
            .validate()
            .map_err(|e| Error::InvalidKeyMaterial(format!("core share: {}", e.into_error())))?;
        Ok(CoreShare(valid))
    }

    /// The public share of party `j` (`X_j = x_j·G`).
    pub fn public_share(&self, j: u16) -> Option<NonZero<Point<E>>> {
        self.0.key_info.public_shares.get(usize::from(j)).copied()
    }
}

impl AuxInfo {
    /// This device's index in the device set the aux-info was generated for.
    pub fn index(&self) -> u16 {
        // Our own modulus is N[i]; the index is recovered from p·q.
        let n_own = self.0.p.clone() * &self.0.q;
        self.0.N.iter().position(|n| *n == n_own).unwrap_or(usize::MAX) as u16
    }

    /// Number of devices in the set.
    pub fn n(&self) -> u16 {
        self.0.N.len() as u16
    }

    /// Whether multi-exponentiation tables (faster signing, larger size) are present.
    pub fn has_multiexp_tables(&self) -> bool {
        self.0.pedersen_params.iter().all(|p| p.multiexp.is_some())
    }

    /// Serializes in the versioned share format (without multiexp tables, which are derived
    /// data: recompute them with [`AuxInfo::precompute_multiexp_tables`] after loading).
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut dirty: DirtyAuxInfo<SecurityLevel> = (*self.0).clone();
        for p in &mut dirty.pedersen_params {
            p.multiexp = None;
            p.crt = None;
        }
        share::encode(Kind::EcdsaAuxInfo, &dirty)
    }

    /// Parses and validates bytes made by [`AuxInfo::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        vsigner_memory::wipe_gmp_on_free();
        let dirty: DirtyAuxInfo<SecurityLevel> = share::decode(Kind::EcdsaAuxInfo, bytes)?;
        let valid = dirty
            .validate()
            .map_err(|e| Error::InvalidKeyMaterial(format!("aux-info: {}", e.into_error())))?;
        Ok(AuxInfo(valid))
    }

    /// Precomputes multi-exponentiation tables (~25 % faster signing; seconds per party).
    pub fn precompute_multiexp_tables(self) -> Result<Self, Error> {
        let mut dirty = self.0.into_inner();
        dirty
            .precompute_multiexp_tables()
            .map_err(|e| Error::InvalidKeyMaterial(format!("multiexp tables: {e}")))?;
        let valid = dirty
            .validate()
            .map_err(|e| Error::InvalidKeyMaterial(format!("aux-info: {}", e.into_error())))?;
        Ok(AuxInfo(valid))
    }
}

impl std::fmt::Debug for AuxInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuxInfo")
            .field("index", &self.index())
            .field("n", &self.n())
            .field("multiexp_tables", &self.has_multiexp_tables())
            .field("paillier_secret", &"<redacted>")
            .finish()
    }
}

impl<E: EcdsaCurve> KeyShare<E> {
    /// Joins a core share with the aux-info of the same device set and index.
    pub fn from_parts(core: CoreShare<E>, aux: AuxInfo) -> Result<Self, Error> {
        if core.index() != aux.index() || core.n() != aux.n() {
            return Err(Error::InvalidKeyMaterial(format!(
                "aux-info is for party {} of {}, the key share for party {} of {}",
                aux.index(),
                aux.n(),
                core.index(),
                core.n()
            )));
        }
        cggmp24::KeyShare::from_parts((core.0, aux.0))
            .map(KeyShare)
            .map_err(|e| Error::InvalidKeyMaterial(format!("key share: {}", e.into_error())))
    }

    /// The core share (without aux-info).
    pub fn core(&self) -> Result<CoreShare<E>, Error> {
        self.0
            .core
            .clone()
            .validate()
            .map(CoreShare)
            .map_err(|e| Error::InvalidKeyMaterial(format!("core share: {}", e.into_error())))
    }

    pub(crate) fn inner(&self) -> &cggmp24::KeyShare<E, SecurityLevel> {
        &self.0
    }
}
