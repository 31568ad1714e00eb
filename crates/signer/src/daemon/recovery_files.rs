//! The daemon's side of disaster recovery: which generation's `.dr` file a device keeps, and
//! when it is written or removed (see [`crate::disaster_recovery`] for the file itself).
//!
//! A device's file always holds its *confirmed* generation:
//! - written after a keygen is confirmed or a reshare committed;
//! - removed before a commit replaces the generation (the commit does not happen if the
//!   removal fails), and for good when the device leaves the signer set;
//! - written again at start for every confirmed generation (the key or directory may have
//!   changed, a crash may have come between a commit and its file), and every
//!   [`COMMIT_CHECK_EVERY`](super::confirm) polls for those that have none (a failed write).
//!
//! A confirmed generation without its share record (the device left, or the record is
//! lost) never removes a file: a departure removes it before its commit, and a lost share's
//! file is what is left of it.
//!
//! Every change of a file and every commit happen under one lock, and a write checks the
//! confirmed generation again under it: a write that waited (for the coordinator's labels)
//! while a commit replaced the generation does not put the old generation back. Everything
//! that decides what a file holds is local (the keystore); the coordinator gives only the
//! request ids written in the clear fields.

use vsigner_keystore::{RecordId, RecordKind};

use super::Daemon;
use crate::disaster_recovery::{curve_of_record, every_curve, RequestIds};

/// The confirmed generation of `vault` for `device` and its share record, if it holds one.
type Confirmed = Option<(u64, Option<zeroize::Zeroizing<Vec<u8>>>)>;

impl Daemon {
    async fn confirmed_share(&self, device: &str, vault: &str) -> Result<Confirmed, String> {
        let ks = &self.inner.keystore;
        let Some(generation) = ks
            .confirmed_generation(device, vault)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let id = RecordId::key_share(device, vault, generation).map_err(|e| e.to_string())?;
        let record = ks.get(&id).await.map_err(|e| e.to_string())?;
        Ok(Some((generation, record)))
    }

    /// Writes `device`'s `.dr` file of `vault` from its confirmed generation, if it holds a
    /// share of it (nothing otherwise). `request` is the
    /// operation that made the generation, when the caller knows it. Failures are logged and
    /// retried by [`Daemon::reconcile_recovery_files`].
    pub(super) async fn write_recovery_file(&self, device: &str, vault: &str, request: Option<&str>) {
        if self.inner.disaster_recovery.is_none() {
            return;
        }
        let generation = match self.inner.keystore.confirmed_generation(device, vault).await {
            Ok(Some(g)) => g,
            Ok(None) => return,
            Err(why) => {
                tracing::error!(device, vault, reason = %why, "cannot read the confirmed share for the disaster-recovery file");
                return;
            }
        };
        // A device that left holds no share of the generation: no file, and no question to
        // the coordinator (a listing, nothing decrypted).
        if !self
            .inner
            .keystore
            .share_generations(device, vault)
            .await
            .is_ok_and(|held| held.contains(&generation))
        {
            return;
        }
        // Labels first (the coordinator may be slow); what the file holds is read under
        // the lock.
        let ids = self.request_ids(vault, generation, request).await;
        let _files = self.inner.recovery_files.lock().await;
        self.write_recovery_file_locked(device, vault, generation, ids)
            .await;
    }

    /// [`Daemon::write_recovery_file`] with the lock held; `expected` is the generation the
    /// labels `ids` are for: the file is written only if it is still the confirmed one.
    async fn write_recovery_file_locked(&self, device: &str, vault: &str, expected: u64, ids: RequestIds) {
        let Some(dr) = self.inner.disaster_recovery.clone() else {
            return;
        };
        let (generation, record) = match self.confirmed_share(device, vault).await {
            Ok(Some(found)) => found,
            Ok(None) => return,
            Err(why) => {
                tracing::error!(device, vault, reason = %why, "cannot read the confirmed share for the disaster-recovery file");
                return;
            }
        };
        let Some(record) = record else {
            // Left the signer set (its file went before the commit), or the share is lost:
            // then the file is what is left of it, and it stays.
            return;
        };
        if generation != expected {
            // A commit replaced the generation meanwhile: its own write labels it.
            return;
        }
        let Some(curve) = curve_of_record(&record) else {
            tracing::error!(
                device,
                vault,
                generation,
                "the stored share is of no known scheme; no disaster-recovery file"
            );
            return;
        };
        match dr.write(device, vault, curve, &ids, &record).await {
            Ok(path) => {
                tracing::info!(device, vault, generation, path = %path.display(), "disaster-recovery file written")
            }
            Err(why) => tracing::error!(device, vault, generation, reason = %why,
                "cannot write the disaster-recovery file (retried later)"),
        }
    }

