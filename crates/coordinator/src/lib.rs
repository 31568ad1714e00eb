//! The vsigner coordinator: the backend the Virtual Signer devices talk to.
//! Organisations, API clients, devices, vaults, operations (Keygen, Reshare, Sign),
//! votes, quorum, committees, verified results, an append-only audit log; GraphQL over
//! axum; SQLite or PostgreSQL; MQTT notifications; EVM broadcasting.
//!
//! # Layout
//! In reading order, from a GraphQL request to the stored result:
//! - [`cli`] — `vsigner coordinator` arguments and entry points; [`server`] — axum routes
//!   `/graphql`, `/oauth/token`, `/healthz`.
//! - [`graphql`] — the schema (`schema.graphql`): query and mutation roots, objects.
//! - [`service`] — authorisation, idempotency and one transaction around each domain
//!   transition; the operation lifecycle apart from what each kind (keygen, sign, reshare,
//!   presign) adds.
//! - [`domain`] — the model and the operation state machine (pure; no HTTP, no SQL): the
//!   lifecycle, votes and quorum, what each kind adds, and what each curve decides.
//! - [`crypto`] — key/payload parsing, signing digests, HD derivation, signature checks.
//! - [`store`] — persistence (sqlx, migrations, row locks + versions), one file per entity.
//! - [`auth`] — client secrets (Argon2id) and access tokens.
//! - [`metrics`] — Prometheus metrics (operations, quorum and result latency, votes,
//!   notifications, database transactions, token refusals).
//! - [`notify`] — MQTT hints on `vsigner/v1/devices/{deviceId}/notify`.
//! - [`broadcast`] — `eth_sendRawTransaction`.
//! - [`error`] — error codes.
//!
//! See `docs/coordinator.md`.

pub mod auth;
pub mod broadcast;
pub mod cli;
pub mod console;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod metrics;
pub mod notify;
pub mod server;
pub mod service;
pub mod store;

pub use cli::{
    init, run, start, CoordinatorArgs, CoordinatorCommand, EvmRpc, InitArgs, LogFormat, ServeArgs,
};
pub use error::{Error, ErrorCode, Result};
pub use server::RunningCoordinator;
pub use service::{Clock, InitOutput};
