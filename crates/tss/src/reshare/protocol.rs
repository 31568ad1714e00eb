//! The resharing protocol (see `docs/reshare.md` for the reasoning behind each check).

use cggmp24::generic_ec::{Curve, NonZero, Point, Scalar, SecretScalar};
use futures::SinkExt;
use generic_ec_zkp::polynomial::lagrange_coefficient_at_zero;
use generic_ec_zkp::schnorr_pok;
use rand_core::{CryptoRng, RngCore};
use round_based::rounds_router::{simple_store::RoundInput, RoundsRouter};
use round_based::{Delivery, Mpc, MpcParty, Outgoing, ProtocolMessage};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

use super::KeyInfo;
use crate::wire::{self, RunParams};
use crate::{Error, ExecutionId, Fault, PartyIndex, WireMessage};

use super::setup::{Acknowledged, DealerShare, NewShare, ReshareOutput, ReshareSetup, Role};

#[derive(Clone, Serialize, Deserialize, ProtocolMessage)]
#[serde(bound = "")]
enum Msg<E: Curve> {
    Deal(Deal<E>),
    Echo(Echo),
    Share(ShareMsg<E>),
    Ack(Ack<E>),
}

/// Round 0: a dealer's view of the old key and its Feldman commitments (empty otherwise).
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
struct Deal<E: Curve> {
    key_info: Option<KeyInfo<E>>,
    commitments: Option<Vec<Point<E>>>,
}

/// Round 1: hash of all deals as received.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Echo([u8; 32]);

/// Round 2 (p2p): `f_i(J_k)` from dealer `i` to receiver `k`, `None` otherwise.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
struct ShareMsg<E: Curve>(Option<SecretScalar<E>>);

/// Round 3: transcript hash, and a receiver's proof of knowledge of its new share.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
struct Ack<E: Curve> {
    transcript: [u8; 32],
    proof: Option<(Point<E>, Scalar<E>)>,
}

const KINDS: &[round_based::MessageType] = &[wire::B, wire::B, wire::P, wire::B];

/// The checked setup: who deals, who receives.
struct Plan {
    /// Run parties that deal, in run order, with their old index.
    dealers: Vec<(PartyIndex, u16)>,
    /// `receivers[k]` is the run party holding new index `k`.
    receivers: Vec<PartyIndex>,
}

fn plan<E: Curve>(setup: &ReshareSetup<'_, E>, old: Option<&DealerShare<E>>) -> Result<Plan, Error> {
    let m = setup.roles.len();
    let bad = |msg: String| Err(Error::InvalidArguments(format!("reshare: {msg}")));
    if usize::from(setup.me) >= m {
        return bad(format!("party {} is not among the {m} participants", setup.me));
    }
    let dealers: Vec<(PartyIndex, u16)> = setup
        .roles
        .iter()
        .enumerate()
        .filter_map(|(p, r)| r.old_index.map(|i| (p as PartyIndex, i)))
        .collect();
    if setup.old_threshold == 0 || setup.old_threshold > setup.old_n {
        return bad(format!(
            "old threshold {} of an old set of {}",
            setup.old_threshold, setup.old_n
        ));
    }
    if dealers.iter().any(|(_, i)| *i >= setup.old_n) {
        return bad(format!("an old index is beyond the old set of {}", setup.old_n));
    }
    if dealers.len() < usize::from(setup.old_threshold) {
        return bad(format!(
            "{} old holders take part, the old threshold is {}",
            dealers.len(),
            setup.old_threshold
        ));
    }
    let mut old_seen = std::collections::BTreeSet::new();
    if !dealers.iter().all(|(_, i)| old_seen.insert(*i)) {
        return bad("an old index appears twice".into());
    }
    let n_new = setup.roles.iter().filter(|r| r.new_index.is_some()).count();
    let mut receivers = vec![None; n_new];
    for (p, r) in setup.roles.iter().enumerate() {
        if let Some(k) = r.new_index {
            match receivers.get_mut(usize::from(k)) {
                Some(slot @ None) => *slot = Some(p as PartyIndex),
                _ => return bad(format!("new indices must be 0..{n_new}, each once")),
            }
        }
    }
    let receivers: Vec<PartyIndex> = receivers.into_iter().flatten().collect();
    if setup.new_threshold < 2 || usize::from(setup.new_threshold) > n_new {
        return bad(format!(
            "new threshold must be between 2 and {n_new}, got {}",
            setup.new_threshold
        ));
    }
    let my_role = setup.roles.get(usize::from(setup.me)).copied().unwrap_or(Role {
        old_index: None,
        new_index: None,
    });
    match (my_role.old_index, old) {
        (Some(i), Some(share)) => {
            if share.index != i {
                return bad(format!(
                    "this party deals as old holder {i} but holds share {}",
                    share.index
                ));
            }
            if share.key_info.public_key != setup.public_key {
                return bad("the stored share is of another public key".into());
            }
            if share.key_info.threshold != setup.old_threshold || share.key_info.n() != setup.old_n {
                return bad("the stored share has another threshold or old set size".into());
            }
            share
                .key_info
                .validate()
                .map_err(|e| Error::InvalidKeyMaterial(format!("old key info: {e}")))?;
            if Point::generator() * &share.secret
                != *share
                    .key_info
                    .public_shares
                    .get(usize::from(i))
                    .unwrap_or(&Point::zero())
            {
                return Err(Error::InvalidKeyMaterial(
                    "the stored share does not match its public share".into(),
                ));
            }
        }
        (Some(_), None) => return bad("this party deals but has no old share".into()),
        (None, _) => {}
    }
    Ok(Plan { dealers, receivers })
}

