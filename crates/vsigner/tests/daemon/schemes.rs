//! The schemes beside secp256k1 through the real daemons: a P-256 vault (keygen with
//! aux-info, a message signed over its SHA-256 with a presignature, a child key, a reshare
//! that raises the threshold), a BIP-340 vault (keygen, a message, a Taproot key-path signature asked through
//! the operator CLI, a reshare) and ed25519 child keys (before and after a reshare). Every
//! signature is verified here with `p256`, `k256` and `ed25519-dalek`; the Taproot output key
//! and the child keys are computed by the test itself (`hd-wallet`).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::harness::*;
use super::{completed, prime_sets, KEYGEN};

fn signature_of(op: &vsigner_signer::coordinator_api::Operation) -> (Vec<u8>, Option<u8>) {
    let result = op.result.as_ref().expect("a result");
    (
        hex::decode(result.signature.as_ref().unwrap()).unwrap(),
        result.recovery_id,
    )
}

fn verify_p256(public_key: &[u8], digest: &[u8; 32], signature: &[u8], recovery_id: u8) {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use p256::ecdsa::{Signature, VerifyingKey};
    let vk = VerifyingKey::from_sec1_bytes(public_key).unwrap();
    let s = Signature::from_slice(signature).unwrap();
    assert!(s.normalize_s().is_none(), "low-s");
    vk.verify_prehash(digest, &s)
        .expect("P-256 signature verifies under the key");
    let rid = ecdsa::RecoveryId::from_byte(recovery_id).unwrap();
    assert_eq!(VerifyingKey::recover_from_prehash(digest, &s, rid).unwrap(), vk);
}

fn verify_bip340(x_only: &[u8], message: &[u8], signature: &[u8]) {
    let vk = k256::schnorr::VerifyingKey::from_bytes(x_only).unwrap();
    vk.verify_raw(message, &k256::schnorr::Signature::try_from(signature).unwrap())
        .expect("BIP-340 signature verifies under the key");
}

/// BIP-341: `x(P + int(hash_TapTweak(x(P)))·G)` for the x-only key `P`, no script tree.
fn taproot_output_key(x_only: &[u8]) -> Vec<u8> {
    use k256::elliptic_curve::ff::PrimeField;
    use k256::elliptic_curve::point::AffineCoordinates;
    let p = k256::schnorr::VerifyingKey::from_bytes(x_only).unwrap();
    let tag = Sha256::digest(b"TapTweak");
    let t = Sha256::new()
        .chain_update(tag)
        .chain_update(tag)
        .chain_update(x_only)
        .finalize();
    let t = k256::Scalar::from_repr(t).unwrap();
    let q = k256::ProjectivePoint::from(*p.as_affine()) + k256::ProjectivePoint::GENERATOR * t;
    q.to_affine().x().to_vec()
}

/// The child at `path` of a key with chain code `cc`, by the derivation `H` (SLIP-10 on
/// P-256, Edwards on ed25519).
fn child<E: generic_ec::Curve, H: hd_wallet::HdWallet<E>>(
    public_key: &[u8],
    cc: &[u8],
    path: &[u32],
) -> Vec<u8> {
    let parent = hd_wallet::ExtendedPublicKey::<E> {
        public_key: generic_ec::Point::from_bytes(public_key).unwrap(),
        chain_code: cc.try_into().unwrap(),
    };
    let indexes = path
        .iter()
        .map(|i| hd_wallet::NonHardenedIndex::try_from(*i).unwrap());
    H::derive_child_public_key_with_path(&parent, indexes)
        .public_key
        .to_bytes(true)
        .to_vec()
}

fn verify_ed25519(public_key: &[u8], message: &[u8], signature: &[u8]) {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(public_key.try_into().unwrap()).unwrap();
    vk.verify_strict(message, &ed25519_dalek::Signature::from_slice(signature).unwrap())
        .expect("Ed25519 signature verifies under the key");
}

