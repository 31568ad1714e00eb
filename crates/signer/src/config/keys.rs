//! Configuration key names, exactly as written in the file and after `VSIGNER_` / `EDG_VS_`.
//!
//! The io.finnet Virtual Signer's names are kept as they are (drop-in); vsigner's own keys
//! follow the same PascalCase style. See `docs/signer.md` for the meaning of each.

use vsigner_approval::config::keys as approval;

/// HTTP API port.
pub const PORT: &str = "Port";
/// Prometheus `/metrics` port.
pub const PROMETHEUS_PORT: &str = "PrometheusPort";
/// Organisation id.
pub const ORG_ID: &str = "OrgId";
/// API client id at the coordinator.
pub const AUTH_CLIENT_ID: &str = "AuthClientId";
/// API client secret at the coordinator (secret).
pub const AUTH_CLIENT_SECRET: &str = "AuthClientSecret";
/// Coordinator base URL.
pub const API_BASE_URL: &str = "APIBaseURL";
/// CA certificate of the coordinator's HTTPS (`APIBaseURL`, `GraphQLService`): PEM text or
/// a path to a PEM file; when set, only this CA is trusted for the coordinator.
pub const API_CA_CERT: &str = "APICACert";
/// PEM certificate chain the HTTP API (`Port`) is served with, over HTTPS (with
/// `TLSKeyFile`).
pub const TLS_CERT_FILE: &str = "TLSCertFile";
/// PEM private key of `TLSCertFile`.
pub const TLS_KEY_FILE: &str = "TLSKeyFile";
/// MQTT broker URL.
pub const MQTT_ENDPOINT: &str = "MQTTEndpoint";
/// CA certificate of the broker: PEM text or a path to a PEM file.
pub const MQTT_CA_CERT: &str = "MQTTCACert";
/// Broker user name.
pub const MQTT_USERNAME: &str = "MQTTUsername";
/// Broker password (secret).
pub const MQTT_PASSWORD: &str = "MQTTPassword";
/// Devices to create on first start.
pub const INITIAL_DEVICES: &str = "InitialDevices";
/// io.finnet's one device to create on first start (a one-name `InitialDevices`).
pub const INITIAL_DEVICE: &str = "InitialDevice";
/// The coordinator's GraphQL URL (default: `APIBaseURL` + `/graphql`).
pub const GRAPHQL_SERVICE: &str = "GraphQLService";
/// io.finnet's deployment environment name: reported by `GET /version`, used for nothing else.
pub const ENVIRONMENT: &str = "Environment";
/// io.finnet's binding network name: reported by `GET /version`, used for nothing else.
pub const BINDING_NETWORK_NAME: &str = "BindingNetworkName";
/// `none` | `stdout` | `OTLP-NO-TLS` | `OTLP-TLS`.
pub const TRACE_SPAN_EXPORTER: &str = "TraceSpanExporter";
/// OTLP/HTTP collector for spans.
pub const OTLP_ENDPOINT: &str = "OTELExporterOTLPEndpoint";
/// OTLP/HTTP collector for logs (the standard OpenTelemetry variable name).
pub const OTLP_LOGS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT";
/// Keystore location.
pub const STORAGE_BUCKET_URL: &str = "STORAGE_BUCKET_URL";
/// Keystore passphrase (secret).
pub const KEYSTORE_PASSPHRASE: &str = "KeystorePassphrase";
/// Keystore key file path.
pub const KEYSTORE_KEY_FILE: &str = "KeystoreKeyFile";
/// `passphrase` | `keyfile` | `sgx`.
pub const KEYSTORE_SEALING: &str = "KeystoreSealing";
/// Bearer token of the HTTP API (secret).
pub const SIGNER_API_TOKEN: &str = "SignerAPIToken";
/// Coordinator polling interval.
pub const POLL_INTERVAL_SECONDS: &str = "PollIntervalSeconds";
/// Bound on concurrently running operations.
pub const MAX_CONCURRENT_OPERATIONS: &str = "MaxConcurrentOperations";
/// Safe-prime sets to keep ready.
pub const PRIME_POOL_TARGET: &str = "PrimePoolTarget";
/// Presignatures to keep ready per vault committee.
pub const PRESIGNATURE_POOL_TARGET: &str = "PresignaturePoolTarget";
/// `json` | `text`.
pub const LOG_FORMAT: &str = "LogFormat";
/// How long a protocol run waits for the next message before it gives up.
pub const PROTOCOL_IDLE_TIMEOUT_SECONDS: &str = "ProtocolIdleTimeoutSeconds";
/// `true` lets key material made from the committed public test primes be used (tests and
/// demonstrations only).
pub const ALLOW_PUBLIC_TEST_PRIMES: &str = "AllowPublicTestPrimes";
/// The Ed25519 signing keys (hex) of the only devices that may ever receive a share, or a
/// file listing them; unset, peers are trusted on first sight (pinned).
pub const TRUSTED_DEVICE_KEYS: &str = "TrustedDeviceKeys";

