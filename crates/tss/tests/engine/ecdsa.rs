//! Threshold ECDSA on secp256k1 and P-256: keygen, full signing, HD signing, presignatures.
//! Every signature is verified by `k256` / `p256` (low-s enforced) and must recover to the
//! right key.

use hmac::{Hmac, Mac};
use k256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::OsRng;
use sha2::Sha512;
use vsigner_tss::ecdsa::{self, EcdsaCurve, HashAlgorithm, Message, Preimage, Secp256k1, Secp256r1};
use vsigner_tss::hd::DerivationPath;
use vsigner_tss::simulation::local;
use vsigner_tss::ProtocolTag;

use crate::common::*;

/// Verifies with an implementation outside the project, per curve.
trait IndependentVerifier: EcdsaCurve {
    fn verify(public_key: &[u8], digest: &[u8; 32], sig: &ecdsa::Signature);
}

impl IndependentVerifier for Secp256k1 {
    fn verify(public_key: &[u8], digest: &[u8; 32], sig: &ecdsa::Signature) {
        use k256::ecdsa::signature::hazmat::PrehashVerifier;
        use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
        let vk = VerifyingKey::from_sec1_bytes(public_key).unwrap();
        let s = Signature::from_scalars(sig.r, sig.s).unwrap();
        assert!(s.normalize_s().is_none(), "signature must be low-s");
        vk.verify_prehash(digest, &s).expect("k256 rejects the signature");
        let recovered =
            VerifyingKey::recover_from_prehash(digest, &s, RecoveryId::from_byte(sig.recovery_id).unwrap())
                .unwrap();
        assert_eq!(recovered, vk, "recovery id does not recover the key");
    }
}

impl IndependentVerifier for Secp256r1 {
    fn verify(public_key: &[u8], digest: &[u8; 32], sig: &ecdsa::Signature) {
        use ecdsa_core::RecoveryId;
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        use p256::ecdsa::{Signature, VerifyingKey};
        let vk = VerifyingKey::from_sec1_bytes(public_key).unwrap();
        let s = Signature::from_scalars(sig.r, sig.s).unwrap();
        assert!(s.normalize_s().is_none(), "signature must be low-s");
        vk.verify_prehash(digest, &s).expect("p256 rejects the signature");
        let recovered =
            VerifyingKey::recover_from_prehash(digest, &s, RecoveryId::from_byte(sig.recovery_id).unwrap())
                .unwrap();
        assert_eq!(recovered, vk, "recovery id does not recover the key");
    }
}

fn message(text: &str) -> Preimage {
    Preimage {
        hash: HashAlgorithm::Sha256,
        data: text.as_bytes().to_vec(),
    }
}

/// Committees to try: the first `t` parties, and the last `t` in reverse order.
fn committees(n: u16, t: u16) -> Vec<Vec<u16>> {
    vec![(0..t).collect(), (n - t..n).rev().collect()]
}

fn full_signing<E>(n: u16, t: u16)
where
    E: IndependentVerifier,
    cggmp24::generic_ec::NonZero<cggmp24::generic_ec::Point<E>>:
        cggmp24::generic_ec::coords::AlwaysHasAffineX<E>,
    cggmp24::hd_wallet::Slip10: cggmp24::hd_wallet::HdWallet<E>,
{
    let shares = ecdsa_shares::<E>(n, t);
    let pk = all_equal(&shares.iter().map(|s| s.public_key_bytes()).collect::<Vec<_>>());
    assert_eq!(shares[0].threshold(), t);
    for signers in committees(n, t) {
        // A raw 32-byte digest (full protocol only) and a message the signers hash.
        let digest = [0x42u8; 32];
        let sigs = ecdsa_sign(&shares, &signers, &Message::Digest(digest), None);
        E::verify(&pk, &digest, &all_equal(&sigs));

        let m = Message::Preimage(Preimage {
            hash: HashAlgorithm::Keccak256,
            data: b"eth payload".to_vec(),
        });
        let sigs = ecdsa_sign(&shares, &signers, &m, None);
        E::verify(&pk, &m.digest(), &all_equal(&sigs));
    }
}

fn hd_signing<E>(n: u16, t: u16)
where
    E: IndependentVerifier,
    cggmp24::generic_ec::NonZero<cggmp24::generic_ec::Point<E>>:
        cggmp24::generic_ec::coords::AlwaysHasAffineX<E>,
    cggmp24::hd_wallet::Slip10: cggmp24::hd_wallet::HdWallet<E>,
{
    let shares = ecdsa_shares::<E>(n, t);
    let path: DerivationPath = "m/0/7/1".parse().unwrap();
    let child = shares[0]
        .derive_public_key(&path)
        .unwrap()
        .to_bytes(true)
        .as_bytes()
        .to_vec();
    assert_ne!(child, shares[0].public_key_bytes());
    let m = Message::Preimage(message("child key payment"));
    let signers: Vec<u16> = (0..t).collect();
    let sig = all_equal(&ecdsa_sign(&shares, &signers, &m, Some(&path)));
    E::verify(&child, &m.digest(), &sig);
}

