//! The schemes beside secp256k1 and ed25519 through the real GraphQL server, on SQLite and
//! PostgreSQL: a P-256 vault (SEC1 key, chain code, SHA-256 prehash of messages, child keys)
//! and a BIP-340 vault (x-only key, Taproot output key and addresses, signatures for the
//! output key). The test plays the devices with keys of its own; every forged or misdirected
//! signature is refused and names the device.
// Tests may unwrap; clippy.toml's allowance covers only #[test] fns, not scenario helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

per_backend!(
    p256_keygen_sign_derive_and_forged,
    bip340_keygen_taproot_and_forged,
);

/// Requests a signature, has two devices approve; returns the operation id.
async fn ready_signature(operator: &Api, signer: &Api, input: Value, devices: &[String]) -> (String, Value) {
    let s = operator.ok(REQUEST_SIG, json!({ "i": input })).await;
    let op = s["requestSignature"]["id"].as_str().unwrap().to_owned();
    vote(signer, &op, &devices[0], "approve").await;
    vote(signer, &op, &devices[1], "approve").await;
    (op, s["requestSignature"].clone())
}

async fn refused(signer: &Api, operator: &Api, op: &str, device: &str, signature: &str, rid: Option<u8>) {
    assert_eq!(
        signer
            .err(
                SUBMIT_SIG,
                json!({"o": op, "d": device, "s": signature, "r": rid})
            )
            .await,
        "SIGNATURE_INVALID"
    );
    let failed = operator.ok(&q_op(), json!({"id": op})).await["operation"].clone();
    assert_eq!(failed["state"], "Failed");
    assert_eq!(failed["failure"]["culpritDeviceIds"], json!([device]));
}

fn p256_sign(sk: &p256::ecdsa::SigningKey, digest: &[u8; 32]) -> (String, u8) {
    let (sig, rid) = sk.sign_prehash_recoverable(digest).unwrap();
    // vsigner's ECDSA signatures are low-s; the recovery id flips with s.
    let (sig, rid) = match sig.normalize_s() {
        Some(low) => (low, rid.to_byte() ^ 1),
        None => (sig, rid.to_byte()),
    };
    (hex::encode(sig.to_bytes()), rid)
}

