//! Misbehaving peers: every run ends (no hang, no panic) and the victims' errors name the
//! culprit. Runs on `vsigner_tss::simulation`, whose interceptor rewrites messages in flight.

use rand_core::OsRng;
use vsigner_tss::ecdsa::{self, Message, Secp256k1};
use vsigner_tss::schnorr::{self, Ed25519};
use vsigner_tss::simulation::{self, Envelope, Outcome};
use vsigner_tss::{Error, ExecutionId, Fault, ProtocolTag};

use crate::common::*;

type Interceptor = Box<dyn FnMut(Envelope) -> Vec<Envelope>>;

fn frost_sign_with(intercept: Interceptor) -> Vec<Outcome<Result<schnorr::Signature, Error>>> {
    let shares = schnorr_keygen::<Ed25519>(3, 2);
    let eid = eid(ProtocolTag::SchnorrSign, "adversarial", 3);
    let signers = [0u16, 1, 2];
    let shares = &shares;
    let parties = (0..3u16)
        .map(|j| {
            simulation::party(move |party| async move {
                schnorr::sign(
                    party,
                    eid,
                    j,
                    &signers,
                    &shares[usize::from(j)],
                    b"msg",
                    None,
                    &mut OsRng,
                )
                .await
            })
        })
        .collect();
    simulation::run_with(parties, intercept)
}

fn frost_keygen_with(
    eid: ExecutionId,
    intercept: Interceptor,
) -> Vec<Outcome<Result<schnorr::KeyShare<Ed25519>, Error>>> {
    let parties = (0..3u16)
        .map(|i| {
            simulation::party(
                move |party| async move { schnorr::keygen(party, eid, i, 3, 2, &mut OsRng).await },
            )
        })
        .collect();
    simulation::run_with(parties, intercept)
}

/// Asserts that every victim (a party that received the bad message) failed with an error
/// that names `culprit` and satisfies `check`. Other parties may finish either way (the
/// coordinator fails the operation when any participant reports an error), but the run
/// must end without executor errors.
fn assert_blamed<T: std::fmt::Debug>(
    outcomes: Vec<Outcome<Result<T, Error>>>,
    culprit: u16,
    victims: &[u16],
    check: impl Fn(&Error) -> bool,
) {
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let victim = victims.contains(&(i as u16));
        match outcome {
            Outcome::Finished(Ok(v)) if victim => panic!("victim {i} succeeded despite the attack: {v:?}"),
            Outcome::Finished(Err(e)) if victim => {
                assert_eq!(e.culprits(), vec![culprit], "party {i}: {e}");
                assert!(check(&e), "party {i}: unexpected error {e:?}");
            }
            Outcome::Stalled if victim => panic!("victim {i} stalled instead of failing"),
            Outcome::ExecutorError(e) => panic!("executor error at party {i}: {e}"),
            _ => {}
        }
    }
}

fn misbehaviour(expected: Fault) -> impl Fn(&Error) -> bool {
    move |e| matches!(e, Error::Misbehaviour { fault, .. } if *fault == expected)
}

/// Rewrites every message that `from` sends.
fn tamper(from: u16, f: impl Fn(&mut Envelope) + 'static) -> Interceptor {
    Box::new(move |mut env| {
        if env.from == from {
            f(&mut env);
        }
        vec![env]
    })
}

#[test]
fn message_of_another_execution_is_refused_naming_the_sender() {
    let other = ExecutionId::from_bytes([0xee; 32]);
    let outcomes = frost_sign_with(tamper(1, move |e| e.msg.execution_id = other));
    assert_blamed(outcomes, 1, &[0, 2], misbehaviour(Fault::WrongExecution));
}

#[test]
fn replay_of_an_earlier_run_is_refused() {
    // Record party 2's first message in one keygen run, then replay it into a second run.
    let recorded = std::rc::Rc::new(std::cell::RefCell::new(None));
    let rec = recorded.clone();
    let first = eid(ProtocolTag::SchnorrKeygen, "first", 3);
    let outcomes = frost_keygen_with(
        first,
        Box::new(move |env| {
            if env.from == 2 && rec.borrow().is_none() {
                *rec.borrow_mut() = Some(env.msg.clone());
            }
            vec![env]
        }),
    );
    assert!(outcomes
        .into_iter()
        .all(|o| matches!(o, Outcome::Finished(Ok(_)))));
    let old = recorded.borrow().clone().unwrap();
    let second = eid(ProtocolTag::SchnorrKeygen, "second", 3);
    let outcomes = frost_keygen_with(
        second,
        tamper(2, move |e| {
            if e.msg.round == old.round {
                e.msg = old.clone();
            }
        }),
    );
    assert_blamed(outcomes, 2, &[0, 1], misbehaviour(Fault::WrongExecution));
}

