//! The loop of one device: poll the coordinator (and wake on its MQTT notifications),
//! claim each operation once, and hand it to [`vote`](super::vote) or
//! [`take_part`](super::take_part) on a task of its own.
//!
//! A notification names the state its operation reached, so a device woken by one lists
//! only that kind of operation (awaiting its vote, or ready); every `PollIntervalSeconds` it
//! lists both whatever the notifications said, so a lost or forged hint only delays work.
//!
//! Between polls the loop keeps house: the presignature pool, pending reshares and missing
//! disaster-recovery files are checked every so many polls, and at most so often
//! ([`Every`]): a busy device polls for every notification, many times a second. The
//! presignature check, which lists the organisation's vaults and their presignatures, also
//! waits while the device votes or runs an operation (up to
//! [`PRESIGNATURE_CHECK_PATIENCE`]), and is done as soon as the device is idle: it is
//! housekeeping, and the operation's calls to the coordinator come first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::confirm::{COMMIT_CHECK_EVERY, COMMIT_CHECK_MIN_INTERVAL};
use super::{
    lock, Daemon, DeviceRuntime, InflightGuard, ReadyHint, APPROVAL_MEMORY, PRESIGNATURE_CHECK_EVERY,
    PRESIGNATURE_CHECK_MIN_INTERVAL, PRESIGNATURE_CHECK_PATIENCE,
};
use crate::coordinator_api::ApiError;
use crate::metrics;
use vsigner_approval::ApprovalMode;

/// A chore of the device loop, due every `polls` polls but at most once per `interval`.
#[derive(Debug)]
struct Every {
    polls: u64,
    interval: Duration,
    /// Polls since it was last done.
    since: u64,
    /// When it was last done (`None`: never, so it is due at once).
    last: Option<Instant>,
}

impl Every {
    /// Due at the first poll.
    fn from_start(polls: u64, interval: Duration) -> Every {
        Every {
            polls,
            interval,
            since: 0,
            last: None,
        }
    }

    /// First due `polls` polls after `now` (and at least `interval` after).
    fn after(polls: u64, interval: Duration, now: Instant) -> Every {
        Every {
            polls,
            interval,
            since: 0,
            last: Some(now),
        }
    }

    /// Counts a poll at `now`; whether the chore is due (then it counts as done).
    fn due(&mut self, now: Instant) -> bool {
        self.due_unless_busy(now, false, Duration::ZERO) == Chore::Due
    }

    /// When a chore that waits for the device to be idle is done all the same (`None`: it
    /// was never done, so it does not wait).
    fn patience_ends(&self, patience: Duration) -> Option<Instant> {
        self.last.map(|last| last + patience)
    }

    /// Counts a poll at `now`, when the device is `busy` or not: whether the chore is due
    /// (then it counts as done), or would be but waits for the device to be idle, which it
    /// does for at most `patience` after the chore was last done.
    fn due_unless_busy(&mut self, now: Instant, busy: bool, patience: Duration) -> Chore {
        let ready = match self.last {
            None => true,
            Some(last) => self.since >= self.polls && now.saturating_duration_since(last) >= self.interval,
        };
        let waits = busy
            && self
                .last
                .is_some_and(|last| now.saturating_duration_since(last) < patience);
        let chore = match (ready, waits) {
            (false, _) => Chore::NotDue,
            (true, true) => Chore::Deferred,
            (true, false) => {
                self.since = 0;
                self.last = Some(now);
                Chore::Due
            }
        };
        self.since += 1;
        chore
    }
}

/// Whether a chore is due at a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chore {
    NotDue,
    Due,
    /// Due, but it waits for the device to be idle.
    Deferred,
}