fn presign_and_online<E>(n: u16, t: u16)
where
    E: IndependentVerifier,
    cggmp24::generic_ec::NonZero<cggmp24::generic_ec::Point<E>>:
        cggmp24::generic_ec::coords::AlwaysHasAffineX<E>,
{
    let shares = ecdsa_shares::<E>(n, t);
    let pk = shares[0].public_key_bytes();
    let signers: Vec<u16> = (n - t..n).collect();
    let presigs = local::ecdsa_presign(
        eid(ProtocolTag::EcdsaPresign, "presign", t.into()),
        &shares,
        &signers,
        || OsRng,
    )
    .unwrap();
    // Every member holds the same public data: one fingerprint; another run, another.
    let fingerprints: Vec<[u8; 32]> = presigs.iter().map(|p| p.public().fingerprint()).collect();
    all_equal(&fingerprints);
    let other = local::ecdsa_presign(
        eid(ProtocolTag::EcdsaPresign, "presign-2", t.into()),
        &shares,
        &signers,
        || OsRng,
    )
    .unwrap();
    assert_ne!(other[0].public().fingerprint(), fingerprints[0]);
    // Online round as a protocol: one broadcast of partial signatures.
    let m = message("pay 1 BTC");
    let sigs =
        local::ecdsa_sign_with_presignatures(eid(ProtocolTag::EcdsaSign, "online", t.into()), presigs, &m)
            .unwrap();
    E::verify(&pk, &m.digest(), &all_equal(&sigs));
}

macro_rules! ecdsa_tests {
    ($($name:ident: $curve:ty, n = $n:expr, t = $t:expr;)*) => {$(
        mod $name {
            use super::*;
            #[test]
            fn full_signing_verifies_independently() { full_signing::<$curve>($n, $t) }
            #[test]
            fn hd_child_signature_verifies_under_child_key() { hd_signing::<$curve>($n, $t) }
            #[test]
            fn presignature_then_online_round_verifies() { presign_and_online::<$curve>($n, $t) }
        }
    )*};
}

ecdsa_tests! {
    secp256k1_t2_n3: Secp256k1, n = 3, t = 2;
    secp256k1_t3_n5: Secp256k1, n = 5, t = 3;
    p256_t2_n3: Secp256r1, n = 3, t = 2;
    p256_t3_n5: Secp256r1, n = 5, t = 3;
}

/// BIP-32 `CKDpub` written out here from the spec, independent of `hd-wallet`.
fn bip32_child(parent: &k256::PublicKey, chain_code: [u8; 32], index: u32) -> (k256::PublicKey, [u8; 32]) {
    let mut mac = Hmac::<Sha512>::new_from_slice(&chain_code).unwrap();
    mac.update(parent.to_encoded_point(true).as_bytes());
    mac.update(&index.to_be_bytes());
    let i = mac.finalize().into_bytes();
    let tweak = k256::NonZeroScalar::try_from(&i[..32]).unwrap();
    let child = k256::ProjectivePoint::GENERATOR * *tweak + parent.to_projective();
    (
        k256::PublicKey::from_affine(child.to_affine()).unwrap(),
        i[32..].try_into().unwrap(),
    )
}

#[test]
fn hd_child_keys_match_an_independent_bip32_implementation() {
    let shares = ecdsa_keygen::<Secp256k1>(3, 2);
    let path = [3u32, 0, 12];
    let mut key = k256::PublicKey::from_sec1_bytes(&shares[0].public_key_bytes()).unwrap();
    let mut chain = shares[0].chain_code().expect("HD is enabled at keygen");
    for index in path {
        (key, chain) = bip32_child(&key, chain, index);
    }
    let ours = shares[0]
        .derive_public_key(&DerivationPath::new(path.to_vec()).unwrap())
        .unwrap();
    assert_eq!(
        ours.to_bytes(true).as_bytes(),
        key.to_encoded_point(true).as_bytes()
    );
}

#[test]
fn ethereum_address_matches_independent_derivation() {
    use sha3::{Digest, Keccak256};
    let shares = ecdsa_keygen::<Secp256k1>(3, 2);
    let address = vsigner_tss::hd::ethereum_address_from_sec1(&shares[0].public_key_bytes()).unwrap();
    let pk = k256::PublicKey::from_sec1_bytes(&shares[0].public_key_bytes()).unwrap();
    let hash = Keccak256::digest(&pk.to_encoded_point(false).as_bytes()[1..]);
    assert_eq!(address.to_lowercase(), format!("0x{}", hex::encode(&hash[12..])));
}

#[test]
fn keygen_refuses_bad_thresholds_up_front() {
    for (n, t) in [(3u16, 0u16), (3, 1), (3, 4)] {
        let eid = eid(ProtocolTag::EcdsaKeygen, "bad", n.into());
        let results = round_based::sim::run(n, |i, party| async move {
            ecdsa::keygen::<Secp256k1, _, _>(party, eid, i, n, t, &mut OsRng).await
        })
        .unwrap()
        .into_vec();
        for r in results {
            let err = r.unwrap_err();
            assert!(matches!(err, vsigner_tss::Error::InvalidArguments(_)), "{err}");
        }
    }
}

#[test]
fn signing_refuses_a_wrong_committee() {
    let shares = ecdsa_shares::<Secp256k1>(3, 2);
    let eid = eid(ProtocolTag::EcdsaSign, "bad", 2);
    let m = Message::Digest([1; 32]);
    // Three signers for a 2-of-3 key, and a committee that names the wrong share.
    for (signers, j, share) in [(vec![0u16, 1, 2], 0u16, 0usize), (vec![1, 2], 0, 0)] {
        let result = futures::executor::block_on(async {
            ecdsa::sign(
                idle_party(),
                eid,
                j,
                &signers,
                &shares[share],
                &m,
                None,
                &mut OsRng,
            )
            .await
        });
        assert!(
            matches!(result, Err(vsigner_tss::Error::InvalidArguments(_))),
            "{result:?}"
        );
    }
}
