//! What a domain transition produces for the service to store: audit events, a change to
//! the vault, a vote to insert, and a refusal to return after persisting.

use super::{DeviceId, Error, Signer, Vote};

/// An audit log entry produced by a transition (the store adds time and sequence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Short event name, e.g. `vote`, `state`, `signature_refused`.
    pub event: String,
    /// Acting device or client, if any.
    pub actor: Option<String>,
    /// JSON details.
    pub detail: serde_json::Value,
}

impl AuditEvent {
    pub(super) fn new(event: &str, actor: Option<&DeviceId>, detail: serde_json::Value) -> Self {
        Self {
            event: event.to_owned(),
            actor: actor.map(|d| d.to_string()),
            detail,
        }
    }
}

/// A change to apply to the vault together with the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultUpdate {
    /// Keygen done.
    Activate {
        /// Public key.
        public_key: Vec<u8>,
        /// Chain code.
        chain_code: Option<[u8; 32]>,
        /// Key-set hash.
        key_set_hash: [u8; 32],
    },
    /// Keygen failed, rejected or expired.
    MarkFailed,
    /// Reshare done: new signer set, threshold, generation.
    Reshared {
        /// New signers.
        signers: Vec<Signer>,
        /// New threshold.
        threshold: u16,
        /// New key generation.
        key_generation: u32,
        /// Key-set hash of the new shares.
        key_set_hash: [u8; 32],
    },
}

/// What a transition produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Audit events, in order.
    pub events: Vec<AuditEvent>,
    /// Vault change.
    pub vault_update: Option<VaultUpdate>,
    /// An error to return to the caller *after* persisting (e.g. a refused signature
    /// that failed the operation).
    pub refusal: Option<Error>,
    /// The vote to insert, if the transition was a vote.
    pub new_vote: Option<Vote>,
}
