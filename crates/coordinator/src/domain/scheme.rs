//! What a vault's curve decides, in one place: the form of its public key, whether it has
//! a BIP-32 chain code, how a signature reported for it is verified, and whether it has
//! presignatures. A new curve is one more arm in each function here.

use super::{Curve, Vault};
use crate::crypto;
use crate::error::{Error, ErrorCode, Result};

impl Curve {
    /// The vault key as stored, from the bytes a device reported (SEC1 compressed for
    /// secp256k1, 32 bytes for ed25519); refuses anything that is not a valid point.
    pub fn public_key(self, raw: &[u8]) -> Result<Vec<u8>> {
        match self {
            Curve::Secp256k1 => crypto::normalize_secp256k1_public_key(raw),
            Curve::Ed25519 => crypto::check_ed25519_public_key(raw),
        }
    }

    /// The chain code a keygen result must carry (hex, normalised): required for
    /// secp256k1 (BIP-32 derivation), refused for ed25519.
    pub fn chain_code(self, reported: Option<&str>) -> Result<Option<String>> {
        match (self, reported) {
            (Curve::Secp256k1, Some(cc)) => Ok(Some(hex::encode(crypto::decode_hex_array::<32>(
                "chainCode",
                cc,
                ErrorCode::InvalidInput,
            )?))),
            (Curve::Secp256k1, None) => Err(Error::invalid_input(
                "chainCode (32 bytes hex) is required for secp256k1",
            )),
            (Curve::Ed25519, Some(_)) => Err(Error::invalid_input("chainCode is not used for ed25519")),
            (Curve::Ed25519, None) => Ok(None),
        }
    }

    /// The recovery id a signature must carry: 0 or 1 on secp256k1, none on ed25519.
    /// Malformed input is an error (refused before any state change).
    pub fn recovery_id(self, reported: Option<i64>) -> Result<Option<u8>> {
        match (self, reported) {
            (Curve::Secp256k1, Some(r @ 0..=1)) => Ok(u8::try_from(r).ok()),
            (Curve::Secp256k1, Some(r)) => Err(Error::invalid_input(format!(
                "recoveryId must be 0 or 1, got {r}"
            ))),
            (Curve::Secp256k1, None) => Err(Error::invalid_input(
                "recoveryId (0 or 1) is required for secp256k1",
            )),
            (Curve::Ed25519, _) => Ok(None),
        }
    }

    /// Whether the curve has ECDSA presignatures.
    pub fn has_presignatures(self) -> bool {
        self == Curve::Secp256k1
    }

    /// Verifies `signature` over `message` (the prehash on secp256k1, the message on
    /// ed25519) under the vault key, or its child at `derivation_path`. `Err` is why the
    /// signature is refused (the device that sent it is blamed).
    pub fn verify(
        self,
        vault: &Vault,
        derivation_path: Option<&str>,
        message: &[u8],
        signature: &[u8],
        recovery_id: Option<u8>,
    ) -> Result<std::result::Result<(), String>> {
        let public_key = vault
            .public_key
            .clone()
            .ok_or_else(|| Error::invalid_state(format!("vault {} has no key", vault.id)))?;
        Ok(match self {
            Curve::Secp256k1 => {
                let key = match derivation_path {
                    Some(path) => {
                        let path = crypto::parse_derivation_path(path)?;
                        let cc = vault
                            .chain_code
                            .ok_or_else(|| Error::internal("derive", "vault has no chain code"))?;
                        crypto::derive_secp256k1_child(&public_key, &cc, &path)?
                    }
                    None => public_key,
                };
                match recovery_id {
                    Some(rid) => {
                        let digest: [u8; 32] =
                            message.try_into().map_err(|e| Error::internal("digest", e))?;
                        crypto::verify_secp256k1(&key, &digest, signature, rid)
                    }
                    None => Err("recoveryId (0 or 1) is required for secp256k1".to_owned()),
                }
            }
            Curve::Ed25519 => crypto::verify_ed25519(&public_key, message, signature),
        })
    }
}
