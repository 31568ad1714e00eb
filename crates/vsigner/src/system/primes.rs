//! Safe-prime sets for the devices of a local system (each device's aux-info takes one set):
//! from the public test pool built into vsigner (tests and demonstrations only), from a pool
//! file, or generated now with a progress bar. Missing sets are generated.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context};
use serde::Serialize;
use vsigner_tss::primes::{PrimePool, PrimeSet, PRIMES_PER_SET};

/// Where prime sets come from.
#[derive(Debug, Clone)]
pub(crate) enum PrimeSource {
    /// The public test pool committed in `test-data/primes/`: anyone can factor keys made
    /// from it.
    PublicTestPool,
    /// A pool file made by `vsigner primes generate`.
    File(PathBuf),
    /// Generated now.
    Fresh,
}

/// Said loudly wherever keys were made from the public test pool.
pub(crate) const PUBLIC_PRIMES_WARNING: &str =
    "THE DEVICES' PAILLIER KEYS ARE MADE FROM THE PUBLIC TEST PRIMES COMMITTED IN THE \
     vsigner REPOSITORY: anyone can break them, so these keys are for demonstration only and \
     must never hold value (run with --fresh-primes for real primes)";

/// Where the sets came from, for reports.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PrimesUsed {
    pub(crate) source: String,
    pub(crate) sets: usize,
    pub(crate) generated: usize,
    /// Some sets are public test data.
    pub(crate) public: bool,
}

/// `needed` prime sets from `source`, generating what it lacks.
pub(crate) fn prime_sets(source: &PrimeSource, needed: usize) -> anyhow::Result<(Vec<PrimeSet>, PrimesUsed)> {
    let (mut sets, name, public) = match source {
        PrimeSource::Fresh => (Vec::new(), "generated now".to_owned(), false),
        PrimeSource::File(path) => {
            let sets = crate::commands::primes::read_pool(path)?
                .into_sets()
                .with_context(|| format!("{} is not a valid prime pool", path.display()))?;
            eprintln!(
                "note: the sets taken from {} stay in it; give that file to no signer that holds real keys",
                path.display()
            );
            // A file may hold public test primes (copied, reordered): those are public all
            // the same, by the daemons' own test (any public prime in a set).
            let public_primes = vsigner_tss::primes::PublicTestPrimes::load()?;
            let public = sets.iter().take(needed).any(|s| public_primes.contains_set(s));
            (sets, path.display().to_string(), public)
        }
        PrimeSource::PublicTestPool => (
            crate::test_primes::public_test_prime_sets()?,
            "the public test pool".to_owned(),
            true,
        ),
    };
    sets.truncate(needed);
    let taken = sets.len();
    let missing = needed - taken;
    if missing > 0 {
        sets.extend(generate_sets(missing)?);
    }
    Ok((
        sets,
        PrimesUsed {
            source: name,
            sets: needed,
            generated: missing,
            public: public && taken > 0,
        },
    ))
}

/// Generates `count` prime sets on every core, with a progress bar on stderr.
fn generate_sets(count: usize) -> anyhow::Result<Vec<PrimeSet>> {
    let workers = num_cpus::get().max(1);
    let primes = count * PRIMES_PER_SET;
    eprintln!(
        "  generating {primes} safe primes ({count} set(s)) on {workers} threads: roughly {:.0} min (25-35 s per prime and core)",
        (primes as f64 * 35.0 / workers as f64 / 60.0).ceil()
    );
    let bar = crate::commands::primes::prime_progress_bar(primes);
    let pool = PrimePool::with_sets(Vec::new());
    pool.fill(
        count,
        workers,
        || rand_core::OsRng,
        &AtomicBool::new(false),
        &|_| {
            bar.inc(1);
        },
    );
    bar.finish_and_clear();
    let sets = pool.snapshot();
    if sets.len() < count {
        bail!("prime generation stopped with {} of {count} sets", sets.len());
    }
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn a_pool_file_with_public_test_sets_is_public() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("pool.json");
        let committed =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-data/primes/public-test-pool.json");
        std::fs::copy(committed, &copy).unwrap();
        let (sets, used) = prime_sets(&PrimeSource::File(copy), 2).unwrap();
        assert_eq!(sets.len(), 2);
        assert!(
            used.public,
            "the public test sets, copied to another file, are still public"
        );
    }
}
