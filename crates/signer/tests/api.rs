//! The HTTP API over a real TCP listener, driven with reqwest.

// Tests may unwrap (see clippy.toml); helpers outside #[test] fns too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use vsigner_signer::api::{
    self, DeviceRegistrar, Readiness, ReadinessReport, RegisteredDevice, RegistrationError, ROUTES,
};
use vsigner_signer::SignerConfig;

const TOKEN: &str = "api-token-0123456789abcdef";
const SECRET: &str = "s3cr3t-client-secret-value";
const MQTT_PW: &str = "mqtt-pw-do-not-print";
const PASSPHRASE: &str = "keystore-passphrase-do-not-print";

fn config() -> SignerConfig {
    let env = [
        ("VSIGNER_OrgId", "org-1"),
        ("VSIGNER_AuthClientId", "client-1"),
        ("VSIGNER_AuthClientSecret", SECRET),
        ("VSIGNER_APIBaseURL", "http://127.0.0.1:8000/graphql?key=k"),
        ("VSIGNER_MQTTEndpoint", "mqtt://vs:url-pw@127.0.0.1:1883"),
        ("VSIGNER_ApprovalMode", "AlwaysApprove"),
        ("VSIGNER_KeystorePassphrase", PASSPHRASE),
        ("VSIGNER_SignerAPIToken", TOKEN),
        ("VSIGNER_InitialDevices", "first"),
    ];
    let _ = MQTT_PW;
    SignerConfig::load(None, env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
}

#[derive(Default)]
struct TestRegistrar {
    devices: Mutex<Vec<RegisteredDevice>>,
    fail: Mutex<Option<RegistrationError>>,
}

impl DeviceRegistrar for TestRegistrar {
    fn register<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<RegisteredDevice, RegistrationError>> {
        async move {
            if let Some(e) = self.fail.lock().unwrap().clone() {
                return Err(e);
            }
            let mut devices = self.devices.lock().unwrap();
            if devices.iter().any(|d| d.name == name) {
                return Err(RegistrationError::AlreadyExists(name.to_owned()));
            }
            let device = RegisteredDevice {
                id: format!("dev-{}", devices.len() + 1),
                name: name.to_owned(),
            };
            devices.push(device.clone());
            Ok(device)
        }
        .boxed()
    }

    fn devices(&self) -> BoxFuture<'_, Vec<RegisteredDevice>> {
        let devices = self.devices.lock().unwrap().clone();
        async move { devices }.boxed()
    }
}

#[derive(Default)]
struct TestReadiness {
    coordinator: AtomicBool,
    broker: AtomicBool,
    keystore: AtomicBool,
}

impl Readiness for TestReadiness {
    fn check(&self) -> BoxFuture<'_, ReadinessReport> {
        let report = ReadinessReport {
            coordinator_reachable: self.coordinator.load(Ordering::SeqCst),
            broker_connected: self.broker.load(Ordering::SeqCst),
            keystore_unlocked: self.keystore.load(Ordering::SeqCst),
            insecure_approvals: vec!["replies are unsigned (ApprovalHTTPPublicKeyHex is not set)".into()],
        };
        async move { report }.boxed()
    }
}

