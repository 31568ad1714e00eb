//! Voting: the approval request built from the operation as the coordinator describes it,
//! the approver's decision, and the vote. An approval is remembered with the exact request
//! approved, which [`take_part`](super::take_part) compares with the Ready operation.
//!
//! An approver outage delays an operation; it does not reject it. When the approver is only
//! unavailable (unreachable, timed out, HTTP 5xx or 429, an RPC node that cannot be reached:
//! [`vsigner_approval::Decision::retry`]) the device casts no vote and asks again with
//! backoff ([`APPROVAL_RETRY_START`] doubling to [`APPROVAL_RETRY_MAX`], with jitter) until the
//! operation expires, and never after its expiry whatever the coordinator lists. An answer
//! that cannot be trusted (a bad signature or nonce, a 4xx, a malformed reply, a revert, a
//! refused node or contract) is a reject vote, as are rejections; abstentions are final too.
//! A device that refuses the operation itself (it is not what the device holds, or a peer's
//! keys are not its own word) votes reject at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use super::{
    kind_of, lock, Approval, ApprovalWait, Daemon, DeviceRuntime, APPROVAL_RETRY_MAX, APPROVAL_RETRY_START,
    APPROVAL_WAITS_MAX,
};

/// After approving, how long a device waits in one request for the others' votes to make
/// the quorum before it leaves the operation to the notification and the poll.
const QUORUM_WAIT: Duration = Duration::from_secs(10);
/// After a Ready notification, how long the wait for the quorum may still take to answer
/// before the device reads the operation instead.
const READY_HINT_GRACE: Duration = Duration::from_millis(100);
/// The longest wait between two readings of people's answers (`ApprovalMode = Human`).
/// An answer also comes with a notification, which ends the wait at once.
const HUMAN_RETRY_MAX: Duration = Duration::from_secs(4);
use crate::approval_request;
use crate::coordinator_api::Operation;
use crate::metrics::{self, Outcome};
use crate::peers::Listed;
use vsigner_approval::ApprovalMode;

