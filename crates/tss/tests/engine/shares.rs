//! Storage formats and secret hygiene of key material.

use vsigner_tss::ecdsa::{AuxInfo, CoreShare, KeyShare, Secp256k1, Secp256r1};
use vsigner_tss::primes::{PrimePool, PrimePoolFile, PrimeSet};
use vsigner_tss::schnorr::{self, Bip340, Ed25519};
use vsigner_tss::share::{peek, Kind, FORMAT_VERSION};

use crate::common::*;

/// The secret scalar `x_i` of an ECDSA core share, read from its stored form.
fn ecdsa_secret_hex(share: &CoreShare<Secp256k1>) -> String {
    let bytes = share.to_bytes().unwrap();
    let dirty: cggmp24::key_share::DirtyIncompleteKeyShare<Secp256k1> =
        ciborium::from_reader(&bytes[8..]).unwrap();
    hex::encode(
        AsRef::<cggmp24::generic_ec::Scalar<Secp256k1>>::as_ref(&dirty.x)
            .to_be_bytes()
            .as_bytes(),
    )
}

#[test]
fn ecdsa_core_share_round_trips_and_hides_its_secret() {
    let shares = ecdsa_keygen::<Secp256k1>(3, 2);
    for share in &shares {
        let bytes = share.to_bytes().unwrap();
        assert_eq!(
            peek(&bytes).unwrap(),
            (
                FORMAT_VERSION,
                Kind::EcdsaCoreShare(vsigner_tss::ecdsa::CurveKind::Secp256k1)
            )
        );
        let back = CoreShare::<Secp256k1>::from_bytes(&bytes).unwrap();
        assert_eq!(back.public_key_bytes(), share.public_key_bytes());
        assert_eq!(back.index(), share.index());
        let secret = ecdsa_secret_hex(share);
        let shown = format!("{share:?} {back:?}");
        assert!(!shown.contains(&secret), "Debug leaks the share");
        assert!(shown.contains("<redacted>"));
        // A share of one curve is not read as another.
        assert!(CoreShare::<Secp256r1>::from_bytes(&bytes).is_err());
    }
}

#[test]
fn tampered_core_share_is_refused() {
    let share = &ecdsa_keygen::<Secp256k1>(3, 2)[0];
    let bytes = share.to_bytes().unwrap();
    let mut refused = 0;
    // Flip bytes across the body: each flip must be refused or (for bytes that do not
    // matter to validation, e.g. CBOR lengths that still parse) at least not panic.
    for k in (8..bytes.len()).step_by(7) {
        let mut b = bytes.to_vec();
        b[k] ^= 0x40;
        if CoreShare::<Secp256k1>::from_bytes(&b).is_err() {
            refused += 1;
        }
    }
    assert!(refused > 0);
}

#[test]
fn aux_info_round_trips_and_must_match_the_share() {
    let aux = test_aux_info(3);
    for (i, a) in aux.iter().enumerate() {
        assert_eq!(usize::from(a.index()), i);
        assert_eq!(a.n(), 3);
        let back = AuxInfo::from_bytes(&a.to_bytes().unwrap()).unwrap();
        assert_eq!(back.index(), a.index());
        assert!(format!("{a:?}").contains("<redacted>"));
    }
    let cores = ecdsa_keygen::<Secp256k1>(3, 2);
    let mut cores = cores.into_iter();
    let c0 = cores.next().unwrap();
    let c1 = cores.next().unwrap();
    // Party 0's core with party 1's aux-info, and a 3-party share with 5-party aux-info.
    assert!(KeyShare::from_parts(c0, aux[1].clone()).is_err());
    assert!(KeyShare::from_parts(c1, test_aux_info(5)[1].clone()).is_err());
}

fn schnorr_round_trip<C: schnorr::SchnorrScheme>() {
    let shares = schnorr_keygen::<C>(3, 2);
    for share in &shares {
        let bytes = share.to_bytes().unwrap();
        let back = schnorr::KeyShare::<C>::from_bytes(&bytes).unwrap();
        assert_eq!(
            back.public_key_bytes().unwrap(),
            share.public_key_bytes().unwrap()
        );
        assert!(format!("{share:?}").contains("<redacted>"));
    }
}

#[test]
fn schnorr_shares_round_trip() {
    schnorr_round_trip::<Ed25519>();
    schnorr_round_trip::<Bip340>();
}