/// `Σ_m c_m·x^m` by Horner's rule.
fn eval_points<E: Curve>(coefs: &[Point<E>], x: &Scalar<E>) -> Point<E> {
    coefs.iter().rev().fold(Point::zero(), |acc, c| acc * x + c)
}

fn eval_scalars<E: Curve>(coefs: &[SecretScalar<E>], x: &Scalar<E>) -> SecretScalar<E> {
    let mut acc = Scalar::<E>::zero();
    for c in coefs.iter().rev() {
        acc = acc * x + c.as_ref();
    }
    SecretScalar::new(&mut acc)
}

fn preimage<E: Curve>(k: usize) -> Scalar<E> {
    Scalar::from(k as u64 + 1)
}

fn aborted(culprit: PartyIndex, reason: impl Into<String>) -> Error {
    Error::Aborted {
        culprits: vec![culprit],
        reason: reason.into(),
    }
}

/// Runs a reshare as party `setup.me`. Dealers pass their old share; others pass `None`.
pub async fn run<E, P, R>(
    party: P,
    eid: ExecutionId,
    setup: &ReshareSetup<'_, E>,
    old: Option<&DealerShare<E>>,
    rng: &mut R,
) -> Result<ReshareOutput<E>, Error>
where
    E: Curve,
    P: Mpc<ProtocolMessage = WireMessage>,
    R: RngCore + CryptoRng,
{
    let plan = plan(setup, old)?;
    let me = setup.me;
    let m = setup.roles.len() as u16;
    let t_new = usize::from(setup.new_threshold);
    let my_role = setup.roles.get(usize::from(me)).copied().unwrap_or(Role {
        old_index: None,
        new_index: None,
    });
    let dealer_preimages: Vec<Scalar<E>> = match old {
        Some(share) => plan
            .dealers
            .iter()
            .map(|(_, i)| share.key_info.preimages.get(usize::from(*i)).copied())
            .collect::<Option<_>>()
            .ok_or_else(|| Error::invalid_args("old index beyond the old set"))?,
        None => Vec::new(),
    };

    let (party, faults): (wire::CheckedParty<Msg<E>, P>, _) = wire::connect(
        party,
        RunParams {
            eid,
            me,
            n: m,
            kinds: KINDS,
        },
    );
    let MpcParty { delivery, .. } = party;
    let (incoming, mut outgoing) = delivery.split();
    let mut router = RoundsRouter::<Msg<E>>::builder();
    let round_deal = router.add_round(RoundInput::<Deal<E>>::broadcast(me, m));
    let round_echo = router.add_round(RoundInput::<Echo>::broadcast(me, m));
    let round_share = router.add_round(RoundInput::<ShareMsg<E>>::p2p(me, m));
    let round_ack = router.add_round(RoundInput::<Ack<E>>::broadcast(me, m));
    let mut router = router.listen(incoming);
    let io = |e: &dyn std::error::Error| Error::Transport(e.to_string());

    // Round 0: deal. w_i = λ_i·x_i, f_i(0) = w_i, commitments C_i[m] = a_{i,m}·G.
    let polynomial: Option<Vec<SecretScalar<E>>> = match (old, my_role.old_index) {
        (Some(share), Some(_)) => {
            let pos = plan
                .dealers
                .iter()
                .position(|(p, _)| *p == me)
                .unwrap_or(usize::MAX);
            let lambda = lagrange_coefficient_at_zero(pos, &dealer_preimages)
                .ok_or_else(|| Error::InvalidKeyMaterial("old preimages are not distinct".into()))?;
            let mut w = lambda.into_inner() * share.secret.as_ref();
            let mut coefs = vec![SecretScalar::new(&mut w)];
            coefs.extend((1..t_new).map(|_| SecretScalar::random(&mut *rng)));
            Some(coefs)
        }
        _ => None,
    };
    let my_deal = Deal {
        key_info: old.map(|s| s.key_info.clone()),
        commitments: polynomial
            .as_ref()
            .map(|f| f.iter().map(|a| Point::generator() * a).collect()),
    };
    outgoing
        .send(Outgoing::broadcast(Msg::Deal(my_deal.clone())))
        .await
        .map_err(|e| faults.explain(io(&e)))?;
    let received = router
        .complete(round_deal)
        .await
        .map_err(|e| faults.explain(Error::protocol(&e)))?;
    let mut deals: Vec<Option<Deal<E>>> = vec![None; usize::from(m)];
    for (sender, _, deal) in received.into_iter_indexed() {
        if let Some(slot) = deals.get_mut(usize::from(sender)) {
            *slot = Some(deal);
        }
    }
    if let Some(slot) = deals.get_mut(usize::from(me)) {
        *slot = Some(my_deal);
    }
    let deals: Vec<Deal<E>> = deals
        .into_iter()
        .collect::<Option<_>>()
        .ok_or_else(|| Error::Protocol("missing deal".into()))?;

    // Checks of round 0. First the sizes, which cost nothing: a deal whose old sharing has
    // another size or threshold, or whose commitments are not exactly t' long, is refused
    // before any validation work (validating key info is O(n²) and the sizes are the
    // sender's choice).
    for (p, deal) in deals.iter().enumerate() {
        let is_dealer = setup.roles.get(p).is_some_and(|r| r.old_index.is_some());
        if is_dealer != (deal.key_info.is_some() && deal.commitments.is_some()) {
            return Err(aborted(p as PartyIndex, "deal does not match the party's role"));
        }
        if let (Some(info), Some(c)) = (&deal.key_info, &deal.commitments) {
            if info.threshold != setup.old_threshold
                || info.public_shares.len() != usize::from(setup.old_n)
                || info.preimages.len() != usize::from(setup.old_n)
            {
                return Err(aborted(
                    p as PartyIndex,
                    format!(
                        "deal of an old sharing of {} shares with threshold {}; the approved old set has {} with threshold {}",
                        info.public_shares.len(),
                        info.threshold,
                        setup.old_n,
                        setup.old_threshold
                    ),
                ));
            }
            if c.len() != t_new {
                return Err(aborted(
                    p as PartyIndex,
                    format!("{} commitments for a new threshold of {t_new}", c.len()),
                ));
            }
        }
    }
    // The old key info: our own if we deal, else the first dealer's that is valid and is of
    // the approved key. Every dealer must have sent exactly this.
    let reference: KeyInfo<E> = match old {
        Some(share) => share.key_info.clone(),
        None => deals
            .iter()
            .filter_map(|d| d.key_info.as_ref())
            .find(|k| k.public_key == setup.public_key && k.validate().is_ok())
            .cloned()
            .ok_or_else(|| {
                aborted(
                    plan.dealers.first().map_or(0, |d| d.0),
                    "no dealer sent valid key info of the approved key",
                )
            })?,
    };
    if reference.threshold != setup.old_threshold || reference.public_key != setup.public_key {
        return Err(Error::InvalidKeyMaterial(
            "old key info differs from the approved vault".into(),
        ));
    }
    let dealer_preimages: Vec<Scalar<E>> = plan
        .dealers
        .iter()
        .map(|(p, i)| {
            reference
                .preimages
                .get(usize::from(*i))
                .copied()
                .ok_or_else(|| aborted(*p, "old index beyond the old set"))
        })
        .collect::<Result<_, _>>()?;
    let mut commitment_sum: Vec<Point<E>> = vec![Point::zero(); t_new];
    let mut constant_sum = Point::<E>::zero();
    for (pos, (p, i)) in plan.dealers.iter().enumerate() {
        let deal = deals
            .get(usize::from(*p))
            .ok_or_else(|| Error::Protocol("deal".into()))?;
        if deal.key_info.as_ref() != Some(&reference) {
            return Err(aborted(*p, "dealer's old key info differs"));
        }
        let c = deal.commitments.as_deref().unwrap_or_default();
        if c.len() != t_new {
            return Err(aborted(
                *p,
                format!("{} commitments for a new threshold of {t_new}", c.len()),
            ));
        }
        let lambda = lagrange_coefficient_at_zero(pos, &dealer_preimages)
            .ok_or_else(|| Error::InvalidKeyMaterial("old preimages are not distinct".into()))?;
        let x_i = reference
            .public_shares
            .get(usize::from(*i))
            .copied()
            .unwrap_or(Point::zero());
        if c.first() != Some(&(x_i * lambda.into_inner())) {
            return Err(aborted(*p, "commitment to the constant term is not λ_i·X_i"));
        }
        for (sum, ci) in commitment_sum.iter_mut().zip(c) {
            *sum += ci;
        }
        constant_sum += c.first().copied().unwrap_or(Point::zero());
    }
    if constant_sum != reference.public_key {
        return Err(Error::Protocol(
            "dealt constant terms do not sum to the public key".into(),
        ));
    }

    // Round 1: echo the deals, so that all parties hold the same commitments.
    let my_echo = echo_of(&eid, &deals)?;
    outgoing
        .send(Outgoing::broadcast(Msg::Echo(my_echo.clone())))
        .await
        .map_err(|e| faults.explain(io(&e)))?;
    let echoes = router
        .complete(round_echo)
        .await
        .map_err(|e| faults.explain(Error::protocol(&e)))?;
    if let Some((sender, _, _)) = echoes.iter_indexed().find(|(_, _, e)| **e != my_echo) {
        return Err(faults.blame(sender, Fault::EchoMismatch { round: 0 }));
    }

    // Round 2: shares f_i(J_k) to each receiver k.
    let mut own_share: Option<SecretScalar<E>> = None;
    for q in 0..m {
        let share = match (
            &polynomial,
            setup.roles.get(usize::from(q)).and_then(|r| r.new_index),
        ) {
            (Some(f), Some(k)) => Some(eval_scalars(f, &preimage::<E>(usize::from(k)))),
            _ => None,
        };
        if q == me {
            own_share = share;
            continue;
        }
        outgoing
            .send(Outgoing::p2p(q, Msg::Share(ShareMsg(share))))
            .await
            .map_err(|e| faults.explain(io(&e)))?;
    }
    let received = router
        .complete(round_share)
        .await
        .map_err(|e| faults.explain(Error::protocol(&e)))?;
    let mut shares: Vec<Option<SecretScalar<E>>> = vec![None; usize::from(m)];
    for (sender, _, ShareMsg(s)) in received.into_iter_indexed() {
        if let Some(slot) = shares.get_mut(usize::from(sender)) {
            *slot = s;
        }
    }
    if let Some(slot) = shares.get_mut(usize::from(me)) {
        *slot = own_share;
    }
    let mut new_secret: Option<NonZero<SecretScalar<E>>> = None;
    if let Some(k) = my_role.new_index {
        let j_k = preimage::<E>(usize::from(k));
        let mut sum = Scalar::<E>::zero();
        for (p, share) in shares.iter().enumerate() {
            let p = p as PartyIndex;
            let dealer = plan.dealers.iter().any(|(d, _)| *d == p);
            match (dealer, share) {
                (true, Some(s)) => {
                    let c = deals
                        .get(usize::from(p))
                        .and_then(|d| d.commitments.as_deref())
                        .unwrap_or_default();
                    if Point::generator() * s != eval_points(c, &j_k) {
                        return Err(aborted(p, "share does not match the dealer's commitments"));
                    }
                    sum += s.as_ref();
                }
                (true, None) => return Err(aborted(p, "dealer sent no share")),
                (false, Some(_)) => return Err(aborted(p, "a non-dealer sent a share")),
                (false, None) => {}
            }
        }
        new_secret = Some(
            NonZero::from_secret_scalar(SecretScalar::new(&mut sum))
                .ok_or_else(|| Error::Protocol("new share is zero".into()))?,
        );
    } else if let Some((p, _)) = shares.iter().enumerate().find(|(_, s)| s.is_some()) {
        return Err(aborted(
            p as PartyIndex,
            "sent a share to a party outside the new set",
        ));
    }

    // New public info: X'_j = Σ_i f_i(J_j)·G from the summed commitments.
    let n_new = plan.receivers.len();
    let new_info = KeyInfo {
        public_key: reference.public_key,
        threshold: setup.new_threshold,
        preimages: (0..n_new).map(preimage::<E>).collect(),
        public_shares: (0..n_new)
            .map(|j| eval_points(&commitment_sum, &preimage::<E>(j)))
            .collect(),
        chain_code: reference.chain_code,
    };
    new_info
        .validate()
        .map_err(|e| Error::Protocol(format!("new key info: {e}")))?;
    if let (Some(k), Some(x)) = (my_role.new_index, &new_secret) {
        if new_info.public_shares.get(usize::from(k)) != Some(&(Point::generator() * x)) {
            return Err(Error::Protocol(
                "own new share does not match its public share".into(),
            ));
        }
    }

    // Round 3: acknowledgements.
    let transcript = transcript_of(&eid, &reference, &deals, &new_info)?;
    let proof = match (my_role.new_index, &new_secret) {
        (Some(k), Some(x)) => {
            let (eph, commit) = schnorr_pok::prover_commits_ephemeral_secret::<E, _>(&mut *rng);
            let x_pub = Point::generator() * x;
            let challenge = ack_challenge(&eid, k, &x_pub, &commit.0, &transcript);
            let z = schnorr_pok::prove(&eph, &challenge, AsRef::<Scalar<E>>::as_ref(x));
            Some((commit.0, z.0))
        }
        _ => None,
    };
    let my_ack = Ack { transcript, proof };
    outgoing
        .send(Outgoing::broadcast(Msg::Ack(my_ack)))
        .await
        .map_err(|e| faults.explain(io(&e)))?;
    // Every check that decides this party's new share is behind it. Missing
    // acknowledgements (a timeout, a dropped message) do not undo it: the output says so,
    // and the caller commits the new sharing only on every new holder's signed receipt.
    let acks = match router.complete(round_ack).await {
        Ok(acks) => acks,
        Err(e) => {
            let why = faults.explain(Error::protocol(&e));
            let share = match (my_role.new_index, new_secret) {
                (Some(index), Some(secret)) => Some(NewShare { index, secret }),
                _ => None,
            };
            return Ok(ReshareOutput {
                key_info: new_info,
                share,
                transcript,
                acknowledged: Acknowledged::Incomplete(why.to_string()),
            });
        }
    };
    for (sender, _, ack) in acks.into_iter_indexed() {
        if ack.transcript != transcript {
            return Err(aborted(sender, "acknowledged another transcript"));
        }
        let role = setup.roles.get(usize::from(sender)).copied();
        match (role.and_then(|r| r.new_index), ack.proof) {
            (Some(k), Some((a, z))) => {
                let x_pub = new_info
                    .public_shares
                    .get(usize::from(k))
                    .copied()
                    .unwrap_or(Point::zero());
                let challenge = ack_challenge(&eid, k, &x_pub, &a, &transcript);
                schnorr_pok::Proof(z)
                    .verify(&schnorr_pok::Commit(a), &challenge, &x_pub)
                    .map_err(|_| aborted(sender, "proof of knowledge of the new share is invalid"))?;
            }
            (Some(_), None) => return Err(aborted(sender, "new holder did not prove its share")),
            (None, Some(_)) | (None, None) => {}
        }
    }

    let share = match (my_role.new_index, new_secret) {
        (Some(index), Some(secret)) => Some(NewShare { index, secret }),
        _ => None,
    };
    Ok(ReshareOutput {
        key_info: new_info,
        share,
        transcript,
        acknowledged: Acknowledged::All,
    })
}

