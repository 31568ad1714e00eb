//! A keystore backup sealed to a recipient's ML-KEM-768 key (the same kind of key as the
//! disaster-recovery key): the backup's key-encryption key is HKDF-SHA256 of an ML-KEM
//! shared secret, whose ciphertext is stored in the backup's header. Whoever holds the
//! private key opens it; no passphrase travels with the file.

use base64::Engine as _;
use hkdf::Hkdf;
use sha2::Sha256;
use vsigner_keystore::sealing::Kek;
use vsigner_keystore::{KeystoreError, SealingProvider};
use vsigner_recovery::{DrPrivateKey, DrPublicKey};
use zeroize::Zeroizing;

/// The provider's name in a backup's header.
pub(crate) const NAME: &str = "ml-kem-768";
const INFO: &[u8] = b"vsigner/keystore-backup/ml-kem-768/v1";

/// Seals to a public key, or opens with the private key.
pub(crate) enum Recipient {
    /// Export: encapsulate to this key.
    To(DrPublicKey),
    /// Import: decapsulate with this key.
    From(DrPrivateKey),
}

impl Recipient {
    pub(crate) fn to(key: DrPublicKey) -> Self {
        Self::To(key)
    }

    pub(crate) fn from(key: DrPrivateKey) -> Self {
        Self::From(key)
    }
}

fn bad(reason: impl Into<String>) -> KeystoreError {
    KeystoreError::Provider {
        provider: NAME,
        reason: reason.into(),
    }
}

fn kek(shared: &[u8; 32], ciphertext: &[u8]) -> Result<Kek, KeystoreError> {
    let mut kek = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(ciphertext), shared)
        .expand(INFO, kek.as_mut())
        .map_err(|e| bad(e.to_string()))?;
    Ok(kek)
}

impl SealingProvider for Recipient {
    fn name(&self) -> &'static str {
        NAME
    }

    fn key_encryption_key(
        &self,
        stored: Option<&serde_json::Value>,
    ) -> Result<(Kek, serde_json::Value), KeystoreError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        match (self, stored) {
            (Self::To(key), None) => {
                let (ciphertext, shared) = key.encapsulate();
                let params = serde_json::json!({ "ciphertext": b64.encode(&ciphertext) });
                Ok((kek(&shared, &ciphertext)?, params))
            }
            (Self::From(key), Some(params)) => {
                let ciphertext = params["ciphertext"]
                    .as_str()
                    .and_then(|s| b64.decode(s).ok())
                    .ok_or_else(|| bad("the backup's header has no ML-KEM ciphertext"))?;
                let shared = key.decapsulate(&ciphertext).map_err(|e| bad(e.to_string()))?;
                Ok((kek(&shared, &ciphertext)?, params.clone()))
            }
            (Self::To(_), Some(_)) => Err(bad("opening a backup needs the private key")),
            (Self::From(_), None) => Err(bad("sealing a backup needs the public key")),
        }
    }
}
