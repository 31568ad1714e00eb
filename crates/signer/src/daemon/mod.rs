//! The Virtual Signer daemon: it owns the virtual devices, runs one loop per device, and
//! shuts down gracefully. Each stage of an operation's life is a module of its own, read in
//! this order:
//!
//! 1. [`device_loop`]: each device learns of work from the coordinator's MQTT notification
//!    *and* by polling (`PollIntervalSeconds`), so a lost notification only delays it; it
//!    claims each operation once.
//! 2. [`vote`]: for an operation awaiting its vote, build the approval request
//!    ([`approval_request::build`](crate::approval_request::build)), ask the approver, vote.
//!    An approval is remembered with the exact request approved.
//! 3. [`take_part`]: for a Ready operation whose committee includes the device, check the
//!    committee's keys and that the operation still equals the approved request (after a
//!    restart, when nothing is remembered, the approver is asked again); then
//!    write the durable run mark and run the protocol ([`crate::protocol`]) on a blocking
//!    thread, `startOperation` sent if the run lasts (a fast run reports only its result).
//! 4. [`submit`]: submit the result (retried on network errors) or report the failure with
//!    its culprits.
//! 5. [`confirm`]: after a keygen, confirm the new share once the coordinator completes the
//!    operation (nothing older exists to destroy); after a reshare, commit the new
//!    generation only on every new holder's signed receipt, then destroy the older ones
//!    (or, for a device that left the signer set, its share). Never on the coordinator's
//!    word alone.
//!
//! Beside them: [`registration`] (creating and registering devices), [`presignatures`]
//! (the keeper of each vault's ECDSA presignature pool; presignatures live in memory only)
//! and [`run_marks`] (a device runs an operation once: one approval, one signature).
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
use tokio::sync::{RwLock, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vsigner_approval::{AnyApprover, ApprovalRequest};
use vsigner_keystore::{KeyFile, Keystore, KeystoreError, Passphrase, SealingProvider, SgxSealing};
use vsigner_transport::{DeviceIdentity, Link};
use vsigner_tss::ecdsa::AuxInfoOptions;

use crate::api::{DeviceRegistrar, Readiness, ReadinessReport, RegisteredDevice, RegistrationError};
use crate::config::{KeystoreSealing, SignerConfig};
use crate::coordinator_api::{ActingDevice, ApiError, CoordinatorClient, Operation};
use crate::devices;
use crate::metrics::OperationKind;
use crate::peers::{self, Listed};
use crate::prime_stock::PrimeStock;

mod confirm;
mod device_loop;
mod directory;
mod human_desk;
mod presignatures;
mod recovery_files;
mod registration;
mod run_marks;
mod submit;
mod take_part;
mod vote;

pub use presignatures::{
    MAX_PRESIGNATURES_PER_REQUEST, PRESIGNATURE_CHECK_EVERY, PRESIGNATURE_CHECK_MIN_INTERVAL,
    PRESIGNATURE_CHECK_PATIENCE, PRESIGN_RETRY_PAUSE_SECS,
};

/// How long start-up waits for an unreachable coordinator.
pub const START_WAIT: Duration = Duration::from_secs(60);
/// Time running protocols get to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long an aux-info run waits for a prime set when the stock is empty (at most, and
/// less than `ProtocolIdleTimeoutSeconds`, after which the other members give up on this
/// device anyway).
pub const PRIME_WAIT: Duration = Duration::from_secs(150);
/// How long a follow-up waits for the coordinator to complete a keygen or reshare.
pub const COMPLETION_WAIT: Duration = Duration::from_secs(30 * 60);
/// The first wait before an approver that gave no trustworthy answer is asked again; it
/// doubles up to [`APPROVAL_RETRY_MAX`], until the operation expires.
pub const APPROVAL_RETRY_START: Duration = Duration::from_secs(1);
/// The longest wait between two approval attempts of one operation.
pub const APPROVAL_RETRY_MAX: Duration = Duration::from_secs(60);
/// At most this many operations wait for their approver to be asked again.
pub const APPROVAL_WAITS_MAX: usize = 4096;
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
    /// Signalled when the device's last task holding an operation ends.
    idle: tokio::sync::Notify,
}

type Key = (String, String); // (device id, operation id)

/// An approval given: the exact request approved, and the organisation's devices as the
/// vote read them (the Ready operation is checked against the same directory, which saves
/// a coordinator call on the way to the run).
struct Approval {
    at: Instant,
    request: ApprovalRequest,
    directory: Arc<[crate::coordinator_api::Device]>,
}

/// An approval to ask again: no vote was cast.
struct ApprovalWait {
    since: Instant,
    next: Instant,
    backoff: Duration,
}

