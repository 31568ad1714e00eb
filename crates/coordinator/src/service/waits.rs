//! Waiting for an operation to change (`waitForOperation`): an operator waits for a result,
//! and a device that approved waits for the quorum, in one request instead of polling.
//!
//! A commit on an operation wakes the requests waiting on that operation in this process
//! ([`Waiters`]: one [`Notify`] per operation someone waits on, so a commit wakes only its
//! own waiters). Another coordinator process sharing the database wakes nobody here, so a
//! waiter also reads the operation again every `--wait-recheck-ms` (1 s by default; which
//! also expires it when it is due). At most [`MAX_WAITS`] requests wait at once, and
//! [`MAX_WAITS_PER_ORGANISATION`] of one organisation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::Service;
use crate::domain::*;
use crate::error::{Error, ErrorCode, Result};

/// Requests waiting at once in this process, in all: beyond it `waitForOperation` answers
/// `TOO_MANY_REQUESTS` (vsigner's operators then read `operation(id)` instead, and devices
/// rely on notifications and their poll). Each waiter reads its operation once per recheck
/// interval, so this bounds those reads too.
pub const MAX_WAITS: usize = 1024;
/// Requests of one organisation waiting at once in this process: one organisation's clients
/// cannot take every place.
pub const MAX_WAITS_PER_ORGANISATION: usize = 256;

/// The operations requests wait on, each with what wakes its waiters.
#[derive(Default)]
pub(crate) struct Waiters {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// By operation: what wakes its waiters, and how many wait.
    by_operation: HashMap<OperationId, (Arc<Notify>, usize)>,
    /// Waiting requests by organisation.
    by_organisation: HashMap<String, usize>,
    total: usize,
}

/// One request's wait on one operation; gives its place back when dropped.
struct Waiting<'a> {
    waiters: &'a Waiters,
    organisation: String,
    id: OperationId,
    notify: Arc<Notify>,
}

impl Waiters {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A wait on `id` for a client of `organisation`; `None` when [`MAX_WAITS`] requests, or
    /// [`MAX_WAITS_PER_ORGANISATION`] of that organisation, wait already.
    fn wait_on(&self, organisation: &str, id: &OperationId) -> Option<Waiting<'_>> {
        let mut table = self.table();
        let of_organisation = table.by_organisation.get(organisation).copied().unwrap_or(0);
        if table.total >= MAX_WAITS || of_organisation >= MAX_WAITS_PER_ORGANISATION {
            return None;
        }
        table.total += 1;
        *table.by_organisation.entry(organisation.to_owned()).or_insert(0) += 1;
        let (notify, count) = table
            .by_operation
            .entry(id.clone())
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        *count += 1;
        let notify = notify.clone();
        Some(Waiting {
            waiters: self,
            organisation: organisation.to_owned(),
            id: id.clone(),
            notify,
        })
    }

    /// Wakes the requests waiting on `id` (a commit on it).
    pub(crate) fn changed(&self, id: &OperationId) {
        let waiting = self.table().by_operation.get(id).map(|(n, _)| n.clone());
        if let Some(n) = waiting {
            n.notify_waiters();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table().by_operation.len()
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut table = self.waiters.table();
        table.total = table.total.saturating_sub(1);
        if let Some(n) = table.by_organisation.get_mut(&self.organisation) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                table.by_organisation.remove(&self.organisation);
            }
        }
        if let Some((_, count)) = table.by_operation.get_mut(&self.id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                table.by_operation.remove(&self.id);
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
            .wait_on(p.org_id.as_str(), &OperationId::from_string(id))
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::TooManyRequests,
                    "too many requests wait for operations already; read operation(id) instead",
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
        let on_a = waiters.wait_on("org", &a).unwrap();
        let on_a_too = waiters.wait_on("org", &a).unwrap();
        let on_b = waiters.wait_on("org", &b).unwrap();
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
    fn waits_are_bounded_in_all_and_per_organisation() {
        let waiters = Waiters::default();
        let id = OperationId::from_string("op_a");
        let orgs = MAX_WAITS / MAX_WAITS_PER_ORGANISATION;
        let mut held = Vec::new();
        for org in 0..orgs {
            let org = format!("org_{org}");
            for _ in 0..MAX_WAITS_PER_ORGANISATION {
                held.push(waiters.wait_on(&org, &id).unwrap());
            }
            // That organisation's places are taken; the others' are not.
            assert!(waiters.wait_on(&org, &id).is_none());
        }
        // Every place is taken.
        assert!(waiters.wait_on("org_other", &id).is_none());
        held.truncate(MAX_WAITS - 1);
        assert!(waiters.wait_on("org_other", &id).is_some());
        drop(held);
        assert_eq!(waiters.len(), 0);
        assert!(waiters.wait_on("org_0", &id).is_some());
    }
}
