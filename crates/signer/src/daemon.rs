//! The Virtual Signer daemon: its virtual devices, the loop of each device, and shutdown.
//!
//! # The loop of one device
//! Each device learns of work from the coordinator's MQTT notification *and* by polling
//! (`PollIntervalSeconds`), so a lost notification only delays it. Each round:
//! 1. `operationsAwaitingVote`: for each operation not yet handled, build the approval
//!    request ([`approval_request::build`]), ask the approver, vote. An approval is
//!    remembered with the exact request approved.
//! 2. `operationsReady`: for each operation whose committee includes the device and that it
//!    has not run yet, rebuild the request from the Ready operation and go on only if it
//!    equals the approved one (after a restart, when nothing is remembered, the approver is
//!    asked again); then `startOperation`, run the protocol ([`RunContext::run`]) on a
//!    blocking thread, and submit the result or report the failure with its culprits.
//! 3. After a keygen or reshare, a follow-up waits for the coordinator to complete the
//!    operation and then confirms the new share generation in the keystore (which destroys
//!    the previous one), or destroys the share of a device that left the signer set.
//!
//! Runs are bounded by `MaxConcurrentOperations`. An operation found InProgress that this
//! process never joined and that started before the process did was interrupted by a
//! restart: its protocol state is gone, so the device reports the failure at once (the
//! operation can be requested again) instead of letting the others wait for a timeout.
//!
//! # Shutdown
//! On SIGTERM/SIGINT the loops stop taking work, running protocols get
//! [`SHUTDOWN_GRACE`] to finish; those still running are reported failed ("device shut
//! down during the run"), then the links close and telemetry is flushed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand_core::OsRng;
use tokio::sync::{OwnedSemaphorePermit, RwLock, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use vsigner_approval::{AnyApprover, ApprovalRequest, DeviceKey};
use vsigner_keystore::{
    KeyFile, Keystore, KeystoreError, Passphrase, RecordKind, SealingProvider, SgxSealing,
};
use vsigner_transport::{DeviceId, DeviceIdentity, Link};
use vsigner_tss::ecdsa::AuxInfoOptions;

use crate::api::{DeviceRegistrar, Readiness, ReadinessReport, RegisteredDevice, RegistrationError};
use crate::approval_request;
use crate::config::{KeystoreSealing, SignerConfig};
use crate::coordinator_api::{ApiError, CoordinatorClient, Operation};
use crate::devices::{self, StoredDevice};
use crate::metrics::{self, OperationKind, Outcome};
use crate::operation_run::{RunContext, RunFailure, Submission};
use crate::prime_stock::PrimeStock;

/// A committee whose last presignature run failed is not asked again for this long.
pub const PRESIGN_RETRY_PAUSE_SECS: i64 = 60;
/// Most presignatures asked for at once (the coordinator's limit per request).
pub const MAX_PRESIGNATURES_PER_REQUEST: usize = 100;
/// The presignature pool is checked every this many polls.
pub const PRESIGNATURE_CHECK_EVERY: u64 = 5;
/// How long start-up waits for an unreachable coordinator.
pub const START_WAIT: Duration = Duration::from_secs(60);
/// Time running protocols get to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long a protocol run waits for the next message (aux-info rounds compute for tens of
/// seconds on slow machines).
pub const RUN_IDLE_TIMEOUT: Duration = Duration::from_secs(180);
/// How long an aux-info run waits for a prime set when the stock is empty: less than the
/// idle timeout, after which the other members give up on this device anyway.
pub const PRIME_WAIT: Duration = Duration::from_secs(150);
/// How long a follow-up waits for the coordinator to complete a keygen or reshare.
pub const COMPLETION_WAIT: Duration = Duration::from_secs(30 * 60);
/// Approvals of operations that never became Ready are forgotten after this long.
pub const APPROVAL_MEMORY: Duration = Duration::from_secs(24 * 3600);
/// How often a running protocol checks that the coordinator has not ended its operation.
pub const RUN_WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The keystore could not be opened or unsealed.
    #[error("keystore ({location}): {source}")]
    Keystore {
        /// `STORAGE_BUCKET_URL` as shown.
        location: String,
        /// Cause.
        source: KeystoreError,
    },
    /// The coordinator refused the credentials.
    #[error("{0}")]
    Coordinator(ApiError),
    /// A device could not be created or started.
    #[error("device {name:?}: {reason}")]
    Device {
        /// Its name.
        name: String,
        /// Cause.
        reason: String,
    },
    /// Something else (threads).
    #[error("{0}")]
    Other(String),
}

