//! Resharing (docs/reshare.md) for both families: new sets and thresholds, refresh,
//! overlapping and leaving devices; the key and HD child keys never change; old and new
//! shares do not mix; cheating dealers are named and nothing is output.

use cggmp24::generic_ec::Curve;
use rand_core::OsRng;
use vsigner_tss::ecdsa::{self, CoreShare, HashAlgorithm, Message, Preimage, Secp256k1};
use vsigner_tss::hd::DerivationPath;
use vsigner_tss::reshare::{Acknowledged, ReshareSetup, Role};
use vsigner_tss::schnorr::{self, Bip340, Ed25519, SchnorrScheme};
use vsigner_tss::simulation::{self, local, Envelope, Outcome};
use vsigner_tss::{Error, ProtocolTag};

use crate::common::*;

/// A participant: `old` = its old index if it deals, `new` = its new index if it receives.
fn role(old: Option<u16>, new: Option<u16>) -> Role {
    Role {
        old_index: old,
        new_index: new,
    }
}

/// 2-of-3 → 3-of-4: two old holders deal, the third stays without dealing, one newcomer.
fn grow() -> (u16, u16, Vec<Role>) {
    (
        2,
        3,
        vec![
            role(Some(0), Some(0)),
            role(Some(1), Some(1)),
            role(None, Some(2)),
            role(None, Some(3)),
        ],
    )
}

/// 3-of-5 → 2-of-3: old 0 and 2 deal and leave, old 4 deals and stays, old 1 stays without
/// dealing, one newcomer; old 3 is not involved at all.
fn shrink() -> (u16, u16, Vec<Role>) {
    (
        3,
        2,
        vec![
            role(Some(0), None),
            role(Some(2), None),
            role(Some(4), Some(1)),
            role(None, Some(0)),
            role(None, Some(2)),
        ],
    )
}

/// 2-of-3 → 2-of-3 refresh: everyone deals and receives at the same index.
fn refresh() -> (u16, u16, Vec<Role>) {
    (2, 2, (0..3).map(|i| role(Some(i), Some(i))).collect())
}

fn ecdsa_reshare_run<E: ecdsa::EcdsaCurve>(
    old: &[CoreShare<E>],
    new_t: u16,
    roles: &[Role],
) -> Vec<Result<ecdsa::Reshared<CoreShare<E>, E>, Error>> {
    let eid = eid(ProtocolTag::Reshare, "reshare", roles.len());
    let public_key = old[0].public_key();
    let old_t = old[0].threshold();
    round_based::sim::run(roles.len() as u16, |p, party| async move {
        let setup = ReshareSetup {
            roles,
            me: p,
            old_n: old.len() as u16,
            old_threshold: old_t,
            new_threshold: new_t,
            public_key,
        };
        let mine = roles[usize::from(p)].old_index.map(|i| &old[usize::from(i)]);
        ecdsa::reshare(party, eid, &setup, mine, &mut OsRng).await
    })
    .unwrap()
    .into_vec()
}

/// New shares ordered by new index.
fn new_shares<S, E: Curve>(results: Vec<Result<ecdsa::Reshared<S, E>, Error>>, roles: &[Role]) -> Vec<S> {
    let mut out: Vec<Option<S>> = (0..roles.iter().filter(|r| r.new_index.is_some()).count())
        .map(|_| None)
        .collect();
    let mut transcripts = Vec::new();
    for (r, role) in results.into_iter().zip(roles) {
        let r = r.unwrap();
        transcripts.push(r.transcript);
        assert_eq!(r.share.is_some(), role.new_index.is_some());
        if let (Some(k), Some(s)) = (role.new_index, r.share) {
            out[usize::from(k)] = Some(s);
        }
    }
    all_equal(&transcripts);
    out.into_iter().map(Option::unwrap).collect()
}

