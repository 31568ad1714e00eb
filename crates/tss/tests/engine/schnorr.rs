//! Threshold Schnorr (FROST): ed25519 verified by `ed25519-dalek` (`verify_strict`), BIP-340
//! verified by `k256`'s Schnorr verifier, Taproot output keys computed here from BIP-341.

use k256::elliptic_curve::point::AffineCoordinates;
use sha2::{Digest, Sha256};
use vsigner_tss::schnorr::{Bip340, Ed25519, TaprootTweak};

use crate::common::*;

fn committees(n: u16, t: u16) -> Vec<Vec<u16>> {
    vec![(0..t).collect(), (n - t..n).rev().collect(), (0..n).collect()]
}

fn ed25519_verify(pk: &[u8], msg: &[u8], sig: &[u8]) {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(pk.try_into().unwrap()).unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(sig.try_into().unwrap());
    vk.verify_strict(msg, &sig)
        .expect("ed25519-dalek rejects the signature");
}

fn bip340_verify(xonly: &[u8], msg: &[u8], sig: &[u8]) {
    let vk = k256::schnorr::VerifyingKey::from_bytes(xonly).unwrap();
    let sig = k256::schnorr::Signature::try_from(sig).unwrap();
    vk.verify_raw(msg, &sig)
        .expect("k256 rejects the BIP-340 signature");
}

fn tagged_hash(tag: &str, data: &[&[u8]]) -> [u8; 32] {
    let t = Sha256::digest(tag.as_bytes());
    let mut h = Sha256::new();
    h.update(t);
    h.update(t);
    for d in data {
        h.update(d);
    }
    h.finalize().into()
}

/// BIP-341 output key `Q = lift_x(P) + H_TapTweak(P ‖ root)·G`, x-only.
fn taproot_output_key(internal: &[u8], merkle_root: Option<[u8; 32]>) -> Vec<u8> {
    use k256::elliptic_curve::ops::Reduce;
    let p = k256::schnorr::VerifyingKey::from_bytes(internal).unwrap();
    let root = merkle_root.map(|r| r.to_vec()).unwrap_or_default();
    let t = tagged_hash("TapTweak", &[internal, &root]);
    let t = <k256::Scalar as Reduce<k256::U256>>::reduce_bytes(&t.into());
    let q = (k256::ProjectivePoint::from(*p.as_affine()) + k256::ProjectivePoint::GENERATOR * t).to_affine();
    q.x().to_vec()
}

fn ed25519_keygen_and_sign(n: u16, t: u16) {
    let shares = schnorr_keygen::<Ed25519>(n, t);
    let pk = all_equal(
        &shares
            .iter()
            .map(|s| s.public_key_bytes().unwrap())
            .collect::<Vec<_>>(),
    );
    assert_eq!(pk.len(), 32);
    for signers in committees(n, t) {
        let msg = format!("transfer signed by {signers:?}");
        let sig = all_equal(&schnorr_sign(&shares, &signers, msg.as_bytes(), None));
        ed25519_verify(&pk, msg.as_bytes(), &sig.0);
    }
}

fn bip340_keygen_and_sign(n: u16, t: u16) {
    let shares = schnorr_keygen::<Bip340>(n, t);
    let pk = all_equal(
        &shares
            .iter()
            .map(|s| s.public_key_bytes().unwrap())
            .collect::<Vec<_>>(),
    );
    assert_eq!(pk.len(), 32, "x-only key");
    // The group key has an even y (keygen normalises it), so that its x-only encoding
    // names it exactly: a reshare that knows the key only by those 32 bytes deals it.
    for s in &shares {
        let key = s.key_info().unwrap().public_key.to_bytes(true);
        assert_eq!(key[0], 0x02, "even y");
        assert_eq!(&key[1..], &pk[..]);
    }
    for signers in committees(n, t) {
        let msg = Sha256::digest(format!("sighash {signers:?}")).to_vec();
        let sig = all_equal(&schnorr_sign(&shares, &signers, &msg, None));
        bip340_verify(&pk, &msg, &sig.0);
    }
    // Taproot key-path spends, without and with a script tree.
    for root in [None, Some([9u8; 32])] {
        let tweak = TaprootTweak { merkle_root: root };
        let signers: Vec<u16> = (0..t).collect();
        let msg = [0x5au8; 32];
        let sig = all_equal(&schnorr_sign(&shares, &signers, &msg, Some(&tweak)));
        let output_key = taproot_output_key(&pk, root);
        bip340_verify(&output_key, &msg, &sig.0);
        assert!(
            k256::schnorr::VerifyingKey::from_bytes(&pk)
                .unwrap()
                .verify_raw(
                    &msg,
                    &k256::schnorr::Signature::try_from(sig.0.as_slice()).unwrap()
                )
                .is_err(),
            "a tweaked signature must not verify under the internal key"
        );
    }
}

