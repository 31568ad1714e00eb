//! vsigner's Virtual Signer daemon (`vsigner run`): the foundations the device loop builds on.
//!
//! # Layout
//! - [`config`]: the signer's configuration (io.finnet key names, `VSIGNER_` / `EDG_VS_`
//!   environment overrides), validated once at start.
//! - [`telemetry`]: logs (JSON or text) and spans (none, stdout, OTLP/HTTP), logs to an OTLP
//!   collector when configured.
//! - [`metrics`]: the Prometheus exporter and every metric the daemon records.
//! - [`api`]: the HTTP API (`/version`, `/healthz`, `/readyz`, `/register-vs-device`).
//!
//! The device loop (polling the coordinator, approvals, MPC sessions) comes later.

pub mod api;
pub mod config;
pub mod metrics;
pub mod telemetry;

pub use config::{ConfigError, SignerConfig};
