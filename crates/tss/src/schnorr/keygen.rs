//! FROST distributed key generation with a reliable-broadcast (echo) round.
//!
//! Rounds (numbered as the message enum):
//! 0. broadcast `round1::Package`: commitment to the secret polynomial and a proof of
//!    knowledge of its constant term (`dkg::part1`); beside it a commitment
//!    `SHA-256("vsigner/frost-dkg/chain-code/v1" ‖ eid ‖ i ‖ r_i)` to 32 random bytes `r_i`;
//! 1. broadcast echo: `SHA-256(eid ‖ CBOR(package_0, commitment_0) ‖ …)` over the round-0
//!    messages as this party received them (its own included), and `r_i` itself; every party
//!    compares the echoes with its own view and names the first party that disagrees, and
//!    checks every `r_j` against its commitment (naming a party whose does not match);
//! 2. p2p `round2::Package`: the recipient's secret share (`dkg::part2`, which verifies the
//!    proofs of knowledge), then `dkg::part3` verifies the shares against the commitments
//!    and outputs the key package.
//!
//! The key's chain code (for child keys, ed25519) is `r_0 ⊕ … ⊕ r_{n-1}`: every `r_j` was
//! fixed before any was shown, so one honest party makes it uniformly random (the same
//! commit-and-reveal as `cggmp21-keygen`'s chain code), and the echo round makes every party
//! end with the same one.

use std::collections::BTreeMap;

use frost_core::keys::dkg::{self, round1, round2};
use frost_core::Identifier;
use futures::SinkExt;
use rand_core::{CryptoRng, RngCore};
use round_based::rounds_router::{simple_store::RoundInput, RoundsRouter};
use round_based::{Delivery, Mpc, MpcParty, Outgoing, ProtocolMessage};
use serde::{Deserialize, Serialize};

use super::{culprits_of, identifier, KeyShare, SchnorrScheme};
use crate::wire::{self, RunParams};
use crate::{Error, ExecutionId, Fault, PartyIndex, WireMessage};

/// Messages of the FROST DKG; packages travel in frost's own encoding.
#[derive(Clone, Serialize, Deserialize, ProtocolMessage)]
enum Msg {
    Commitments(Commitments),
    Echo(Echo),
    Share(Share),
}

/// Round 0: `round1::Package::serialize` (commitments and proof of knowledge), and the
/// commitment to this party's part of the chain code.
#[derive(Clone, Serialize, Deserialize)]
struct Commitments {
    package: wire::Bytes,
    chain_code_commitment: [u8; 32],
}

/// Round 1: hash of all round-0 messages as received, and this party's part of the chain
/// code (committed in round 0).
#[derive(Clone, Serialize, Deserialize)]
struct Echo {
    hash: [u8; 32],
    chain_code_part: [u8; 32],
}

/// Round 2: `round2::Package::serialize`, the recipient's secret share (wiped on drop).
#[derive(Clone, Serialize, Deserialize)]
struct Share(wire::Bytes);

const COMMITMENT_ROUND: u16 = 0;