fn ecdsa_scenario(scenario: fn() -> (u16, u16, Vec<Role>), old_n: u16) {
    let (old_t, new_t, roles) = scenario();
    let old = ecdsa_keygen::<Secp256k1>(old_n, old_t);
    let new = new_shares(ecdsa_reshare_run(&old, new_t, &roles), &roles);
    let n_new = new.len() as u16;
    for (k, s) in new.iter().enumerate() {
        assert_eq!((s.index(), s.threshold(), s.n()), (k as u16, new_t, n_new));
        assert_eq!(
            s.public_key_bytes(),
            old[0].public_key_bytes(),
            "the public key must not change"
        );
        assert_eq!(s.chain_code(), old[0].chain_code());
    }
    let path: DerivationPath = "m/1/2".parse().unwrap();
    assert_eq!(
        new[0].derive_public_key(&path).unwrap(),
        old[0].derive_public_key(&path).unwrap()
    );

    // A committee of new holders that includes the last new index (a newcomer in the
    // growing and shrinking scenarios) signs under the unchanged key, at the root and at an
    // HD path.
    let shares = local::ecdsa_key_shares(new, test_aux_info(n_new)).unwrap();
    let signers: Vec<u16> = (n_new - new_t..n_new).rev().collect();
    let m = Message::Preimage(Preimage {
        hash: HashAlgorithm::Sha256,
        data: b"after reshare".to_vec(),
    });
    for p in [None, Some(&path)] {
        let sig = all_equal(&ecdsa_sign(&shares, &signers, &m, p));
        let key = match p {
            None => old[0].public_key_bytes(),
            Some(path) => old[0]
                .derive_public_key(path)
                .unwrap()
                .to_bytes(true)
                .as_bytes()
                .to_vec(),
        };
        use k256::ecdsa::signature::hazmat::PrehashVerifier;
        k256::ecdsa::VerifyingKey::from_sec1_bytes(&key)
            .unwrap()
            .verify_prehash(
                &m.digest(),
                &k256::ecdsa::Signature::from_scalars(sig.r, sig.s).unwrap(),
            )
            .expect("signature by the new committee verifies under the old key");
    }
}

#[test]
fn ecdsa_2_of_3_to_3_of_4() {
    ecdsa_scenario(grow, 3)
}

#[test]
fn ecdsa_3_of_5_to_2_of_3_with_devices_staying_and_leaving() {
    ecdsa_scenario(shrink, 5)
}

#[test]
fn ecdsa_refresh_2_of_3_and_old_shares_do_not_mix_with_new() {
    ecdsa_scenario(refresh, 3);
    let (_, new_t, roles) = refresh();
    let old = ecdsa_keygen::<Secp256k1>(3, 2);
    let new = new_shares(ecdsa_reshare_run(&old, new_t, &roles), &roles);
    for (o, n) in old.iter().zip(&new) {
        assert_ne!(
            o.to_bytes().unwrap(),
            n.to_bytes().unwrap(),
            "refresh must change every share"
        );
    }
    // Old share of party 0 with the new share of party 1: same set, same aux-info, but the
    // shares lie on different polynomials, so no valid signature comes out.
    let aux = test_aux_info(3);
    let mixed = vec![
        ecdsa::KeyShare::from_parts(old.into_iter().next().unwrap(), aux[0].clone()).unwrap(),
        ecdsa::KeyShare::from_parts(new.into_iter().nth(1).unwrap(), aux[1].clone()).unwrap(),
    ];
    let eid = eid(ProtocolTag::EcdsaSign, "mixed", 2);
    let mixed = &mixed;
    let results = round_based::sim::run(2, |j, party| async move {
        let signers = [0u16, 1];
        let m = Message::Digest([9; 32]);
        ecdsa::sign(
            party,
            eid,
            j,
            &signers,
            &mixed[usize::from(j)],
            &m,
            None,
            &mut OsRng,
        )
        .await
    })
    .unwrap()
    .into_vec();
    assert!(
        results.iter().all(Result::is_err),
        "a mixed committee must not produce a signature"
    );
}

