//! How the configuration is shown, never with a secret: `Debug` of [`SignerConfig`], the
//! summary of `GET /version` and the start-up log, the warnings about risky settings, and
//! URLs and storage locations without credentials.

use std::fmt;

use url::Url;
use vsigner_approval::{ApprovalMode, ModeConfig};

use super::{CaCert, CaCertSource, KeystoreSealing, SignerConfig};

/// `Some(value)` shown, or `<redacted>` / `None` for secrets.
fn redacted<T>(v: &Option<T>) -> Option<&'static str> {
    v.as_ref().map(|_| "<redacted>")
}

impl fmt::Debug for SignerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignerConfig")
            .field("port", &self.port)
            .field("prometheus_port", &self.prometheus_port)
            .field("org_id", &self.org_id)
            .field("auth_client_id", &self.auth_client_id)
            .field("auth_client_secret", &"<redacted>")
            .field("api_base_url", &shown_url(&self.api_base_url))
            .field("mqtt_endpoint", &shown_url(&self.mqtt_endpoint))
            .field("mqtt_ca_cert", &self.mqtt_ca_cert)
            .field("api_ca_cert", &self.api_ca_cert)
            .field("api_tls", &self.api_tls)
            .field("mqtt_username", &self.mqtt_username)
            .field("mqtt_password", &redacted(&self.mqtt_password))
            .field("initial_devices", &self.initial_devices)
            .field("approval", &self.approval)
            .field(
                "trusted_device_keys",
                &self.trusted_device_keys.as_ref().map(|k| k.len()),
            )
            .field("trace_span_exporter", &self.trace_span_exporter)
            .field(
                "otlp_traces_endpoint",
                &self.otlp_traces_endpoint.as_ref().map(shown_url),
            )
            .field(
                "otlp_logs_endpoint",
                &self.otlp_logs_endpoint.as_ref().map(shown_url),
            )
            .field("storage_bucket_url", &shown_storage(&self.storage_bucket_url))
            .field("keystore_sealing", &self.keystore_sealing)
            .field(
                "disaster_recovery",
                &self.disaster_recovery.as_ref().map(|d| &d.dir),
            )
            .field(
                "signer_api_tokens",
                &format!("<{} redacted>", self.signer_api_tokens.len()),
            )
            .field("poll_interval", &self.poll_interval)
            .field("max_concurrent_operations", &self.max_concurrent_operations)
            .field("prime_pool_target", &self.prime_pool_target)
            .field("presignature_pool_target", &self.presignature_pool_target)
            .field("protocol_idle_timeout", &self.protocol_idle_timeout)
            .field("allow_public_test_primes", &self.allow_public_test_primes)
            .field("log_format", &self.log_format)
            .finish()
    }
}

/// Where a CA certificate came from: `inline`, its file, or null.
fn shown_ca(ca: Option<&CaCert>) -> serde_json::Value {
    match ca {
        None => serde_json::json!(null),
        Some(CaCert {
            source: CaCertSource::Inline,
            ..
        }) => serde_json::json!("inline"),
        Some(CaCert {
            source: CaCertSource::File(p),
            ..
        }) => serde_json::json!(p.display().to_string()),
    }
}

/// Whether `url`'s host is this machine: `localhost` or a loopback address (also for
/// non-special schemes such as `mqtt://`, which keep IP addresses as opaque host names).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            d == "localhost"
                || d.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A URL for logs and summaries: scheme, host, port and path; never user info, query or
/// fragment (they often carry an access key).
pub fn shown_url(url: &Url) -> String {
    let mut out = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(p) = url.port() {
        out.push_str(&format!(":{p}"));
    }
    if url.path() != "/" || url.as_str().ends_with('/') {
        out.push_str(url.path());
    }
    out
}

/// `STORAGE_BUCKET_URL` for summaries: a path as is; a URL via [`shown_url`].
pub fn shown_storage(s: &str) -> String {
    match Url::parse(s) {
        Ok(u) if s.contains("://") => shown_url(&u),
        _ => s.to_owned(),
    }
}

