//! Sealing providers: where the key that wraps the keystore's data key comes from.
//!
//! The data key (random, 256 bits) encrypts every record; it is stored only wrapped
//! (XChaCha20-Poly1305) under a key-encryption key (KEK) from a provider:
//! - [`Passphrase`]: Argon2id over a passphrase; the parameters and salt are stored in the
//!   keystore header, so a keystore stays openable if defaults change.
//! - [`KeyFile`]: HKDF-SHA256 over a key file's bytes (at least 32).
//! - [`SgxSealing`]: HKDF-SHA256 over the Gramine SGX sealing key
//!   (`/dev/attestation/keys/_sgx_mrenclave`): only the same enclave on the same CPU can
//!   unseal; moving to new hardware requires a reshare, as with io.finnet's signer.
//!
//! A cloud KMS provider fits the same interface: its parameters would name the KMS key,
//! and `key_encryption_key` would ask the KMS to decrypt a stored, KMS-encrypted KEK.

use std::path::PathBuf;

use hkdf::Hkdf;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::KeystoreError;

/// A 256-bit key-encryption key.
pub type Kek = Zeroizing<[u8; 32]>;

/// A source of the key-encryption key.
pub trait SealingProvider: Send + Sync {
    /// Stable name, stored in the keystore header.
    fn name(&self) -> &'static str;

    /// Derives the KEK. `stored` holds the parameters saved in the header when the keystore
    /// was created, or `None` when creating it; the provider returns the parameters to store.
    fn key_encryption_key(
        &self,
        stored: Option<&serde_json::Value>,
    ) -> Result<(Kek, serde_json::Value), KeystoreError>;
}

fn random_salt() -> String {
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    hex::encode(salt)
}

fn salt_from(provider: &'static str, stored: Option<&serde_json::Value>) -> Result<Vec<u8>, KeystoreError> {
    #[derive(Deserialize)]
    struct P {
        salt: String,
    }
    match stored {
        None => hex::decode(random_salt()).map_err(|e| KeystoreError::Provider {
            provider,
            reason: e.to_string(),
        }),
        Some(v) => {
            let p: P = serde_json::from_value(v.clone()).map_err(|e| KeystoreError::Provider {
                provider,
                reason: format!("stored parameters: {e}"),
            })?;
            hex::decode(p.salt).map_err(|e| KeystoreError::Provider {
                provider,
                reason: format!("stored salt: {e}"),
            })
        }
    }
}

fn hkdf_kek(ikm: &[u8], salt: &[u8], info: &[u8]) -> Result<Kek, KeystoreError> {
    let mut kek = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, kek.as_mut())
        .map_err(|e| KeystoreError::Provider {
            provider: "hkdf",
            reason: e.to_string(),
        })?;
    Ok(kek)
}

/// Argon2id parameters (memory in KiB, iterations, lanes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Argon2Params {
    /// Memory cost in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Parallelism.
    pub p_cost: u32,
}

