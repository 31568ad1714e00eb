//! Threshold ECDSA key generation (CGGMP24 DKG with HD support).

use rand_core::{CryptoRng, RngCore};
use round_based::Mpc;

use super::{check_index, check_threshold, CoreShare, EcdsaCurve};
use crate::wire::{self, RunParams};
use crate::{Error, ExecutionId, PartyIndex, WireMessage};

/// Rounds of `cggmp24::keygen::ThresholdMsg`: 1, 2 broadcast, 2 p2p, 3, reliability check.
const KEYGEN_ROUNDS: &[round_based::MessageType] = &[wire::B, wire::B, wire::P, wire::B, wire::B];

/// Runs the threshold DKG as party `i` of `n`; any `t` of the `n` resulting shares sign.
///
/// HD is always enabled: the key gets a chain code so that child keys can be derived at
/// non-hardened BIP-32 paths.
pub async fn keygen<E, P, R>(
    party: P,
    eid: ExecutionId,
    i: PartyIndex,
    n: u16,
    t: u16,
    rng: &mut R,
) -> Result<CoreShare<E>, Error>
where
    E: EcdsaCurve,
    P: Mpc<ProtocolMessage = WireMessage>,
    R: RngCore + CryptoRng,
{
    check_threshold(t, n)?;
    check_index(i, n)?;
    let (party, faults) = wire::connect(
        party,
        RunParams {
            eid,
            me: i,
            n,
            kinds: KEYGEN_ROUNDS,
        },
    );
    let share = cggmp24::keygen::<E>(eid.for_cggmp(), i, n)
        .set_threshold(t)
        .hd_wallet(true)
        .start(rng, party)
        .await
        .map_err(|e| faults.explain(Error::protocol(&e)))?;
    Ok(CoreShare(share))
}
