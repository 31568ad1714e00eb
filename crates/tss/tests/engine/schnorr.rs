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
