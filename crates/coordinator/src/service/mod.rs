//! The coordinator service: authorisation, idempotency and transactions around the
//! pure domain transitions, then notifications and broadcasting after commit.
//!
//! # Layout
//! - this file: the [`Service`], its clock and settings, and who may act as a device.
//! - [`idempotency`]: idempotency keys of mutations.
//! - [`organisations`]: organisations, API clients, access tokens.
//! - [`devices`]: device registration and reads.
//! - [`vaults`]: vault reads and signer-set input.
//! - [`lifecycle`]: what every operation goes through: creation, one locked transaction per
//!   device action (vote, start, failure report, results), persistence of a transition's
//!   outcome, notifications.
//! - [`expiry`]: operations past their deadline, and those a completed reshare made stale.
//! - What each kind adds: [`keygen`] (vault creation), [`sign`] (requests, verified
//!   signatures, broadcasting), [`reshare`], [`presign`] (presignature stock and use).
//! - [`reads`]: operation queries, the lists a device polls, the audit log.
//! - [`waits`]: requests waiting for an operation to change (`waitForOperation`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use sqlx::AnyConnection;

use crate::broadcast::Broadcaster;
use crate::domain::*;
use crate::error::{Error, ErrorCode, Result};
use crate::notify::Notifier;
use crate::store::Store;

pub mod console;
pub mod devices;
pub mod expiry;
pub mod human_approvals;
pub mod idempotency;
pub mod keygen;
pub mod lifecycle;
pub mod organisations;
pub mod presign;
pub mod reads;
pub mod reshare;
pub mod sign;
pub mod vaults;
pub mod waits;

pub use devices::RegisterDevice;
pub use organisations::InitOutput;
pub use presign::MAX_OPEN_PRESIGNATURES;
pub use reads::OperationFilter;
pub use reshare::RequestReshare;
pub use sign::RequestSignature;
pub use vaults::{CreateVault, SignerInput};

/// Wall clock in milliseconds, with an offset tests can advance (expiry tests).
#[derive(Clone, Default, Debug)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// Now, in ms since the epoch (plus the offset).
    pub fn now(&self) -> Millis {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        wall.saturating_add(self.offset_ms.load(Ordering::SeqCst))
    }

    /// Moves this clock forward (tests).
    pub fn advance(&self, d: std::time::Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

/// Service settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Expiry windows.
    pub expiry: ExpiryPolicy,
    /// Access token lifetime.
    pub token_ttl_ms: Millis,
    /// Argon2 verifications (`/oauth/token`) running at once; more wait.
    pub max_concurrent_verifications: usize,
    /// How long a token request waits for a verification slot before
    /// `TOO_MANY_REQUESTS` (HTTP 429).
    pub verification_wait_ms: u64,
    /// How long a rotated API client's previous secret stays accepted, unless the rotation
    /// says otherwise.
    pub client_secret_overlap_ms: Millis,
    /// How often a `waitForOperation` request reads its operation again without being woken
    /// (for other processes' commits and for expiry).
    pub wait_recheck: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            expiry: ExpiryPolicy::default(),
            token_ttl_ms: 15 * 60 * 1000,
            max_concurrent_verifications: 4,
            verification_wait_ms: 5000,
            client_secret_overlap_ms: 3600 * 1000,
            wait_recheck: std::time::Duration::from_secs(1),
        }
    }
}

/// The service.
pub struct Service {
    store: Store,
    clock: Clock,
    settings: Settings,
    notifier: Option<Notifier>,
    broadcaster: Broadcaster,
    verifications: Arc<tokio::sync::Semaphore>,
    /// The requests waiting for an operation to change ([`Service::wait_for_operation`]).
    waiters: waits::Waiters,
    /// Recent failed console sign-ins ([`console::SignInLimiter`]).
    sign_ins: console::SignInLimiter,
    /// When each device's own signer client last called for it ([`Service::last_seen`]).
    seen: std::sync::Mutex<std::collections::HashMap<DeviceId, Millis>>,
    /// Every committed change of an operation, for the console's live view.
    events: tokio::sync::broadcast::Sender<OperationEvent>,
}

