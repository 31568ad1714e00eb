//! The signer's configuration: one JSON or TOML file, each key overridable by the environment
//! variables `VSIGNER_<Key>` and `EDG_VS_<Key>` (`VSIGNER_` wins), validated once at start.
//!
//! [`SignerConfig::load`] refuses an unknown key, a key missing for the chosen mode, and a bad
//! value, with a [`ConfigError`] whose `Display` is one line naming the key and what is
//! expected. Secrets ([`keys::SECRETS`]) are kept in [`Zeroizing`] strings, shown as
//! `<redacted>` by `Debug`, reported only as set/unset by [`SignerConfig::summary`], and never
//! quoted in an error ("is set but invalid").
//!
//! Precedence, highest first: `VSIGNER_<Key>`, `EDG_VS_<Key>`, the plain standard variables
//! `STORAGE_BUCKET_URL` and `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`, the file, the default. An
//! empty value (or JSON `null`) means "not set", so an empty variable unsets a file value.
//! Values are trimmed of surrounding white space. Relative paths are relative to the working
//! directory.

mod error;
pub mod keys;
mod raw;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;
use vsigner_approval::{ApprovalConfig, ApprovalMode, ApprovalValues, ModeConfig};
use vsigner_transport::MqttConfig;
use zeroize::{Zeroize, Zeroizing};

pub use error::{ConfigError, Origin};
use raw::{Raw, RawMap};

/// Default `Port`.
pub const DEFAULT_PORT: u16 = 8080;
/// Default `PrometheusPort`.
pub const DEFAULT_PROMETHEUS_PORT: u16 = 9090;
/// Default `PollIntervalSeconds`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Default `MaxConcurrentOperations`.
pub const DEFAULT_MAX_CONCURRENT_OPERATIONS: usize = 8;
/// Default `PrimePoolTarget`.
pub const DEFAULT_PRIME_POOL_TARGET: u32 = 2;
/// Default `PresignaturePoolTarget` (0: no presignature pool).
pub const DEFAULT_PRESIGNATURE_POOL_TARGET: u32 = 0;
/// Default `STORAGE_BUCKET_URL`: a directory relative to the working directory.
pub const DEFAULT_STORAGE_BUCKET_URL: &str = "vsigner-data";
/// Most devices one instance may create at first start.
pub const MAX_INITIAL_DEVICES: usize = 64;
/// Shortest accepted `SignerAPIToken`.
pub const MIN_API_TOKEN_LEN: usize = 16;
/// Shortest accepted `KeystorePassphrase`.
pub const MIN_PASSPHRASE_LEN: usize = 8;

/// `TraceSpanExporter`: where spans go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceSpanExporter {
    /// No span export (logs only).
    None,
    /// Spans printed to stdout as JSON lines, with the logs.
    Stdout,
    /// OTLP/HTTP (protobuf) to an `http://` collector.
    OtlpNoTls,
    /// OTLP/HTTP (protobuf) to an `https://` collector.
    OtlpTls,
}

impl TraceSpanExporter {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceSpanExporter::None => "none",
            TraceSpanExporter::Stdout => "stdout",
            TraceSpanExporter::OtlpNoTls => "OTLP-NO-TLS",
            TraceSpanExporter::OtlpTls => "OTLP-TLS",
        }
    }

    /// Whether spans go to an OTLP collector.
    pub fn is_otlp(self) -> bool {
        matches!(self, TraceSpanExporter::OtlpNoTls | TraceSpanExporter::OtlpTls)
    }
}

impl fmt::Display for TraceSpanExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `LogFormat`: how logs are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// One JSON object per line (default).
    Json,
    /// Human-readable text.
    Text,
}

impl LogFormat {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        }
    }
}

/// How the keystore's data key is sealed (`KeystoreSealing` and its companion keys).
#[derive(Clone, PartialEq, Eq)]
pub enum KeystoreSealing {
    /// `passphrase`: Argon2id of `KeystorePassphrase`.
    Passphrase(Zeroizing<String>),
    /// `keyfile`: a 32-byte key in the file `KeystoreKeyFile` (created if missing).
    KeyFile(PathBuf),
    /// `sgx`: the Gramine MRENCLAVE sealing key.
    Sgx,
}

