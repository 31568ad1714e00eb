//! vsigner's Virtual Signer daemon (`vsigner run`).
//!
//! # Layout
//! In reading order, from `vsigner run` to the protocol round that signs:
//! - [`run`]: `vsigner run`: the configuration loaded, the process hardened, telemetry, the
//!   daemon and its HTTP API started, then graceful shutdown on SIGTERM.
//! - [`config`]: the signer's configuration (io.finnet key names, `VSIGNER_` / `EDG_VS_`
//!   environment overrides), validated once at start.
//! - [`daemon`]: the devices and their loops, and one module per stage of an operation's
//!   life: device loop → vote → take part → (protocol run) → submit → confirm; device
//!   registration; the presignature keeper; graceful shutdown.
//! - [`approval_request`]: from a coordinator operation to the approver's request, and the
//!   checks made before signing (approved content, signing digest).
//! - [`peers`]: identity keys of peer devices, pinned on first sight.
//! - [`protocol`]: the protocol run of one operation for one device: the stages every
//!   scheme shares (keygen, sign, reshare, presign) and one implementation per signature
//!   scheme (ECDSA by CGGMP24, Schnorr by FROST) behind the `Scheme` trait.
//! - [`devices`]: device records (name and identity) in the keystore; crash-safe creation.
//! - [`prime_stock`]: the persisted, background-refilled stock of safe-prime sets.
//! - [`public_primes`]: the fence around the committed public test primes.
//! - [`coordinator_api`]: the coordinator's GraphQL API, as a device and an operator use it.
//! - [`api`]: the HTTP API (`/version`, `/healthz`, `/readyz`, `/register-vs-device`).
//! - [`telemetry`]: logs (JSON or text) and spans (none, stdout, OTLP/HTTP), logs to an OTLP
//!   collector when configured.
//! - [`metrics`]: the Prometheus exporter and every metric the daemon records.

pub mod api;
pub mod approval_request;
pub mod config;
pub mod coordinator_api;
pub mod daemon;
pub mod devices;
pub mod disaster_recovery;
pub mod metrics;
pub mod peers;
pub mod prime_stock;
pub mod protocol;
pub mod public_primes;
pub mod run;
pub mod telemetry;

pub use config::{ConfigError, SignerConfig};
pub use daemon::Daemon;
