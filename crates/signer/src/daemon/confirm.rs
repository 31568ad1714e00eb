//! Confirming new share generations. Nothing a device holds is destroyed on the
//! coordinator's word:
//!
//! - **Keygen.** The new share (generation 0 of a vault the device held nothing of, see
//!   [`continuity`](crate::protocol::continuity)) is confirmed once the coordinator
//!   completes the keygen with the share's public key and key-set hash. Nothing older
//!   exists, so nothing is destroyed.
//! - **Reshare.** Every participant keeps a [`PendingReshare`] (the new holders, the
//!   key-set hash). The new generation is **committed** when the coordinator's log holds a
//!   receipt from *every* new holder: its `reshare_result` statement for that operation,
//!   with that public key and key-set hash, signed by the key this device pinned for it.
//!   Only then does a new holder confirm the new generation (destroying older ones) and a
//!   departing dealer destroy its share. The coordinator can withhold receipts (nothing is
//!   destroyed then) but cannot forge one. docs/reshare.md ("Commit") has the rule and why
//!   at least `t'` holders of one generation always remain.
//!
//! After a run the device waits for the receipts; a device that missed them (it stopped,
//! the coordinator was down) finds them at start and every [`COMMIT_CHECK_EVERY`] polls.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vsigner_keystore::{RecordId, RecordKind};
use vsigner_records::{Statement, StatementKind};

use super::{Daemon, DeviceRuntime, COMPLETION_WAIT};
use crate::coordinator_api::Operation;
use crate::protocol::reshare::PendingReshare;

/// Pending reshares are checked for receipts (and disaster-recovery files for the shares
/// that have none) every this many polls...
pub(super) const COMMIT_CHECK_EVERY: u64 = 30;
/// ...and at most this often (each check lists the whole keystore).
pub(super) const COMMIT_CHECK_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// Why a pending reshare is not committed yet.
#[derive(Debug)]
enum NotYet {
    /// These new holders' receipts are missing.
    Missing(Vec<String>),
    /// Something is wrong with the local state (logged; retried later).
    Problem(String),
}

