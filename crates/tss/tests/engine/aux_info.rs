//! Aux-info generation from the committed test prime pool (the one slow ECDSA setup test),
//! and the prime pool's background generation.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rand_core::OsRng;
use vsigner_tss::ecdsa::{AuxInfoOptions, HashAlgorithm, KeyShare, Message, Preimage, Secp256k1};
use vsigner_tss::primes::PrimePool;
use vsigner_tss::simulation::local;
use vsigner_tss::ProtocolTag;

use crate::common::*;

#[test]
fn aux_info_from_pool_primes_gives_shares_that_sign() {
    let n = 3u16;
    let pool = PrimePool::with_sets(test_prime_sets());
    let sets: Vec<_> = (0..n).map(|_| pool.take().unwrap()).collect();
    let options = AuxInfoOptions {
        precompute_multiexp: false,
    };
    let aux = local::ecdsa_aux_info(
        eid(ProtocolTag::EcdsaAuxInfo, "aux", n.into()),
        sets,
        options,
        || OsRng,
    )
    .unwrap();
    let shares: Vec<KeyShare<Secp256k1>> =
        local::ecdsa_key_shares(ecdsa_keygen::<Secp256k1>(n, 2), aux).unwrap();
    let m = Message::Preimage(Preimage {
        hash: HashAlgorithm::Sha256,
        data: b"fresh aux".to_vec(),
    });
    let sig = all_equal(&ecdsa_sign(&shares, &[2, 0], &m, None));
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    k256::ecdsa::VerifyingKey::from_sec1_bytes(&shares[0].public_key_bytes())
        .unwrap()
        .verify_prehash(
            &m.digest(),
            &k256::ecdsa::Signature::from_scalars(sig.r, sig.s).unwrap(),
        )
        .unwrap();
}

#[test]
fn prime_pool_fills_in_the_background_with_progress() {
    let pool = PrimePool::default();
    let stop = AtomicBool::new(false);
    let calls = AtomicUsize::new(0);
    pool.fill(1, 2, || OsRng, &stop, &|p| {
        calls.fetch_add(1, Ordering::Relaxed);
        assert_eq!(p.target_sets, 1);
    });
    assert_eq!(calls.load(Ordering::Relaxed), 4, "one progress call per prime");
    assert_eq!(pool.primes_generated(), 4);
    let progress = pool.progress();
    assert_eq!(
        (
            progress.sets_ready,
            progress.loose_primes,
            progress.primes_missing()
        ),
        (1, 0, 0)
    );
    pool.take().unwrap().validate(&mut OsRng).unwrap();

    // A stopped pool and a full pool generate nothing.
    stop.store(true, Ordering::Relaxed);
    pool.fill(3, 2, || OsRng, &stop, &|_| panic!("no prime expected"));
    let full = PrimePool::with_sets(test_prime_sets());
    full.fill(2, 2, || OsRng, &AtomicBool::new(false), &|_| {
        panic!("no prime expected")
    });
    assert_eq!(full.primes_generated(), 0);
}

/// Runs `agree_on_reuse` among the devices, device `j` offering `offers[j]` (an index into
/// `aux`, or none).
fn agree(aux: &[vsigner_tss::ecdsa::AuxInfo], offers: &[Option<usize>]) -> Vec<bool> {
    use vsigner_tss::simulation;
    let n = offers.len() as u16;
    let eid = eid(ProtocolTag::EcdsaAuxInfoReuse, "reuse", n.into());
    let parties = (0..n)
        .map(|j| {
            let mine = offers[usize::from(j)].map(|k| &aux[k]);
            simulation::party(move |party| async move {
                vsigner_tss::ecdsa::agree_on_reuse(party, eid, j, n, mine).await
            })
        })
        .collect();
    simulation::run(parties)
        .into_iter()
        .map(|o| o.unwrap_finished().unwrap())
        .collect()
}

