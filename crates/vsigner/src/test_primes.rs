//! The public test prime pool committed in `test-data/primes/` (built into the binary by
//! `vsigner_tss::primes`), for benchmarks and the demo. These primes are PUBLIC: keys
//! whose aux-info uses them are for tests and demonstrations only, and `vsigner run`
//! refuses them unless `AllowPublicTestPrimes` is set.

use vsigner_tss::primes::PrimeSet;

/// The public test prime sets.
pub(crate) fn public_test_prime_sets() -> anyhow::Result<Vec<PrimeSet>> {
    Ok(vsigner_tss::primes::public_test_prime_sets()?)
}