impl Daemon {
    /// After a keygen: waits for the coordinator to complete it, then confirms the share.
    pub(super) async fn follow_up_keygen(&self, device: &Arc<DeviceRuntime>, op: &Operation) {
        let deadline = Instant::now() + COMPLETION_WAIT;
        loop {
            match self.inner.coordinator.operation(&op.id).await {
                Ok(now) if now.is_final() => {
                    if now.state == "Completed" {
                        self.confirm_keygen(&device.id, &op.vault_id, Some(&op.id)).await;
                    } else {
                        tracing::warn!(state = %now.state, "the keygen did not complete; its share stays unconfirmed and unused");
                    }
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "waiting for the keygen to complete"),
            }
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = self.inner.stop.cancelled() => return,
            }
        }
    }

    /// After a reshare (new holder or departing dealer): waits for every new holder's
    /// receipt, then commits. Stops waiting once the coordinator reports the operation final
    /// and the receipts still miss (a later check finds them if they come), or at
    /// [`COMPLETION_WAIT`].
    pub(super) async fn follow_up_reshare(
        &self,
        device: &Arc<DeviceRuntime>,
        op: &Operation,
        generation: u64,
    ) {
        let deadline = Instant::now() + COMPLETION_WAIT;
        loop {
            let final_before =
                matches!(self.inner.coordinator.operation(&op.id).await, Ok(now) if now.is_final());
            match self.try_commit(device, &op.vault_id, generation).await {
                Ok(()) => return,
                Err(NotYet::Missing(missing)) if final_before => {
                    tracing::warn!(?missing, generation, "the reshare ended without a receipt from every new holder: the new generation is not committed and nothing is destroyed");
                    return;
                }
                Err(NotYet::Missing(_)) => {}
                Err(NotYet::Problem(why)) => {
                    tracing::error!(reason = %why, generation, "cannot commit the reshare");
                    return;
                }
            }
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = self.inner.stop.cancelled() => return,
            }
        }
    }

    /// Commits every pending reshare of `device` whose receipts are all in.
    pub(super) async fn commit_pending(&self, device: &Arc<DeviceRuntime>) {
        let Ok(records) = self.inner.keystore.list().await else {
            return;
        };
        let pending: Vec<(String, u64)> = records
            .into_iter()
            .filter(|r| r.id.kind() == RecordKind::PendingReshare && r.id.device() == device.id)
            .filter_map(|r| Some((r.id.vault()?.to_owned(), r.id.generation()?)))
            .collect();
        for (vault, generation) in pending {
            match self.try_commit(device, &vault, generation).await {
                Ok(()) => {}
                Err(NotYet::Missing(missing)) => {
                    tracing::debug!(vault = %vault, generation, ?missing, "reshare not committed yet")
                }
                Err(NotYet::Problem(why)) => {
                    tracing::warn!(vault = %vault, generation, reason = %why, "cannot commit a pending reshare")
                }
            }
        }
    }

    /// Commits generation `generation` of `vault` for `device` if every new holder's receipt
    /// is in the coordinator's log.
    async fn try_commit(&self, device: &DeviceRuntime, vault: &str, generation: u64) -> Result<(), NotYet> {
        let ks = &self.inner.keystore;
        let problem = |e: String| NotYet::Problem(e);
        let id =
            RecordId::pending_reshare(&device.id, vault, generation).map_err(|e| problem(e.to_string()))?;
        let Some(bytes) = ks.get(&id).await.map_err(|e| problem(format!("keystore: {e}")))? else {
            // Committed meanwhile (a newer generation's commit removes older records).
            return Ok(());
        };
        let pending = PendingReshare::parse(&bytes).map_err(problem)?;
        let statements = self
            .inner
            .coordinator
            .device_statements(&pending.operation_id)
            .await
            .map_err(|e| NotYet::Missing(vec![format!("(the coordinator's log is unreachable: {e})")]))?;
        let mut missing = Vec::new();
        // At most this many of one holder's logged receipts are checked (a lying log could
        // list thousands, each an Ed25519 verification).
        const CANDIDATES: usize = 8;
        for holder in &pending.new_holders {
            let key = if *holder == device.id {
                hex::decode(device.identity.public_keys().signing_hex())
                    .ok()
                    .and_then(|k| k.try_into().ok())
            } else {
                crate::peers::pinned_signing_key(ks, &device.id, holder).await
            };
            let Some(key) = key else {
                missing.push(format!("{holder} (no pinned key)"));
                continue;
            };
            let statement = Statement {
                organisation_id: &self.inner.config.org_id,
                operation_id: &pending.operation_id,
                device_id: holder,
                kind: StatementKind::ReshareResult,
                content: vec![&pending.public_key, &pending.key_set_hash],
            };
            let receipted = statements
                .iter()
                .filter(|s| {
                    s.device_id == *holder
                        && s.kind == StatementKind::ReshareResult.as_str()
                        && s.content == [pending.public_key.as_str(), pending.key_set_hash.as_str()]
                })
                .take(CANDIDATES)
                .any(|s| statement.verify(&key, &s.signature).is_ok());
            if !receipted {
                missing.push(holder.clone());
            }
        }
        if !missing.is_empty() {
            return Err(NotYet::Missing(missing));
        }
        // The file of the generation this commit replaces goes first, under the lock of
        // the files: a crash in between leaves no file (written again later), never one of
        // a destroyed generation; if it cannot be removed, nothing is committed.
        let files = self.inner.recovery_files.lock().await;
        if ks
            .get(&id)
            .await
            .map_err(|e| problem(format!("keystore: {e}")))?
            .is_none()
        {
            // Another check committed it while this one read the receipts.
            return Ok(());
        }
        self.remove_recovery_files_locked(&device.id, vault)
            .await
            .map_err(|why| {
                problem(format!(
                    "the disaster-recovery file of the generation before stays: {why}"
                ))
            })?;
        let curve = pending.curve.clone();
        let public_key_of = move |record: &[u8]| {
            crate::protocol::share_summary(&curve, record)
                .ok()
                .map(|(public_key, _)| public_key.into_bytes())
        };
        let result = if pending.holds_share {
            ks.confirm_generation(&device.id, vault, generation, &public_key_of)
                .await
        } else {
            ks.confirm_departure(&device.id, vault, generation, pending.public_key.as_bytes())
                .await
        };
        drop(files);
        match result {
            Ok(destroyed) => {
                let forgotten = self.inner.presignatures.forget_vault(&device.id, vault);
                tracing::info!(
                    device = %device.id,
                    vault,
                    generation,
                    destroyed_generations = ?destroyed,
                    member = pending.holds_share,
                    presignatures_forgotten = forgotten,
                    "reshare committed: every new holder's receipt is in"
                );
                if pending.holds_share {
                    self.write_recovery_file(&device.id, vault, Some(&pending.operation_id))
                        .await;
                }
                Ok(())
            }
            Err(e) => {
                // The generation before stays confirmed: its file comes back.
                self.write_recovery_file(&device.id, vault, None).await;
                Err(problem(format!("cannot commit generation {generation}: {e}")))
            }
        }
    }

    /// Confirms a keygen's share of `vault` once the coordinator reports the vault Active
    /// with the share's public key and key-set hash. Only a device that has confirmed
    /// nothing of the vault and holds exactly that one generation confirms: nothing older
    /// exists, so nothing is destroyed.
    /// `request` is the keygen, when the caller knows it (a label of the disaster-recovery
    /// file).
    pub(super) async fn confirm_keygen(&self, device: &str, vault_id: &str, request: Option<&str>) {
        let ks = &self.inner.keystore;
        let vault = match self.inner.coordinator.vault(vault_id).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(vault = vault_id, error = %e, "cannot read the vault to confirm its share");
                return;
            }
        };
        let generations = ks.share_generations(device, vault_id).await.unwrap_or_default();
        let confirmed = ks.confirmed_generation(device, vault_id).await.ok().flatten();
        let pending = ks.pending_reshares(device, vault_id).await.unwrap_or_default();
        if vault.status != "Active"
            || confirmed.is_some()
            || !pending.is_empty()
            || generations != [vault.key_generation]
        {
            return;
        }
        if let Err(why) = self.share_matches(device, &vault).await {
            tracing::error!(device, vault = vault_id, generation = vault.key_generation, reason = %why,
                "the stored share does not match the coordinator's vault; not confirmed");
            return;
        }
        let curve = vault.curve.clone();
        let public_key_of = move |record: &[u8]| {
            crate::protocol::share_summary(&curve, record)
                .ok()
                .map(|(public_key, _)| public_key.into_bytes())
        };
        match ks
            .confirm_generation(device, vault_id, vault.key_generation, &public_key_of)
            .await
        {
            Ok(_) => {
                tracing::info!(
                    device,
                    vault = vault_id,
                    generation = vault.key_generation,
                    "key share confirmed"
                );
                self.write_recovery_file(device, vault_id, request).await;
            }
            Err(e) => tracing::error!(device, vault = vault_id, error = %e, "cannot confirm the key share"),
        }
    }

    /// Whether the stored share of `vault`'s current generation has its public key and
    /// key-set hash.
    async fn share_matches(&self, device: &str, vault: &crate::coordinator_api::Vault) -> Result<(), String> {
        let id = RecordId::key_share(device, &vault.id, vault.key_generation).map_err(|e| e.to_string())?;
        let bytes = self
            .inner
            .keystore
            .get(&id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no share stored")?;
        let (public_key, key_set_hash) =
            crate::protocol::share_summary(&vault.curve, &bytes).map_err(|e| e.reason)?;
        if vault.public_key.as_deref() != Some(public_key.as_str()) {
            return Err("public key differs".into());
        }
        if vault.key_set_hash.as_deref() != Some(key_set_hash.as_str()) {
            return Err("key-set hash differs".into());
        }
        Ok(())
    }

    /// At start: confirm keygens completed while the daemon was down, and commit reshares
    /// whose receipts came in meanwhile.
    pub(super) async fn reconcile_shares(&self) {
        let records = match self.inner.keystore.list().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "keystore");
                return;
            }
        };
        let devices: Vec<Arc<DeviceRuntime>> = self.inner.devices.read().await.values().cloned().collect();
        let ids: HashSet<&str> = devices.iter().map(|d| d.id.as_str()).collect();
        let unconfirmed: std::collections::BTreeSet<(String, String)> = records
            .into_iter()
            .filter(|r| r.id.kind() == RecordKind::KeyShare && ids.contains(r.id.device()))
            .filter_map(|r| Some((r.id.device().to_owned(), r.id.vault()?.to_owned())))
            .collect();
        for (device, vault) in unconfirmed {
            self.confirm_keygen(&device, &vault, None).await;
        }
        for device in &devices {
            self.commit_pending(device).await;
        }
    }
}