/// Runs the FROST DKG as party `i` of `n` with threshold `t`.
pub async fn keygen<C, P, R>(
    party: P,
    eid: ExecutionId,
    i: PartyIndex,
    n: u16,
    t: u16,
    rng: &mut R,
) -> Result<KeyShare<C>, Error>
where
    C: SchnorrScheme,
    P: Mpc<ProtocolMessage = WireMessage>,
    R: RngCore + CryptoRng,
{
    crate::ecdsa::check_threshold(t, n)?;
    crate::ecdsa::check_index(i, n)?;
    let ids: Vec<Identifier<C>> = (0..n).map(identifier::<C>).collect::<Result<_, _>>()?;
    let (party, faults): (wire::CheckedParty<Msg, P>, _) = wire::connect(
        party,
        RunParams {
            eid,
            me: i,
            n,
            kinds: &[wire::B, wire::B, wire::P],
        },
    );
    let MpcParty { delivery, .. } = party;
    let (incoming, mut outgoing) = delivery.split();
    let mut router = RoundsRouter::<Msg>::builder();
    let round_commit = router.add_round(RoundInput::<Commitments>::broadcast(i, n));
    let round_echo = router.add_round(RoundInput::<Echo>::broadcast(i, n));
    let round_share = router.add_round(RoundInput::<Share>::p2p(i, n));
    let mut router = router.listen(incoming);
    let io = |e: &dyn std::error::Error| Error::Transport(e.to_string());

    // Round 0: commitments and proof of knowledge.
    let me = *ids
        .get(usize::from(i))
        .ok_or_else(|| Error::invalid_args("index"))?;
    let (secret1, mine) =
        dkg::part1::<C, _>(me, n, t, &mut *rng).map_err(|e| Error::Protocol(e.to_string()))?;
    let frost_err = |e: frost_core::Error<C>| Error::Protocol(e.to_string());
    let mine_bytes = wire::Bytes(mine.serialize().map_err(frost_err)?);
    let mut my_part = [0u8; 32];
    rng.fill_bytes(&mut my_part);
    let my_commitment = chain_code_commitment(&eid, i, &my_part);
    outgoing
        .send(Outgoing::broadcast(Msg::Commitments(Commitments {
            package: mine_bytes.clone(),
            chain_code_commitment: my_commitment,
        })))
        .await
        .map_err(|e| faults.explain(io(&e)))?;
    let received = router
        .complete(round_commit)
        .await
        .map_err(|e| faults.explain(Error::protocol(&e)))?;
    // The messages as received (for the echo) and the packages they decode to.
    let mut wire_packages: Vec<Option<(wire::Bytes, [u8; 32])>> = vec![None; usize::from(n)];
    let mut all: Vec<Option<round1::Package<C>>> = vec![None; usize::from(n)];
    for (sender, _, c) in received.into_iter_indexed() {
        let pkg = round1::Package::<C>::deserialize(&c.package.0)
            .map_err(|e| faults.blame(sender, Fault::Garbled(format!("round-1 package: {e}"))))?;
        if let (Some(slot), Some(w)) = (
            all.get_mut(usize::from(sender)),
            wire_packages.get_mut(usize::from(sender)),
        ) {
            *slot = Some(pkg);
            *w = Some((c.package, c.chain_code_commitment));
        }
    }
    if let (Some(slot), Some(w)) = (all.get_mut(usize::from(i)), wire_packages.get_mut(usize::from(i))) {
        *slot = Some(mine);
        *w = Some((mine_bytes, my_commitment));
    }

    // Round 1: echo what we received, so that nobody can show different commitments to
    // different parties; reveal this party's part of the chain code.
    let my_echo = wire::echo_hash(b"vsigner/frost-dkg/echo/v2", &eid, &wire_packages)?;
    outgoing
        .send(Outgoing::broadcast(Msg::Echo(Echo {
            hash: my_echo,
            chain_code_part: my_part,
        })))
        .await
        .map_err(|e| faults.explain(io(&e)))?;
    let echoes = router
        .complete(round_echo)
        .await
        .map_err(|e| faults.explain(Error::protocol(&e)))?;
    if let Some((sender, _, _)) = echoes.iter_indexed().find(|(_, _, e)| e.hash != my_echo) {
        return Err(faults.blame(
            sender,
            Fault::EchoMismatch {
                round: COMMITMENT_ROUND,
            },
        ));
    }
    let mut chain_code = my_part;
    for (sender, _, echo) in echoes.iter_indexed() {
        let committed = wire_packages
            .get(usize::from(sender))
            .and_then(|w| w.as_ref())
            .map(|(_, c)| *c);
        if committed != Some(chain_code_commitment(&eid, sender, &echo.chain_code_part)) {
            return Err(faults.blame(
                sender,
                Fault::Garbled("its chain-code part does not match its commitment".into()),
            ));
        }
        for (c, p) in chain_code.iter_mut().zip(echo.chain_code_part) {
            *c ^= p;
        }
    }

    // Round 2: secret shares, p2p.
    let round1_packages: BTreeMap<Identifier<C>, round1::Package<C>> = all
        .into_iter()
        .zip(&ids)
        .enumerate()
        .filter(|(j, _)| *j != usize::from(i))
        .filter_map(|(_, (pkg, id))| pkg.map(|p| (*id, p)))
        .collect();
    let (secret2, shares) = dkg::part2(secret1, &round1_packages).map_err(|e| culprits_of(&e, &ids))?;
    for (id, pkg) in shares {
        let to = ids
            .iter()
            .position(|x| *x == id)
            .ok_or_else(|| Error::Protocol("unknown recipient".into()))?;
        outgoing
            .send(Outgoing::p2p(
                to as PartyIndex,
                Msg::Share(Share(wire::Bytes(pkg.serialize().map_err(frost_err)?))),
            ))
            .await
            .map_err(|e| faults.explain(io(&e)))?;
    }
    let received = router
        .complete(round_share)
        .await
        .map_err(|e| faults.explain(Error::protocol(&e)))?;
    let mut round2_packages: BTreeMap<Identifier<C>, round2::Package<C>> = BTreeMap::new();
    for (sender, _, Share(bytes)) in received.into_iter_indexed() {
        let pkg = round2::Package::<C>::deserialize(&bytes.0)
            .map_err(|e| faults.blame(sender, Fault::Garbled(format!("round-2 package: {e}"))))?;
        if let Some(id) = ids.get(usize::from(sender)) {
            round2_packages.insert(*id, pkg);
        }
    }
    let (key_package, public_key_package) =
        dkg::part3(&secret2, &round1_packages, &round2_packages).map_err(|e| culprits_of(&e, &ids))?;
    let (key_package, public_key_package) = C::normalize(key_package, public_key_package);
    KeyShare::new(
        i,
        n,
        key_package,
        public_key_package,
        C::CHILD_KEYS.then_some(chain_code),
    )
}

/// `SHA-256("vsigner/frost-dkg/chain-code/v1" ‖ eid ‖ i ‖ part)`: binds a part to its party
/// and run, so that nobody can repeat another's commitment and cancel its part.
fn chain_code_commitment(eid: &ExecutionId, i: PartyIndex, part: &[u8; 32]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::new()
        .chain_update(b"vsigner/frost-dkg/chain-code/v1")
        .chain_update(eid.as_bytes())
        .chain_update(i.to_be_bytes())
        .chain_update(part)
        .finalize()
        .into()
}