#[test]
fn message_from_a_non_participant_is_refused() {
    let outcomes = frost_sign_with(Box::new(|env| {
        let mut forged = env.clone();
        forged.from = 7;
        vec![env, forged]
    }));
    assert_blamed(
        outcomes,
        7,
        &[0, 1, 2],
        misbehaviour(Fault::NotAParticipant { n: 3 }),
    );
}

#[test]
fn message_claiming_to_come_from_the_recipient_is_refused() {
    let outcomes = frost_sign_with(tamper(2, |e| {
        e.from = 0;
        e.to = Some(0);
    }));
    assert_blamed(outcomes, 0, &[0], misbehaviour(Fault::Impersonation));
}

#[test]
fn message_for_a_round_that_does_not_exist_is_refused() {
    let outcomes = frost_sign_with(tamper(1, |e| e.msg.round = 99));
    assert_blamed(
        outcomes,
        1,
        &[0, 2],
        misbehaviour(Fault::OutOfRound { round: 99 }),
    );
}

#[test]
fn message_whose_header_and_payload_disagree_on_the_round_is_refused() {
    // Party 1's round-0 commitments relabelled as round 1 (signature shares).
    let outcomes = frost_sign_with(tamper(1, |e| {
        if e.msg.round == 0 {
            e.msg.round = 1
        }
    }));
    assert_blamed(outcomes, 1, &[0, 2], |e| {
        matches!(
            e,
            Error::Misbehaviour {
                fault: Fault::OutOfRound { .. } | Fault::Garbled(_),
                ..
            }
        )
    });
}

#[test]
fn duplicated_message_is_refused() {
    let outcomes = frost_sign_with(Box::new(|env| {
        if env.from == 1 && env.msg.round == 0 {
            vec![env.clone(), env]
        } else {
            vec![env]
        }
    }));
    assert_blamed(outcomes, 1, &[0, 2], misbehaviour(Fault::Duplicate { round: 0 }));
}

#[test]
fn garbled_payloads_are_refused_without_panic() {
    for cut in [0usize, 1, 5] {
        let outcomes = frost_sign_with(tamper(2, move |e| {
            let keep = e.msg.payload.len().saturating_sub(cut + 1);
            e.msg.payload.truncate(if cut == 0 { 0 } else { keep });
        }));
        assert_blamed(outcomes, 2, &[0, 1], |e| {
            matches!(
                e,
                Error::Misbehaviour {
                    fault: Fault::Garbled(_),
                    ..
                }
            )
        });
    }
    let outcomes = frost_sign_with(tamper(2, |e| e.msg.payload.iter_mut().for_each(|b| *b = 0xff)));
    assert_blamed(outcomes, 2, &[0, 1], |e| {
        matches!(
            e,
            Error::Misbehaviour {
                fault: Fault::Garbled(_),
                ..
            }
        )
    });
}

#[test]
fn invalid_signature_share_names_the_signer() {
    // Flip one byte inside party 1's signature share: it still decodes (or not), and either
    // way party 1 is named.
    let outcomes = frost_sign_with(tamper(1, |e| {
        if e.msg.round == 1 {
            let k = e.msg.payload.len() - 10;
            e.msg.payload[k] ^= 0x01;
        }
    }));
    assert_blamed(outcomes, 1, &[0, 2], |e| {
        matches!(e, Error::Aborted { .. } | Error::Misbehaviour { .. })
    });
}