async fn p256_keygen_sign_derive_and_forged(db: Db) {
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    let sk = p256::ecdsa::SigningKey::from_bytes(&rand::random::<[u8; 32]>().into()).unwrap();
    let pk = hex::encode(sk.verifying_key().to_encoded_point(true).as_bytes());
    let cc: [u8; 32] = rand::random();
    let (vault_id, devices) =
        active_vault(&operator, &signer, "secp256r1", 2, 3, &pk, Some(&hex::encode(cc))).await;
    let v = operator
        .ok(
            "query($id: ID!) { vault(id: $id) { curve publicKey chainCode ethereumAddress taprootOutputKey } }",
            json!({"id": vault_id}),
        )
        .await["vault"]
        .clone();
    assert_eq!(v["curve"], "secp256r1");
    assert_eq!(v["publicKey"], json!(pk));
    assert!(
        v["ethereumAddress"].is_null() && v["taprootOutputKey"].is_null(),
        "{v}"
    );

    // A message is signed over its SHA-256.
    let msg = b"a P-256 message";
    let (op, req) = ready_signature(
        &operator,
        &signer,
        json!({"vaultId": vault_id, "message": hex::encode(msg)}),
        &devices,
    )
    .await;
    let digest: [u8; 32] = Sha256::digest(msg).into();
    assert_eq!(req["sign"]["signingDigest"], json!(hex::encode(digest)));
    let (sig, rid) = p256_sign(&sk, &digest);
    let done = signer
        .ok(SUBMIT_SIG, json!({"o": op, "d": devices[0], "s": sig, "r": rid}))
        .await;
    assert_eq!(done["submitSignature"]["state"], "Completed", "{done}");

    // A child key at m/7/9: the signature must be by the child (SLIP-10 over P-256).
    let parent =
        hd_wallet::ExtendedKeyPair::<generic_ec::curves::Secp256r1>::from(hd_wallet::ExtendedSecretKey {
            secret_key: generic_ec::SecretScalar::from_be_bytes(&sk.to_bytes()).unwrap(),
            chain_code: cc,
        });
    let child =
        <hd_wallet::Slip10 as hd_wallet::HdWallet<_>>::derive_child_key_pair_with_path(&parent, [7u32, 9]);
    let child_sk = p256::ecdsa::SigningKey::from_bytes(
        child
            .secret_key()
            .secret_key
            .as_ref()
            .to_be_bytes()
            .as_bytes()
            .into(),
    )
    .unwrap();
    let digest = [3u8; 32];
    let input = json!({"vaultId": vault_id, "digest": hex::encode(digest), "derivationPath": "m/7/9"});
    let (op, _) = ready_signature(&operator, &signer, input.clone(), &devices).await;
    let (sig, rid) = p256_sign(&child_sk, &digest);
    let done = signer
        .ok(SUBMIT_SIG, json!({"o": op, "d": devices[1], "s": sig, "r": rid}))
        .await;
    assert_eq!(done["submitSignature"]["state"], "Completed", "{done}");
    // The root key's signature for a child-key request is refused.
    let (op, _) = ready_signature(&operator, &signer, input, &devices).await;
    let (sig, rid) = p256_sign(&sk, &digest);
    refused(&signer, &operator, &op, &devices[1], &sig, Some(rid)).await;
    // A forged signature (another key) is refused.
    let (op, _) = ready_signature(
        &operator,
        &signer,
        json!({"vaultId": vault_id, "digest": hex::encode(digest)}),
        &devices,
    )
    .await;
    let forger = p256::ecdsa::SigningKey::from_bytes(&rand::random::<[u8; 32]>().into()).unwrap();
    let (sig, rid) = p256_sign(&forger, &digest);
    refused(&signer, &operator, &op, &devices[0], &sig, Some(rid)).await;
    // No Ethereum transactions, no Taproot.
    for extra in [
        json!({"ethTx": "02c0"}),
        json!({"digest": hex::encode(digest), "taproot": true}),
    ] {
        let mut input = json!({"vaultId": vault_id});
        input
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        assert_eq!(
            operator.err(REQUEST_SIG, json!({ "i": input })).await,
            "INVALID_PAYLOAD"
        );
    }
    c.running.shutdown().await.unwrap();
}

/// BIP-341's tweak of the x-only key `p` with no script tree (the test's own computation).
fn tap_tweak(p: &[u8]) -> k256::Scalar {
    use k256::elliptic_curve::ff::PrimeField;
    let tag = Sha256::digest(b"TapTweak");
    let t = Sha256::new()
        .chain_update(tag)
        .chain_update(tag)
        .chain_update(p)
        .finalize();
    k256::Scalar::from_repr(t).unwrap()
}

