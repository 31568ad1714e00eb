//! Drop-in for io.finnet's Virtual Signer: approval handlers written the way io.finnet's
//! published samples are (`tests/handlers/iofinnet_style.py`: the typename switch, the field
//! paths, the nonce taken from `Accept-Signature` or from `VS-Nonce` by exact case, the
//! signed reply) decide vsigner's requests as their rules intend. Before [compat] vsigner
//! sent other typenames, so the vault-creation and reshare rules never ran and the handler
//! approved; the message was hex, so a word rule could never match; and `vs-nonce` came in
//! lower case, so the JavaScript sample's way found no nonce.
//! Skipped, with a message, when python3 or `cryptography` is missing.
// Test code may unwrap (clippy.toml allows it only inside #[test] functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use vsigner_approval::{AnyApprover, ApprovalConfig, ApprovalValues, DeviceKey, Vote};

use common::*;

/// Starts the handler; returns it, its approver and the file it logs each request to.
fn start(nonce: &str, log: &std::path::Path) -> (Py, AnyApprover) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/handlers/iofinnet_style.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(["--nonce", nonce, "--log"])
        .arg(log)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let py = Py(child);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let port = v["port"].as_u64().unwrap();
    let config = ApprovalConfig::from_values(&ApprovalValues {
        approval_mode: Some("API".into()),
        external_transaction_approval_url: Some(format!(
            "http://127.0.0.1:{port}/my-api/transaction-approval"
        )),
        external_reshare_approval_url: Some(format!("http://127.0.0.1:{port}/my-api/reshare-approval")),
        approval_http_public_key_hex: Some(v["approvalHTTPPublicKeyHex"].as_str().unwrap().into()),
        approval_timeout_seconds: Some("5".into()),
        ..Default::default()
    })
    .unwrap();
    let approver =
        AnyApprover::from_config(&config, DeviceKey::new(DEVICE_ID, device_signing_key())).unwrap();
    (py, approver)
}

async fn vote(a: &AnyApprover, r: &vsigner_approval::ApprovalRequest) -> Vote {
    let d = a.decide(r).await;
    assert!(!d.failed, "the handler's answer must be trusted: {d:?}");
    d.vote
}

async fn samples_rules_decide(a: &AnyApprover) {
    use Vote::{Approve, Reject};
    // OperationCreateVault_v3: a device id with "fq", or a vault name with "malicious".
    assert_eq!(vote(a, &create_vault("treasury")).await, Approve);
    assert_eq!(vote(a, &create_vault("a malicious vault")).await, Reject);
    let mut fq = create_vault("treasury");
    fq.vault.signers[1].id = "vtrfq0g0".into();
    assert_eq!(vote(a, &fq).await, Reject);
    // OperationReshare_v3: rDetails.newThreshold == 7.
    assert_eq!(vote(a, &reshare("treasury", 3)).await, Approve);
    assert_eq!(vote(a, &reshare("treasury", 7)).await, Reject);
    // OperationSign: a word in the text of the message (signingData.data).
    assert_eq!(vote(a, &sign_message("ops", b"hello")).await, Approve);
    assert_eq!(
        vote(a, &sign_message("ops", b"pay the malicious party")).await,
        Reject
    );
    assert_eq!(vote(a, &sign_digest("ops")).await, Approve);
    // OperationTransferOut_v3: amountOriginal, wei as a decimal string.
    assert_eq!(vote(a, &sign_tx("treasury", ONE_ETH)).await, Approve);
    assert_eq!(vote(a, &sign_tx("treasury", 6_660_000_000_000_000)).await, Reject);
}

#[tokio::test]
async fn python_sample_style_handler_decides_as_intended() {
    if !python_available() {
        println!("SKIPPED: python3 with the `cryptography` package is not available");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.jsonl");
    let (_py, a) = start("accept-signature", &log);
    samples_rules_decide(&a).await;
    let seen = std::fs::read_to_string(&log).unwrap();
    assert_eq!(seen.lines().count(), 10, "{seen}");
}

#[tokio::test]
async fn javascript_sample_style_handler_finds_vs_nonce_by_exact_case() {
    if !python_available() {
        println!("SKIPPED: python3 with the `cryptography` package is not available");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.jsonl");
    let (_py, a) = start("vs-nonce", &log);
    samples_rules_decide(&a).await;
    // The header names as they came on the wire: io.finnet's spelling.
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&log).unwrap().lines().next().unwrap()).unwrap();
    let names: Vec<&str> = first["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for name in ["VS-Nonce", "Accept-Signature", "Content-Type"] {
        assert!(names.contains(&name), "{name} not sent by that name: {names:?}");
    }
}