/// One party's result of a Schnorr reshare.
type SchnorrReshared<C> = Result<ecdsa::Reshared<schnorr::KeyShare<C>, <C as SchnorrScheme>::Curve>, Error>;

fn schnorr_reshare_run<C: SchnorrScheme>(
    old: &[schnorr::KeyShare<C>],
    new_t: u16,
    roles: &[Role],
) -> Vec<SchnorrReshared<C>> {
    let eid = eid(ProtocolTag::Reshare, "reshare", roles.len());
    let public_key = old[0].key_info().unwrap().public_key;
    let old_t = old[0].threshold();
    round_based::sim::run(roles.len() as u16, |p, party| async move {
        let setup = ReshareSetup {
            roles,
            me: p,
            old_n: old.len() as u16,
            old_threshold: old_t,
            new_threshold: new_t,
            public_key,
        };
        let mine = roles[usize::from(p)].old_index.map(|i| &old[usize::from(i)]);
        schnorr::reshare(party, eid, &setup, mine, &mut OsRng).await
    })
    .unwrap()
    .into_vec()
}

fn schnorr_scenario<C: SchnorrScheme>(
    scenario: fn() -> (u16, u16, Vec<Role>),
    old_n: u16,
    verify: fn(&[u8], &[u8], &[u8]),
) {
    let (old_t, new_t, roles) = scenario();
    let old = schnorr_keygen::<C>(old_n, old_t);
    let pk = old[0].public_key_bytes().unwrap();
    let new = new_shares(schnorr_reshare_run(&old, new_t, &roles), &roles);
    let n_new = new.len() as u16;
    for s in &new {
        assert_eq!(s.public_key_bytes().unwrap(), pk);
        assert_eq!((s.threshold(), s.n()), (new_t, n_new));
    }
    let signers: Vec<u16> = (n_new - new_t..n_new).rev().collect();
    let sig = all_equal(&schnorr_sign(&new, &signers, b"after reshare", None));
    verify(&pk, b"after reshare", &sig.0);

    // Old share 0 with new shares: no signature.
    if old_t == new_t && usize::from(new_t) <= new.len() {
        let mut mixed: Vec<schnorr::KeyShare<C>> = new.clone();
        mixed[0] = old[0].clone();
        let committee: Vec<u16> = (0..new_t).collect();
        let eid = eid(ProtocolTag::SchnorrSign, "mixed", committee.len());
        assert!(local::schnorr_sign(eid, &mixed, &committee, b"mixed", None, || OsRng).is_err());
    }
}

fn ed25519_verify(pk: &[u8], msg: &[u8], sig: &[u8]) {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(pk.try_into().unwrap()).unwrap();
    vk.verify_strict(
        msg,
        &ed25519_dalek::Signature::from_bytes(sig.try_into().unwrap()),
    )
    .unwrap();
}

fn bip340_verify(pk: &[u8], msg: &[u8], sig: &[u8]) {
    let vk = k256::schnorr::VerifyingKey::from_bytes(pk).unwrap();
    vk.verify_raw(msg, &k256::schnorr::Signature::try_from(sig).unwrap())
        .unwrap();
}

#[test]
fn schnorr_reshare_scenarios() {
    for scenario in [grow as fn() -> _, refresh] {
        schnorr_scenario::<Ed25519>(scenario, 3, ed25519_verify);
        schnorr_scenario::<Bip340>(scenario, 3, bip340_verify);
    }
    schnorr_scenario::<Ed25519>(shrink, 5, ed25519_verify);
    schnorr_scenario::<Bip340>(shrink, 5, bip340_verify);
}

