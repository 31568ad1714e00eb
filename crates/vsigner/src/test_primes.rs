//! The public test prime pool committed in `test-data/primes/`, built into the binary for
//! benchmarks and the demo. These primes are PUBLIC: keys whose aux-info uses them are for
//! tests and demonstrations only.

use vsigner_tss::primes::{PrimePoolFile, PrimeSet};

const PUBLIC_TEST_POOL: &str = include_str!("../../../test-data/primes/public-test-pool.json");

/// The public test prime sets.
pub(crate) fn public_test_prime_sets() -> anyhow::Result<Vec<PrimeSet>> {
    let file: PrimePoolFile = serde_json::from_str(PUBLIC_TEST_POOL)?;
    Ok(file.into_sets()?)
}
