//! Backups of a keystore: one encrypted, authenticated file with a device's records, for
//! moving a signer to new hardware, to another sealing, or out of one enclave into another.
//!
//! # Format
//! ```text
//! vsigner-keystore-backup v1\n
//! {"provider":…,"params":…,"nonce":…,"createdAt":…,"records":N}\n      (the header, JSON)
//! XChaCha20-Poly1305(KEK, nonce, associated data = the two lines above)(archive)
//! archive = (u16 path length ‖ record path ‖ u32 length ‖ plaintext)…
//! ```
//! The key-encryption key comes from a [`SealingProvider`] as a keystore's does (a
//! passphrase with Argon2id, a key file, or a recipient's key; its parameters, such as the
//! salt, are in the header): a changed header, a cut file or another key are refused.
//!
//! # What a restore must not bring back
//! - **Presignatures**: a presignature used twice reveals the key; they live in memory only
//!   and are never exported; a backup holding one (made by hand) is refused.
//! - **Share generations older than the confirmed one**: a superseded share must stay
//!   destroyed; they are not exported, and a backup holding one is refused.
//! - **Into a keystore that holds records**: a restore never merges (that could pair a
//!   newer confirmation with an older share, or bring back a run mark's absence); it fills a
//!   new keystore (or finishes an interrupted import of the same backup).
//! - **Prime sets**: single-use; they stay with the instance that made them.
//!
//! The operation-run marks travel with the shares: a restored device never runs an
//! operation it already ran. A backup holds the generation that was confirmed when it was
//! made: after a reshare, make a new one and destroy the old (docs/recovery.md).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::record::{RecordId, RecordKind};
use crate::{Keystore, KeystoreError, SealingProvider};

/// A backup's records, in zeroizing memory.
pub type Records = Vec<(RecordId, Zeroizing<Vec<u8>>)>;

/// The first line of a backup.
pub const MAGIC: &[u8] = b"vsigner-keystore-backup v1\n";
const NONCE_LEN: usize = 24;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BackupHeader {
    provider: String,
    params: serde_json::Value,
    nonce: String,
    created_at: String,
    records: usize,
}

/// What a backup holds, as [`Keystore::export`] and [`Keystore::import`] report it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupSummary {
    /// Records in the backup.
    pub records: usize,
    /// Devices (identities).
    pub devices: usize,
    /// Key shares (every generation held).
    pub key_shares: usize,
}

fn bad(reason: impl Into<String>) -> KeystoreError {
    KeystoreError::Invalid {
        what: "backup",
        reason: reason.into(),
    }
}

/// Checks what a restore must not bring back (see the module documentation), and that the
/// records are a keystore's: each once, confirmations well formed.
fn check_restorable(records: &[(RecordId, Zeroizing<Vec<u8>>)]) -> Result<BackupSummary, KeystoreError> {
    let mut summary = BackupSummary {
        records: records.len(),
        ..BackupSummary::default()
    };
    let mut seen = std::collections::HashSet::new();
    let mut confirmed = std::collections::HashMap::new();
    for (id, bytes) in records {
        if !seen.insert(id.path()) {
            return Err(bad(format!("it holds {id} twice")));
        }
        match id.kind() {
            RecordKind::Presignature => {
                return Err(bad(format!(
                    "it holds presignature {id}: presignatures are never restored (one used twice reveals the key)"
                )))
            }
            RecordKind::PrimeSet => {
                return Err(bad(format!(
                    "it holds prime set {id}: a prime set is used once, by the instance that made it"
                )))
            }
            RecordKind::ShareConfirmation => {
                let generation = bytes
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| bad(format!("its {id} is malformed")))?;
                confirmed.insert((id.device().to_owned(), id.vault().map(str::to_owned)), generation);
            }
            RecordKind::DeviceIdentity => summary.devices += 1,
            _ => {}
        }
    }
    for (id, _) in records {
        if id.kind() != RecordKind::KeyShare {
            continue;
        }
        summary.key_shares += 1;
        let key = (id.device().to_owned(), id.vault().map(str::to_owned));
        if let (Some(c), Some(g)) = (confirmed.get(&key), id.generation()) {
            if g < *c {
                return Err(bad(format!(
                    "it holds {id}, older than the confirmed generation {c}: a superseded share is never restored"
                )));
            }
        }
    }
    Ok(summary)
}