impl KeystoreSealing {
    /// The configuration spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            KeystoreSealing::Passphrase(_) => "passphrase",
            KeystoreSealing::KeyFile(_) => "keyfile",
            KeystoreSealing::Sgx => "sgx",
        }
    }
}

impl fmt::Debug for KeystoreSealing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeystoreSealing::Passphrase(_) => f.write_str("Passphrase(<redacted>)"),
            KeystoreSealing::KeyFile(p) => f.debug_tuple("KeyFile").field(p).finish(),
            KeystoreSealing::Sgx => f.write_str("Sgx"),
        }
    }
}

/// Where `MQTTCACert` came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaCertSource {
    /// PEM text in the value itself.
    Inline,
    /// Read from this file at load time.
    File(PathBuf),
}

/// The broker CA certificate (`MQTTCACert`), read and checked at load time.
#[derive(Clone, PartialEq, Eq)]
pub struct CaCert {
    /// PEM bytes.
    pub pem: Vec<u8>,
    /// Inline or the file it was read from.
    pub source: CaCertSource,
}

impl fmt::Debug for CaCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaCert")
            .field("source", &self.source)
            .field("pem_bytes", &self.pem.len())
            .finish()
    }
}

/// The validated signer configuration.
///
/// # Security
/// `auth_client_secret`, `mqtt_password`, `signer_api_token` and a passphrase in
/// `keystore_sealing` are zeroized on drop and never shown by `Debug` or
/// [`summary`](Self::summary).
#[derive(Clone)]
pub struct SignerConfig {
    /// `Port`: HTTP API port (0: any free port).
    pub port: u16,
    /// `PrometheusPort`: `/metrics` port (0: any free port).
    pub prometheus_port: u16,
    /// `OrgId`.
    pub org_id: String,
    /// `AuthClientId`.
    pub auth_client_id: String,
    /// `AuthClientSecret`.
    pub auth_client_secret: Zeroizing<String>,
    /// `APIBaseURL`: the coordinator.
    pub api_base_url: Url,
    /// `MQTTEndpoint` without credentials (credentials in the URL move to the fields below).
    pub mqtt_endpoint: Url,
    /// `MQTTCACert`.
    pub mqtt_ca_cert: Option<CaCert>,
    /// `MQTTUsername` (or the user of `MQTTEndpoint`).
    pub mqtt_username: Option<String>,
    /// `MQTTPassword` (or the password of `MQTTEndpoint`).
    pub mqtt_password: Option<Zeroizing<String>>,
    /// `InitialDevices`: names of the virtual devices to create when none exists.
    pub initial_devices: Vec<String>,
    /// The approval keys, validated by [`ApprovalConfig::from_values`].
    pub approval: ApprovalConfig,
    /// `TraceSpanExporter`.
    pub trace_span_exporter: TraceSpanExporter,
    /// `OTELExporterOTLPEndpoint`, completed with `/v1/traces`; set when the exporter is OTLP.
    pub otlp_traces_endpoint: Option<Url>,
    /// `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`, completed with `/v1/logs` when it has no path.
    pub otlp_logs_endpoint: Option<Url>,
    /// `STORAGE_BUCKET_URL`: for `vsigner_keystore::Keystore::open`.
    pub storage_bucket_url: String,
    /// `KeystoreSealing` with `KeystorePassphrase` / `KeystoreKeyFile`.
    pub keystore_sealing: KeystoreSealing,
    /// `SignerAPIToken`: the bearer token of the HTTP API.
    pub signer_api_token: Zeroizing<String>,
    /// `PollIntervalSeconds`.
    pub poll_interval: Duration,
    /// `MaxConcurrentOperations`.
    pub max_concurrent_operations: usize,
    /// `PrimePoolTarget`.
    pub prime_pool_target: u32,
    /// `PresignaturePoolTarget`.
    pub presignature_pool_target: u32,
    /// `LogFormat`.
    pub log_format: LogFormat,
}

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
            .field("mqtt_username", &self.mqtt_username)
            .field("mqtt_password", &redacted(&self.mqtt_password))
            .field("initial_devices", &self.initial_devices)
            .field("approval", &self.approval)
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
            .field("signer_api_token", &"<redacted>")
            .field("poll_interval", &self.poll_interval)
            .field("max_concurrent_operations", &self.max_concurrent_operations)
            .field("prime_pool_target", &self.prime_pool_target)
            .field("presignature_pool_target", &self.presignature_pool_target)
            .field("log_format", &self.log_format)
            .finish()
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

