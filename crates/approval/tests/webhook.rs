//! `API` mode against a real HTTP webhook (axum on 127.0.0.1:0) that verifies vsigner's
//! RFC 9421 request signature with its own code and answers per scenario.
// Test code may unwrap (clippy.toml allows it only inside #[test] functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::EncodePublicKey;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha512};
use url::Url;
use vsigner_approval::{ApiApprover, ApiConfig, ApprovalMode, Decision, DeviceKey, Vote};

use common::*;

struct Server {
    reply_key: SigningKey,
    device_key: VerifyingKey,
    device_id: String,
    hits: Mutex<HashMap<String, usize>>,
    bodies: Mutex<Vec<Value>>,
}

/// The test's own RFC 9421 verification of vsigner's request (not the crate's code).
fn verify_rfc9421(
    s: &Server,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let input = h("signature-input").ok_or("no Signature-Input")?;
    let sig = h("signature").ok_or("no Signature")?;
    let (label, params) = input.split_once('=').ok_or("bad Signature-Input")?;
    let list_end = params.find(')').ok_or("bad component list")?;
    let components: Vec<&str> = params[1..list_end]
        .split(' ')
        .map(|c| c.trim_matches('"'))
        .filter(|c| !c.is_empty())
        .collect();
    for needed in [
        "@method",
        "@target-uri",
        "content-type",
        "content-digest",
        "vs-nonce",
    ] {
        if !components.contains(&needed) {
            return Err(format!("{needed} not covered"));
        }
    }
    let p = &params[list_end + 1..];
    if !p.contains(&format!(";keyid=\"{}\"", s.device_id)) || !p.contains(";alg=\"ed25519\"") {
        return Err(format!("bad params {p}"));
    }
    if !p.contains(";created=") {
        return Err("no created".into());
    }
    let digest = format!("sha-512=:{}:", B64.encode(Sha512::digest(body)));
    if h("content-digest").as_deref() != Some(digest.as_str()) {
        return Err("Content-Digest does not match the body".into());
    }
    let host = h("host").ok_or("no Host")?;
    let mut base = String::new();
    for c in &components {
        let v = match *c {
            "@method" => method.as_str().to_owned(),
            "@target-uri" => format!("http://{host}{uri}"),
            name => h(name).ok_or(format!("covered header {name} missing"))?,
        };
        base.push_str(&format!("\"{c}\": {v}\n"));
    }
    base.push_str(&format!("\"@signature-params\": {params}"));
    let b64 = sig
        .strip_prefix(&format!("{label}=:"))
        .and_then(|s| s.strip_suffix(':'))
        .ok_or("bad Signature")?;
    let sig =
        Signature::from_slice(&B64.decode(b64).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    s.device_key
        .verify_strict(base.as_bytes(), &sig)
        .map_err(|_| "request signature does not verify".to_owned())
}

fn io_finnet_signed(key: &SigningKey, status: StatusCode, body: Vec<u8>, digest_of: &[u8]) -> Response {
    let digest = format!("SHA-512={}", B64.encode(Sha512::digest(digest_of)));
    let signed = format!("content-type: application/json\ndigest: {digest}");
    let sig = B64.encode(key.sign(signed.as_bytes()).to_bytes());
    let mut r = (status, body).into_response();
    let hs = r.headers_mut();
    hs.insert("content-type", HeaderValue::from_static("application/json"));
    hs.insert("digest", HeaderValue::from_str(&digest).unwrap());
    hs.insert(
        "signature",
        HeaderValue::from_str(&format!(
            "keyId=\"eddsa-key\",algorithm=\"hs2019\",headers=\"content-type digest\",signature=\"{sig}\""
        ))
        .unwrap(),
    );
    r
}

async fn handle(
    State(s): State<Arc<Server>>,
    Path(scenario): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    *s.hits.lock().unwrap().entry(scenario.clone()).or_default() += 1;
    if let Err(e) = verify_rfc9421(&s, &method, &uri, &headers, &body) {
        return (StatusCode::UNAUTHORIZED, e).into_response();
    }
    // io.finnet headers.
    let nonce: u64 = headers["vs-nonce"].to_str().unwrap().parse().unwrap();
    let accept = headers["accept-signature"].to_str().unwrap();
    assert_eq!(
        accept,
        format!("sig1=(\"content-type\" \"digest\");nonce={nonce};keyid=\"eddsa-key\"")
    );
    assert_eq!(headers["content-type"], "application/json");
    s.bodies
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());

    let reply =
        |status: &str, nonce: u64| serde_json::to_vec(&json!({"status": status, "nonce": nonce})).unwrap();
    let signed = |body: Vec<u8>| io_finnet_signed(&s.reply_key, StatusCode::OK, body.clone(), &body);
    match scenario.as_str() {
        "approve" => signed(reply("approved", nonce)),
        "reject" => signed(reply("rejected", nonce)),
        "abstain" => signed(reply("abstain", nonce)),
        "unknown-status" => signed(reply("maybe", nonce)),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            signed(reply("approved", nonce))
        }
        "500" => {
            let b = serde_json::to_vec(&json!({"status": "approved", "nonce": nonce})).unwrap();
            io_finnet_signed(&s.reply_key, StatusCode::INTERNAL_SERVER_ERROR, b.clone(), &b)
        }
        "unsigned" => {
            let mut r = (StatusCode::OK, reply("approved", nonce)).into_response();
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            r
        }
        "bad-signature" => {
            let other = SigningKey::from_bytes(&[9; 32]);
            let b = reply("approved", nonce);
            io_finnet_signed(&other, StatusCode::OK, b.clone(), &b)
        }
        "digest-mismatch" => {
            // A correctly signed digest, but of another body than the one sent.
            io_finnet_signed(
                &s.reply_key,
                StatusCode::OK,
                reply("approved", nonce),
                &reply("rejected", nonce),
            )
        }
        "wrong-nonce" => signed(reply("approved", nonce.wrapping_add(1))),
        "garbage" => signed(b"<html>approved</html>".to_vec()),
        "bare-signature" => {
            // io.finnet's JavaScript sample: `Signature` is the bare base64 signature.
            let b = reply("approved", nonce);
            let mut r = signed(b);
            let sig = r.headers()["signature"].to_str().unwrap().to_owned();
            let bare = sig
                .split("signature=\"")
                .nth(1)
                .unwrap()
                .trim_end_matches('"')
                .to_owned();
            r.headers_mut()
                .insert("signature", HeaderValue::from_str(&bare).unwrap());
            r
        }
        "charset" => {
            // Signed over the literal "application/json", sent with a charset parameter.
            let mut r = signed(reply("approved", nonce));
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            r
        }
        "redirect" => {
            // Redirects are not followed: the answer must come from the configured URL.
            let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
            r.headers_mut()
                .insert("location", HeaderValue::from_static("/approve"));
            r
        }
        "string-nonce" => {
            let b = serde_json::to_vec(&json!({"status": "approved", "nonce": nonce.to_string()})).unwrap();
            signed(b)
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

struct Fixture {
    server: Arc<Server>,
    base: String,
}

async fn start() -> Fixture {
    let device = device_signing_key();
    let server = Arc::new(Server {
        reply_key: SigningKey::from_bytes(&[0x11; 32]),
        device_key: device.verifying_key(),
        device_id: DEVICE_ID.into(),
        hits: Mutex::default(),
        bodies: Mutex::default(),
    });
    let app = Router::new()
        .route("/{scenario}", post(handle))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Fixture { server, base }
}

impl Fixture {
    fn reply_public_key(&self) -> VerifyingKey {
        self.server.reply_key.verifying_key()
    }

    fn approver(&self, tx_path: &str, reshare_path: &str, key: Option<VerifyingKey>) -> ApiApprover {
        let config = ApiConfig {
            transaction_url: Url::parse(&format!("{}/{tx_path}", self.base)).unwrap(),
            reshare_url: Url::parse(&format!("{}/{reshare_path}", self.base)).unwrap(),
            reply_public_key: key,
            insecurities: vec![],
        };
        ApiApprover::new(
            config,
            Duration::from_millis(300),
            2,
            DeviceKey::new(DEVICE_ID, device_signing_key()),
        )
        .unwrap()
    }

    async fn ask(&self, scenario: &str) -> Decision {
        self.approver(scenario, scenario, Some(self.reply_public_key()))
            .decide(&sign_tx("treasury", ONE_ETH))
            .await
    }

    fn hits(&self, scenario: &str) -> usize {
        self.server
            .hits
            .lock()
            .unwrap()
            .get(scenario)
            .copied()
            .unwrap_or(0)
    }
}

fn assert_failed(d: &Decision, reason_part: &str) {
    println!("reason: {}", d.reason);
    assert!(!d.is_approval(), "{d:?}");
    assert!(d.failed, "{d:?}");
    assert_eq!(d.vote, Vote::Reject, "{d:?}");
    assert_eq!(d.mode, ApprovalMode::Api);
    assert!(
        d.reason.contains(reason_part),
        "reason {:?} should contain {reason_part:?}",
        d.reason
    );
}

#[tokio::test]
async fn signed_answers_come_through() {
    let f = start().await;
    let d = f.ask("approve").await;
    assert!(d.is_approval(), "{d:?}");
    assert_eq!(d.reason, "");

    let d = f.ask("reject").await;
    assert_eq!((d.vote, d.failed), (Vote::Reject, false), "{d:?}");
    assert!(d.reason.contains("rejected the operation"), "{d:?}");

    let d = f.ask("abstain").await;
    assert_eq!((d.vote, d.failed), (Vote::Abstain, false), "{d:?}");
    assert!(d.reason.contains("abstained"), "{d:?}");

    let d = f.ask("bare-signature").await;
    assert!(d.is_approval(), "{d:?}");

    let d = f.ask("charset").await;
    assert!(d.is_approval(), "{d:?}");
}

#[tokio::test]
async fn slow_webhook_times_out() {
    let f = start().await;
    let d = f.ask("slow").await;
    assert_failed(&d, "timed out after 300ms");
    assert_eq!(f.hits("slow"), 1, "a timeout is not retried");
    assert!(d.retry, "only unavailable: the daemon asks again later");
}

#[tokio::test]
async fn http_500_is_not_an_approval_and_not_retried() {
    let f = start().await;
    let d = f.ask("500").await;
    assert_failed(&d, "answered HTTP 500 Internal Server Error");
    assert_eq!(f.hits("500"), 1, "a reply is never retried");
    assert!(d.retry, "a server error: the daemon asks again later");
}

#[tokio::test]
async fn unsigned_reply_is_refused_when_a_key_is_set() {
    let f = start().await;
    assert_failed(
        &f.ask("unsigned").await,
        "the reply is unsigned: no digest header",
    );
    // Without ApprovalHTTPPublicKeyHex the same reply is accepted (nonce still checked).
    let d = f
        .approver("unsigned", "unsigned", None)
        .decide(&sign_tx("treasury", ONE_ETH))
        .await;
    assert!(d.is_approval(), "{d:?}");
}

#[tokio::test]
async fn bad_signature_is_refused() {
    let f = start().await;
    let d = f.ask("bad-signature").await;
    assert_failed(&d, "signature does not verify with ApprovalHTTPPublicKeyHex");
    assert!(
        !d.retry,
        "an answer that cannot be trusted is final (a reject vote)"
    );
}

#[tokio::test]
async fn digest_mismatch_is_refused() {
    let f = start().await;
    assert_failed(&f.ask("digest-mismatch").await, "digest does not match its body");
}

#[tokio::test]
async fn wrong_nonce_is_refused_even_without_a_key() {
    let f = start().await;
    assert_failed(&f.ask("wrong-nonce").await, "does not match the request's nonce");
    let d = f
        .approver("wrong-nonce", "wrong-nonce", None)
        .decide(&sign_tx("treasury", ONE_ETH))
        .await;
    assert_failed(&d, "does not match the request's nonce");
}

#[tokio::test]
async fn garbage_and_unknown_status_are_refused() {
    let f = start().await;
    assert_failed(&f.ask("garbage").await, "the reply is not JSON");
    assert_failed(&f.ask("unknown-status").await, "unknown status \"maybe\"");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let f = start().await;
    let d = f.ask("redirect").await;
    assert_failed(&d, "answered HTTP 307 Temporary Redirect");
    assert!(!d.retry);
    assert_eq!(f.hits("approve"), 0);
}

#[tokio::test]
async fn nonce_echoed_as_a_string_is_accepted() {
    let f = start().await;
    assert!(f.ask("string-nonce").await.is_approval());
}

#[tokio::test]
async fn connection_refused_is_retried_then_not_an_approval() {
    let port = free_port();
    let config = ApiConfig {
        transaction_url: Url::parse(&format!("http://127.0.0.1:{port}/approve?code=s3cret")).unwrap(),
        reshare_url: Url::parse(&format!("http://127.0.0.1:{port}/approve")).unwrap(),
        reply_public_key: None,
        insecurities: vec![],
    };
    let a = ApiApprover::new(
        config,
        Duration::from_millis(300),
        2,
        DeviceKey::new(DEVICE_ID, device_signing_key()),
    )
    .unwrap();
    let d = a.decide(&sign_tx("treasury", ONE_ETH)).await;
    assert_failed(&d, "unreachable after 3 attempt(s)");
    assert!(d.retry, "unreachable: the daemon asks again later");
    assert!(
        d.reason.contains("Connection refused") || d.reason.contains("connect"),
        "{d:?}"
    );
    assert!(
        !d.reason.contains("s3cret"),
        "the URL query must not be shown: {d:?}"
    );
}

#[tokio::test]
async fn a_request_signed_by_another_device_is_refused_by_the_webhook() {
    let f = start().await;
    let config = ApiConfig {
        transaction_url: Url::parse(&format!("{}/approve", f.base)).unwrap(),
        reshare_url: Url::parse(&format!("{}/approve", f.base)).unwrap(),
        reply_public_key: Some(f.reply_public_key()),
        insecurities: vec![],
    };
    let impostor = DeviceKey::new(DEVICE_ID, SigningKey::from_bytes(&[0x43; 32]));
    let d = ApiApprover::new(config, Duration::from_millis(300), 2, impostor)
        .unwrap()
        .decide(&sign_tx("treasury", ONE_ETH))
        .await;
    assert_failed(&d, "answered HTTP 401 Unauthorized");
    assert!(!d.retry, "a refusal is final");
}

#[tokio::test]
async fn requests_go_to_the_right_url_with_the_io_finnet_json() {
    let f = start().await;
    // Keygen and reshare go to ExternalReshareApprovalURL, sign to ExternalTransactionApprovalURL.
    let a = f.approver("reject", "approve", Some(f.reply_public_key()));
    assert!(a.decide(&create_vault("treasury")).await.is_approval());
    assert!(a.decide(&reshare("treasury", 3)).await.is_approval());
    assert_eq!(a.decide(&sign_tx("treasury", 5)).await.vote, Vote::Reject);
    assert_eq!(
        a.decide(&sign_message("treasury", b"hi")).await.vote,
        Vote::Reject
    );
    assert_eq!((f.hits("approve"), f.hits("reject")), (2, 2));

    let bodies = f.server.bodies.lock().unwrap().clone();
    let (create, reshare, tx, msg) = (&bodies[0], &bodies[1], &bodies[2], &bodies[3]);
    assert_eq!(create["__typename"], "OperationCreateVault_v3");
    assert_eq!(create["id"], "op-123");
    assert_eq!(create["organisationId"], "org-9");
    assert_eq!(create["cDetails"]["threshold"], 2);
    assert_eq!(create["details"]["expiresAt"], "2026-11-25T12:00:00Z");
    assert_eq!(create["details"]["vault"]["details"]["name"], "treasury");
    assert_eq!(create["details"]["vault"]["curve"], "secp256k1");
    assert_eq!(create["details"]["vault"]["signers"].as_array().unwrap().len(), 3);
    assert_eq!(create["voting"]["votes"][0]["device"]["id"], "dev-0");
    assert_eq!(reshare["__typename"], "OperationReshare_v3");
    assert_eq!(reshare["rDetails"]["newThreshold"], 3);
    assert_eq!(reshare["rDetails"]["originalThreshold"], 2);
    assert_eq!(reshare["rDetails"]["newSigners"].as_array().unwrap().len(), 4);
    assert_eq!(tx["__typename"], "OperationTransferOut_v3");
    assert_eq!(tx["amountOriginal"], "5");
    assert_eq!(
        tx["receivingAddress"],
        "0x000000000000000000000000000000000000dEaD"
    );
    assert_eq!(tx["transaction"]["chainId"], 1);
    assert_eq!(tx["transaction"]["nonce"], 7);
    assert_eq!(tx["transaction"]["value"], "5");
    assert_eq!(tx["transaction"]["data"], "0x");
    assert_eq!(tx["transaction"]["gasLimit"], 21000);
    assert_eq!(tx["signingData"]["contentType"], "eth_tx");
    assert_eq!(tx["signingData"]["derivationPath"], "m/0/1");
    assert_eq!(tx["rawTransaction"], format!("0x{}", hex::encode(eth_tx_raw(5))));
    assert_eq!(msg["__typename"], "OperationSign");
    assert_eq!(msg["signingData"]["contentType"], "text/plain");
    assert_eq!(msg["signingData"]["data"], "hi");
    assert_eq!(msg["signingData"]["dataHex"], hex::encode(b"hi"));
    assert_eq!(msg["details"]["vault"]["curve"], "ed25519");
}

#[test]
fn reply_key_pem_round_trips_through_the_config_format() {
    // ApprovalHTTPPublicKeyHex is the hex of the PEM text.
    let key = SigningKey::from_bytes(&[0x11; 32]).verifying_key();
    let pem = key.to_public_key_pem(Default::default()).unwrap();
    let parsed = vsigner_approval::config::parse_public_key_hex(&hex::encode(pem.as_bytes())).unwrap();
    assert_eq!(parsed, key);
    // And the crate's own encoder writes the same text.
    assert_eq!(
        vsigner_approval::config::public_key_hex(&key),
        hex::encode(pem.as_bytes())
    );
}
