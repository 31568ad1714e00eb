//! `SignerConfig::load`: file formats, environment overrides, validation messages, secrets.

// Tests may unwrap (see clippy.toml); helpers outside #[test] fns too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use vsigner_approval::{ApprovalMode, ModeConfig};
use vsigner_signer::config::{
    keys, CaCertSource, ConfigError, KeystoreSealing, LogFormat, Origin, SignerConfig, TraceSpanExporter,
};

const SECRET: &str = "s3cr3t-client-secret-value";
const MQTT_PW: &str = "mqtt-pw-do-not-print";
const PASSPHRASE: &str = "keystore-passphrase-do-not-print";
const TOKEN: &str = "api-token-0123456789abcdef";

/// A minimal valid configuration as environment variables.
fn base_env() -> Vec<(String, String)> {
    [
        ("VSIGNER_OrgId", "org-1"),
        ("VSIGNER_AuthClientId", "client-1"),
        ("VSIGNER_AuthClientSecret", SECRET),
        ("VSIGNER_APIBaseURL", "http://127.0.0.1:8000"),
        ("VSIGNER_MQTTEndpoint", "mqtt://127.0.0.1:1883"),
        ("VSIGNER_MQTTPassword", MQTT_PW),
        ("VSIGNER_MQTTUsername", "vs"),
        ("VSIGNER_ApprovalMode", "AlwaysApprove"),
        ("VSIGNER_KeystorePassphrase", PASSPHRASE),
        ("VSIGNER_SignerAPIToken", TOKEN),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn with(mut env: Vec<(String, String)>, k: &str, v: &str) -> Vec<(String, String)> {
    env.retain(|(key, _)| key != k);
    env.push((k.to_owned(), v.to_owned()));
    env
}

fn without(mut env: Vec<(String, String)>, k: &str) -> Vec<(String, String)> {
    env.retain(|(key, _)| key != k);
    env
}

fn load_env(env: Vec<(String, String)>) -> Result<SignerConfig, ConfigError> {
    SignerConfig::load(None, env.into_iter())
}

fn err(env: Vec<(String, String)>) -> String {
    let e = load_env(env).unwrap_err().to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    for s in [SECRET, MQTT_PW, PASSPHRASE, TOKEN] {
        assert!(!e.contains(s), "secret in error: {e}");
    }
    e
}

fn file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    (dir, path)
}

#[test]
fn minimal_env_config_has_defaults() {
    let c = load_env(base_env()).unwrap();
    assert_eq!(c.port, 8080);
    assert_eq!(c.prometheus_port, 9090);
    assert_eq!(c.org_id, "org-1");
    assert_eq!(c.approval_mode(), ApprovalMode::AlwaysApprove);
    assert_eq!(c.poll_interval, Duration::from_secs(5));
    assert_eq!(c.max_concurrent_operations, 8);
    assert_eq!(c.prime_pool_target, 2);
    assert_eq!(c.presignature_pool_target, 0);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.trace_span_exporter, TraceSpanExporter::None);
    assert_eq!(c.storage_bucket_url, "vsigner-data");
    assert!(c.initial_devices.is_empty());
    assert!(matches!(&c.keystore_sealing, KeystoreSealing::Passphrase(p) if p.as_str() == PASSPHRASE));
    assert_eq!(c.signer_api_tokens.len(), 1);
    assert_eq!(c.signer_api_tokens[0].as_str(), TOKEN);
}

#[test]
fn signer_api_token_takes_several_tokens_so_that_they_can_overlap() {
    let new = "a-new-token-of-the-api-000000";
    // Comma-separated in the environment, a list in a file.
    let c = load_env(with(
        base_env(),
        "VSIGNER_SignerAPIToken",
        &format!("{TOKEN}, {new}"),
    ))
    .unwrap();
    let tokens: Vec<&str> = c.signer_api_tokens.iter().map(|t| t.as_str()).collect();
    assert_eq!(tokens, [TOKEN, new]);
    let (_dir, path) = file(
        "vsigner.json",
        &serde_json::json!({ "SignerAPIToken": [TOKEN, new] }).to_string(),
    );
    let c = SignerConfig::load(
        Some(&path),
        without(base_env(), "VSIGNER_SignerAPIToken").into_iter(),
    )
    .unwrap();
    assert_eq!(c.signer_api_tokens.len(), 2);
    // A short one is refused without quoting any token.
    let e = err(with(
        base_env(),
        "VSIGNER_SignerAPIToken",
        &format!("{TOKEN},short"),
    ));
    assert!(e.contains("SignerAPIToken") && e.contains("token 2 of 2"), "{e}");
    assert!(!e.contains("short"), "{e}");
}