/// One virtual device at run time.
struct DeviceRuntime {
    id: String,
    name: String,
    identity: Arc<DeviceIdentity>,
    link: Arc<Link>,
    approver: AnyApprover,
    wake: tokio::sync::Notify,
}

type Key = (String, String); // (device id, operation id)

/// The (device, operation) pairs being handled now, and those this process is done with.
#[derive(Default)]
struct Work {
    inflight: HashSet<Key>,
    finished: HashSet<Key>,
}

struct Inner {
    config: SignerConfig,
    keystore: Arc<Keystore>,
    coordinator: CoordinatorClient,
    primes: PrimeStock,
    devices: RwLock<BTreeMap<String, Arc<DeviceRuntime>>>,
    creating: tokio::sync::Mutex<()>,
    permits: Arc<Semaphore>,
    /// The permit of each running operation, shared by this instance's devices in its
    /// committee (one permit per operation, not per device: two local members of one
    /// committee must never wait for each other's permit).
    operation_permits: Mutex<HashMap<String, std::sync::Weak<OwnedSemaphorePermit>>>,
    /// What each device is doing: one lock, so that claiming and finishing cannot interleave.
    work: Mutex<Work>,
    approved: Mutex<HashMap<Key, (Instant, ApprovalRequest)>>,
    started_at: DateTime<Utc>,
    coordinator_seen: Mutex<Option<Instant>>,
    stop: CancellationToken,
    hard_stop: CancellationToken,
    tasks: TaskTracker,
    prime_stop: Arc<AtomicBool>,
    aux_options: AuxInfoOptions,
}

/// The running daemon. Cheap to clone.
#[derive(Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes a (device, operation) from the in-flight set when dropped.
struct InflightGuard {
    inner: Arc<Inner>,
    key: Key,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        lock(&self.inner.work).inflight.remove(&self.key);
    }
}

/// Opens the keystore with the configured sealing.
pub async fn open_keystore(config: &SignerConfig) -> Result<Keystore, StartError> {
    let location = crate::config::shown_storage(&config.storage_bucket_url);
    let err = |source| StartError::Keystore {
        location: location.clone(),
        source,
    };
    let provider: Box<dyn SealingProvider> = match &config.keystore_sealing {
        KeystoreSealing::Passphrase(p) => Box::new(Passphrase::new(p.as_str())),
        KeystoreSealing::KeyFile(path) if path.exists() => Box::new(KeyFile::new(path)),
        KeystoreSealing::KeyFile(path) => Box::new(KeyFile::create(path).map_err(err)?),
        KeystoreSealing::Sgx => Box::new(SgxSealing::detect().ok_or_else(|| {
            err(KeystoreError::Lifecycle(
                "KeystoreSealing is sgx but this process does not run inside a Gramine SGX enclave".into(),
            ))
        })?),
    };
    Keystore::open(&config.storage_bucket_url, provider.as_ref())
        .await
        .map_err(err)
}

fn kind_of(op: &Operation) -> OperationKind {
    match op.kind.as_str() {
        "Keygen" => OperationKind::Keygen,
        "Reshare" => OperationKind::Reshare,
        "Presign" => OperationKind::Presign,
        _ => OperationKind::Sign,
    }
}

