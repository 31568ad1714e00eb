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

/// Messages of [`agree_on_reuse`]: round 0, the sender's fingerprint of the aux-info it
/// holds for this device set, or nothing; round 1, the hash of every offer as received.
#[derive(Clone, serde::Serialize, serde::Deserialize, round_based::ProtocolMessage)]
enum ReuseMsg {
    Offer(Offer),
    Echo(ReuseEcho),
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Offer(Option<[u8; 32]>);

#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ReuseEcho([u8; 32]);

/// Offer, then echo: two broadcast rounds.
const REUSE_ROUNDS: &[round_based::MessageType] = &[wire::B, wire::B];

impl AuxInfo {
    /// Whether any device's Paillier modulus `N_j` or ring-Pedersen modulus `N̂_j` in this
    /// aux-info has a factor from the public test pool: such aux-info protects nothing.
    pub fn uses_public_test_primes(&self, pool: &crate::primes::PublicTestPrimes) -> bool {
        self.0.N.iter().any(|n| pool.divides(n))
            || self.0.pedersen_params.iter().any(|p| pool.divides(&p.hat_N))
    }

    /// A fingerprint of what every member of the device set holds in common: SHA-256 over
    /// `n`, every party's Paillier modulus `N_j` and ring-Pedersen parameters
    /// `(N̂_j, s_j, t_j)`. The members of one aux-info run get the same fingerprint. Nothing
    /// secret enters it (the primes and the CRT data are left out).
    pub fn public_fingerprint(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u32).to_be_bytes());
            h.update(bytes);
        };
        field(b"vsigner/aux-info-fingerprint/v1");
        field(&(self.0.N.len() as u32).to_be_bytes());
        for n in &self.0.N {
            field(&n.to_bytes_msf());
        }
        for p in &self.0.pedersen_params {
            field(&p.hat_N.to_bytes_msf());
            field(&p.s.to_bytes_msf());
            field(&p.t.to_bytes_msf());
        }
        h.finalize().into()
    }
}

/// Decides, with the other `n` members of a device set, whether they all already hold the
/// same aux-info for it: each party broadcasts the [`AuxInfo::public_fingerprint`] of the
/// aux-info it holds for this set as party `i` (or nothing), then echoes the hash of all
/// offers as it received them; the answer is `true` only when every offer, its own included,
/// is the same fingerprint. The echo makes the offers a reliable broadcast: a party that
/// shows different offers to different parties makes the run fail at once (naming the party
/// whose echo differs, as the FROST keygen's echo does), so honest parties never decide
/// differently. A party that lies consistently can only make the others generate aux-info
/// afresh or fail to sign with it, not make them use aux-info of its choosing (each uses the
/// one it stored).
pub async fn agree_on_reuse<P>(
    party: P,
    eid: ExecutionId,
    i: PartyIndex,
    n: u16,
    mine: Option<&AuxInfo>,
) -> Result<bool, Error>
where
    P: Mpc<ProtocolMessage = WireMessage>,
{
    use futures::SinkExt;
    use round_based::rounds_router::{simple_store::RoundInput, RoundsRouter};
    use round_based::{MpcParty, Outgoing};

    if n < 2 {
        return Err(Error::invalid_args("aux-info needs at least 2 devices"));
    }
    check_index(i, n)?;
    let offer = mine
        .filter(|a| a.n() == n && a.index() == i)
        .map(AuxInfo::public_fingerprint);
    let (party, faults): (wire::CheckedParty<ReuseMsg, P>, _) = wire::connect(
        party,
        RunParams {
            eid,
            me: i,
            n,
            kinds: REUSE_ROUNDS,
        },
    );
    let MpcParty { delivery, .. } = party;
    let (incoming, mut outgoing) = round_based::Delivery::split(delivery);
    let mut router = RoundsRouter::<ReuseMsg>::builder();
    let round_offer = router.add_round(RoundInput::<Offer>::broadcast(i, n));
    let round_echo = router.add_round(RoundInput::<ReuseEcho>::broadcast(i, n));
    let mut router = router.listen(incoming);
    let io = |e: &dyn std::error::Error| Error::Transport(e.to_string());
    outgoing
        .send(Outgoing::broadcast(ReuseMsg::Offer(Offer(offer))))
        .await
        .map_err(|e| faults.explain(io(&e)))?;
    let received = router
        .complete(round_offer)
        .await
        .map_err(|e| faults.explain(Error::protocol(&e)))?;
    let mut offers: Vec<Option<[u8; 32]>> = vec![None; usize::from(n)];
    for (sender, _, Offer(o)) in received.into_iter_indexed() {
        if let Some(slot) = offers.get_mut(usize::from(sender)) {
            *slot = o;
        }
    }
    if let Some(slot) = offers.get_mut(usize::from(i)) {
        *slot = offer;
    }
    let my_echo = ReuseEcho(wire::echo_hash(b"vsigner/aux-info-reuse/echo/v1", &eid, &offers)?);
    outgoing
        .send(Outgoing::broadcast(ReuseMsg::Echo(my_echo.clone())))
        .await
        .map_err(|e| faults.explain(io(&e)))?;
    let echoes = router
        .complete(round_echo)
        .await
        .map_err(|e| faults.explain(Error::protocol(&e)))?;
    if let Some((sender, _, _)) = echoes.iter_indexed().find(|(_, _, e)| **e != my_echo) {
        return Err(faults.blame(sender, crate::Fault::EchoMismatch { round: 0 }));
    }
    Ok(offer.is_some() && offers.iter().all(|o| *o == offer))
}