#[test]
fn fewer_dealers_than_the_old_threshold_are_refused_up_front() {
    let old = schnorr_keygen::<Ed25519>(3, 2);
    let roles = [role(Some(0), Some(0)), role(None, Some(1)), role(None, Some(2))];
    let setup = ReshareSetup {
        roles: &roles,
        me: 0,
        old_n: 3,
        old_threshold: 2,
        new_threshold: 2,
        public_key: old[0].key_info().unwrap().public_key,
    };
    let eid = eid(ProtocolTag::Reshare, "too-few", 3);
    // The idle party never delivers: the refusal must come before any message.
    let result = futures::executor::block_on(schnorr::reshare(
        idle_party(),
        eid,
        &setup,
        Some(&old[0]),
        &mut OsRng,
    ));
    let err = result.unwrap_err();
    assert!(matches!(err, Error::InvalidArguments(_)), "{err}");
    assert!(
        err.to_string()
            .contains("1 old holders take part, the old threshold is 2"),
        "{err}"
    );
}

/// The two families, for the cheating-dealer tests.
#[derive(Clone, Copy, Debug)]
enum Family {
    Ecdsa,
    Schnorr,
}

type CheatOutcome = Outcome<Result<[u8; 32], Error>>;

/// Runs a reshare (grow scenario) of `family` with an interceptor; each party's outcome is
/// its transcript on success. Returns the outcomes and a check that the old shares are
/// untouched and still sign.
fn cheating_run(family: Family, intercept: impl FnMut(Envelope) -> Vec<Envelope>) -> Vec<CheatOutcome> {
    let (old_t, new_t, roles) = grow();
    let roles = &roles;
    let eid = eid(ProtocolTag::Reshare, "cheat", roles.len());
    // Runs every participant of the reshare with `$reshare` over the old shares `$old`,
    // then checks that the old shares are byte-for-byte untouched.
    macro_rules! run_family {
        ($old:expr, $public_key:expr, $reshare:path) => {{
            let old = &$old;
            let before: Vec<_> = old.iter().map(|s| s.to_bytes().unwrap()).collect();
            let public_key = $public_key;
            let parties = (0..roles.len() as u16)
                .map(|p| {
                    simulation::party(move |party| async move {
                        let setup = ReshareSetup {
                            roles,
                            me: p,
                            old_n: old.len() as u16,
                            old_threshold: old_t,
                            new_threshold: new_t,
                            public_key,
                        };
                        let mine = roles[usize::from(p)].old_index.map(|i| &old[usize::from(i)]);
                        $reshare(party, eid, &setup, mine, &mut OsRng)
                            .await
                            .map(|r| r.transcript)
                    })
                })
                .collect();
            let outcomes = simulation::run_with(parties, intercept);
            let after: Vec<_> = old.iter().map(|s| s.to_bytes().unwrap()).collect();
            assert_eq!(before, after, "a failed reshare must not touch the old shares");
            outcomes
        }};
    }
    match family {
        Family::Ecdsa => {
            let old = ecdsa_keygen::<Secp256k1>(3, old_t);
            run_family!(old, old[0].public_key(), ecdsa::reshare)
        }
        Family::Schnorr => {
            let old = schnorr_keygen::<Ed25519>(3, old_t);
            let outcomes = run_family!(old, old[0].key_info().unwrap().public_key, schnorr::reshare);
            let sig = all_equal(&schnorr_sign(&old, &[0, 2], b"still works", None));
            ed25519_verify(&old[0].public_key_bytes().unwrap(), b"still works", &sig.0);
            outcomes
        }
    }
}

fn assert_named(outcomes: Vec<CheatOutcome>, culprit: u16, victims: &[u16], reason: &str) {
    for (p, o) in outcomes.into_iter().enumerate() {
        match o {
            Outcome::Finished(Ok(r)) => assert!(!victims.contains(&(p as u16)), "victim {p} finished: {r:?}"),
            Outcome::Finished(Err(e)) if victims.contains(&(p as u16)) => {
                assert_eq!(e.culprits(), vec![culprit], "party {p}: {e}");
                assert!(e.to_string().contains(reason), "party {p}: {e}");
            }
            Outcome::ExecutorError(e) => panic!("{e}"),
            _ => assert!(!victims.contains(&(p as u16)), "victim {p} stalled"),
        }
    }
}

