//! The instance's stock of safe-prime sets, persisted in the keystore and refilled in the
//! background.
//!
//! Every ECDSA aux-info run (after a secp256k1 keygen, and for the new set of a reshare)
//! consumes one prime set per device: the primes become that device's Paillier and
//! ring-Pedersen secrets, so a set is used once and never again. Generating a set costs
//! minutes (four 1536-bit safe primes, ~35 s each on one core here), so the daemon keeps
//! `PrimePoolTarget` sets ready, generating on one background thread with progress in the
//! logs and the `vsigner_prime_pool_sets` metric.
//!
//! Sets are records `devices/instance/prime-set/<random>` of the keystore; taking one
//! deletes it durably before it is returned (`Keystore::take`), so a set is never handed
//! out twice, even across a crash.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rand_core::{OsRng, RngCore};
use vsigner_keystore::{Keystore, KeystoreError, RecordId, RecordKind};
use vsigner_tss::primes::{PrimePool, PrimeSet, PRIMES_PER_SET};

use crate::metrics;

/// The keystore "device" under which the instance's prime sets are stored.
pub const OWNER: &str = "instance";

/// The persisted stock of prime sets.
#[derive(Clone)]
pub struct PrimeStock {
    keystore: Arc<Keystore>,
    ready: Arc<AtomicUsize>,
}

impl std::fmt::Debug for PrimeStock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrimeStock")
            .field("ready", &self.ready())
            .finish()
    }
}

impl PrimeStock {
    /// The stock stored in `keystore`.
    pub async fn open(keystore: Arc<Keystore>) -> Result<Self, KeystoreError> {
        let stock = PrimeStock {
            keystore,
            ready: Arc::new(AtomicUsize::new(0)),
        };
        stock.recount().await?;
        Ok(stock)
    }

    async fn ids(&self) -> Result<Vec<RecordId>, KeystoreError> {
        Ok(self
            .keystore
            .list()
            .await?
            .into_iter()
            .filter(|r| r.id.kind() == RecordKind::PrimeSet && r.id.device() == OWNER)
            .map(|r| r.id)
            .collect())
    }

    async fn recount(&self) -> Result<usize, KeystoreError> {
        let n = self.ids().await?.len();
        self.ready.store(n, Ordering::Relaxed);
        metrics::prime_pool_sets(n);
        Ok(n)
    }

    /// Sets ready now.
    pub fn ready(&self) -> usize {
        self.ready.load(Ordering::Relaxed)
    }

    /// Adds a set.
    pub async fn put(&self, set: &PrimeSet) -> Result<(), KeystoreError> {
        let mut name = [0u8; 16];
        OsRng.fill_bytes(&mut name);
        let bytes = set
            .to_bytes()
            .map_err(|e| KeystoreError::Lifecycle(format!("prime set does not encode: {e}")))?;
        self.keystore
            .put(&RecordId::prime_set(OWNER, &hex::encode(name))?, &bytes)
            .await?;
        self.recount().await?;
        Ok(())
    }

    /// Takes one set out of the stock (it is deleted before it is returned), or `None` if
    /// the stock is empty.
    pub async fn take(&self) -> Result<Option<PrimeSet>, KeystoreError> {
        // `Keystore::take` hands a record to one caller only: a set taken by a concurrent run
        // meanwhile comes back `None`, and the next one is tried.
        let mut taken = None;
        for id in self.ids().await? {
            if let Some(bytes) = self.keystore.take(&id).await? {
                let set = PrimeSet::from_bytes(&bytes)
                    .map_err(|e| KeystoreError::Lifecycle(format!("prime set {id}: {e}")))?;
                taken = Some(set);
                break;
            }
        }
        self.recount().await?;
        Ok(taken)
    }

    /// Keeps `target` sets ready, generating on one background thread until `stop` is set.
    /// Progress goes to the logs (one line per prime) and to the metrics. The thread never
    /// touches the async runtime: finished sets go through a channel to a task that stores
    /// them, so a runtime shutting down only ends the thread.
    pub fn spawn_refill(
        &self,
        target: usize,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<PrimeSet>(1);
        let stock = self.clone();
        tokio::spawn(async move {
            while let Some(set) = rx.recv().await {
                match stock.put(&set).await {
                    Ok(()) => tracing::info!(ready = stock.ready(), target, "safe-prime set stored"),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot store a generated safe-prime set; it is lost")
                    }
                }
            }
        });
        let stock = self.clone();
        std::thread::Builder::new()
            .name("vsigner-primes".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // `ready` counts stored sets; one in the channel is not counted yet, so
                    // wait for it to land before deciding again.
                    if target == 0 || stock.ready() >= target || tx.capacity() == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(500));
                        continue;
                    }
                    let started = Instant::now();
                    tracing::info!(
                        ready = stock.ready(),
                        target,
                        "generating a safe-prime set ({PRIMES_PER_SET} primes, minutes of CPU) for the aux-info stock"
                    );
                    let pool = PrimePool::default();
                    pool.fill(1, 1, || OsRng, &stop, &|progress| {
                        tracing::info!(
                            primes_done = progress.loose_primes + progress.sets_ready * PRIMES_PER_SET,
                            primes_per_set = PRIMES_PER_SET,
                            elapsed_s = started.elapsed().as_secs(),
                            "safe prime generated"
                        );
                    });
                    metrics::protocol_duration(metrics::Protocol::SafePrimes, started.elapsed());
                    let Some(set) = pool.take() else { continue }; // stopped mid-way
                    if tx.blocking_send(set).is_err() {
                        return; // the runtime is gone
                    }
                    // Let the store task count it before the next decision.
                    while tx.capacity() == 0 && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            })
    }
}