impl Daemon {
    pub(super) async fn vote(&self, device: &Arc<DeviceRuntime>, op: Operation) {
        let key = (device.id.clone(), op.id.clone());
        if lock(&self.inner.approval_waits)
            .get(&key)
            .is_some_and(|w| Instant::now() < w.next)
        {
            return;
        }
        // Past its expiry an operation is not voted on, whatever the coordinator lists (and
        // its approver is not asked again).
        let expired =
            chrono::DateTime::parse_from_rfc3339(&op.expires_at).is_ok_and(|at| at < chrono::Utc::now());
        if expired {
            lock(&self.inner.approval_waits).remove(&key);
            return;
        }
        let directory = match self.directory_for(&approval_request::device_ids(&op)).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the organisation's devices; the vote waits for the next poll");
                return;
            }
        };
        let built = if op.organisation_id == self.inner.config.org_id {
            approval_request::build(&op, &directory)
        } else {
            Err(approval_request::InvalidOperation(format!(
                "it belongs to organisation {}, not {}",
                op.organisation_id, self.inner.config.org_id
            )))
        };
        // Every device of the operation must have a record of its keys that it signed
        // itself (and, with TrustedDeviceKeys, a listed key): a device never approves an
        // operation that would encrypt a share to a key the coordinator chose. What the
        // device holds of the vault decides too: no keygen over a vault it holds, no reshare
        // or signature of another key than its share's (the approver then sees the vault's
        // real key and generation). Both are read at once; either refuses.
        let built = match built {
            Ok(request) => {
                let listed: Vec<Listed<'_>> = approval_request::device_ids(&op)
                    .into_iter()
                    .filter_map(|id| directory.iter().find(|d| d.id == id))
                    .map(|d| Listed {
                        device_id: &d.id,
                        signing_key: &d.identity_signing_key,
                        encryption_key: &d.identity_encryption_key,
                        record: d.record.as_deref(),
                    })
                    .collect();
                let (peers, held) = tokio::join!(
                    self.check_peers(device, &listed),
                    crate::protocol::continuity::check(&self.inner.keystore, &device.id, &op),
                );
                match (peers, held) {
                    (Ok(()), Ok(())) => Ok(request),
                    (Err(why), _) => {
                        tracing::warn!(reason = %why, "the operation involves a device whose keys are not its own word; voting reject");
                        Err(approval_request::InvalidOperation(why))
                    }
                    (Ok(()), Err(why)) => {
                        tracing::warn!(reason = %why, "voting reject");
                        Err(approval_request::InvalidOperation(why))
                    }
                }
            }
            Err(e) => Err(e),
        };
        let (vote, reason) = match built {
            Ok(request) => {
                let asked = Instant::now();
                let decision = device
                    .approver
                    .decide(&request)
                    .instrument(tracing::info_span!("approval"))
                    .await;
                metrics::approval_latency(&decision, asked.elapsed());
                if decision.retry {
                    let human = decision.mode == ApprovalMode::Human;
                    let backoff = self.wait_for_approver(key, human);
                    metrics::approval_retry(&decision);
                    if human {
                        // People take their time: that is no fault.
                        tracing::info!(reason = %decision.reason, retry_in = ?backoff, "no vote yet");
                    } else {
                        tracing::warn!(
                            reason = %decision.reason,
                            retry_in = ?backoff,
                            "the approver gave no answer that can be trusted; no vote, asking again until the operation expires"
                        );
                    }
                    return;
                }
                lock(&self.inner.approval_waits).remove(&key);
                if decision.is_approval() {
                    lock(&self.inner.approved).insert(
                        (device.id.clone(), op.id.clone()),
                        Approval {
                            at: Instant::now(),
                            request,
                            directory: directory.clone(),
                        },
                    );
                }
                (decision.vote, decision.reason)
            }
            Err(e) => (
                vsigner_approval::Vote::Reject,
                format!("the operation is refused: {e}"),
            ),
        };
        match self
            .inner
            .coordinator
            .vote(&op.id, &self.acting(device), vote.as_str())
            .instrument(tracing::info_span!("record_vote"))
            .await
        {
            Ok(now) => {
                tracing::info!(vote = vote.as_str(), reason = %reason, "voted");
                if vote != vsigner_approval::Vote::Approve {
                    metrics::operation_finished(kind_of(&op), Outcome::Rejected);
                }
                // This vote made the quorum, or an approval waits for the others' votes to
                // make it (in one request, briefly): when the operation is Ready with the
                // device in its committee, take part now (under this task's claim of the
                // operation, with the same checks as an operation listed ready) rather than
                // after the notification and a listing, which remain the way in otherwise.
                let waited = now.state == "AwaitingApproval" && vote == vsigner_approval::Vote::Approve;
                let now = if waited {
                    self.quorum_wait(device, &op.id).await
                } else {
                    Some(now)
                };
                let same = |now: &Operation| {
                    now.id == op.id
                        && now.organisation_id == op.organisation_id
                        && now.vault_id == op.vault_id
                        && now.kind == op.kind
                };
                match now {
                    Some(now)
                        if same(&now)
                            && matches!(now.state.as_str(), "Ready" | "InProgress")
                            && now.committee.iter().any(|m| m.device_id == device.id) =>
                    {
                        let span = tracing::info_span!("operation", device = %device.id, operation_id = %now.id, kind = %now.kind, vault_id = %now.vault_id);
                        self.take_part(device, now).instrument(span).await;
                    }
                    // A Ready notification that came while this task held the operation has
                    // the device list again when the task ends (`InflightGuard`).
                    _ => {}
                }
            }
            Err(e) if e.code() == Some("ALREADY_VOTED") => {}
            // The others' votes decided the operation first (or it expired): nothing to retry.
            Err(e) if matches!(e.code(), Some("INVALID_STATE" | "EXPIRED")) => {
                tracing::info!(vote = vote.as_str(), reason = %reason, coordinator = %e, "vote not needed: the operation was decided without it");
            }
            Err(e) => tracing::warn!(error = %e, "vote not recorded; retried at the next poll"),
        }
    }

    /// Operation `op` once the others' votes decided it, if that happens within
    /// [`QUORUM_WAIT`]; `None` when it did not, when the coordinator cannot say (a coordinator
    /// without `waitForOperation` or with too many waiting included) or when the daemon
    /// stops. A Ready notification for it ends the wait within [`READY_HINT_GRACE`] (another
    /// coordinator process may have taken the deciding vote).
    async fn quorum_wait(&self, device: &DeviceRuntime, op: &str) -> Option<Operation> {
        let hint = self.ready_hint(&device.id, op).unwrap_or_default();
        let wait = self
            .inner
            .coordinator
            .wait_for_operation(op, "AwaitingApproval", QUORUM_WAIT.as_secs())
            .instrument(tracing::info_span!("quorum_wait"));
        tokio::pin!(wait);
        let waited = tokio::select! {
            () = self.inner.stop.cancelled() => return None,
            waited = &mut wait => waited,
            // The coordinator that took the deciding vote answers the wait as it notifies, so
            // the answer is usually on its way: a read only if it does not come soon (another
            // coordinator process took the vote, and this one rechecks every second).
            () = hint.notify.notified() => match tokio::time::timeout(READY_HINT_GRACE, &mut wait).await {
                Ok(waited) => waited,
                Err(_) => self.inner.coordinator.operation(op).await,
            },
        };
        match waited {
            Ok(now) if now.state != "AwaitingApproval" => Some(now),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "cannot wait for the quorum; the notification or the next poll brings the operation");
                None
            }
        }
    }

    /// Records that `key`'s approver gave no trustworthy answer; returns how long until it
    /// is asked again (for people, at most [`HUMAN_RETRY_MAX`]: asking reads the coordinator
    /// only, and a person who answered should not wait long).
    fn wait_for_approver(&self, key: (String, String), human: bool) -> Duration {
        let now = Instant::now();
        let mut waits = lock(&self.inner.approval_waits);
        // Bounded whatever the coordinator lists: the oldest wait gives way (that operation
        // is then asked again at its next listing).
        if waits.len() >= APPROVAL_WAITS_MAX && !waits.contains_key(&key) {
            if let Some(oldest) = waits.iter().min_by_key(|(_, w)| w.since).map(|(k, _)| k.clone()) {
                waits.remove(&oldest);
            }
        }
        let w = waits.entry(key).or_insert(ApprovalWait {
            since: now,
            next: now,
            backoff: APPROVAL_RETRY_START / 2,
        });
        let max = if human {
            HUMAN_RETRY_MAX
        } else {
            APPROVAL_RETRY_MAX
        };
        w.backoff = (w.backoff * 2).min(max);
        // Up to a quarter more, so that many devices and operations do not ask at once.
        let quarter = f64::from(rand_core::RngCore::next_u32(&mut rand_core::OsRng) % 1024) / 4096.0;
        let jitter = w.backoff.mul_f64(quarter);
        w.next = now + w.backoff + jitter;
        w.backoff + jitter
    }
}