#[test]
fn dealer_share_inconsistent_with_its_commitments_is_named() {
    for family in [Family::Ecdsa, Family::Schnorr] {
        // Dealer 1 sends the newcomer (party 3) a share off its polynomial.
        let outcomes = cheating_run(family, |mut env| {
            if env.from == 1 && env.to == Some(3) && env.msg.round == 2 {
                let k = env.msg.payload.len() - 3;
                env.msg.payload[k] ^= 0x01;
            }
            vec![env]
        });
        assert_named(outcomes, 1, &[3], "share does not match the dealer's commitments");
    }
}

/// Replaces the `commitments` of a CBOR-encoded `Deal` message by `with`.
fn swap_commitments(payload: &[u8], with: &ciborium::Value) -> Vec<u8> {
    let mut v: ciborium::Value = ciborium::from_reader(payload).unwrap();
    let deal = match &mut v {
        ciborium::Value::Map(outer) => &mut outer[0].1,
        other => panic!("unexpected message encoding {other:?}"),
    };
    if let ciborium::Value::Map(fields) = deal {
        for (k, val) in fields.iter_mut() {
            if k.as_text() == Some("commitments") {
                *val = with.clone();
            }
        }
    }
    let mut out = Vec::new();
    ciborium::into_writer(&v, &mut out).unwrap();
    out
}

fn commitments_of(payload: &[u8]) -> ciborium::Value {
    let v: ciborium::Value = ciborium::from_reader(payload).unwrap();
    let outer = v.as_map().unwrap();
    let fields = outer[0].1.as_map().unwrap();
    fields
        .iter()
        .find(|(k, _)| k.as_text() == Some("commitments"))
        .unwrap()
        .1
        .clone()
}

#[test]
fn dealer_commitments_not_matching_its_old_public_share_are_named() {
    for family in [Family::Ecdsa, Family::Schnorr] {
        // Dealer 1 broadcasts dealer 0's commitments (valid points, wrong constant term for it).
        let dealer0 = std::cell::RefCell::new(None);
        let outcomes = cheating_run(family, |mut env| {
            if env.msg.round == 0 {
                if env.from == 0 {
                    *dealer0.borrow_mut() = Some(commitments_of(&env.msg.payload));
                }
                if env.from == 1 {
                    let with = dealer0.borrow().clone().expect("dealer 0 deals first");
                    env.msg.payload = swap_commitments(&env.msg.payload, &with);
                }
            }
            vec![env]
        });
        assert_named(outcomes, 1, &[0, 2, 3], "commitment to the constant term is not");
    }
}

#[test]
fn commitment_vector_longer_than_the_new_threshold_is_named() {
    // The "threshold raising" attack: one commitment too many.
    for family in [Family::Ecdsa, Family::Schnorr] {
        let outcomes = cheating_run(family, |mut env| {
            if env.msg.round == 0 && env.from == 0 {
                let mut c = commitments_of(&env.msg.payload);
                if let ciborium::Value::Array(items) = &mut c {
                    let last = items.last().unwrap().clone();
                    items.push(last);
                }
                env.msg.payload = swap_commitments(&env.msg.payload, &c);
            }
            vec![env]
        });
        assert_named(outcomes, 0, &[1, 2, 3], "commitments for a new threshold of 3");
    }
}