#[test]
fn toml_file_with_every_key() {
    let trusted = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[1; 32])
            .verifying_key()
            .as_bytes(),
    );
    let (_d, path) = file(
        "signer.toml",
        &format!(
            r#"
Port = 18080
PrometheusPort = 19090
OrgId = "org-toml"
AuthClientId = "client"
AuthClientSecret = "s3cr3t-client-secret-value"
APIBaseURL = "https://coordinator.example:8443/"
MQTTEndpoint = "mqtts://broker.example:8883"
MQTTCACert = """
-----BEGIN CERTIFICATE-----
MIIB
-----END CERTIFICATE-----
"""
MQTTUsername = "vs"
MQTTPassword = "mqtt-pw-do-not-print"
InitialDevices = ["alpha", "beta"]
ApprovalMode = "API"
ExternalTransactionApprovalURL = "https://approver.example/tx?code=abc"
ExternalReshareApprovalURL = "https://approver.example/reshare"
ApprovalTimeoutSeconds = 2.5
ApprovalRetries = 3
ApprovalAcceptInsecure = true
TrustedDeviceKeys = ["{trusted}"]
TraceSpanExporter = "OTLP-TLS"
OTELExporterOTLPEndpoint = "https://otel.example:4318"
OTEL_EXPORTER_OTLP_LOGS_ENDPOINT = "https://otel.example:4318/v1/logs"
STORAGE_BUCKET_URL = "s3://bucket/prefix"
KeystoreSealing = "keyfile"
KeystoreKeyFile = "/var/lib/vsigner/key"
SignerAPIToken = "api-token-0123456789abcdef"
PollIntervalSeconds = 0.5
MaxConcurrentOperations = 4
PrimePoolTarget = 1
PresignaturePoolTarget = 10
LogFormat = "text"
"#
        ),
    );
    let c = SignerConfig::load(Some(&path), std::iter::empty()).unwrap();
    assert_eq!((c.port, c.prometheus_port), (18080, 19090));
    assert_eq!(c.org_id, "org-toml");
    assert_eq!(c.api_base_url.as_str(), "https://coordinator.example:8443/");
    assert_eq!(c.mqtt_endpoint.as_str(), "mqtts://broker.example:8883");
    assert_eq!(c.mqtt_ca_cert.as_ref().unwrap().source, CaCertSource::Inline);
    assert_eq!(c.initial_devices, vec!["alpha", "beta"]);
    match &c.approval.mode {
        ModeConfig::Api(api) => assert_eq!(api.reshare_url.as_str(), "https://approver.example/reshare"),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.approval.timeout, Duration::from_millis(2500));
    assert_eq!(c.approval.retries, 3);
    assert_eq!(c.trace_span_exporter, TraceSpanExporter::OtlpTls);
    assert_eq!(
        c.otlp_traces_endpoint.as_ref().unwrap().as_str(),
        "https://otel.example:4318/v1/traces"
    );
    assert_eq!(
        c.otlp_logs_endpoint.as_ref().unwrap().as_str(),
        "https://otel.example:4318/v1/logs"
    );
    assert_eq!(c.storage_bucket_url, "s3://bucket/prefix");
    assert_eq!(
        c.keystore_sealing,
        KeystoreSealing::KeyFile("/var/lib/vsigner/key".into())
    );
    assert_eq!(c.poll_interval, Duration::from_millis(500));
    assert_eq!(c.max_concurrent_operations, 4);
    assert_eq!(c.prime_pool_target, 1);
    assert_eq!(c.presignature_pool_target, 10);
    assert_eq!(c.log_format, LogFormat::Text);
    let expected_key: [u8; 32] = hex::decode(&trusted).unwrap().try_into().unwrap();
    assert_eq!(c.trusted_device_keys, Some([expected_key].into()));

    // The summary has every key, and no secret and no URL query.
    let summary = c.summary();
    let text = summary.to_string();
    for key in keys::ALL {
        // InitialDevice is folded into InitialDevices.
        if *key == keys::KEYSTORE_PASSPHRASE
            || *key == keys::INITIAL_DEVICE
            || key.starts_with("ApprovalNode")
            || key.starts_with("ApprovalSmart")
            || key.starts_with("ApprovalChain")
            || key.starts_with("ApprovalContract")
            || key.starts_with("HumanApproval")
        {
            continue;
        }
        assert!(summary.get(key).is_some(), "summary lacks {key}: {text}");
    }
    for s in [SECRET, MQTT_PW, TOKEN, "code=abc"] {
        assert!(!text.contains(s), "{s} in summary: {text}");
    }
    assert_eq!(summary["AuthClientSecret"], "set");
    assert_eq!(summary["MQTTPassword"], "set");
    assert_eq!(summary["SignerAPIToken"], "set");
}

