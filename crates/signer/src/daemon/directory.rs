//! The organisation's devices as the coordinator lists them (names, identity keys, signed
//! records), read for every vote and for a run this process did not vote on.
//!
//! A listing read less than [`DIRECTORY_FRESH`] ago that names every device of an operation
//! serves it without another coordinator call; an operation naming a device it lacks (a
//! device registered since) or an older listing makes the device read it again. This trusts
//! the coordinator no more than reading it every time: the listing is the coordinator's word
//! either way, and what matters in it is checked against the devices' own signed records and
//! the keys pinned on first sight ([`crate::peers`]), which no listing, fresh or not, changes.
//! What a listing a few seconds old can get wrong is only what the coordinator could say
//! anyway: a renamed device's old name in the approval request, for those seconds.
//!
//! Approvals that read the same listing share one copy, so that remembered approvals do not
//! each hold one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{lock, Daemon};
use crate::coordinator_api::{ApiError, Device};

/// How long a listing serves operations that name only devices it holds.
pub(super) const DIRECTORY_FRESH: Duration = Duration::from_secs(5);

/// The last listing read and when.
#[derive(Default)]
pub(super) struct DirectoryCache {
    last: Option<(Instant, Arc<[Device]>)>,
}

impl DirectoryCache {
    /// The last listing, if it was read less than [`DIRECTORY_FRESH`] before `now` and holds
    /// every device of `ids`.
    fn covering(&self, ids: &[&str], now: Instant) -> Option<Arc<[Device]>> {
        let (at, devices) = self.last.as_ref()?;
        let fresh = now.saturating_duration_since(*at) < DIRECTORY_FRESH;
        (fresh && ids.iter().all(|id| devices.iter().any(|d| d.id == *id))).then(|| devices.clone())
    }

    /// Keeps `listed`, asked for at `asked`, as the last listing unless one asked for later
    /// is kept already (answers can come out of order); the copy held already when it is the
    /// same. Returns `listed`.
    fn keep(&mut self, listed: Vec<Device>, asked: Instant) -> Arc<[Device]> {
        let devices = match &self.last {
            Some((_, same)) if **same == *listed => same.clone(),
            _ => listed.into(),
        };
        if self.last.as_ref().is_none_or(|(at, _)| *at <= asked) {
            self.last = Some((asked, devices.clone()));
        }
        devices
    }
}

impl Daemon {
    /// The organisation's devices, for an operation naming `ids`: the last listing while it
    /// is fresh and names them all, else the coordinator's now.
    pub(super) async fn directory_for(&self, ids: &[&str]) -> Result<Arc<[Device]>, ApiError> {
        if let Some(devices) = lock(&self.inner.directory).covering(ids, Instant::now()) {
            return Ok(devices);
        }
        // The time the request was sent, so that a slow answer is not kept for longer.
        let asked = Instant::now();
        let listed = self.inner.coordinator.devices().await?;
        Ok(lock(&self.inner.directory).keep(listed, asked))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::{DirectoryCache, DIRECTORY_FRESH};
    use crate::coordinator_api::Device;

    fn device(id: &str, name: &str) -> Device {
        Device {
            id: id.to_owned(),
            organisation_id: "org".to_owned(),
            name: name.to_owned(),
            kind: "virtual".to_owned(),
            identity_signing_key: "aa".to_owned(),
            identity_encryption_key: "bb".to_owned(),
            status: "Active".to_owned(),
            record: None,
        }
    }

    #[test]
    fn a_fresh_listing_serves_operations_of_the_devices_it_names() {
        let mut cache = DirectoryCache::default();
        let t0 = Instant::now();
        assert!(cache.covering(&["a"], t0).is_none(), "nothing read yet");
        let kept = cache.keep(vec![device("a", "A"), device("b", "B")], t0);
        let served = cache.covering(&["b", "a"], t0 + Duration::from_secs(1)).unwrap();
        assert!(Arc::ptr_eq(&kept, &served));
        // A device registered since: read again.
        assert!(cache.covering(&["a", "c"], t0 + Duration::from_secs(1)).is_none());
        // Too old: read again.
        assert!(cache.covering(&["a"], t0 + DIRECTORY_FRESH).is_none());
    }

    #[test]
    fn the_same_listing_is_kept_once_and_a_new_one_replaces_it() {
        let mut cache = DirectoryCache::default();
        let t0 = Instant::now();
        let first = cache.keep(vec![device("a", "A")], t0);
        let again = cache.keep(vec![device("a", "A")], t0 + DIRECTORY_FRESH);
        assert!(Arc::ptr_eq(&first, &again), "one copy of the same listing");
        // Read again, it is fresh again.
        assert!(cache.covering(&["a"], t0 + DIRECTORY_FRESH).is_some());
        let renamed = cache.keep(vec![device("a", "A2")], t0 + DIRECTORY_FRESH);
        assert!(!Arc::ptr_eq(&first, &renamed));
        assert_eq!(
            cache.covering(&["a"], t0 + DIRECTORY_FRESH).unwrap()[0].name,
            "A2"
        );
        // A slower answer to an earlier request serves its own caller and replaces nothing.
        let older = cache.keep(vec![device("a", "A1")], t0 + Duration::from_secs(1));
        assert_eq!(older[0].name, "A1");
        assert_eq!(
            cache.covering(&["a"], t0 + DIRECTORY_FRESH).unwrap()[0].name,
            "A2"
        );
    }
}
