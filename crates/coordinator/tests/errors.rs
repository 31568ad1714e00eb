//! Bad input and authorisation are refused with stable codes, on SQLite and PostgreSQL.
// Tests may unwrap; clippy.toml's allowance covers only #[test] fns, not scenario helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;

per_backend!(bad_input_codes, authorisation_codes, identity_keys);

async fn bad_input_codes(db: Db) {
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    let devices = [
        register_device(&signer, "a").await,
        register_device(&signer, "b").await,
    ];
    let q = "mutation($i: CreateVaultInput!) { createVault(input: $i) { id } }";
    let signers: Vec<_> = devices.iter().map(|d| json!({"deviceId": d})).collect();
    let vault = |curve: &str, t: i64, s: serde_json::Value| json!({"i": {"name": "v", "curve": curve, "threshold": t, "signers": s}});
    assert_eq!(
        operator.err(q, vault("secp256k1", 0, json!(signers))).await,
        "INVALID_THRESHOLD"
    );
    assert_eq!(
        operator.err(q, vault("secp256k1", 3, json!(signers))).await,
        "INVALID_THRESHOLD"
    );
    assert_eq!(
        operator.err(q, vault("secp256k1", 1, json!([]))).await,
        "INVALID_THRESHOLD"
    );
    assert_eq!(
        operator.err(q, vault("p256", 1, json!(signers))).await,
        "UNKNOWN_CURVE"
    );
    // A weight is a number of shares: at least 1, at most 255 shares in all.
    for weights in [[0, 1], [200, 100]] {
        let heavy = json!([{"deviceId": devices[0], "weight": weights[0]}, {"deviceId": devices[1], "weight": weights[1]}]);
        assert_eq!(
            operator.err(q, vault("secp256k1", 1, heavy)).await,
            "UNSUPPORTED_WEIGHT"
        );
    }
    let dup = json!([{"deviceId": devices[0]}, {"deviceId": devices[0]}]);
    assert_eq!(operator.err(q, vault("secp256k1", 1, dup)).await, "INVALID_INPUT");
    assert_eq!(
        operator
            .err(q, vault("secp256k1", 1, json!([{"deviceId": "dev_nope"}])))
            .await,
        "NOT_FOUND"
    );

    // A device of another organisation is unknown here.
    let other = init_org(&db, "other").await;
    let (other_op, other_signer) = c.org(&other).await;
    let foreign = register_device(&other_signer, "foreign").await;
    let mixed = json!([{"deviceId": devices[0]}, {"deviceId": foreign}]);
    assert_eq!(operator.err(q, vault("secp256k1", 1, mixed)).await, "NOT_FOUND");

    // Identity keys are validated.
    const REG: &str = "mutation($i: RegisterDeviceInput!) { registerDevice(input: $i) { id } }";
    let good_sk = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[1u8; 32])
            .verifying_key()
            .to_bytes(),
    );
    for (sk, ek) in [
        ("00".repeat(31), hex::encode([9u8; 32])),
        ("zz".repeat(32), hex::encode([9u8; 32])),
        (good_sk.clone(), "00".repeat(32)),
        (good_sk.clone(), "11".repeat(33)),
    ] {
        let code = signer
            .err(
                REG,
                json!({"i": {"name": "x", "identitySigningKey": sk, "identityEncryptionKey": ek}}),
            )
            .await;
        assert_eq!(code, "INVALID_INPUT");
    }
    let code = signer
        .err(REG, json!({"i": {"name": "x", "kind": "robot", "identitySigningKey": good_sk, "identityEncryptionKey": hex::encode([9u8; 32])}}))
        .await;
    assert_eq!(code, "INVALID_INPUT");

    // Sign payloads.
    let key = EcKey::random();
    let (vault_id, vdev) = active_vault(
        &operator,
        &signer,
        "secp256k1",
        1,
        2,
        &key.public_hex(),
        Some(&hex::encode(key.chain_code)),
    )
    .await;
    let sig = |i: serde_json::Value| json!({"i": i});
    assert_eq!(
        operator
            .err(
                REQUEST_SIG,
                sig(json!({"vaultId": vault_id, "digest": "00".repeat(31)}))
            )
            .await,
        "INVALID_DIGEST"
    );
    assert_eq!(
        operator
            .err(
                REQUEST_SIG,
                sig(json!({"vaultId": vault_id, "digest": "00".repeat(33)}))
            )
            .await,
        "INVALID_DIGEST"
    );
    assert_eq!(
        operator.err(REQUEST_SIG, sig(json!({"vaultId": vault_id}))).await,
        "INVALID_PAYLOAD"
    );
    assert_eq!(
        operator
            .err(
                REQUEST_SIG,
                sig(json!({"vaultId": vault_id, "digest": "00".repeat(32), "message": "00"}))
            )
            .await,
        "INVALID_PAYLOAD"
    );
    assert_eq!(
        operator
            .err(REQUEST_SIG, sig(json!({"vaultId": vault_id, "ethTx": "0x01c0"})))
            .await,
        "INVALID_PAYLOAD"
    );
    assert_eq!(
        operator
            .err(
                REQUEST_SIG,
                sig(json!({"vaultId": vault_id, "digest": "00".repeat(32), "derivationPath": "m/0'"}))
            )
            .await,
        "INVALID_DERIVATION_PATH"
    );
    assert_eq!(
        operator
            .err(
                REQUEST_SIG,
                sig(json!({"vaultId": "vlt_nope", "digest": "00".repeat(32)}))
            )
            .await,
        "NOT_FOUND"
    );
    // Another organisation cannot see or sign with this vault.
    assert_eq!(
        other_op
            .err(
                REQUEST_SIG,
                sig(json!({"vaultId": vault_id, "digest": "00".repeat(32)}))
            )
            .await,
        "NOT_FOUND"
    );

    // Votes: unknown choice, twice, not a voter.
    let s = operator
        .ok(
            REQUEST_SIG,
            sig(json!({"vaultId": vault_id, "digest": "11".repeat(32)})),
        )
        .await;
    let op = s["requestSignature"]["id"].as_str().unwrap().to_owned();
    assert_eq!(vote_err(&signer, &op, &vdev[0], "maybe").await, "INVALID_INPUT");
    vote(&signer, &op, &vdev[0], "reject").await;
    assert_eq!(vote_err(&signer, &op, &vdev[0], "approve").await, "ALREADY_VOTED");
    assert_eq!(
        vote_err(&signer, &op, &devices[0], "approve").await,
        "NOT_A_VOTER"
    );
    // Results for an operation the device is not in.
    let r = vote(&signer, &op, &vdev[1], "approve").await;
    assert_eq!(r["state"], "Ready");
    let (sg, rid) = key.sign_prehash(&[0x11; 32]);
    assert_eq!(
        signer
            .err(SUBMIT_SIG, json!({"o": op, "d": vdev[0], "s": sg, "r": rid}))
            .await,
        "NOT_IN_COMMITTEE"
    );
    assert_eq!(
        signer
            .err(SUBMIT_SIG, json!({"o": op, "d": devices[0], "s": sg, "r": rid}))
            .await,
        "NOT_IN_COMMITTEE"
    );
    // Malformed signature from a committee member: refused and fails the op.
    assert_eq!(
        signer
            .err(
                SUBMIT_SIG,
                json!({"o": op, "d": vdev[1], "s": "00".repeat(64), "r": 0})
            )
            .await,
        "SIGNATURE_INVALID"
    );
    assert_eq!(
        signer
            .err(
                SUBMIT_KEYGEN,
                json!({"o": op, "d": vdev[1], "pk": key.public_hex(), "cc": "00".repeat(32), "h": KSH})
            )
            .await,
        "INVALID_STATE"
    );
    // Unknown operation.
    assert_eq!(
        vote_err(&signer, "op_nope", &vdev[0], "approve").await,
        "NOT_FOUND"
    );
    c.running.shutdown().await.unwrap();
}