impl Default for Argon2Params {
    /// 64 MiB, 3 iterations, 1 lane (above OWASP's minimum for Argon2id).
    fn default() -> Self {
        Argon2Params {
            m_cost: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

/// A passphrase, stretched with Argon2id.
///
/// # Security
/// The passphrase is zeroized on drop and never shown by `Debug`.
pub struct Passphrase {
    secret: Zeroizing<String>,
    params: Argon2Params,
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passphrase")
            .field("params", &self.params)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Passphrase {
    /// A passphrase with the default Argon2id parameters (used when creating a keystore;
    /// an existing keystore uses the parameters it was created with).
    pub fn new(passphrase: impl Into<String>) -> Self {
        Self::with_params(passphrase, Argon2Params::default())
    }

    /// A passphrase with explicit parameters for new keystores.
    pub fn with_params(passphrase: impl Into<String>, params: Argon2Params) -> Self {
        Passphrase {
            secret: Zeroizing::new(passphrase.into()),
            params,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct PassphraseParams {
    algorithm: String,
    #[serde(flatten)]
    argon2: Argon2Params,
    salt: String,
}

impl SealingProvider for Passphrase {
    fn name(&self) -> &'static str {
        "passphrase"
    }

    fn key_encryption_key(
        &self,
        stored: Option<&serde_json::Value>,
    ) -> Result<(Kek, serde_json::Value), KeystoreError> {
        let bad = |reason: String| KeystoreError::Provider {
            provider: "passphrase",
            reason,
        };
        if self.secret.is_empty() {
            return Err(bad("the passphrase is empty".into()));
        }
        let params = match stored {
            Some(v) => serde_json::from_value::<PassphraseParams>(v.clone())
                .map_err(|e| bad(format!("stored parameters: {e}")))?,
            None => PassphraseParams {
                algorithm: "argon2id".into(),
                argon2: self.params,
                salt: random_salt(),
            },
        };
        if params.algorithm != "argon2id" {
            return Err(bad(format!("unknown algorithm {:?}", params.algorithm)));
        }
        let salt = hex::decode(&params.salt).map_err(|e| bad(format!("salt: {e}")))?;
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(
                params.argon2.m_cost,
                params.argon2.t_cost,
                params.argon2.p_cost,
                Some(32),
            )
            .map_err(|e| bad(format!("parameters: {e}")))?,
        );
        let mut kek = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(self.secret.as_bytes(), &salt, kek.as_mut())
            .map_err(|e| bad(e.to_string()))?;
        let stored = serde_json::to_value(&params).map_err(|e| bad(e.to_string()))?;
        Ok((kek, stored))
    }
}

/// A key file (at least 32 bytes, e.g. from `head -c 32 /dev/urandom`).
#[derive(Debug, Clone)]
pub struct KeyFile {
    path: PathBuf,
}

impl KeyFile {
    /// The key file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KeyFile { path: path.into() }
    }

    /// Creates a new key file of 32 random bytes, readable only by its owner. Refuses to
    /// replace an existing file.
    pub fn create(path: impl Into<PathBuf>) -> Result<Self, KeystoreError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = path.into();
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| KeystoreError::storage(path.display().to_string(), e))?;
        f.write_all(key.as_ref())
            .and_then(|()| f.sync_all())
            .map_err(|e| KeystoreError::storage(path.display().to_string(), e))?;
        Ok(KeyFile { path })
    }
}

impl SealingProvider for KeyFile {
    fn name(&self) -> &'static str {
        "key-file"
    }

    fn key_encryption_key(
        &self,
        stored: Option<&serde_json::Value>,
    ) -> Result<(Kek, serde_json::Value), KeystoreError> {
        let bytes = Zeroizing::new(std::fs::read(&self.path).map_err(|e| KeystoreError::Provider {
            provider: "key-file",
            reason: format!("cannot read {}: {e}", self.path.display()),
        })?);
        if bytes.len() < 32 {
            return Err(KeystoreError::Provider {
                provider: "key-file",
                reason: format!(
                    "{} holds {} bytes; a key file needs at least 32",
                    self.path.display(),
                    bytes.len()
                ),
            });
        }
        let salt = salt_from("key-file", stored)?;
        let kek = hkdf_kek(&bytes, &salt, b"vsigner/keystore/kek/key-file/v1")?;
        Ok((kek, serde_json::json!({ "salt": hex::encode(salt) })))
    }
}

/// The Gramine SGX sealing key (bound to the enclave measurement, MRENCLAVE).
#[derive(Debug, Clone)]
pub struct SgxSealing {
    path: PathBuf,
}

/// Where Gramine exposes the MRENCLAVE sealing key inside an enclave.
pub const GRAMINE_MRENCLAVE_KEY: &str = "/dev/attestation/keys/_sgx_mrenclave";

impl SgxSealing {
    /// The sealing key at Gramine's path, if this process runs inside a Gramine enclave.
    pub fn detect() -> Option<Self> {
        std::path::Path::new(GRAMINE_MRENCLAVE_KEY)
            .exists()
            .then(|| SgxSealing {
                path: GRAMINE_MRENCLAVE_KEY.into(),
            })
    }

    /// The sealing key at another path (tests, other attestation layouts).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        SgxSealing { path: path.into() }
    }
}

impl SealingProvider for SgxSealing {
    fn name(&self) -> &'static str {
        "sgx-mrenclave"
    }

    fn key_encryption_key(
        &self,
        stored: Option<&serde_json::Value>,
    ) -> Result<(Kek, serde_json::Value), KeystoreError> {
        let key = Zeroizing::new(std::fs::read(&self.path).map_err(|e| KeystoreError::Provider {
            provider: "sgx-mrenclave",
            reason: format!(
                "cannot read the sealing key at {} (not inside a Gramine enclave?): {e}",
                self.path.display()
            ),
        })?);
        if key.len() < 16 {
            return Err(KeystoreError::Provider {
                provider: "sgx-mrenclave",
                reason: "sealing key shorter than 16 bytes".into(),
            });
        }
        let salt = salt_from("sgx-mrenclave", stored)?;
        let kek = hkdf_kek(&key, &salt, b"vsigner/keystore/kek/sgx-mrenclave/v1")?;
        Ok((kek, serde_json::json!({ "salt": hex::encode(salt) })))
    }
}
