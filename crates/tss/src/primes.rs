//! Safe primes for aux-info generation, and the pool that makes them ahead of time.
//!
//! Each device needs a [`PrimeSet`] (four 1536-bit safe primes: two for its Paillier key,
//! two for its ring-Pedersen modulus) for every aux-info run. A safe prime costs ~35 s of
//! one core here, so a [`PrimePool`] generates them in the background on a bounded number of
//! threads, persists them (see [`PrimePoolFile`]) and hands out one set per run.
//!
//! # Security
//! A prime set becomes a Paillier secret key: it is secret, used once, and removed from the
//! pool when taken. Primes are held as big-endian bytes in [`Zeroizing`] buffers and only
//! converted to GMP integers when handed to the protocol. `Debug` never shows them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cggmp24::backend::Integer;
use cggmp24::security_level::SecurityLevel as _;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::ecdsa::SecurityLevel;
use crate::share::{self, Kind};
use crate::wire::Bytes;
use crate::Error;

/// Bits of each safe prime at the security level in use (1536).
pub const PRIME_BITS: u32 = SecurityLevel::RSA_PRIME_BITLEN;
/// Primes per set.
pub const PRIMES_PER_SET: usize = 4;

/// One safe prime, big endian.
#[derive(Clone, PartialEq, Eq)]
pub struct SafePrime(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for SafePrime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SafePrime(<redacted>)")
    }
}

impl SafePrime {
    /// Generates a random safe prime `p = 2q + 1` of [`PRIME_BITS`] bits (~35 s of one core).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let p = Integer::generate_safe_prime(rng, PRIME_BITS);
        SafePrime(Zeroizing::new(p.to_bytes_msf()))
    }

    fn to_integer(&self) -> Integer {
        vsigner_memory::wipe_gmp_on_free();
        Integer::from_bytes_msf(&self.0)
    }
}

/// Four safe primes: one device's input to one aux-info run.
#[derive(Clone, PartialEq, Eq)]
pub struct PrimeSet([SafePrime; PRIMES_PER_SET]);

impl std::fmt::Debug for PrimeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrimeSet(<redacted>)")
    }
}

#[derive(Serialize, Deserialize)]
struct StoredPrimeSet(Vec<Bytes>);

impl PrimeSet {
    /// Builds a set from four primes.
    pub fn new(primes: [SafePrime; PRIMES_PER_SET]) -> Self {
        PrimeSet(primes)
    }

    /// Generates a set on the current thread (~2-3 minutes of one core).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        PrimeSet([(); PRIMES_PER_SET].map(|_| SafePrime::generate(rng)))
    }

    /// Checks sizes and (probabilistic) primality of `p` and `(p-1)/2` for each prime.
    pub fn validate<R: RngCore>(&self, rng: &mut R) -> Result<(), Error> {
        for (k, prime) in self.0.iter().enumerate() {
            let p = prime.to_integer();
            if p.significant_bits() != u64::from(PRIME_BITS) {
                return Err(Error::InvalidKeyMaterial(format!(
                    "prime {k} is not {PRIME_BITS} bits"
                )));
            }
            let q = (p.clone() - Integer::one()) >> 1;
            let probably = |x: &Integer, rng: &mut R| {
                !matches!(x.is_probably_prime(25, rng), cggmp24::backend::IsPrime::No)
            };
            if !probably(&p, rng) || !probably(&q, rng) {
                return Err(Error::InvalidKeyMaterial(format!(
                    "prime {k} is not a safe prime"
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn into_pregenerated(self) -> Result<cggmp24::PregeneratedPrimes<SecurityLevel>, Error> {
        let ints = self.0.each_ref().map(SafePrime::to_integer);
        cggmp24::PregeneratedPrimes::try_from(ints).map_err(|_| {
            Error::InvalidKeyMaterial("primes are smaller than the security level requires".into())
        })
    }

    /// Serializes in the versioned key-material format.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        // `Bytes` wipes each copy when `stored` is dropped.
        let stored = StoredPrimeSet(self.0.iter().map(|p| Bytes(p.0.to_vec())).collect());
        share::encode(Kind::PrimeSet, &stored)
    }

    /// Parses bytes made by [`PrimeSet::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let stored: StoredPrimeSet = share::decode(Kind::PrimeSet, bytes)?;
        Self::from_byte_vecs(stored.0.iter().map(|b| b.0.clone()).collect())
    }

    fn from_byte_vecs(mut primes: Vec<Vec<u8>>) -> Result<Self, Error> {
        if primes.len() != PRIMES_PER_SET {
            return Err(Error::InvalidKeyMaterial(format!(
                "a prime set has {PRIMES_PER_SET} primes, found {}",
                primes.len()
            )));
        }
        let mut take = || SafePrime(Zeroizing::new(primes.remove(0)));
        Ok(PrimeSet([take(), take(), take(), take()]))
    }
}

/// A pool of prime sets as a file: what `vsigner primes generate` writes and `--primes`
/// reads. JSON, primes in hex.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrimePoolFile {
    /// Always `"vsigner-prime-pool"`.
    pub format: String,
    /// Format version, currently 1.
    pub version: u16,
    /// Bits per prime.
    pub bits: u32,
    /// A note for humans (e.g. that a committed test pool is public).
    #[serde(default)]
    pub note: String,
    /// The sets, each four hex-encoded primes.
    pub sets: Vec<Vec<String>>,
}

impl std::fmt::Debug for PrimePoolFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrimePoolFile")
            .field("version", &self.version)
            .field("sets", &self.sets.len())
            .finish()
    }
}

