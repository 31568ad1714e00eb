//! Submitting a run's result: retried on network errors until the coordinator takes it or
//! ends the operation (the result is stored, so retrying is safe), then the follow-up of a
//! keygen or reshare ([`confirm`](super::confirm)). A new holder's `submitReshareResult` is
//! its signed receipt: the statement every participant waits for before destroying
//! anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use super::{kind_of, Daemon, DeviceRuntime, COMPLETION_WAIT};
use crate::coordinator_api::{ApiError, Operation};
use crate::metrics::{self, Outcome};
use crate::protocol::Submission;

impl Daemon {
    pub(super) async fn submit(&self, device: &Arc<DeviceRuntime>, op: &Operation, submission: Submission) {
        let mut pause = Duration::from_millis(500);
        let deadline = Instant::now() + COMPLETION_WAIT;
        loop {
            let result = self
                .submit_once(device, op, &submission)
                .instrument(tracing::info_span!("submit"))
                .await;
            match result {
                // Network trouble: the result is stored, so retry until the coordinator
                // takes it or ends the operation.
                Err(e)
                    if e.is_transient() && Instant::now() < deadline && !self.inner.stop.is_cancelled() =>
                {
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "result not submitted yet");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
                result => {
                    self.submitted(op, result).await;
                    break;
                }
            }
        }
        match submission {
            Submission::Signature { .. } | Submission::Presign { .. } => {}
            Submission::Keygen { .. } => self.follow_up_keygen(device, op).await,
            Submission::Reshare { generation, .. } | Submission::Departed { generation } => {
                self.follow_up_reshare(device, op, generation).await
            }
        }
    }

    pub(super) async fn submit_once(
        &self,
        device: &Arc<DeviceRuntime>,
        op: &Operation,
        submission: &Submission,
    ) -> Result<Option<Operation>, ApiError> {
        let c = &self.inner.coordinator;
        match submission {
            Submission::Keygen {
                public_key,
                chain_code,
                key_set_hash,
                ..
            } => c
                .submit_keygen_result(
                    &op.id,
                    &self.acting(device),
                    public_key,
                    chain_code.as_deref(),
                    key_set_hash,
                )
                .await
                .map(Some),
            Submission::Reshare {
                public_key,
                key_set_hash,
                ..
            } => c
                .submit_reshare_result(&op.id, &self.acting(device), public_key, key_set_hash)
                .await
                .map(Some),
            Submission::Departed { .. } => Ok(None),
            Submission::Presign { fingerprint } => c
                .submit_presign_result(&op.id, &self.acting(device), fingerprint)
                .await
                .map(Some),
            Submission::Signature {
                signature,
                recovery_id,
            } => c
                .submit_signature(&op.id, &self.acting(device), signature, *recovery_id)
                .await
                .map(Some),
        }
    }

    pub(super) async fn submitted(&self, op: &Operation, result: Result<Option<Operation>, ApiError>) {
        let c = &self.inner.coordinator;
        match result {
            Ok(_) => {
                metrics::operation_finished(kind_of(op), Outcome::Succeeded);
                tracing::info!("result submitted");
            }
            Err(e) => {
                // Another member's signature may have completed the operation first.
                match c.operation(&op.id).await {
                    Ok(now) if now.state == "Completed" => {
                        metrics::operation_finished(kind_of(op), Outcome::Succeeded);
                        tracing::info!("the operation was completed by another committee member");
                    }
                    _ => {
                        metrics::operation_finished(kind_of(op), Outcome::Failed);
                        tracing::error!(error = %e, "the coordinator did not accept the result");
                    }
                }
            }
        }
    }
}
