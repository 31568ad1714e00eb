//! The loop of one device: poll the coordinator (and wake on its MQTT notifications),
//! claim each operation once, and hand it to [`vote`](super::vote) or
//! [`take_part`](super::take_part) on a task of its own.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use super::confirm::COMMIT_CHECK_EVERY;
use super::{lock, Daemon, DeviceRuntime, InflightGuard, APPROVAL_MEMORY, PRESIGNATURE_CHECK_EVERY};
use crate::coordinator_api::ApiError;
use crate::metrics;

impl Daemon {
    pub(super) async fn device_loop(
        &self,
        device: Arc<DeviceRuntime>,
        mut notifications: Option<tokio::sync::mpsc::Receiver<bytes::Bytes>>,
    ) {
        let mut reconnects = 0;
        let mut rounds: u64 = 0;
        loop {
            self.poll_device(&device).await;
            if self.inner.config.presignature_pool_target > 0
                && rounds.is_multiple_of(PRESIGNATURE_CHECK_EVERY)
            {
                self.maintain_presignatures(&device).await;
            }
            if rounds > 0 && rounds.is_multiple_of(COMMIT_CHECK_EVERY) {
                self.commit_pending(&device).await;
                self.reconcile_recovery_files(&[device.id.as_str()], false).await;
            }
            rounds += 1;
            let stats = device.link.stats();
            for _ in reconnects..stats.reconnects {
                metrics::mqtt_reconnect(&device.id);
            }
            reconnects = stats.reconnects;
            let notified = async {
                match notifications.as_mut() {
                    Some(rx) => {
                        if rx.recv().await.is_none() {
                            notifications = None;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.inner.stop.cancelled() => break,
                () = tokio::time::sleep(self.inner.config.poll_interval) => {}
                () = device.wake.notified() => {}
                () = notified => {}
            }
        }
    }

    pub(super) fn coordinator_result<T>(&self, r: &Result<T, ApiError>) {
        if let Ok(_) | Err(ApiError::Refused { .. }) = r {
            *lock(&self.inner.coordinator_seen) = Some(Instant::now());
        }
    }

    pub(super) fn claim(&self, device: &str, op: &str) -> Option<InflightGuard> {
        let key = (device.to_owned(), op.to_owned());
        let mut work = lock(&self.inner.work);
        if self.inner.stop.is_cancelled()
            || work.finished.contains(&key)
            || !work.inflight.insert(key.clone())
        {
            return None;
        }
        drop(work);
        Some(InflightGuard {
            inner: self.inner.clone(),
            key,
        })
    }

    pub(super) async fn poll_device(&self, device: &Arc<DeviceRuntime>) {
        let awaiting = self.inner.coordinator.operations_awaiting_vote(&device.id).await;
        self.coordinator_result(&awaiting);
        match awaiting {
            Ok(ops) => {
                for op in ops {
                    if let Some(guard) = self.claim(&device.id, &op.id) {
                        let (daemon, device) = (self.clone(), device.clone());
                        let span = tracing::info_span!("vote", device = %device.id, operation_id = %op.id, kind = %op.kind);
                        self.inner.tasks.spawn(
                            async move {
                                let _guard = guard;
                                daemon.vote(&device, op).await;
                            }
                            .instrument(span),
                        );
                    }
                }
            }
            Err(e) => {
                tracing::warn!(device = %device.id, error = %e, "cannot list operations awaiting a vote")
            }
        }
        let ready = self.inner.coordinator.operations_ready(&device.id).await;
        self.coordinator_result(&ready);
        match ready {
            Ok(ops) => {
                // Forget what is over: operations no longer listed are final.
                lock(&self.inner.work)
                    .finished
                    .retain(|(d, o)| d != &device.id || ops.iter().any(|op| &op.id == o));
                lock(&self.inner.approved).retain(|_, (at, _)| at.elapsed() < APPROVAL_MEMORY);
                lock(&self.inner.approval_waits).retain(|_, w| w.since.elapsed() < APPROVAL_MEMORY);
                for op in ops {
                    if let Some(guard) = self.claim(&device.id, &op.id) {
                        let (daemon, device) = (self.clone(), device.clone());
                        let span = tracing::info_span!("operation", device = %device.id, operation_id = %op.id, kind = %op.kind, vault_id = %op.vault_id);
                        self.inner.tasks.spawn(
                            async move {
                                let _guard = guard;
                                daemon.take_part(&device, op).await;
                            }
                            .instrument(span),
                        );
                    }
                }
            }
            Err(e) => tracing::warn!(device = %device.id, error = %e, "cannot list ready operations"),
        }
    }

    pub(super) fn finish(&self, device: &str, op: &str) {
        lock(&self.inner.work)
            .finished
            .insert((device.to_owned(), op.to_owned()));
    }
}