async fn authorisation_codes(db: Db) {
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    // No token / bad token.
    let anon = Api {
        token: None,
        ..operator.clone()
    };
    assert_eq!(anon.err("{ devices { id } }", json!({})).await, "UNAUTHENTICATED");
    let bad = Api {
        token: Some("vst_forged".to_owned()),
        ..operator.clone()
    };
    assert_eq!(bad.err("{ vaults { id } }", json!({})).await, "UNAUTHENTICATED");
    // Malformed GraphQL gets a code too.
    assert_eq!(
        operator.err("{ devices { nosuchfield } }", json!({})).await,
        "BAD_REQUEST"
    );
    assert_eq!(operator.err("{ devices { ", json!({})).await, "BAD_REQUEST");
    // Bad client secret at /oauth/token.
    let resp = c
        .http
        .post(format!("{}/oauth/token", c.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", init.operator_client_id.as_str()),
            ("client_secret", "vss_wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    // HTTP Basic works too.
    let resp = c
        .http
        .post(format!("{}/oauth/token", c.base))
        .basic_auth(
            init.signer_client_id.as_str(),
            Some(init.signer_client_secret.expose()),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let me = signer.ok("{ me { role organisationId } }", json!({})).await;
    assert_eq!(me["me"]["role"], "signer");
    assert_eq!(me["me"]["organisationId"], init.org_id.as_str());

    // Roles: operators do not register devices or vote; signers do not create vaults.
    const REG: &str = "mutation($i: RegisterDeviceInput!) { registerDevice(input: $i) { id } }";
    let sk = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[1u8; 32])
            .verifying_key()
            .to_bytes(),
    );
    let reg = json!({"i": {"name": "x", "identitySigningKey": sk, "identityEncryptionKey": hex::encode([9u8; 32])}});
    assert_eq!(operator.err(REG, reg.clone()).await, "FORBIDDEN");
    let devices = [
        register_device(&signer, "a").await,
        register_device(&signer, "b").await,
    ];
    let q = "mutation($i: CreateVaultInput!) { createVault(input: $i) { id } }";
    let input = json!({"i": {"name": "v", "curve": "ed25519", "threshold": 1, "signers": [{"deviceId": devices[0]}, {"deviceId": devices[1]}]}});
    assert_eq!(signer.err(q, input.clone()).await, "FORBIDDEN");
    let op = create_vault(&operator, "ed25519", 1, &devices).await;
    let op_id = op["id"].as_str().unwrap();
    assert_eq!(
        vote_err(&operator, op_id, &devices[0], "approve").await,
        "FORBIDDEN"
    );

    // A device can only act as itself: a second signer client of the same organisation
    // sees the device but cannot act as it.
    assert_eq!(
        signer
            .err(
                "mutation { createApiClient(role: \"signer\") { clientId } }",
                json!({})
            )
            .await,
        "FORBIDDEN"
    );
    let creds = operator
        .ok(
            "mutation { createApiClient(role: \"signer\") { clientId clientSecret role } }",
            json!({}),
        )
        .await;
    let creds = &creds["createApiClient"];
    let token2 = c
        .token(
            creds["clientId"].as_str().unwrap(),
            creds["clientSecret"].as_str().unwrap(),
        )
        .await;
    let signer2 = c.client(&token2);
    assert_eq!(
        vote_err(&signer2, op_id, &devices[0], "approve").await,
        "FORBIDDEN"
    );
    let d3 = register_device(&signer2, "c").await;
    assert_eq!(vote_err(&signer, op_id, &d3, "approve").await, "FORBIDDEN");
    vote(&signer, op_id, &devices[0], "approve").await;

    // A device can only act as itself: another signer client (another organisation)
    // cannot vote for this device (it does not even see it).
    let other = init_org(&db, "other").await;
    let (_, other_signer) = c.org(&other).await;
    assert_eq!(
        vote_err(&other_signer, op_id, &devices[0], "approve").await,
        "NOT_FOUND"
    );
    let q = "query($d: ID!) { operationsAwaitingVote(deviceId: $d) { id } }";
    assert_eq!(other_signer.err(q, json!({"d": devices[0]})).await, "NOT_FOUND");
    c.running.shutdown().await.unwrap();
}

const REGISTER: &str =
    "mutation($i: RegisterDeviceInput!, $k: String) { registerDevice(input: $i, idempotencyKey: $k) { id } }";

fn device_input(name: &str, sk: &[u8; 32], ek: &[u8; 32]) -> serde_json::Value {
    json!({"name": name, "identitySigningKey": hex::encode(sk), "identityEncryptionKey": hex::encode(ek)})
}

/// Identity keys are unique across devices; small-order keys are refused.
async fn identity_keys(db: Db) {
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (_, signer) = c.org(&init).await;
    let sk = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>())
        .verifying_key()
        .to_bytes();
    let sk2 = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>())
        .verifying_key()
        .to_bytes();
    let (ek, ek2): ([u8; 32], [u8; 32]) = (rand::random(), rand::random());
    let first = signer
        .ok(REGISTER, json!({"i": device_input("a", &sk, &ek), "k": "dev-a"}))
        .await;
    // The same idempotency key and input returns the same device.
    let again = signer
        .ok(REGISTER, json!({"i": device_input("a", &sk, &ek), "k": "dev-a"}))
        .await;
    assert_eq!(first["registerDevice"]["id"], again["registerDevice"]["id"]);
    // Another device with either key already in use is refused.
    for (name, input) in [
        ("b", device_input("b", &sk, &ek2)),
        ("c", device_input("c", &sk2, &ek)),
    ] {
        assert_eq!(
            signer.err(REGISTER, json!({"i": input})).await,
            "DUPLICATE_KEY",
            "device {name}"
        );
    }
    signer
        .ok(REGISTER, json!({"i": device_input("d", &sk2, &ek2)}))
        .await;
    c.running.shutdown().await.unwrap();
}
