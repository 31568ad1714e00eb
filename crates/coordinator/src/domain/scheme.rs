//! What a vault's scheme decides, in one place: the form of its public key, whether it has
//! a BIP-32 chain code, how a signature reported for it is verified, and whether it has
//! presignatures. A new scheme is one more arm in each function here.

use super::sign::TaprootTweak;
use super::{Curve, Vault};
use crate::crypto;
use crate::error::{Error, ErrorCode, Result};

impl Curve {
    /// Whether the scheme is ECDSA (CGGMP24): signatures over a 32-byte prehash with a
    /// recovery id, presignatures, BIP-32 child keys.
    pub fn is_ecdsa(self) -> bool {
        matches!(self, Curve::Secp256k1 | Curve::Secp256r1)
    }

    /// The vault key as stored, from the bytes a device reported (SEC1 compressed for the
    /// ECDSA curves, 32 bytes for ed25519, the 32-byte x-only key for bip340); refuses
    /// anything that is not a valid key.
    pub fn public_key(self, raw: &[u8]) -> Result<Vec<u8>> {
        match self {
            Curve::Secp256k1 | Curve::Secp256r1 => crypto::normalize_sec1_public_key(self, raw),
            Curve::Ed25519 => crypto::check_ed25519_public_key(raw),
            Curve::Bip340 => crypto::check_bip340_public_key(raw),
        }
    }

    /// Whether the scheme's vaults have non-hardened child keys (a chain code): the ECDSA
    /// curves (BIP-32/SLIP-10) and ed25519 (`hd-wallet`'s Edwards derivation).
    pub fn has_child_keys(self) -> bool {
        self != Curve::Bip340
    }

    /// The chain code a keygen result must carry (hex, normalised): required for the
    /// schemes with child keys, refused for bip340.
    pub fn chain_code(self, reported: Option<&str>) -> Result<Option<String>> {
        match (self.has_child_keys(), reported) {
            (true, Some(cc)) => Ok(Some(hex::encode(crypto::decode_hex_array::<32>(
                "chainCode",
                cc,
                ErrorCode::InvalidInput,
            )?))),
            (true, None) => Err(Error::invalid_input(format!(
                "chainCode (32 bytes hex) is required for {}",
                self.as_str()
            ))),
            (false, Some(_)) => Err(Error::invalid_input(format!(
                "chainCode is not used for {}",
                self.as_str()
            ))),
            (false, None) => Ok(None),
        }
    }

    /// The recovery id a signature must carry: 0 or 1 on the ECDSA curves, none on the
    /// Schnorr schemes. Malformed input is an error (refused before any state change).
    pub fn recovery_id(self, reported: Option<i64>) -> Result<Option<u8>> {
        match (self.is_ecdsa(), reported) {
            (true, Some(r @ 0..=1)) => Ok(u8::try_from(r).ok()),
            (true, Some(r)) => Err(Error::invalid_input(format!(
                "recoveryId must be 0 or 1, got {r}"
            ))),
            (true, None) => Err(Error::invalid_input(format!(
                "recoveryId (0 or 1) is required for {}",
                self.as_str()
            ))),
            (false, _) => Ok(None),
        }
    }

    /// Whether the scheme has presignatures (the ECDSA curves).
    pub fn has_presignatures(self) -> bool {
        self.is_ecdsa()
    }

    /// Verifies `signature` over `message` (the prehash on the ECDSA curves, the message on
    /// the Schnorr schemes) under the vault key, its child at `derivation_path`, or (bip340)
    /// its Taproot output key. `Err` is why the signature is refused (the device that sent
    /// it is blamed).
    pub fn verify(
        self,
        vault: &Vault,
        derivation_path: Option<&str>,
        taproot: Option<&TaprootTweak>,
        message: &[u8],
        signature: &[u8],
        recovery_id: Option<u8>,
    ) -> Result<std::result::Result<(), String>> {
        let public_key = vault
            .public_key
            .clone()
            .ok_or_else(|| Error::invalid_state(format!("vault {} has no key", vault.id)))?;
        let key = match derivation_path {
            Some(path) => {
                let path = crypto::parse_derivation_path(path)?;
                let cc = vault
                    .chain_code
                    .ok_or_else(|| Error::internal("derive", "vault has no chain code"))?;
                crypto::derive_child(self, &public_key, &cc, &path)?
            }
            None => public_key,
        };
        Ok(match self {
            Curve::Secp256k1 | Curve::Secp256r1 => match recovery_id {
                Some(rid) => {
                    let digest: [u8; 32] = message.try_into().map_err(|e| Error::internal("digest", e))?;
                    crypto::verify_ecdsa(self, &key, &digest, signature, rid)
                }
                None => Err(format!("recoveryId (0 or 1) is required for {}", self.as_str())),
            },
            Curve::Ed25519 => crypto::verify_ed25519(&key, message, signature),
            Curve::Bip340 => {
                let root = taproot.map(TaprootTweak::merkle_root).transpose()?;
                crypto::verify_bip340(&key, root.as_ref().map(Option::as_ref), message, signature)
            }
        })
    }
}