/// The most Argon2id memory (KiB), iterations and lanes a backup's header may ask for: the
/// header is read before anything is authenticated.
const ARGON2_LIMITS: (u64, u64, u64) = (4 * 1024 * 1024, 64, 64);

fn check_cost(header: &BackupHeader) -> Result<(), KeystoreError> {
    if header.provider != "passphrase" {
        return Ok(());
    }
    let get = |k: &str| {
        header
            .params
            .get(k)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    let (m, t, p) = ARGON2_LIMITS;
    if get("m_cost") > m || get("t_cost") > t || get("p_cost") > p {
        return Err(bad(
            "its Argon2id parameters exceed what a backup may ask for (4 GiB, 64 iterations, 64 lanes)",
        ));
    }
    Ok(())
}

impl Keystore {
    /// A backup of every record (see [`crate::backup`]), sealed under `provider`. Leaves out
    /// presignatures, share generations older than the confirmed one, and prime sets (each
    /// is used once, by the instance that made it).
    pub async fn export(
        &self,
        provider: &dyn SealingProvider,
        created_at: &str,
    ) -> Result<(Zeroizing<Vec<u8>>, BackupSummary), KeystoreError> {
        let mut records = Vec::new();
        for info in self.list().await? {
            let id = info.id;
            // Prime sets are single-use and stay with the instance that made them.
            if matches!(id.kind(), RecordKind::Presignature | RecordKind::PrimeSet) {
                continue;
            }
            if id.kind() == RecordKind::KeyShare {
                let confirmed = self
                    .confirmed_generation(id.device(), id.vault().unwrap_or_default())
                    .await?;
                if confirmed.is_some_and(|c| id.generation().is_some_and(|g| g < c)) {
                    continue;
                }
            }
            if let Some(bytes) = self.get(&id).await? {
                records.push((id, bytes));
            }
        }
        let summary = check_restorable(&records)?;
        // Sized once: a growing buffer would leave copies of the plaintext behind.
        let size = records.iter().map(|(id, b)| 6 + id.path().len() + b.len()).sum();
        let mut archive = Zeroizing::new(Vec::with_capacity(size));
        for (id, bytes) in &records {
            let path = id.path();
            let path_len = u16::try_from(path.len()).map_err(|_| bad("a record path is too long"))?;
            let len = u32::try_from(bytes.len()).map_err(|_| bad("a record is too large"))?;
            archive.extend_from_slice(&path_len.to_be_bytes());
            archive.extend_from_slice(path.as_bytes());
            archive.extend_from_slice(&len.to_be_bytes());
            archive.extend_from_slice(bytes);
        }
        let (kek, params) = provider.key_encryption_key(None)?;
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let header = BackupHeader {
            provider: provider.name().to_owned(),
            params,
            nonce: hex::encode(nonce),
            created_at: created_at.to_owned(),
            records: records.len(),
        };
        let mut out = Zeroizing::new(MAGIC.to_vec());
        out.extend_from_slice(&serde_json::to_vec(&header).map_err(|e| bad(e.to_string()))?);
        out.push(b'\n');
        let sealed = XChaCha20Poly1305::new(kek.as_ref().into())
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &archive,
                    aad: &out,
                },
            )
            .map_err(|_| bad("encryption failed"))?;
        out.extend_from_slice(&sealed);
        Ok((out, summary))
    }

    /// Restores a backup into this keystore, which must hold no record but those of an
    /// interrupted import of the same backup (byte for byte: the import is then finished).
    /// Refuses a backup that holds what a restore must not bring back (see
    /// [`crate::backup`]). The identities are written last: a keystore cut short holds no
    /// device a signer would start.
    pub async fn import(
        &self,
        records: &[(RecordId, Zeroizing<Vec<u8>>)],
    ) -> Result<BackupSummary, KeystoreError> {
        let summary = check_restorable(records)?;
        let mut present = std::collections::HashSet::new();
        for info in self.list().await? {
            let restored = records.iter().find(|(id, _)| *id == info.id);
            let same = match restored {
                Some((id, bytes)) => self.get(id).await?.is_some_and(|b| b[..] == bytes[..]),
                None => false,
            };
            if !same {
                return Err(KeystoreError::Lifecycle(format!(
                    "the keystore at {} already holds records (such as {}): a backup is restored into a new keystore only",
                    self.location(),
                    info.id
                )));
            }
            present.insert(info.id.path());
        }
        let (identities, others): (Vec<_>, Vec<_>) = records
            .iter()
            .partition(|(id, _)| id.kind() == RecordKind::DeviceIdentity);
        for (id, bytes) in others.into_iter().chain(identities) {
            if !present.contains(&id.path()) {
                self.put(id, bytes).await?;
            }
        }
        Ok(summary)
    }
}