#[test]
fn schnorr_share_debug_hides_the_signing_share() {
    let shares = schnorr_keygen::<Ed25519>(3, 2);
    let bytes = shares[0].to_bytes().unwrap();
    // The signing share as frost serializes it, found in the stored form.
    let v: ciborium::Value = ciborium::from_reader(&bytes[8..]).unwrap();
    let field = |v: &ciborium::Value, name: &str| -> ciborium::Value {
        v.as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_text() == Some(name))
            .unwrap()
            .1
            .clone()
    };
    let secret = match field(&field(&v, "key_package"), "signing_share") {
        ciborium::Value::Bytes(b) => hex::encode(b),
        ciborium::Value::Text(t) => t,
        ciborium::Value::Array(a) => hex::encode(
            a.iter()
                .map(|b| u8::try_from(b.as_integer().unwrap()).unwrap())
                .collect::<Vec<u8>>(),
        ),
        other => panic!("unexpected encoding {other:?}"),
    };
    assert!(secret.len() > 10, "found the signing share: {secret}");
    let shown = format!("{:?} {:#?}", shares[0], shares[0]);
    assert!(!shown.contains(&secret), "Debug leaks the signing share");
    assert!(
        !shown.contains(&secret[..8]),
        "Debug leaks part of the signing share"
    );
}

#[test]
fn schnorr_share_of_another_party_position_is_refused() {
    let shares = schnorr_keygen::<Ed25519>(3, 2);
    let bytes = shares[1].to_bytes().unwrap();
    let mut v: ciborium::Value = ciborium::from_reader(&bytes[8..]).unwrap();
    // Claim to be party 0 while holding party 1's key package.
    if let ciborium::Value::Map(entries) = &mut v {
        for (k, val) in entries.iter_mut() {
            if k.as_text() == Some("index") {
                *val = ciborium::Value::Integer(0.into());
            }
        }
    }
    let mut forged = bytes[..8].to_vec();
    ciborium::into_writer(&v, &mut forged).unwrap();
    let err = schnorr::KeyShare::<Ed25519>::from_bytes(&forged)
        .unwrap_err()
        .to_string();
    assert!(err.contains("identifier does not match"), "{err}");
}

#[test]
fn prime_sets_round_trip_and_pool_hands_each_set_out_once() {
    let sets = test_prime_sets();
    assert!(sets.len() >= 5, "the test pool serves device sets of up to 5");
    let bytes = sets[0].to_bytes().unwrap();
    assert_eq!(PrimeSet::from_bytes(&bytes).unwrap(), sets[0]);
    assert_eq!(format!("{:?}", sets[0]), "PrimeSet(<redacted>)");
    sets[0].validate(&mut rand_core::OsRng).unwrap();

    let pool = PrimePool::with_sets(sets.clone());
    let mut taken = Vec::new();
    while let Some(s) = pool.take() {
        assert!(!taken.contains(&s), "a set was handed out twice");
        taken.push(s);
    }
    assert_eq!(taken.len(), sets.len());
    assert_eq!(pool.progress().sets_ready, 0);

    let file = PrimePoolFile::new(&sets[..2], "note");
    let json = serde_json::to_string(&file).unwrap();
    let back: PrimePoolFile = serde_json::from_str(&json).unwrap();
    assert_eq!(back.into_sets().unwrap(), sets[..2].to_vec());
    let mut wrong = serde_json::from_str::<PrimePoolFile>(&json).unwrap();
    wrong.bits = 1024;
    assert!(wrong.into_sets().is_err());
    // A repeated prime, across sets or within one, is refused.
    let twice = PrimePoolFile::new(&[sets[0].clone(), sets[1].clone(), sets[0].clone()], "");
    assert!(twice
        .into_sets()
        .unwrap_err()
        .to_string()
        .contains("more than once"));
    let mut within = PrimePoolFile::new(&sets[..1], "");
    within.sets[0][3] = within.sets[0][1].clone();
    assert!(within.into_sets().is_err());
}

#[test]
fn a_composite_is_not_accepted_as_a_safe_prime() {
    let sets = test_prime_sets();
    let mut file = PrimePoolFile::new(&sets[..1], "");
    // p·q of two primes is not prime: replace the first prime by a 1536-bit odd composite.
    let mut composite = hex::decode(&file.sets[0][0]).unwrap();
    *composite.last_mut().unwrap() ^= 0x02; // p ± 2: even chance of prime is negligible
    file.sets[0][0] = hex::encode(composite);
    let set = file.into_sets().unwrap().remove(0);
    assert!(set.validate(&mut rand_core::OsRng).is_err());
}

#[test]
fn paillier_secrets_are_wiped_when_aux_info_is_dropped() {
    // Loading aux-info installs GMP's wipe-on-free hooks; dropping it wipes p, q and the moduli.
    let aux = test_aux_info(3);
    let before = vsigner_memory::gmp_wiped_bytes();
    drop(aux);
    let wiped = vsigner_memory::gmp_wiped_bytes() - before;
    // At least p and q (192 bytes each) of each of the three parties.
    assert!(wiped >= 3 * 2 * 192, "only {wiped} bytes wiped");
}
