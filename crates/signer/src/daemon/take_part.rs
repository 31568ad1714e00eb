//! Taking part in a Ready operation: the checks before anything runs (the committee's keys
//! are the registered and pinned ones; the operation is exactly what the approver
//! approved), a concurrency permit (or joining a run another member started), the durable run
//! mark, and the protocol run on a blocking thread, abandoned if the coordinator ends the
//! operation meanwhile; `startOperation` is sent beside a run that lasts
//! ([`START_REPORT_AFTER`]), which does not wait for it, and the mark is written as the
//! protocol starts, which sends nothing that depends on a share before it is durable
//! ([`RunMark`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument as _;
use vsigner_approval::ApprovalRequest;

use super::{kind_of, lock, run_marks, Daemon, DeviceRuntime, PRIME_WAIT, RUN_WATCH_INTERVAL};
use crate::approval_request;
use crate::coordinator_api::Operation;
use crate::metrics::{self, Outcome};
use crate::peers::Listed;
use crate::protocol::{RunContext, RunFailure, RunMark, Submission};

/// While a run waits for a permit, how often it asks the coordinator whether another
/// committee member started the operation.
const JOIN_CHECK_EVERY: Duration = Duration::from_secs(1);
/// A run still going after this long is reported to the coordinator with `startOperation`.
/// A shorter run reports only its result, which starts the operation at the coordinator
/// too: a fast signature then costs two signed calls fewer (one per committee member).
pub(super) const START_REPORT_AFTER: Duration = Duration::from_millis(250);
/// Operations joined beyond `MaxConcurrentOperations`: at most this many times the limit (so
/// at most five times the limit run in all), so that a coordinator reporting every operation
/// started cannot make the instance run without bound.
const JOINED_PER_PERMIT: usize = 4;

/// What a run holds while it runs, shared by the instance's devices in its committee.
/// `MaxConcurrentOperations` bounds the operations this instance starts; an operation another
/// committee member already started is joined without a permit when none is free. Otherwise
/// two instances could each hold their permits for runs the other cannot join, and wait for
/// each other until the protocol's idle timeout.
pub(super) enum RunSlot {
    /// One of the instance's permits, held until the run ends.
    Permit { _held: OwnedSemaphorePermit },
    /// A run joined beyond the limit.
    Joined { _held: JoinedRun },
}

/// Why a run got no slot.
pub(super) enum NoSlot {
    /// The daemon stops.
    Stopping,
    /// The operation ended (this final state) while the run waited.
    Ended(String),
}

/// A place among the runs joined beyond the limit; given back when dropped.
pub(super) struct JoinedRun(Arc<super::Inner>);

impl JoinedRun {
    fn new(inner: &Arc<super::Inner>) -> Option<JoinedRun> {
        let max = inner.config.max_concurrent_operations.max(1) * JOINED_PER_PERMIT;
        inner
            .joined_runs
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| JoinedRun(inner.clone()))
    }
}