#[test]
fn a_device_set_reuses_aux_info_only_when_every_member_holds_the_same() {
    let aux = test_aux_info(3);
    let fingerprints: Vec<[u8; 32]> = aux.iter().map(|a| a.public_fingerprint()).collect();
    assert!(
        fingerprints.iter().all(|f| *f == fingerprints[0]),
        "one run, one fingerprint"
    );
    assert_ne!(test_aux_info(4)[0].public_fingerprint(), fingerprints[0]);
    // Everyone holds its own aux-info of this set: reuse.
    assert_eq!(agree(&aux, &[Some(0), Some(1), Some(2)]), vec![true; 3]);
    // One member lost it: nobody reuses.
    assert_eq!(agree(&aux, &[Some(0), None, Some(2)]), vec![false; 3]);
    // A member offers aux-info of another position (not its own index): not offered.
    assert_eq!(agree(&aux, &[Some(0), Some(2), Some(2)]), vec![false; 3]);
    // Aux-info of another set size is never offered.
    let four = test_aux_info(4);
    let mixed = vec![aux[0].clone(), four[1].clone(), aux[2].clone()];
    assert_eq!(agree(&mixed, &[Some(0), Some(1), Some(2)]), vec![false; 3]);
}

#[test]
fn an_equivocating_offer_stops_the_agreement_for_everyone() {
    use vsigner_tss::simulation::{self, Envelope, Outcome};
    let aux = test_aux_info(3);
    let n = 3u16;
    let eid = eid(ProtocolTag::EcdsaAuxInfoReuse, "reuse-equivocation", 3);
    let parties = (0..n)
        .map(|j| {
            let mine = &aux[usize::from(j)];
            simulation::party(move |party| async move {
                vsigner_tss::ecdsa::agree_on_reuse(party, eid, j, n, Some(mine)).await
            })
        })
        .collect();
    // Party 2 shows its real offer to party 0 and "nothing" to party 1 (round 0): without
    // the echo, 0 would reuse and 1 would regenerate.
    let outcomes = simulation::run_with(parties, |env: Envelope| {
        if env.from == 2 && env.msg.round == 0 {
            let mut to_one = env.clone();
            let nothing = vsigner_tss::WireMessage {
                execution_id: env.msg.execution_id,
                round: 0,
                payload: none_offer_payload(&env.msg.payload),
            };
            to_one.to = Some(1);
            to_one.msg = nothing;
            let mut to_zero = env;
            to_zero.to = Some(0);
            return vec![to_zero, to_one];
        }
        vec![env]
    });
    let results: Vec<_> = outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::Finished(r) => r,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(
        results.iter().all(|r| !matches!(r, Ok(true))),
        "nobody reuses: {results:?}"
    );
    assert!(results[0].is_err() && results[1].is_err(), "{results:?}");
}

/// The payload of `Offer(None)` for the message whose `Offer(Some(..))` payload is `some`:
/// the CBOR of the round-0 message with the option cleared.
fn none_offer_payload(some: &[u8]) -> Vec<u8> {
    let mut value: ciborium::Value = ciborium::from_reader(some).unwrap();
    // Replace the first byte string (the fingerprint) with null.
    fn clear(v: &mut ciborium::Value) -> bool {
        match v {
            ciborium::Value::Bytes(_) => {
                *v = ciborium::Value::Null;
                true
            }
            ciborium::Value::Array(items) => {
                if items.len() == 32 && items.iter().all(|i| matches!(i, ciborium::Value::Integer(_))) {
                    *v = ciborium::Value::Null;
                    return true;
                }
                items.iter_mut().any(clear)
            }
            ciborium::Value::Map(entries) => entries.iter_mut().any(|(_, v)| clear(v)),
            ciborium::Value::Tag(_, inner) => clear(inner),
            _ => false,
        }
    }
    assert!(clear(&mut value), "no fingerprint in {value:?}");
    let mut out = Vec::new();
    ciborium::into_writer(&value, &mut out).unwrap();
    out
}

#[test]
fn material_from_the_public_test_pool_is_recognised() {
    use vsigner_tss::primes::{public_test_prime_sets, PrimePoolFile, PublicTestPrimes, PRIME_BITS};
    let pool = PublicTestPrimes::load().unwrap();
    let sets = public_test_prime_sets().unwrap();
    assert!(sets.iter().all(|s| pool.contains_set(s)));
    // The committed aux-info fixtures were made from the pool: every one is recognised.
    for aux in test_aux_info(3) {
        assert!(aux.uses_public_test_primes(&pool));
    }
    // A set of other numbers is not.
    let other = PrimePoolFile {
        format: "vsigner-prime-pool".into(),
        version: 1,
        bits: PRIME_BITS,
        note: String::new(),
        sets: vec![vec!["c507".into(), "c517".into(), "c527".into(), "c537".into()]],
    };
    assert!(!pool.contains_set(&other.into_sets().unwrap()[0]));
}
