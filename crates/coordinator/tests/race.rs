//! Two coordinator instances on one database racing concurrent votes: no double vote,
//! no double committee, no lost update. On PostgreSQL the two instances are two
//! servers with their own pools; on SQLite (one process by design) one server.
// Tests may unwrap; clippy.toml's allowance covers only #[test] fns, not scenario helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;

per_backend!(concurrent_votes_two_instances, concurrent_reshares_two_instances);

async fn concurrent_votes_two_instances(db: Db) {
    let init = init_org(&db, "acme").await;
    let a = Coord::start(&db).await;
    let b = if db.backend == "postgres" {
        Some(Coord::start(&db).await)
    } else {
        None
    };
    let (op_a, sg_a) = a.org(&init).await;
    let (_, sg_b) = match &b {
        Some(b) => b.org(&init).await,
        None => a.org(&init).await,
    };
    let key = EcKey::random();
    let (vault_id, devices) = active_vault(
        &op_a,
        &sg_a,
        "secp256k1",
        2,
        5,
        &key.public_hex(),
        Some(&hex::encode(key.chain_code)),
    )
    .await;

    for round in 0..8u8 {
        let s = op_a
            .ok(
                REQUEST_SIG,
                json!({"i": {"vaultId": vault_id, "digest": hex::encode([round; 32])}}),
            )
            .await;
        let op = s["requestSignature"]["id"].as_str().unwrap().to_owned();
        // Every device votes approve twice at once, once through each instance.
        let mut tasks = Vec::new();
        for (i, d) in devices.iter().enumerate() {
            for (j, api) in [&sg_a, &sg_b].into_iter().enumerate() {
                let (api, op, d) = (api.clone(), op.clone(), d.clone());
                let choice = if (i + j + usize::from(round)) % 3 == 0 {
                    "reject"
                } else {
                    "approve"
                };
                tasks.push(tokio::spawn(async move {
                    let v = api
                        .raw(
                            "mutation($o: ID!, $d: ID!, $v: String!) { vote(operationId: $o, deviceId: $d, vote: $v) { id } }",
                            json!({"o": op, "d": d, "v": choice}),
                        )
                        .await;
                    (d, v["errors"][0]["extensions"]["code"].as_str().map(str::to_owned))
                }));
            }
        }
        let mut accepted = std::collections::HashMap::<String, u32>::new();
        for t in tasks {
            let (d, code) = t.await.unwrap();
            match code {
                None => *accepted.entry(d).or_default() += 1,
                Some(c) => assert!(
                    c == "ALREADY_VOTED" || c == "INVALID_STATE",
                    "unexpected error {c}"
                ),
            }
        }
        assert!(
            accepted.values().all(|n| *n == 1),
            "a device's vote was accepted twice: {accepted:?}"
        );
        let o = op_a.ok(&q_op(), json!({"id": op})).await["operation"].clone();
        let votes = o["votes"].as_array().unwrap();
        // Every accepted vote is stored (no lost update), once per device.
        assert_eq!(
            votes.len(),
            accepted.len(),
            "accepted {accepted:?} but stored {votes:?}"
        );
        let mut seen = std::collections::HashSet::new();
        assert!(votes
            .iter()
            .all(|v| seen.insert(v["deviceId"].as_str().unwrap().to_owned())));
        // Quorum is reachable in every round (at most 2 of 5 devices reject per pattern)
        // only if enough approvals were stored; the committee is the first two approvers.
        let approvers: Vec<&str> = votes
            .iter()
            .filter(|v| v["vote"] == "approve")
            .map(|v| v["deviceId"].as_str().unwrap())
            .collect();
        if approvers.len() >= 2 {
            assert_eq!(o["state"], "Ready");
            let mut committee: Vec<&str> = o["committee"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["deviceId"].as_str().unwrap())
                .collect();
            let mut first_two = approvers[..2].to_vec();
            committee.sort();
            first_two.sort();
            assert_eq!(committee, first_two);
        } else {
            assert_ne!(o["state"], "Ready");
            assert!(o["committee"].as_array().unwrap().is_empty());
        }
        // Both committee members submit a valid signature at once, through different
        // instances: exactly one is accepted.
        if approvers.len() >= 2 {
            let digest = [round; 32];
            let (sig, rid) = key.sign_prehash(&digest);
            let mut subs = Vec::new();
            for (k, d) in approvers[..2].iter().enumerate() {
                let api = if k == 0 { sg_a.clone() } else { sg_b.clone() };
                let (op, d, sig) = (op.clone(), (*d).to_owned(), sig.clone());
                subs.push(tokio::spawn(async move {
                    let v = api
                        .raw(SUBMIT_SIG, json!({"o": op, "d": d, "s": sig, "r": rid}))
                        .await;
                    (
                        d,
                        v["errors"][0]["extensions"]["code"].as_str().map(str::to_owned),
                    )
                }));
            }
            let mut winners = Vec::new();
            for t in subs {
                let (d, code) = t.await.unwrap();
                match code {
                    None => winners.push(d),
                    Some(c) => assert_eq!(c, "INVALID_STATE"),
                }
            }
            assert_eq!(winners.len(), 1, "two signatures accepted");
            let o = op_a.ok(&q_op(), json!({"id": op})).await["operation"].clone();
            assert_eq!(o["state"], "Completed");
            assert_eq!(o["result"]["submittedBy"], winners[0].as_str());
        }
        // Exactly one committee assignment in the audit log.
        let log = op_a
            .ok(
                "query($e: ID) { auditLog(entityId: $e) { event } }",
                json!({"e": op}),
            )
            .await;
        let assignments = log["auditLog"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "committee")
            .count();
        assert_eq!(assignments, usize::from(approvers.len() >= 2));
    }
    a.running.shutdown().await.unwrap();
    if let Some(b) = b {
        b.running.shutdown().await.unwrap();
    }
}