impl Drop for JoinedRun {
    fn drop(&mut self) {
        self.0.joined_runs.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How a protocol run ended.
enum RunEnd {
    /// With a result to submit or a failure to report.
    Finished(Result<Submission, RunFailure>),
    /// Abandoned: the coordinator reported the operation final (this state) during the run.
    Abandoned(String),
}

impl Daemon {
    /// Takes part in a Ready or InProgress operation.
    pub(super) async fn take_part(&self, device: &Arc<DeviceRuntime>, op: Operation) {
        if op.submitted_device_ids.contains(&device.id) {
            // Submitted before a restart: only the confirmation is left.
            self.finish(&device.id, &op.id);
            match (op.kind.as_str(), &op.reshare) {
                ("Keygen", _) => self.follow_up_keygen(device, &op).await,
                ("Reshare", Some(r)) => self.follow_up_reshare(device, &op, r.new_generation()).await,
                _ => {}
            }
            return;
        }
        // An old holder that only deals in a reshare may have finished its part before a
        // restart; failing the operation could kill a reshare that is succeeding. If its part
        // was not done, the others time out and report.
        let dealer_only = op.kind == "Reshare"
            && op
                .committee
                .iter()
                .filter(|m| m.device_id == device.id)
                .all(|m| m.new_index.is_none());
        if run_marks::ran(&self.inner.keystore, &device.id, &op.id).await {
            // Started by an earlier process (its protocol state is gone), or listed again
            // by a lying coordinator: never a second run, and the approver is not asked
            // again. The others are told at once instead of waiting for a timeout.
            self.finish(&device.id, &op.id);
            tracing::warn!("this device already ran the operation; it is listed again and refused");
            if !dealer_only {
                let failure = RunFailure {
                    reason: format!(
                        "device {} already ran operation {} (it restarted during the run, or the operation was listed again); it never runs an operation twice",
                        device.id, op.id
                    ),
                    culprits: Vec::new(),
                };
                self.report_failure(device, &op, &failure).await;
            }
            return;
        }
        if op.state == "InProgress" && self.started_before_us(&op) {
            self.finish(&device.id, &op.id);
            if dealer_only {
                tracing::warn!("this device restarted during a reshare it only deals in; not rejoining");
                return;
            }
            let failure = RunFailure {
                reason: format!(
                    "device {} restarted during the protocol run; its protocol state is lost (request the operation again)",
                    device.id
                ),
                culprits: Vec::new(),
            };
            self.report_failure(device, &op, &failure).await;
            return;
        }
        // The directory the vote read, if this process voted; else the last one read, while it
        // is fresh and names every device of the operation; else the coordinator's now.
        let remembered = lock(&self.inner.approved)
            .get(&(device.id.clone(), op.id.clone()))
            .map(|a| a.directory.clone());
        let directory = match remembered {
            Some(d) => d,
            None => {
                let mut ids = approval_request::device_ids(&op);
                ids.extend(op.committee.iter().map(|m| m.device_id.as_str()));
                match self.directory_for(&ids).await {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the organisation's devices; retried at the next poll");
                        return;
                    }
                }
            }
        };
        let request = match self.checked_request(device, &op, &directory).await {
            Ok(request) => request,
            Err(reason) => {
                self.finish(&device.id, &op.id);
                let failure = RunFailure {
                    reason,
                    culprits: Vec::new(),
                };
                self.report_failure(device, &op, &failure).await;
                return;
            }
        };
        let permit = match self.operation_permit(&op).await {
            Ok(slot) => slot,
            Err(NoSlot::Stopping) => return,
            Err(NoSlot::Ended(state)) => {
                // A listing sent before the end must not bring it back (nor a second approval).
                self.finish(&device.id, &op.id);
                tracing::info!(%state, "the operation ended while waiting for a permit; not running it");
                return;
            }
        };
        if self.inner.stop.is_cancelled() {
            return;
        }
        if run_marks::expired(&op) {
            self.finish(&device.id, &op.id);
            tracing::warn!(expires_at = %op.expires_at, "the operation is past its expiry; not running it");
            return;
        }
        // `startOperation` tells the coordinator (and its audit log) that the run began; the
        // coordinator's answer decides nothing here (the device checked the operation itself,
        // and its result starts the operation too), so it is sent off the run's path, and
        // only once the run has lasted `START_REPORT_AFTER`: a run that ends sooner reports
        // only its result (or its failure, which ends the operation). Only the mark comes before the first protocol
        // message that depends on a share: a device never runs an operation twice.
        let acting = self.acting(device);
        let start = async {
            tokio::time::sleep(START_REPORT_AFTER).await;
            let started = self
                .inner
                .coordinator
                .start_operation(&op.id, &acting)
                .instrument(tracing::info_span!("start"))
                .await;
            if let Err(e) = started {
                // Refused because the operation ended (another member's result or failure,
                // expiry): the run ends with it, as `watch_until_final` sees.
                tracing::info!(error = %e, "startOperation not taken; the run goes on until the operation ends");
            }
        };
        // The mark is written while the protocol starts: no message that depends on a share
        // goes out before it is durable (`RunMark`), and a mark that cannot be written ends
        // the run with its reason.
        let run_mark = {
            let (keystore, id, marked_op) = (self.inner.keystore.clone(), device.id.clone(), op.clone());
            RunMark::new(
                async move { run_marks::mark(&keystore, &id, &marked_op).await }
                    .instrument(tracing::info_span!("run_mark")),
            )
        };
        tracing::info!(committee = op.committee.len(), "protocol run starting");
        let started = Instant::now();
        let run = async {
            let marked = async {
                // Whatever the mark's fate, the operation is this device's to finish now.
                let _ = run_mark.written().await;
                self.finish(&device.id, &op.id);
            };
            let ((), outcome) =
                tokio::join!(marked, self.run_protocol(device, &op, request, run_mark.clone()));
            outcome
        };
        // The start is reported only while the protocol runs: a run that ends first drops
        // it, even in flight (its result starts the operation; a failure ends it).
        let outcome = {
            tokio::pin!(run);
            tokio::select! {
                biased;
                outcome = &mut run => outcome,
                () = start => run.await,
            }
        };
        drop(permit);
        match outcome {
            RunEnd::Finished(Ok(submission)) => {
                tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "protocol run finished"
                );
                self.submit(device, &op, submission).await;
            }
            RunEnd::Finished(Err(failure)) => self.report_failure(device, &op, &failure).await,
            RunEnd::Abandoned(state) => {
                tracing::warn!(state = %state, "the coordinator ended the operation during the run; run abandoned");
                metrics::operation_finished(kind_of(&op), Outcome::Failed);
            }
        }
    }