async fn vault(operator: &Operator, id: &str) -> Value {
    operator
        .vault(
            id,
            "curve publicKey chainCode keyGeneration taprootOutputKey taprootAddress(network: \"regtest\")",
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p256_bip340_and_ed25519_child_keys_keygen_sign_derive_taproot_and_reshare() {
    let root = tempfile::tempdir().unwrap();
    let (_broker, broker_url) = start_broker();
    let (_coordinator, coordinator_url, org) = start_coordinator(root.path(), &broker_url, &[]);
    let webhook = start_webhook();
    // Each device takes part in two ECDSA aux-info runs (the P-256 keygen and its reshare).
    let mut signers = Signer::one_device_each(
        root.path(),
        &org,
        &coordinator_url,
        &broker_url,
        &webhook,
        &["a", "b", "c"],
        &[(0, 2), (2, 2), (4, 2)],
    );
    // Device a, signer 0 of the vaults, keeps one presignature ready per ECDSA vault.
    signers[0].tweak(|cfg| cfg["PresignaturePoolTarget"] = json!(1));
    for s in &mut signers {
        s.start();
    }
    let operator = Operator::new(&coordinator_url, &org);
    let abc = operator.wait_devices(&["a", "b", "c"]).await;
    let cli = Cli {
        url: coordinator_url.clone(),
        id: org.operator.0.clone(),
        secret: org.operator.1.clone(),
    };

    // Keygen: the three vaults together, the P-256 one through the CLI's --curve.
    let bip_keygen = operator.create_vault("taproot", "bip340", 2, &abc).await;
    let ed_keygen = operator.create_vault("solana", "ed25519", 2, &abc).await;
    let created = cli
        .run(&[
            "vault",
            "create",
            "--name",
            "passkeys",
            "--curve",
            "secp256r1",
            "--threshold",
            "2",
            "--signers",
            &abc.join(","),
            "--wait",
        ])
        .await;
    assert_eq!(created["state"], "Completed", "{created}");
    let p256_vault = created["vaultId"].as_str().unwrap().to_owned();
    let bip_op = operator.wait_final(&bip_keygen, KEYGEN).await;
    completed(&bip_op);
    let bip_vault = bip_op.vault_id.clone();
    let ed_op = operator.wait_final(&ed_keygen, KEYGEN).await;
    completed(&ed_op);
    let ed_vault = ed_op.vault_id.clone();
    let e = vault(&operator, &ed_vault).await;
    let ed_key = hex::decode(e["publicKey"].as_str().unwrap()).unwrap();
    let ed_cc = hex::decode(
        e["chainCode"]
            .as_str()
            .expect("an ed25519 vault has a chain code"),
    )
    .unwrap();
    let ed_child = child::<generic_ec::curves::Ed25519, hd_wallet::Edwards>(&ed_key, &ed_cc, &[44, 501]);

    // ed25519: a message at a child key.
    let message = b"pay from the child address";
    let op = operator
        .signed(
            &ed_vault,
            json!({"message": hex::encode(message), "derivationPath": "m/44/501"}),
        )
        .await;
    verify_ed25519(&ed_child, message, &signature_of(&op).0);

    let p = vault(&operator, &p256_vault).await;
    let p256_key = hex::decode(p["publicKey"].as_str().unwrap()).unwrap();
    let cc = hex::decode(p["chainCode"].as_str().unwrap()).unwrap();
    assert_eq!((p["curve"].as_str(), p256_key.len()), (Some("secp256r1"), 33));
    let b = vault(&operator, &bip_vault).await;
    let bip_key = hex::decode(b["publicKey"].as_str().unwrap()).unwrap();
    assert_eq!(bip_key.len(), 32);
    let output_key = taproot_output_key(&bip_key);
    assert_eq!(b["taprootOutputKey"], json!(hex::encode(&output_key)));
    assert!(b["taprootAddress"].as_str().unwrap().starts_with("bcrt1p"), "{b}");
    assert!(b["chainCode"].is_null());

    // P-256: a message (signed over its SHA-256, in one round with the presignature the
    // keeper stocked) and a digest at a child key (the full protocol).
    operator.wait_presignature(&p256_vault, KEYGEN).await;
    // With device c stopped, the committee is a and b: the presignature's.
    signers[2].proc().kill();
    let message = b"open the door";
    let op = operator
        .signed(&p256_vault, json!({"message": hex::encode(message)}))
        .await;
    signers[2].start();
    assert!(
        op.sign.as_ref().unwrap().presignature_id.is_some(),
        "the P-256 message used the presignature"
    );
    let (sig, rid) = signature_of(&op);
    verify_p256(&p256_key, &Sha256::digest(message).into(), &sig, rid.unwrap());
    let digest = [0x5au8; 32];
    let op = operator
        .signed(
            &p256_vault,
            json!({"digest": hex::encode(digest), "derivationPath": "m/1/2"}),
        )
        .await;
    let (sig, rid) = signature_of(&op);
    let p256_child = child::<generic_ec::curves::Secp256r1, hd_wallet::Slip10>(&p256_key, &cc, &[1, 2]);
    verify_p256(&p256_child, &digest, &sig, rid.unwrap());

    // BIP-340: a message for the vault key; a sighash for the Taproot output key, asked
    // through the CLI's --taproot.
    let message = b"a message of any length, signed as it is";
    let op = operator
        .signed(&bip_vault, json!({"message": hex::encode(message)}))
        .await;
    verify_bip340(&bip_key, message, &signature_of(&op).0);
    let sighash = [0x77u8; 32];
    let signed = cli
        .run(&[
            "vault",
            "sign",
            &bip_vault,
            "--digest",
            &hex::encode(sighash),
            "--taproot",
            "--wait",
        ])
        .await;
    assert_eq!(signed["state"], "Completed", "{signed}");
    let sig = hex::decode(signed["result"]["signature"].as_str().unwrap()).unwrap();
    verify_bip340(&output_key, &sighash, &sig);
    assert!(
        k256::schnorr::VerifyingKey::from_bytes(&bip_key)
            .unwrap()
            .verify_raw(
                &sighash,
                &k256::schnorr::Signature::try_from(sig.as_slice()).unwrap()
            )
            .is_err(),
        "a Taproot signature is for the output key, not the vault key"
    );

    // Reshare both to 3-of-3 (new shares of the same keys; P-256 takes new aux-info).
    let p256_reshare = operator.request_reshare(&p256_vault, 3, &abc).await;
    let bip_reshare = operator.request_reshare(&bip_vault, 3, &abc).await;
    let ed_reshare = operator.request_reshare(&ed_vault, 3, &abc).await;
    completed(&operator.wait_final(&p256_reshare, KEYGEN).await);
    completed(&operator.wait_final(&bip_reshare, KEYGEN).await);
    completed(&operator.wait_final(&ed_reshare, KEYGEN).await);
    for s in &signers {
        assert_eq!(
            prime_sets(s),
            0,
            "{}: the P-256 reshare took new aux-info",
            s.name
        );
    }
    let p = vault(&operator, &p256_vault).await;
    let b = vault(&operator, &bip_vault).await;
    assert_eq!(p["publicKey"], json!(hex::encode(&p256_key)));
    assert_eq!(b["publicKey"], json!(hex::encode(&bip_key)));
    assert_eq!(
        (p["keyGeneration"].as_u64(), b["keyGeneration"].as_u64()),
        (Some(1), Some(1))
    );

    // All three sign with the new shares.
    let op = operator
        .signed(&p256_vault, json!({"digest": hex::encode(digest)}))
        .await;
    assert_eq!(op.committee.len(), 3);
    let (sig, rid) = signature_of(&op);
    verify_p256(&p256_key, &digest, &sig, rid.unwrap());
    let op = operator
        .signed(
            &bip_vault,
            json!({"digest": hex::encode(sighash), "taproot": true}),
        )
        .await;
    assert_eq!(op.committee.len(), 3);
    verify_bip340(&output_key, &sighash, &signature_of(&op).0);
    // The reshared ed25519 shares keep the chain code: the same child key.
    let op = operator
        .signed(
            &ed_vault,
            json!({"message": hex::encode(message), "derivationPath": "m/44/501"}),
        )
        .await;
    assert_eq!(op.committee.len(), 3);
    verify_ed25519(&ed_child, message, &signature_of(&op).0);
}
