//! vsigner's Virtual Signer daemon (`vsigner run`).
//!
//! # Layout
//! - [`config`]: the signer's configuration (io.finnet key names, `VSIGNER_` / `EDG_VS_`
//!   environment overrides), validated once at start.
//! - [`daemon`]: the running daemon: devices, the loop of each device (votes, protocol runs,
//!   submissions, share confirmation), bounded concurrency, graceful shutdown.
//! - [`devices`]: device records (name and identity) in the keystore; crash-safe creation.
//! - [`approval_request`]: from a coordinator operation to the approver's request, and the
//!   checks made before signing (approved content, signing digest).
//! - [`operation_run`]: the MPC protocol of one operation for one device, over the transport.
//! - [`peers`]: identity keys of peer devices, pinned on first sight.
//! - [`prime_stock`]: the persisted, background-refilled stock of safe-prime sets.
//! - [`coordinator_api`]: the coordinator's GraphQL API, as a device and an operator use it.
//! - [`telemetry`]: logs (JSON or text) and spans (none, stdout, OTLP/HTTP), logs to an OTLP
//!   collector when configured.
//! - [`metrics`]: the Prometheus exporter and every metric the daemon records.
//! - [`api`]: the HTTP API (`/version`, `/healthz`, `/readyz`, `/register-vs-device`).
//! - [`run`]: `vsigner run`: everything above wired together until SIGTERM.

pub mod api;
pub mod approval_request;
pub mod config;
pub mod coordinator_api;
pub mod daemon;
pub mod devices;
pub mod metrics;
pub mod operation_run;
pub mod peers;
pub mod prime_stock;
pub mod run;
pub mod telemetry;

pub use config::{ConfigError, SignerConfig};
pub use daemon::Daemon;
