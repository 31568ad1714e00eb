//! What a reshare run is given (each participant's roles, thresholds, the key) and what it
//! returns (the new sharing's public information and this participant's new share).

use cggmp24::generic_ec::{Curve, NonZero, Point, SecretScalar};
use serde::{Deserialize, Serialize};

use super::KeyInfo;
use crate::PartyIndex;

/// A participant's roles in a reshare run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Its index among the old holders, if it deals (is in the old committee `Q`).
    pub old_index: Option<u16>,
    /// Its index in the new set, if it receives a new share.
    pub new_index: Option<u16>,
}

/// What every participant must agree on before the run (from the coordinator and the
/// approval): roles, thresholds and the vault's public key.
#[derive(Debug, Clone)]
pub struct ReshareSetup<'a, E: Curve> {
    /// `roles[p]` is the role of run party `p` (the order of the execution id's participants).
    pub roles: &'a [Role],
    /// This party's index in the run.
    pub me: PartyIndex,
    /// Size of the old signer set (the old sharing's `n`).
    pub old_n: u16,
    /// Threshold of the old sharing.
    pub old_threshold: u16,
    /// Threshold of the new sharing.
    pub new_threshold: u16,
    /// The public key being reshared, as approved.
    pub public_key: Point<E>,
}

/// An old holder's share, as a dealer's input.
///
/// # Security
/// `secret` is this holder's share `x_i` (zeroized on drop); `Debug` hides it.
pub struct DealerShare<E: Curve> {
    /// Public information of the old sharing.
    pub key_info: KeyInfo<E>,
    /// This holder's index in the old sharing.
    pub index: u16,
    /// The share `x_i`.
    pub secret: SecretScalar<E>,
}

impl<E: Curve> std::fmt::Debug for DealerShare<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DealerShare")
            .field("index", &self.index)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A receiver's new share.
pub struct NewShare<E: Curve> {
    /// Its index in the new set.
    pub index: u16,
    /// The new share `x'_k` (zeroized on drop).
    pub secret: NonZero<SecretScalar<E>>,
}

impl<E: Curve> std::fmt::Debug for NewShare<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewShare")
            .field("index", &self.index)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The result of a reshare run for one participant.
#[derive(Debug)]
pub struct ReshareOutput<E: Curve> {
    /// Public information of the new sharing (same public key and chain code).
    pub key_info: KeyInfo<E>,
    /// This participant's new share, if it is in the new set.
    pub share: Option<NewShare<E>>,
    /// Hash of the run's transcript, acknowledged by every new holder.
    pub transcript: [u8; 32],
    /// Whether every participant's acknowledgement arrived (and verified). When some did
    /// not arrive (a timeout, a dropped message), the new sharing is still correct for this
    /// participant: its share passed every Feldman check against the echoed commitments.
    /// Whether *every* new holder got its share is then not known here; the caller
    /// learns it from the new holders' signed receipts (docs/reshare.md, "Commit").
    pub acknowledged: Acknowledged,
}

/// How the last round (acknowledgements) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acknowledged {
    /// Every participant acknowledged the transcript; every new holder proved its share.
    All,
    /// Some acknowledgements did not arrive: why (no secret).
    Incomplete(String),
}