async fn bip340_keygen_taproot_and_forged(db: Db) {
    use k256::elliptic_curve::point::AffineCoordinates;
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    let sk = k256::schnorr::SigningKey::from_bytes(&rand::random::<[u8; 32]>()).unwrap();
    let pk = sk.verifying_key().to_bytes().to_vec();
    // A BIP-340 vault has no chain code.
    let (vault_id, devices) = active_vault(&operator, &signer, "bip340", 2, 3, &hex::encode(&pk), None).await;

    // The output key: the test tweaks the secret (the even-y one, as BIP-340 does).
    let d = *sk.as_nonzero_scalar().as_ref();
    let t = tap_tweak(&pk);
    let tweaked = k256::schnorr::SigningKey::from_bytes(&(d + t).to_bytes()).unwrap();
    let q = (k256::ProjectivePoint::GENERATOR * (d + t)).to_affine().x();
    assert_eq!(tweaked.verifying_key().to_bytes(), q);
    let v = operator
        .ok(
            r#"query($id: ID!) { vault(id: $id) { publicKey chainCode taprootOutputKey
                main: taprootAddress regtest: taprootAddress(network: "regtest") } }"#,
            json!({"id": vault_id}),
        )
        .await["vault"]
        .clone();
    assert_eq!(v["publicKey"], json!(hex::encode(&pk)));
    assert!(v["chainCode"].is_null());
    assert_eq!(v["taprootOutputKey"], json!(hex::encode(q)));
    assert!(v["main"].as_str().unwrap().starts_with("bc1p"), "{v}");
    assert!(v["regtest"].as_str().unwrap().starts_with("bcrt1p"), "{v}");

    // A message for the vault key: signed as it is, no digest.
    let msg = b"a BIP-340 message of any length";
    let (op, req) = ready_signature(
        &operator,
        &signer,
        json!({"vaultId": vault_id, "message": hex::encode(msg)}),
        &devices,
    )
    .await;
    assert!(req["sign"]["signingDigest"].is_null());
    let sig = hex::encode(sk.sign_raw(msg, &rand::random()).unwrap().to_bytes());
    let done = signer
        .ok(SUBMIT_SIG, json!({"o": op, "d": devices[0], "s": sig}))
        .await;
    assert_eq!(done["submitSignature"]["state"], "Completed", "{done}");

    // A sighash for the Taproot output key: the vault key's signature is refused, the
    // output key's accepted.
    let sighash: [u8; 32] = rand::random();
    let input = json!({"vaultId": vault_id, "digest": hex::encode(sighash), "taproot": true});
    let (op, _) = ready_signature(&operator, &signer, input.clone(), &devices).await;
    let untweaked = hex::encode(sk.sign_raw(&sighash, &rand::random()).unwrap().to_bytes());
    refused(&signer, &operator, &op, &devices[1], &untweaked, None).await;
    let (op, _) = ready_signature(&operator, &signer, input, &devices).await;
    let shown = operator
        .ok(
            "query($id: ID!) { operation(id: $id) { sign { taproot { merkleRoot } } } }",
            json!({"id": op}),
        )
        .await;
    assert_eq!(
        shown["operation"]["sign"]["taproot"],
        json!({"merkleRoot": null}),
        "{shown}"
    );
    let sig = hex::encode(tweaked.sign_raw(&sighash, &rand::random()).unwrap().to_bytes());
    let done = signer
        .ok(SUBMIT_SIG, json!({"o": op, "d": devices[1], "s": sig}))
        .await;
    assert_eq!(done["submitSignature"]["state"], "Completed", "{done}");
    // With a script tree the output key differs: the key-path signature is refused.
    let input = json!({"vaultId": vault_id, "digest": hex::encode(sighash),
                       "taprootMerkleRoot": hex::encode([9u8; 32])});
    let (op, _) = ready_signature(&operator, &signer, input, &devices).await;
    refused(&signer, &operator, &op, &devices[0], &sig, None).await;
    // A forged signature (another key) is refused.
    let (op, _) = ready_signature(
        &operator,
        &signer,
        json!({"vaultId": vault_id, "message": hex::encode(msg)}),
        &devices,
    )
    .await;
    let forger = k256::schnorr::SigningKey::from_bytes(&rand::random::<[u8; 32]>()).unwrap();
    let forged = hex::encode(forger.sign_raw(msg, &rand::random()).unwrap().to_bytes());
    refused(&signer, &operator, &op, &devices[0], &forged, None).await;
    // No child keys, no Ethereum transactions; a bad Merkle root is refused.
    for (extra, code) in [
        (json!({"derivationPath": "m/1"}), "INVALID_DERIVATION_PATH"),
        (json!({"ethTx": "02c0"}), "INVALID_PAYLOAD"),
        (json!({"taprootMerkleRoot": "00"}), "INVALID_PAYLOAD"),
    ] {
        let mut input = json!({"vaultId": vault_id, "digest": hex::encode(sighash)});
        if extra.get("ethTx").is_some() {
            input = json!({"vaultId": vault_id});
        }
        input
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        assert_eq!(
            operator.err(REQUEST_SIG, json!({ "i": input })).await,
            code,
            "{input}"
        );
    }
    c.running.shutdown().await.unwrap();
}
