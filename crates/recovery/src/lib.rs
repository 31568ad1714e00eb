//! Disaster recovery of vsigner vault keys, in io.finnet's published `.dr` format.
//!
//! Every device can write, for each generation of shares it stores, a `.dr` file encrypted to
//! an operator's post-quantum key (ML-KEM-768 + AES-256-GCM); with the files of a threshold
//! of devices and the private key, the vault's key is rebuilt offline.
//!
//! - [`key`]: the operator's ML-KEM-768 key pair in OpenSSL's PEM forms.
//! - [`envelope`]: the `.dr` file: its clear JSON fields and the encrypted shares.
//! - [`plaintext`]: the decrypted shares, in tss-lib's JSON with decimal integers.
//! - [`reconstruct`]: Lagrange interpolation at zero, checked against the public key.
//! - [`wallet`]: what wallets import, per scheme.
//!
//! See `docs/recovery.md`.

pub mod envelope;
pub mod key;
pub mod plaintext;
pub mod reconstruct;
pub mod wallet;

pub use envelope::{DrFile, DrHeader};
pub use key::{DrPrivateKey, DrPublicKey};
pub use plaintext::{Share, Shares};
pub use reconstruct::{affine_coordinates, reconstruct, VaultKey};

/// A vault's scheme as the files name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// ECDSA on secp256k1 (`"algo":"ECDSA","curve":"secp256k1"`).
    Secp256k1,
    /// ECDSA on P-256 (`"algo":"ECDSA","curve":"secp256r1"`; vsigner's).
    Secp256r1,
    /// EdDSA on ed25519 (`"algo":"EDDSA","curve":"ed25519"`).
    Ed25519,
    /// BIP-340 Schnorr on secp256k1 (`"algo":"SCHNORR","curve":"secp256k1"`; vsigner's).
    Bip340,
}

impl Curve {
    /// From a file's `algo` and `curve`.
    pub fn from_envelope(algo: &str, curve: &str) -> Result<Self, RecoveryError> {
        match (algo, curve) {
            ("ECDSA", "secp256k1") => Ok(Self::Secp256k1),
            ("ECDSA", "secp256r1") => Ok(Self::Secp256r1),
            ("EDDSA", "ed25519") => Ok(Self::Ed25519),
            ("SCHNORR", "secp256k1") => Ok(Self::Bip340),
            _ => Err(RecoveryError::Format(format!(
                "algo {algo:?} on curve {curve:?} is not a scheme this build knows"
            ))),
        }
    }

    /// The file's `algo`.
    pub fn algo(self) -> &'static str {
        match self {
            Self::Secp256k1 | Self::Secp256r1 => "ECDSA",
            Self::Ed25519 => "EDDSA",
            Self::Bip340 => "SCHNORR",
        }
    }

    /// The file's `curve`.
    pub fn envelope_name(self) -> &'static str {
        match self {
            Self::Secp256k1 | Self::Bip340 => "secp256k1",
            Self::Secp256r1 => "secp256r1",
            Self::Ed25519 => "ed25519",
        }
    }

    /// The curve's name inside the plaintext (Go's names).
    pub fn tss_name(self) -> &'static str {
        match self {
            Self::Secp256k1 | Self::Bip340 => "secp256k1",
            Self::Secp256r1 => "P-256",
            Self::Ed25519 => "ed25519",
        }
    }

    /// The file name of a vault's `.dr` file: `<vaultId>.<algo>.<curve>.dr`, lower case.
    pub fn file_name(self, vault_id: &str) -> String {
        format!(
            "{vault_id}.{}.{}.dr",
            self.algo().to_ascii_lowercase(),
            self.envelope_name()
        )
    }
}

/// Why a recovery step failed: one sentence naming what to fix. Never holds a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// A key file is not what it should be.
    #[error("{0}")]
    Key(String),
    /// A `.dr` file or its plaintext is malformed.
    #[error("{0}")]
    Format(String),
    /// The AES-GCM tag does not verify: another key, or a changed file.
    #[error("this file was not encrypted to this private key (or it was changed after it was written)")]
    WrongKey,
    /// Fewer shares than the threshold.
    #[error("{have} shares of the {need} needed: {} more", need - have)]
    NotEnoughShares {
        /// Shares given.
        have: usize,
        /// Shares needed.
        need: usize,
    },
    /// The interpolated key does not give the public key the files carry.
    #[error("the shares do not rebuild the vault's public key: they belong to different generations or vaults, or one was changed")]
    Mismatch,
    /// An encryption primitive failed.
    #[error("{0}")]
    Crypto(String),
}
