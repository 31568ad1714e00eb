//! FROST distributed key generation with a reliable-broadcast (echo) round.
//!
//! Rounds (numbered as the message enum):
//! 0. broadcast `round1::Package`: commitment to the secret polynomial and a proof of
//!    knowledge of its constant term (`dkg::part1`);
//! 1. broadcast echo: `SHA-256(eid ‖ CBOR(package_0) ‖ … ‖ CBOR(package_{n-1}))` over the
//!    round-0 packages as this party received them (its own included); every party
//!    compares the echoes with its own view and names the first party that disagrees;
//! 2. p2p `round2::Package`: the recipient's secret share (`dkg::part2`, which verifies the
//!    proofs of knowledge), then `dkg::part3` verifies the shares against the commitments
//!    and outputs the key package.

use std::collections::BTreeMap;

use frost_core::keys::dkg::{self, round1, round2};
use frost_core::Identifier;
use futures::SinkExt;
use rand_core::{CryptoRng, RngCore};
use round_based::rounds_router::{simple_store::RoundInput, RoundsRouter};
use round_based::{Delivery, Mpc, MpcParty, Outgoing, ProtocolMessage};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{culprits_of, identifier, KeyShare, SchnorrScheme};
use crate::wire::{self, RunParams};
use crate::{Error, ExecutionId, Fault, PartyIndex, WireMessage};

/// Messages of the FROST DKG.
#[derive(Clone, Serialize, Deserialize, ProtocolMessage)]
#[serde(bound = "")]
enum Msg<C: SchnorrScheme> {
    Commitments(Commitments<C>),
    Echo(Echo),
    Share(Share<C>),
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
struct Commitments<C: SchnorrScheme>(round1::Package<C>);

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Echo([u8; 32]);

#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
struct Share<C: SchnorrScheme>(round2::Package<C>);

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
    let (party, faults): (wire::CheckedParty<Msg<C>, P>, _) = wire::connect(
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
    let mut router = RoundsRouter::<Msg<C>>::builder();
    let round_commit = router.add_round(RoundInput::<Commitments<C>>::broadcast(i, n));
    let round_echo = router.add_round(RoundInput::<Echo>::broadcast(i, n));
    let round_share = router.add_round(RoundInput::<Share<C>>::p2p(i, n));
    let mut router = router.listen(incoming);
    let io = |e: &dyn std::error::Error| Error::Transport(e.to_string());

    // Round 0: commitments and proof of knowledge.
    let me = *ids
        .get(usize::from(i))
        .ok_or_else(|| Error::invalid_args("index"))?;
    let (secret1, mine) =
        dkg::part1::<C, _>(me, n, t, &mut *rng).map_err(|e| Error::Protocol(e.to_string()))?;
    outgoing
        .send(Outgoing::broadcast(Msg::Commitments(Commitments(mine.clone()))))
        .await
        .map_err(|e| faults.explain(io(&e)))?;
    let received = router
        .complete(round_commit)
        .await
        .map_err(|e| faults.explain(Error::protocol(&e)))?;
    let mut all: Vec<Option<round1::Package<C>>> = vec![None; usize::from(n)];
    for (sender, _, Commitments(pkg)) in received.into_iter_indexed() {
        if let Some(slot) = all.get_mut(usize::from(sender)) {
            *slot = Some(pkg);
        }
    }
    if let Some(slot) = all.get_mut(usize::from(i)) {
        *slot = Some(mine);
    }

    // Round 1: echo what we received, so that nobody can show different commitments to
    // different parties.
    let my_echo = echo_of(&eid, &all)?;
    outgoing
        .send(Outgoing::broadcast(Msg::Echo(my_echo.clone())))
        .await
        .map_err(|e| faults.explain(io(&e)))?;
    let echoes = router
        .complete(round_echo)
        .await
        .map_err(|e| faults.explain(Error::protocol(&e)))?;
    if let Some((sender, _, _)) = echoes.iter_indexed().find(|(_, _, e)| **e != my_echo) {
        return Err(faults.blame(
            sender,
            Fault::EchoMismatch {
                round: COMMITMENT_ROUND,
            },
        ));
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
            .send(Outgoing::p2p(to as PartyIndex, Msg::Share(Share(pkg))))
            .await
            .map_err(|e| faults.explain(io(&e)))?;
    }
    let received = router
        .complete(round_share)
        .await
        .map_err(|e| faults.explain(Error::protocol(&e)))?;
    let round2_packages: BTreeMap<Identifier<C>, round2::Package<C>> = received
        .into_iter_indexed()
        .filter_map(|(sender, _, Share(pkg))| ids.get(usize::from(sender)).map(|id| (*id, pkg)))
        .collect();
    let (key_package, public_key_package) =
        dkg::part3(&secret2, &round1_packages, &round2_packages).map_err(|e| culprits_of(&e, &ids))?;
    KeyShare::new(i, n, key_package, public_key_package)
}

fn echo_of<C: SchnorrScheme>(
    eid: &ExecutionId,
    packages: &[Option<round1::Package<C>>],
) -> Result<Echo, Error> {
    let mut h = Sha256::new();
    h.update(b"vsigner/frost-dkg/echo/v1");
    h.update(eid.as_bytes());
    for pkg in packages {
        let bytes = wire::encode(pkg).map_err(Error::Protocol)?;
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
    }
    Ok(Echo(h.finalize().into()))
}