/// Concurrent `requestReshare` on one vault, through two servers on PostgreSQL (one on
/// SQLite): exactly one reshare is created, the others get INVALID_STATE.
async fn concurrent_reshares_two_instances(db: Db) {
    let init = init_org(&db, "acme").await;
    let a = Coord::start(&db).await;
    let b = if db.backend == "postgres" {
        Some(Coord::start(&db).await)
    } else {
        None
    };
    let (op_a, sg_a) = a.org(&init).await;
    let (op_b, _) = match &b {
        Some(b) => b.org(&init).await,
        None => a.org(&init).await,
    };
    let key = EcKey::random();
    let (vault_id, devices) = active_vault(
        &op_a,
        &sg_a,
        "secp256k1",
        2,
        3,
        &key.public_hex(),
        Some(&hex::encode(key.chain_code)),
    )
    .await;
    let signers: Vec<_> = devices.iter().map(|d| json!({"deviceId": d})).collect();
    for round in 0..3 {
        let mut tasks = Vec::new();
        for i in 0..8 {
            let api = if i % 2 == 0 { op_a.clone() } else { op_b.clone() };
            let vars =
                json!({"i": {"vaultId": vault_id, "newThreshold": 2 + (i % 2), "newSigners": signers}});
            tasks.push(tokio::spawn(async move {
                let v = api
                    .raw(
                        "mutation($i: RequestReshareInput!) { requestReshare(input: $i) { id } }",
                        vars,
                    )
                    .await;
                v["errors"][0]["extensions"]["code"].as_str().map(str::to_owned)
            }));
        }
        let mut created = 0;
        for t in tasks {
            match t.await.unwrap() {
                None => created += 1,
                Some(c) => assert_eq!(c, "INVALID_STATE"),
            }
        }
        assert_eq!(created, 1, "round {round}: {created} reshares created at once");
        let open = op_a
            .ok(
                "query($v: ID) { operations(filter: {vaultId: $v, kind: \"Reshare\", state: \"AwaitingApproval\"}) { id } }",
                json!({"v": vault_id}),
            )
            .await;
        let open: Vec<String> = open["operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(open.len(), 1, "{open:?}");
        // Reject it so that the next round can open a new one.
        vote(&sg_a, &open[0], &devices[0], "reject").await;
    }
    a.running.shutdown().await.unwrap();
    if let Some(b) = b {
        b.running.shutdown().await.unwrap();
    }
}