/// An operation changed (a commit): what the console's live view hears. Only a hint: the
/// page reads the operation again through GraphQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationEvent {
    /// Organisation.
    pub org_id: OrgId,
    /// Operation.
    pub operation_id: OperationId,
    /// Its state after the commit.
    pub state: OperationState,
}

pub(crate) fn forbidden(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::Forbidden, msg)
}

pub(crate) fn request_hash<T: Serialize>(mutation: &str, input: &T) -> Result<String> {
    let json = serde_json::to_string(input).map_err(|e| Error::internal("idempotency", e))?;
    Ok(hex::encode(Sha256::digest(
        format!("{mutation}\n{json}").as_bytes(),
    )))
}

impl Service {
    /// A service over `store`.
    pub fn new(
        store: Store,
        clock: Clock,
        settings: Settings,
        notifier: Option<Notifier>,
        broadcaster: Broadcaster,
    ) -> Self {
        let verifications = Arc::new(tokio::sync::Semaphore::new(
            settings.max_concurrent_verifications.max(1),
        ));
        Self {
            store,
            clock,
            settings,
            notifier,
            broadcaster,
            verifications,
            waiters: waits::Waiters::default(),
            sign_ins: console::SignInLimiter::default(),
            seen: std::sync::Mutex::default(),
            events: tokio::sync::broadcast::channel(1024).0,
        }
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// What keeps the coordinator from serving, if anything: the database not answering,
    /// the broker (when configured) not connected. Empty when ready.
    pub async fn not_ready(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.store.ping().await {
            out.push("the database does not answer");
        }
        if self.notifier.as_ref().is_some_and(|n| !n.is_connected()) {
            out.push("the MQTT broker is not connected (devices are not notified; they still poll)");
        }
        out
    }
}

impl Service {
    /// A place among the Argon2 verifications running at once (`/oauth/token`, console
    /// sign-ins): Argon2 is deliberately expensive. `what` names the requests in the
    /// `TOO_MANY_REQUESTS` refusal when none frees up in time.
    pub(super) async fn verification_slot(&self, what: &str) -> Result<tokio::sync::OwnedSemaphorePermit> {
        tokio::time::timeout(
            std::time::Duration::from_millis(self.settings.verification_wait_ms),
            self.verifications.clone().acquire_owned(),
        )
        .await
        .map_err(|_| {
            Error::new(
                ErrorCode::TooManyRequests,
                format!("too many {what} at once; retry shortly"),
            )
        })?
        .map_err(|e| Error::internal("semaphore", e))
    }

    pub(super) fn require_operator(p: &Principal) -> Result<()> {
        if p.role != Role::Operator {
            return Err(forbidden("this needs an operator API client"));
        }
        Ok(())
    }

    /// Loads a device the caller may act as: same organisation, signer role, and
    /// registered by this very API client ("a device can only act as itself").
    pub(super) async fn acting_device(
        &self,
        c: &mut AnyConnection,
        p: &Principal,
        device_id: &str,
    ) -> Result<Device> {
        let device = self
            .store
            .device(c, &p.org_id, device_id)
            .await?
            .ok_or_else(|| Error::not_found("device", device_id))?;
        if p.role != Role::Signer {
            return Err(forbidden("only a signer API client can act as a device"));
        }
        if device.registered_by != p.client_id {
            return Err(forbidden(format!(
                "device {device_id} was registered by another API client; a device can only act as itself"
            )));
        }
        self.saw(p, &device);
        Ok(device)
    }

    /// Notes that `device` was just heard from, when `p` is its own signer client (a call
    /// by anyone else says nothing of the device).
    pub(super) fn saw(&self, p: &Principal, device: &Device) {
        if p.role == Role::Signer && device.registered_by == p.client_id {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.insert(device.id.clone(), self.clock.now());
        }
    }

    /// When the device's own signer client last called for it (a poll, a vote, a result)
    /// since this coordinator started; `None` if not since then. Kept in memory: it is a
    /// liveness hint for people, not a record.
    pub fn last_seen(&self, device: &DeviceId) -> Option<Millis> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(device).copied()
    }
}
