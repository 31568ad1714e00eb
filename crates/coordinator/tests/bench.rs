//! Throughput: operations per second for request signature + 2 votes + verified
//! result, through the HTTP server, on SQLite and PostgreSQL. Ignored by default:
//! `cargo test -p vsigner-coordinator --release --test bench -- --ignored --nocapture`
//! (with VSIGNER_TEST_PG_URL for the PostgreSQL row). It prints, it does not assert
//! on time.
// Tests may unwrap; clippy.toml's allowance covers only #[test] fns, not scenario helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use common::*;
use serde_json::json;

const OPS: usize = 100;

async fn run(db: Db) {
    let init = init_org(&db, "bench").await;
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
    // Sign outside the timed loop: the bench measures the coordinator, not k256.
    let digests: Vec<[u8; 32]> = (0..OPS).map(|_| rand::random()).collect();
    let sigs: Vec<(String, i64)> = digests.iter().map(|d| key.sign_prehash(d)).collect();
    let start = Instant::now();
    for (d, (sig, rid)) in digests.iter().zip(&sigs) {
        let s = operator
            .ok(
                REQUEST_SIG,
                json!({"i": {"vaultId": vault_id, "digest": hex::encode(d)}}),
            )
            .await;
        let op = s["requestSignature"]["id"].as_str().unwrap().to_owned();
        signer
            .ok(
                "mutation($o: ID!, $d: ID!) { vote(operationId: $o, deviceId: $d, vote: \"approve\") { id } }",
                json!({"o": op, "d": devices[0]}),
            )
            .await;
        signer
            .ok(
                "mutation($o: ID!, $d: ID!) { vote(operationId: $o, deviceId: $d, vote: \"approve\") { state } }",
                json!({"o": op, "d": devices[1]}),
            )
            .await;
        let r = signer
            .ok(
                "mutation($o: ID!, $d: ID!, $s: String!, $r: Int) { submitSignature(operationId: $o, deviceId: $d, signature: $s, recoveryId: $r) { state } }",
                json!({"o": op, "d": devices[0], "s": sig, "r": rid}),
            )
            .await;
        assert_eq!(r["submitSignature"]["state"], "Completed");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{:>8}: {OPS} sign operations (request + 2 votes + verified result) in {secs:.2} s = {:.1} ops/s",
        db.backend,
        OPS as f64 / secs
    );
    c.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with --ignored --nocapture"]
async fn sign_ops_per_second() {
    run(Db::sqlite()).await;
    if let Some(db) = Db::postgres().await {
        run(db).await;
    }
}
