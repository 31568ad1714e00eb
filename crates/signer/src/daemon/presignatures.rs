//! The keeper of a vault's ECDSA presignature pool: the device of index 0 in the signer set
//! asks the coordinator for presign runs of the default committee until
//! `PresignaturePoolTarget` are available or being made.

use chrono::{DateTime, Utc};

use super::{Daemon, DeviceRuntime};
use crate::metrics;

/// A committee whose last presignature run failed is not asked again for this long.
pub const PRESIGN_RETRY_PAUSE_SECS: i64 = 60;
/// Most presignatures asked for at once (the coordinator's limit per request).
pub const MAX_PRESIGNATURES_PER_REQUEST: usize = 100;
/// The presignature pool is checked every this many polls.
pub const PRESIGNATURE_CHECK_EVERY: u64 = 5;

impl Daemon {
    /// Keeps `PresignaturePoolTarget` presignatures stocked (available or being made) for
    /// the default committee (the first `threshold` signers by index) of every Active
    /// secp256k1 vault whose signer of index 0 is this device: one keeper per vault, so
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
            if vault.curve != "secp256k1"
                || vault.status != "Active"
                || signers.first().map(|s| s.device_id.as_str()) != Some(device.id.as_str())
            {
                continue;
            }
            let mut committee: Vec<String> = signers
                .iter()
                .take(usize::from(vault.threshold))
                .map(|s| s.device_id.clone())
                .collect();
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
                let Some(p) = &op.presign else { continue };
                if members != committee || p.key_generation != vault.key_generation {
                    continue;
                }
                match op.state.as_str() {
                    "Completed" if p.consumed_by.is_none() => available += 1,
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
