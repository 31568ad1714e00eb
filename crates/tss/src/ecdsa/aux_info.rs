//! Auxiliary-info generation (Paillier keys, ring-Pedersen parameters) for a device set.

use rand_core::{CryptoRng, RngCore};
use round_based::Mpc;

use super::{check_index, AuxInfo, ProtocolDigest, SecurityLevel};
use crate::primes::PrimeSet;
use crate::wire::{self, RunParams};
use crate::{Error, ExecutionId, PartyIndex, WireMessage};

/// Rounds of `cggmp24::key_refresh::msg::Msg`: 1, 2, 3, reliability check.
const AUX_ROUNDS: &[round_based::MessageType] = &[wire::B, wire::B, wire::P, wire::B];

/// Options of [`generate_aux_info`].
#[derive(Debug, Clone, Copy)]
pub struct AuxInfoOptions {
    /// Precompute multi-exponentiation tables: ~25 % faster signing, ~10 s more per party
    /// and a larger aux-info in memory. On in production, off in most tests.
    pub precompute_multiexp: bool,
}

impl Default for AuxInfoOptions {
    fn default() -> Self {
        AuxInfoOptions {
            precompute_multiexp: true,
        }
    }
}

/// Generates this device's aux-info as party `i` of the `n` devices of a set, consuming one
/// [`PrimeSet`] (a prime set must never be used twice: it becomes the Paillier secret key).
pub async fn generate_aux_info<P, R>(
    party: P,
    eid: ExecutionId,
    i: PartyIndex,
    n: u16,
    primes: PrimeSet,
    options: AuxInfoOptions,
    rng: &mut R,
) -> Result<AuxInfo, Error>
where
    P: Mpc<ProtocolMessage = WireMessage>,
    R: RngCore + CryptoRng,
{
    if n < 2 {
        return Err(Error::invalid_args("aux-info needs at least 2 devices"));
    }
    check_index(i, n)?;
    vsigner_memory::wipe_gmp_on_free();
    let primes = primes.into_pregenerated()?;
    let (party, faults) = wire::connect(
        party,
        RunParams {
            eid,
            me: i,
            n,
            kinds: AUX_ROUNDS,
        },
    );
    let aux = cggmp24::aux_info_gen::<SecurityLevel>(eid.for_cggmp(), i, n, primes)
        .set_digest::<ProtocolDigest>()
        .precompute_multiexp_tables(options.precompute_multiexp)
        .start(rng, party)
        .await
        .map_err(|e| faults.explain(Error::protocol(&e)))?;
    Ok(AuxInfo(aux))
}
