//! One error type for every protocol, naming who misbehaved when that is known.

use crate::PartyIndex;

/// Why a protocol run failed.
///
/// Errors never contain secret material: library errors are rendered through their
/// `Display` chain, which describes checks, not values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller asked for something impossible (threshold above n, index out of range...).
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// A party sent a message that failed the checks of [`crate::wire`] or an echo check.
    #[error("party {party} misbehaved: {fault}")]
    Misbehaviour {
        /// The party that sent the offending message (its index in this run).
        party: PartyIndex,
        /// What was wrong with it.
        fault: Fault,
    },
    /// The protocol detected cheating (a bad proof, share or signature share) and named the
    /// parties responsible.
    #[error("protocol aborted by parties {culprits:?}: {reason}")]
    Aborted {
        /// Indices (in this run) of the parties whose contributions were invalid.
        culprits: Vec<PartyIndex>,
        /// The library's description of the failed check.
        reason: String,
    },
    /// The protocol failed and the library did not attribute the failure to a party.
    #[error("protocol failed: {0}")]
    Protocol(String),
    /// The transport failed to deliver or accept a message.
    #[error("transport failed: {0}")]
    Transport(String),
    /// A key share, aux-info or prime set is inconsistent or does not fit the request.
    #[error("invalid key material: {0}")]
    InvalidKeyMaterial(String),
    /// Stored bytes could not be decoded (unknown version, wrong kind, corrupted).
    #[error("cannot decode {what}: {reason}")]
    Format {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
}

impl Error {
    /// The parties this error blames, by index in the run. Empty when nobody is blamed.
    pub fn culprits(&self) -> Vec<PartyIndex> {
        // Exhaustive on purpose: a new variant must decide whether it blames someone.
        match self {
            Error::Misbehaviour { party, .. } => vec![*party],
            Error::Aborted { culprits, .. } => culprits.clone(),
            Error::InvalidArguments(_)
            | Error::Protocol(_)
            | Error::Transport(_)
            | Error::InvalidKeyMaterial(_)
            | Error::Format { .. } => Vec::new(),
        }
    }

    pub(crate) fn invalid_args(msg: impl Into<String>) -> Self {
        Error::InvalidArguments(msg.into())
    }

    /// Renders a library error with its whole `source()` chain.
    pub(crate) fn protocol(err: &(dyn std::error::Error + 'static)) -> Self {
        Error::Protocol(error_chain(err))
    }
}

/// What a misbehaving party did.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fault {
    /// The message belongs to another protocol run (replayed or misrouted).
    #[error("message carries another execution id")]
    WrongExecution,
    /// The sender index is not a participant of this run.
    #[error("sender is not a participant of this run (n = {n})")]
    NotAParticipant {
        /// Number of participants of the run.
        n: u16,
    },
    /// A message claims to come from the receiving party itself.
    #[error("message claims to come from the receiving party itself")]
    Impersonation,
    /// The round does not exist in this protocol, or the header and payload disagree on it.
    #[error("message for round {round}, which this protocol cannot accept here")]
    OutOfRound {
        /// Round number the message claimed.
        round: u16,
    },
    /// A p2p message in a broadcast round, or the reverse.
    #[error("{} message in round {round}, which expects the other kind", if *.broadcast { "broadcast" } else { "p2p" })]
    WrongKind {
        /// The round.
        round: u16,
        /// Whether the message came as a broadcast.
        broadcast: bool,
    },
    /// A second message for a round the sender already sent.
    #[error("second message for round {round}")]
    Duplicate {
        /// The repeated round.
        round: u16,
    },
    /// The bytes do not decode as a message of this protocol.
    #[error("garbled message: {0}")]
    Garbled(String),
    /// The party's echo of a broadcast round differs from ours: someone equivocated.
    #[error("echo of broadcast round {round} differs from ours")]
    EchoMismatch {
        /// The broadcast round whose echo differs.
        round: u16,
    },
}

/// `Display` of an error followed by each of its sources, separated by `: `.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