    /// Removes `device`'s `.dr` file of `vault` before a commit replaces its generation;
    /// the caller holds [`Inner::recovery_files`](super::Inner) and does not commit if this
    /// fails.
    pub(super) async fn remove_recovery_files_locked(&self, device: &str, vault: &str) -> Result<(), String> {
        let Some(dr) = self.inner.disaster_recovery.clone() else {
            return Ok(());
        };
        let mut removed = false;
        for curve in every_curve() {
            match dr.remove(device, vault, curve).await {
                Ok(this) => removed |= this,
                Err(why) => {
                    tracing::error!(device, vault, reason = %why, "cannot remove the disaster-recovery file");
                    return Err(why);
                }
            }
        }
        if removed {
            tracing::info!(device, vault, "disaster-recovery file removed");
        }
        Ok(())
    }

    /// Every confirmed generation of `devices` has its file: at start with `rewrite` (every
    /// file written again: the key or the directory may have changed, or a file may hold a
    /// generation from a time the files were off), and every few polls for the missing ones
    /// (a write that failed is retried).
    pub(super) async fn reconcile_recovery_files(&self, devices: &[&str], rewrite: bool) {
        let Some(dr) = self.inner.disaster_recovery.clone() else {
            return;
        };
        if rewrite {
            match dr.sweep_interrupted_writes().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    files = n,
                    "removed the temporary disaster-recovery files of interrupted writes"
                ),
                Err(why) => tracing::warn!(reason = %why, "cannot sweep the disaster-recovery directory"),
            }
        }
        let Ok(records) = self.inner.keystore.list().await else {
            return;
        };
        let confirmed: Vec<(String, String)> = records
            .into_iter()
            .filter(|r| r.id.kind() == RecordKind::ShareConfirmation && devices.contains(&r.id.device()))
            .filter_map(|r| Some((r.id.device().to_owned(), r.id.vault()?.to_owned())))
            .collect();
        for (device, vault) in confirmed {
            // Whether a file exists is a look at the four names it can have; the write reads
            // the share (and writes nothing for a device that left).
            let present = every_curve()
                .into_iter()
                .any(|curve| dr.exists(&device, &vault, curve).unwrap_or(true));
            if rewrite || !present {
                self.write_recovery_file(&device, &vault, None).await;
            }
        }
    }

    /// The operations that made `generation` of `vault` and the generation before, from the
    /// coordinator's records: labels in the file's clear fields only (`known` wins).
    async fn request_ids(&self, vault: &str, generation: u64, known: Option<&str>) -> RequestIds {
        let completed = |kind: &'static str| async move {
            self.inner
                .coordinator
                .operations_of(vault, kind)
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|o| o.state == "Completed")
                .collect::<Vec<_>>()
        };
        let keygen = || async { completed("Keygen").await.first().map(|o| o.id.clone()) };
        let (this, previous) = if generation == 0 {
            // A keygen: no generation before it, and no query when the caller knows it.
            let this = match known {
                Some(_) => None,
                None => keygen().await,
            };
            (this, None)
        } else {
            let reshares = completed("Reshare").await;
            let made = |g: u64| {
                reshares
                    .iter()
                    .find(|o| o.reshare.as_ref().is_some_and(|r| r.new_generation() == g))
            };
            let this = made(generation);
            let previous = match this
                .and_then(|o| o.reshare.as_ref())
                .map(|r| r.old_key_generation)
            {
                Some(0) => keygen().await,
                Some(g) => made(g).map(|o| o.id.clone()),
                None => None,
            };
            (this.map(|o| o.id.clone()), previous)
        };
        // Labels only, but written into the file: the coordinator's are held to the rule of
        // ids (at most 128 characters of A-Z a-z 0-9 . _ -), or left out.
        let label = |id: &str| {
            RecordId::operation_run("label", id)
                .is_ok()
                .then(|| id.to_owned())
        };
        RequestIds {
            request_id: known
                .or(this.as_deref())
                .and_then(label)
                .unwrap_or_else(|| format!("generation-{generation}")),
            previous_request_id: previous.as_deref().and_then(label),
        }
    }
}
