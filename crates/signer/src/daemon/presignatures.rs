//! The keeper of a vault's ECDSA presignature pool: the device of index 0 in the signer set
//! asks the coordinator for presign runs of the default committee until
//! `PresignaturePoolTarget` are available or being made.
//!
//! Presignatures live in this process's memory only
//! ([`Presignatures`](crate::protocol::presign::Presignatures)): at start the daemon deletes
//! any an earlier version stored, and tells the coordinator that each of its devices holds
//! none (`discardPresignatures`), so that no signature waits for one that is gone.

use std::time::Duration;

use chrono::{DateTime, Utc};
use vsigner_keystore::{Keystore, RecordKind};

use super::{Daemon, DeviceRuntime};
use crate::metrics;

/// Deletes presignature records an earlier version stored: a stored presignature can be
/// brought back by restoring storage, and used twice it reveals the key share.
pub(super) async fn forget_stored(keystore: &Keystore) {
    let Ok(records) = keystore.list().await else {
        return;
    };
    let mut deleted = 0;
    for info in records
        .into_iter()
        .filter(|r| r.id.kind() == RecordKind::Presignature)
    {
        match keystore.delete(&info.id).await {
            Ok(()) => deleted += 1,
            Err(e) => tracing::warn!(error = %e, "cannot delete a stored presignature"),
        }
    }
    if deleted > 0 {
        tracing::warn!(
            deleted,
            "deleted stored presignatures (presignatures now live in process memory only)"
        );
    }
}

/// A committee whose last presignature run failed is not asked again for this long.
pub const PRESIGN_RETRY_PAUSE_SECS: i64 = 60;
/// Most presignatures asked for at once (the coordinator's limit per request).
pub const MAX_PRESIGNATURES_PER_REQUEST: usize = 100;
/// The presignature pool is checked every this many polls...
pub const PRESIGNATURE_CHECK_EVERY: u64 = 5;
/// ...and at most this often: a device woken by a notification for each operation polls many
/// times a second, and each check lists the organisation's vaults and their presignatures.
pub const PRESIGNATURE_CHECK_MIN_INTERVAL: Duration = Duration::from_millis(500);
/// A check that is due waits while the device votes or runs an operation, for at most this
/// long after the last check: under a steady stream of operations the pool is still kept.
pub const PRESIGNATURE_CHECK_PATIENCE: Duration = Duration::from_secs(2);

impl Daemon {
    /// Tells the coordinator, for every device, that it holds none of its presignatures
    /// (this process just started). A device the coordinator cannot be told about keeps
    /// running: a signature assigned one of its old presignatures fails and is retried.
    pub(super) async fn discard_presignatures_at_start(&self) {
        let devices: Vec<_> = self.inner.devices.read().await.values().cloned().collect();
        for device in devices {
            match self
                .inner
                .coordinator
                .discard_presignatures(&self.acting(&device), "the signer process restarted")
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(device = %device.id, discarded = n, "the coordinator discarded this device's presignatures from before the restart")
                }
                Err(e) => {
                    tracing::warn!(device = %device.id, error = %e, "could not tell the coordinator that this device's presignatures are gone")
                }
            }
        }
    }

    /// Keeps `PresignaturePoolTarget` presignatures stocked (available or being made) for
    /// the default committee (the first `threshold` signers by index) of every Active
    /// ECDSA vault whose signer of index 0 is this device: one keeper per vault, so
    /// members do not request the same stock twice.
    pub(super) async fn maintain_presignatures(&self, device: &DeviceRuntime) {
        let target = self.inner.config.presignature_pool_target as usize;
        let vaults = match self.inner.coordinator.vaults().await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list vaults for the presignature pool");
                return;
            }
        };
        for vault in vaults {
            let mut signers = vault.signers.clone();
            signers.sort_by_key(|s| s.index);
            if !matches!(vault.curve.as_str(), "secp256k1" | "secp256r1")
                || vault.status != "Active"
                || signers.first().map(|s| s.device_id.as_str()) != Some(device.id.as_str())
            {
                continue;
            }
            // The first signers whose weights add up to the threshold, each with all its
            // shares (none, when no such prefix exists).
            let mut committee: Vec<String> = Vec::new();
            let mut weight = 0u32;
            for s in &signers {
                if weight >= u32::from(vault.threshold) {
                    break;
                }
                weight += s.weight;
                committee.push(s.device_id.clone());
            }
            if weight != u32::from(vault.threshold) {
                continue;
            }
            committee.sort();
            let ops = match self.inner.coordinator.operations_of(&vault.id, "Presign").await {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot list presignatures");
                    continue;
                }
            };
            let (mut available, mut coming) = (0usize, 0usize);
            let mut newest_failed: Option<&str> = None;
            for op in &ops {
                let mut members: Vec<String> = op.committee.iter().map(|m| m.device_id.clone()).collect();
                members.sort();
                members.dedup();
                let Some(p) = &op.presign else { continue };
                if members != committee || p.key_generation != vault.key_generation {
                    continue;
                }
                match op.state.as_str() {
                    "Completed" if p.consumed_by.is_none() && p.discarded_by.is_none() => available += 1,
                    "Ready" | "InProgress" => coming += 1,
                    // Newest first: remember when the latest run of this committee failed.
                    "Failed" | "Expired" if newest_failed.is_none() && available + coming == 0 => {
                        newest_failed = Some(op.updated_at.as_str());
                    }
                    _ => {}
                }
            }
            metrics::presignature_pool(&vault.id, available);
            // A committee whose last presign failed gets a pause before the next attempt
            // (a broken member must not cause an endless stream of runs).
            let recently_failed = newest_failed
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| {
                    Utc::now().signed_duration_since(t) < chrono::Duration::seconds(PRESIGN_RETRY_PAUSE_SECS)
                });
            let missing = target
                .saturating_sub(available + coming)
                .min(MAX_PRESIGNATURES_PER_REQUEST);
            if recently_failed {
                tracing::debug!(vault = %vault.id, "the last presignature run of the committee failed; pausing");
            } else if missing > 0 {
                match self
                    .inner
                    .coordinator
                    .request_presignatures(&vault.id, &committee, missing as u32)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(vault = %vault.id, available, coming, requested = missing, "presignatures requested")
                    }
                    Err(e) => tracing::warn!(vault = %vault.id, error = %e, "cannot request presignatures"),
                }
            }
        }
    }
}