impl SignerConfig {
    /// Settings that are valid but risky, one sentence each, for the daemon to log as
    /// warnings at start (never containing a secret).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.allow_public_test_primes {
            out.push(
                "AllowPublicTestPrimes is true: key material made from the public test primes \
                 (test-data/primes) is accepted, and anyone can decrypt its Paillier ciphertexts \
                 and learn the key from one signature (for tests and demonstrations only)"
                    .to_owned(),
            );
        }
        if self.approval_mode() == ApprovalMode::AlwaysApprove {
            out.push(
                "ApprovalMode is AlwaysApprove: every operation is approved without any check \
                 (for development only)"
                    .to_owned(),
            );
        }
        if matches!(self.mqtt_endpoint.scheme(), "mqtt" | "tcp" | "ws")
            && self.mqtt_password.is_some()
            && !is_loopback(&self.mqtt_endpoint)
        {
            out.push(
                "MQTTEndpoint is not TLS (mqtt://, tcp:// or ws://) and MQTTPassword is set: the \
                 broker password crosses the network in clear; use mqtts:// or wss://"
                    .to_owned(),
            );
        }
        if let ModeConfig::Api(api) = &self.approval.mode {
            if !api.insecurities.is_empty() {
                out.push(format!(
                    "ApprovalAcceptInsecure is set and {}: anyone on the network path can approve",
                    api.insecurities.join(" and ")
                ));
            }
        }
        if let ModeConfig::Human(human) = &self.approval.mode {
            for insecurity in &human.insecurities {
                out.push(format!("ApprovalAcceptInsecure is set and {insecurity}"));
            }
        }
        if self.api_base_url.scheme() == "http" && !is_loopback(&self.api_base_url) {
            out.push(
                "APIBaseURL uses http:// to a host that is not loopback: the coordinator \
                 credentials cross the network in clear; use https://"
                    .to_owned(),
            );
        }
        if let Some(graphql) = &self.graphql_url {
            if graphql.scheme() == "http" && !is_loopback(graphql) {
                out.push(
                    "GraphQLService uses http:// to a host that is not loopback: the coordinator \
                     access token crosses the network in clear; use https://"
                        .to_owned(),
                );
            }
        }
        out
    }

    /// A view without secrets, for `GET /version` and the start-up log: every key by its
    /// configuration name; secrets only as `"set"` / `"unset"`; URLs without user info or
    /// query.
    pub fn summary(&self) -> serde_json::Value {
        use serde_json::json;
        let set = |b: bool| if b { "set" } else { "unset" };
        let mut approval = serde_json::Map::new();
        approval.insert("ApprovalMode".into(), json!(self.approval_mode().as_str()));
        match &self.approval.mode {
            ModeConfig::Api(api) => {
                approval.insert(
                    "ExternalTransactionApprovalURL".into(),
                    json!(shown_url(&api.transaction_url)),
                );
                approval.insert(
                    "ExternalReshareApprovalURL".into(),
                    json!(shown_url(&api.reshare_url)),
                );
                approval.insert(
                    "ApprovalHTTPPublicKeyHex".into(),
                    json!(set(api.reply_public_key.is_some())),
                );
                approval.insert(
                    "ApprovalAcceptInsecure".into(),
                    json!(!api.insecurities.is_empty()),
                );
            }
            ModeConfig::SmartContract(c) => {
                approval.insert(
                    "ApprovalNodeRPCAddress".into(),
                    json!(format!(
                        "{}://{}",
                        c.rpc_url.scheme(),
                        c.rpc_url.host_str().unwrap_or_default()
                    )),
                );
                approval.insert(
                    "ApprovalSmartContractAddress".into(),
                    json!(c.address.to_string()),
                );
                approval.insert("ApprovalChainId".into(), json!(c.chain_id));
                approval.insert("ApprovalContractLayout".into(), json!(c.layout.as_str()));
                approval.insert(
                    "ApprovalContractCodeHash".into(),
                    json!(c.code_hash.map(hex::encode)),
                );
            }
            ModeConfig::Human(h) => {
                approval.insert(
                    "HumanApprovalPasskeysFile".into(),
                    json!(h.passkeys_file.display().to_string()),
                );
                approval.insert(
                    "HumanApprovalPasskeys".into(),
                    json!(h.passkeys.iter().map(|p| &p.name).collect::<Vec<_>>()),
                );
                approval.insert("HumanApprovalQuorum".into(), json!(h.quorum));
                approval.insert(
                    "HumanApprovalOrigin".into(),
                    json!(h.origin.origin().ascii_serialization()),
                );
                approval.insert("HumanApprovalRpId".into(), json!(h.rp_id));
            }
            _ => {}
        }
        approval.insert(
            "ApprovalTimeoutSeconds".into(),
            json!(self.approval.timeout.as_secs_f64()),
        );
        approval.insert("ApprovalRetries".into(), json!(self.approval.retries));
        approval.insert(
            "TrustedDeviceKeys".into(),
            json!(self
                .trusted_device_keys
                .as_ref()
                .map(|k| format!("{} keys", k.len()))),
        );
        let mut out = json!({
            "Port": self.port,
            "PrometheusPort": self.prometheus_port,
            "OrgId": self.org_id,
            "AuthClientId": self.auth_client_id,
            "AuthClientSecret": set(true),
            "APIBaseURL": shown_url(&self.api_base_url),
            "GraphQLService": shown_url(self.graphql_url.as_ref().unwrap_or(&{
                let mut u = self.api_base_url.clone();
                let path = format!("{}/graphql", u.path().trim_end_matches('/'));
                u.set_path(&path);
                u
            })),
            "Environment": self.environment,
            "BindingNetworkName": self.binding_network_name,
            "MQTTEndpoint": shown_url(&self.mqtt_endpoint),
            "MQTTCACert": shown_ca(self.mqtt_ca_cert.as_ref()),
            "APICACert": shown_ca(self.api_ca_cert.as_ref()),
            "TLSCertFile": self.api_tls.as_ref().map(|t| t.cert_file.display().to_string()),
            "TLSKeyFile": self.api_tls.as_ref().map(|t| t.key_file.display().to_string()),
            "MQTTUsername": self.mqtt_username,
            "MQTTPassword": set(self.mqtt_password.is_some()),
            "InitialDevices": self.initial_devices,
            "TraceSpanExporter": self.trace_span_exporter.as_str(),
            "OTELExporterOTLPEndpoint": self.otlp_traces_endpoint.as_ref().map(shown_url),
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": self.otlp_logs_endpoint.as_ref().map(shown_url),
            "STORAGE_BUCKET_URL": shown_storage(&self.storage_bucket_url),
            "KeystoreSealing": self.keystore_sealing.as_str(),
            "KeystorePassphrase": set(matches!(self.keystore_sealing, KeystoreSealing::Passphrase(_))),
            "KeystoreKeyFile": match &self.keystore_sealing {
                KeystoreSealing::KeyFile(p) => json!(p.display().to_string()),
                _ => json!(null),
            },
            "DisasterRecoveryPublicKey": self.disaster_recovery.as_ref().map(|d| format!("ML-KEM-768, SHA-256 {}", d.fingerprint())),
            "DisasterRecoveryDir": self.disaster_recovery.as_ref().map(|d| d.dir.display().to_string()),
            "SignerAPIToken": set(true),
            "PollIntervalSeconds": self.poll_interval.as_secs_f64(),
            "MaxConcurrentOperations": self.max_concurrent_operations,
            "PrimePoolTarget": self.prime_pool_target,
            "PresignaturePoolTarget": self.presignature_pool_target,
            "ProtocolIdleTimeoutSeconds": self.protocol_idle_timeout.as_secs(),
            "AllowPublicTestPrimes": self.allow_public_test_primes,
            "LogFormat": self.log_format.as_str(),
        });
        if let Some(obj) = out.as_object_mut() {
            obj.extend(approval);
        }
        out
    }
}