#[test]
fn ed25519_t2_n3() {
    ed25519_keygen_and_sign(3, 2)
}

#[test]
fn ed25519_t3_n5() {
    ed25519_keygen_and_sign(5, 3)
}

#[test]
fn bip340_t2_n3() {
    bip340_keygen_and_sign(3, 2)
}

#[test]
fn bip340_t3_n5() {
    bip340_keygen_and_sign(5, 3)
}

#[test]
fn taproot_tweak_is_refused_for_ed25519() {
    let shares = schnorr_keygen::<Ed25519>(3, 2);
    let eid = eid(vsigner_tss::ProtocolTag::SchnorrSign, "bad", 2);
    let result = futures::executor::block_on(async {
        let party = idle_party();
        vsigner_tss::schnorr::sign(
            party,
            eid,
            0,
            &[0, 1],
            &shares[0],
            b"m",
            Some(&TaprootTweak::default()),
            &mut rand_core::OsRng,
        )
        .await
    });
    assert!(
        matches!(result, Err(vsigner_tss::Error::InvalidArguments(_))),
        "{result:?}"
    );
}

/// ed25519 child keys: every holder has the same chain code; a committee's child shares sign
/// for the child key the public derivation (`hd-wallet`'s `Edwards`) gives from the group
/// key and chain code; the child of a reshared key is the same.
#[test]
fn ed25519_child_keys_sign_for_the_publicly_derived_key() {
    use hd_wallet::HdWallet;
    use vsigner_tss::hd::DerivationPath;
    let shares = schnorr_keygen::<Ed25519>(3, 2);
    let chain_code = all_equal(&shares.iter().map(|s| s.chain_code()).collect::<Vec<_>>())
        .expect("an ed25519 key has a chain code");
    assert_ne!(chain_code, [0u8; 32]);
    let info = shares[0].key_info().unwrap();
    let path: DerivationPath = "m/0/7".parse().unwrap();
    let parent = hd_wallet::ExtendedPublicKey {
        public_key: info.public_key,
        chain_code,
    };
    let expected = hd_wallet::Edwards::derive_child_public_key_with_path(
        &parent,
        [0u32, 7].map(|i| i.try_into().unwrap()),
    )
    .public_key
    .to_bytes(true)
    .to_vec();
    let children: Vec<_> = shares.iter().map(|s| s.derive(&path).unwrap()).collect();
    for c in &children {
        assert_eq!(c.public_key_bytes().unwrap(), expected);
    }
    for signers in committees(3, 2) {
        let sig = all_equal(&schnorr_sign(&children, &signers, b"child", None));
        ed25519_verify(&expected, b"child", &sig.0);
    }
    // The root path is the key itself; another path another key.
    let root = shares[0].derive(&"m".parse().unwrap()).unwrap();
    assert_eq!(
        root.public_key_bytes().unwrap(),
        shares[0].public_key_bytes().unwrap()
    );
    let other = shares[0].derive(&"m/0/8".parse().unwrap()).unwrap();
    assert_ne!(other.public_key_bytes().unwrap(), expected);
    // BIP-340 keys have none.
    let bip = schnorr_keygen::<Bip340>(3, 2);
    assert_eq!(bip[0].chain_code(), None);
    assert!(bip[0].derive(&path).is_err());
}

