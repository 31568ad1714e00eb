//! The keystore: encrypted records over a [`Backend`], unlocked by a [`SealingProvider`]:
//! opening, sealing and opening records, put/get/take/delete. Share generations and
//! start-up leftovers are in [`crate::generations`].

use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::backend::{self, Backend, WriteMode};
use crate::record::{RecordId, RecordInfo, RecordKind, RECORD_SUFFIX};
use crate::{KeystoreError, SealingProvider};

const HEADER_PATH: &str = "keystore.json";
const HEADER_FORMAT: &str = "vsigner-keystore";
const HEADER_VERSION: u16 = 1;
const RECORD_MAGIC: &[u8; 4] = b"VSKR";
const RECORD_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 4 + 1 + NONCE_LEN;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u16,
    provider: String,
    provider_params: serde_json::Value,
    /// `nonce ‖ XChaCha20-Poly1305(KEK, data key)`, hex.
    wrapped_data_key: String,
}

/// An unlocked keystore.
pub struct Keystore {
    pub(crate) backend: Arc<dyn Backend>,
    /// Serialises [`Keystore::take`]: a record read by one take is deleted before another
    /// take can read it (two readers before either deletes would both get it).
    taking: tokio::sync::Mutex<()>,
    location: String,
    data_key: Zeroizing<[u8; 32]>,
    provider: String,
}

impl std::fmt::Debug for Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystore")
            .field("location", &self.location)
            .field("provider", &self.provider)
            .field("data_key", &"<redacted>")
            .finish()
    }
}

fn wrap_ad(provider: &str) -> Vec<u8> {
    let mut ad = b"vsigner/keystore/data-key/v1/".to_vec();
    ad.extend_from_slice(provider.as_bytes());
    ad
}

fn xnonce(bytes: &[u8]) -> Result<XNonce, KeystoreError> {
    let array: [u8; NONCE_LEN] = bytes
        .try_into()
        .map_err(|_| KeystoreError::invalid("nonce", format!("{} bytes", bytes.len())))?;
    Ok(XNonce::from(array))
}

fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

impl Keystore {
    /// Opens the keystore at `url` (see [`backend::from_url`]), creating it, with a fresh data
    /// key sealed by `provider`, if it does not exist yet.
    pub async fn open(url: &str, provider: &dyn SealingProvider) -> Result<Self, KeystoreError> {
        let backend = backend::from_url(url)?;
        match Self::unlock(backend.clone(), url, provider).await {
            Err(KeystoreError::NotFound { .. }) => {
                match Self::create(backend.clone(), url, provider).await {
                    // Someone created it concurrently: open theirs.
                    Err(KeystoreError::AlreadyExists { .. }) => Self::unlock(backend, url, provider).await,
                    other => other,
                }
            }
            other => other,
        }
    }

    /// Opens an existing keystore; never creates one.
    pub async fn open_existing(url: &str, provider: &dyn SealingProvider) -> Result<Self, KeystoreError> {
        Self::unlock(backend::from_url(url)?, url, provider).await
    }

    async fn read_header(backend: &dyn Backend, url: &str) -> Result<Header, KeystoreError> {
        let location = format!("{url}/{HEADER_PATH}");
        let bad = |reason: String| KeystoreError::Header {
            path: location.clone(),
            reason,
        };
        let bytes = backend
            .get(HEADER_PATH)
            .await?
            .ok_or_else(|| KeystoreError::NotFound {
                location: url.to_owned(),
            })?;
        let header: Header =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a keystore header: {e}")))?;
        if header.format != HEADER_FORMAT {
            return Err(bad(format!(
                "format {:?} is not {HEADER_FORMAT:?}",
                header.format
            )));
        }
        if header.version != HEADER_VERSION {
            return Err(bad(format!(
                "version {} is not supported (this build reads {HEADER_VERSION})",
                header.version
            )));
        }
        Ok(header)
    }

