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
mod local;
mod raw;
mod settings;
mod shown;
mod values;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;
use vsigner_approval::{ApprovalConfig, ApprovalMode};
use vsigner_transport::MqttConfig;
use zeroize::Zeroizing;

pub use error::{ConfigError, Origin};
use raw::RawMap;
pub use shown::{is_loopback, shown_storage, shown_url};
use values::{MqttParts, Reader};

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
/// Default `ProtocolIdleTimeoutSeconds` (aux-info rounds compute for tens of seconds on
/// slow machines).
pub const DEFAULT_PROTOCOL_IDLE_TIMEOUT_SECS: u64 = 180;
/// Default `PresignaturePoolTarget` (0: no presignature pool).
pub const DEFAULT_PRESIGNATURE_POOL_TARGET: u32 = 0;
/// Default `STORAGE_BUCKET_URL`: a directory relative to the working directory.
pub const DEFAULT_STORAGE_BUCKET_URL: &str = "vsigner-data";
/// Most devices one instance may create at first start.
pub const MAX_INITIAL_DEVICES: usize = 64;
/// Most tokens `SignerAPIToken` may list.
pub const MAX_API_TOKENS: usize = 8;
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

/// Where a CA certificate (`MQTTCACert`, `APICACert`) came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaCertSource {
    /// PEM text in the value itself.
    Inline,
    /// Read from this file at load time.
    File(PathBuf),
}

/// The HTTP API's TLS: the files and the configuration made from them.
#[derive(Clone)]
pub struct ApiTls {
    /// `TLSCertFile`.
    pub cert_file: PathBuf,
    /// `TLSKeyFile`.
    pub key_file: PathBuf,
    /// The server configuration.
    pub server: vsigner_https::ServerTls,
}

impl fmt::Debug for ApiTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiTls")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// A CA certificate (`MQTTCACert`, `APICACert`), read and checked at load time.
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

/// `DisasterRecoveryPublicKey` and `DisasterRecoveryDir`: where `.dr` files go and the key
/// they are encrypted to.
#[derive(Debug, Clone)]
pub struct DisasterRecoveryConfig {
    /// The operator's ML-KEM-768 public key.
    pub public_key: vsigner_recovery::DrPublicKey,
    /// The directory of the files.
    pub dir: PathBuf,
}

impl DisasterRecoveryConfig {
    /// The public key's fingerprint: SHA-256 of the encapsulation key, hex (what an
    /// operator compares with the key in the safe).
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(self.public_key.to_bytes()))
    }
}