/// Replaces the old key info's public shares and preimages in a CBOR-encoded `Deal` by
/// `n` copies of the first (an old sharing of `n` holders that is also invalid: the
/// preimages repeat).
fn inflate_key_info(payload: &[u8], n: usize) -> Vec<u8> {
    let mut v: ciborium::Value = ciborium::from_reader(payload).unwrap();
    let deal = match &mut v {
        ciborium::Value::Map(outer) => &mut outer[0].1,
        other => panic!("unexpected message encoding {other:?}"),
    };
    let fields = deal.as_map_mut().unwrap();
    let info = fields
        .iter_mut()
        .find(|(k, _)| k.as_text() == Some("key_info"))
        .unwrap();
    for (k, val) in info.1.as_map_mut().unwrap().iter_mut() {
        if matches!(k.as_text(), Some("public_shares" | "preimages")) {
            let first = val.as_array().unwrap()[0].clone();
            *val = ciborium::Value::Array(vec![first; n]);
        }
    }
    let mut out = Vec::new();
    ciborium::into_writer(&v, &mut out).unwrap();
    out
}

#[test]
fn an_oversized_deal_is_refused_on_its_size_before_any_validation() {
    // Dealer 0 claims an old sharing of 2,000 holders (and an invalid one: validating it
    // would cost O(n²)). Every other party refuses it on its size, naming dealer 0, before
    // validating anything.
    for family in [Family::Ecdsa, Family::Schnorr] {
        let outcomes = cheating_run(family, |mut env| {
            if env.msg.round == 0 && env.from == 0 {
                env.msg.payload = inflate_key_info(&env.msg.payload, 2000);
            }
            vec![env]
        });
        assert_named(
            outcomes,
            0,
            &[1, 2, 3],
            "deal of an old sharing of 2000 shares with threshold 2; the approved old set has 3",
        );
    }
}

/// A hand-wired network for one run: every message goes through a router that may drop it,
/// and a party's incoming stream can be ended, as a transport's idle timeout ends it.
mod network {
    use futures::channel::mpsc;
    use futures::stream::{select_all, StreamExt};
    use round_based::{Incoming, MessageDestination, MessageType, Outgoing};
    use vsigner_tss::WireMessage;

    pub(super) type Inbox = mpsc::UnboundedReceiver<Result<Incoming<WireMessage>, std::io::Error>>;
    pub(super) type Outbox = futures::sink::SinkMapErr<
        mpsc::UnboundedSender<Outgoing<WireMessage>>,
        fn(mpsc::SendError) -> std::io::Error,
    >;

    /// Whether to drop the message from `from` to `to`.
    pub(super) type Drop = Box<dyn Fn(u16, u16, &WireMessage) -> bool>;
    /// Given how many messages each party sent, the parties whose incoming stream ends.
    pub(super) type End = Box<dyn Fn(&[usize]) -> Vec<u16>>;

    /// What the router decides for each message.
    pub(super) struct Rules {
        pub(super) drop: Drop,
        pub(super) end: End,
    }

    /// The deliveries of `m` parties and the router future (poll it with the parties).
    pub(super) fn wire(
        m: u16,
        rules: Rules,
    ) -> (Vec<(Inbox, Outbox)>, impl std::future::Future<Output = ()>) {
        let mut inboxes = Vec::new();
        let mut outboxes = Vec::new();
        let mut parties = Vec::new();
        for _ in 0..m {
            let (in_tx, in_rx) = mpsc::unbounded();
            let (out_tx, out_rx) = mpsc::unbounded::<Outgoing<WireMessage>>();
            inboxes.push(Some(in_tx));
            outboxes.push(out_rx);
            let err: fn(mpsc::SendError) -> std::io::Error = |e| std::io::Error::other(e.to_string());
            parties.push((in_rx, futures::SinkExt::sink_map_err(out_tx, err)));
        }
        let router = async move {
            let mut all = select_all(
                outboxes
                    .into_iter()
                    .enumerate()
                    .map(|(p, rx)| rx.map(move |o| (p as u16, o))),
            );
            let mut next_id = 0u64;
            // Messages sent by each party so far.
            let mut sent = vec![0usize; usize::from(m)];
            while let Some((from, o)) = all.next().await {
                sent[usize::from(from)] += 1;
                let (targets, msg_type): (Vec<u16>, _) = match o.recipient {
                    MessageDestination::AllParties => {
                        ((0..m).filter(|j| *j != from).collect(), MessageType::Broadcast)
                    }
                    MessageDestination::OneParty(j) => (vec![j], MessageType::P2P),
                };
                for to in targets {
                    if (rules.drop)(from, to, &o.msg) {
                        continue;
                    }
                    if let Some(Some(tx)) = inboxes.get(usize::from(to)) {
                        let _ = tx.unbounded_send(Ok(Incoming {
                            id: next_id,
                            sender: from,
                            msg_type,
                            msg: o.msg.clone(),
                        }));
                        next_id += 1;
                    }
                }
                for p in (rules.end)(&sent) {
                    inboxes[usize::from(p)] = None;
                }
            }
        };
        (parties, router)
    }
}