    async fn unlock(
        backend: Arc<dyn Backend>,
        url: &str,
        provider: &dyn SealingProvider,
    ) -> Result<Self, KeystoreError> {
        let header = Self::read_header(&*backend, url).await?;
        if header.provider != provider.name() {
            return Err(KeystoreError::Provider {
                provider: "keystore",
                reason: format!(
                    "this keystore is sealed by the {} provider, not {}",
                    header.provider,
                    provider.name()
                ),
            });
        }
        let (kek, _) = provider.key_encryption_key(Some(&header.provider_params))?;
        let wrapped = hex::decode(&header.wrapped_data_key).map_err(|e| KeystoreError::Header {
            path: format!("{url}/{HEADER_PATH}"),
            reason: format!("wrapped data key: {e}"),
        })?;
        let wrong = || KeystoreError::WrongKey {
            provider: provider.name().to_owned(),
        };
        let (nonce, ct) = wrapped.split_at_checked(NONCE_LEN).ok_or_else(wrong)?;
        let key = Zeroizing::new(
            cipher(&kek)
                .decrypt(
                    &xnonce(nonce)?,
                    Payload {
                        msg: ct,
                        aad: &wrap_ad(provider.name()),
                    },
                )
                .map_err(|_| wrong())?,
        );
        let data_key: [u8; 32] = key.as_slice().try_into().map_err(|_| wrong())?;
        Ok(Keystore {
            backend,
            taking: tokio::sync::Mutex::new(()),
            location: url.to_owned(),
            data_key: Zeroizing::new(data_key),
            provider: provider.name().into(),
        })
    }

    async fn create(
        backend: Arc<dyn Backend>,
        url: &str,
        provider: &dyn SealingProvider,
    ) -> Result<Self, KeystoreError> {
        let mut data_key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(data_key.as_mut());
        let header = Self::sealed_header(&data_key, provider)?;
        let json = serde_json::to_vec_pretty(&header).map_err(|e| KeystoreError::storage(url, e))?;
        backend.put(HEADER_PATH, json, WriteMode::Create).await?;
        Ok(Keystore {
            backend,
            taking: tokio::sync::Mutex::new(()),
            location: url.to_owned(),
            data_key,
            provider: provider.name().into(),
        })
    }

    /// Seals the data key under `provider` instead (a new passphrase or key file, or another
    /// kind of sealing), with fresh parameters (salt). The records are not rewritten: they
    /// stay encrypted under the same data key. The header is replaced in one atomic write
    /// (a temporary file renamed over it, synced; an object store's atomic put), so a crash
    /// leaves either the old sealing or the new one, never a keystore that nothing opens.
    /// A process that has the keystore open keeps working; it needs the new secret at its
    /// next start.
    pub async fn rekey(&mut self, provider: &dyn SealingProvider) -> Result<(), KeystoreError> {
        let header = Self::sealed_header(&self.data_key, provider)?;
        let json =
            serde_json::to_vec_pretty(&header).map_err(|e| KeystoreError::storage(&self.location, e))?;
        self.backend.put(HEADER_PATH, json, WriteMode::Overwrite).await?;
        self.provider = provider.name().into();
        Ok(())
    }

    /// The header that seals `data_key` under `provider` (fresh parameters and nonce).
    fn sealed_header(data_key: &[u8; 32], provider: &dyn SealingProvider) -> Result<Header, KeystoreError> {
        let (kek, params) = provider.key_encryption_key(None)?;
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let ct = cipher(&kek)
            .encrypt(
                &xnonce(&nonce)?,
                Payload {
                    msg: data_key.as_ref(),
                    aad: &wrap_ad(provider.name()),
                },
            )
            .map_err(|_| KeystoreError::Provider {
                provider: "keystore",
                reason: "cannot wrap the data key".into(),
            })?;
        Ok(Header {
            format: HEADER_FORMAT.into(),
            version: HEADER_VERSION,
            provider: provider.name().into(),
            provider_params: params,
            wrapped_data_key: hex::encode([nonce.as_slice(), &ct].concat()),
        })
    }