fn echo_of<E: Curve>(eid: &ExecutionId, deals: &[Deal<E>]) -> Result<Echo, Error> {
    wire::echo_hash(b"vsigner/reshare/echo/v1", eid, deals).map(Echo)
}

fn transcript_of<E: Curve>(
    eid: &ExecutionId,
    old: &KeyInfo<E>,
    deals: &[Deal<E>],
    new: &KeyInfo<E>,
) -> Result<[u8; 32], Error> {
    let mut h = Sha256::new();
    h.update(b"vsigner/reshare/transcript/v1");
    h.update(eid.as_bytes());
    let mut field = |bytes: Vec<u8>| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
    };
    field(wire::encode(old).map_err(Error::Protocol)?);
    for deal in deals {
        field(wire::encode(&deal.commitments).map_err(Error::Protocol)?);
    }
    field(wire::encode(new).map_err(Error::Protocol)?);
    Ok(h.finalize().into())
}

/// Fiat–Shamir challenge of a receiver's proof of knowledge of its new share.
fn ack_challenge<E: Curve>(
    eid: &ExecutionId,
    k: u16,
    x_pub: &Point<E>,
    commit: &Point<E>,
    transcript: &[u8; 32],
) -> schnorr_pok::Challenge<E> {
    let mut h = Sha512::new();
    h.update(b"vsigner/reshare/ack/v1");
    h.update(eid.as_bytes());
    h.update(k.to_be_bytes());
    h.update(x_pub.to_bytes(true));
    h.update(commit.to_bytes(true));
    h.update(transcript);
    schnorr_pok::Challenge {
        nonce: Scalar::from_be_bytes_mod_order(h.finalize()),
    }
}
