//! Lifecycle paths through the real GraphQL HTTP server, on SQLite and PostgreSQL.
// Tests may unwrap; clippy.toml's allowance covers only #[test] fns, not scenario helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

per_backend!(
    keygen_sign_digest_message_and_derived,
    ed25519_keygen_sign_and_forged_signature,
    keygen_results_disagree,
    early_rejection_and_keygen_rejection,
    expiry_paths,
    reshare_roles_and_result,
    report_failure_names_culprits,
    idempotency,
    signature_input_checks,
    eth_tx_with_derivation_path,
    reshare_early_rejection_and_expiry,
    presignatures_are_stocked_per_committee_and_consumed_once,
    only_free_presignatures_are_in_their_index_before_and_after_the_migration,
    waiting_for_an_operation_answers_when_it_changes,
    human_approval_requests_and_answers,
);

const WAIT: &str = "query($o: ID!, $s: Int!, $st: String) { waitForOperation(id: $o, seconds: $s, state: $st) { id state } }";

/// `waitForOperation`: an operator waits for a result, or for a change of state, in one
/// request; the coordinator answers when the operation changes, or with it as it is when the
/// time is up. It reads the operation again only every minute here, and the waits may last
/// 60 s: only the commits can end them within the 20 s the test allows.
async fn waiting_for_an_operation_answers_when_it_changes(db: Db) {
    let init = init_org(&db, "acme").await;
    let c = Coord::start_with(vsigner_coordinator::ServeArgs {
        wait_recheck_ms: 60_000,
        ..serve_args(&db)
    })
    .await;
    let (operator, signer) = c.org(&init).await;
    let devices = [
        register_device(&signer, "a").await,
        register_device(&signer, "b").await,
        register_device(&signer, "c").await,
    ];
    let op = create_vault(&operator, "ed25519", 2, &devices).await;
    let id = op["id"].as_str().unwrap().to_owned();
    // Nothing happens: the operation as it is when the time is up.
    let still = operator.ok(WAIT, json!({"o": id, "s": 1})).await;
    assert_eq!(still["waitForOperation"]["state"], "AwaitingApproval");
    // Waiting for a change of state: a vote that changes none does not end the wait; the
    // vote that decides does, and so does the final state for a wait without a state.
    let votes = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = vote(&signer, &id, &devices[0], "approve").await;
        assert_eq!(r["state"], "AwaitingApproval");
        tokio::time::sleep(Duration::from_millis(300)).await;
        vote(&signer, &id, &devices[1], "reject").await
    };
    let (changed, final_, decided) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(
            operator.ok(WAIT, json!({"o": id, "s": 60, "st": "AwaitingApproval"})),
            operator.ok(WAIT, json!({"o": id, "s": 60})),
            votes,
        )
    })
    .await
    .expect("the waits must answer when the operation changes, not at their deadline");
    assert_eq!(decided["state"], "Rejected");
    assert_eq!(changed["waitForOperation"]["state"], "Rejected");
    assert_eq!(final_["waitForOperation"]["state"], "Rejected");
    // A final operation, or one already in another state, is answered at once.
    let at_once = operator.ok(WAIT, json!({"o": id, "s": 60, "st": "Ready"})).await;
    assert_eq!(at_once["waitForOperation"]["state"], "Rejected");
    // At most 4 waits in one request.
    let waits = |n: usize| {
        let fields: Vec<String> = (0..n)
            .map(|k| format!("w{k}: waitForOperation(id: $o, seconds: 1) {{ id }}"))
            .collect();
        format!("query($o: ID!) {{ {} }}", fields.join(" "))
    };
    let four = operator.raw(&waits(4), json!({"o": id})).await;
    assert_eq!(four["data"]["w3"]["id"], json!(id), "{four}");
    let five = operator.raw(&waits(5), json!({"o": id})).await;
    assert!(
        five["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("complex")),
        "{five}"
    );
    for seconds in [0, 61] {
        assert_eq!(
            operator.err(WAIT, json!({"o": id, "s": seconds})).await,
            "INVALID_INPUT"
        );
    }
    assert_eq!(
        operator.err(WAIT, json!({"o": "op_none", "s": 1})).await,
        "NOT_FOUND"
    );
}

