//! The signer's HTTP API on `Port` (axum), documented in `crates/signer/openapi.yaml`.
//!
//! | route | auth | answer |
//! |---|---|---|
//! | `GET /version` | bearer | build and configuration summary, devices; never a secret |
//! | `GET /healthz` | open | 200 while the process runs |
//! | `GET /readyz` | open | 200 when coordinator, broker and keystore are ready, else 503 listing what is not |
//! | `POST /register-vs-device` | bearer | adds a virtual device through a [`DeviceRegistrar`] |
//!
//! Authentication: `Authorization: Bearer <SignerAPIToken>`, compared in constant time (over
//! SHA-256 digests, so the token's length does not leak either). Errors are JSON
//! `{"error":{"code","message"}}`; internal causes are logged, never echoed.

use std::future::Future;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::config::{check_device_name, SignerConfig};

/// `GET /version`.
pub const VERSION: &str = "/version";
/// `GET /healthz`.
pub const HEALTHZ: &str = "/healthz";
/// `GET /readyz`.
pub const READYZ: &str = "/readyz";
/// `POST /register-vs-device`.
pub const REGISTER_VS_DEVICE: &str = "/register-vs-device";

/// Every route the router serves, as (method, path): the OpenAPI document must list exactly
/// these (a test checks it).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", VERSION),
    ("GET", HEALTHZ),
    ("GET", READYZ),
    ("POST", REGISTER_VS_DEVICE),
];

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The OpenAPI 3 document of this API.
pub const OPENAPI_YAML: &str = include_str!("../openapi.yaml");

/// Where Gramine exposes its attestation interface inside an SGX enclave.
pub const SGX_ATTESTATION_DIR: &str = "/dev/attestation";

/// Whether this process runs inside a Gramine SGX enclave: Gramine's
/// `/dev/attestation/attestation_type` says `dcap` or `epid`. Under `gramine-direct` (no
/// enclave) it says `none`; outside Gramine it does not exist.
pub fn running_within_sgx() -> bool {
    running_within_sgx_at(std::path::Path::new(SGX_ATTESTATION_DIR))
}

/// [`running_within_sgx`] with Gramine's attestation directory at `dir`.
pub fn running_within_sgx_at(dir: &std::path::Path) -> bool {
    std::fs::read_to_string(dir.join("attestation_type")).is_ok_and(|t| matches!(t.trim(), "dcap" | "epid"))
}

/// A virtual device of this instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisteredDevice {
    /// Its id at the coordinator.
    #[serde(rename = "deviceId")]
    pub id: String,
    /// Its name.
    #[serde(rename = "deviceName")]
    pub name: String,
}

/// Why a device could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// A device with that name exists already (409).
    #[error("a device named {0:?} exists already")]
    AlreadyExists(String),
    /// The instance cannot take more devices (409).
    #[error("this instance cannot take more devices: {0}")]
    LimitReached(String),
    /// The coordinator or the keystore cannot be reached now (503); the reason is logged.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Anything else (500); the reason is logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Creates and registers virtual devices; implemented by the daemon.
pub trait DeviceRegistrar: Send + Sync {
    /// Creates a device named `name` (already validated), stores its identity, registers it
    /// with the coordinator in the configured organisation, and starts its loop.
    fn register<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<RegisteredDevice, RegistrationError>>;

    /// The devices this instance runs.
    fn devices(&self) -> BoxFuture<'_, Vec<RegisteredDevice>>;
}

/// What `/readyz` reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadinessReport {
    /// The coordinator (`APIBaseURL`) answered recently.
    pub coordinator_reachable: bool,
    /// The MQTT links are connected.
    pub broker_connected: bool,
    /// The keystore is open (data key unsealed).
    pub keystore_unlocked: bool,
    /// What the operator accepted with `ApprovalAcceptInsecure` (reported, not a failure).
    pub insecure_approvals: Vec<String>,
}

impl ReadinessReport {
    /// Every check passed.
    pub fn is_ready(&self) -> bool {
        self.coordinator_reachable && self.broker_connected && self.keystore_unlocked
    }

    /// Names of the checks that failed: `coordinator`, `broker`, `keystore`.
    pub fn not_ready(&self) -> Vec<&'static str> {
        [
            (self.coordinator_reachable, "coordinator"),
            (self.broker_connected, "broker"),
            (self.keystore_unlocked, "keystore"),
        ]
        .into_iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, name)| name)
        .collect()
    }
}

/// Reports readiness; implemented by the daemon. Should answer quickly from cached state.
pub trait Readiness: Send + Sync {
    /// The current state.
    fn check(&self) -> BoxFuture<'_, ReadinessReport>;
}

/// An API error: status, a stable code, and a message for the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

struct ApiState {
    org_id: String,
    /// SHA-256 of each accepted token.
    token_digests: Vec<Zeroizing<[u8; 32]>>,
    version_base: serde_json::Value,
    registrar: Arc<dyn DeviceRegistrar>,
    readiness: Arc<dyn Readiness>,
}

fn digest(bytes: &[u8]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(Sha256::digest(bytes).into())
}

