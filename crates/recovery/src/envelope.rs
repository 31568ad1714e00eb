//! A `.dr` file: io.finnet's disaster-recovery envelope.
//!
//! ```text
//! {"formatVersion":1,"kemSuite":"ML-KEM-768+AES-256-GCM","vaultId":"…","requestId":"…",
//!  "previousRequestId":"…" (optional),"algo":"ECDSA"|"EDDSA","curve":"secp256k1"|"ed25519",
//!  "dataB64":"…"}
//! dataB64 = base64( ML-KEM-768 ciphertext (1088 bytes) ‖ nonce (12) ‖ AES-256-GCM(plaintext) ‖ tag (16) )
//! ```
//!
//! The 32-byte ML-KEM shared secret is the AES-256 key; there is no associated data (as
//! io.finnet's format has it). A wrong private key decapsulates to another secret (ML-KEM's
//! implicit rejection), so the AES-GCM tag is what tells it: "not encrypted to this key".
//!
//! vsigner's other schemes use the same envelope: `"algo":"ECDSA","curve":"secp256r1"` for
//! P-256 and `"algo":"SCHNORR","curve":"secp256k1"` for BIP-340 (extensions of io.finnet's
//! two values, which its tool does not know).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use ml_kem::{Decapsulate as _, MlKem768};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{DrPrivateKey, DrPublicKey, RecoveryError};

/// `formatVersion`.
pub const FORMAT_VERSION: u32 = 1;
/// `kemSuite`.
pub const KEM_SUITE: &str = "ML-KEM-768+AES-256-GCM";
/// Bytes of an ML-KEM-768 ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = 1088;
/// Bytes of the AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes of the AES-GCM tag.
pub const TAG_LEN: usize = 16;

/// What a `.dr` file says in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrFile {
    /// Always [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Always [`KEM_SUITE`].
    pub kem_suite: String,
    /// The vault.
    pub vault_id: String,
    /// The operation that made this generation of shares (keygen or reshare).
    pub request_id: String,
    /// The operation of the generation before, after a reshare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_request_id: Option<String>,
    /// `ECDSA`, `EDDSA` or (vsigner's) `SCHNORR`.
    pub algo: String,
    /// `secp256k1`, `ed25519` or (vsigner's) `secp256r1`.
    pub curve: String,
    /// The encrypted share plaintext (see the module documentation).
    pub data_b64: String,
}

/// The clear fields of a file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrHeader {
    /// The vault.
    pub vault_id: String,
    /// The operation that made the shares.
    pub request_id: String,
    /// The operation of the generation before.
    pub previous_request_id: Option<String>,
    /// `ECDSA`, `EDDSA`, `SCHNORR`.
    pub algo: String,
    /// The curve's name.
    pub curve: String,
}

impl DrFile {
    /// Encrypts `plaintext` to `key`.
    pub fn seal(key: &DrPublicKey, header: DrHeader, plaintext: &[u8]) -> Result<Self, RecoveryError> {
        let (kem_ct, shared) = key.encapsulate();
        let mut nonce = [0u8; NONCE_LEN];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let cipher = Aes256Gcm::new_from_slice(shared.as_slice())
            .map_err(|_| RecoveryError::Crypto("the ML-KEM shared secret is not an AES-256 key".into()))?;
        let sealed = cipher
            .encrypt(&Nonce::from(nonce), plaintext)
            .map_err(|_| RecoveryError::Crypto("AES-256-GCM encryption failed".into()))?;
        let mut data = Vec::with_capacity(KEM_CIPHERTEXT_LEN + NONCE_LEN + sealed.len());
        data.extend_from_slice(kem_ct.as_slice());
        data.extend_from_slice(&nonce);
        data.extend_from_slice(&sealed);
        Ok(Self {
            format_version: FORMAT_VERSION,
            kem_suite: KEM_SUITE.to_owned(),
            vault_id: header.vault_id,
            request_id: header.request_id,
            previous_request_id: header.previous_request_id,
            algo: header.algo,
            curve: header.curve,
            data_b64: base64::engine::general_purpose::STANDARD.encode(data),
        })
    }

    /// Parses a file's JSON, checking its format version and suite.
    pub fn parse(json: &[u8]) -> Result<Self, RecoveryError> {
        let file: Self = serde_json::from_slice(json)
            .map_err(|e| RecoveryError::Format(format!("not a .dr file (JSON envelope): {e}")))?;
        if file.format_version != FORMAT_VERSION {
            return Err(RecoveryError::Format(format!(
                "formatVersion {} is not supported (this build reads {FORMAT_VERSION})",
                file.format_version
            )));
        }
        if file.kem_suite != KEM_SUITE {
            return Err(RecoveryError::Format(format!(
                "kemSuite {:?} is not supported (this build reads {KEM_SUITE})",
                file.kem_suite
            )));
        }
        Ok(file)
    }

    /// The file's JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings and a number cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Decrypts the share plaintext with `key`.
    pub fn open(&self, key: &DrPrivateKey) -> Result<Zeroizing<Vec<u8>>, RecoveryError> {
        let data = base64::engine::general_purpose::STANDARD
            .decode(self.data_b64.trim())
            .map_err(|e| RecoveryError::Format(format!("dataB64 is not base64: {e}")))?;
        let least = KEM_CIPHERTEXT_LEN + NONCE_LEN + TAG_LEN;
        if data.len() < least {
            return Err(RecoveryError::Format(format!(
                "truncated: dataB64 holds {} bytes, at least {least} are needed",
                data.len()
            )));
        }
        let (kem_ct, rest) = data.split_at(KEM_CIPHERTEXT_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| RecoveryError::Format("the nonce is malformed".into()))?;
        let kem_ct: ml_kem::Ciphertext<MlKem768> = kem_ct
            .try_into()
            .map_err(|_| RecoveryError::Format("the ML-KEM ciphertext is malformed".into()))?;
        let shared = Zeroizing::new(<[u8; 32]>::from(key.0.decapsulate(&kem_ct)));
        let cipher = Aes256Gcm::new_from_slice(shared.as_slice())
            .map_err(|_| RecoveryError::Crypto("the ML-KEM shared secret is not an AES-256 key".into()))?;
        cipher
            .decrypt(&Nonce::from(nonce), sealed)
            .map(Zeroizing::new)
            .map_err(|_| RecoveryError::WrongKey)
    }
}
