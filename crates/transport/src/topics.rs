//! MQTT topic layout.
//!
//! | topic | publisher | content |
//! |---|---|---|
//! | `{prefix}/devices/{device id}/inbox` | other devices of a run | [`crate::envelope`]s (QoS 1) |
//! | `{prefix}/devices/{device id}/notify` | the coordinator | `{"operationId":…,"state":…}` hints (QoS 1) |
//!
//! The default prefix is `vsigner/v1`. Each device subscribes to its own two topics only; a
//! broker ACL can restrict each device's credentials to `+/devices/{id}/#` for reading.
//! Notifications are hints: a device always re-reads the operation from the coordinator.

use crate::identity::DeviceId;

/// Default topic prefix.
pub const DEFAULT_PREFIX: &str = "vsigner/v1";

/// Topic names under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            prefix: DEFAULT_PREFIX.into(),
        }
    }
}

impl Topics {
    /// Topics under `prefix` (no trailing slash, no wildcards).
    pub fn with_prefix(prefix: &str) -> Option<Self> {
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() || prefix.contains(['+', '#']) {
            return None;
        }
        Some(Topics {
            prefix: prefix.into(),
        })
    }

    /// Where a device receives envelopes.
    pub fn inbox(&self, device: &DeviceId) -> String {
        format!("{}/devices/{device}/inbox", self.prefix)
    }

    /// Where the coordinator notifies a device of operations that need it.
    pub fn notify(&self, device: &DeviceId) -> String {
        format!("{}/devices/{device}/notify", self.prefix)
    }
}