const POOL_FORMAT: &str = "vsigner-prime-pool";

impl PrimePoolFile {
    /// A file holding `sets`.
    pub fn new(sets: &[PrimeSet], note: impl Into<String>) -> Self {
        PrimePoolFile {
            format: POOL_FORMAT.into(),
            version: 1,
            bits: PRIME_BITS,
            note: note.into(),
            sets: sets
                .iter()
                .map(|s| s.0.iter().map(|p| hex::encode(&*p.0)).collect())
                .collect(),
        }
    }

    /// The sets in the file, after checking format, version and sizes, and that no prime
    /// appears twice (two devices or two aux-info runs would share a Paillier or ring-Pedersen
    /// factor).
    pub fn into_sets(self) -> Result<Vec<PrimeSet>, Error> {
        let bad = |reason: String| Error::Format {
            what: "prime pool file",
            reason,
        };
        if self.format != POOL_FORMAT {
            return Err(bad(format!(
                "format is {:?}, expected {POOL_FORMAT:?}",
                self.format
            )));
        }
        if self.version != 1 {
            return Err(bad(format!(
                "version {} is not supported (expected 1)",
                self.version
            )));
        }
        if self.bits != PRIME_BITS {
            return Err(bad(format!(
                "primes are {} bits, this build needs {PRIME_BITS}",
                self.bits
            )));
        }
        let sets = self
            .sets
            .into_iter()
            .enumerate()
            .map(|(k, set)| {
                let bytes = set
                    .iter()
                    .map(|h| hex::decode(h).map_err(|e| bad(format!("set {k}: {e}"))))
                    .collect::<Result<Vec<_>, _>>()?;
                PrimeSet::from_byte_vecs(bytes)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if repeats_a_prime(&sets) {
            return Err(bad("a prime appears more than once".into()));
        }
        Ok(sets)
    }
}

/// Whether any prime appears twice among `sets`, within a set or across sets.
pub fn repeats_a_prime(sets: &[PrimeSet]) -> bool {
    let mut seen = std::collections::HashSet::new();
    sets.iter()
        .flat_map(|s| s.0.iter())
        .any(|p| !seen.insert(p.0.as_slice()))
}

/// The public test pool committed in `test-data/primes/public-test-pool.json`, built in.
/// Its primes are PUBLIC: a Paillier key made from them protects nothing (anyone who reads
/// the broker decrypts the key's round-1 ciphertexts, then learns the key from one
/// signature). Tests and the demo use it; a production signer refuses it
/// ([`PublicTestPrimes`]).
pub const PUBLIC_TEST_POOL_JSON: &str = include_str!("../../../test-data/primes/public-test-pool.json");

/// The prime sets of [`PUBLIC_TEST_POOL_JSON`].
pub fn public_test_prime_sets() -> Result<Vec<PrimeSet>, Error> {
    let file: PrimePoolFile = serde_json::from_str(PUBLIC_TEST_POOL_JSON).map_err(|e| Error::Format {
        what: "public test prime pool",
        reason: e.to_string(),
    })?;
    file.into_sets()
}

/// Recognises key material made from the public test pool: a prime set that contains one
/// of its primes, or aux-info in which any device's Paillier or ring-Pedersen modulus has
/// one of them as a factor.
pub struct PublicTestPrimes {
    primes: Vec<Integer>,
}

impl std::fmt::Debug for PublicTestPrimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicTestPrimes({} primes)", self.primes.len())
    }
}

impl PublicTestPrimes {
    /// The primes of the built-in public pool.
    pub fn load() -> Result<Self, Error> {
        let sets = public_test_prime_sets()?;
        Ok(PublicTestPrimes {
            primes: sets
                .iter()
                .flat_map(|s| s.0.iter().map(|p| Integer::from_bytes_msf(&p.0)))
                .collect(),
        })
    }

