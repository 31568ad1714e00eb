//! Device-to-device transport of vsigner.
//!
//! The broker is untrusted infrastructure: it routes envelopes between devices' inboxes and
//! must learn nothing secret, nor be able to forge, replay or reorder its way into a wrong
//! result.
//!
//! # Layout
//! - [`identity`]: a device's Ed25519 signing key and X25519 (HPKE) key.
//! - [`envelope`]: the signed, for p2p encrypted, versioned message format; decoding never
//!   panics and is size-bounded.
//! - [`topics`]: the MQTT topic layout (`vsigner/v1/devices/{id}/inbox|notify`).
//! - [`Link`]: one device's MQTT connection (persistent session, QoS 1, reconnect with
//!   backoff, TLS, credentials), with an inbox that routes envelopes to runs and buffers
//!   those for runs not started yet.
//! - [`Session`]: one protocol run as a `round_based` party: every protocol of
//!   `vsigner-tss` runs on it unchanged.
//! - [`broker`]: the embedded rumqttd broker (`vsigner broker`).
//!
//! See `docs/transport.md` for the threat model and the reasoning.

pub mod broker;
pub mod envelope;
pub mod error;
pub mod identity;
mod inbox;
mod mqtt;
mod session;
pub mod topics;

pub use error::{Rejection, TransportError};
pub use identity::{DeviceId, DeviceIdentity, DevicePublicKeys};
pub use inbox::{InboxLimits, InboxStats, MAX_ROUNDS};
pub use mqtt::{BrokerScheme, Link, LinkStats, MqttConfig};
pub use session::{
    Session, SessionIncoming, SessionOutgoing, SessionParty, SessionReport, SessionSpec, DEFAULT_IDLE_TIMEOUT,
};