/// The (device, operation) pairs being handled now, and those this process is done with.
#[derive(Default)]
struct Work {
    /// The operations a task of a device holds, each with the Ready notifications that came
    /// for it meanwhile.
    inflight: HashMap<Key, Arc<ReadyHint>>,
    /// By device: how many operations its tasks hold (none: not listed).
    held: HashMap<String, usize>,
    /// By device: the operations it is done with.
    finished: HashMap<String, Finished>,
}

/// How long this process remembers an operation a device is done with after it was last
/// listed or finished: far longer than a listing can be stale. A listing sent before the work
/// ended may still show the operation Ready; taking part again would be refused by the run
/// mark and reported as a failure, which fails an operation the others may still be finishing.
const FINISHED_MEMORY: Duration = Duration::from_secs(600);
/// The most operations remembered per device; beyond it the oldest unlisted are forgotten
/// early (a coordinator listing ever new operations cannot grow the memory without bound).
const FINISHED_MAX: usize = 100_000;
/// How often a device's remembered operations are pruned (pruning is a pass over all).
const FINISHED_PRUNE_EVERY: Duration = Duration::from_secs(10);

/// The operations one device is done with, and when each was last finished or listed.
struct Finished {
    last_seen: HashMap<String, Instant>,
    /// The operations of the device's latest listing (never forgotten early).
    listed: HashSet<String>,
    pruned: Instant,
}

impl Work {
    /// A task of device `key.0` holds operation `key.1` (the caller checked it was not held).
    fn hold(&mut self, key: Key, hint: Arc<ReadyHint>) {
        *self.held.entry(key.0.clone()).or_default() += 1;
        self.inflight.insert(key, hint);
    }

    /// The task holding `key` let it go; whether the device now holds no operation.
    fn release(&mut self, key: &Key) -> bool {
        if self.inflight.remove(key).is_some() {
            if let Some(n) = self.held.get_mut(&key.0) {
                *n -= 1;
                if *n == 0 {
                    self.held.remove(&key.0);
                }
            }
        }
        !self.holds_any(&key.0)
    }

    /// Whether a task of `device` holds an operation (votes on it or takes part in it).
    fn holds_any(&self, device: &str) -> bool {
        self.held.contains_key(device)
    }

    fn finish(&mut self, device: &str, op: &str, now: Instant) {
        let finished = self
            .finished
            .entry(device.to_owned())
            .or_insert_with(|| Finished {
                last_seen: HashMap::new(),
                listed: HashSet::new(),
                pruned: now,
            });
        finished.last_seen.insert(op.to_owned(), now);
        if finished.last_seen.len() > FINISHED_MAX {
            finished.prune(now);
        }
    }

    fn is_finished(&self, device: &str, op: &str) -> bool {
        self.finished
            .get(device)
            .is_some_and(|f| f.last_seen.contains_key(op))
    }

    /// `listed` is `device`'s latest listing of operations to run: those it finished are
    /// remembered from now; every [`FINISHED_PRUNE_EVERY`], what was neither listed nor
    /// finished for [`FINISHED_MEMORY`] is forgotten.
    fn seen_listed(&mut self, device: &str, listed: &[&str], now: Instant) {
        let Some(finished) = self.finished.get_mut(device) else {
            return;
        };
        finished.listed.clear();
        for op in listed {
            if let Some(at) = finished.last_seen.get_mut(*op) {
                *at = now;
                finished.listed.insert((*op).to_owned());
            }
        }
        if now.saturating_duration_since(finished.pruned) >= FINISHED_PRUNE_EVERY {
            finished.prune(now);
        }
    }
}

impl Finished {
    /// Forgets what was not seen for [`FINISHED_MEMORY`], then, beyond [`FINISHED_MAX`], the
    /// oldest of what the latest listing does not show (down to nine tenths of the maximum).
    fn prune(&mut self, now: Instant) {
        self.pruned = now;
        self.last_seen
            .retain(|_, at| now.saturating_duration_since(*at) < FINISHED_MEMORY);
        let excess = self.last_seen.len().saturating_sub(FINISHED_MAX);
        if excess > 0 {
            let mut oldest: Vec<(Instant, String)> = self
                .last_seen
                .iter()
                .filter(|(op, _)| !self.listed.contains(op.as_str()))
                .map(|(op, at)| (*at, op.clone()))
                .collect();
            oldest.sort_unstable();
            // A tenth more, so that a flood does not sort the whole memory on every finish.
            for (_, op) in oldest.into_iter().take(excess + FINISHED_MAX / 10) {
                self.last_seen.remove(&op);
            }
        }
    }
}

