//! `vsigner run` as a product: a coordinator, the embedded broker and three signer daemons run
//! as separate processes of the built binary, with the example approval webhook (Python,
//! signed replies) and an OTLP receiver. Signatures are verified with `k256` and
//! `ed25519-dalek`.

// Tests may unwrap (see clippy.toml); helpers outside #[test] fns too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attacks;
mod compat;
mod concurrency;
mod console;
mod coordinator;
mod harness;
mod hostile;
mod hostile_broker;
mod otlp;
mod people;
mod recovery;
mod rekey;
mod schemes;
mod shares;
mod tls;
mod weights;

use std::process::Command;
use std::time::Duration;

use harness::*;
use serde_json::json;

const KEYGEN: Duration = Duration::from_secs(300);
const SIGN: Duration = Duration::from_secs(120);

fn verify_secp256k1(
    public_key_hex: &str,
    digest: &[u8; 32],
    op: &vsigner_signer::coordinator_api::Operation,
) {
    let result = op.result.as_ref().expect("a result");
    verify_secp256k1_parts(
        public_key_hex,
        digest,
        result.signature.as_ref().unwrap(),
        result.recovery_id.unwrap(),
    );
}

fn verify_secp256k1_parts(public_key_hex: &str, digest: &[u8; 32], signature_hex: &str, recovery_id: u8) {
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
    let sig = hex::decode(signature_hex).unwrap();
    let vk = VerifyingKey::from_sec1_bytes(&hex::decode(public_key_hex).unwrap()).unwrap();
    let s = Signature::from_slice(&sig).unwrap();
    assert!(s.normalize_s().is_none(), "low-s");
    vk.verify_prehash(digest, &s)
        .expect("ECDSA signature verifies under the vault key");
    let rid = RecoveryId::from_byte(recovery_id).unwrap();
    assert_eq!(VerifyingKey::recover_from_prehash(digest, &s, rid).unwrap(), vk);
}

fn verify_ed25519(public_key_hex: &str, message: &[u8], op: &vsigner_signer::coordinator_api::Operation) {
    let result = op.result.as_ref().expect("a result");
    let sig = hex::decode(result.signature.as_ref().unwrap()).unwrap();
    let key: [u8; 32] = hex::decode(public_key_hex).unwrap().try_into().unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
    vk.verify_strict(message, &ed25519_dalek::Signature::from_slice(&sig).unwrap())
        .expect("Ed25519 signature verifies under the vault key");
}

fn completed(op: &vsigner_signer::coordinator_api::Operation) {
    assert_eq!(
        op.state, "Completed",
        "operation {} {}: {:?} {:?}",
        op.id, op.state, op.failure, op.rejection_reason
    );
}

/// The EIP-191 hash of a personal message.
fn eip191(message: &[u8]) -> [u8; 32] {
    use sha3::{Digest, Keccak256};
    let mut h = Keccak256::new();
    h.update(format!("\x19Ethereum Signed Message:\n{}", message.len()).as_bytes());
    h.update(message);
    h.finalize().into()
}