#[test]
fn frost_dkg_equivocation_is_caught_by_the_echo_round() {
    // Party 2 shows party 1 the commitments of another run of its own (same execution id),
    // and party 0 its real ones: the echo round must stop both.
    let eid = eid(ProtocolTag::SchnorrKeygen, "equivocation", 3);
    let recorded = std::rc::Rc::new(std::cell::RefCell::new(None));
    let rec = recorded.clone();
    let outcomes = frost_keygen_with(
        eid,
        Box::new(move |env| {
            if env.from == 2 && env.msg.round == 0 {
                *rec.borrow_mut() = Some(env.msg.clone());
            }
            vec![env]
        }),
    );
    assert!(outcomes
        .into_iter()
        .all(|o| matches!(o, Outcome::Finished(Ok(_)))));
    let other = recorded.borrow().clone().unwrap();
    let outcomes = frost_keygen_with(
        eid,
        Box::new(move |env| {
            if env.from == 2 && env.msg.round == 0 {
                // Split the broadcast: real commitments to 0, the other run's to 1.
                let to_0 = Envelope {
                    to: Some(0),
                    ..env.clone()
                };
                let to_1 = Envelope {
                    to: Some(1),
                    msg: other.clone(),
                    ..env
                };
                // Delivered as broadcasts, as an equivocating broadcaster would.
                return vec![to_0, to_1];
            }
            vec![env]
        }),
    );
    let errors: Vec<Error> = outcomes
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Finished(Ok(_)) => panic!("a party accepted an equivocated DKG"),
            Outcome::Finished(Err(e)) => Some(e),
            _ => None,
        })
        .collect();
    assert!(!errors.is_empty(), "nobody noticed the equivocation");
    assert!(
        errors.iter().all(|e| !e.culprits().is_empty()),
        "every failing party names someone: {errors:?}"
    );
}

#[test]
fn frost_dkg_bad_secret_share_names_the_dealer() {
    // Party 2 sends party 0 the share meant for party 1.
    let held = std::rc::Rc::new(std::cell::RefCell::new(None::<Envelope>));
    let held2 = held.clone();
    let eid = eid(ProtocolTag::SchnorrKeygen, "bad-share", 3);
    let outcomes = frost_keygen_with(
        eid,
        Box::new(move |env| {
            if env.from == 2 && env.msg.round == 2 {
                match env.to {
                    Some(0) => {
                        *held2.borrow_mut() = Some(env);
                        return vec![];
                    }
                    Some(1) => {
                        let mut to_0 = held2.borrow_mut().take().expect("share to 0 sent first");
                        to_0.msg = env.msg.clone();
                        return vec![env, to_0];
                    }
                    _ => {}
                }
            }
            vec![env]
        }),
    );
    assert_blamed(outcomes, 2, &[0], |e| matches!(e, Error::Aborted { .. }));
    assert!(held.borrow().is_none());
}

#[test]
fn ecdsa_signing_refuses_wrong_execution_and_garbage_naming_the_party() {
    let shares = ecdsa_shares::<Secp256k1>(3, 2);
    let shares = &shares;
    let signers = [0u16, 1];
    let eid = eid(ProtocolTag::EcdsaSign, "adversarial", 2);
    let m = Message::Digest([3; 32]);
    let m = &m;
    let run = |intercept: Interceptor| {
        let parties = (0..2u16)
            .map(|j| {
                simulation::party(move |party| async move {
                    ecdsa::sign(
                        party,
                        eid,
                        j,
                        &signers,
                        &shares[usize::from(j)],
                        m,
                        None,
                        &mut OsRng,
                    )
                    .await
                })
            })
            .collect();
        simulation::run_with(parties, intercept)
    };
    let other = ExecutionId::from_bytes([1; 32]);
    assert_blamed(
        run(tamper(1, move |e| e.msg.execution_id = other)),
        1,
        &[0],
        misbehaviour(Fault::WrongExecution),
    );
    assert_blamed(
        run(tamper(0, |e| {
            if e.msg.round == 1 {
                e.msg.payload.truncate(7)
            }
        })),
        0,
        &[1],
        |e| {
            matches!(
                e,
                Error::Misbehaviour {
                    fault: Fault::Garbled(_),
                    ..
                }
            )
        },
    );
}

#[test]
fn ecdsa_keygen_refuses_a_non_participant() {
    let eid = eid(ProtocolTag::EcdsaKeygen, "adversarial", 3);
    let parties = (0..3u16)
        .map(|i| {
            simulation::party(move |party| async move {
                ecdsa::keygen::<Secp256k1, _, _>(party, eid, i, 3, 2, &mut OsRng).await
            })
        })
        .collect();
    let outcomes = simulation::run_with(parties, |env| {
        let mut forged = env.clone();
        forged.from = 3;
        vec![forged, env]
    });
    assert_blamed(
        outcomes,
        3,
        &[0, 1, 2],
        misbehaviour(Fault::NotAParticipant { n: 3 }),
    );
}