/// Default `DisasterRecoveryDir`, relative to the working directory.
pub const DEFAULT_DISASTER_RECOVERY_DIR: &str = "vsigner-disaster-recovery";

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
    /// `GraphQLService`: the GraphQL URL when it is not `APIBaseURL` + `/graphql`.
    pub graphql_url: Option<Url>,
    /// `Environment` (io.finnet's; reported by `GET /version` only).
    pub environment: Option<String>,
    /// `BindingNetworkName` (io.finnet's; reported by `GET /version` only).
    pub binding_network_name: Option<String>,
    /// `MQTTEndpoint` without credentials (credentials in the URL move to the fields below).
    pub mqtt_endpoint: Url,
    /// `MQTTCACert`.
    pub mqtt_ca_cert: Option<CaCert>,
    /// `APICACert`: the only CA trusted for the coordinator, when set.
    pub api_ca_cert: Option<CaCert>,
    /// `TLSCertFile` and `TLSKeyFile`: the HTTP API over HTTPS.
    pub api_tls: Option<ApiTls>,
    /// `MQTTUsername` (or the user of `MQTTEndpoint`).
    pub mqtt_username: Option<String>,
    /// `MQTTPassword` (or the password of `MQTTEndpoint`).
    pub mqtt_password: Option<Zeroizing<String>>,
    /// `InitialDevices` (or io.finnet's `InitialDevice`, one name): names of the virtual
    /// devices to create when none exists.
    pub initial_devices: Vec<String>,
    /// The approval keys, validated by [`ApprovalConfig::from_values`].
    pub approval: ApprovalConfig,
    /// `TrustedDeviceKeys`: the only signing keys of devices this instance's devices run
    /// with; `None`: trust on first sight.
    pub trusted_device_keys: Option<crate::peers::TrustedKeys>,
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
    /// `DisasterRecoveryPublicKey` and `DisasterRecoveryDir`, when set.
    pub disaster_recovery: Option<DisasterRecoveryConfig>,
    /// `SignerAPIToken`: the bearer tokens the HTTP API accepts (one, or several while a
    /// new one replaces an old one).
    pub signer_api_tokens: Vec<Zeroizing<String>>,
    /// `PollIntervalSeconds`.
    pub poll_interval: Duration,
    /// `MaxConcurrentOperations`.
    pub max_concurrent_operations: usize,
    /// `PrimePoolTarget`.
    pub prime_pool_target: u32,
    /// `PresignaturePoolTarget`.
    pub presignature_pool_target: u32,
    /// `ProtocolIdleTimeoutSeconds`: how long a run waits for the next message.
    pub protocol_idle_timeout: Duration,
    /// `AllowPublicTestPrimes`: key material from the public test pool is accepted.
    pub allow_public_test_primes: bool,
    /// `LogFormat`.
    pub log_format: LogFormat,
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
        let graphql_url = match r.string(keys::GRAPHQL_SERVICE)? {
            Some(s) => Some(r.http_url(keys::GRAPHQL_SERVICE, &s)?),
            None => None,
        };
        let environment = r.string(keys::ENVIRONMENT)?;
        let binding_network_name = r.string(keys::BINDING_NETWORK_NAME)?;
        let MqttParts {
            endpoint: mqtt_endpoint,
            username: mqtt_username,
            password: mqtt_password,
        } = r.mqtt()?;
        let mqtt_ca_cert = r.ca_cert(keys::MQTT_CA_CERT)?;
        let api_ca_cert = r.ca_cert(keys::API_CA_CERT)?;
        let api_tls = r.api_tls()?;
        let initial_devices = r.initial_devices()?;
        let mut approval = r.approval()?;
        if let vsigner_approval::ModeConfig::Human(human) = &mut approval.mode {
            // A person's passkey signs whatever challenge the page gives it, and shows none:
            // the page people approve on must not be the coordinator's to serve.
            let console = human.origin.origin();
            let served_by_coordinator = std::iter::once(&api_base_url)
                .chain(graphql_url.as_ref())
                .any(|u| u.origin() == console);
            if served_by_coordinator {
                let why = "the coordinator serves this origin, so it could show people one request while their passkeys sign another";
                if r.flag(vsigner_approval::config::keys::ACCEPT_INSECURE)? {
                    human
                        .insecurities
                        .push(format!("HumanApprovalOrigin is the coordinator's origin: {why}"));
                } else {
                    return Err(r.err(
                        vsigner_approval::config::keys::HUMAN_ORIGIN,
                        format!(
                            "{} is the coordinator's own origin: {why}; serve the approving console from an origin the coordinator does not control (or set ApprovalAcceptInsecure = true to accept that)",
                            console.ascii_serialization()
                        ),
                    ));
                }
            }
        }
        let trusted_device_keys = r.trusted_device_keys()?;
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
        let disaster_recovery = r.disaster_recovery()?;
        let signer_api_tokens = r.api_tokens(keys::SIGNER_API_TOKEN, MIN_API_TOKEN_LEN)?;
        if signer_api_tokens.is_empty() {
            return Err(ConfigError::key_error(
                keys::SIGNER_API_TOKEN,
                None,
                format!("must be set (the HTTP API bearer token, at least {MIN_API_TOKEN_LEN} characters)"),
            ));
        }
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
        let protocol_idle_timeout = Duration::from_secs(r.whole(
            keys::PROTOCOL_IDLE_TIMEOUT_SECONDS,
            DEFAULT_PROTOCOL_IDLE_TIMEOUT_SECS,
            1,
            3600,
        )?);
        let allow_public_test_primes = r.flag(keys::ALLOW_PUBLIC_TEST_PRIMES)?;
        let log_format = r.log_format()?;
        Ok(SignerConfig {
            port,
            prometheus_port,
            org_id,
            auth_client_id,
            auth_client_secret,
            api_base_url,
            graphql_url,
            environment,
            binding_network_name,
            mqtt_endpoint,
            mqtt_ca_cert,
            api_ca_cert,
            api_tls,
            mqtt_username,
            mqtt_password,
            initial_devices,
            approval,
            trusted_device_keys,
            trace_span_exporter,
            otlp_traces_endpoint,
            otlp_logs_endpoint,
            storage_bucket_url,
            keystore_sealing,
            disaster_recovery,
            signer_api_tokens,
            poll_interval,
            max_concurrent_operations,
            prime_pool_target,
            presignature_pool_target,
            protocol_idle_timeout,
            allow_public_test_primes,
            log_format,
        })
    }

    /// The approval mode.
    pub fn approval_mode(&self) -> ApprovalMode {
        self.approval.approval_mode()
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
}