/// The operator's ML-KEM-768 disaster-recovery public key (PEM, or a path to a PEM file):
/// when set, every device writes a `.dr` file for each share generation it confirms.
pub const DISASTER_RECOVERY_PUBLIC_KEY: &str = "DisasterRecoveryPublicKey";
/// The directory the `.dr` files go to (one subdirectory per device).
pub const DISASTER_RECOVERY_DIR: &str = "DisasterRecoveryDir";

/// Every key, in the order of the documentation.
pub const ALL: &[&str] = &[
    PORT,
    PROMETHEUS_PORT,
    ORG_ID,
    AUTH_CLIENT_ID,
    AUTH_CLIENT_SECRET,
    API_BASE_URL,
    GRAPHQL_SERVICE,
    API_CA_CERT,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
    MQTT_ENDPOINT,
    MQTT_CA_CERT,
    MQTT_USERNAME,
    MQTT_PASSWORD,
    INITIAL_DEVICES,
    INITIAL_DEVICE,
    ENVIRONMENT,
    BINDING_NETWORK_NAME,
    approval::APPROVAL_MODE,
    approval::TRANSACTION_URL,
    approval::RESHARE_URL,
    approval::PUBLIC_KEY_HEX,
    approval::NODE_RPC,
    approval::CONTRACT_ADDRESS,
    approval::TIMEOUT_SECONDS,
    approval::RETRIES,
    approval::ACCEPT_INSECURE,
    approval::CHAIN_ID,
    approval::CONTRACT_CODE_HASH,
    approval::CONTRACT_LAYOUT,
    approval::HUMAN_PASSKEYS_FILE,
    approval::HUMAN_QUORUM,
    approval::HUMAN_ORIGIN,
    approval::HUMAN_RP_ID,
    TRUSTED_DEVICE_KEYS,
    TRACE_SPAN_EXPORTER,
    OTLP_ENDPOINT,
    OTLP_LOGS_ENDPOINT,
    STORAGE_BUCKET_URL,
    KEYSTORE_PASSPHRASE,
    KEYSTORE_KEY_FILE,
    KEYSTORE_SEALING,
    DISASTER_RECOVERY_PUBLIC_KEY,
    DISASTER_RECOVERY_DIR,
    SIGNER_API_TOKEN,
    POLL_INTERVAL_SECONDS,
    MAX_CONCURRENT_OPERATIONS,
    PRIME_POOL_TARGET,
    PRESIGNATURE_POOL_TARGET,
    PROTOCOL_IDLE_TIMEOUT_SECONDS,
    ALLOW_PUBLIC_TEST_PRIMES,
    LOG_FORMAT,
];

/// Keys whose values are secrets: never logged, shown, or quoted in errors.
pub const SECRETS: &[&str] = &[
    AUTH_CLIENT_SECRET,
    MQTT_PASSWORD,
    KEYSTORE_PASSPHRASE,
    SIGNER_API_TOKEN,
];
