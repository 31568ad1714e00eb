//! Threshold ECDSA by CGGMP24 (`cggmp24`), on secp256k1 and P-256.
//!
//! The life of an ECDSA vault:
//! 1. [`generate_aux_info`] once per device set (Paillier keys and ring-Pedersen parameters,
//!    from a [`crate::primes::PrimeSet`] per device); reusable for every vault of that set.
//! 2. [`keygen`]: threshold DKG with HD enabled, giving each device a [`CoreShare`].
//! 3. [`KeyShare::from_parts`] joins the core share with the set's [`AuxInfo`].
//! 4. [`sign`] (full protocol, any [`Message`], optional derivation path), or
//!    [`presign`] ahead of time then [`Presignature::issue_partial`] and [`combine`]
//!    (or the one-round [`sign_with_presignature`]) once the message is known.
//!
//! Every function takes a party of [`crate::WireMessage`]s and checks incoming messages as
//! described in [`crate::wire`].

mod aux_info;
mod keygen;
mod message;
mod presign;
mod reshare;
mod share;
mod signing;

pub use aux_info::{agree_on_reuse, generate_aux_info, AuxInfoOptions};
pub use keygen::keygen;
pub use message::{HashAlgorithm, Message, Preimage};
pub use presign::{combine, presign, sign_with_presignature, PartialSignature, Presignature};
pub use reshare::{reshare, Reshared};
pub use share::{AuxInfo, CoreShare, KeyShare};
pub use signing::{sign, Signature};

/// The bounds [`sign`] puts on its curve (BIP-32/SLIP-10 child keys, `x` of `R`), for
/// callers generic over [`EcdsaCurve`].
pub use cggmp24::generic_ec::coords::AlwaysHasAffineX;
pub use cggmp24::generic_ec::NonZero;
pub use cggmp24::hd_wallet::{HdWallet, Slip10};
pub use cggmp24::supported_curves::{Secp256k1, Secp256r1};

use cggmp24::generic_ec::Curve;

/// Security level of the Paillier keys (128-bit, 1536-bit safe primes, 3072-bit moduli).
pub type SecurityLevel = cggmp24::security_level::SecurityLevel128;
/// Hash used inside the CGGMP24 protocols.
pub type ProtocolDigest = sha2::Sha256;

/// The ECDSA curves vsigner supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CurveKind {
    /// secp256k1 (Bitcoin, Ethereum).
    Secp256k1,
    /// NIST P-256 (secp256r1).
    P256,
}

impl CurveKind {
    /// Lower-case name used in configs, JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CurveKind::Secp256k1 => "secp256k1",
            CurveKind::P256 => "p256",
        }
    }
}

/// A curve usable for threshold ECDSA here.
pub trait EcdsaCurve: Curve + cggmp24::generic_ec::core::coords::HasAffineX {
    /// Which curve this is.
    const KIND: CurveKind;
}

impl EcdsaCurve for Secp256k1 {
    const KIND: CurveKind = CurveKind::Secp256k1;
}

impl EcdsaCurve for Secp256r1 {
    const KIND: CurveKind = CurveKind::P256;
}

/// Checks `threshold`/`n`/index arguments shared by keygen and signing.
pub(crate) fn check_threshold(t: u16, n: u16) -> Result<(), crate::Error> {
    if t < 2 || t > n {
        return Err(crate::Error::invalid_args(format!(
            "threshold must be between 2 and the number of devices ({n}), got {t}"
        )));
    }
    Ok(())
}

pub(crate) fn check_index(i: u16, n: u16) -> Result<(), crate::Error> {
    if i >= n {
        return Err(crate::Error::invalid_args(format!(
            "party index {i} is not below {n}"
        )));
    }
    Ok(())
}