    /// Runs the protocol of `op` on a blocking thread (protocols compute for seconds between
    /// messages), abandoned when the coordinator ends the operation during the run.
    /// Cancelling drops the protocol (and its session) at its next await point.
    async fn run_protocol(
        &self,
        device: &Arc<DeviceRuntime>,
        op: &Operation,
        request: Option<ApprovalRequest>,
        run_mark: RunMark,
    ) -> RunEnd {
        let ctx = RunContext {
            identity: device.identity.clone(),
            link: device.link.clone(),
            keystore: self.inner.keystore.clone(),
            primes: self.inner.primes.clone(),
            idle_timeout: self.inner.config.protocol_idle_timeout,
            prime_wait: PRIME_WAIT.min(self.inner.config.protocol_idle_timeout * 5 / 6),
            aux_options: self.inner.aux_options,
            public_test_primes: self.inner.public_test_primes.clone(),
            presignatures: self.inner.presignatures.clone(),
            run_mark,
        };
        let handle = tokio::runtime::Handle::current();
        let span = tracing::Span::current();
        let run_op = op.clone();
        let cancel = self.inner.hard_stop.child_token();
        let run_cancel = cancel.clone();
        let run = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            handle.block_on(async move {
                tokio::select! {
                    r = ctx.run(&run_op, request.as_ref()) => Some(r),
                    () = run_cancel.cancelled() => None,
                }
            })
        });
        let shut_down = || RunFailure {
            reason: format!("device {} shut down during the protocol run", device.id),
            culprits: vec![],
        };
        tokio::select! {
            r = run => RunEnd::Finished(match r {
                Ok(Some(r)) => r,
                Ok(None) => Err(shut_down()),
                Err(e) => Err(RunFailure { reason: format!("the protocol task ended abnormally: {e}"), culprits: vec![] }),
            }),
            () = cancel.cancelled() => RunEnd::Finished(Err(shut_down())),
            ended = self.watch_until_final(&op.id) => {
                cancel.cancel();
                RunEnd::Abandoned(ended)
            }
        }
    }

    /// Whether `op` started before this process did (an interrupted run).
    pub(super) fn started_before_us(&self, op: &Operation) -> bool {
        DateTime::parse_from_rfc3339(&op.updated_at)
            .map(|t| t.with_timezone(&Utc) < self.inner.started_at)
            .unwrap_or(false)
    }

    pub(super) async fn report_failure(&self, device: &DeviceRuntime, op: &Operation, failure: &RunFailure) {
        tracing::error!(reason = %failure.reason, culprits = ?failure.culprits, "operation failed");
        metrics::operation_finished(kind_of(op), Outcome::Failed);
        if let Err(e) = self
            .inner
            .coordinator
            .report_failure(&op.id, &self.acting(device), &failure.reason, &failure.culprits)
            .await
        {
            tracing::warn!(error = %e, "could not report the failure to the coordinator");
        }
    }

    /// The checks before a device runs `op`: every committee member's keys are the ones
    /// its own signed record names (and the pinned ones, or trusted ones), so nothing is
    /// encrypted to a key the coordinator chose; and, for everything but a presignature
    /// (which signs nothing), the operation is exactly what the approver approved (asked
    /// again if this process does not remember the approval). Returns the approved request.
    pub(super) async fn checked_request(
        &self,
        device: &DeviceRuntime,
        op: &Operation,
        directory: &[crate::coordinator_api::Device],
    ) -> Result<Option<ApprovalRequest>, String> {
        // A coordinator cannot slip in transport keys of its own.
        approval_request::check_committee_keys(op, directory)?;
        let listed: Vec<Listed<'_>> = op
            .committee
            .iter()
            .map(|m| Listed {
                device_id: &m.device_id,
                signing_key: &m.identity_signing_key,
                encryption_key: &m.identity_encryption_key,
                record: m.record.as_deref(),
            })
            .collect();
        self.check_peers(device, &listed)
            .await
            .map_err(|why| format!("device {} refuses to run: {why}", device.id))?;
        if op.kind == "Presign" {
            return Ok(None);
        }
        let request =
            approval_request::build(op, directory).map_err(|e| format!("malformed operation: {e}"))?;
        let key = (device.id.clone(), op.id.clone());
        let approved = lock(&self.inner.approved).remove(&key).map(|a| a.request);
        match approved {
            Some(a) if a == request => Ok(Some(request)),
            Some(_) => Err(format!(
                "device {} refuses to run: the operation differs from what its approver approved",
                device.id
            )),
            None => {
                tracing::info!("no approval of this operation in memory (the daemon restarted); asking the approver again");
                let decision = device.approver.decide(&request).await;
                if decision.is_approval() {
                    Ok(Some(request))
                } else {
                    Err(format!(
                        "device {} no longer approves the operation: {}",
                        device.id, decision.reason
                    ))
                }
            }
        }
    }

    /// What lets this device run operation `op`: the slot another local committee member
    /// holds, or a permit; or, once another member started the operation, a place among the
    /// joined runs (see [`RunSlot`]). Local members of one committee share one slot. While
    /// waiting it keeps looking for a slot a local member got meanwhile and, every
    /// [`JOIN_CHECK_EVERY`] until it is started, asks whether the operation was started.
    /// Refused when the daemon stops or the operation ended meanwhile.
    pub(super) async fn operation_permit(&self, op: &Operation) -> Result<Arc<RunSlot>, NoSlot> {
        let mut started = op.state == "InProgress";
        let mut next_check = Instant::now() + JOIN_CHECK_EVERY;
        loop {
            if let Some(slot) = self.local_slot(&op.id) {
                return Ok(slot);
            }
            if let Ok(p) = self.inner.permits.clone().try_acquire_owned() {
                return Ok(self.share_slot(&op.id, RunSlot::Permit { _held: p }));
            }
            if started {
                if let Some(joined) = JoinedRun::new(&self.inner) {
                    tracing::info!(
                        max_concurrent_operations = self.inner.config.max_concurrent_operations,
                        "no permit free; joining the run another committee member started"
                    );
                    return Ok(self.share_slot(&op.id, RunSlot::Joined { _held: joined }));
                }
            }
            tokio::select! {
                biased;
                () = self.inner.stop.cancelled() => return Err(NoSlot::Stopping),
                p = self.inner.permits.clone().acquire_owned() => {
                    let p = p.map_err(|_| NoSlot::Stopping)?;
                    return Ok(self.share_slot(&op.id, RunSlot::Permit { _held: p }));
                }
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            if !started && Instant::now() >= next_check {
                next_check = Instant::now() + JOIN_CHECK_EVERY;
                let now = tokio::select! {
                    biased;
                    () = self.inner.stop.cancelled() => return Err(NoSlot::Stopping),
                    now = self.inner.coordinator.operation(&op.id) => now,
                };
                if let Ok(now) = now {
                    if now.is_final() {
                        return Err(NoSlot::Ended(now.state));
                    }
                    started = now.state == "InProgress";
                }
            }
        }
    }

    /// The slot a local committee member holds for `op`, if any.
    fn local_slot(&self, op: &str) -> Option<Arc<RunSlot>> {
        lock(&self.inner.operation_permits)
            .get(op)
            .and_then(std::sync::Weak::upgrade)
    }

    /// Makes `slot` operation `op`'s slot, unless a local committee member got one meanwhile
    /// (then `slot` goes back and that one is shared).
    fn share_slot(&self, op: &str, slot: RunSlot) -> Arc<RunSlot> {
        let slot = Arc::new(slot);
        let mut slots = lock(&self.inner.operation_permits);
        slots.retain(|_, w| w.strong_count() > 0);
        if let Some(existing) = slots.get(op).and_then(std::sync::Weak::upgrade) {
            return existing;
        }
        slots.insert(op.to_owned(), Arc::downgrade(&slot));
        slot
    }

    /// Returns the final state once the coordinator reports `op` final (failed by another
    /// member, expired); pending forever otherwise.
    pub(super) async fn watch_until_final(&self, op: &str) -> String {
        loop {
            tokio::time::sleep(RUN_WATCH_INTERVAL).await;
            if let Ok(now) = self.inner.coordinator.operation(op).await {
                if now.is_final() && now.state != "Completed" {
                    return now.state;
                }
            }
        }
    }
}