impl Daemon {
    pub(super) async fn device_loop(
        &self,
        device: Arc<DeviceRuntime>,
        mut notifications: Option<tokio::sync::mpsc::Receiver<bytes::Bytes>>,
    ) {
        let mut reconnects = 0;
        let mut lists = Lists::BOTH;
        let mut last_full = Instant::now();
        let mut presignature_check =
            Every::from_start(PRESIGNATURE_CHECK_EVERY, PRESIGNATURE_CHECK_MIN_INTERVAL);
        let mut commit_check = Every::after(COMMIT_CHECK_EVERY, COMMIT_CHECK_MIN_INTERVAL, Instant::now());
        loop {
            if last_full.elapsed() >= self.inner.config.poll_interval {
                lists = Lists::BOTH;
            }
            self.poll_device(&device, lists).await;
            let now = Instant::now();
            let busy = self.busy(&device.id);
            let presignatures = presignature_check.due_unless_busy(now, busy, PRESIGNATURE_CHECK_PATIENCE);
            // The presignature check waits for the device to be idle, or until this instant.
            let mut presignatures_deferred: Option<Instant> = None;
            if self.inner.config.presignature_pool_target > 0 {
                match presignatures {
                    Chore::Due => self.maintain_presignatures(&device).await,
                    Chore::Deferred => {
                        presignatures_deferred = presignature_check.patience_ends(PRESIGNATURE_CHECK_PATIENCE)
                    }
                    Chore::NotDue => {}
                }
            }
            if commit_check.due(now) {
                self.commit_pending(&device).await;
                self.reconcile_recovery_files(&[device.id.as_str()], false).await;
            }
            // The next full listing is a poll interval after this one's work ended.
            if lists == Lists::BOTH {
                last_full = Instant::now();
            }
            let stats = device.link.stats();
            for _ in reconnects..stats.reconnects {
                metrics::mqtt_reconnect(&device.id);
            }
            reconnects = stats.reconnects;
            let notified = async {
                match notifications.as_mut() {
                    Some(rx) => match rx.recv().await {
                        Some(hint) => {
                            // Notifications that came meanwhile are served by the same listing.
                            let mut lists = self.lists_for(&device.id, &hint);
                            while let Ok(more) = rx.try_recv() {
                                lists = lists.and(self.lists_for(&device.id, &more));
                            }
                            lists
                        }
                        None => {
                            notifications = None;
                            Lists::BOTH
                        }
                    },
                    None => std::future::pending().await,
                }
            };
            let next_full = self
                .inner
                .config
                .poll_interval
                .saturating_sub(last_full.elapsed());
            lists = tokio::select! {
                () = self.inner.stop.cancelled() => break,
                () = tokio::time::sleep(next_full) => Lists::BOTH,
                () = device.wake.notified() => Lists::BOTH,
                // A chore waited for the device to be idle: it is now.
                () = device.idle.notified(), if presignatures_deferred.is_some() => Lists::NONE,
                // ...or its patience ran out, however busy the device stays.
                () = tokio::time::sleep_until(presignatures_deferred.unwrap_or(now).into()),
                    if presignatures_deferred.is_some() => Lists::NONE,
                hinted = notified => hinted,
            };
        }
    }