async fn keygen_sign_digest_message_and_derived(db: Db) {
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    let key = EcKey::random();
    let mut devices = Vec::new();
    for i in 0..3 {
        devices.push(register_device(&signer, &format!("d{i}")).await);
    }
    // Keygen: every member must approve.
    let op = create_vault(&operator, "secp256k1", 2, &devices).await;
    assert_eq!(op["kind"], "Keygen");
    assert_eq!(op["state"], "AwaitingApproval");
    assert_eq!(op["nonce"].as_str().unwrap().len(), 64);
    assert_eq!(op["vault"]["status"], "Pending");
    let op_id = op["id"].as_str().unwrap().to_owned();
    // No device was heard from yet; an operator reading a device's queue says nothing of it.
    let seen = "{ devices { id lastSeenAt } }";
    let last_seen = |data: &Value, d: &str| {
        data["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == d)
            .unwrap()["lastSeenAt"]
            .clone()
    };
    operator
        .ok(
            "query($d: ID!) { operationsAwaitingVote(deviceId: $d) { id } }",
            json!({"d": devices[1]}),
        )
        .await;
    assert!(last_seen(&operator.ok(seen, json!({})).await, &devices[1]).is_null());
    let awaiting = signer
        .ok(
            "query($d: ID!) { operationsAwaitingVote(deviceId: $d) { id } }",
            json!({"d": devices[1]}),
        )
        .await;
    assert_eq!(awaiting["operationsAwaitingVote"][0]["id"], op_id.as_str());
    // Its own signer client's poll: d1 was seen, d0 not yet.
    let now = operator.ok(seen, json!({})).await;
    assert!(last_seen(&now, &devices[1]).is_string(), "{now}");
    assert!(last_seen(&now, &devices[0]).is_null(), "{now}");
    vote(&signer, &op_id, &devices[2], "approve").await;
    let after = vote(&signer, &op_id, &devices[0], "approve").await;
    assert_eq!(after["state"], "AwaitingApproval");
    let after = vote(&signer, &op_id, &devices[1], "approve").await;
    assert_eq!(after["state"], "Ready");
    let committee: Vec<_> = after["committee"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["deviceId"].clone(), m["index"].clone()))
        .collect();
    assert_eq!(
        committee,
        vec![
            (json!(devices[0]), json!(0)),
            (json!(devices[1]), json!(1)),
            (json!(devices[2]), json!(2))
        ]
    );
    assert_eq!(
        after["committee"][0]["identitySigningKey"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    let ready = signer
        .ok(
            "query($d: ID!) { operationsReady(deviceId: $d) { id kind } }",
            json!({"d": devices[0]}),
        )
        .await;
    assert_eq!(ready["operationsReady"][0]["id"], op_id.as_str());
    let started = signer
        .ok(
            "mutation($o: ID!, $d: ID!) { startOperation(operationId: $o, deviceId: $d) { state startedBy } }",
            json!({"o": op_id, "d": devices[1]}),
        )
        .await;
    assert_eq!(started["startOperation"]["state"], "InProgress");
    let cc = hex::encode(key.chain_code);
    for d in &devices {
        signer
            .ok(
                SUBMIT_KEYGEN,
                json!({"o": op_id, "d": d, "pk": key.public_hex(), "cc": cc, "h": KSH}),
            )
            .await;
    }
    let done = operator.ok(&q_op(), json!({"id": op_id})).await["operation"].clone();
    assert_eq!(done["state"], "Completed");
    assert_eq!(done["vault"]["status"], "Active");
    assert_eq!(done["vault"]["publicKey"], key.public_hex().as_str());
    assert_eq!(done["vault"]["keySetHash"], KSH);
    assert_eq!(done["result"]["keySetHash"], KSH);
    assert_eq!(done["vault"]["chainCode"], cc.as_str());
    let vault_id = done["vaultId"].as_str().unwrap().to_owned();

    // Sign a digest: the committee is the earliest approvers reaching the threshold.
    let digest = [7u8; 32];
    let s = operator
        .ok(
            REQUEST_SIG,
            json!({"i": {"vaultId": vault_id, "digest": hex::encode(digest)}}),
        )
        .await;
    let sop = s["requestSignature"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        s["requestSignature"]["sign"]["signingDigest"],
        hex::encode(digest).as_str()
    );
    vote(&signer, &sop, &devices[2], "approve").await;
    let r = vote(&signer, &sop, &devices[0], "approve").await;
    assert_eq!(r["state"], "Ready");
    let members: Vec<_> = r["committee"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["deviceId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(members, vec![devices[0].clone(), devices[2].clone()]);
    assert_eq!(
        vote_err(&signer, &sop, &devices[1], "approve").await,
        "INVALID_STATE"
    );
    // Device 1 is not in the committee: it can neither start nor submit.
    let code = signer
        .err(
            "mutation($o: ID!, $d: ID!) { startOperation(operationId: $o, deviceId: $d) { id } }",
            json!({"o": sop, "d": devices[1]}),
        )
        .await;
    assert_eq!(code, "NOT_IN_COMMITTEE");
    let (sig, rid) = key.sign_prehash(&digest);
    assert_eq!(
        signer
            .err(SUBMIT_SIG, json!({"o": sop, "d": devices[1], "s": sig, "r": rid}))
            .await,
        "NOT_IN_COMMITTEE"
    );
    let done = signer
        .ok(SUBMIT_SIG, json!({"o": sop, "d": devices[2], "s": sig, "r": rid}))
        .await;
    assert_eq!(done["submitSignature"]["state"], "Completed");
    assert_eq!(done["submitSignature"]["result"]["signature"], sig.as_str());
    assert_eq!(
        done["submitSignature"]["result"]["submittedBy"],
        devices[2].as_str()
    );

    // A message on secp256k1: EIP-191 personal-message hash.
    let msg = b"hello vsigner";
    let s = operator
        .ok(
            REQUEST_SIG,
            json!({"i": {"vaultId": vault_id, "message": hex::encode(msg)}}),
        )
        .await;
    let mop = s["requestSignature"]["id"].as_str().unwrap().to_owned();
    let mut prefixed = format!("\x19Ethereum Signed Message:\n{}", msg.len()).into_bytes();
    prefixed.extend_from_slice(msg);
    let expected = <sha3::Keccak256 as sha3::Digest>::digest(&prefixed);
    assert_eq!(
        s["requestSignature"]["sign"]["signingDigest"],
        hex::encode(expected).as_str()
    );
    vote(&signer, &mop, &devices[0], "approve").await;
    vote(&signer, &mop, &devices[1], "approve").await;
    let (sig, rid) = key.sign_prehash(&expected);
    let done = signer
        .ok(SUBMIT_SIG, json!({"o": mop, "d": devices[0], "s": sig, "r": rid}))
        .await;
    assert_eq!(done["submitSignature"]["state"], "Completed");

    // A derived key m/0/1: the signature must verify under the BIP-32 child key.
    let s = operator
        .ok(
            REQUEST_SIG,
            json!({"i": {"vaultId": vault_id, "digest": hex::encode([3u8; 32]), "derivationPath": "m/0/1"}}),
        )
        .await;
    let dop = s["requestSignature"]["id"].as_str().unwrap().to_owned();
    assert_eq!(s["requestSignature"]["sign"]["derivationPath"], "m/0/1");
    vote(&signer, &dop, &devices[0], "approve").await;
    vote(&signer, &dop, &devices[1], "approve").await;
    let child = key.derive(&[0, 1]);
    let (sig, rid) = sign_prehash_with(&child, &[3u8; 32]);
    let done = signer
        .ok(SUBMIT_SIG, json!({"o": dop, "d": devices[1], "s": sig, "r": rid}))
        .await;
    assert_eq!(done["submitSignature"]["state"], "Completed");

    // The root key's signature on a derived request is refused, naming the device.
    let s = operator
        .ok(
            REQUEST_SIG,
            json!({"i": {"vaultId": vault_id, "digest": hex::encode([4u8; 32]), "derivationPath": "m/5"}}),
        )
        .await;
    let bop = s["requestSignature"]["id"].as_str().unwrap().to_owned();
    vote(&signer, &bop, &devices[0], "approve").await;
    vote(&signer, &bop, &devices[1], "approve").await;
    let (sig, rid) = key.sign_prehash(&[4u8; 32]);
    assert_eq!(
        signer
            .err(SUBMIT_SIG, json!({"o": bop, "d": devices[0], "s": sig, "r": rid}))
            .await,
        "SIGNATURE_INVALID"
    );
    let failed = operator.ok(&q_op(), json!({"id": bop})).await["operation"].clone();
    assert_eq!(failed["state"], "Failed");
    assert_eq!(failed["failure"]["culpritDeviceIds"], json!([devices[0]]));

    // A high-s signature is refused too.
    let s = operator
        .ok(
            REQUEST_SIG,
            json!({"i": {"vaultId": vault_id, "digest": hex::encode([5u8; 32])}}),
        )
        .await;
    let hop = s["requestSignature"]["id"].as_str().unwrap().to_owned();
    vote(&signer, &hop, &devices[0], "approve").await;
    vote(&signer, &hop, &devices[1], "approve").await;
    let (sig, rid) = key.sign_prehash(&[5u8; 32]);
    let sig_bytes = hex::decode(&sig).unwrap();
    let low = k256::ecdsa::Signature::from_slice(&sig_bytes).unwrap();
    let high = k256::ecdsa::Signature::from_scalars(low.r().to_bytes(), (-*low.s()).to_bytes()).unwrap();
    let code = signer
        .err(
            SUBMIT_SIG,
            json!({"o": hop, "d": devices[1], "s": hex::encode(high.to_bytes()), "r": rid ^ 1}),
        )
        .await;
    assert_eq!(code, "SIGNATURE_INVALID");
    c.running.shutdown().await.unwrap();
}

async fn ed25519_keygen_sign_and_forged_signature(db: Db) {
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    let sk = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let pk = hex::encode(sk.verifying_key().to_bytes());
    let cc = hex::encode(rand::random::<[u8; 32]>());
    let (vault_id, devices) = active_vault(&operator, &signer, "ed25519", 2, 3, &pk, Some(&cc)).await;
    let msg = b"an ed25519 message";
    let s = operator
        .ok(
            REQUEST_SIG,
            json!({"i": {"vaultId": vault_id, "message": hex::encode(msg)}}),
        )
        .await;
    let op = s["requestSignature"]["id"].as_str().unwrap().to_owned();
    assert!(s["requestSignature"]["sign"]["signingDigest"].is_null());
    vote(&signer, &op, &devices[1], "approve").await;
    vote(&signer, &op, &devices[2], "approve").await;
    use ed25519_dalek::Signer as _;
    let good = hex::encode(sk.sign(msg).to_bytes());
    let done = signer
        .ok(SUBMIT_SIG, json!({"o": op, "d": devices[1], "s": good}))
        .await;
    assert_eq!(done["submitSignature"]["state"], "Completed");

    // A forged signature (another key) is refused; the operation fails naming the device.
    let s = operator
        .ok(
            REQUEST_SIG,
            json!({"i": {"vaultId": vault_id, "digest": hex::encode([1u8; 32])}}),
        )
        .await;
    let op = s["requestSignature"]["id"].as_str().unwrap().to_owned();
    vote(&signer, &op, &devices[0], "approve").await;
    vote(&signer, &op, &devices[2], "approve").await;
    let forger = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let forged = hex::encode(forger.sign(&[1u8; 32]).to_bytes());
    assert_eq!(
        signer
            .err(SUBMIT_SIG, json!({"o": op, "d": devices[2], "s": forged}))
            .await,
        "SIGNATURE_INVALID"
    );
    let failed = operator.ok(&q_op(), json!({"id": op})).await["operation"].clone();
    assert_eq!(failed["state"], "Failed");
    assert_eq!(failed["failure"]["culpritDeviceIds"], json!([devices[2]]));
    // The audit log names the device.
    let log = operator
        .ok(
            "query($e: ID) { auditLog(entityId: $e) { event actor detail } }",
            json!({"e": op}),
        )
        .await;
    let refused = log["auditLog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "signature_refused")
        .unwrap();
    assert_eq!(refused["actor"], devices[2].as_str());
    // Nothing more is accepted.
    let good = hex::encode(sk.sign(&[1u8; 32]).to_bytes());
    assert_eq!(
        signer
            .err(SUBMIT_SIG, json!({"o": op, "d": devices[0], "s": good}))
            .await,
        "INVALID_STATE"
    );
    // A child key (Edwards derivation): the vault key's signature is not the child's.
    let s = operator
        .ok(
            REQUEST_SIG,
            json!({"i": {"vaultId": vault_id, "digest": hex::encode([1u8; 32]), "derivationPath": "m/1"}}),
        )
        .await;
    let op = s["requestSignature"]["id"].as_str().unwrap().to_owned();
    assert_eq!(s["requestSignature"]["sign"]["derivationPath"], "m/1");
    vote(&signer, &op, &devices[0], "approve").await;
    vote(&signer, &op, &devices[1], "approve").await;
    let root_signature = hex::encode(sk.sign(&[1u8; 32]).to_bytes());
    assert_eq!(
        signer
            .err(SUBMIT_SIG, json!({"o": op, "d": devices[0], "s": root_signature}))
            .await,
        "SIGNATURE_INVALID"
    );
    // A keygen result without a chain code is refused: an ed25519 vault has child keys.
    let mut more = Vec::new();
    for i in 0..2 {
        more.push(register_device(&signer, &format!("late-{i}")).await);
    }
    let keygen = create_vault(&operator, "ed25519", 2, &more).await;
    let keygen = keygen["id"].as_str().unwrap();
    for d in &more {
        vote(&signer, keygen, d, "approve").await;
    }
    let code = signer
        .err(
            SUBMIT_KEYGEN,
            json!({"o": keygen, "d": more[0], "pk": pk, "cc": null, "h": KSH}),
        )
        .await;
    assert_eq!(code, "INVALID_INPUT");
    c.running.shutdown().await.unwrap();
}

async fn keygen_results_disagree(db: Db) {
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    let devices = [
        register_device(&signer, "a").await,
        register_device(&signer, "b").await,
        register_device(&signer, "c").await,
    ];
    let op = create_vault(&operator, "secp256k1", 2, &devices).await;
    let op_id = op["id"].as_str().unwrap().to_owned();
    for d in &devices {
        vote(&signer, &op_id, d, "approve").await;
    }
    let (k1, k2) = (EcKey::random(), EcKey::random());
    let cc = hex::encode(k1.chain_code);
    signer
        .ok(
            SUBMIT_KEYGEN,
            json!({"o": op_id, "d": devices[0], "pk": k1.public_hex(), "cc": cc, "h": KSH}),
        )
        .await;
    signer
        .ok(
            SUBMIT_KEYGEN,
            json!({"o": op_id, "d": devices[1], "pk": k1.public_hex(), "cc": cc, "h": KSH}),
        )
        .await;
    let code = signer
        .err(
            SUBMIT_KEYGEN,
            json!({"o": op_id, "d": devices[2], "pk": k2.public_hex(), "cc": cc, "h": KSH}),
        )
        .await;
    assert_eq!(code, "RESULT_MISMATCH");
    let failed = operator.ok(&q_op(), json!({"id": op_id})).await["operation"].clone();
    assert_eq!(failed["state"], "Failed");
    assert_eq!(failed["failure"]["culpritDeviceIds"], json!([devices[2]]));
    assert_eq!(failed["vault"]["status"], "Failed");

    // Same key and chain code everywhere, but one device reports another key-set hash.
    let op = create_vault(&operator, "secp256k1", 2, &devices).await;
    let op2 = op["id"].as_str().unwrap().to_owned();
    for d in &devices {
        vote(&signer, &op2, d, "approve").await;
    }
    for (i, d) in devices.iter().enumerate() {
        let h = if i == 2 {
            hex::encode([1u8; 32])
        } else {
            KSH.to_owned()
        };
        let v = signer
            .raw(
                SUBMIT_KEYGEN,
                json!({"o": op2, "d": d, "pk": k1.public_hex(), "cc": cc, "h": h}),
            )
            .await;
        let code = v["errors"][0]["extensions"]["code"].as_str();
        assert_eq!(code, if i == 2 { Some("RESULT_MISMATCH") } else { None }, "{v}");
    }
    let failed = operator.ok(&q_op(), json!({"id": op2})).await["operation"].clone();
    assert_eq!(failed["state"], "Failed");
    assert_eq!(failed["failure"]["culpritDeviceIds"], json!([devices[2]]));
    assert_eq!(failed["vault"]["status"], "Failed");
    // A failed vault cannot sign.
    let code = operator
        .err(
            REQUEST_SIG,
            json!({"i": {"vaultId": failed["vaultId"], "digest": hex::encode([1u8; 32])}}),
        )
        .await;
    assert_eq!(code, "INVALID_STATE");
    c.running.shutdown().await.unwrap();
}

async fn early_rejection_and_keygen_rejection(db: Db) {
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    // Keygen: one reject is enough.
    let devices = [
        register_device(&signer, "a").await,
        register_device(&signer, "b").await,
    ];
    let op = create_vault(&operator, "ed25519", 2, &devices).await;
    let r = vote(&signer, op["id"].as_str().unwrap(), &devices[1], "reject").await;
    assert_eq!(r["state"], "Rejected");
    assert_eq!(r["vault"]["status"], "Failed");
    // A keygen's members are not "new" members of anything.
    assert_eq!(
        r["rejectionReason"],
        format!("member {} voted reject; every member must approve", devices[1])
    );

    // Sign 3-of-4: approve, reject, abstain → at most 2 of 3 → Rejected at once.
    let key = EcKey::random();
    let (vault_id, devices) = active_vault(
        &operator,
        &signer,
        "secp256k1",
        3,
        4,
        &key.public_hex(),
        Some(&hex::encode(key.chain_code)),
    )
    .await;
    let s = operator
        .ok(
            REQUEST_SIG,
            json!({"i": {"vaultId": vault_id, "digest": hex::encode([2u8; 32])}}),
        )
        .await;
    let op = s["requestSignature"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        vote(&signer, &op, &devices[0], "approve").await["state"],
        "AwaitingApproval"
    );
    assert_eq!(
        vote(&signer, &op, &devices[1], "reject").await["state"],
        "AwaitingApproval"
    );
    let r = vote(&signer, &op, &devices[2], "abstain").await;
    assert_eq!(r["state"], "Rejected");
    assert_eq!(
        vote_err(&signer, &op, &devices[3], "approve").await,
        "INVALID_STATE"
    );
    // It no longer awaits device 3's vote.
    let aw = signer
        .ok(
            "query($d: ID!) { operationsAwaitingVote(deviceId: $d) { id } }",
            json!({"d": devices[3]}),
        )
        .await;
    assert_eq!(aw["operationsAwaitingVote"], json!([]));
    c.running.shutdown().await.unwrap();
}

async fn expiry_paths(db: Db) {
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    // Keygen expires while awaiting approval (default 10 min): lazily on read.
    let devices = [
        register_device(&signer, "a").await,
        register_device(&signer, "b").await,
    ];
    let kop = create_vault(&operator, "secp256k1", 1, &devices).await;
    let kop_id = kop["id"].as_str().unwrap().to_owned();
    vote(&signer, &kop_id, &devices[0], "approve").await;
    c.clock.advance(Duration::from_secs(601));
    // Tokens expire with the clock too: fetch fresh ones.
    let (operator, signer) = c.org(&init).await;
    let op = operator.ok(&q_op(), json!({"id": kop_id})).await["operation"].clone();
    assert_eq!(op["state"], "Expired");
    assert_eq!(op["vault"]["status"], "Failed");
    assert_eq!(
        vote_err(&signer, &kop_id, &devices[1], "approve").await,
        "EXPIRED"
    );

    // Sign (24 h): one op Ready, one InProgress, one awaiting; all expire via the sweep path
    // of a list query, and a late result is refused.
    let key = EcKey::random();
    let (vault_id, devices) = active_vault(
        &operator,
        &signer,
        "secp256k1",
        1,
        2,
        &key.public_hex(),
        Some(&hex::encode(key.chain_code)),
    )
    .await;
    let mut ops = Vec::new();
    for i in 0..3u8 {
        let s = operator
            .ok(
                REQUEST_SIG,
                json!({"i": {"vaultId": vault_id, "digest": hex::encode([i; 32])}}),
            )
            .await;
        ops.push(s["requestSignature"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        vote(&signer, &ops[0], &devices[0], "approve").await["state"],
        "Ready"
    );
    vote(&signer, &ops[1], &devices[0], "approve").await;
    signer
        .ok(
            "mutation($o: ID!, $d: ID!) { startOperation(operationId: $o, deviceId: $d) { id } }",
            json!({"o": ops[1], "d": devices[0]}),
        )
        .await;
    c.clock.advance(Duration::from_secs(23 * 3600));
    let (_, signer) = c.org(&init).await;
    let (sig, rid) = key.sign_prehash(&[0u8; 32]);
    assert_eq!(
        signer
            .ok(
                SUBMIT_SIG,
                json!({"o": ops[0], "d": devices[0], "s": sig, "r": rid})
            )
            .await["submitSignature"]["state"],
        "Completed"
    );
    c.clock.advance(Duration::from_secs(3601));
    let (operator, signer) = c.org(&init).await;
    let list = operator
        .ok(
            "query($v: ID) { operations(filter: {vaultId: $v, kind: \"Sign\"}) { id state } }",
            json!({"v": vault_id}),
        )
        .await;
    let states: std::collections::HashMap<String, String> = list["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap().to_owned(),
                o["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(states[&ops[0]], "Completed");
    assert_eq!(states[&ops[1]], "Expired");
    assert_eq!(states[&ops[2]], "Expired");
    // Pages of the same list: together they are the whole list, in the same order.
    let page = |offset: i64| {
        let (operator, vault_id) = (&operator, &vault_id);
        async move {
            let page = operator
                .ok(
                    "query($v: ID, $o: Int) { operations(filter: {vaultId: $v, kind: \"Sign\", limit: 2, offset: $o}) { id } }",
                    json!({"v": vault_id, "o": offset}),
                )
                .await;
            page["operations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let whole: Vec<String> = list["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!([page(0).await, page(2).await].concat(), whole);
    assert_eq!(page(3).await, Vec::<String>::new());
    assert_eq!(
        operator
            .err("query { operations(filter: {offset: -1}) { id } }", json!({}))
            .await,
        "INVALID_INPUT"
    );
    let (sig, rid) = key.sign_prehash(&[1u8; 32]);
    assert_eq!(
        signer
            .err(
                SUBMIT_SIG,
                json!({"o": ops[1], "d": devices[0], "s": sig, "r": rid})
            )
            .await,
        "EXPIRED"
    );
    let ready = signer
        .ok(
            "query($d: ID!) { operationsReady(deviceId: $d) { id } }",
            json!({"d": devices[0]}),
        )
        .await;
    assert_eq!(ready["operationsReady"], json!([]));
    // The audit log records the expiry.
    let log = operator
        .ok(
            "query($e: ID) { auditLog(entityId: $e) { event detail } }",
            json!({"e": ops[2]}),
        )
        .await;
    assert!(log["auditLog"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["detail"].as_str().unwrap().contains("\"to\":\"Expired\"")));
    c.running.shutdown().await.unwrap();
}

async fn reshare_roles_and_result(db: Db) {
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    let key = EcKey::random();
    let (vault_id, old) = active_vault(
        &operator,
        &signer,
        "secp256k1",
        2,
        3,
        &key.public_hex(),
        Some(&hex::encode(key.chain_code)),
    )
    .await;
    let new_dev = register_device(&signer, "new").await;
    // 2-of-3 → 3-of-4: the three old devices plus a new one.
    let mut new_set: Vec<String> = old.clone();
    new_set.push(new_dev.clone());
    let q = format!("mutation($i: RequestReshareInput!) {{ requestReshare(input: $i) {{ {OP_FIELDS} }} }}");
    let signers: Vec<_> = new_set.iter().map(|d| json!({"deviceId": d})).collect();
    let code = operator
        .err(
            &q,
            json!({"i": {"vaultId": vault_id, "newThreshold": 5, "newSigners": signers}}),
        )
        .await;
    assert_eq!(code, "INVALID_THRESHOLD");
    let op = operator
        .ok(
            &q,
            json!({"i": {"vaultId": vault_id, "newThreshold": 3, "newSigners": signers}}),
        )
        .await["requestReshare"]
        .clone();
    let op_id = op["id"].as_str().unwrap().to_owned();
    assert_eq!(op["kind"], "Reshare");
    assert_eq!(op["reshare"]["oldThreshold"], 2);
    assert_eq!(op["reshare"]["newThreshold"], 3);
    // One open reshare per vault.
    let again = json!({"i": {"vaultId": vault_id, "newThreshold": 2, "newSigners": signers}});
    assert_eq!(operator.err(&q, again).await, "INVALID_STATE");
    // Every new member must approve; old approvals count toward the old threshold.
    for d in [&new_dev, &old[2], &old[1]] {
        assert_eq!(
            vote(&signer, &op_id, d, "approve").await["state"],
            "AwaitingApproval"
        );
    }
    let r = vote(&signer, &op_id, &old[0], "approve").await;
    assert_eq!(r["state"], "Ready");
    let roles: Vec<_> = r["committee"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["deviceId"].as_str().unwrap().to_owned(),
                m["oldIndex"].clone(),
                m["newIndex"].clone(),
            )
        })
        .collect();
    // Earliest old approvers reaching 2: old[2], old[1]; old[0] is new-only.
    assert_eq!(
        roles,
        vec![
            (old[0].clone(), json!(null), json!(0)),
            (old[1].clone(), json!(1), json!(1)),
            (old[2].clone(), json!(2), json!(2)),
            (new_dev.clone(), json!(null), json!(3)),
        ]
    );
    // A sign operation opened at key generation 0, one of them already Ready: both
    // become stale when the reshare completes.
    let mut stale = Vec::new();
    for (i, digest) in [[7u8; 32], [8u8; 32]].iter().enumerate() {
        let s = operator
            .ok(
                REQUEST_SIG,
                json!({"i": {"vaultId": vault_id, "digest": hex::encode(digest)}}),
            )
            .await;
        let id = s["requestSignature"]["id"].as_str().unwrap().to_owned();
        if i == 0 {
            vote(&signer, &id, &old[0], "approve").await;
            assert_eq!(vote(&signer, &id, &old[1], "approve").await["state"], "Ready");
        }
        stale.push(id);
    }
    const SUBMIT: &str = SUBMIT_RESHARE;
    let new_hash = hex::encode([0x77u8; 32]);
    for d in &new_set {
        signer
            .ok(
                SUBMIT,
                json!({"o": op_id, "d": d, "pk": key.public_hex(), "h": new_hash}),
            )
            .await;
    }
    let done = operator.ok(&q_op(), json!({"id": op_id})).await["operation"].clone();
    assert_eq!(done["state"], "Completed");
    assert_eq!(done["result"]["keyGeneration"], 1);
    assert_eq!(done["vault"]["threshold"], 3);
    assert_eq!(done["vault"]["keyGeneration"], 1);
    assert_eq!(done["vault"]["signers"].as_array().unwrap().len(), 4);
    assert_eq!(done["vault"]["publicKey"], key.public_hex().as_str());
    assert_eq!(done["vault"]["keySetHash"], new_hash.as_str());
    assert_eq!(done["result"]["keySetHash"], new_hash.as_str());
    for id in &stale {
        let o = operator.ok(&q_op(), json!({"id": id})).await["operation"].clone();
        assert_eq!(o["state"], "Failed", "{o}");
        let reason = o["failure"]["reason"].as_str().unwrap();
        assert!(reason.contains("stale") && reason.contains(&op_id), "{reason}");
        let log = operator
            .ok(
                "query($e: ID) { auditLog(entityId: $e) { event actor } }",
                json!({"e": id}),
            )
            .await;
        assert!(log["auditLog"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "stale"));
    }

    // A second reshare where a new member reports another key fails, naming it.
    let op = operator
        .ok(
            &q,
            json!({"i": {"vaultId": vault_id, "newThreshold": 2, "newSigners": signers}}),
        )
        .await["requestReshare"]
        .clone();
    let op_id = op["id"].as_str().unwrap().to_owned();
    for d in &new_set {
        vote(&signer, &op_id, d, "approve").await;
    }
    let other = EcKey::random();
    let code = signer
        .err(
            SUBMIT,
            json!({"o": op_id, "d": new_dev, "pk": other.public_hex(), "h": new_hash}),
        )
        .await;
    assert_eq!(code, "RESULT_MISMATCH");
    let failed = operator.ok(&q_op(), json!({"id": op_id})).await["operation"].clone();
    assert_eq!(failed["state"], "Failed");
    assert_eq!(failed["failure"]["culpritDeviceIds"], json!([new_dev]));
    assert_eq!(failed["vault"]["threshold"], 3);

    // A third reshare: every new member reports the vault key, but one reports a
    // different key-set hash (inconsistent shares): it fails naming that device and the
    // vault keeps its signer set, generation and key-set hash.
    let op = operator
        .ok(
            &q,
            json!({"i": {"vaultId": vault_id, "newThreshold": 2, "newSigners": signers}}),
        )
        .await["requestReshare"]
        .clone();
    let op_id = op["id"].as_str().unwrap().to_owned();
    for d in &new_set {
        vote(&signer, &op_id, d, "approve").await;
    }
    let good = hex::encode([0x88u8; 32]);
    for d in &new_set[..3] {
        signer
            .ok(
                SUBMIT,
                json!({"o": op_id, "d": d, "pk": key.public_hex(), "h": good}),
            )
            .await;
    }
    let code = signer
        .err(
            SUBMIT,
            json!({"o": op_id, "d": new_dev, "pk": key.public_hex(), "h": hex::encode([0x99u8; 32])}),
        )
        .await;
    assert_eq!(code, "RESULT_MISMATCH");
    let failed = operator.ok(&q_op(), json!({"id": op_id})).await["operation"].clone();
    assert_eq!(failed["state"], "Failed");
    assert_eq!(failed["failure"]["culpritDeviceIds"], json!([new_dev]));
    assert_eq!(failed["vault"]["keyGeneration"], 1);
    assert_eq!(failed["vault"]["threshold"], 3);
    assert_eq!(failed["vault"]["keySetHash"], new_hash.as_str());
    c.running.shutdown().await.unwrap();
}

async fn report_failure_names_culprits(db: Db) {
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    let key = EcKey::random();
    let (vault_id, devices) = active_vault(
        &operator,
        &signer,
        "secp256k1",
        2,
        3,
        &key.public_hex(),
        Some(&hex::encode(key.chain_code)),
    )
    .await;
    let s = operator
        .ok(
            REQUEST_SIG,
            json!({"i": {"vaultId": vault_id, "digest": hex::encode([9u8; 32])}}),
        )
        .await;
    let op = s["requestSignature"]["id"].as_str().unwrap().to_owned();
    vote(&signer, &op, &devices[0], "approve").await;
    vote(&signer, &op, &devices[1], "approve").await;
    const REPORT: &str = "mutation($o: ID!, $d: ID!, $r: String!, $c: [ID!]) { reportFailure(operationId: $o, deviceId: $d, reason: $r, culpritDeviceIds: $c) { state failure { reason culpritDeviceIds reportedBy } } }";
    // A culprit outside the committee is refused.
    assert_eq!(
        signer
            .err(
                REPORT,
                json!({"o": op, "d": devices[0], "r": "bad", "c": [devices[2]]})
            )
            .await,
        "INVALID_INPUT"
    );
    let r = signer
        .ok(
            REPORT,
            json!({"o": op, "d": devices[0], "r": "round 2: bad proof", "c": [devices[1]]}),
        )
        .await;
    assert_eq!(r["reportFailure"]["state"], "Failed");
    assert_eq!(
        r["reportFailure"]["failure"]["culpritDeviceIds"],
        json!([devices[1]])
    );
    assert_eq!(r["reportFailure"]["failure"]["reportedBy"], devices[0].as_str());
    c.running.shutdown().await.unwrap();
}

async fn idempotency(db: Db) {
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    let key = EcKey::random();
    let (vault_id, _) = active_vault(
        &operator,
        &signer,
        "secp256k1",
        1,
        1,
        &key.public_hex(),
        Some(&hex::encode(key.chain_code)),
    )
    .await;
    let input = json!({"vaultId": vault_id, "digest": hex::encode([1u8; 32])});
    let a = operator.ok(REQUEST_SIG, json!({"i": input, "k": "req-1"})).await;
    let b = operator.ok(REQUEST_SIG, json!({"i": input, "k": "req-1"})).await;
    assert_eq!(a["requestSignature"]["id"], b["requestSignature"]["id"]);
    let other = json!({"vaultId": vault_id, "digest": hex::encode([2u8; 32])});
    assert_eq!(
        operator.err(REQUEST_SIG, json!({"i": other, "k": "req-1"})).await,
        "IDEMPOTENCY_CONFLICT"
    );
    let c2 = operator.ok(REQUEST_SIG, json!({"i": input, "k": "req-2"})).await;
    assert_ne!(a["requestSignature"]["id"], c2["requestSignature"]["id"]);
    // Devices too.
    const REG: &str = "mutation($i: RegisterDeviceInput!, $k: String) { registerDevice(input: $i, idempotencyKey: $k) { id } }";
    let sk = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    let i = json!({"name": "x", "identitySigningKey": hex::encode(sk.verifying_key().to_bytes()), "identityEncryptionKey": hex::encode([9u8; 32])});
    let d1 = signer.ok(REG, json!({"i": i, "k": "dev-1"})).await;
    let d2 = signer.ok(REG, json!({"i": i, "k": "dev-1"})).await;
    assert_eq!(d1, d2);
    // API clients: a replay returns the same client, without the secret.
    const NEW_CLIENT: &str = "mutation($k: String) { createApiClient(role: \"operator\", idempotencyKey: $k) { clientId clientSecret } }";
    let n1 = operator.ok(NEW_CLIENT, json!({"k": "client-1"})).await["createApiClient"].clone();
    let n2 = operator.ok(NEW_CLIENT, json!({"k": "client-1"})).await["createApiClient"].clone();
    assert_eq!(n1["clientId"], n2["clientId"]);
    assert!(n1["clientSecret"].is_string());
    assert!(n2["clientSecret"].is_null());
    // Keys are scoped to the API client: another operator of the same organisation
    // can use "req-1" for a different request.
    let token = c
        .token(
            n1["clientId"].as_str().unwrap(),
            n1["clientSecret"].as_str().unwrap(),
        )
        .await;
    let operator2 = c.client(&token);
    let o2 = operator2.ok(REQUEST_SIG, json!({"i": other, "k": "req-1"})).await;
    assert_ne!(o2["requestSignature"]["id"], a["requestSignature"]["id"]);
    let o3 = operator2.ok(REQUEST_SIG, json!({"i": other, "k": "req-1"})).await;
    assert_eq!(o2["requestSignature"]["id"], o3["requestSignature"]["id"]);
    c.running.shutdown().await.unwrap();
}

async fn ready_sign_op(
    operator: &Api,
    signer: &Api,
    vault_id: &str,
    devices: &[String],
    input: serde_json::Value,
) -> String {
    let mut i = input;
    i["vaultId"] = json!(vault_id);
    let s = operator.ok(REQUEST_SIG, json!({"i": i})).await;
    let op = s["requestSignature"]["id"].as_str().unwrap().to_owned();
    vote(signer, &op, &devices[0], "approve").await;
    assert_eq!(vote(signer, &op, &devices[1], "approve").await["state"], "Ready");
    op
}

/// recoveryId out of range or missing → INVALID_INPUT, the operation untouched; a valid
/// signature with the wrong recovery id → refused, the operation fails naming the device.
async fn signature_input_checks(db: Db) {
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    let key = EcKey::random();
    let (vault_id, devices) = active_vault(
        &operator,
        &signer,
        "secp256k1",
        2,
        3,
        &key.public_hex(),
        Some(&hex::encode(key.chain_code)),
    )
    .await;
    let digest = [3u8; 32];
    let op = ready_sign_op(
        &operator,
        &signer,
        &vault_id,
        &devices,
        json!({"digest": hex::encode(digest)}),
    )
    .await;
    let (sig, rid) = key.sign_prehash(&digest);
    for bad in [json!(2), json!(-1), json!(27), json!(null)] {
        let code = signer
            .err(SUBMIT_SIG, json!({"o": op, "d": devices[0], "s": sig, "r": bad}))
            .await;
        assert_eq!(code, "INVALID_INPUT", "recoveryId {bad}");
        let o = operator.ok(&q_op(), json!({"id": op})).await["operation"].clone();
        assert_eq!(o["state"], "Ready", "recoveryId {bad} changed the operation");
        assert!(o["failure"].is_null());
    }
    // A valid r‖s with the other recovery id: refused, the operation fails.
    let code = signer
        .err(
            SUBMIT_SIG,
            json!({"o": op, "d": devices[0], "s": sig, "r": 1 - rid}),
        )
        .await;
    assert_eq!(code, "SIGNATURE_INVALID");
    let o = operator.ok(&q_op(), json!({"id": op})).await["operation"].clone();
    assert_eq!(o["state"], "Failed");
    assert_eq!(o["failure"]["culpritDeviceIds"], json!([devices[0]]));
    c.running.shutdown().await.unwrap();
}

/// An EIP-1559 transaction signed with a derived (m/0/1) key.
async fn eth_tx_with_derivation_path(db: Db) {
    use alloy_consensus::transaction::SignableTransaction;
    use alloy_consensus::TxEip1559;
    use alloy_primitives::{Address, TxKind, U256};
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    let key = EcKey::random();
    let (vault_id, devices) = active_vault(
        &operator,
        &signer,
        "secp256k1",
        2,
        3,
        &key.public_hex(),
        Some(&hex::encode(key.chain_code)),
    )
    .await;
    let tx = TxEip1559 {
        chain_id: 31337,
        nonce: 3,
        gas_limit: 21_000,
        max_fee_per_gas: 20_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(Address::from([7u8; 20])),
        value: U256::from(12_345u64),
        access_list: Default::default(),
        input: Default::default(),
    };
    let unsigned = tx.encoded_for_signing();
    let digest = <sha3::Keccak256 as sha3::Digest>::digest(&unsigned);
    let input = json!({"ethTx": format!("0x{}", hex::encode(&unsigned)), "derivationPath": "m/0/1"});
    // Signed with the root key: refused (the child key is expected).
    let op = ready_sign_op(&operator, &signer, &vault_id, &devices, input.clone()).await;
    let o = operator.ok(&q_op(), json!({"id": op})).await["operation"].clone();
    assert_eq!(o["sign"]["derivationPath"], "m/0/1");
    assert_eq!(o["sign"]["chainId"], "31337");
    assert_eq!(o["sign"]["signingDigest"], hex::encode(digest).as_str());
    let (sig, rid) = key.sign_prehash(&digest);
    let code = signer
        .err(SUBMIT_SIG, json!({"o": op, "d": devices[1], "s": sig, "r": rid}))
        .await;
    assert_eq!(code, "SIGNATURE_INVALID");
    // Signed with the m/0/1 child key: accepted, raw transaction assembled.
    let op = ready_sign_op(&operator, &signer, &vault_id, &devices, input).await;
    let child = key.derive(&[0, 1]);
    let (sig, rid) = sign_prehash_with(&child, &digest);
    let done = signer
        .ok(SUBMIT_SIG, json!({"o": op, "d": devices[1], "s": sig, "r": rid}))
        .await["submitSignature"]
        .clone();
    assert_eq!(done["state"], "Completed");
    let raw = done["result"]["rawTransaction"].as_str().unwrap();
    assert!(raw.starts_with("0x02"), "{raw}");
    // The raw transaction carries the child key's r and s (RLP integers: leading zero
    // bytes stripped).
    let (r, s) = (
        sig[..64].trim_start_matches("00"),
        sig[64..].trim_start_matches("00"),
    );
    assert!(raw.contains(r) && raw.contains(s), "{raw}");
    c.running.shutdown().await.unwrap();
}

/// Reshare: a new member's rejection rejects at once; so does old weight becoming
/// unreachable; an unfinished reshare expires and leaves the vault as it was.
async fn reshare_early_rejection_and_expiry(db: Db) {
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    let key = EcKey::random();
    let (vault_id, old) = active_vault(
        &operator,
        &signer,
        "secp256k1",
        2,
        3,
        &key.public_hex(),
        Some(&hex::encode(key.chain_code)),
    )
    .await;
    let new_dev = register_device(&signer, "new").await;
    // New set: old[0] and the new device (2-of-2); old[1], old[2] are old-only.
    let signers = json!([{"deviceId": old[0]}, {"deviceId": new_dev}]);
    let q = "mutation($i: RequestReshareInput!) { requestReshare(input: $i) { id state } }";
    let request = || async {
        operator
            .ok(
                q,
                json!({"i": {"vaultId": vault_id, "newThreshold": 2, "newSigners": signers}}),
            )
            .await["requestReshare"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // A new member rejects: Rejected at once.
    let op = request().await;
    vote(&signer, &op, &old[1], "approve").await;
    let r = vote(&signer, &op, &new_dev, "reject").await;
    assert_eq!(r["state"], "Rejected");
    assert_eq!(
        r["rejectionReason"],
        format!("new-set member {new_dev} voted reject; every new-set member must approve")
    );
    // Old weight unreachable: old[1] and old[2] reject, only old[0] (1 < 2) is left.
    let op = request().await;
    assert_eq!(
        vote(&signer, &op, &old[1], "reject").await["state"],
        "AwaitingApproval"
    );
    let r = vote(&signer, &op, &old[2], "abstain").await;
    assert_eq!(r["state"], "Rejected");
    assert!(
        r["rejectionReason"]
            .as_str()
            .unwrap()
            .contains("at most 1 of the 2"),
        "{r}"
    );
    // Expiry (10 min default) in Ready: Expired, vault unchanged, acting → EXPIRED.
    let op = request().await;
    for d in [&old[0], &new_dev, &old[1]] {
        vote(&signer, &op, d, "approve").await;
    }
    let o = operator.ok(&q_op(), json!({"id": op})).await["operation"].clone();
    assert_eq!(o["state"], "Ready");
    c.clock.advance(std::time::Duration::from_secs(601));
    let (operator, signer) = c.org(&init).await;
    let o = operator.ok(&q_op(), json!({"id": op})).await["operation"].clone();
    assert_eq!(o["state"], "Expired");
    assert_eq!(o["vault"]["status"], "Active");
    assert_eq!(o["vault"]["keyGeneration"], 0);
    assert_eq!(o["vault"]["threshold"], 2);
    assert_eq!(o["vault"]["signers"].as_array().unwrap().len(), 3);
    let code = signer
        .err(
            SUBMIT_RESHARE,
            json!({"o": op, "d": new_dev, "pk": key.public_hex(), "h": KSH}),
        )
        .await;
    assert_eq!(code, "EXPIRED");
    // The vault can be reshared again.
    operator
        .ok(
            q,
            json!({"i": {"vaultId": vault_id, "newThreshold": 2, "newSigners": signers}}),
        )
        .await;
    c.running.shutdown().await.unwrap();
}

/// Presign operations are Ready at once for their committee; results must agree; a
/// signature of an eth_tx or message at the root key by the same committee takes one
/// (never twice), a digest or a derived key or another committee does not.
async fn presignatures_are_stocked_per_committee_and_consumed_once(db: Db) {
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    let key = EcKey::random();
    let cc = hex::encode([7u8; 32]);
    let (vault_id, devices) = active_vault(
        &operator,
        &signer,
        "secp256k1",
        2,
        3,
        &key.public_hex(),
        Some(&cc),
    )
    .await;
    let request = "mutation($v: ID!, $c: [ID!]!, $n: Int!) { requestPresignatures(vaultId: $v, committee: $c, count: $n) { id kind state committee { deviceId index } presign { keyGeneration consumedBy } } }";
    let submit = "mutation($o: ID!, $d: ID!, $f: String!) { submitPresignResult(operationId: $o, deviceId: $d, fingerprint: $f) { id state presign { consumedBy } } }";
    // Committee given in any order; it is ordered by share index.
    let ops = operator
        .ok(
            request,
            json!({"v": vault_id, "c": [devices[2], devices[0]], "n": 2}),
        )
        .await["requestPresignatures"]
        .clone();
    let ops = ops.as_array().unwrap().clone();
    assert_eq!(ops.len(), 2);
    for o in &ops {
        assert_eq!(o["kind"], "Presign");
        assert_eq!(o["state"], "Ready");
        assert_eq!(o["committee"][0]["deviceId"], devices[0].as_str());
        assert_eq!(o["committee"][1]["deviceId"], devices[2].as_str());
        assert_eq!(o["committee"][1]["index"], 2);
    }
    // Wrong committee sizes and outsiders are refused.
    for bad in [
        json!([devices[0]]),
        json!([devices[0], devices[1], devices[2]]),
        json!([devices[0], "dev_nobody"]),
    ] {
        assert_eq!(
            operator
                .err(request, json!({"v": vault_id, "c": bad, "n": 1}))
                .await,
            "INVALID_INPUT"
        );
    }
    // Results: both members agree on the first; they disagree on the second.
    let (p1, p2) = (ops[0]["id"].as_str().unwrap(), ops[1]["id"].as_str().unwrap());
    let f = hex::encode([1u8; 32]);
    signer.ok(submit, json!({"o": p1, "d": devices[0], "f": f})).await;
    let done = signer.ok(submit, json!({"o": p1, "d": devices[2], "f": f})).await;
    assert_eq!(done["submitPresignResult"]["state"], "Completed");
    assert_eq!(
        signer
            .err(submit, json!({"o": p2, "d": devices[1], "f": f}))
            .await,
        "NOT_IN_COMMITTEE"
    );
    signer.ok(submit, json!({"o": p2, "d": devices[0], "f": f})).await;
    assert_eq!(
        signer
            .err(
                submit,
                json!({"o": p2, "d": devices[2], "f": hex::encode([2u8; 32])})
            )
            .await,
        "RESULT_MISMATCH"
    );
    assert_eq!(
        operator.ok(&q_op(), json!({"id": p2})).await["operation"]["state"],
        "Failed"
    );

    let presignature_of = |op: Value| op["operation"]["sign"]["presignatureId"].clone();
    let q = "query($id: ID!) { operation(id: $id) { state sign { presignatureId } } }";
    let ready = |input: Value, first: String, second: String| {
        let (operator, signer) = (&operator, &signer);
        let vault_id = vault_id.clone();
        async move {
            let mut i = input;
            i["vaultId"] = json!(vault_id);
            let s = operator.ok(REQUEST_SIG, json!({"i": i})).await;
            let op = s["requestSignature"]["id"].as_str().unwrap().to_owned();
            vote(signer, &op, &first, "approve").await;
            assert_eq!(vote(signer, &op, &second, "approve").await["state"], "Ready");
            op
        }
    };
    let msg = json!({"message": hex::encode(b"pay 1")});
    // Another committee (0 and 1) finds no presignature.
    let other = ready(msg.clone(), devices[0].clone(), devices[1].clone()).await;
    assert_eq!(
        presignature_of(operator.ok(q, json!({"id": other})).await),
        Value::Null
    );
    // A digest, even by the stocked committee, takes none.
    let digest = ready(
        json!({"digest": hex::encode([9u8; 32])}),
        devices[2].clone(),
        devices[0].clone(),
    )
    .await;
    assert_eq!(
        presignature_of(operator.ok(q, json!({"id": digest})).await),
        Value::Null
    );
    // A message by the stocked committee takes the one completed presignature...
    let first = ready(msg.clone(), devices[2].clone(), devices[0].clone()).await;
    assert_eq!(
        presignature_of(operator.ok(q, json!({"id": first})).await),
        json!(p1)
    );
    let consumed = operator
        .ok(
            "query($id: ID!) { operation(id: $id) { presign { consumedBy } } }",
            json!({"id": p1}),
        )
        .await;
    assert_eq!(consumed["operation"]["presign"]["consumedBy"], json!(first));
    // ...and the next one finds none left.
    let second = ready(msg, devices[0].clone(), devices[2].clone()).await;
    assert_eq!(
        presignature_of(operator.ok(q, json!({"id": second})).await),
        Value::Null
    );
    // At most 100 presign runs are open per vault.
    let many = operator
        .ok(
            request,
            json!({"v": vault_id, "c": [devices[0], devices[1]], "n": 100}),
        )
        .await;
    assert_eq!(many["requestPresignatures"].as_array().unwrap().len(), 100);
    assert_eq!(
        operator
            .err(
                request,
                json!({"v": vault_id, "c": [devices[0], devices[1]], "n": 1})
            )
            .await,
        "TOO_MANY_REQUESTS"
    );
    c.running.shutdown().await.unwrap();
}

/// Marks operation `id` a free presignature, as a coordinator that did not know the mark
/// left it.
async fn set_free(db: &Db, id: &str) {
    sqlx::any::install_default_drivers();
    let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    sqlx::query("UPDATE operations SET presignature_free = 1 WHERE id = $1")
        .bind(id)
        .execute(&mut c)
        .await
        .unwrap();
}

/// The ids of the operations the free presignatures' index holds, sorted.
async fn free_presignatures(db: &Db) -> Vec<String> {
    use sqlx::Row as _;
    sqlx::any::install_default_drivers();
    let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let rows = sqlx::query("SELECT id FROM operations WHERE presignature_free = 1 ORDER BY id")
        .fetch_all(&mut c)
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get::<String, _>("id").unwrap())
        .collect()
}

/// When a signature becomes Ready, the coordinator looks for a presignature among the free
/// ones only (Completed, neither consumed nor discarded), through their own index, rather
/// than among every Completed operation (used presignatures pile up there, and every signature
/// read and parsed up to 64 of them). The index holds exactly the free ones as presignatures
/// complete, are consumed and are discarded; and the migration that made it marks exactly
/// the free ones of a database made before it (run again here on a database whose column and
/// index were taken out).
async fn only_free_presignatures_are_in_their_index_before_and_after_the_migration(db: Db) {
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    let key = EcKey::random();
    let (vault_id, devices) = active_vault(
        &operator,
        &signer,
        "secp256k1",
        2,
        3,
        &key.public_hex(),
        Some(&hex::encode([7u8; 32])),
    )
    .await;
    let committee = json!([devices[0], devices[2]]);
    let stock = |n: u32| {
        let (operator, signer, vault_id, committee) = (&operator, &signer, &vault_id, &committee);
        async move {
            let ops = operator
                .ok(
                    "mutation($v: ID!, $c: [ID!]!, $n: Int!) { requestPresignatures(vaultId: $v, committee: $c, count: $n) { id } }",
                    json!({"v": vault_id, "c": committee, "n": n}),
                )
                .await["requestPresignatures"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>();
            let submit = "mutation($o: ID!, $d: ID!, $f: String!) { submitPresignResult(operationId: $o, deviceId: $d, fingerprint: $f) { state } }";
            for o in &ops {
                for d in committee.as_array().unwrap() {
                    signer
                        .ok(submit, json!({"o": o, "d": d, "f": hex::encode([1u8; 32])}))
                        .await;
                }
            }
            ops
        }
    };
    let sign = || {
        let (operator, signer, vault_id) = (&operator, &signer, &vault_id);
        let (first, second) = (devices[0].clone(), devices[2].clone());
        async move {
            let s = operator
                .ok(
                    REQUEST_SIG,
                    json!({"i": {"vaultId": vault_id, "message": hex::encode(b"pay")}}),
                )
                .await;
            let op = s["requestSignature"]["id"].as_str().unwrap().to_owned();
            vote(signer, &op, &first, "approve").await;
            assert_eq!(vote(signer, &op, &second, "approve").await["state"], "Ready");
            let taken = operator
                .ok(
                    "query($id: ID!) { operation(id: $id) { sign { presignatureId } } }",
                    json!({"id": op}),
                )
                .await;
            taken["operation"]["sign"]["presignatureId"]
                .as_str()
                .map(str::to_owned)
        }
    };
    // Two stocked and free; a signature takes one, the next the other; one more is stocked
    // and device 2 discards what it holds (that one), then one more is stocked.
    let first = stock(2).await;
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(free_presignatures(&db).await, sorted);
    let consumed = sign().await.expect("a free presignature");
    assert_eq!(
        free_presignatures(&db).await,
        first
            .iter()
            .filter(|p| **p != consumed)
            .cloned()
            .collect::<Vec<_>>()
    );
    // A coordinator of an older version (a rolling upgrade) consumed one without unmarking
    // it: the next signature takes the really free one, and takes the stale mark away.
    let other = first.iter().find(|p| **p != consumed).unwrap().clone();
    set_free(&db, &consumed).await;
    assert_eq!(sign().await, Some(other));
    assert_eq!(free_presignatures(&db).await, Vec::<String>::new());
    let kept = stock(1).await;
    assert_eq!(free_presignatures(&db).await, kept);
    let (org, device_key) = device_key(&devices[2]);
    let statement = vsigner_records::Statement {
        organisation_id: &org,
        // A statement about the device itself: its operation id is the device id.
        operation_id: &devices[2],
        device_id: &devices[2],
        kind: vsigner_records::StatementKind::DiscardPresignatures,
        content: vec!["restarted"],
    };
    let discarded = signer
        .ok(
            "mutation($d: ID!, $r: String!, $sig: String) { discardPresignatures(deviceId: $d, reason: $r, deviceSignature: $sig) }",
            json!({"d": devices[2], "r": "restarted", "sig": statement.sign(&device_key)}),
        )
        .await;
    assert_eq!(discarded["discardPresignatures"], 1);
    assert_eq!(free_presignatures(&db).await, Vec::<String>::new());
    let fresh = stock(1).await;
    assert_eq!(free_presignatures(&db).await, fresh);
    c.running.shutdown().await.unwrap();

    // The database as it was before the migration: no column, no index, not applied.
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    for sql in [
        "DROP INDEX operations_free_presignatures",
        "ALTER TABLE operations DROP COLUMN presignature_free",
        "DELETE FROM _sqlx_migrations WHERE version = 8",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    drop(conn);
    let c = Coord::start(&db).await;
    assert_eq!(
        free_presignatures(&db).await,
        fresh,
        "the migration marks the free presignature only (not the consumed one, not the discarded one)"
    );
    c.running.shutdown().await.unwrap();
}

const POST_HUMAN: &str = "mutation($o: ID!, $d: ID!, $r: String!, $p: [String!]! = [\"QUJD\", \"REVG\"]) { postHumanApprovalRequest(operationId: $o, deviceId: $d, request: $r, credentialIds: $p) }";
const ANSWER: &str = "mutation($o: ID!, $d: ID!, $v: String!, $a: String!) { answerAsPerson(operationId: $o, deviceId: $d, verdict: $v, assertion: $a) { seq verdict credentialId answeredBy } }";
const HUMAN_ANSWERS: &str =
    "query($o: ID!, $d: ID!) { humanAnswers(operationId: $o, deviceId: $d) { seq verdict assertion } }";

/// Human approvals: a device posts what it asks people, an operator's client delivers
/// answers, the device reads them back. The coordinator bounds and relays; who may do what
/// is checked; the device's own checks are in the approval crate and the daemon tests.
async fn human_approval_requests_and_answers(db: Db) {
    let init = init_org(&db, "acme").await;
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    let devices = [
        register_device(&signer, "a").await,
        register_device(&signer, "b").await,
        register_device(&signer, "outsider").await,
    ];
    let op = create_vault(&operator, "ed25519", 2, &devices[..2]).await;
    let id = op["id"].as_str().unwrap().to_owned();
    let request =
        json!({"__typename": "OperationCreateVault_v3", "id": id, "vault": {"name": "v"}}).to_string();
    let by = |credential: &str| {
        json!({"id": credential, "rawId": credential, "type": "public-key", "response": {}}).to_string()
    };
    let (assertion, second_key) = (by("QUJD"), by("REVG"));
    let answer = |device: &str, verdict: &str, assertion: &str| json!({"o": id, "d": device, "v": verdict, "a": assertion});

    // Nothing to answer before the device asks.
    assert_eq!(
        operator
            .err(ANSWER, answer(&devices[1], "approve", &assertion))
            .await,
        "NOT_FOUND"
    );
    // Only the device's own client, for an operation it votes on, naming that operation.
    assert_eq!(
        signer
            .err(POST_HUMAN, json!({"o": id, "d": devices[2], "r": request}))
            .await,
        "NOT_A_VOTER"
    );
    assert_eq!(
        operator
            .err(POST_HUMAN, json!({"o": id, "d": devices[1], "r": request}))
            .await,
        "FORBIDDEN"
    );
    let other = request.replace(&id, "op_other");
    assert_eq!(
        signer
            .err(POST_HUMAN, json!({"o": id, "d": devices[1], "r": other}))
            .await,
        "INVALID_INPUT"
    );
    let huge = json!({"id": id, "pad": "x".repeat(70_000)}).to_string();
    assert_eq!(
        signer
            .err(POST_HUMAN, json!({"o": id, "d": devices[1], "r": huge}))
            .await,
        "INVALID_INPUT"
    );
    for ids in [json!([]), json!(["QUJD", "QUJD"]), json!(["not base64url!"])] {
        let vars = json!({"o": id, "d": devices[1], "r": request, "p": ids});
        assert_eq!(signer.err(POST_HUMAN, vars).await, "INVALID_INPUT", "{ids}");
    }
    for _ in 0..2 {
        let posted = signer
            .ok(POST_HUMAN, json!({"o": id, "d": devices[1], "r": request}))
            .await;
        assert_eq!(posted["postHumanApprovalRequest"], true);
    }

    // Answers: operators' clients only, a verdict, an assertion with a credential id.
    assert_eq!(
        signer
            .err(ANSWER, answer(&devices[1], "approve", &assertion))
            .await,
        "FORBIDDEN"
    );
    assert_eq!(
        operator
            .err(ANSWER, answer(&devices[1], "maybe", &assertion))
            .await,
        "INVALID_INPUT"
    );
    assert_eq!(
        operator.err(ANSWER, answer(&devices[1], "approve", "{}")).await,
        "INVALID_INPUT"
    );
    assert_eq!(
        operator
            .err(ANSWER, answer(&devices[1], "approve", &"x".repeat(20_000)))
            .await,
        "INVALID_INPUT"
    );
    // Only the passkeys the device named: nobody can fill its list with others.
    let stranger = by("WFla");
    assert_eq!(
        operator
            .err(ANSWER, answer(&devices[1], "approve", &stranger))
            .await,
        "FORBIDDEN"
    );
    let first = operator
        .ok(ANSWER, answer(&devices[1], "approve", &assertion))
        .await;
    assert_eq!(first["answerAsPerson"]["seq"], 1);
    assert_eq!(first["answerAsPerson"]["credentialId"], "QUJD");
    assert_eq!(
        first["answerAsPerson"]["answeredBy"],
        json!(init.operator_client_id)
    );
    operator
        .ok(ANSWER, answer(&devices[1], "approve", &second_key))
        .await;
    // A passkey's new answer replaces its earlier one.
    let third = operator
        .ok(ANSWER, answer(&devices[1], "reject", &assertion))
        .await;
    assert_eq!(third["answerAsPerson"]["seq"], 3);

    // The device reads them back, in order; only its own client may.
    let read = signer.ok(HUMAN_ANSWERS, json!({"o": id, "d": devices[1]})).await;
    let verdicts: Vec<&str> = read["humanAnswers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(
        verdicts,
        ["approve", "reject"],
        "REVG's approval, then QUJD's latest answer"
    );
    assert_eq!(read["humanAnswers"][1]["assertion"], json!(assertion));
    assert_eq!(
        operator
            .err(HUMAN_ANSWERS, json!({"o": id, "d": devices[1]}))
            .await,
        "FORBIDDEN"
    );
    let none = signer.ok(HUMAN_ANSWERS, json!({"o": id, "d": devices[0]})).await;
    assert_eq!(none["humanAnswers"], json!([]));

    // Operators see the request and the answers on the operation; the audit log has them.
    let seen = operator
        .ok(
            "query($id: ID!) { operation(id: $id) { humanApprovals { deviceId request credentialIds answers { seq verdict } } } }",
            json!({"id": id}),
        )
        .await;
    let shown = &seen["operation"]["humanApprovals"];
    assert_eq!(shown.as_array().unwrap().len(), 1, "{shown}");
    assert_eq!(shown[0]["deviceId"], json!(devices[1]));
    assert_eq!(shown[0]["request"], json!(request));
    assert_eq!(shown[0]["credentialIds"], json!(["QUJD", "REVG"]));
    assert_eq!(shown[0]["answers"][1]["verdict"], "reject");

    // Once the operation is decided, nothing more is posted or answered.
    vote(&signer, &id, &devices[0], "reject").await;
    assert_eq!(
        operator
            .err(ANSWER, answer(&devices[1], "approve", &assertion))
            .await,
        "INVALID_STATE"
    );
    assert_eq!(
        signer
            .err(POST_HUMAN, json!({"o": id, "d": devices[1], "r": request}))
            .await,
        "INVALID_STATE"
    );
}