/// The rounds of the messages `party` sent, in order, from a log of (sender, round).
fn rounds_sent_by(sent: &[(u16, u16)], party: u16) -> Vec<u16> {
    sent.iter()
        .filter(|(from, _)| *from == party)
        .map(|(_, round)| *round)
        .collect()
}

/// A party whose gate fails (its device could not make its run mark durable) sends its nonce
/// commitments and nothing after: no signature share leaves it, its run ends with the gate's
/// error, and no signature is made. With the gate open the same committee signs.
#[test]
fn a_closed_gate_holds_the_signature_share_back() {
    use std::cell::RefCell;
    use std::rc::Rc;
    use vsigner_tss::simulation::{self, Outcome};
    let shares = schnorr_keygen::<Ed25519>(3, 2);
    let shares = &shares;
    let signers = [0u16, 1];
    for gate_open in [true, false] {
        let eid = eid(vsigner_tss::ProtocolTag::SchnorrSign, "gated", 2);
        let parties = (0..2u16)
            .map(|j| {
                simulation::party(move |party| async move {
                    let gate = async move {
                        if j == 0 && !gate_open {
                            Err(vsigner_tss::Error::Protocol(
                                "the run mark was not written".into(),
                            ))
                        } else {
                            Ok(())
                        }
                    };
                    vsigner_tss::schnorr::sign_gated(
                        party,
                        eid,
                        j,
                        &signers,
                        &shares[usize::from(j)],
                        b"m",
                        None,
                        &mut rand_core::OsRng,
                        gate,
                    )
                    .await
                })
            })
            .collect();
        let sent: Rc<RefCell<Vec<(u16, u16)>>> = Rc::default();
        let seen = sent.clone();
        let outcomes = simulation::run_with(parties, move |env| {
            seen.borrow_mut().push((env.from, env.msg.round));
            vec![env]
        });
        let from_0 = rounds_sent_by(&sent.borrow(), 0);
        if gate_open {
            assert_eq!(from_0, vec![0, 1], "commitments, then the share");
            assert!(outcomes.iter().all(|o| matches!(o, Outcome::Finished(Ok(_)))));
        } else {
            assert_eq!(from_0, vec![0], "only the commitments leave a closed gate");
            assert!(
                matches!(&outcomes[0], Outcome::Finished(Err(vsigner_tss::Error::Protocol(why))) if why.contains("run mark")),
                "the gated party ends with the gate's error"
            );
            assert!(
                !outcomes[1..]
                    .iter()
                    .any(|o| matches!(o, Outcome::Finished(Ok(_)))),
                "no signature without party 0's share"
            );
        }
    }
}