#[test]
fn missing_acknowledgements_leave_a_checked_share_and_say_so() {
    // A refresh of 2-of-3 where the broker drops every acknowledgement (round 3) sent to
    // party 2; party 2's transport gives up once the others are done. Party 2 still has its
    // new share, which passed every Feldman check: the run says the acknowledgements are
    // incomplete instead of throwing the share away. The others see every acknowledgement.
    for family in [Family::Ecdsa, Family::Schnorr] {
        let (old_t, new_t, roles) = refresh();
        let roles = &roles;
        let eid = eid(ProtocolTag::Reshare, "unacknowledged", roles.len());
        let rules = network::Rules {
            drop: Box::new(|_, to, msg| to == 2 && msg.round == 3),
            // Each party sends 1 deal + 1 echo + 2 shares + 1 ack: after 5 messages from
            // each of the others, party 2 will hear nothing more.
            end: Box::new(|sent| {
                if sent[0] >= 5 && sent[1] >= 5 {
                    vec![2]
                } else {
                    vec![]
                }
            }),
        };
        let (ios, router) = network::wire(roles.len() as u16, rules);
        macro_rules! run_family {
            ($old:expr, $public_key:expr, $reshare:path) => {{
                let old = &$old;
                let public_key = $public_key;
                let parties = ios.into_iter().enumerate().map(|(p, io)| async move {
                    let p = p as u16;
                    let setup = ReshareSetup {
                        roles,
                        me: p,
                        old_n: old.len() as u16,
                        old_threshold: old_t,
                        new_threshold: new_t,
                        public_key,
                    };
                    let mine = roles[usize::from(p)]
                        .old_index
                        .map(|i| &old[usize::from(i)]);
                    let r = $reshare(
                        round_based::MpcParty::connected(io),
                        eid,
                        &setup,
                        mine,
                        &mut OsRng,
                    )
                    .await
                    .unwrap();
                    (r.share.is_some(), r.acknowledged, r.transcript)
                });
                let (results, ()) = futures::executor::block_on(futures::future::join(
                    futures::future::join_all(parties),
                    router,
                ));
                results
            }};
        }
        let results = match family {
            Family::Ecdsa => {
                let old = ecdsa_keygen::<Secp256k1>(3, old_t);
                run_family!(old, old[0].public_key(), ecdsa::reshare)
            }
            Family::Schnorr => {
                let old = schnorr_keygen::<Ed25519>(3, old_t);
                run_family!(old, old[0].key_info().unwrap().public_key, schnorr::reshare)
            }
        };
        for (p, (has_share, acknowledged, _)) in results.iter().enumerate() {
            assert!(has_share, "{family:?}: party {p} has its new share");
            match (p, acknowledged) {
                (2, Acknowledged::Incomplete(_)) | (0 | 1, Acknowledged::All) => {}
                other => panic!("{family:?}: party {p} ended {other:?}"),
            }
        }
        all_equal(&results.iter().map(|r| r.2).collect::<Vec<_>>());
    }
}
