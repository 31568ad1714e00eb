//! The approval webhook of the demo and of `bench e2e` (`ApprovalMode = API`): a real HTTP
//! server on 127.0.0.1 that authenticates each device's request (RFC 9421, the device's
//! registered Ed25519 key), decides with a small policy and signs its reply the io.finnet
//! way (`digest` + `Signature`, its own Ed25519 key given to the devices as
//! `ApprovalHTTPPublicKeyHex`).
//!
//! Policy:
//! - **reject** a request whose vault name or signing data contains [`REJECT_MARKER`];
//! - **abstain** on signature requests from the devices in the abstaining set (the demo uses
//!   it to choose a signing committee: the coordinator takes the first approvers);
//! - **approve** everything else.
//!
//! A request that is not signed by a known device gets 401 and no decision: the device
//! counts that as "not approved" (fail closed).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::{json, Value};
use vsigner_approval::httpsig::{self, ReceivedRequest};

/// Requests whose vault name or signing data contain this are rejected.
pub(crate) const REJECT_MARKER: &str = "REJECT";

/// Largest clock difference accepted between a request's `created` and the approver's clock.
const MAX_SKEW_SECS: u64 = 300;

/// One decision the approver made, for the demo's report.
#[derive(Debug, Clone)]
pub(crate) struct Decided {
    pub(crate) operation: String,
    pub(crate) device: String,
    pub(crate) status: &'static str,
}

struct Policy {
    reply_key: SigningKey,
    devices: Mutex<HashMap<String, VerifyingKey>>,
    abstaining: Mutex<HashSet<String>>,
    decided: Mutex<Vec<Decided>>,
    refused: Mutex<Vec<String>>,
    port: u16,
}

/// The running approver.
pub(crate) struct Approver {
    policy: Arc<Policy>,
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Approver {
    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub(crate) async fn start() -> anyhow::Result<Approver> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let port = listener.local_addr()?.port();
        let policy = Arc::new(Policy {
            reply_key: SigningKey::generate(&mut rand_core::OsRng),
            devices: Mutex::default(),
            abstaining: Mutex::default(),
            decided: Mutex::default(),
            refused: Mutex::default(),
            port,
        });
        let app = Router::new()
            .route("/approve", post(decide))
            .with_state(policy.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the approval webhook stopped");
            }
        });
        Ok(Approver {
            policy,
            url: format!("http://127.0.0.1:{port}/approve"),
            task,
        })
    }

    /// The URL to put in `ExternalTransactionApprovalURL` and `ExternalReshareApprovalURL`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The reply key, as `ApprovalHTTPPublicKeyHex`.
    pub(crate) fn public_key_hex(&self) -> String {
        vsigner_approval::config::public_key_hex(&self.policy.reply_key.verifying_key())
    }

    /// Lets `device` (its registered identity signing key) ask for approvals.
    pub(crate) fn know_device(&self, device: &str, key: VerifyingKey) {
        lock(&self.policy.devices).insert(device.to_owned(), key);
    }

    /// From now on, `devices` abstain on signature requests (and no other device does).
    pub(crate) fn abstain_on_signatures(&self, devices: &[String]) {
        *lock(&self.policy.abstaining) = devices.iter().cloned().collect();
    }

    /// Every decision so far.
    pub(crate) fn decisions(&self) -> Vec<Decided> {
        lock(&self.policy.decided).clone()
    }

    /// Requests refused as unauthenticated so far (reasons).
    pub(crate) fn refused_requests(&self) -> Vec<String> {
        lock(&self.policy.refused).clone()
    }
}

impl Drop for Approver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn contains_marker(bytes: &[u8]) -> bool {
    bytes
        .windows(REJECT_MARKER.len())
        .any(|w| w == REJECT_MARKER.as_bytes())
}

/// The policy's vote on a request body, for `device`.
fn vote(policy: &Policy, request: &Value, device: &str) -> &'static str {
    let vault_name = request["details"]["vault"]["details"]["name"]
        .as_str()
        .unwrap_or_default();
    let data = request["signingData"]["dataHex"]
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .unwrap_or_default();
    if contains_marker(vault_name.as_bytes()) || contains_marker(&data) {
        "rejected"
    } else if matches!(
        request["__typename"].as_str(),
        Some("OperationSign" | "OperationTransferOut_v3")
    ) && lock(&policy.abstaining).contains(device)
    {
        "abstain"
    } else {
        "approved"
    }
}

async fn decide(State(policy): State<Arc<Policy>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let target = format!("http://127.0.0.1:{}{uri}", policy.port);
    let received = ReceivedRequest {
        target_uri: &target,
        content_type: header(&headers, "content-type"),
        content_digest: header(&headers, "content-digest"),
        vs_nonce: header(&headers, "vs-nonce"),
        signature_input: header(&headers, "signature-input"),
        signature: header(&headers, "signature"),
        body: &body,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let devices = lock(&policy.devices).clone();
    let (device, nonce) =
        match httpsig::verify_request(&received, |id| devices.get(id).copied(), now, MAX_SKEW_SECS) {
            Ok(ok) => ok,
            Err(e) => {
                lock(&policy.refused).push(e.to_string());
                return (StatusCode::UNAUTHORIZED, e.to_string()).into_response();
            }
        };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        lock(&policy.refused).push(format!("device {device} sent a body that is not JSON"));
        return (StatusCode::BAD_REQUEST, "the body is not JSON").into_response();
    };
    let status = vote(&policy, &request, &device);
    lock(&policy.decided).push(Decided {
        operation: request["id"].as_str().unwrap_or_default().to_owned(),
        device,
        status,
    });
    let reply = json!({"status": status, "nonce": nonce}).to_string().into_bytes();
    let signed = httpsig::sign_reply(&policy.reply_key, &reply);
    let mut response = (StatusCode::OK, reply).into_response();
    let h = response.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    for (name, value) in [("digest", signed.digest), ("signature", signed.signature)] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    response
}