/// Prime sets in a daemon's stock.
fn prime_sets(signer: &Signer) -> usize {
    std::fs::read_dir(signer.dir.join("keystore/devices/instance/prime-set"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Share records of `device` for `vault` in a daemon's keystore directory.
fn share_files(signer: &Signer, device: &str, vault: &str) -> Vec<String> {
    let dir = signer
        .dir
        .join("keystore/devices")
        .join(device)
        .join("key-share")
        .join(vault);
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_create_vaults_sign_reshare_survive_a_kill() {
    let root = tempfile::tempdir().unwrap();
    let (otlp_addr, spans) = otlp::receiver().await;

    // Broker and coordinator, the coordinator with metrics and its spans to the receiver.
    let (_broker, broker_url) = start_broker();
    let coordinator_metrics = format!("127.0.0.1:{}", free_port());
    let coordinator_traces = format!("http://{otlp_addr}/v1/traces");
    let (mut coordinator, coordinator_url, org) = start_coordinator(
        root.path(),
        &broker_url,
        &[
            "--metrics-listen",
            &coordinator_metrics,
            "--otlp-traces-endpoint",
            &coordinator_traces,
        ],
    );
    let webhook = start_webhook();

    // Three daemons: the first runs two devices (a, d), the others one each. Each gets two
    // prime sets of the public test pool (one per aux-info run it will take part in).
    let otlp_endpoint = format!("http://{otlp_addr}");
    let mut signers = vec![
        Signer::configure(
            "s1",
            root.path(),
            &org,
            &coordinator_url,
            &broker_url,
            &webhook,
            &["a", "d"],
            None,
        ),
        Signer::configure(
            "s2",
            root.path(),
            &org,
            &coordinator_url,
            &broker_url,
            &webhook,
            &["b"],
            Some(&otlp_endpoint),
        ),
        Signer::configure(
            "s3",
            root.path(),
            &org,
            &coordinator_url,
            &broker_url,
            &webhook,
            &["c"],
            None,
        ),
    ];
    for (k, s) in signers.iter_mut().enumerate() {
        s.import_primes(2 * k, 2);
        s.start();
    }
    let operator = Operator::new(&coordinator_url, &org);
    let ids = operator.wait_devices(&["a", "b", "c", "d"]).await;
    let (a, b, c, d) = (ids[0].clone(), ids[1].clone(), ids[2].clone(), ids[3].clone());
    let abc = vec![a.clone(), b.clone(), c.clone()];

    // Two vaults, created together: secp256k1 (keygen + aux-info) and ed25519 (FROST).
    let secp_keygen = operator.create_vault("treasury", "secp256k1", 2, &abc).await;
    // The ed25519 vault has both devices of the first daemon (a and d), which runs with one
    // permit: its two committee members share it.
    let abd = vec![a.clone(), b.clone(), d.clone()];
    let ed_keygen = operator.create_vault("solana", "ed25519", 2, &abd).await;
    let ed_op = operator.wait_final(&ed_keygen, KEYGEN).await;
    completed(&ed_op);
    let secp_op = operator.wait_final(&secp_keygen, KEYGEN).await;
    completed(&secp_op);
    let secp_vault = secp_op.vault_id.clone();
    let ed_vault = ed_op.vault_id.clone();
    let secp_key = secp_op.result.as_ref().unwrap().public_key.clone().unwrap();
    let ed_key = ed_op.result.as_ref().unwrap().public_key.clone().unwrap();
    assert_eq!(secp_key.len(), 66);
    assert_eq!(ed_key.len(), 64);
    // Every device stored its share (generation 0) and used one prime set for aux-info.
    for (s, dev) in [(0, &a), (1, &b), (2, &c)] {
        assert_eq!(share_files(&signers[s], dev, &secp_vault).len(), 1, "{dev}");
        assert_eq!(prime_sets(&signers[s]), 1, "{}", signers[s].name);
    }
    for (s, dev) in [(0, &a), (1, &b), (0, &d)] {
        assert_eq!(share_files(&signers[s], dev, &ed_vault).len(), 1, "{dev}");
    }
    // A second secp256k1 vault on the same ordered device set, created and used through the
    // operator CLI, reuses its aux-info: no prime set is consumed.
    let cli = Cli {
        url: coordinator_url.clone(),
        id: org.operator.0.clone(),
        secret: org.operator.1.clone(),
    };
    let devices = cli.run(&["device", "list"]).await;
    assert_eq!(devices.as_array().unwrap().len(), 4, "{devices}");
    let signer_list = abc.join(",");
    let created = cli
        .run(&[
            "vault",
            "create",
            "--name",
            "operations",
            "--curve",
            "secp256k1",
            "--threshold",
            "2",
            "--signers",
            &signer_list,
            "--wait",
        ])
        .await;
    assert_eq!(created["state"], "Completed", "{created}");
    for s in &signers {
        assert_eq!(
            prime_sets(s),
            1,
            "{} consumed a prime set for a known device set",
            s.name
        );
    }
    let second_vault = created["vaultId"].as_str().unwrap().to_owned();
    let second_key = created["result"]["publicKey"].as_str().unwrap().to_owned();
    assert_ne!(second_key, secp_key);
    let shown = cli.run(&["vault", "show", &second_vault]).await;
    assert_eq!(shown["publicKey"], json!(second_key));
    assert_eq!(shown["status"], "Active");
    let digest = [0x24u8; 32];
    let signed = cli
        .run(&[
            "vault",
            "sign",
            &second_vault,
            "--digest",
            &hex::encode(digest),
            "--wait",
        ])
        .await;
    assert_eq!(signed["state"], "Completed", "{signed}");
    verify_secp256k1_parts(
        &second_key,
        &digest,
        signed["result"]["signature"].as_str().unwrap(),
        signed["result"]["recoveryId"].as_u64().unwrap() as u8,
    );
    let again = cli.run(&["op", "wait", signed["id"].as_str().unwrap()]).await;
    assert_eq!(again["result"]["signature"], signed["result"]["signature"]);

    // Sign: a digest with the secp256k1 vault, a message with the ed25519 vault.
    let digest = [0x42u8; 32];
    let op = operator
        .signed(&secp_vault, json!({"digest": hex::encode(digest)}))
        .await;
    verify_secp256k1(&secp_key, &digest, &op);
    let message = b"transfer 5 SOL to the cold wallet";
    let op = operator
        .signed(&ed_vault, json!({"message": hex::encode(message)}))
        .await;
    verify_ed25519(&ed_key, message, &op);

    // The approver rejects a message containing "REJECT": no signature.
    let sign = operator
        .request_signature(
            &secp_vault,
            json!({"message": hex::encode(b"please REJECT this")}),
        )
        .await;
    let op = operator.wait_final(&sign, SIGN).await;
    assert_eq!(op.state, "Rejected", "{op:?}");
    assert!(op.result.is_none_or(|r| r.signature.is_none()));

    // Reshare both vaults: a leaves, d joins; secp256k1 goes 2-of-3 → 3-of-3.
    let bcd = vec![b.clone(), c.clone(), d.clone()];
    let reshare = operator.request_reshare(&secp_vault, 3, &bcd).await;
    let ed_reshare = operator.request_reshare(&ed_vault, 2, &bcd).await;
    let op = operator.wait_final(&reshare, KEYGEN).await;
    completed(&op);
    assert_eq!(
        op.result.as_ref().unwrap().public_key.as_deref(),
        Some(secp_key.as_str()),
        "same key"
    );
    // The coordinator takes as many old holders as the old threshold needs as dealers: a
    // deals only if it voted among the first two.
    let a_dealt = op.committee.iter().any(|m| m.device_id == a);
    let op = operator.wait_final(&ed_reshare, KEYGEN).await;
    completed(&op);
    assert_eq!(
        op.result.as_ref().unwrap().public_key.as_deref(),
        Some(ed_key.as_str()),
        "same key"
    );
    // A dealer that left destroys its share once the coordinator completed the reshare (a
    // holder outside the committee keeps it: it has no evidence of its own); the others keep
    // only the new generation.
    let a_expected: Vec<String> = if a_dealt {
        vec![]
    } else {
        vec!["g0.vsrec".to_owned()]
    };
    let start = std::time::Instant::now();
    while !(share_files(&signers[0], &a, &secp_vault) == a_expected
        && share_files(&signers[1], &b, &secp_vault) == vec!["g1.vsrec".to_owned()])
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "old shares not destroyed: {:?} {:?}",
            share_files(&signers[0], &a, &secp_vault),
            share_files(&signers[1], &b, &secp_vault)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Sign again with the new set (3-of-3: b, c and the new device d).
    let digest = [0x17u8; 32];
    let op = operator
        .signed(&secp_vault, json!({"digest": hex::encode(digest)}))
        .await;
    verify_secp256k1(&secp_key, &digest, &op);
    let mut committee: Vec<String> = op.committee.iter().map(|m| m.device_id.clone()).collect();
    committee.sort();
    let mut expected = bcd.clone();
    expected.sort();
    assert_eq!(committee, expected);
    let message = b"after the reshare";
    let op = operator
        .signed(&ed_vault, json!({"message": hex::encode(message)}))
        .await;
    verify_ed25519(&ed_key, message, &op);

    // Presignatures: b, signer 0 of the reshared secp256k1 vault, keeps two in stock for
    // the committee b, c, d (its daemon has PresignaturePoolTarget 2); a message signature
    // by that committee uses one in a single online round, and it is gone afterwards.
    let start = std::time::Instant::now();
    loop {
        let ops = operator
            .client
            .operations_of(&secp_vault, "Presign")
            .await
            .unwrap();
        let available = ops
            .iter()
            .filter(|o| o.state == "Completed" && o.presign.as_ref().unwrap().consumed_by.is_none())
            .count();
        if available >= 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no presignatures stocked: {ops:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let message = b"pay 2 ETH to the exchange";
    let op = operator
        .signed(&secp_vault, json!({"message": hex::encode(message)}))
        .await;
    let presignature = op
        .sign
        .as_ref()
        .unwrap()
        .presignature_id
        .clone()
        .expect("a presignature was used");
    verify_secp256k1(&secp_key, &eip191(message), &op);
    for (s, dev) in [(1, &b), (2, &c), (0, &d)] {
        let record = signers[s]
            .dir
            .join("keystore/devices")
            .join(dev)
            .join("presignature")
            .join(&secp_vault)
            .join(format!("{presignature}.vsrec"));
        assert!(
            !record.exists(),
            "a used presignature is still stored: {}",
            record.display()
        );
    }

    // SIGKILL the daemon of c during an ECDSA signing run, restart it: the run fails
    // cleanly, c still has its shares and signs the next request.
    let sign = operator
        .request_signature(&secp_vault, json!({"digest": hex::encode([0x99u8; 32])}))
        .await;
    // Killed once c's run started, as its log says (the coordinator hears of a start only
    // 250 ms into a run).
    let asked = std::time::Instant::now();
    while !signers[2]
        .all_output()
        .lines()
        .any(|l| l.contains("protocol run starting") && l.contains(&sign))
    {
        assert!(asked.elapsed() < SIGN, "device c never started the signature");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signers[2].proc().kill();
    signers[2].start();
    let op = operator.wait_final(&sign, Duration::from_secs(240)).await;
    assert_eq!(op.state, "Failed", "{op:?}");
    assert!(
        op.failure
            .as_ref()
            .unwrap()
            .culprit_device_ids
            .iter()
            .all(|x| x != &b && x != &d),
        "{op:?}"
    );
    let digest = [0x55u8; 32];
    let op = operator
        .signed(&secp_vault, json!({"digest": hex::encode(digest)}))
        .await;
    verify_secp256k1(&secp_key, &digest, &op);

    // HTTP API: register a device at run time; /version, /readyz; /metrics.
    let http = http_client();
    let s2 = &signers[1];
    let resp = http
        .post(format!("http://127.0.0.1:{}/register-vs-device", s2.port))
        .bearer_auth(API_TOKEN)
        .json(&json!({"DeviceName": "e", "OrgId": org.id}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let body: serde_json::Value = resp.json().await.unwrap();
    let e = body["deviceId"].as_str().unwrap().to_owned();
    assert_eq!(operator.wait_devices(&["e"]).await, vec![e]);
    let readyz = http
        .get(format!("http://127.0.0.1:{}/readyz", s2.port))
        .send()
        .await
        .unwrap();
    assert_eq!(readyz.status(), 200);
    let metrics = scrape(&format!("127.0.0.1:{}", signers[0].prometheus_port)).await;
    for needle in [
        "vsigner_operations_total{kind=\"keygen\",outcome=\"succeeded\"}",
        "vsigner_protocol_duration_seconds",
        "vsigner_approval_latency_seconds",
        "vsigner_devices 2",
    ] {
        assert!(metrics.contains(needle), "/metrics lacks {needle}:\n{metrics}");
    }

    // The coordinator's metrics: what the operations above did, as it saw them. A token
    // request with a wrong secret is refused and counted.
    let refused = http_client()
        .post(format!("{coordinator_url}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", org.operator.0.as_str()),
            ("client_secret", "not-the-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let metrics = scrape(&coordinator_metrics).await;
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("/metrics lacks {series}:\n{metrics}"))
    };
    assert_eq!(
        value("vsigner_coordinator_operations_created_total{kind=\"Keygen\"}"),
        3.0
    );
    assert_eq!(
        value("vsigner_coordinator_operations_ended_total{kind=\"Keygen\",state=\"Completed\"}"),
        3.0
    );
    assert_eq!(
        value("vsigner_coordinator_operations_ended_total{kind=\"Reshare\",state=\"Completed\"}"),
        2.0
    );
    assert_eq!(
        value("vsigner_coordinator_operations_ended_total{kind=\"Sign\",state=\"Rejected\"}"),
        1.0
    );
    assert!(value("vsigner_coordinator_operations_ended_total{kind=\"Sign\",state=\"Completed\"}") >= 5.0);
    assert!(value("vsigner_coordinator_votes_total{choice=\"approve\"}") >= 10.0);
    assert!(value("vsigner_coordinator_votes_total{choice=\"reject\"}") >= 2.0);
    assert_eq!(
        value("vsigner_coordinator_time_to_result_seconds_count{kind=\"Keygen\"}"),
        3.0
    );
    assert!(value("vsigner_coordinator_time_to_quorum_seconds_count{kind=\"Sign\"}") >= 5.0);
    assert!(value("vsigner_coordinator_db_transaction_seconds_count{what=\"act\"}") >= 20.0);
    assert_eq!(value("vsigner_coordinator_broker_connected"), 1.0);
    assert!(value("vsigner_coordinator_token_refusals_total{reason=\"invalid_client\"}") >= 1.0);
    // Histograms, not summaries: buckets are rendered.
    assert!(
        metrics.contains("vsigner_coordinator_time_to_result_seconds_bucket{kind=\"Sign\",le=\"0.5\"}"),
        "{metrics}"
    );

    // The audit log holds every device action with its device's signature: `vsigner audit
    // verify` checks it with the devices' keys alone, online and from an export, and an
    // export whose statement was changed after the fact fails.
    let auditor = Cli {
        url: coordinator_url.clone(),
        id: org.operator.0.clone(),
        secret: org.operator.1.clone(),
    };
    let report = auditor.run(&["audit", "verify"]).await;
    assert_eq!(report["problems"], json!([]), "{report}");
    assert!(report["statements"].as_u64().unwrap() >= 20, "{report}");
    assert!(report["records"].as_u64().unwrap() >= 4, "{report}");
    assert!(report["actions"].as_u64().unwrap() >= 10, "{report}");
    let export = auditor.run(&["audit", "export"]).await;
    let file = root.path().join("audit.json");
    std::fs::write(&file, serde_json::to_vec(&export).unwrap()).unwrap();
    let offline = auditor
        .run(&["audit", "verify", "--from", file.to_str().unwrap()])
        .await;
    // The devices keep working between the two reads (presignatures): the export holds at
    // least what was verified online.
    assert_eq!(offline["problems"], json!([]), "{offline}");
    assert!(
        offline["statements"].as_u64() >= report["statements"].as_u64(),
        "{offline} {report}"
    );
    let mut forged = export.clone();
    let entry = forged["auditLog"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["event"] == "device_statement" && e["detail"].as_str().unwrap().contains("\"approve\""))
        .unwrap();
    let detail = entry["detail"]
        .as_str()
        .unwrap()
        .replace("\"approve\"", "\"reject\"");
    entry["detail"] = json!(detail);
    std::fs::write(&file, serde_json::to_vec(&forged).unwrap()).unwrap();
    let out = Command::new(bin())
        .args(["audit", "verify", "--json", "--from", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a changed statement must fail the check");
    let refused: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        refused["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().contains("not signed by the device")),
        "{refused}"
    );

    // Graceful shutdown on SIGTERM; spans reached the OTLP receiver.
    for s in &mut signers {
        let status = s.proc().terminate(Duration::from_secs(60));
        assert!(status.success(), "{} exited with {status}", s.name);
    }
    let status = coordinator.terminate(Duration::from_secs(30));
    assert!(status.success(), "the coordinator exited with {status}");
    let names = otlp::span_names(&spans);
    // The daemon's spans and the coordinator's (a GraphQL request, a device's action).
    for expected in ["operation", "protocol", "round", "vote", "graphql", "act"] {
        assert!(
            names.iter().any(|n| n == expected),
            "no {expected:?} span among {names:?}"
        );
    }

    // No secret in any output.
    coordinator.kill();
    let mut outputs: Vec<(String, String)> =
        signers.iter().map(|s| (s.name.clone(), s.all_output())).collect();
    outputs.push(("coordinator".into(), coordinator.output.text()));
    for (name, text) in &outputs {
        for secret in [
            org.signer.1.as_str(),
            org.operator.1.as_str(),
            PASSPHRASE,
            API_TOKEN,
        ] {
            assert!(!text.contains(secret), "{name}'s output contains a secret");
        }
    }
    // Keystore files never hold plaintext: the public key of a share is not in any file.
    drop(webhook);
}

#[test]
fn a_bad_configuration_fails_fast_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    // People must not approve on a page the coordinator serves.
    let passkeys = dir.path().join("passkeys.json");
    let origin: url::Url = "http://localhost:1".parse().unwrap();
    let alice = vsigner_approval::human::soft_passkey::SoftPasskey::new()
        .register("Alice", &origin, "localhost")
        .unwrap();
    std::fs::write(
        &passkeys,
        vsigner_approval::human::soft_passkey::passkeys_file(&[alice]),
    )
    .unwrap();
    let cases = [
        (json!({"ApprovalMode": "Sometimes"}), "ApprovalMode"),
        (
            json!({"ApprovalMode": "Human", "HumanApprovalPasskeysFile": passkeys.to_str().unwrap(),
                   "HumanApprovalOrigin": "http://localhost:1", "APIBaseURL": "http://localhost:1/"}),
            "HumanApprovalOrigin",
        ),
        (json!({"Porrt": 8080}), "Porrt"),
        (json!({"APIBaseURL": "not a url"}), "APIBaseURL"),
        (json!({"AuthClientSecret": null}), "AuthClientSecret"),
    ];
    for (k, (patch, key)) in cases.into_iter().enumerate() {
        let mut cfg = json!({
            "Port": 0, "PrometheusPort": 0, "OrgId": "org", "AuthClientId": "id",
            "AuthClientSecret": "the-client-secret-value", "APIBaseURL": "http://127.0.0.1:1",
            "MQTTEndpoint": "mqtt://127.0.0.1:1", "ApprovalMode": "AlwaysApprove",
            "KeystoreSealing": "passphrase", "KeystorePassphrase": PASSPHRASE,
            "SignerAPIToken": API_TOKEN,
            "STORAGE_BUCKET_URL": dir.path().join("ks").to_str().unwrap(),
        });
        for (name, value) in patch.as_object().unwrap() {
            cfg[name] = value.clone();
        }
        let path = dir.path().join(format!("c{k}.json"));
        std::fs::write(&path, cfg.to_string()).unwrap();
        let start = std::time::Instant::now();
        let out = Command::new(bin())
            .args(["run", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "took {:?}",
            start.elapsed()
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let all = format!("{stderr}{}", String::from_utf8_lossy(&out.stdout));
        assert!(stderr.contains(key), "stderr does not name {key}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        for secret in ["the-client-secret-value", PASSPHRASE, API_TOKEN] {
            assert!(!all.contains(secret), "output shows a secret: {all}");
        }
    }
}

#[test]
fn unreachable_coordinator_or_bad_credentials_fail_with_a_clear_error() {
    // A coordinator that refuses the credentials: the daemon stops and says so.
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let org = coordinator_init(&db);
    let port = free_port();
    let _coordinator = Proc::spawn(
        "coordinator",
        Command::new(bin()).args([
            "coordinator",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
            &db,
        ]),
    );
    wait_for_port(port, "coordinator");
    let cfg = json!({
        "Port": 0, "PrometheusPort": 0, "OrgId": org.id, "AuthClientId": org.signer.0,
        "AuthClientSecret": "wrong-secret-of-the-test", "APIBaseURL": format!("http://127.0.0.1:{port}"),
        "MQTTEndpoint": "mqtt://127.0.0.1:1", "ApprovalMode": "AlwaysApprove",
        "KeystoreSealing": "passphrase", "KeystorePassphrase": PASSPHRASE,
        "SignerAPIToken": API_TOKEN,
        "STORAGE_BUCKET_URL": dir.path().join("ks").to_str().unwrap(),
    });
    let path = dir.path().join("c.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let out = Command::new(bin())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("AuthClientSecret"), "{stderr}");
    assert!(!stderr.contains("wrong-secret-of-the-test"));
}

/// An HTTP client (TLS by rustls with ring, the workspace's one provider).
/// `GET http://ADDR/metrics`: the Prometheus text.
async fn scrape(addr: &str) -> String {
    http_client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