#[test]
fn json_file_and_env_precedence() {
    let (_d, path) = file(
        "signer.json",
        r#"{"Port": 1000, "PrometheusPort": 1001, "OrgId": "from-file", "LogFormat": "text",
            "InitialDevices": 3}"#,
    );
    let env = with(without(base_env(), "VSIGNER_OrgId"), "EDG_VS_Port", "2000");
    let env = with(env, "VSIGNER_Port", "3000");
    let env = with(env, "EDG_VS_PrometheusPort", "2001");
    let c = SignerConfig::load(Some(&path), env.into_iter()).unwrap();
    assert_eq!(c.port, 3000, "VSIGNER_ wins over EDG_VS_ and the file");
    assert_eq!(c.prometheus_port, 2001, "EDG_VS_ wins over the file");
    assert_eq!(c.org_id, "from-file");
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(
        c.initial_devices,
        vec!["vs-device-1", "vs-device-2", "vs-device-3"]
    );

    // An empty variable unsets the file's value (then the default applies).
    let env = with(base_env(), "VSIGNER_LogFormat", "");
    let c = SignerConfig::load(Some(&path), env.into_iter()).unwrap();
    assert_eq!(c.log_format, LogFormat::Json);
}

#[test]
fn file_format_sniffed_without_extension() {
    let (_d, path) = file("signer.conf", "{\"OrgId\": \"json-org\"}");
    let c = SignerConfig::load(Some(&path), without(base_env(), "VSIGNER_OrgId").into_iter()).unwrap();
    assert_eq!(c.org_id, "json-org");
    let (_d, path) = file("signer.conf", "OrgId = \"toml-org\"");
    let c = SignerConfig::load(Some(&path), without(base_env(), "VSIGNER_OrgId").into_iter()).unwrap();
    assert_eq!(c.org_id, "toml-org");
}

#[test]
fn unknown_keys_are_refused() {
    let (_d, path) = file("signer.toml", "OrgID = \"x\"\n");
    let e = SignerConfig::load(Some(&path), base_env().into_iter()).unwrap_err();
    assert_eq!(e.key(), Some("OrgID"));
    assert_eq!(
        e.to_string(),
        "config key OrgID: unknown key in the config file (did you mean OrgId?)"
    );

    let e = err(with(base_env(), "EDG_VS_Colour", "blue"));
    assert!(
        e.starts_with("config key EDG_VS_Colour: unknown environment variable"),
        "{e}"
    );
    let e = err(with(base_env(), "VSIGNER_Prometheusport", "1"));
    assert!(e.contains("did you mean PrometheusPort"), "{e}");
    let e = err(with(base_env(), "VSIGNER_PORT", "1"));
    assert!(
        e.contains("VSIGNER_PORT") && e.contains("did you mean Port"),
        "{e}"
    );
    // All-capital variables of other vsigner parts are not configuration keys.
    load_env(with(base_env(), "VSIGNER_TEST_MQTT_URL", "mqtt://x")).unwrap();
    load_env(with(base_env(), "VSIGNER_BROKER_PASSWORD", "x")).unwrap();
}