    /// Whether `set` contains a public test prime.
    pub fn contains_set(&self, set: &PrimeSet) -> bool {
        set.0
            .iter()
            .any(|p| self.primes.contains(&Integer::from_bytes_msf(&p.0)))
    }

    /// Whether a modulus has a public test prime as a factor.
    pub(crate) fn divides(&self, modulus: &Integer) -> bool {
        self.primes
            .iter()
            .any(|p| modulus.modulo_ref(p).cmp0() == std::cmp::Ordering::Equal)
    }
}

/// How far a pool is towards its target; cheap to read from any thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolProgress {
    /// Complete sets ready to be taken.
    pub sets_ready: usize,
    /// Primes generated towards the next sets (not yet grouped into a set).
    pub loose_primes: usize,
    /// Sets the pool is filling towards.
    pub target_sets: usize,
}

impl PoolProgress {
    /// Primes still to generate before the target is reached.
    pub fn primes_missing(&self) -> usize {
        (self.target_sets.saturating_sub(self.sets_ready) * PRIMES_PER_SET).saturating_sub(self.loose_primes)
    }
}

#[derive(Default)]
struct PoolState {
    sets: Vec<PrimeSet>,
    loose: Vec<SafePrime>,
    target_sets: usize,
    in_flight: usize,
}

/// A thread-safe pool of prime sets, filled in the background.
#[derive(Clone, Default)]
pub struct PrimePool {
    state: Arc<Mutex<PoolState>>,
    generated: Arc<AtomicUsize>,
}

impl std::fmt::Debug for PrimePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrimePool")
            .field("progress", &self.progress())
            .finish()
    }
}

impl PrimePool {
    /// A pool holding `sets` (e.g. loaded from storage).
    pub fn with_sets(sets: Vec<PrimeSet>) -> Self {
        let pool = PrimePool::default();
        pool.lock().sets = sets;
        pool
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one set out of the pool, if one is ready. A taken set is never handed out again.
    pub fn take(&self) -> Option<PrimeSet> {
        self.lock().sets.pop()
    }

    /// Adds a set (e.g. made elsewhere).
    pub fn put(&self, set: PrimeSet) {
        self.lock().sets.push(set);
    }

    /// Copies of the sets currently ready (for persisting the pool).
    pub fn snapshot(&self) -> Vec<PrimeSet> {
        self.lock().sets.clone()
    }

    /// Current progress.
    pub fn progress(&self) -> PoolProgress {
        let s = self.lock();
        PoolProgress {
            sets_ready: s.sets.len(),
            loose_primes: s.loose.len(),
            target_sets: s.target_sets,
        }
    }

    /// Total primes generated by this pool since it was created.
    pub fn primes_generated(&self) -> usize {
        self.generated.load(Ordering::Relaxed)
    }

    /// Generates primes on `workers` threads until `target_sets` sets are ready or `stop` is
    /// set, calling `on_prime` after each prime. Blocks until done; run it on a dedicated
    /// thread (`std::thread::spawn`) to fill the pool in the background. `make_rng` gives
    /// each worker its own cryptographic RNG.
    pub fn fill<R, F>(
        &self,
        target_sets: usize,
        workers: usize,
        make_rng: F,
        stop: &AtomicBool,
        on_prime: &(dyn Fn(PoolProgress) + Sync),
    ) where
        R: RngCore + CryptoRng,
        F: Fn() -> R + Sync,
    {
        self.lock().target_sets = target_sets;
        std::thread::scope(|scope| {
            for _ in 0..workers.max(1) {
                scope.spawn(|| {
                    let mut rng = make_rng();
                    while !stop.load(Ordering::Relaxed) && self.claim_work() {
                        let prime = SafePrime::generate(&mut rng);
                        self.generated.fetch_add(1, Ordering::Relaxed);
                        self.deliver(prime);
                        on_prime(self.progress());
                    }
                });
            }
        });
    }

    /// Reserves one prime of work if the target is not yet covered by ready and in-flight work.
    fn claim_work(&self) -> bool {
        let mut s = self.lock();
        let have = s.sets.len() * PRIMES_PER_SET + s.loose.len() + s.in_flight;
        if have < s.target_sets * PRIMES_PER_SET {
            s.in_flight += 1;
            true
        } else {
            false
        }
    }

    fn deliver(&self, prime: SafePrime) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        s.loose.push(prime);
        if s.loose.len() >= PRIMES_PER_SET {
            let four: Vec<SafePrime> = s.loose.drain(..PRIMES_PER_SET).collect();
            if let Ok(arr) = <[SafePrime; PRIMES_PER_SET]>::try_from(four) {
                s.sets.push(PrimeSet(arr));
            }
        }
    }
}