/// The backup's provider name (to choose how to open it) without opening it.
pub fn provider_of(backup: &[u8]) -> Result<String, KeystoreError> {
    Ok(split(backup)?.1.provider)
}

fn split(backup: &[u8]) -> Result<(&[u8], BackupHeader, &[u8]), KeystoreError> {
    let rest = backup.strip_prefix(MAGIC).ok_or_else(|| {
        bad("not a vsigner keystore backup (its first line is not \"vsigner-keystore-backup v1\")")
    })?;
    let end = rest
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| bad("truncated: no header line"))?;
    let header: BackupHeader =
        serde_json::from_slice(&rest[..end]).map_err(|e| bad(format!("its header is not valid: {e}")))?;
    let authenticated = &backup[..MAGIC.len() + end + 1];
    Ok((authenticated, header, &rest[end + 1..]))
}

/// Opens a backup with `provider` (the provider named in its header): its records, in
/// zeroizing memory.
pub fn open(backup: &[u8], provider: &dyn SealingProvider) -> Result<Records, KeystoreError> {
    let (authenticated, header, sealed) = split(backup)?;
    if header.provider != provider.name() {
        return Err(bad(format!(
            "it is sealed by the {} provider, not {}",
            header.provider,
            provider.name()
        )));
    }
    let nonce: [u8; NONCE_LEN] = hex::decode(&header.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| bad("its nonce is not valid"))?;
    check_cost(&header)?;
    let (kek, _) = provider.key_encryption_key(Some(&header.params))?;
    let archive = Zeroizing::new(
        XChaCha20Poly1305::new(kek.as_ref().into())
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: authenticated,
                },
            )
            .map_err(|_| {
                bad("it does not open with this key: a wrong passphrase or key, or the file was changed or cut")
            })?,
    );
    let mut records = Vec::with_capacity(header.records.min(4096));
    let mut rest: &[u8] = &archive;
    while !rest.is_empty() {
        let cut = || bad("its archive is malformed");
        let (len, tail) = rest.split_at_checked(2).ok_or_else(cut)?;
        let len = usize::from(u16::from_be_bytes(len.try_into().map_err(|_| cut())?));
        let (path, tail) = tail.split_at_checked(len).ok_or_else(cut)?;
        let (len, tail) = tail.split_at_checked(4).ok_or_else(cut)?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| cut())?) as usize;
        let (bytes, tail) = tail.split_at_checked(len).ok_or_else(cut)?;
        let path = std::str::from_utf8(path).map_err(|_| cut())?;
        let id =
            RecordId::from_path(path).ok_or_else(|| bad(format!("it names an unknown record {path:?}")))?;
        records.push((id, Zeroizing::new(bytes.to_vec())));
        rest = tail;
    }
    if records.len() != header.records {
        return Err(bad("its record count differs from its header"));
    }
    Ok(records)
}