/// The API router. `config` gives the organisation, the token and the `/version` summary.
pub fn router(
    config: &SignerConfig,
    registrar: Arc<dyn DeviceRegistrar>,
    readiness: Arc<dyn Readiness>,
) -> Router {
    let summary = config.summary();
    // io.finnet's fields, names and types (their `version-resp`: strings, `port` a number,
    // `runningWithinSGX` a boolean), except that a secret is never returned: `AuthClientSecret`
    // says "set" (io.finnet's returns the secret itself). vsigner's additions follow.
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let version_base = json!({
        "name": "vsigner",
        "version": env!("CARGO_PKG_VERSION"),
        "environment": config.environment.clone().unwrap_or_default(),
        "runningWithinSGX": running_within_sgx(),
        "approvalMode": config.approval_mode().as_str(),
        "bindingNetworkName": config.binding_network_name.clone().unwrap_or_default(),
        "initialDevice": config.initial_devices.join(","),
        "orgId": config.org_id,
        "port": config.port,
        "APIBaseURL": text(&summary["APIBaseURL"]),
        "traceSpanExporter": config.trace_span_exporter.as_str(),
        "MQTTEndpoint": text(&summary["MQTTEndpoint"]),
        "MQTTCACert": text(&summary["MQTTCACert"]),
        "AuthClientId": config.auth_client_id,
        "AuthClientSecret": "set",
        "GraphQLService": text(&summary["GraphQLService"]),
        "ApprovalSmartContractAddress": text(&summary["ApprovalSmartContractAddress"]),
        "gitCommit": option_env!("VSIGNER_GIT_COMMIT"),
        "initialDevices": config.initial_devices,
        "config": summary,
    });
    let state = Arc::new(ApiState {
        org_id: config.org_id.clone(),
        token_digests: config
            .signer_api_tokens
            .iter()
            .map(|t| digest(t.as_bytes()))
            .collect(),
        version_base,
        registrar,
        readiness,
    });
    let authenticated = Router::new()
        .route(VERSION, get(version))
        .route(REGISTER_VS_DEVICE, post(register))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route(HEALTHZ, get(healthz))
        .route(READYZ, get(readyz))
        .merge(authenticated)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves `router` on `listener` (over HTTPS when `tls` is given) until `shutdown`
/// completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<vsigner_https::ServerTls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        vsigner_https::warn_if_plain(
            addr,
            tls.as_ref(),
            "the signer API",
            "set TLSCertFile and TLSKeyFile",
        );
    }
    vsigner_https::serve(listener, router, tls, shutdown).await
}

async fn authenticate(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(presented) = presented else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an Authorization: Bearer token is required",
        ));
    };
    // Compared with every accepted token, in constant time, without stopping at a match.
    let presented = digest(presented.as_bytes());
    let ok: bool = state
        .token_digests
        .iter()
        .fold(subtle::Choice::from(0), |found, d| {
            found | presented.as_slice().ct_eq(d.as_slice())
        })
        .into();
    if !ok {
        tracing::warn!(path = %request.uri().path(), "API request with a wrong bearer token");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is not valid",
        ));
    }
    Ok(next.run(request).await)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<Arc<ApiState>>) -> Response {
    let report = state.readiness.check().await;
    let body = json!({
        "ready": report.is_ready(),
        "notReady": report.not_ready(),
        "checks": {
            "coordinator": report.coordinator_reachable,
            "broker": report.broker_connected,
            "keystore": report.keystore_unlocked,
        },
        "insecureApprovals": report.insecure_approvals,
    });
    let status = if report.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn version(State(state): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    let devices = state.registrar.devices().await;
    // A device runs only when its keystore record and its registration at the coordinator
    // agree (registration is crash-safe), so io.finnet's three lists are the same here.
    let ids = devices
        .iter()
        .map(|d| d.id.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let mut body = state.version_base.clone();
    if let Some(obj) = body.as_object_mut() {
        obj.insert("devicesInBackend".into(), json!(ids));
        obj.insert("devicesInFileSystem".into(), json!(ids));
        obj.insert("devicesInBoth".into(), json!(ids));
        obj.insert("devices".into(), json!(devices));
    }
    Json(body)
}

/// The body of `POST /register-vs-device`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    #[serde(rename = "DeviceName")]
    device_name: String,
    #[serde(rename = "OrgId")]
    org_id: String,
}

async fn register(
    State(state): State<Arc<ApiState>>,
    body: Result<Json<RegisterRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(req) = body.map_err(|e| {
        let status = match e {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(
            status,
            "bad_request",
            format!(
                "expected a JSON body {{\"DeviceName\": string, \"OrgId\": string}}: {}",
                e.body_text()
            ),
        )
    })?;
    // Not constant time: the organisation id is not a secret.
    if req.org_id != state.org_id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_org",
            "OrgId is not the organisation this signer is configured for",
        ));
    }
    if let Err(problem) = check_device_name(&req.device_name) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_device_name",
            format!("DeviceName: {problem}"),
        ));
    }
    match state.registrar.register(&req.device_name).await {
        Ok(device) => {
            tracing::info!(device_id = %device.id, device_name = %device.name, "registered a virtual device");
            Ok(Json(json!({
                "deviceId": device.id,
                "deviceName": device.name,
                "orgId": state.org_id,
            })))
        }
        Err(e) => {
            let (status, code, message) = match &e {
                RegistrationError::AlreadyExists(_) => (StatusCode::CONFLICT, "device_exists", e.to_string()),
                RegistrationError::LimitReached(_) => (StatusCode::CONFLICT, "device_limit", e.to_string()),
                RegistrationError::Unavailable(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the device cannot be registered now; retry later".to_owned(),
                ),
                _ => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the device could not be registered; see the signer's log".to_owned(),
                ),
            };
            tracing::warn!(device_name = %req.device_name, error = %e, "device registration failed");
            Err(ApiError::new(status, code, message))
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
