//! Errors of the transport.

use crate::identity::DeviceId;

/// Why an incoming envelope was refused. Every variant names what could be learnt about the
/// sender: `claimed_sender` is only what the envelope *says*; it is authenticated only for
/// faults found after the signature verified (see [`Rejection::is_attributable`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Larger than the configured limit; not even decoded.
    #[error("envelope of {size} bytes exceeds the limit of {limit} bytes")]
    Oversized { size: usize, limit: usize },
    /// Not a well-formed envelope.
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// An envelope for a run not open on this device, from a device it does not know (no
    /// verified record): dropped before any check, never buffered.
    #[error("envelope from {claimed_sender}, a device this one does not know, for a run not open here")]
    UnknownSender { claimed_sender: DeviceId },
    /// The sender is not a participant of the run the envelope names.
    #[error("sender {claimed_sender} is not a participant of this run")]
    NotAParticipant { claimed_sender: DeviceId },
    /// The signature does not verify under the claimed sender's registered key: forged, or a
    /// participant impersonating another.
    #[error("bad signature: the envelope claims to come from {claimed_sender} but is not signed by its key")]
    BadSignature { claimed_sender: DeviceId },
    /// A point-to-point envelope addressed to another device reached this inbox.
    #[error("envelope from {claimed_sender} is addressed to {recipient}, not to this device")]
    WrongRecipient {
        claimed_sender: DeviceId,
        recipient: DeviceId,
    },
    /// The envelope names another protocol run than the one it was checked against.
    #[error("envelope from {claimed_sender} belongs to another execution")]
    WrongExecution { claimed_sender: DeviceId },
    /// The envelope belongs to a run that already ended on this device: a late message or a
    /// replay of an earlier run's traffic.
    #[error("envelope from {claimed_sender} belongs to a run that has already ended (late or replayed)")]
    FinishedExecution { claimed_sender: DeviceId },
    /// Buffered for a run that never started on this device before the buffer expired or filled.
    #[error("envelope from {claimed_sender} was buffered for a run that did not start in time: {why}")]
    Unclaimed {
        claimed_sender: DeviceId,
        why: &'static str,
    },
    /// A correctly signed envelope for a round number no vsigner protocol has.
    #[error("envelope signed by {claimed_sender} carries impossible round {round}")]
    ImpossibleRound { claimed_sender: DeviceId, round: u16 },
    /// A second, different, correctly signed envelope from the same sender for the same round:
    /// each device receives at most one message per sender and round.
    #[error("{claimed_sender} signed two different envelopes for round {round}")]
    Equivocation { claimed_sender: DeviceId, round: u16 },
    /// A correctly signed point-to-point envelope whose ciphertext does not decrypt: the
    /// signer made it, so the signer is to blame.
    #[error("envelope signed by {claimed_sender} does not decrypt")]
    Undecryptable { claimed_sender: DeviceId },
}

impl Rejection {
    /// The device the envelope claims to come from, when the bytes got that far.
    pub fn claimed_sender(&self) -> Option<&DeviceId> {
        match self {
            Rejection::Oversized { .. } | Rejection::Malformed(_) => None,
            Rejection::NotAParticipant { claimed_sender }
            | Rejection::UnknownSender { claimed_sender }
            | Rejection::BadSignature { claimed_sender }
            | Rejection::WrongRecipient { claimed_sender, .. }
            | Rejection::WrongExecution { claimed_sender }
            | Rejection::FinishedExecution { claimed_sender }
            | Rejection::Unclaimed { claimed_sender, .. }
            | Rejection::ImpossibleRound { claimed_sender, .. }
            | Rejection::Equivocation { claimed_sender, .. }
            | Rejection::Undecryptable { claimed_sender } => Some(claimed_sender),
        }
    }

    /// Whether the fault is proven to be the claimed sender's: only then may a run be aborted
    /// with that device blamed. Everything else may be the broker's doing (it can forge
    /// garbage, replay and misroute, but cannot sign) and is dropped and reported instead.
    /// (A correctly signed envelope whose *content* is wrong for the protocol, e.g. a round
    /// of the wrong kind or an undecodable payload, is passed on: the engine's checks abort
    /// the run naming its sender.)
    pub fn is_attributable(&self) -> bool {
        matches!(
            self,
            Rejection::Undecryptable { .. }
                | Rejection::ImpossibleRound { .. }
                | Rejection::Equivocation { .. }
        )
    }
}

/// Errors of the transport API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A configuration value is wrong; names the setting.
    #[error("invalid transport configuration `{key}`: {reason}")]
    Config { key: &'static str, reason: String },
    /// An identity or public key could not be decoded.
    #[error("invalid {what}: {reason}")]
    InvalidKey { what: &'static str, reason: String },
    /// A device id is not usable in topics and envelopes.
    #[error("invalid device id: {0}")]
    InvalidDeviceId(String),
    /// The run's participants or own index are inconsistent.
    #[error("invalid session: {0}")]
    InvalidSession(String),
    /// An envelope was refused (see [`Rejection`]).
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// A participant sent a correctly signed envelope that is bad by its own fault.
    #[error("device {device} misbehaved: {rejection}")]
    Misbehaviour { device: DeviceId, rejection: Rejection },
    /// No message arrived for the run within its idle timeout.
    #[error("no message for {0:?} while waiting for the other participants: a peer or the broker is gone")]
    Timeout(std::time::Duration),
    /// The MQTT link is closed.
    #[error("the MQTT link is closed")]
    LinkClosed,
    /// The broker lost this device's session (e.g. it restarted without persistence): messages
    /// of open runs may be lost, so they fail now instead of waiting for their timeout.
    #[error("the MQTT broker lost this device's session; messages of running protocols may be lost")]
    SessionLost,
    /// An outgoing envelope is larger than the envelope limit peers accept.
    #[error("outgoing message of {size} bytes exceeds the envelope limit of {limit} bytes")]
    MessageTooLarge { size: usize, limit: usize },
    /// A session for this execution is already open on this device.
    #[error("a session for this execution is already open or has already run on this device")]
    ExecutionInUse,
    /// The MQTT client refused a request.
    #[error("MQTT: {0}")]
    Mqtt(String),
    /// The embedded broker could not start.
    #[error("embedded broker: {0}")]
    Broker(String),
}
