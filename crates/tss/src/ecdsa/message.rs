//! What an ECDSA signature is computed over.

use cggmp24::generic_ec::Curve;
use cggmp24::{DataToSign, PrehashedDataToSign};
use sha2::Digest;

/// Hash applied to a message whose bytes (preimage) the signers know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashAlgorithm {
    /// SHA-256 (Bitcoin, generic messages).
    Sha256,
    /// Keccak-256 (Ethereum transactions and messages).
    Keccak256,
}

/// A message whose bytes the signers know and hash themselves; the only kind a presignature
/// may sign (CGGMP24 forbids presignatures over raw hashes: see `PrehashedDataToSign`).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Preimage {
    /// The hash applied to `data`.
    pub hash: HashAlgorithm,
    /// The message bytes.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Preimage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preimage")
            .field("hash", &self.hash)
            .field("len", &self.data.len())
            .finish()
    }
}

impl Preimage {
    /// The 32-byte digest that is signed.
    pub fn digest(&self) -> [u8; 32] {
        match self.hash {
            HashAlgorithm::Sha256 => sha2::Sha256::digest(&self.data).into(),
            HashAlgorithm::Keccak256 => sha3::Keccak256::digest(&self.data).into(),
        }
    }

    pub(crate) fn data_to_sign<E: Curve>(&self) -> DataToSign<E> {
        match self.hash {
            HashAlgorithm::Sha256 => DataToSign::from_digest(sha2::Sha256::new().chain_update(&self.data)),
            HashAlgorithm::Keccak256 => {
                DataToSign::from_digest(sha3::Keccak256::new().chain_update(&self.data))
            }
        }
    }
}

/// What to sign.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Message {
    /// A 32-byte digest computed by the requester. Only the full protocol signs these.
    Digest([u8; 32]),
    /// Message bytes the signers hash themselves.
    Preimage(Preimage),
}

impl Message {
    /// The 32-byte digest that is signed.
    pub fn digest(&self) -> [u8; 32] {
        match self {
            Message::Digest(d) => *d,
            Message::Preimage(p) => p.digest(),
        }
    }

    pub(crate) fn scalar<E: Curve>(&self) -> cggmp24::generic_ec::Scalar<E> {
        match self {
            Message::Digest(d) => {
                PrehashedDataToSign::from_scalar(cggmp24::generic_ec::Scalar::from_be_bytes_mod_order(d))
                    .to_scalar()
            }
            Message::Preimage(p) => p.data_to_sign::<E>().to_scalar(),
        }
    }
}