impl Daemon {
    /// Opens the keystore, checks the coordinator credentials, starts the prime stock, loads
    /// (or creates, from `InitialDevices`) the devices and starts their loops.
    pub async fn start(config: SignerConfig) -> Result<Daemon, StartError> {
        let keystore = Arc::new(open_keystore(&config).await?);
        let cleaned = keystore
            .clean_leftovers()
            .await
            .map_err(|source| StartError::Keystore {
                location: keystore.location().to_owned(),
                source,
            })?;
        if !cleaned.is_empty() {
            tracing::warn!(
                interrupted_writes = cleaned.interrupted_writes.len(),
                superseded_shares = cleaned.superseded_shares.len(),
                unconfirmed_shares = cleaned.unconfirmed_shares.len(),
                "the keystore had leftovers of an interrupted run (cleaned; unconfirmed shares await the coordinator)"
            );
        }
        let coordinator = CoordinatorClient::new(
            &config.api_base_url,
            &config.auth_client_id,
            config.auth_client_secret.clone(),
        )
        .map_err(StartError::Coordinator)?;
        // Fail fast on bad credentials; wait for a coordinator that is still starting.
        let started = Instant::now();
        let mut pause = Duration::from_millis(500);
        loop {
            match coordinator.devices().await {
                Ok(_) => break,
                Err(e) if e.is_transient() && started.elapsed() < START_WAIT => {
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "coordinator not reachable yet");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(8));
                }
                Err(e) => return Err(StartError::Coordinator(e)),
            }
        }
        let primes = PrimeStock::open(keystore.clone())
            .await
            .map_err(|source| StartError::Keystore {
                location: keystore.location().to_owned(),
                source,
            })?;
        let inner = Arc::new(Inner {
            permits: Arc::new(Semaphore::new(config.max_concurrent_operations.max(1))),
            operation_permits: Mutex::new(HashMap::new()),
            config,
            keystore,
            coordinator,
            primes,
            devices: RwLock::new(BTreeMap::new()),
            creating: tokio::sync::Mutex::new(()),
            work: Mutex::new(Work::default()),
            approved: Mutex::new(HashMap::new()),
            started_at: Utc::now(),
            coordinator_seen: Mutex::new(Some(Instant::now())),
            stop: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            prime_stop: Arc::new(AtomicBool::new(false)),
            // Tables are not stored with the share (derived data), so computing them is wasted.
            aux_options: AuxInfoOptions {
                precompute_multiexp: false,
            },
        });
        let daemon = Daemon { inner };
        tracing::info!(
            ready = daemon.inner.primes.ready(),
            target = daemon.inner.config.prime_pool_target,
            "safe-prime stock"
        );
        daemon
            .inner
            .primes
            .spawn_refill(
                daemon.inner.config.prime_pool_target as usize,
                daemon.inner.prime_stop.clone(),
            )
            .map_err(|e| StartError::Other(format!("cannot start the prime generation thread: {e}")))?;

        // Devices: registered ones start; pending ones finish their registration; names of
        // InitialDevices that do not exist are created.
        let stored = devices::load_all(&daemon.inner.keystore)
            .await
            .map_err(|source| StartError::Keystore {
                location: daemon.inner.keystore.location().to_owned(),
                source,
            })?;
        let mut names: HashSet<String> = HashSet::new();
        for device in stored {
            names.insert(device.name.clone());
            let name = device.name.clone();
            if device.is_pending() {
                // A registration the coordinator refuses must not keep the others from
                // starting: it stays pending and is retried at the next start.
                if let Err(reason) = daemon.finish_registration(device).await {
                    tracing::error!(name = %name, reason = %reason, "device registration not completed");
                }
            } else {
                daemon
                    .launch(device)
                    .await
                    .map_err(|reason| StartError::Device { name, reason })?;
            }
        }
        for name in daemon.inner.config.initial_devices.clone() {
            if !names.contains(&name) {
                daemon
                    .create_device(&name)
                    .await
                    .map_err(|reason| StartError::Device {
                        name: name.clone(),
                        reason: reason.to_string(),
                    })?;
            }
        }
        daemon.reconcile_shares().await;
        Ok(daemon)
    }

    /// The devices, by id.
    pub async fn device_list(&self) -> Vec<RegisteredDevice> {
        self.inner
            .devices
            .read()
            .await
            .values()
            .map(|d| RegisteredDevice {
                id: d.id.clone(),
                name: d.name.clone(),
            })
            .collect()
    }

    /// Creates, stores and registers a device, then starts its loop.
    pub async fn create_device(&self, name: &str) -> Result<RegisteredDevice, RegistrationError> {
        crate::config::check_device_name(name).map_err(RegistrationError::Internal)?;
        let _one_at_a_time = self.inner.creating.lock().await;
        if self.inner.devices.read().await.values().any(|d| d.name == name) {
            return Err(RegistrationError::AlreadyExists(name.to_owned()));
        }
        if self.inner.devices.read().await.len() >= crate::config::MAX_INITIAL_DEVICES {
            return Err(RegistrationError::LimitReached(format!(
                "at most {} devices per instance",
                crate::config::MAX_INITIAL_DEVICES
            )));
        }
        #[allow(clippy::expect_used)] // a constant valid id, replaced below
        let placeholder = DeviceId::new("new").expect("valid device id");
        let identity = DeviceIdentity::generate(placeholder, &mut OsRng);
        let (pending, _) = devices::pending_id(&identity);
        let device = StoredDevice {
            name: name.to_owned(),
            identity: identity.with_device_id(pending),
        };
        devices::store(&self.inner.keystore, &device)
            .await
            .map_err(|e| RegistrationError::Unavailable(format!("keystore: {e}")))?;
        let id = self
            .finish_registration(device)
            .await
            .map_err(RegistrationError::Unavailable)?;
        Ok(RegisteredDevice {
            id,
            name: name.to_owned(),
        })
    }

    /// Registers a stored (pending) device with the coordinator, stores it under the id it
    /// got and starts it; returns that id.
    async fn finish_registration(&self, device: StoredDevice) -> Result<String, String> {
        let (pending, idempotency_key) = devices::pending_id(&device.identity);
        let keys = device.identity.public_keys().clone();
        // Network trouble or an overloaded coordinator: retry a few times (the idempotency
        // key makes retries safe); then the device stays pending until the next start.
        let mut pause = Duration::from_millis(500);
        let registered = loop {
            match self
                .inner
                .coordinator
                .register_device(
                    &device.name,
                    &keys.signing_hex(),
                    &keys.encryption_hex(),
                    &idempotency_key,
                )
                .await
            {
                Ok(d) => break d,
                Err(e) if e.is_transient() && pause < Duration::from_secs(16) => {
                    tracing::warn!(name = %device.name, error = %e, "registration not accepted yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => {
                    return Err(format!(
                    "registration with the coordinator failed (kept as pending, retried at next start): {e}"
                ))
                }
            }
        };
        if registered.identity_signing_key != keys.signing_hex()
            || registered.identity_encryption_key != keys.encryption_hex()
            || registered.organisation_id != self.inner.config.org_id
        {
            return Err(format!(
                "the coordinator answered the registration with device {} of other keys or another organisation",
                registered.id
            ));
        }
        let id = DeviceId::new(registered.id.clone()).map_err(|e| format!("coordinator device id: {e}"))?;
        let device = StoredDevice {
            name: device.name,
            identity: device.identity.with_device_id(id),
        };
        let exists = self
            .inner
            .keystore
            .get(&vsigner_keystore::RecordId::identity(&registered.id).map_err(|e| e.to_string())?)
            .await
            .map_err(|e| e.to_string())?
            .is_some();
        if !exists {
            devices::store(&self.inner.keystore, &device)
                .await
                .map_err(|e| format!("keystore: {e}"))?;
        }
        devices::forget_pending(&self.inner.keystore, &pending)
            .await
            .map_err(|e| format!("keystore: {e}"))?;
        tracing::info!(device = %registered.id, name = %device.name, "device registered with the coordinator");
        self.launch(device).await
    }

    /// Connects a registered device and starts its loop.
    async fn launch(&self, device: StoredDevice) -> Result<String, String> {
        let identity = Arc::new(device.identity);
        let id = identity.device_id().as_str().to_owned();
        let approver = AnyApprover::from_config(
            &self.inner.config.approval,
            DeviceKey::new(id.clone(), identity.signing_key().clone()),
        )
        .map_err(|e| format!("approver: {e}"))?;
        let link = Link::connect(identity.clone(), self.inner.config.mqtt_config())
            .await
            .map_err(|e| format!("MQTT: {e}"))?;
        let notifications = link.take_notifications();
        let runtime = Arc::new(DeviceRuntime {
            id: id.clone(),
            name: device.name,
            identity,
            link: Arc::new(link),
            approver,
            wake: tokio::sync::Notify::new(),
        });
        let count = {
            let mut devices = self.inner.devices.write().await;
            devices.insert(id.clone(), runtime.clone());
            devices.len()
        };
        metrics::devices(count);
        tracing::info!(device = %id, name = %runtime.name, "device started");
        let daemon = self.clone();
        self.inner
            .tasks
            .spawn(async move { daemon.device_loop(runtime, notifications).await });
        Ok(id)
    }

    async fn device_loop(
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

    fn coordinator_result<T>(&self, r: &Result<T, ApiError>) {
        if let Ok(_) | Err(ApiError::Refused { .. }) = r {
            *lock(&self.inner.coordinator_seen) = Some(Instant::now());
        }
    }

    fn claim(&self, device: &str, op: &str) -> Option<InflightGuard> {
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

    async fn poll_device(&self, device: &Arc<DeviceRuntime>) {
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

    async fn vote(&self, device: &DeviceRuntime, op: Operation) {
        let directory = match self.inner.coordinator.devices().await {
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
        let (vote, reason) = match built {
            Ok(request) => {
                let asked = Instant::now();
                let decision = device.approver.decide(&request).await;
                metrics::approval_latency(&decision, asked.elapsed());
                if decision.is_approval() {
                    lock(&self.inner.approved)
                        .insert((device.id.clone(), op.id.clone()), (Instant::now(), request));
                }
                (decision.vote, decision.reason)
            }
            Err(e) => (
                vsigner_approval::Vote::Reject,
                format!("the operation is malformed: {e}"),
            ),
        };
        match self
            .inner
            .coordinator
            .vote(&op.id, &device.id, vote.as_str())
            .await
        {
            Ok(_) => {
                tracing::info!(vote = vote.as_str(), reason = %reason, "voted");
                if vote != vsigner_approval::Vote::Approve {
                    metrics::operation_finished(kind_of(&op), Outcome::Rejected);
                }
            }
            Err(e) if e.code() == Some("ALREADY_VOTED") => {}
            // The others' votes decided the operation first (or it expired): nothing to retry.
            Err(e) if matches!(e.code(), Some("INVALID_STATE" | "EXPIRED")) => {
                tracing::info!(vote = vote.as_str(), reason = %e, "vote not needed: the operation was decided without it");
            }
            Err(e) => tracing::warn!(error = %e, "vote not recorded; retried at the next poll"),
        }
    }

    /// Whether `op` started before this process did (an interrupted run).
    fn started_before_us(&self, op: &Operation) -> bool {
        DateTime::parse_from_rfc3339(&op.updated_at)
            .map(|t| t.with_timezone(&Utc) < self.inner.started_at)
            .unwrap_or(false)
    }

    async fn report_failure(&self, device: &DeviceRuntime, op: &Operation, failure: &RunFailure) {
        tracing::error!(reason = %failure.reason, culprits = ?failure.culprits, "operation failed");
        metrics::operation_finished(kind_of(op), Outcome::Failed);
        if let Err(e) = self
            .inner
            .coordinator
            .report_failure(&op.id, &device.id, &failure.reason, &failure.culprits)
            .await
        {
            tracing::warn!(error = %e, "could not report the failure to the coordinator");
        }
    }

    fn finish(&self, device: &str, op: &str) {
        lock(&self.inner.work)
            .finished
            .insert((device.to_owned(), op.to_owned()));
    }

    /// Takes part in a Ready or InProgress operation.
    async fn take_part(&self, device: &Arc<DeviceRuntime>, op: Operation) {
        if op.submitted_device_ids.contains(&device.id) {
            // Submitted before a restart: only the confirmation is left.
            self.finish(&device.id, &op.id);
            self.follow_up(device, &op, false).await;
            return;
        }
        if op.state == "InProgress" && self.started_before_us(&op) {
            self.finish(&device.id, &op.id);
            // An old holder that only deals in a reshare may have finished its part before
            // the restart; failing the operation could kill a reshare that is succeeding.
            // If its part was not done, the others time out and report.
            let dealer_only = op.kind == "Reshare"
                && op
                    .committee
                    .iter()
                    .any(|m| m.device_id == device.id && m.new_index.is_none());
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
        let directory = match self.inner.coordinator.devices().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the organisation's devices; retried at the next poll");
                return;
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
        let Some(permit) = self.operation_permit(&op.id).await else {
            return;
        };
        if self.inner.stop.is_cancelled() {
            return;
        }
        if let Err(e) = self.inner.coordinator.start_operation(&op.id, &device.id).await {
            tracing::warn!(error = %e, "startOperation refused; not running");
            if !e.is_transient() {
                self.finish(&device.id, &op.id);
            }
            return;
        }
        self.finish(&device.id, &op.id);
        tracing::info!(committee = op.committee.len(), "protocol run starting");
        let started = Instant::now();
        let ctx = RunContext {
            identity: device.identity.clone(),
            link: device.link.clone(),
            keystore: self.inner.keystore.clone(),
            primes: self.inner.primes.clone(),
            idle_timeout: RUN_IDLE_TIMEOUT,
            prime_wait: PRIME_WAIT,
            aux_options: self.inner.aux_options,
        };
        let handle = tokio::runtime::Handle::current();
        let span = tracing::Span::current();
        let (run_op, run_request) = (op.clone(), request);
        let cancel = self.inner.hard_stop.child_token();
        let run_cancel = cancel.clone();
        // Protocols compute for seconds between messages: they run on a blocking thread.
        // Cancelling drops the protocol (and its session) at its next await point.
        let run = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            handle.block_on(async move {
                tokio::select! {
                    r = ctx.run(&run_op, run_request.as_ref()) => Some(r),
                    () = run_cancel.cancelled() => None,
                }
            })
        });
        let outcome = tokio::select! {
            r = run => match r {
                Ok(Some(r)) => r,
                Ok(None) => Err(RunFailure {
                    reason: format!("device {} shut down during the protocol run", device.id),
                    culprits: vec![],
                }),
                Err(e) => Err(RunFailure { reason: format!("the protocol task ended abnormally: {e}"), culprits: vec![] }),
            },
            () = cancel.cancelled() => Err(RunFailure {
                reason: format!("device {} shut down during the protocol run", device.id),
                culprits: vec![],
            }),
            ended = self.watch_until_final(&op.id) => {
                cancel.cancel();
                drop(permit);
                tracing::warn!(state = %ended, "the coordinator ended the operation during the run; run abandoned");
                metrics::operation_finished(kind_of(&op), Outcome::Failed);
                return;
            }
        };
        drop(permit);
        match outcome {
            Ok(submission) => {
                tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "protocol run finished"
                );
                self.submit(device, &op, submission).await;
            }
            Err(failure) => self.report_failure(device, &op, &failure).await,
        }
    }

    /// Keeps `PresignaturePoolTarget` presignatures stocked (available or being made) for
    /// the default committee (the first `threshold` signers by index) of every Active
    /// secp256k1 vault whose signer of index 0 is this device: one keeper per vault, so
    /// members do not request the same stock twice.
    async fn maintain_presignatures(&self, device: &DeviceRuntime) {
        let target = self.inner.config.presignature_pool_target as usize;
        let vaults = match self.inner.coordinator.vaults().await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list vaults for the presignature pool");
                return;
            }
        };
        for vault in vaults {
            let mut signers = vault.signers.clone();
            signers.sort_by_key(|s| s.index);
            if vault.curve != "secp256k1"
                || vault.status != "Active"
                || signers.first().map(|s| s.device_id.as_str()) != Some(device.id.as_str())
            {
                continue;
            }
            let mut committee: Vec<String> = signers
                .iter()
                .take(usize::from(vault.threshold))
                .map(|s| s.device_id.clone())
                .collect();
            committee.sort();
            let ops = match self.inner.coordinator.operations_of(&vault.id, "Presign").await {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot list presignatures");
                    continue;
                }
            };
            let (mut available, mut coming) = (0usize, 0usize);
            let mut newest_failed: Option<&str> = None;
            for op in &ops {
                let mut members: Vec<String> = op.committee.iter().map(|m| m.device_id.clone()).collect();
                members.sort();
                let Some(p) = &op.presign else { continue };
                if members != committee || p.key_generation != vault.key_generation {
                    continue;
                }
                match op.state.as_str() {
                    "Completed" if p.consumed_by.is_none() => available += 1,
                    "Ready" | "InProgress" => coming += 1,
                    // Newest first: remember when the latest run of this committee failed.
                    "Failed" | "Expired" if newest_failed.is_none() && available + coming == 0 => {
                        newest_failed = Some(op.updated_at.as_str());
                    }
                    _ => {}
                }
            }
            metrics::presignature_pool(&vault.id, available);
            // A committee whose last presign failed gets a pause before the next attempt
            // (a broken member must not cause an endless stream of runs).
            let recently_failed = newest_failed
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| {
                    Utc::now().signed_duration_since(t) < chrono::Duration::seconds(PRESIGN_RETRY_PAUSE_SECS)
                });
            let missing = target
                .saturating_sub(available + coming)
                .min(MAX_PRESIGNATURES_PER_REQUEST);
            if recently_failed {
                tracing::debug!(vault = %vault.id, "the last presignature run of the committee failed; pausing");
            } else if missing > 0 {
                match self
                    .inner
                    .coordinator
                    .request_presignatures(&vault.id, &committee, missing as u32)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(vault = %vault.id, available, coming, requested = missing, "presignatures requested")
                    }
                    Err(e) => tracing::warn!(vault = %vault.id, error = %e, "cannot request presignatures"),
                }
            }
        }
    }

    /// The checks before a device runs `op`: the committee's identity keys are the
    /// registered ones and the pinned ones; and, for everything but a presignature (which
    /// signs nothing), the operation is exactly what the approver approved (asked again if
    /// this process does not remember the approval). Returns the approved request.
    async fn checked_request(
        &self,
        device: &DeviceRuntime,
        op: &Operation,
        directory: &[crate::coordinator_api::Device],
    ) -> Result<Option<ApprovalRequest>, String> {
        // A coordinator cannot slip in transport keys of its own.
        approval_request::check_committee_keys(op, directory)?;
        crate::peers::check_and_pin(&self.inner.keystore, &device.identity, &op.committee).await?;
        if op.kind == "Presign" {
            return Ok(None);
        }
        let request =
            approval_request::build(op, directory).map_err(|e| format!("malformed operation: {e}"))?;
        let key = (device.id.clone(), op.id.clone());
        let approved = lock(&self.inner.approved).remove(&key).map(|(_, r)| r);
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

    /// The permit of operation `op`: the one another local committee member holds, or a new
    /// one. While waiting for a permit it keeps looking for one a local member got meanwhile.
    /// `None` when the daemon stops.
    async fn operation_permit(&self, op: &str) -> Option<Arc<OwnedSemaphorePermit>> {
        loop {
            if let Some(p) = lock(&self.inner.operation_permits)
                .get(op)
                .and_then(std::sync::Weak::upgrade)
            {
                return Some(p);
            }
            tokio::select! {
                biased;
                () = self.inner.stop.cancelled() => return None,
                p = self.inner.permits.clone().acquire_owned() => {
                    let p = Arc::new(p.ok()?);
                    let mut permits = lock(&self.inner.operation_permits);
                    permits.retain(|_, w| w.strong_count() > 0);
                    if let Some(existing) = permits.get(op).and_then(std::sync::Weak::upgrade) {
                        return Some(existing); // ours goes back
                    }
                    permits.insert(op.to_owned(), Arc::downgrade(&p));
                    return Some(p);
                }
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Returns the final state once the coordinator reports `op` final (failed by another
    /// member, expired); pending forever otherwise.
    async fn watch_until_final(&self, op: &str) -> String {
        loop {
            tokio::time::sleep(RUN_WATCH_INTERVAL).await;
            if let Ok(now) = self.inner.coordinator.operation(op).await {
                if now.is_final() && now.state != "Completed" {
                    return now.state;
                }
            }
        }
    }

    async fn submit(&self, device: &Arc<DeviceRuntime>, op: &Operation, submission: Submission) {
        let mut pause = Duration::from_millis(500);
        let deadline = Instant::now() + COMPLETION_WAIT;
        loop {
            let result = self.submit_once(device, op, &submission).await;
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
            Submission::Departed { .. } => self.follow_up(device, op, true).await,
            _ => self.follow_up(device, op, false).await,
        }
    }

    async fn submit_once(
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
                    &device.id,
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
                .submit_reshare_result(&op.id, &device.id, public_key, key_set_hash)
                .await
                .map(Some),
            Submission::Departed { .. } => Ok(None),
            Submission::Presign { fingerprint } => c
                .submit_presign_result(&op.id, &device.id, fingerprint)
                .await
                .map(Some),
            Submission::Signature {
                signature,
                recovery_id,
            } => c
                .submit_signature(&op.id, &device.id, signature, *recovery_id)
                .await
                .map(Some),
        }
    }

    async fn submitted(&self, op: &Operation, result: Result<Option<Operation>, ApiError>) {
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

    /// Waits for a keygen/reshare to reach a final state, then confirms this device's new
    /// share generation, or, when `departed` (it dealt in a reshare whose run succeeded,
    /// every new holder having proved its share, and holds no new share), destroys its
    /// shares of the vault.
    async fn follow_up(&self, device: &Arc<DeviceRuntime>, op: &Operation, departed: bool) {
        let deadline = Instant::now() + COMPLETION_WAIT;
        loop {
            match self.inner.coordinator.operation(&op.id).await {
                Ok(now) if now.is_final() => {
                    if now.state == "Completed" {
                        self.reconcile_vault(&device.id, &op.vault_id, departed).await;
                    } else {
                        tracing::warn!(state = %now.state, "the operation did not complete; the new share stays unconfirmed and unused");
                    }
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "waiting for the operation to complete"),
            }
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = self.inner.stop.cancelled() => return,
            }
        }
    }

    /// Brings the stored shares of `device` for `vault` in line with the coordinator: the
    /// vault's current generation is confirmed (older ones destroyed) when the locally stored
    /// share of that generation has the vault's public key and key-set hash; with
    /// `departed`, a device no longer in the signer set destroys its shares.
    async fn reconcile_vault(&self, device: &str, vault_id: &str, departed: bool) {
        let ks = &self.inner.keystore;
        let vault = match self.inner.coordinator.vault(vault_id).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(vault = vault_id, error = %e, "cannot read the vault to confirm shares");
                return;
            }
        };
        if vault.status != "Active" {
            return;
        }
        let generations = match ks.share_generations(device, vault_id).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "keystore");
                return;
            }
        };
        let confirmed = ks.confirmed_generation(device, vault_id).await.ok().flatten();
        let member = vault.signers.iter().any(|s| s.device_id == device);
        let result = if member && generations.contains(&vault.key_generation) {
            if confirmed == Some(vault.key_generation) {
                return;
            }
            // The coordinator's word is not enough to destroy the previous generation: the
            // stored share must be of the vault's key and key set.
            match self.share_matches(device, &vault).await {
                Ok(()) => {}
                Err(why) => {
                    tracing::error!(device, vault = vault_id, generation = vault.key_generation, reason = %why,
                        "the stored share does not match the coordinator's vault; not confirmed");
                    return;
                }
            }
            ks.confirm_generation(device, vault_id, vault.key_generation)
                .await
        } else if departed
            && !member
            && generations.iter().all(|g| *g < vault.key_generation)
            && !generations.is_empty()
        {
            ks.confirm_departure(device, vault_id, vault.key_generation).await
        } else {
            return;
        };
        match result {
            Ok(deleted) => {
                tracing::info!(
                    device,
                    vault = vault_id,
                    generation = vault.key_generation,
                    destroyed_generations = ?deleted,
                    member,
                    "share generation confirmed"
                );
                if !deleted.is_empty() {
                    self.forget_presignatures(device, vault_id).await;
                }
            }
            Err(e) => {
                tracing::error!(device, vault = vault_id, error = %e, "cannot confirm the share generation")
            }
        }
    }

    /// Deletes this device's presignatures of `vault`: they belong to a key generation
    /// that was just replaced and can never be used.
    async fn forget_presignatures(&self, device: &str, vault_id: &str) {
        let ks = &self.inner.keystore;
        let Ok(records) = ks.list().await else { return };
        for r in records {
            if r.id.kind() == RecordKind::Presignature
                && r.id.device() == device
                && r.id.vault() == Some(vault_id)
            {
                if let Err(e) = ks.delete(&r.id).await {
                    tracing::warn!(error = %e, "cannot delete an outdated presignature");
                }
            }
        }
    }

    /// Whether the stored share of `vault`'s current generation has its public key and
    /// key-set hash.
    async fn share_matches(&self, device: &str, vault: &crate::coordinator_api::Vault) -> Result<(), String> {
        let id = vsigner_keystore::RecordId::key_share(device, &vault.id, vault.key_generation)
            .map_err(|e| e.to_string())?;
        let bytes = self
            .inner
            .keystore
            .get(&id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no share stored")?;
        let (public_key, key_set_hash) =
            crate::operation_run::share_summary(&vault.curve, &bytes).map_err(|e| e.reason)?;
        if vault.public_key.as_deref() != Some(public_key.as_str()) {
            return Err("public key differs".into());
        }
        if vault.key_set_hash.as_deref() != Some(key_set_hash.as_str()) {
            return Err("key-set hash differs".into());
        }
        Ok(())
    }

    /// At start: confirm generations the coordinator completed while the daemon was down.
    async fn reconcile_shares(&self) {
        let records = match self.inner.keystore.list().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "keystore");
                return;
            }
        };
        let devices: HashSet<String> = self.inner.devices.read().await.keys().cloned().collect();
        let pairs: std::collections::BTreeSet<(String, String)> = records
            .into_iter()
            .filter(|r| r.id.kind() == RecordKind::KeyShare && devices.contains(r.id.device()))
            .filter_map(|r| Some((r.id.device().to_owned(), r.id.vault()?.to_owned())))
            .collect();
        for (device, vault) in pairs {
            self.reconcile_vault(&device, &vault, false).await;
        }
    }

    /// Stops taking work, gives running protocols [`SHUTDOWN_GRACE`] (then reports them
    /// failed), and closes the links.
    pub async fn shutdown(&self) {
        tracing::info!("shutting down: no new operations; waiting for running protocols");
        self.inner.stop.cancel();
        self.inner.prime_stop.store(true, Ordering::Relaxed);
        self.inner.tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("protocols still running after the grace period are reported failed");
            self.inner.hard_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), self.inner.tasks.wait()).await;
        }
        let devices = std::mem::take(&mut *self.inner.devices.write().await);
        for (_, device) in devices {
            // The loops and runs have ended, so this is the last reference.
            if let Some(link) = Arc::into_inner(device).and_then(|d| Arc::into_inner(d.link)) {
                link.close().await;
            }
        }
        tracing::info!("stopped");
    }

    /// The readiness report of `/readyz`.
    pub async fn readiness(&self) -> ReadinessReport {
        let window = (self.inner.config.poll_interval * 3).max(Duration::from_secs(30));
        let coordinator_reachable = lock(&self.inner.coordinator_seen).is_some_and(|t| t.elapsed() < window);
        let devices = self.inner.devices.read().await;
        let broker_connected = devices.values().all(|d| d.link.stats().connected);
        ReadinessReport {
            coordinator_reachable,
            broker_connected,
            keystore_unlocked: true,
        }
    }
}

impl DeviceRegistrar for Daemon {
    fn register<'a>(
        &'a self,
        name: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<RegisteredDevice, RegistrationError>> {
        Box::pin(self.create_device(name))
    }

    fn devices(&self) -> futures::future::BoxFuture<'_, Vec<RegisteredDevice>> {
        Box::pin(self.device_list())
    }
}

impl Readiness for Daemon {
    fn check(&self) -> futures::future::BoxFuture<'_, ReadinessReport> {
        Box::pin(self.readiness())
    }
}