    /// Claims `op` for `device` and takes part in it on a task of its own (nothing if it is
    /// claimed already).
    fn spawn_take_part(&self, device: &Arc<DeviceRuntime>, op: crate::coordinator_api::Operation) {
        if let Some(guard) = self.claim(device, &op.id) {
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

    pub(super) fn coordinator_result<T>(&self, r: &Result<T, ApiError>) {
        if let Ok(_) | Err(ApiError::Refused { .. }) = r {
            *lock(&self.inner.coordinator_seen) = Some(Instant::now());
        }
    }

    /// Whether a task of `device` holds an operation (votes on it or takes part in it).
    fn busy(&self, device: &str) -> bool {
        lock(&self.inner.work).holds_any(device)
    }

    pub(super) fn claim(&self, device: &Arc<DeviceRuntime>, op: &str) -> Option<InflightGuard> {
        let key = (device.id.clone(), op.to_owned());
        let mut work = lock(&self.inner.work);
        if self.inner.stop.is_cancelled()
            || work.is_finished(&device.id, op)
            || work.inflight.contains_key(&key)
        {
            return None;
        }
        let hint = Arc::new(ReadyHint::default());
        work.hold(key.clone(), hint.clone());
        drop(work);
        Some(InflightGuard {
            inner: self.inner.clone(),
            key,
            hint,
            device: device.clone(),
        })
    }

    /// What the task holding `device`'s operation `op` hears of Ready notifications for it.
    pub(super) fn ready_hint(&self, device: &str, op: &str) -> Option<Arc<ReadyHint>> {
        lock(&self.inner.work)
            .inflight
            .get(&(device.to_owned(), op.to_owned()))
            .cloned()
    }

    /// What a notification asks `device` to list: nothing for a Ready operation the device
    /// is done with, or one a task of the device holds (that task hears of it: see
    /// [`ReadyHint`]); else [`Lists::of_notification`].
    fn lists_for(&self, device: &str, payload: &[u8]) -> Lists {
        let (lists, operation) = Lists::of_notification(payload);
        // People answered (or a new operation came): a device that waits for people asks
        // them again now rather than after its backoff. Only in Human mode, where asking
        // again reads the coordinator; a webhook or node is never asked at its command.
        if let Some(op) = operation.as_ref().filter(|_| lists.awaiting_vote && !lists.ready) {
            if self.inner.config.approval.approval_mode() == ApprovalMode::Human {
                // At most one reading a second, however many notifications come.
                let soon = std::time::Instant::now() + std::time::Duration::from_secs(1);
                if let Some(w) = lock(&self.inner.approval_waits).get_mut(&(device.to_owned(), op.clone())) {
                    w.next = w.next.min(soon);
                }
            }
        }
        let Some(op) = operation.filter(|_| lists == Lists::READY) else {
            return lists;
        };
        let work = lock(&self.inner.work);
        if let Some(hint) = work.inflight.get(&(device.to_owned(), op.clone())) {
            hint.came();
            return Lists::NONE;
        }
        if work.is_finished(device, &op) {
            return Lists::NONE;
        }
        lists
    }

    pub(super) async fn poll_device(&self, device: &Arc<DeviceRuntime>, lists: Lists) {
        if lists.awaiting_vote {
            self.poll_awaiting_vote(device).await;
        }
        if lists.ready {
            self.poll_ready(device).await;
        }
    }

    async fn poll_awaiting_vote(&self, device: &Arc<DeviceRuntime>) {
        let awaiting = self.inner.coordinator.operations_awaiting_vote(&device.id).await;
        self.coordinator_result(&awaiting);
        match awaiting {
            Ok(ops) => {
                for op in ops {
                    if let Some(guard) = self.claim(device, &op.id) {
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
    }

    async fn poll_ready(&self, device: &Arc<DeviceRuntime>) {
        let ready = self.inner.coordinator.operations_ready(&device.id).await;
        self.coordinator_result(&ready);
        match ready {
            Ok(ops) => {
                // Forget what is over: operations no longer listed are final (once no
                // listing sent before the work ended can still arrive).
                let listed: Vec<&str> = ops.iter().map(|op| op.id.as_str()).collect();
                lock(&self.inner.work).seen_listed(&device.id, &listed, Instant::now());
                lock(&self.inner.approved).retain(|_, a| a.at.elapsed() < APPROVAL_MEMORY);
                lock(&self.inner.approval_waits).retain(|_, w| w.since.elapsed() < APPROVAL_MEMORY);
                for op in ops {
                    self.spawn_take_part(device, op);
                }
            }
            Err(e) => tracing::warn!(device = %device.id, error = %e, "cannot list ready operations"),
        }
    }

    pub(super) fn finish(&self, device: &str, op: &str) {
        lock(&self.inner.work).finish(device, op, Instant::now());
    }
}

/// Which lists of operations a device asks the coordinator for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Lists {
    awaiting_vote: bool,
    ready: bool,
}

impl Lists {
    const BOTH: Lists = Lists {
        awaiting_vote: true,
        ready: true,
    };
    const READY: Lists = Lists {
        awaiting_vote: false,
        ready: true,
    };
    const NONE: Lists = Lists {
        awaiting_vote: false,
        ready: false,
    };

    /// What a notification (`{"operationId":…,"state":…}`) asks to list: its state's list,
    /// or both for anything else; and the operation it names.
    fn of_notification(payload: &[u8]) -> (Lists, Option<String>) {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Hint {
            state: String,
            operation_id: Option<String>,
        }
        match serde_json::from_slice::<Hint>(payload) {
            Ok(h) if h.state == "AwaitingApproval" => (
                Lists {
                    awaiting_vote: true,
                    ready: false,
                },
                h.operation_id,
            ),
            Ok(h) if h.state == "Ready" => (Lists::READY, h.operation_id),
            _ => (Lists::BOTH, None),
        }
    }

    fn and(self, other: Lists) -> Lists {
        Lists {
            awaiting_vote: self.awaiting_vote || other.awaiting_vote,
            ready: self.ready || other.ready,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::{Work, FINISHED_MAX, FINISHED_MEMORY};
    use super::{Chore, Every, Lists};

    #[test]
    fn a_chore_is_due_every_so_many_polls_and_at_most_so_often() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut chore = Every::from_start(3, Duration::from_millis(500));
        assert!(chore.due(t0), "due at the first poll");
        // Polls 1 and 2 after it: not yet, however much time passed.
        assert!(!chore.due(ms(1000)));
        assert!(!chore.due(ms(2000)));
        assert!(chore.due(ms(3000)), "the third poll after, and long after");
        // Many quick polls (a notification each): due again only once the interval passed.
        for i in 1..=10 {
            assert!(!chore.due(ms(3000 + i * 10)), "poll {i}, {} ms after", i * 10);
        }
        assert!(chore.due(ms(3500)));
        // Slow polls: every third.
        let due: Vec<bool> = (1..=6).map(|i| chore.due(ms(3500 + i * 5000))).collect();
        assert_eq!(due, [false, false, true, false, false, true]);

        let mut later = Every::after(2, Duration::from_secs(5), t0);
        assert!(!later.due(ms(10_000)), "not at the first poll");
        assert!(!later.due(ms(10_001)));
        assert!(later.due(ms(10_002)));
    }

    #[test]
    fn a_chore_due_while_the_device_is_busy_waits_for_it_to_be_idle_but_not_for_ever() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let patience = Duration::from_millis(2000);
        let mut chore = Every::from_start(2, Duration::from_millis(500));
        assert_eq!(
            chore.due_unless_busy(t0, true, patience),
            Chore::Due,
            "never done: due at once, busy or not"
        );
        assert_eq!(
            chore.due_unless_busy(ms(600), false, patience),
            Chore::NotDue,
            "one poll only"
        );
        // Due by polls and time, but the device is busy: it waits, and is not counted done.
        assert_eq!(chore.due_unless_busy(ms(700), true, patience), Chore::Deferred);
        assert_eq!(chore.due_unless_busy(ms(800), true, patience), Chore::Deferred);
        // Idle: done at once.
        assert_eq!(chore.due_unless_busy(ms(801), false, patience), Chore::Due);
        assert_eq!(chore.due_unless_busy(ms(1400), false, patience), Chore::NotDue);
        // Busy at every poll: done all the same once `patience` passed since the last time.
        for at in [1500, 2000, 2700] {
            assert_eq!(
                chore.due_unless_busy(ms(at), true, patience),
                Chore::Deferred,
                "{at} ms"
            );
        }
        assert_eq!(
            chore.patience_ends(patience),
            Some(ms(2801)),
            "the loop wakes then"
        );
        assert_eq!(chore.due_unless_busy(ms(2801), true, patience), Chore::Due);
        // `due` is never deferred.
        let mut plain = Every::from_start(1, Duration::from_millis(500));
        assert!(plain.due(t0));
        assert!(!plain.due(ms(100)));
        assert!(plain.due(ms(600)));
    }

    #[test]
    fn a_device_is_idle_once_its_last_held_operation_is_let_go() {
        let mut work = Work::default();
        let key = |d: &str, op: &str| (d.to_owned(), op.to_owned());
        work.hold(key("dev_a", "op_1"), Default::default());
        work.hold(key("dev_a", "op_2"), Default::default());
        work.hold(key("dev_b", "op_1"), Default::default());
        assert!(!work.release(&key("dev_a", "op_1")), "dev_a still holds op_2");
        assert!(work.holds_any("dev_a"));
        assert!(
            !work.release(&key("dev_a", "op_1")),
            "let go twice: nothing changes"
        );
        assert!(work.release(&key("dev_a", "op_2")), "dev_a's last operation");
        assert!(!work.holds_any("dev_a"));
        assert!(work.holds_any("dev_b"), "another device's operation is its own");
        assert!(work.release(&key("dev_b", "op_1")));
        assert!(work.held.is_empty() && work.inflight.is_empty());
    }

    #[test]
    fn a_stale_listing_does_not_forget_finished_work() {
        let mut work = Work::default();
        let t0 = Instant::now();
        let later = |secs: u64| t0 + Duration::from_secs(secs);
        work.finish("dev_a", "op_1", t0);
        // Listings without the operation (sent before the work ended, or after it is final):
        // still remembered, so a later stale listing that shows it Ready cannot make the
        // device take part again.
        work.seen_listed("dev_a", &[], later(11));
        assert!(work.is_finished("dev_a", "op_1"));
        assert!(!work.is_finished("dev_b", "op_1"));
        // Listed, it is remembered from then; another device's listing never touches it.
        work.seen_listed("dev_a", &["op_1"], later(500));
        work.seen_listed("dev_b", &[], later(2000));
        work.seen_listed("dev_a", &[], later(1000));
        assert!(work.is_finished("dev_a", "op_1"));
        // Neither listed nor finished for FINISHED_MEMORY: forgotten at the next pruning.
        work.seen_listed("dev_a", &[], later(500) + FINISHED_MEMORY);
        assert!(!work.is_finished("dev_a", "op_1"));
    }

    #[test]
    fn the_finished_memory_is_bounded() {
        let mut work = Work::default();
        let t0 = Instant::now();
        for k in 0..=FINISHED_MAX {
            work.finish("dev_a", &format!("op_{k}"), t0 + Duration::from_micros(k as u64));
        }
        // The oldest went first.
        assert!(work.finished["dev_a"].last_seen.len() <= FINISHED_MAX);
        assert!(!work.is_finished("dev_a", "op_0"));
        assert!(work.is_finished("dev_a", &format!("op_{FINISHED_MAX}")));
    }

    #[test]
    fn a_notification_lists_only_its_state() {
        let of = |s: &str| Lists::of_notification(s.as_bytes()).0;
        assert_eq!(
            Lists::of_notification(br#"{"operationId":"op_1","state":"Ready"}"#)
                .1
                .as_deref(),
            Some("op_1")
        );
        assert_eq!(
            of(r#"{"operationId":"op_1","state":"Ready"}"#),
            Lists {
                awaiting_vote: false,
                ready: true
            }
        );
        assert_eq!(
            of(r#"{"operationId":"op_1","state":"AwaitingApproval"}"#),
            Lists {
                awaiting_vote: true,
                ready: false
            }
        );
        for other in [r#"{"state":"Completed"}"#, "not json", ""] {
            assert_eq!(of(other), Lists::BOTH, "{other}");
        }
        assert_eq!(
            of(r#"{"state":"Ready"}"#).and(of(r#"{"state":"AwaitingApproval"}"#)),
            Lists::BOTH
        );
    }
}