/// A raw value in an error message: URLs without user info or query; long values cut.
fn quoted(s: &str) -> String {
    let shown = match Url::parse(s) {
        Ok(u)
            if s.contains("://")
                && (!u.username().is_empty() || u.password().is_some() || u.query().is_some()) =>
        {
            shown_url(&u)
        }
        _ => s.to_owned(),
    };
    let mut cut: String = shown.chars().take(80).collect();
    if cut.len() < shown.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// `MQTTEndpoint` without credentials, and the credentials.
struct MqttParts {
    endpoint: Url,
    username: Option<String>,
    password: Option<Zeroizing<String>>,
}

/// Reads the merged raw values and validates them one key at a time.
struct Reader {
    map: RawMap,
}

impl Drop for Reader {
    fn drop(&mut self) {
        // The raw strings include the secrets' text.
        for (value, _) in self.map.values_mut() {
            if let Raw::Str(s) = value {
                s.zeroize();
            }
        }
    }
}

impl Reader {
    fn origin(&self, key: &str) -> Option<Origin> {
        self.map.get(key).map(|(_, o)| o.clone())
    }

    fn err(&self, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::key_error(key, self.origin(key), problem)
    }

    /// The value as a trimmed string; `None` when unset or empty. Numbers and booleans are
    /// turned into their text; lists and tables are refused.
    fn string(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        let secret = keys::SECRETS.contains(&key);
        let s = match self.map.get(key) {
            None => return Ok(None),
            Some((Raw::Str(s), _)) => s.trim().to_owned(),
            Some((Raw::Int(i), _)) => i.to_string(),
            Some((Raw::Float(f), _)) => f.to_string(),
            Some((Raw::Bool(b), _)) => b.to_string(),
            Some((other, _)) => {
                let problem = format!("expected a string, got {}", other.type_name());
                return Err(self.err(
                    key,
                    if secret {
                        format!("is set but invalid: {problem}")
                    } else {
                        problem
                    },
                ));
            }
        };
        Ok((!s.is_empty()).then_some(s))
    }

    fn required(&self, key: &'static str, what: &str) -> Result<String, ConfigError> {
        self.string(key)?
            .ok_or_else(|| ConfigError::key_error(key, None, format!("must be set ({what})")))
    }

    fn secret(&self, key: &'static str, min_len: usize) -> Result<Option<Zeroizing<String>>, ConfigError> {
        let Some(s) = self.string(key)?.map(Zeroizing::new) else {
            return Ok(None);
        };
        if s.chars().count() < min_len {
            return Err(self.err(
                key,
                format!("is set but invalid: expected at least {min_len} characters"),
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(self.err(key, "is set but invalid: contains control characters"));
        }
        Ok(Some(s))
    }

    fn port(&self, key: &'static str, default: u16) -> Result<u16, ConfigError> {
        match self.string(key)? {
            None => Ok(default),
            Some(s) => s.parse().map_err(|_| {
                self.err(
                    key,
                    format!("expected a port number from 0 to 65535, got {}", quoted(&s)),
                )
            }),
        }
    }

    fn whole<T: std::str::FromStr + PartialOrd + fmt::Display + Copy>(
        &self,
        key: &'static str,
        default: T,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        match self.string(key)? {
            None => Ok(default),
            Some(s) => s
                .parse::<T>()
                .ok()
                .filter(|v| *v >= min && *v <= max)
                .ok_or_else(|| {
                    self.err(
                        key,
                        format!("expected a whole number from {min} to {max}, got {}", quoted(&s)),
                    )
                }),
        }
    }

    fn http_url(&self, key: &'static str, s: &str) -> Result<Url, ConfigError> {
        let url = Url::parse(s)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()))
            .ok_or_else(|| {
                self.err(
                    key,
                    format!("expected an http:// or https:// URL, got {}", quoted(s)),
                )
            })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.err(key, "credentials in the URL are not allowed"));
        }
        Ok(url)
    }

    fn mqtt(&self) -> Result<MqttParts, ConfigError> {
        let key = keys::MQTT_ENDPOINT;
        let s = self.required(key, "the MQTT broker URL, e.g. mqtts://broker:8883")?;
        let expected = "expected mqtt://, mqtts://, tcp://, ssl:// or tls:// URL";
        let mut url = Url::parse(&s)
            .ok()
            .filter(|u| matches!(u.scheme(), "mqtt" | "mqtts" | "tcp" | "ssl" | "tls"))
            .filter(|u| u.host_str().is_some_and(|h| !h.is_empty()))
            .ok_or_else(|| self.err(key, format!("{expected}, got {}", quoted(&s))))?;
        let username = self.string(keys::MQTT_USERNAME)?;
        let password = self.secret(keys::MQTT_PASSWORD, 1)?;
        let url_user = (!url.username().is_empty()).then(|| url.username().to_owned());
        let url_password = url.password().map(|p| Zeroizing::new(p.to_owned()));
        if (url_user.is_some() || url_password.is_some()) && (username.is_some() || password.is_some()) {
            return Err(self.err(
                key,
                "has credentials in the URL and MQTTUsername/MQTTPassword are set: keep one of them",
            ));
        }
        // Move credentials out of the URL so that the endpoint can be shown and logged.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(MqttParts {
            endpoint: url,
            username: username.or(url_user),
            password: password.or(url_password),
        })
    }

    fn ca_cert(&self) -> Result<Option<CaCert>, ConfigError> {
        let key = keys::MQTT_CA_CERT;
        let Some(s) = self.string(key)? else {
            return Ok(None);
        };
        let (pem, source) = if s.contains("-----BEGIN") {
            (s.into_bytes(), CaCertSource::Inline)
        } else {
            let path = PathBuf::from(&s);
            let pem = std::fs::read(&path).map_err(|e| {
                self.err(
                    key,
                    format!(
                        "expected PEM text or a readable PEM file, cannot read {}: {e}",
                        quoted(&s)
                    ),
                )
            })?;
            (pem, CaCertSource::File(path))
        };
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(self.err(key, "expected a PEM certificate (-----BEGIN CERTIFICATE-----)"));
        }
        Ok(Some(CaCert { pem, source }))
    }

    fn initial_devices(&self) -> Result<Vec<String>, ConfigError> {
        let key = keys::INITIAL_DEVICES;
        let expected = format!(
            "expected a number of devices (0 to {MAX_INITIAL_DEVICES}), a device name, or a list of names"
        );
        let names: Vec<String> = match self.map.get(key) {
            None => Vec::new(),
            Some((Raw::Int(n), _)) => numbered(*n).ok_or_else(|| self.err(key, expected.clone()))?,
            Some((Raw::Str(s), _)) => {
                let s = s.trim();
                if s.is_empty() {
                    Vec::new()
                } else if s.bytes().all(|b| b.is_ascii_digit()) {
                    s.parse()
                        .ok()
                        .and_then(numbered)
                        .ok_or_else(|| self.err(key, expected.clone()))?
                } else {
                    s.split(',').map(|n| n.trim().to_owned()).collect()
                }
            }
            Some((Raw::List(items), _)) => items
                .iter()
                .map(|i| match i {
                    Raw::Str(s) => Ok(s.trim().to_owned()),
                    other => Err(self.err(key, format!("{expected}; got {} in the list", other.type_name()))),
                })
                .collect::<Result<_, _>>()?,
            Some((other, _)) => return Err(self.err(key, format!("{expected}, got {}", other.type_name()))),
        };
        if names.len() > MAX_INITIAL_DEVICES {
            return Err(self.err(key, format!("at most {MAX_INITIAL_DEVICES} devices")));
        }
        for (i, name) in names.iter().enumerate() {
            if let Err(problem) = check_device_name(name) {
                return Err(self.err(key, format!("device name {}: {problem}", quoted(name))));
            }
            if names.iter().take(i).any(|n| n == name) {
                return Err(self.err(key, format!("device name {} appears twice", quoted(name))));
            }
        }
        Ok(names)
    }

    fn approval(&self) -> Result<ApprovalConfig, ConfigError> {
        use vsigner_approval::config::keys as a;
        let values = ApprovalValues {
            approval_mode: self.string(a::APPROVAL_MODE)?,
            external_transaction_approval_url: self.string(a::TRANSACTION_URL)?,
            external_reshare_approval_url: self.string(a::RESHARE_URL)?,
            approval_http_public_key_hex: self.string(a::PUBLIC_KEY_HEX)?,
            approval_node_rpc_address: self.string(a::NODE_RPC)?,
            approval_smart_contract_address: self.string(a::CONTRACT_ADDRESS)?,
            approval_timeout_seconds: self.string(a::TIMEOUT_SECONDS)?,
            approval_retries: self.string(a::RETRIES)?,
        };
        ApprovalConfig::from_values(&values).map_err(|e| {
            use vsigner_approval::ConfigError as E;
            let key = e.key();
            match e {
                E::Missing { key, .. } if key == a::APPROVAL_MODE => {
                    ConfigError::key_error(key, None, "must be set (AlwaysApprove, API or SmartContract)")
                }
                E::Missing { key, mode } => {
                    ConfigError::key_error(key, None, format!("must be set when ApprovalMode is {mode}"))
                }
                E::Invalid { key, reason } => self.err(key, reason),
                other => self.err(key, other.to_string()),
            }
        })
    }

    fn trace_exporter(&self) -> Result<TraceSpanExporter, ConfigError> {
        let key = keys::TRACE_SPAN_EXPORTER;
        match self.string(key)? {
            None => Ok(TraceSpanExporter::None),
            Some(s) => match s.to_ascii_lowercase().as_str() {
                "none" => Ok(TraceSpanExporter::None),
                "stdout" => Ok(TraceSpanExporter::Stdout),
                "otlp-no-tls" => Ok(TraceSpanExporter::OtlpNoTls),
                "otlp-tls" => Ok(TraceSpanExporter::OtlpTls),
                _ => Err(self.err(
                    key,
                    format!(
                        "expected none, stdout, OTLP-NO-TLS or OTLP-TLS, got {}",
                        quoted(&s)
                    ),
                )),
            },
        }
    }

    /// An OTLP/HTTP URL; `tls`: `Some(true)` requires https, `Some(false)` http.
    fn otlp_url(
        &self,
        key: &'static str,
        s: &str,
        tls: Option<bool>,
        signal: &str,
    ) -> Result<Url, ConfigError> {
        let mut url = self.http_url(key, s)?;
        match tls {
            Some(true) if url.scheme() != "https" => {
                return Err(self.err(key, "expected an https:// URL when TraceSpanExporter is OTLP-TLS"))
            }
            Some(false) if url.scheme() != "http" => {
                return Err(self.err(
                    key,
                    "expected an http:// URL when TraceSpanExporter is OTLP-NO-TLS",
                ))
            }
            _ => {}
        }
        let suffix = format!("/v1/{signal}");
        if !url.path().ends_with(&suffix) {
            let path = format!("{}{suffix}", url.path().trim_end_matches('/'));
            url.set_path(&path);
        }
        Ok(url)
    }

    fn storage(&self) -> Result<String, ConfigError> {
        let key = keys::STORAGE_BUCKET_URL;
        let Some(s) = self.string(key)? else {
            return Ok(DEFAULT_STORAGE_BUCKET_URL.to_owned());
        };
        if let Some((scheme, rest)) = s.split_once("://") {
            const SCHEMES: &[&str] = &[
                "file", "memory", "s3", "s3a", "az", "azure", "abfs", "abfss", "adl",
            ];
            if !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str())
                || (scheme != "memory" && rest.is_empty())
            {
                return Err(self.err(
                    key,
                    format!(
                        "expected a directory path or a file://, s3:// or az:// URL, got {}",
                        quoted(&s)
                    ),
                ));
            }
        }
        Ok(s)
    }

    fn sealing(&self) -> Result<KeystoreSealing, ConfigError> {
        let passphrase = self.secret(keys::KEYSTORE_PASSPHRASE, MIN_PASSPHRASE_LEN)?;
        let key_file = self.string(keys::KEYSTORE_KEY_FILE)?.map(PathBuf::from);
        let key = keys::KEYSTORE_SEALING;
        let mode = match self.string(key)? {
            Some(s) => match s.to_ascii_lowercase().as_str() {
                m @ ("passphrase" | "keyfile" | "sgx") => m.to_owned(),
                _ => return Err(self.err(key, format!("expected passphrase, keyfile or sgx, got {}", quoted(&s)))),
            },
            None => match (&passphrase, &key_file) {
                (Some(_), None) => "passphrase".to_owned(),
                (None, Some(_)) => "keyfile".to_owned(),
                (Some(_), Some(_)) => {
                    return Err(ConfigError::key_error(
                        key,
                        None,
                        "must be set (passphrase or keyfile) when both KeystorePassphrase and KeystoreKeyFile are set",
                    ))
                }
                (None, None) => {
                    return Err(ConfigError::key_error(
                        key,
                        None,
                        "must be set (passphrase, keyfile or sgx), or set KeystorePassphrase or KeystoreKeyFile",
                    ))
                }
            },
        };
        let unused =
            |k: &'static str, m: &str| self.err(k, format!("must not be set when KeystoreSealing is {m}"));
        match mode.as_str() {
            "passphrase" => {
                if key_file.is_some() {
                    return Err(unused(keys::KEYSTORE_KEY_FILE, "passphrase"));
                }
                passphrase.map(KeystoreSealing::Passphrase).ok_or_else(|| {
                    ConfigError::key_error(
                        keys::KEYSTORE_PASSPHRASE,
                        None,
                        "must be set when KeystoreSealing is passphrase",
                    )
                })
            }
            "keyfile" => {
                if passphrase.is_some() {
                    return Err(unused(keys::KEYSTORE_PASSPHRASE, "keyfile"));
                }
                key_file.map(KeystoreSealing::KeyFile).ok_or_else(|| {
                    ConfigError::key_error(
                        keys::KEYSTORE_KEY_FILE,
                        None,
                        "must be set when KeystoreSealing is keyfile",
                    )
                })
            }
            _ => {
                if passphrase.is_some() {
                    return Err(unused(keys::KEYSTORE_PASSPHRASE, "sgx"));
                }
                if key_file.is_some() {
                    return Err(unused(keys::KEYSTORE_KEY_FILE, "sgx"));
                }
                Ok(KeystoreSealing::Sgx)
            }
        }
    }

    fn poll_interval(&self) -> Result<Duration, ConfigError> {
        let key = keys::POLL_INTERVAL_SECONDS;
        match self.string(key)? {
            None => Ok(DEFAULT_POLL_INTERVAL),
            Some(s) => s
                .parse::<f64>()
                .ok()
                .filter(|v| *v >= 0.05 && *v <= 3600.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    self.err(
                        key,
                        format!(
                            "expected a number of seconds from 0.05 to 3600, got {}",
                            quoted(&s)
                        ),
                    )
                }),
        }
    }

    fn log_format(&self) -> Result<LogFormat, ConfigError> {
        let key = keys::LOG_FORMAT;
        match self.string(key)?.map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("json") => Ok(LogFormat::Json),
            Some("text") => Ok(LogFormat::Text),
            Some(other) => Err(self.err(key, format!("expected json or text, got {}", quoted(other)))),
        }
    }
}