struct Server {
    base: String,
    registrar: Arc<TestRegistrar>,
    readiness: Arc<TestReadiness>,
    http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Server {
    let registrar = Arc::new(TestRegistrar::default());
    let readiness = Arc::new(TestReadiness::default());
    let router = api::router(&config(), registrar.clone(), readiness.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(api::serve(listener, router, None, async move {
        let _ = stopped.await;
    }));
    Server {
        base,
        registrar,
        readiness,
        http: http_client(),
        _stop: stop,
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn register(&self, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut req = self.http.post(self.url("/register-vs-device")).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"))
}

#[tokio::test]
async fn healthz_and_readyz_are_open() {
    let s = start().await;
    let resp = s.http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": "ok"}));

    let resp = s.http.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["ready"], false);
    assert_eq!(body["notReady"], json!(["coordinator", "broker", "keystore"]));

    s.readiness.coordinator.store(true, Ordering::SeqCst);
    s.readiness.keystore.store(true, Ordering::SeqCst);
    let resp = s.http.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["notReady"], json!(["broker"]));
    assert_eq!(
        body["checks"],
        json!({"coordinator": true, "broker": false, "keystore": true})
    );

    s.readiness.broker.store(true, Ordering::SeqCst);
    let resp = s.http.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["notReady"], json!([]));
    // What the operator accepted as insecure is said, and does not make it unready.
    assert_eq!(
        body["insecureApprovals"],
        json!(["replies are unsigned (ApprovalHTTPPublicKeyHex is not set)"])
    );
}

#[tokio::test]
async fn version_needs_the_token_and_shows_no_secret() {
    let s = start().await;
    let resp = s.http.get(s.url("/version")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    assert_eq!(error_code(&resp.json().await.unwrap()), "unauthorized");
    for bad in [
        "wrong-token-0123456789abcdef",
        "",
        "api-token-0123456789abcde",
        "api-token-0123456789abcdeff",
    ] {
        let resp = s
            .http
            .get(s.url("/version"))
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{bad:?}");
    }
    let resp = s
        .http
        .get(s.url("/version"))
        .header("Authorization", format!("Basic {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    s.register(Some(TOKEN), json!({"DeviceName": "first", "OrgId": "org-1"}))
        .await;
    let resp = s
        .http
        .get(s.url("/version"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    for secret in [TOKEN, SECRET, PASSPHRASE, "url-pw", "key=k"] {
        assert!(!text.contains(secret), "{secret} in /version: {text}");
    }
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["name"], "vsigner");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        v["runningWithinSGX"],
        std::path::Path::new("/dev/attestation").exists()
    );
    assert_eq!(v["approvalMode"], "AlwaysApprove");
    assert_eq!(v["orgId"], "org-1");
    assert_eq!(v["port"], 8080);
    assert_eq!(v["APIBaseURL"], "http://127.0.0.1:8000/graphql");
    assert_eq!(v["MQTTEndpoint"], "mqtt://127.0.0.1:1883");
    assert_eq!(v["traceSpanExporter"], "none");
    assert_eq!(
        v["devices"],
        json!([{"deviceId": "dev-1", "deviceName": "first"}])
    );
    assert_eq!(v["config"]["AuthClientSecret"], "set");
    assert_eq!(v["config"]["MQTTPassword"], "set");
    // io.finnet's `version-resp`: every field, their types (strings but `port` and
    // `runningWithinSGX`); the secret says "set" instead of itself.
    for field in [
        "name",
        "version",
        "environment",
        "approvalMode",
        "bindingNetworkName",
        "initialDevice",
        "orgId",
        "APIBaseURL",
        "traceSpanExporter",
        "devicesInBackend",
        "devicesInFileSystem",
        "devicesInBoth",
        "MQTTEndpoint",
        "MQTTCACert",
        "AuthClientId",
        "AuthClientSecret",
        "GraphQLService",
        "ApprovalSmartContractAddress",
    ] {
        assert!(
            v[field].is_string(),
            "{field} is not a string in /version: {text}"
        );
    }
    assert!(
        v["port"].is_number() && v["runningWithinSGX"].is_boolean(),
        "{text}"
    );
    assert_eq!(v["AuthClientSecret"], "set");
    assert_eq!(v["devicesInBoth"], "dev-1");
    assert_eq!(v["GraphQLService"], "http://127.0.0.1:8000/graphql/graphql");
}

#[tokio::test]
async fn register_vs_device() {
    let s = start().await;
    let (status, body) = s
        .register(None, json!({"DeviceName": "a", "OrgId": "org-1"}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    assert!(
        s.registrar.devices.lock().unwrap().is_empty(),
        "unauthenticated call reached the registrar"
    );

    let (status, body) = s
        .register(Some(TOKEN), json!({"DeviceName": "treasury-1", "OrgId": "org-1"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"deviceId": "dev-1", "deviceName": "treasury-1", "orgId": "org-1"})
    );

    let (status, body) = s
        .register(Some(TOKEN), json!({"DeviceName": "treasury-1", "OrgId": "org-1"}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "device_exists")
    );

    let (status, body) = s
        .register(Some(TOKEN), json!({"DeviceName": "x", "OrgId": "org-2"}))
        .await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "wrong_org"));

    for bad in ["", " padded", "tab\there", &"x".repeat(65)] {
        let (status, body) = s
            .register(Some(TOKEN), json!({"DeviceName": bad, "OrgId": "org-1"}))
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_device_name"),
            "{bad:?}"
        );
    }
    let (status, _) = s
        .register(
            Some(TOKEN),
            json!({"DeviceName": "é".repeat(64), "OrgId": "org-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "64 characters (128 bytes) is allowed");

    for bad in [
        json!({"DeviceName": "a"}),
        json!({"DeviceName": 1, "OrgId": "org-1"}),
        json!([]),
        json!({"DeviceName": "a", "OrgId": "org-1", "Extra": 1}),
    ] {
        let (status, body) = s.register(Some(TOKEN), bad.clone()).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{bad}"
        );
    }
    let resp = s
        .http
        .post(s.url("/register-vs-device"))
        .bearer_auth(TOKEN)
        .body("{\"DeviceName\":\"a\",\"OrgId\":\"org-1\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = s
        .register(
            Some(TOKEN),
            json!({"DeviceName": "a", "OrgId": "x".repeat(20_000)}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    *s.registrar.fail.lock().unwrap() = Some(RegistrationError::Internal("db path /secret/x".into()));
    let (status, body) = s
        .register(Some(TOKEN), json!({"DeviceName": "b", "OrgId": "org-1"}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::INTERNAL_SERVER_ERROR, "internal")
    );
    assert!(
        !body.to_string().contains("/secret/x"),
        "internal cause echoed: {body}"
    );
    *s.registrar.fail.lock().unwrap() = Some(RegistrationError::Unavailable("coordinator down".into()));
    let (status, body) = s
        .register(Some(TOKEN), json!({"DeviceName": "b", "OrgId": "org-1"}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let s = start().await;
    let resp = s.http.get(s.url("/nope")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&resp.json().await.unwrap()), "not_found");
    let resp = s
        .http
        .get(s.url("/register-vs-device"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// (method, path) pairs declared under `paths:` in the OpenAPI document.
fn openapi_routes() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut in_paths = false;
    let mut path = None;
    for line in api::OPENAPI_YAML.lines() {
        let indent = line.len() - line.trim_start().len();
        let t = line.trim();
        if indent == 0 && !t.is_empty() {
            in_paths = t == "paths:";
            continue;
        }
        if !in_paths || t.is_empty() {
            continue;
        }
        if indent == 2 && t.starts_with('/') && t.ends_with(':') {
            path = Some(t.trim_end_matches(':').to_owned());
        } else if indent == 4 {
            let method = t.trim_end_matches(':');
            if ["get", "post", "put", "patch", "delete"].contains(&method) {
                out.insert((method.to_uppercase(), path.clone().unwrap()));
            }
        }
    }
    out
}

#[tokio::test]
async fn openapi_lists_exactly_the_served_routes() {
    let documented = openapi_routes();
    let declared: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, declared,
        "crates/signer/openapi.yaml and api::ROUTES differ"
    );

    // Every declared route is really served (not 404/405), with and without a token.
    let s = start().await;
    for (method, path) in ROUTES {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = s
            .http
            .request(method.clone(), s.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert!(
            ![StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED].contains(&resp.status()),
            "{method} {path}: {}",
            resp.status()
        );
    }
    // And the document parses as the kind of YAML we think it is.
    assert!(api::OPENAPI_YAML.starts_with("openapi: 3."));
}

/// An HTTP client (TLS by rustls with ring, the workspace's one provider).
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

#[test]
fn running_within_sgx_is_true_only_when_gramine_says_the_enclave_is_attested() {
    use vsigner_signer::api::running_within_sgx_at;
    let dir = tempfile::tempdir().unwrap();
    // Outside Gramine: no attestation directory.
    assert!(!running_within_sgx_at(&dir.path().join("attestation")));
    // gramine-direct: the directory exists, the type is `none`.
    std::fs::write(dir.path().join("attestation_type"), "none").unwrap();
    assert!(!running_within_sgx_at(dir.path()));
    for kind in ["dcap", "epid\n"] {
        std::fs::write(dir.path().join("attestation_type"), kind).unwrap();
        assert!(running_within_sgx_at(dir.path()), "{kind}");
    }
}