    /// The name of the provider that seals this keystore (`passphrase`, `key-file`, `sgx`).
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Where the keystore lives.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn seal(&self, id: &RecordId, plaintext: &[u8]) -> Result<Vec<u8>, KeystoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let ct = cipher(&self.data_key)
            .encrypt(
                &xnonce(&nonce)?,
                Payload {
                    msg: plaintext,
                    aad: &id.associated_data(),
                },
            )
            .map_err(|_| KeystoreError::storage(id.path(), "encryption failed"))?;
        let mut out = Vec::with_capacity(RECORD_HEADER_LEN + ct.len());
        out.extend_from_slice(RECORD_MAGIC);
        out.push(RECORD_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn open_record(&self, id: &RecordId, bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
        let tampered = |reason| KeystoreError::Tampered {
            path: id.path(),
            reason,
        };
        let (header, ct) = bytes
            .split_at_checked(RECORD_HEADER_LEN)
            .ok_or_else(|| tampered("shorter than a record header"))?;
        if header.get(..4) != Some(RECORD_MAGIC.as_slice()) {
            return Err(tampered("bad magic"));
        }
        if header.get(4) != Some(&RECORD_VERSION) {
            return Err(tampered("unknown record version"));
        }
        let nonce = header.get(5..).ok_or_else(|| tampered("no nonce"))?;
        cipher(&self.data_key)
            .decrypt(
                &xnonce(nonce)?,
                Payload {
                    msg: ct,
                    aad: &id.associated_data(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| tampered("authentication failed"))
    }

    /// Stores a record. Records are written once (an existing one is never replaced),
    /// atomically and durably.
    pub async fn put(&self, id: &RecordId, plaintext: &[u8]) -> Result<(), KeystoreError> {
        let mode = if id.kind().overwritable() {
            WriteMode::Overwrite
        } else {
            WriteMode::Create
        };
        self.backend
            .put(&id.path(), self.seal(id, plaintext)?, mode)
            .await
    }

    /// Reads and authenticates a record; `None` if absent.
    pub async fn get(&self, id: &RecordId) -> Result<Option<Zeroizing<Vec<u8>>>, KeystoreError> {
        match self.backend.get(&id.path()).await? {
            Some(bytes) => Ok(Some(self.open_record(id, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Takes a presignature or prime set out of the store: it is authenticated, then deleted
    /// durably, and only then returned. A crash after the deletion loses it (safe: it was
    /// never used); it can never be returned twice, even across restarts or to concurrent
    /// takes of this keystore (they are serialised). One process owns a keystore.
    pub async fn take(&self, id: &RecordId) -> Result<Option<Zeroizing<Vec<u8>>>, KeystoreError> {
        if !matches!(id.kind(), RecordKind::Presignature | RecordKind::PrimeSet) {
            return Err(KeystoreError::Lifecycle(format!(
                "only presignatures and prime sets are taken; {id} is not one"
            )));
        }
        let _one_at_a_time = self.taking.lock().await;
        let Some(plaintext) = self.get(id).await? else {
            return Ok(None);
        };
        self.backend.delete(&id.path()).await?;
        Ok(Some(plaintext))
    }

    /// Deletes a record. A key share is deleted only once a newer generation of the same
    /// vault is confirmed ([`Keystore::confirm_generation`] does that deletion itself).
    pub async fn delete(&self, id: &RecordId) -> Result<(), KeystoreError> {
        if id.kind() == RecordKind::KeyShare {
            let confirmed = self
                .confirmed_generation(id.device(), id.vault().unwrap_or_default())
                .await?;
            if confirmed.is_none_or(|c| c <= id.generation().unwrap_or(u64::MAX)) {
                return Err(KeystoreError::Lifecycle(format!(
                    "{id} is not superseded by a confirmed generation and is kept (a share generation is deleted only after its successor is confirmed)"
                )));
            }
        }
        self.backend.delete(&id.path()).await
    }

    /// Every record, without decrypting anything.
    pub async fn list(&self) -> Result<Vec<RecordInfo>, KeystoreError> {
        list_records(&*self.backend).await
    }
}

pub(crate) async fn list_records_under(
    backend: &dyn Backend,
    prefix: &str,
) -> Result<Vec<RecordInfo>, KeystoreError> {
    Ok(backend
        .list(prefix)
        .await?
        .into_iter()
        .filter(|(p, _)| p.ends_with(RECORD_SUFFIX))
        .filter_map(|(p, size)| RecordId::from_path(&p).map(|id| RecordInfo { id, size }))
        .collect())
}

async fn list_records(backend: &dyn Backend) -> Result<Vec<RecordInfo>, KeystoreError> {
    list_records_under(backend, "devices/").await
}

/// Lists a keystore's records (kinds, ids, generations, sizes) without unlocking it: only
/// names and sizes are read, never a secret. Also returns the sealing provider's name.
pub async fn inspect(url: &str) -> Result<(String, Vec<RecordInfo>), KeystoreError> {
    let backend = backend::from_url(url)?;
    let header = Keystore::read_header(&*backend, url).await?;
    Ok((header.provider, list_records(&*backend).await?))
}