#[test]
fn bad_values_name_the_key_and_what_is_expected() {
    assert_eq!(
        err(with(base_env(), "VSIGNER_MQTTEndpoint", "htp://x")),
        "config key MQTTEndpoint (from env VSIGNER_MQTTEndpoint): expected an mqtt://, mqtts://, tcp://, \
         ssl://, tls://, ws:// or wss:// URL, got \"htp://x\""
    );
    let (_d, path) = file("c.json", r#"{"MQTTEndpoint": "htp://x"}"#);
    let e = SignerConfig::load(
        Some(&path),
        without(base_env(), "VSIGNER_MQTTEndpoint").into_iter(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "config key MQTTEndpoint: expected an mqtt://, mqtts://, tcp://, ssl://, tls://, ws:// or wss:// URL, got \"htp://x\""
    );
    let cases: &[(&str, &str, &str)] = &[
        ("VSIGNER_Port", "http", "config key Port (from env VSIGNER_Port): expected a port number"),
        ("VSIGNER_Port", "70000", "expected a port number from 0 to 65535"),
        ("VSIGNER_PrometheusPort", "8080", "config key PrometheusPort (from env VSIGNER_PrometheusPort): must differ from Port"),
        ("VSIGNER_APIBaseURL", "ftp://x", "config key APIBaseURL (from env VSIGNER_APIBaseURL): expected an http:// or https:// URL"),
        ("VSIGNER_APIBaseURL", "http://u:p@x", "config key APIBaseURL (from env VSIGNER_APIBaseURL): credentials in the URL are not allowed"),
        ("VSIGNER_ApprovalMode", "Sometimes", "config key ApprovalMode (from env VSIGNER_ApprovalMode): \"Sometimes\" is not one of"),
        ("VSIGNER_ApprovalTimeoutSeconds", "soon", "config key ApprovalTimeoutSeconds"),
        ("VSIGNER_TraceSpanExporter", "jaeger", "config key TraceSpanExporter (from env VSIGNER_TraceSpanExporter): expected none, stdout, OTLP-NO-TLS or OTLP-TLS, got \"jaeger\""),
        ("VSIGNER_LogFormat", "xml", "config key LogFormat (from env VSIGNER_LogFormat): expected json or text"),
        ("VSIGNER_MaxConcurrentOperations", "0", "config key MaxConcurrentOperations (from env VSIGNER_MaxConcurrentOperations): expected a whole number from 1 to 1024"),
        ("VSIGNER_PrimePoolTarget", "-1", "config key PrimePoolTarget"),
        ("VSIGNER_PresignaturePoolTarget", "many", "config key PresignaturePoolTarget"),
        ("VSIGNER_PollIntervalSeconds", "0", "config key PollIntervalSeconds (from env VSIGNER_PollIntervalSeconds): expected a number of seconds"),
        ("VSIGNER_InitialDevices", "65", "config key InitialDevices"),
        ("VSIGNER_InitialDevices", "a,a", "appears twice"),
        ("VSIGNER_InitialDevices", "a,,b", "expected 1 to 64 characters"),
        ("VSIGNER_STORAGE_BUCKET_URL", "gopher://x", "config key STORAGE_BUCKET_URL (from env VSIGNER_STORAGE_BUCKET_URL): expected a directory path"),
        ("VSIGNER_KeystoreSealing", "tpm", "config key KeystoreSealing (from env VSIGNER_KeystoreSealing): expected passphrase, keyfile or sgx"),
        ("VSIGNER_MQTTCACert", "/nonexistent/ca.pem", "config key MQTTCACert (from env VSIGNER_MQTTCACert): expected PEM text or a readable PEM file"),
        ("VSIGNER_OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "localhost:4318", "config key OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"),
    ];
    for (var, value, expected) in cases {
        let e = err(with(base_env(), var, value));
        assert!(
            e.contains(expected),
            "{var}={value}: got {e:?}, expected {expected:?}"
        );
    }
}

#[test]
fn missing_keys_for_the_mode() {
    for (var, expected) in [
        ("VSIGNER_OrgId", "config key OrgId: must be set"),
        ("VSIGNER_AuthClientId", "config key AuthClientId: must be set"),
        (
            "VSIGNER_AuthClientSecret",
            "config key AuthClientSecret: must be set",
        ),
        ("VSIGNER_APIBaseURL", "config key APIBaseURL: must be set"),
        ("VSIGNER_MQTTEndpoint", "config key MQTTEndpoint: must be set"),
        (
            "VSIGNER_ApprovalMode",
            "config key ApprovalMode: must be set (AlwaysApprove, API, SmartContract or Human)",
        ),
        ("VSIGNER_SignerAPIToken", "config key SignerAPIToken: must be set"),
        (
            "VSIGNER_KeystorePassphrase",
            "config key KeystoreSealing: must be set",
        ),
    ] {
        let e = err(without(base_env(), var));
        assert!(e.starts_with(expected), "{var}: {e}");
    }
    let env = with(base_env(), "VSIGNER_ApprovalMode", "API");
    assert_eq!(
        err(env.clone()),
        "config key ExternalTransactionApprovalURL: must be set when ApprovalMode is API"
    );
    let env = with(env, "VSIGNER_ExternalTransactionApprovalURL", "http://a/tx");
    assert_eq!(
        err(env),
        "config key ExternalReshareApprovalURL: must be set when ApprovalMode is API"
    );
    let env = with(base_env(), "VSIGNER_ApprovalMode", "SmartContract");
    assert_eq!(
        err(env),
        "config key ApprovalNodeRPCAddress: must be set when ApprovalMode is SmartContract"
    );
    let env = with(base_env(), "VSIGNER_TraceSpanExporter", "OTLP-NO-TLS");
    assert!(err(env.clone()).starts_with(
        "config key OTELExporterOTLPEndpoint: must be set when TraceSpanExporter is OTLP-NO-TLS"
    ));
    let e = err(with(
        env.clone(),
        "VSIGNER_OTELExporterOTLPEndpoint",
        "https://c:4318",
    ));
    assert!(
        e.contains("expected an http:// URL when TraceSpanExporter is OTLP-NO-TLS"),
        "{e}"
    );
    let c = load_env(with(
        env,
        "VSIGNER_OTELExporterOTLPEndpoint",
        "http://127.0.0.1:4318/",
    ))
    .unwrap();
    assert_eq!(
        c.otlp_traces_endpoint.unwrap().as_str(),
        "http://127.0.0.1:4318/v1/traces"
    );

    // Keystore sealing: the companion key is required, and a conflicting one refused.
    let env = with(
        without(base_env(), "VSIGNER_KeystorePassphrase"),
        "VSIGNER_KeystoreSealing",
        "keyfile",
    );
    assert!(err(env.clone())
        .starts_with("config key KeystoreKeyFile: must be set when KeystoreSealing is keyfile"));
    let c = load_env(with(env, "VSIGNER_KeystoreKeyFile", "key.bin")).unwrap();
    assert_eq!(c.keystore_sealing, KeystoreSealing::KeyFile("key.bin".into()));
    let env = with(base_env(), "VSIGNER_KeystoreSealing", "sgx");
    assert!(err(env.clone()).contains("config key KeystorePassphrase (from env VSIGNER_KeystorePassphrase): must not be set when KeystoreSealing is sgx"));
    let c = load_env(without(env, "VSIGNER_KeystorePassphrase")).unwrap();
    assert_eq!(c.keystore_sealing, KeystoreSealing::Sgx);
    let env = with(base_env(), "VSIGNER_KeystoreKeyFile", "k");
    assert!(err(env).starts_with("config key KeystoreSealing: must be set (passphrase or keyfile) when both"));
}

#[test]
fn secrets_never_in_errors_or_debug() {
    let e = err(with(base_env(), "VSIGNER_SignerAPIToken", "short-token"));
    assert_eq!(
        e,
        "config key SignerAPIToken (from env VSIGNER_SignerAPIToken): is set but invalid: expected at least 16 characters"
    );
    assert!(!e.contains("short-token"));
    let e = err(with(base_env(), "VSIGNER_KeystorePassphrase", "pw1"));
    assert!(e.contains("is set but invalid") && !e.contains("pw1"), "{e}");
    let (_d, path) = file("c.toml", "AuthClientSecret = [\"s3cr3t-in-a-list\"]\n");
    let e = SignerConfig::load(
        Some(&path),
        without(base_env(), "VSIGNER_AuthClientSecret").into_iter(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "config key AuthClientSecret: is set but invalid: expected a string, got a list"
    );

    // A password in the MQTT URL moves out of it, and is hidden everywhere.
    let env = without(
        without(base_env(), "VSIGNER_MQTTPassword"),
        "VSIGNER_MQTTUsername",
    );
    let env = with(
        env,
        "VSIGNER_MQTTEndpoint",
        "mqtt://vs:url-pw-do-not-print@127.0.0.1:1883",
    );
    let c = load_env(env.clone()).unwrap();
    assert_eq!(c.mqtt_endpoint.as_str(), "mqtt://127.0.0.1:1883");
    assert_eq!(c.mqtt_username.as_deref(), Some("vs"));
    assert_eq!(c.mqtt_password.as_ref().unwrap().as_str(), "url-pw-do-not-print");
    let debug = format!("{c:?} {:?}", c.mqtt_config());
    let summary = c.summary().to_string();
    for s in [SECRET, PASSPHRASE, TOKEN, "url-pw-do-not-print"] {
        assert!(!debug.contains(s), "{s} in Debug: {debug}");
        assert!(!summary.contains(s), "{s} in summary: {summary}");
    }
    assert!(debug.contains("<redacted>"));
    // Both in the URL and as keys: ambiguous, refused, without the password.
    let e = err(with(env, "VSIGNER_MQTTPassword", MQTT_PW));
    assert!(
        e.starts_with("config key MQTTEndpoint (from env VSIGNER_MQTTEndpoint): has credentials in the URL")
    );
    assert!(!e.contains("url-pw-do-not-print"));
    // A bad URL holding credentials is quoted without them.
    let e = err(with(
        base_env(),
        "VSIGNER_APIBaseURL",
        "gopher://u:hunter2@x/?k=v",
    ));
    assert!(!e.contains("hunter2") && !e.contains("k=v"), "{e}");
}

#[test]
fn mqtt_config_and_ca_file() {
    let (_d, ca) = file(
        "ca.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    let env = with(base_env(), "EDG_VS_MQTTCACert", ca.to_str().unwrap());
    let env = with(env, "VSIGNER_MQTTEndpoint", "tls://broker:8883");
    let c = load_env(env).unwrap();
    assert_eq!(
        c.mqtt_ca_cert.as_ref().unwrap().source,
        CaCertSource::File(ca.clone())
    );
    let m = c.mqtt_config();
    assert_eq!(m.endpoint, "tls://broker:8883");
    assert_eq!(m.username.as_deref(), Some("vs"));
    assert_eq!(m.password.as_ref().unwrap().as_str(), MQTT_PW);
    assert_eq!(
        m.ca_cert_pem.as_deref(),
        Some(std::fs::read(&ca).unwrap().as_slice())
    );

    let (_d, not_pem) = file("ca.pem", "hello");
    let e = err(with(base_env(), "VSIGNER_MQTTCACert", not_pem.to_str().unwrap()));
    assert!(
        e.starts_with("config key MQTTCACert (from env VSIGNER_MQTTCACert): expected a PEM certificate"),
        "{e}"
    );
}

#[test]
fn standard_env_names_and_initial_devices() {
    let env = with(base_env(), "STORAGE_BUCKET_URL", "/data/vs");
    let env = with(env, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://127.0.0.1:4318");
    let env = with(env, "EDG_VS_InitialDevices", "treasury, ops");
    let c = load_env(env.clone()).unwrap();
    assert_eq!(c.storage_bucket_url, "/data/vs");
    assert_eq!(
        c.otlp_logs_endpoint.unwrap().as_str(),
        "http://127.0.0.1:4318/v1/logs"
    );
    assert_eq!(c.initial_devices, vec!["treasury", "ops"]);
    // The prefixed names win over the plain ones.
    let c = load_env(with(env, "VSIGNER_STORAGE_BUCKET_URL", "file:///srv/vs")).unwrap();
    assert_eq!(c.storage_bucket_url, "file:///srv/vs");
    let c = load_env(with(base_env(), "VSIGNER_InitialDevices", "only-one")).unwrap();
    assert_eq!(c.initial_devices, vec!["only-one"]);
}

#[test]
fn errors_report_their_origin() {
    let e = load_env(with(base_env(), "EDG_VS_Port", "x")).unwrap_err();
    match e {
        ConfigError::Key { key, origin, .. } => {
            assert_eq!(key, "Port");
            assert_eq!(origin, Some(Origin::Env("EDG_VS_Port".into())));
        }
        other => panic!("{other:?}"),
    }
    let e = SignerConfig::load(
        Some(std::path::Path::new("/nonexistent/vs.toml")),
        base_env().into_iter(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("config file /nonexistent/vs.toml: cannot read"),
        "{e}"
    );
}

#[test]
fn warnings_for_risky_settings() {
    // base_env: AlwaysApprove, plain MQTT with a password, http coordinator, all on loopback.
    let w = load_env(base_env()).unwrap().warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("ApprovalMode is AlwaysApprove"), "{w:?}");
    let env = with(base_env(), "VSIGNER_MQTTEndpoint", "mqtt://broker.example:1883");
    let env = with(env, "VSIGNER_APIBaseURL", "http://coordinator.example");
    let w = load_env(env.clone()).unwrap().warnings();
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w[1].starts_with("MQTTEndpoint is not TLS"), "{w:?}");
    assert!(w[2].starts_with("APIBaseURL uses http://"), "{w:?}");
    for s in [SECRET, MQTT_PW, PASSPHRASE, TOKEN] {
        assert!(!w.concat().contains(s));
    }
    let w = load_env(with(
        env.clone(),
        "VSIGNER_GraphQLService",
        "http://graphql.example/graphql",
    ))
    .unwrap()
    .warnings();
    assert!(w[3].starts_with("GraphQLService uses http://"), "{w:?}");
    let env = with(env, "VSIGNER_MQTTEndpoint", "wss://broker.example:8084/mqtt");
    let env = with(env, "VSIGNER_APIBaseURL", "https://coordinator.example");
    let env = with(env, "VSIGNER_ApprovalMode", "API");
    let env = with(env, "VSIGNER_ExternalTransactionApprovalURL", "https://a/tx");
    let env = with(env, "VSIGNER_ExternalReshareApprovalURL", "https://a/reshare");
    let reply_key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
    let env = with(
        env,
        "VSIGNER_ApprovalHTTPPublicKeyHex",
        &vsigner_approval::config::public_key_hex(&reply_key),
    );
    assert!(load_env(env).unwrap().warnings().is_empty());
}

/// Finding 4 of [trust-identity]: a webhook whose answers anyone on the network path could
/// give is refused at start: plain http:// to a host other than loopback, or no
/// `ApprovalHTTPPublicKeyHex` to check signed replies (an echoed nonce alone would approve).
/// `ApprovalAcceptInsecure = true` says the operator accepts that; it is then a warning.
#[test]
fn a_webhook_anyone_could_answer_is_refused_at_start() {
    let reply_key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
    let key_hex = vsigner_approval::config::public_key_hex(&reply_key);
    let api = with(base_env(), "VSIGNER_ApprovalMode", "API");
    let api = with(
        api,
        "VSIGNER_ExternalTransactionApprovalURL",
        "https://approver.example/tx",
    );
    let api = with(
        api,
        "VSIGNER_ExternalReshareApprovalURL",
        "https://approver.example/reshare",
    );
    let e = err(api.clone());
    assert!(
        e.starts_with("config key ApprovalHTTPPublicKeyHex: must be set when ApprovalMode is API"),
        "{e}"
    );
    assert!(
        e.contains("ApprovalAcceptInsecure"),
        "the error names the way out: {e}"
    );
    let signed = with(api.clone(), "VSIGNER_ApprovalHTTPPublicKeyHex", &key_hex);
    load_env(signed.clone()).unwrap();
    let plain = with(
        signed.clone(),
        "VSIGNER_ExternalReshareApprovalURL",
        "http://approver.example/reshare",
    );
    let e = err(plain.clone());
    assert!(
        e.starts_with("config key ExternalReshareApprovalURL (from env VSIGNER_ExternalReshareApprovalURL): plain http:// to approver.example"),
        "{e}"
    );
    // Loopback is the operator's own machine: allowed.
    load_env(with(
        signed,
        "VSIGNER_ExternalReshareApprovalURL",
        "http://127.0.0.1:8099/reshare",
    ))
    .unwrap();
    // Accepted explicitly: it starts, and says so.
    let accepted = with(
        without(plain, "VSIGNER_ApprovalHTTPPublicKeyHex"),
        "VSIGNER_ApprovalAcceptInsecure",
        "true",
    );
    let c = load_env(accepted).unwrap();
    let w = c.warnings();
    assert!(
        w.iter().any(|w| w.contains("ApprovalAcceptInsecure")
            && w.contains("unsigned")
            && w.contains("plain http")),
        "{w:?}"
    );
}

/// io.finnet's configuration file, unchanged, starts vsigner: every key of theirs is
/// accepted (the meaningful ones used), and only vsigner's own secrets come from the
/// environment. Before [compat] `InitialDevice`, `Environment`, `BindingNetworkName` and
/// `GraphQLService` stopped it as unknown keys, and a `wss://` broker was refused.
#[test]
fn an_iofinnet_configuration_file_is_accepted() {
    let pem_hex = hex::encode(
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n",
    );
    let (_d, path) = file(
        "config.json",
        &serde_json::json!({
            "Port": 8080,
            "PrometheusPort": 9090,
            "OrgId": "ap3hsaaaa1koxjkbaaaaavso",
            "AuthClientId": "client-id",
            "AuthClientSecret": SECRET,
            "Environment": "production",
            "BindingNetworkName": "eth0",
            "InitialDevice": "VS_Treasury",
            "APIBaseURL": "https://api.iofinnet.example",
            "GraphQLService": "https://graphql.iofinnet.example/graphql",
            "MQTTEndpoint": "wss://mqtt.vault.iofinnet.example:8084/mqtt",
            "MQTTCACert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "ApprovalMode": "SmartContract",
            "ApprovalNodeRPCAddress": "https://polygon-rpc.example",
            "ApprovalSmartContractAddress": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "ExternalTransactionApprovalURL": "https://approver.example/my-api/transaction-approval",
            "ExternalReshareApprovalURL": "https://approver.example/my-api/reshare-approval",
            "ApprovalHTTPPublicKeyHex": pem_hex,
            "TraceSpanExporter": "OTLP-TLS",
            "OTELExporterOTLPEndpoint": "https://otel.example:4318",
            "STORAGE_BUCKET_URL": "/var/lib/vsigner",
        })
        .to_string(),
    );
    let env = [
        ("VSIGNER_KeystorePassphrase", PASSPHRASE),
        ("VSIGNER_SignerAPIToken", TOKEN),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let c = SignerConfig::load(Some(&path), env.into_iter()).unwrap();
    assert_eq!(c.initial_devices, vec!["VS_Treasury"]);
    assert_eq!(
        c.graphql_url.as_ref().unwrap().as_str(),
        "https://graphql.iofinnet.example/graphql"
    );
    assert_eq!(
        c.mqtt_endpoint.as_str(),
        "wss://mqtt.vault.iofinnet.example:8084/mqtt"
    );
    assert_eq!(c.environment.as_deref(), Some("production"));
    assert_eq!(c.binding_network_name.as_deref(), Some("eth0"));
    match &c.approval.mode {
        ModeConfig::SmartContract(sc) => assert_eq!(sc.layout, vsigner_approval::ContractLayout::IoFinnet),
        other => panic!("{other:?}"),
    }
    let summary = c.summary();
    assert_eq!(
        summary["GraphQLService"],
        "https://graphql.iofinnet.example/graphql"
    );
    assert_eq!(summary["ApprovalContractLayout"], "iofinnet");

    // Unknown keys still fail; one device named twice over is refused, naming both keys.
    let e = err(with(base_env(), "VSIGNER_InitialDevise", "x"));
    assert!(e.contains("InitialDevise"), "{e}");
    let e = err(with(
        with(base_env(), "VSIGNER_InitialDevice", "a"),
        "VSIGNER_InitialDevices",
        "b",
    ));
    assert!(e.contains("InitialDevice") && e.contains("not both"), "{e}");
    let e = err(with(
        with(
            with(
                with(base_env(), "VSIGNER_ApprovalMode", "SmartContract"),
                "VSIGNER_ApprovalNodeRPCAddress",
                "http://127.0.0.1:8545",
            ),
            "VSIGNER_ApprovalSmartContractAddress",
            "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        ),
        "VSIGNER_ApprovalContractLayout",
        "v2",
    ));
    assert!(
        e.contains("ApprovalContractLayout") && e.contains("iofinnet or vsigner-v3"),
        "{e}"
    );
    // GraphQL defaults to the base URL's /graphql.
    let c = load_env(base_env()).unwrap();
    assert_eq!(c.summary()["GraphQLService"], "http://127.0.0.1:8000/graphql");
}

#[test]
fn a_disaster_recovery_key_is_read_at_start_and_a_bad_one_refused() {
    let private = vsigner_recovery::DrPrivateKey::generate();
    let public_pem = private.public_key().to_pem().unwrap();
    // Unset: no files.
    assert!(load_env(base_env()).unwrap().disaster_recovery.is_none());
    // Inline PEM, default directory; shown by its fingerprint only.
    let c = load_env(with(base_env(), "VSIGNER_DisasterRecoveryPublicKey", &public_pem)).unwrap();
    let dr = c.disaster_recovery.as_ref().unwrap();
    assert_eq!(dr.dir, PathBuf::from("vsigner-disaster-recovery"));
    assert_eq!(dr.public_key, private.public_key());
    let shown = c.summary().to_string();
    assert!(
        shown.contains(&dr.fingerprint()) && !shown.contains("BEGIN"),
        "{shown}"
    );
    // A file path, and a directory.
    let (_d, path) = file("dr.pub", &public_pem);
    let env = with(
        with(
            base_env(),
            "VSIGNER_DisasterRecoveryPublicKey",
            path.to_str().unwrap(),
        ),
        "VSIGNER_DisasterRecoveryDir",
        "/srv/dr",
    );
    let c = load_env(env).unwrap();
    assert_eq!(c.disaster_recovery.unwrap().dir, PathBuf::from("/srv/dr"));

    // Refused, naming the key: a missing file, something else than an ML-KEM key, the
    // private key (without quoting it), and a directory without a key.
    let e = err(with(
        base_env(),
        "VSIGNER_DisasterRecoveryPublicKey",
        "/nonexistent/dr.pub",
    ));
    assert!(
        e.contains("DisasterRecoveryPublicKey") && e.contains("No such file"),
        "{e}"
    );
    assert!(!e.contains("/nonexistent/dr.pub"), "the value is not quoted: {e}");
    let (_d2, cert) = file("x.pem", "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n");
    let e = err(with(
        base_env(),
        "VSIGNER_DisasterRecoveryPublicKey",
        cert.to_str().unwrap(),
    ));
    assert!(
        e.contains("DisasterRecoveryPublicKey") && e.contains("ML-KEM-768"),
        "{e}"
    );
    let private_pem = private.to_pem().unwrap();
    let e = err(with(
        base_env(),
        "VSIGNER_DisasterRecoveryPublicKey",
        &private_pem,
    ));
    assert!(e.contains("holds a private key"), "{e}");
    let body: String = private_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!e.contains(&body[..40]), "the private key is not quoted: {e}");
    let (_d3, private_file) = file("dr.key", &private_pem);
    let e = err(with(
        base_env(),
        "VSIGNER_DisasterRecoveryPublicKey",
        private_file.to_str().unwrap(),
    ));
    assert!(
        e.contains("holds a private key") && !e.contains(&body[..40]),
        "{e}"
    );
    let e = err(with(base_env(), "VSIGNER_DisasterRecoveryDir", "/srv/dr"));
    assert!(
        e.contains("DisasterRecoveryDir") && e.contains("DisasterRecoveryPublicKey is not"),
        "{e}"
    );
}