/// The signature share waits for a gate that is still closed when every commitment is in (the
/// state-machine simulation above can only run gates that are already decided): parties on
/// one thread over in-memory channels, every message logged as it is sent. Once both
/// commitments are out, the test lets the parties run, checks that the gated party sent
/// nothing more, then opens the gate (its share follows and it signs) or fails it (it ends
/// with the gate's error, its share never sent).
#[test]
fn the_signature_share_waits_for_a_gate_still_closed_when_the_commitments_are_in() {
    use std::cell::RefCell;
    use std::rc::Rc;

    use futures::channel::{mpsc, oneshot};
    use futures::{FutureExt as _, SinkExt as _, StreamExt as _};
    use round_based::{Incoming, MessageType, MpcParty, Outgoing};
    use vsigner_tss::{Error, WireMessage};

    let shares = schnorr_keygen::<Ed25519>(3, 2);
    let signers = [0u16, 1];
    for open in [true, false] {
        let eid = eid(vsigner_tss::ProtocolTag::SchnorrSign, "late gate", 2);
        // (sender, round) of every message, as it is sent.
        let sent: Rc<RefCell<Vec<(u16, u16)>>> = Rc::default();
        let (to_router, mut from_parties) = mpsc::unbounded::<(u16, Outgoing<WireMessage>)>();
        let mut inboxes = Vec::new();
        let mut parties = Vec::new();
        for j in 0..2u16 {
            let (inbox, incoming) =
                mpsc::unbounded::<Result<Incoming<WireMessage>, std::convert::Infallible>>();
            inboxes.push(inbox);
            let log = sent.clone();
            let outgoing = to_router.clone().with(move |m: Outgoing<WireMessage>| {
                log.borrow_mut().push((j, m.msg.round));
                futures::future::ok::<_, mpsc::SendError>((j, m))
            });
            parties.push(MpcParty::connected((incoming, outgoing)));
        }
        drop(to_router);
        let (gate_tx, gate_rx) = oneshot::channel::<Result<(), Error>>();
        let mut gate_tx = Some(gate_tx);
        let log = sent.clone();
        let router = async move {
            let mut id = 0;
            while let Some((from, out)) = from_parties.next().await {
                for (to, inbox) in inboxes.iter().enumerate() {
                    if to != usize::from(from) {
                        let msg = Incoming {
                            id,
                            sender: from,
                            msg_type: MessageType::Broadcast,
                            msg: out.msg.clone(),
                        };
                        id += 1;
                        let _ = inbox.unbounded_send(Ok(msg));
                    }
                }
                let commitments = log.borrow().iter().filter(|(_, round)| *round == 0).count();
                if commitments == 2 {
                    if let Some(gate) = gate_tx.take() {
                        // Every commitment delivered: the parties run (each yield lets every
                        // future of this thread make progress) with the gate still closed.
                        for _ in 0..100 {
                            let mut yielded = false;
                            futures::future::poll_fn(|cx| {
                                if yielded {
                                    std::task::Poll::Ready(())
                                } else {
                                    yielded = true;
                                    cx.waker().wake_by_ref();
                                    std::task::Poll::Pending
                                }
                            })
                            .await;
                        }
                        assert_eq!(
                            log.borrow().iter().filter(|(from, _)| *from == 0).count(),
                            1,
                            "the gated party sent more than its commitments before its gate opened: {:?}",
                            log.borrow()
                        );
                        assert!(log.borrow().contains(&(1, 1)), "the other party's share is out");
                        let _ = gate.send(if open {
                            Ok(())
                        } else {
                            Err(Error::Protocol("the run mark was not written".into()))
                        });
                    }
                }
            }
        };
        let mut parties = parties.into_iter();
        let (p0, p1) = (parties.next().unwrap(), parties.next().unwrap());
        let (mut rng, mut other_rng) = (rand_core::OsRng, rand_core::OsRng);
        let gated = vsigner_tss::schnorr::sign_gated(
            p0,
            eid,
            0,
            &signers,
            &shares[0],
            b"m",
            None,
            &mut rng,
            async move {
                gate_rx
                    .await
                    .unwrap_or_else(|_| Err(Error::Protocol("gate dropped".into())))
            },
        );
        let other = vsigner_tss::schnorr::sign(p1, eid, 1, &signers, &shares[1], b"m", None, &mut other_rng);
        // The gated party's end decides; the other may wait for its share forever.
        let outcome = futures::executor::block_on(async {
            match futures::future::select(
                gated.boxed_local(),
                futures::future::join(other, router).boxed_local(),
            )
            .await
            {
                futures::future::Either::Left((outcome, _)) => outcome,
                futures::future::Either::Right(_) => panic!("the router ended first"),
            }
        });
        let from_0 = rounds_sent_by(&sent.borrow(), 0);
        if open {
            let signature = outcome.expect("the gate opened: a signature");
            let key = shares[0].public_key_bytes().unwrap();
            let vk = ed25519_dalek::VerifyingKey::from_bytes(key.as_slice().try_into().unwrap()).unwrap();
            vk.verify_strict(b"m", &ed25519_dalek::Signature::from_slice(&signature.0).unwrap())
                .expect("the signature verifies");
            assert_eq!(from_0, vec![0, 1]);
        } else {
            assert!(
                matches!(&outcome, Err(Error::Protocol(why)) if why.contains("run mark")),
                "{outcome:?}"
            );
            assert_eq!(from_0, vec![0], "no share leaves a failed gate");
        }
    }
}
