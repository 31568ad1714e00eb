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