fn numbered(n: i64) -> Option<Vec<String>> {
    let n = usize::try_from(n).ok().filter(|n| *n <= MAX_INITIAL_DEVICES)?;
    Some((1..=n).map(|i| format!("vs-device-{i}")).collect())
}

/// Longest device name, in characters.
pub const MAX_DEVICE_NAME_CHARS: usize = 64;

/// Checks a device name: 1 to 64 characters, none of them a control character, no leading or
/// trailing white space. Used for `InitialDevices` and `POST /register-vs-device`.
pub fn check_device_name(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > MAX_DEVICE_NAME_CHARS {
        return Err(format!(
            "expected 1 to {MAX_DEVICE_NAME_CHARS} characters, got {n}"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("control characters are not allowed".into());
    }
    if name.trim() != name {
        return Err("leading or trailing white space is not allowed".into());
    }
    Ok(())
}

impl SignerConfig {
    /// Loads the configuration from `file` (JSON or TOML, by extension or else by content) and
    /// `env` (pass `std::env::vars()`), and validates it.
    pub fn load(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut map = RawMap::new();
        if let Some(path) = file {
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.display().to_string(),
                problem: format!("cannot read: {e}"),
            })?);
            raw::add_file(&mut map, raw::parse_file(path, &text)?)?;
        }
        raw::add_env(&mut map, env)?;
        Self::from_raw(map)
    }

    fn from_raw(map: RawMap) -> Result<Self, ConfigError> {
        let r = Reader { map };
        let port = r.port(keys::PORT, DEFAULT_PORT)?;
        let prometheus_port = r.port(keys::PROMETHEUS_PORT, DEFAULT_PROMETHEUS_PORT)?;
        if port != 0 && port == prometheus_port {
            return Err(r.err(keys::PROMETHEUS_PORT, format!("must differ from Port ({port})")));
        }
        let org_id = r.required(keys::ORG_ID, "the organisation id")?;
        let auth_client_id = r.required(keys::AUTH_CLIENT_ID, "the coordinator API client id")?;
        let auth_client_secret = r.secret(keys::AUTH_CLIENT_SECRET, 1)?.ok_or_else(|| {
            ConfigError::key_error(
                keys::AUTH_CLIENT_SECRET,
                None,
                "must be set (the coordinator API client secret)",
            )
        })?;
        let api_base = r.required(
            keys::API_BASE_URL,
            "the coordinator URL, e.g. https://coordinator:8443",
        )?;
        let api_base_url = r.http_url(keys::API_BASE_URL, &api_base)?;
        let MqttParts {
            endpoint: mqtt_endpoint,
            username: mqtt_username,
            password: mqtt_password,
        } = r.mqtt()?;
        let mqtt_ca_cert = r.ca_cert()?;
        let initial_devices = r.initial_devices()?;
        let approval = r.approval()?;
        let trace_span_exporter = r.trace_exporter()?;
        let otlp_traces_endpoint = match (trace_span_exporter, r.string(keys::OTLP_ENDPOINT)?) {
            (e, Some(s)) if e.is_otlp() => Some(r.otlp_url(
                keys::OTLP_ENDPOINT,
                &s,
                Some(e == TraceSpanExporter::OtlpTls),
                "traces",
            )?),
            (e, None) if e.is_otlp() => {
                return Err(ConfigError::key_error(
                    keys::OTLP_ENDPOINT,
                    None,
                    format!("must be set when TraceSpanExporter is {e} (the collector's OTLP/HTTP URL)"),
                ))
            }
            // Set but unused: still validated, so that a typo does not hide.
            (_, Some(s)) => {
                r.otlp_url(keys::OTLP_ENDPOINT, &s, None, "traces")?;
                None
            }
            (_, None) => None,
        };
        let otlp_logs_endpoint = r
            .string(keys::OTLP_LOGS_ENDPOINT)?
            .map(|s| r.otlp_url(keys::OTLP_LOGS_ENDPOINT, &s, None, "logs"))
            .transpose()?;
        let storage_bucket_url = r.storage()?;
        let keystore_sealing = r.sealing()?;
        let signer_api_token =
            r.secret(keys::SIGNER_API_TOKEN, MIN_API_TOKEN_LEN)?
                .ok_or_else(|| {
                    ConfigError::key_error(
                keys::SIGNER_API_TOKEN,
                None,
                format!("must be set (the HTTP API bearer token, at least {MIN_API_TOKEN_LEN} characters)"),
            )
                })?;
        let poll_interval = r.poll_interval()?;
        let max_concurrent_operations = r.whole(
            keys::MAX_CONCURRENT_OPERATIONS,
            DEFAULT_MAX_CONCURRENT_OPERATIONS,
            1,
            1024,
        )?;
        let prime_pool_target = r.whole(keys::PRIME_POOL_TARGET, DEFAULT_PRIME_POOL_TARGET, 0, 64)?;
        let presignature_pool_target = r.whole(
            keys::PRESIGNATURE_POOL_TARGET,
            DEFAULT_PRESIGNATURE_POOL_TARGET,
            0,
            10_000,
        )?;
        let log_format = r.log_format()?;
        Ok(SignerConfig {
            port,
            prometheus_port,
            org_id,
            auth_client_id,
            auth_client_secret,
            api_base_url,
            mqtt_endpoint,
            mqtt_ca_cert,
            mqtt_username,
            mqtt_password,
            initial_devices,
            approval,
            trace_span_exporter,
            otlp_traces_endpoint,
            otlp_logs_endpoint,
            storage_bucket_url,
            keystore_sealing,
            signer_api_token,
            poll_interval,
            max_concurrent_operations,
            prime_pool_target,
            presignature_pool_target,
            log_format,
        })
    }

    /// The approval mode.
    pub fn approval_mode(&self) -> ApprovalMode {
        self.approval.approval_mode()
    }

    /// Settings that are valid but risky, one sentence each, for the daemon to log as
    /// warnings at start (never containing a secret).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.approval_mode() == ApprovalMode::AlwaysApprove {
            out.push(
                "ApprovalMode is AlwaysApprove: every operation is approved without any check \
                 (for development only)"
                    .to_owned(),
            );
        }
        let loopback = |u: &Url| match u.host() {
            // Non-special schemes (mqtt://) keep IP addresses as opaque host names.
            Some(url::Host::Domain(d)) => {
                d == "localhost"
                    || d.trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        if matches!(self.mqtt_endpoint.scheme(), "mqtt" | "tcp")
            && self.mqtt_password.is_some()
            && !loopback(&self.mqtt_endpoint)
        {
            out.push(
                "MQTTEndpoint is not TLS (mqtt:// or tcp://) and MQTTPassword is set: the broker \
                 password crosses the network in clear; use mqtts://"
                    .to_owned(),
            );
        }
        if self.api_base_url.scheme() == "http" && !loopback(&self.api_base_url) {
            out.push(
                "APIBaseURL uses http:// to a host that is not loopback: the coordinator \
                 credentials cross the network in clear; use https://"
                    .to_owned(),
            );
        }
        out
    }

    /// The broker settings for [`vsigner_transport::Link::connect`]: endpoint (without
    /// credentials), user name, password and CA; other fields at the transport's defaults.
    pub fn mqtt_config(&self) -> MqttConfig {
        let mut c = MqttConfig::new(self.mqtt_endpoint.as_str());
        c.username = self.mqtt_username.clone();
        c.password = self.mqtt_password.clone();
        c.ca_cert_pem = self.mqtt_ca_cert.as_ref().map(|c| c.pem.clone());
        c
    }

    /// The telemetry settings for [`crate::telemetry::init`].
    pub fn telemetry_config(&self) -> crate::telemetry::TelemetryConfig {
        crate::telemetry::TelemetryConfig {
            log_format: self.log_format,
            trace_span_exporter: self.trace_span_exporter,
            otlp_traces_endpoint: self.otlp_traces_endpoint.clone(),
            otlp_logs_endpoint: self.otlp_logs_endpoint.clone(),
            filter: None,
        }
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
            }
            _ => {}
        }
        approval.insert(
            "ApprovalTimeoutSeconds".into(),
            json!(self.approval.timeout.as_secs_f64()),
        );
        approval.insert("ApprovalRetries".into(), json!(self.approval.retries));
        let mut out = json!({
            "Port": self.port,
            "PrometheusPort": self.prometheus_port,
            "OrgId": self.org_id,
            "AuthClientId": self.auth_client_id,
            "AuthClientSecret": set(true),
            "APIBaseURL": shown_url(&self.api_base_url),
            "MQTTEndpoint": shown_url(&self.mqtt_endpoint),
            "MQTTCACert": match &self.mqtt_ca_cert {
                None => json!(null),
                Some(CaCert { source: CaCertSource::Inline, .. }) => json!("inline"),
                Some(CaCert { source: CaCertSource::File(p), .. }) => json!(p.display().to_string()),
            },
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
            "SignerAPIToken": set(true),
            "PollIntervalSeconds": self.poll_interval.as_secs_f64(),
            "MaxConcurrentOperations": self.max_concurrent_operations,
            "PrimePoolTarget": self.prime_pool_target,
            "PresignaturePoolTarget": self.presignature_pool_target,
            "LogFormat": self.log_format.as_str(),
        });
        if let Some(obj) = out.as_object_mut() {
            obj.extend(approval);
        }
        out
    }
}