struct Inner {
    config: SignerConfig,
    keystore: Arc<Keystore>,
    coordinator: CoordinatorClient,
    primes: PrimeStock,
    devices: RwLock<BTreeMap<String, Arc<DeviceRuntime>>>,
    creating: tokio::sync::Mutex<()>,
    permits: Arc<Semaphore>,
    /// The slot (permit or joined run) of each running operation, shared by this instance's
    /// devices in its committee (one per operation, not per device: two local members of one
    /// committee must never wait for each other's permit, nor take two joined places).
    operation_permits: Mutex<HashMap<String, std::sync::Weak<take_part::RunSlot>>>,
    /// Runs joined without a permit (`take_part::RunSlot::Joined`).
    joined_runs: std::sync::atomic::AtomicUsize,
    /// What each device is doing: one lock, so that claiming and finishing cannot interleave.
    work: Mutex<Work>,
    approved: Mutex<HashMap<Key, Approval>>,
    /// The organisation's devices as last read (shared by the approvals that read them).
    directory: Mutex<directory::DirectoryCache>,
    /// The peers' pinned keys as the devices check them (`peers`).
    pins: peers::Pins,
    /// Operations whose approver gave no trustworthy answer: when to ask again.
    approval_waits: Mutex<HashMap<Key, ApprovalWait>>,
    started_at: DateTime<Utc>,
    coordinator_seen: Mutex<Option<Instant>>,
    stop: CancellationToken,
    hard_stop: CancellationToken,
    tasks: TaskTracker,
    prime_stop: Arc<AtomicBool>,
    aux_options: AuxInfoOptions,
    /// This process's presignatures: in memory only, lost at exit (docs/keystore.md).
    presignatures: Arc<crate::protocol::presign::Presignatures>,
    /// The public test primes to refuse (`None` with `AllowPublicTestPrimes`).
    public_test_primes: Option<Arc<vsigner_tss::primes::PublicTestPrimes>>,
    /// Where `.dr` files go, when `DisasterRecoveryPublicKey` is set.
    disaster_recovery: Option<crate::disaster_recovery::DisasterRecovery>,
    /// Held across every change of a `.dr` file and every commit of a reshare (see
    /// `recovery_files`).
    recovery_files: tokio::sync::Mutex<()>,
    /// The keystore's instance lock, held while the daemon runs.
    _instance_lock: Option<vsigner_keystore::lock::InstanceLock>,
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

/// Ready notifications for an operation while a task of the device holds it: the listing they
/// ask for cannot take it, so the task hears of them instead (a vote task waiting for the
/// quorum reads the operation unless its wait answers within 100 ms; any task that ends
/// without finishing the operation has the device list again).
#[derive(Default)]
struct ReadyHint {
    came: AtomicBool,
    notify: tokio::sync::Notify,
}

impl ReadyHint {
    fn came(&self) {
        self.came.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

/// Removes a (device, operation) from the in-flight set when dropped; if a Ready
/// notification came meanwhile and the operation is not finished, the device lists again.
struct InflightGuard {
    inner: Arc<Inner>,
    key: Key,
    hint: Arc<ReadyHint>,
    device: Arc<DeviceRuntime>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let mut work = lock(&self.inner.work);
        let idle = work.release(&self.key);
        let unfinished = !work.is_finished(&self.key.0, &self.key.1);
        drop(work);
        if unfinished && self.hint.came.load(Ordering::Acquire) {
            self.device.wake.notify_one();
        }
        if idle {
            self.device.idle.notify_one();
        }
    }
}

/// Takes the keystore's instance lock (`vsigner_keystore::lock`), creating the directory if
/// `create`: refused while another process (a running signer, an export or import) holds it.
pub fn lock_keystore(
    config: &SignerConfig,
    create: bool,
) -> Result<Option<vsigner_keystore::lock::InstanceLock>, StartError> {
    vsigner_keystore::lock::lock_instance(&config.storage_bucket_url, create).map_err(|source| {
        StartError::Keystore {
            location: crate::config::shown_storage(&config.storage_bucket_url),
            source,
        }
    })
}

/// Opens the keystore with the configured sealing.
pub async fn open_keystore(config: &SignerConfig) -> Result<Keystore, StartError> {
    let location = crate::config::shown_storage(&config.storage_bucket_url);
    let err = |source| StartError::Keystore {
        location: location.clone(),
        source,
    };
    let provider = sealing_provider(&config.keystore_sealing).map_err(err)?;
    Keystore::open(&config.storage_bucket_url, provider.as_ref())
        .await
        .map_err(err)
}

/// The sealing provider of a `KeystoreSealing` setting (a key file that does not exist yet
/// is created).
pub fn sealing_provider(sealing: &KeystoreSealing) -> Result<Box<dyn SealingProvider>, KeystoreError> {
    Ok(match sealing {
        KeystoreSealing::Passphrase(p) => Box::new(Passphrase::new(p.as_str())),
        KeystoreSealing::KeyFile(path) if path.exists() => Box::new(KeyFile::new(path)),
        KeystoreSealing::KeyFile(path) => Box::new(KeyFile::create(path)?),
        KeystoreSealing::Sgx => Box::new(SgxSealing::detect().ok_or_else(|| {
            KeystoreError::Lifecycle(
                "KeystoreSealing is sgx but this process does not run inside a Gramine SGX enclave".into(),
            )
        })?),
    })
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
    /// `device` as it acts at the coordinator: each action signed by its identity key.
    fn acting<'a>(&'a self, device: &'a DeviceRuntime) -> ActingDevice<'a> {
        ActingDevice {
            organisation_id: &self.inner.config.org_id,
            identity: &device.identity,
        }
    }

    /// Checks the signed records of the `listed` devices for `device` (pinning new peers),
    /// and lets its link check early envelopes from them before buffering any.
    async fn check_peers(&self, device: &DeviceRuntime, listed: &[Listed<'_>]) -> Result<(), String> {
        let keys = peers::check_all(
            &self.inner.keystore,
            &self.inner.pins,
            &device.identity,
            &self.inner.config.org_id,
            self.inner.config.trusted_device_keys.as_ref(),
            listed,
        )
        .await?;
        device.link.learn_peers(keys);
        Ok(())
    }

    /// Opens the keystore, checks the coordinator credentials, starts the prime stock, loads
    /// (or creates, from `InitialDevices`) the devices and starts their loops.
    pub async fn start(config: SignerConfig) -> Result<Daemon, StartError> {
        let disaster_recovery = config
            .disaster_recovery
            .as_ref()
            .map(crate::disaster_recovery::DisasterRecovery::open)
            .transpose()
            .map_err(StartError::Other)?;
        let instance_lock = lock_keystore(&config, true)?;
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
                "the keystore had leftovers of an interrupted run (cleaned; unconfirmed shares await their commit or the coordinator)"
            );
        }
        let public_test_primes = if config.allow_public_test_primes {
            None
        } else {
            let pool = vsigner_tss::primes::PublicTestPrimes::load()
                .map_err(|e| StartError::Other(format!("the public test prime pool: {e}")))?;
            crate::public_primes::check_keystore(&keystore, &pool)
                .await
                .map_err(StartError::Other)?;
            Some(Arc::new(pool))
        };
        presignatures::forget_stored(&keystore).await;
        let coordinator_ca = match &config.api_ca_cert {
            Some(ca) => reqwest::Certificate::from_pem_bundle(&ca.pem).map_err(|e| {
                StartError::Coordinator(ApiError::Unreachable(format!(
                    "{}: not a PEM certificate bundle: {e}",
                    crate::config::keys::API_CA_CERT
                )))
            })?,
            None => Vec::new(),
        };
        let coordinator = CoordinatorClient::trusting(
            &config.api_base_url,
            &config.auth_client_id,
            config.auth_client_secret.clone(),
            &coordinator_ca,
        )
        .map_err(StartError::Coordinator)?
        .graphql_at(config.graphql_url.clone());
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
            joined_runs: std::sync::atomic::AtomicUsize::new(0),
            config,
            keystore,
            coordinator,
            primes,
            devices: RwLock::new(BTreeMap::new()),
            creating: tokio::sync::Mutex::new(()),
            work: Mutex::new(Work::default()),
            approved: Mutex::new(HashMap::new()),
            directory: Mutex::new(directory::DirectoryCache::default()),
            pins: peers::Pins::default(),
            approval_waits: Mutex::new(HashMap::new()),
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
            presignatures: Arc::default(),
            public_test_primes,
            disaster_recovery,
            recovery_files: tokio::sync::Mutex::new(()),
            _instance_lock: instance_lock,
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
        daemon.discard_presignatures_at_start().await;
        daemon.reconcile_shares().await;
        let devices: Vec<String> = daemon.inner.devices.read().await.keys().cloned().collect();
        daemon
            .reconcile_recovery_files(&devices.iter().map(String::as_str).collect::<Vec<_>>(), true)
            .await;
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
        let insecure_approvals = match &self.inner.config.approval.mode {
            vsigner_approval::ModeConfig::Api(api) => api.insecurities.clone(),
            vsigner_approval::ModeConfig::Human(human) => human.insecurities.clone(),
            _ => Vec::new(),
        };
        ReadinessReport {
            coordinator_reachable,
            broker_connected,
            keystore_unlocked: true,
            insecure_approvals,
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
