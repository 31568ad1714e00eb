//! Independent implementation: `examples/approval-webhook/server.py` (Python `cryptography`).
//! Its io.finnet-style reply signatures must verify in vsigner, and it must verify vsigner's
//! RFC 9421 request signatures (refusing unsigned, tampered or impostor requests).
//! Skipped, with a message, when python3 or `cryptography` is missing.
// Test code may unwrap (clippy.toml allows it only inside #[test] functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::pkcs8::EncodePublicKey;
use ed25519_dalek::SigningKey;
use vsigner_approval::httpsig;
use vsigner_approval::{AnyApprover, ApprovalConfig, ApprovalValues, DeviceKey, Vote};

use common::*;

/// Starts the server; returns it, its port and its reply key (hex of PEM).
fn start_server(max_wei: u128) -> (Py, u16, String) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/approval-webhook/server.py"
    );
    let device_pub = hex::encode(device_signing_key().verifying_key().as_bytes());
    let mut child = Command::new("python3")
        .arg(script)
        .args(["--port", "0", "--max-wei", &max_wei.to_string()])
        .args(["--device", &format!("{DEVICE_ID}={device_pub}")])
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
    (
        py,
        v["port"].as_u64().unwrap() as u16,
        v["approvalHTTPPublicKeyHex"].as_str().unwrap().to_owned(),
    )
}

fn approver(port: u16, key_hex: &str, device: SigningKey) -> AnyApprover {
    let config = ApprovalConfig::from_values(&ApprovalValues {
        approval_mode: Some("API".into()),
        external_transaction_approval_url: Some(format!("http://127.0.0.1:{port}/transaction-approval")),
        external_reshare_approval_url: Some(format!("http://127.0.0.1:{port}/reshare-approval")),
        approval_http_public_key_hex: Some(key_hex.into()),
        approval_timeout_seconds: Some("5".into()),
        ..Default::default()
    })
    .unwrap();
    AnyApprover::from_config(&config, DeviceKey::new(DEVICE_ID, device)).unwrap()
}

#[tokio::test]
async fn python_webhook_interoperates() {
    if !python_available() {
        println!("SKIPPED: python3 with the `cryptography` package is not available");
        return;
    }
    let (_py, port, key_hex) = start_server(ONE_ETH);
    let a = approver(port, &key_hex, device_signing_key());

    // Policy answers, signed by Python and verified by vsigner.
    let d = a.decide(&sign_tx("treasury", ONE_ETH)).await;
    assert!(d.is_approval(), "{d:?}");
    let d = a.decide(&sign_tx("treasury", ONE_ETH + 1)).await;
    assert_eq!(
        (d.vote, d.failed),
        (Vote::Reject, false),
        "above the limit: {d:?}"
    );
    let d = a.decide(&sign_tx("ABSTAIN fund", 1)).await;
    assert_eq!((d.vote, d.failed), (Vote::Abstain, false), "{d:?}");
    let d = a.decide(&sign_message("ops", b"please ABSTAIN")).await;
    assert_eq!((d.vote, d.failed), (Vote::Abstain, false), "{d:?}");
    let d = a.decide(&sign_message("ops", b"hello")).await;
    assert!(d.is_approval(), "{d:?}");
    let d = a.decide(&sign_digest("ops")).await;
    assert!(d.is_approval(), "{d:?}");
    let d = a.decide(&create_vault("treasury")).await;
    assert!(d.is_approval(), "{d:?}");
    let d = a.decide(&reshare("REJECT this", 3)).await;
    assert_eq!((d.vote, d.failed), (Vote::Reject, false), "{d:?}");

    // vsigner really checks Python's signatures: with another configured key, nothing passes.
    let other = SigningKey::from_bytes(&[5; 32])
        .verifying_key()
        .to_public_key_pem(Default::default())
        .unwrap();
    let wrong = approver(port, &hex::encode(other.as_bytes()), device_signing_key());
    let d = wrong.decide(&sign_tx("treasury", 1)).await;
    assert!(!d.is_approval() && d.failed, "{d:?}");
    assert!(d.reason.contains("signature does not verify"), "{d:?}");

    // Python checks vsigner's signatures: an impostor device key is refused.
    let impostor = approver(port, &key_hex, SigningKey::from_bytes(&[0x43; 32]));
    let d = impostor.decide(&sign_tx("treasury", 1)).await;
    assert!(!d.is_approval() && d.failed, "{d:?}");
    assert!(d.reason.contains("HTTP 401"), "{d:?}");
}

#[tokio::test]
async fn python_webhook_refuses_unsigned_and_tampered_requests() {
    if !python_available() {
        println!("SKIPPED: python3 with the `cryptography` package is not available");
        return;
    }
    let (_py, port, _) = start_server(ONE_ETH);
    let url = format!("http://127.0.0.1:{port}/transaction-approval");
    let body = sign_tx("treasury", 1).to_json_bytes();
    let client = http_client();
    let post = |body: Vec<u8>, h: Option<&httpsig::RequestHeaders>| {
        let mut r = client
            .post(&url)
            .header("Content-Type", "application/json")
            .header("VS-Nonce", "77");
        if let Some(h) = h {
            r = r
                .header("Content-Digest", &h.content_digest)
                .header("Signature-Input", &h.signature_input)
                .header("Signature", &h.signature);
        }
        r.body(body).send()
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let key = DeviceKey::new(DEVICE_ID, device_signing_key());
    let h = httpsig::sign_request(&key, &url, &body, 77, now);

    // Correctly signed: answered.
    let r = post(body.clone(), Some(&h)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["status"], "approved");

    // Unsigned: refused.
    assert_eq!(post(body.clone(), None).await.unwrap().status(), 401);

    // Body changed after signing (digest recomputed by the attacker too): refused.
    let mut tampered = body.clone();
    let at = tampered.len() - 2;
    tampered[at] ^= 1;
    let mut h2 = h.clone();
    h2.content_digest = httpsig::content_digest(&tampered);
    assert_eq!(post(tampered, Some(&h2)).await.unwrap().status(), 401);

    // Signed for another nonce than the one sent: refused.
    let h3 = httpsig::sign_request(&key, &url, &body, 78, now);
    assert_eq!(post(body.clone(), Some(&h3)).await.unwrap().status(), 401);

    // Signed for another URL: refused.
    let h4 = httpsig::sign_request(
        &key,
        &format!("http://127.0.0.1:{port}/reshare-approval"),
        &body,
        77,
        now,
    );
    assert_eq!(post(body.clone(), Some(&h4)).await.unwrap().status(), 401);

    // Too old: refused.
    let h5 = httpsig::sign_request(&key, &url, &body, 77, now - 3600);
    assert_eq!(post(body, Some(&h5)).await.unwrap().status(), 401);
}

/// An HTTP client (TLS by rustls with ring, the workspace's one provider).
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
