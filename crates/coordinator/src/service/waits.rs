//! Waiting for an operation to change (`waitForOperation`): an operator waits for a result,
//! and a device that approved waits for the quorum, in one request instead of polling.
//!
//! A commit on an operation wakes the requests waiting on that operation in this process
//! ([`Waiters`]: one [`Notify`] per operation someone waits on, so a commit wakes only its
//! own waiters). Another coordinator process sharing the database wakes nobody here, so a
//! waiter also reads the operation again every `--wait-recheck-ms` (1 s by default; which
//! also expires it when it is due). At most [`MAX_WAITS`] requests wait at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use super::Service;
use crate::domain::*;
use crate::error::{Error, ErrorCode, Result};

/// Requests waiting at once, in all: beyond it `waitForOperation` answers
/// `TOO_MANY_REQUESTS` (the caller reads `operation(id)` instead). Each waiter reads its
/// operation once per recheck interval, so this bounds those reads too.
pub const MAX_WAITS: usize = 1024;

/// The operations requests wait on, each with what wakes its waiters.
pub(crate) struct Waiters {
    /// By operation: what wakes its waiters, and how many wait.
    by_operation: Mutex<HashMap<OperationId, (Arc<Notify>, usize)>>,
    slots: Arc<Semaphore>,
}

impl Default for Waiters {
    fn default() -> Self {
        Waiters {
            by_operation: Mutex::default(),
            slots: Arc::new(Semaphore::new(MAX_WAITS)),
        }
    }
}

/// One request's wait on one operation; leaves the table with its operation's last waiter.
struct Waiting<'a> {
    waiters: &'a Waiters,
    id: OperationId,
    notify: Arc<Notify>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Waiters {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<OperationId, (Arc<Notify>, usize)>> {
        self.by_operation.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A wait on `id`; `None` when [`MAX_WAITS`] requests wait already.
    fn wait_on(&self, id: &OperationId) -> Option<Waiting<'_>> {
        let slot = self.slots.clone().try_acquire_owned().ok()?;
        let mut table = self.table();
        let (notify, count) = table
            .entry(id.clone())
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        *count += 1;
        Some(Waiting {
            waiters: self,
            id: id.clone(),
            notify: notify.clone(),
            _slot: slot,
        })
    }

    /// Wakes the requests waiting on `id` (a commit on it).
    pub(crate) fn changed(&self, id: &OperationId) {
        let waiting = self.table().get(id).map(|(n, _)| n.clone());
        if let Some(n) = waiting {
            n.notify_waiters();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table().len()
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut table = self.waiters.table();
        if let Some((_, count)) = table.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                table.remove(&self.id);
            }
        }
    }
}

impl Service {
    /// Operation `id` as soon as it is final, or no longer in state `state` when that is
    /// given; otherwise as it is when `within` has passed.
    pub async fn wait_for_operation(
        &self,
        p: &Principal,
        id: &str,
        state: Option<OperationState>,
        within: Duration,
    ) -> Result<Operation> {
        let deadline = tokio::time::Instant::now() + within;
        let waiting = self
            .waiters
            .wait_on(&OperationId::from_string(id))
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::TooManyRequests,
                    format!("{MAX_WAITS} requests wait for operations already; read operation(id) instead"),
                )
            })?;
        loop {
            // Registered before the read: a commit between the read and the wait wakes it.
            let woken = waiting.notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let op = self.operation(p, id).await?;
            let moved = state.is_some_and(|s| s != op.state);
            if op.state.is_final() || moved || tokio::time::Instant::now() >= deadline {
                return Ok(op);
            }
            let recheck = deadline.min(tokio::time::Instant::now() + self.settings.wait_recheck);
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep_until(recheck) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_commit_wakes_only_its_operations_waiters_and_the_table_empties() {
        let waiters = Waiters::default();
        let (a, b) = (
            OperationId::from_string("op_a".to_owned()),
            OperationId::from_string("op_b".to_owned()),
        );
        let on_a = waiters.wait_on(&a).unwrap();
        let on_a_too = waiters.wait_on(&a).unwrap();
        let on_b = waiters.wait_on(&b).unwrap();
        assert!(Arc::ptr_eq(&on_a.notify, &on_a_too.notify));
        assert_eq!(waiters.len(), 2);
        {
            let woken_a = on_a.notify.notified();
            let woken_b = on_b.notify.notified();
            tokio::pin!(woken_a, woken_b);
            woken_a.as_mut().enable();
            woken_b.as_mut().enable();
            waiters.changed(&a);
            // A zero timeout polls once.
            let zero = Duration::ZERO;
            assert!(
                tokio::time::timeout(zero, woken_a).await.is_ok(),
                "a's waiter was not woken"
            );
            assert!(
                tokio::time::timeout(zero, woken_b).await.is_err(),
                "b's waiter was woken by a"
            );
        }
        drop(on_a);
        assert_eq!(waiters.len(), 2, "another request still waits on a");
        drop((on_a_too, on_b));
        assert_eq!(waiters.len(), 0);
        // Nobody waits: nothing to wake.
        waiters.changed(&a);
    }

    #[test]
    fn waits_are_bounded() {
        let waiters = Waiters::default();
        let id = OperationId::from_string("op_a");
        let held: Vec<_> = (0..MAX_WAITS).map(|_| waiters.wait_on(&id).unwrap()).collect();
        assert!(waiters.wait_on(&id).is_none());
        drop(held);
        assert_eq!(waiters.len(), 0);
        assert!(waiters.wait_on(&id).is_some());
    }
}
