//! Share confirmation: after a keygen or reshare completes, the device confirms the new
//! generation of its share (destroying the previous one) once the stored share has the
//! vault's public key and key-set hash; a device that left the signer set destroys its
//! share. At start, generations completed while the daemon was down are confirmed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vsigner_keystore::RecordKind;

use super::{Daemon, DeviceRuntime, COMPLETION_WAIT};
use crate::coordinator_api::Operation;

impl Daemon {
    /// Waits for a keygen/reshare to reach a final state, then confirms this device's new
    /// share generation, or, when `departed` (it dealt in a reshare whose run succeeded,
    /// every new holder having proved its share, and holds no new share), destroys its
    /// shares of the vault.
    pub(super) async fn follow_up(&self, device: &Arc<DeviceRuntime>, op: &Operation, departed: bool) {
        let deadline = Instant::now() + COMPLETION_WAIT;
        loop {
            match self.inner.coordinator.operation(&op.id).await {
                Ok(now) if now.is_final() => {
                    if now.state == "Completed" {
                        self.reconcile_vault(&device.id, &op.vault_id, departed).await;
                    } else {
                        tracing::warn!(state = %now.state, "the operation did not complete; the new share stays unconfirmed and unused");
                    }
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "waiting for the operation to complete"),
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

    /// Brings the stored shares of `device` for `vault` in line with the coordinator: the
    /// vault's current generation is confirmed (older ones destroyed) when the locally stored
    /// share of that generation has the vault's public key and key-set hash; with
    /// `departed`, a device no longer in the signer set destroys its shares.
    pub(super) async fn reconcile_vault(&self, device: &str, vault_id: &str, departed: bool) {
        let ks = &self.inner.keystore;
        let vault = match self.inner.coordinator.vault(vault_id).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(vault = vault_id, error = %e, "cannot read the vault to confirm shares");
                return;
            }
        };
        if vault.status != "Active" {
            return;
        }
        let generations = match ks.share_generations(device, vault_id).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "keystore");
                return;
            }
        };
        let confirmed = ks.confirmed_generation(device, vault_id).await.ok().flatten();
        let member = vault.signers.iter().any(|s| s.device_id == device);
        let result = if member && generations.contains(&vault.key_generation) {
            if confirmed == Some(vault.key_generation) {
                return;
            }
            // The coordinator's word is not enough to destroy the previous generation: the
            // stored share must be of the vault's key and key set.
            match self.share_matches(device, &vault).await {
                Ok(()) => {}
                Err(why) => {
                    tracing::error!(device, vault = vault_id, generation = vault.key_generation, reason = %why,
                        "the stored share does not match the coordinator's vault; not confirmed");
                    return;
                }
            }
            ks.confirm_generation(device, vault_id, vault.key_generation)
                .await
        } else if departed
            && !member
            && generations.iter().all(|g| *g < vault.key_generation)
            && !generations.is_empty()
        {
            ks.confirm_departure(device, vault_id, vault.key_generation).await
        } else {
            return;
        };
        match result {
            Ok(deleted) => {
                tracing::info!(
                    device,
                    vault = vault_id,
                    generation = vault.key_generation,
                    destroyed_generations = ?deleted,
                    member,
                    "share generation confirmed"
                );
                if !deleted.is_empty() {
                    self.forget_presignatures(device, vault_id).await;
                }
            }
            Err(e) => {
                tracing::error!(device, vault = vault_id, error = %e, "cannot confirm the share generation")
            }
        }
    }

    /// Deletes this device's presignatures of `vault`: they belong to a key generation
    /// that was just replaced and can never be used.
    pub(super) async fn forget_presignatures(&self, device: &str, vault_id: &str) {
        let ks = &self.inner.keystore;
        let Ok(records) = ks.list().await else { return };
        for r in records {
            if r.id.kind() == RecordKind::Presignature
                && r.id.device() == device
                && r.id.vault() == Some(vault_id)
            {
                if let Err(e) = ks.delete(&r.id).await {
                    tracing::warn!(error = %e, "cannot delete an outdated presignature");
                }
            }
        }
    }

    /// Whether the stored share of `vault`'s current generation has its public key and
    /// key-set hash.
    pub(super) async fn share_matches(
        &self,
        device: &str,
        vault: &crate::coordinator_api::Vault,
    ) -> Result<(), String> {
        let id = vsigner_keystore::RecordId::key_share(device, &vault.id, vault.key_generation)
            .map_err(|e| e.to_string())?;
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

    /// At start: confirm generations the coordinator completed while the daemon was down.
    pub(super) async fn reconcile_shares(&self) {
        let records = match self.inner.keystore.list().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "keystore");
                return;
            }
        };
        let devices: HashSet<String> = self.inner.devices.read().await.keys().cloned().collect();
        let pairs: std::collections::BTreeSet<(String, String)> = records
            .into_iter()
            .filter(|r| r.id.kind() == RecordKind::KeyShare && devices.contains(r.id.device()))
            .filter_map(|r| Some((r.id.device().to_owned(), r.id.vault()?.to_owned())))
            .collect();
        for (device, vault) in pairs {
            self.reconcile_vault(&device, &vault, false).await;
        }
    }
}
