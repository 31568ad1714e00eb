//! The operation and the lifecycle every kind shares: creation with its expiry window,
//! states, start, failure reports, expiry, stale operations after a reshare, and the rule
//! for submissions that disagree. What each kind adds is in its own module.
//!
//! ```text
//! AwaitingApproval ──quorum──▶ Ready ──startOperation / first result──▶ InProgress ──▶ Completed
//!        │                       │                                          │
//!        ├─quorum impossible─▶ Rejected                                     ├──▶ Failed (bad result, reportFailure)
//!        └─────────── expiresAt passed (any non-final state) ──────────────┴──▶ Expired
//! ```

use serde::{Deserialize, Serialize};

use super::votes::voters_for;
use super::{
    AuditEvent, ClientId, CommitteeMember, Curve, DeviceId, Millis, OperationId, OrgId, Outcome, SignPayload,
    Signer, Vault, VaultId, VaultUpdate, Vote, Voter,
};
use crate::crypto;
use crate::error::{Error, ErrorCode, Result};

str_enum!(/// Operation kind.
    OperationKind, ErrorCode::InvalidInput, "operation kind" {
    /// Vault key generation.
    Keygen => "Keygen",
    /// Move the key to a new signer set / threshold.
    Reshare => "Reshare",
    /// Signature.
    Sign => "Sign",
    /// ECDSA presignature of a committee, consumed later by one signature.
    Presign => "Presign",
});

str_enum!(/// Operation state.
    OperationState, ErrorCode::InvalidInput, "operation state" {
    /// Collecting votes.
    AwaitingApproval => "AwaitingApproval",
    /// Quorum reached, committee assigned, protocol not yet started.
    Ready => "Ready",
    /// A committee member reported that it started.
    InProgress => "InProgress",
    /// Result accepted.
    Completed => "Completed",
    /// A bad result or a reported failure.
    Failed => "Failed",
    /// Quorum can no longer be reached.
    Rejected => "Rejected",
    /// Not finished before `expiresAt`.
    Expired => "Expired",
});

impl OperationState {
    /// Completed, Failed, Rejected or Expired.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Rejected | Self::Expired
        )
    }
}

/// Kind-specific details.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum OperationDetails {
    /// Keygen of a vault's initial key.
    Keygen {
        /// Threshold.
        threshold: u16,
        /// Signer set.
        signers: Vec<Signer>,
    },
    /// Reshare.
    Reshare {
        /// Old threshold.
        old_threshold: u16,
        /// Old signer set.
        old_signers: Vec<Signer>,
        /// New threshold.
        new_threshold: u16,
        /// New signer set.
        new_signers: Vec<Signer>,
        /// Key generation being replaced.
        old_key_generation: u32,
        /// Key generation of the new shares: higher than any earlier reshare attempt of
        /// the vault gave, so that no device is ever asked to store a second, different
        /// sharing under a generation it already holds (devices refuse that; see
        /// docs/reshare.md, "Commit"). Absent in operations stored before it existed:
        /// `old_key_generation + 1`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_key_generation: Option<u32>,
    },
    /// Sign.
    Sign {
        /// Threshold (approving weight needed).
        threshold: u16,
        /// What to sign.
        payload: SignPayload,
        /// Non-hardened derivation path, `m/…`.
        derivation_path: Option<String>,
        /// bip340: sign for the vault's Taproot output key.
        #[serde(default)]
        taproot: Option<super::sign::TaprootTweak>,
        /// Key generation the committee signs with.
        key_generation: u32,
        /// The presignature (a Completed `Presign` operation of the same committee) the
        /// committee uses, assigned when the operation becomes Ready.
        #[serde(default)]
        presignature: Option<OperationId>,
    },
    /// ECDSA presignature generation by a fixed committee (no approval: nothing is signed;
    /// the signature that later consumes it is approved as usual).
    Presign {
        /// Key generation the committee presigns with.
        key_generation: u32,
        /// The sign operation that consumed it.
        #[serde(default)]
        consumed_by: Option<OperationId>,
        /// The committee member that no longer holds its part (presignatures live in a
        /// signer process's memory only: a restart loses them), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        discarded_by: Option<DeviceId>,
    },
}

impl OperationDetails {
    /// The kind.
    pub fn kind(&self) -> OperationKind {
        match self {
            Self::Keygen { .. } => OperationKind::Keygen,
            Self::Reshare { .. } => OperationKind::Reshare,
            Self::Sign { .. } => OperationKind::Sign,
            Self::Presign { .. } => OperationKind::Presign,
        }
    }

    /// The set that receives shares: a keygen's signers, a reshare's new set; none else.
    pub(super) fn new_signers(&self) -> &[Signer] {
        match self {
            Self::Keygen { signers, .. } => signers,
            Self::Reshare { new_signers, .. } => new_signers,
            Self::Sign { .. } | Self::Presign { .. } => &[],
        }
    }

    /// Old-set approving weight needed, if any.
    pub(super) fn old_threshold(&self) -> Option<u16> {
        match self {
            Self::Keygen { .. } => None,
            Self::Reshare { old_threshold, .. } => Some(*old_threshold),
            Self::Sign { threshold, .. } => Some(*threshold),
            Self::Presign { .. } => None,
        }
    }
}

/// One committee member's keygen/reshare result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyResult {
    /// Submitter.
    pub device_id: DeviceId,
    /// Public key (normalised).
    #[serde(with = "hex::serde")]
    pub public_key: Vec<u8>,
    /// Chain code (secp256k1 keygen).
    pub chain_code: Option<String>,
    /// Key-set hash (hex, 32 bytes).
    #[serde(default)]
    pub key_set_hash: Option<String>,
}

/// The accepted result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationResult {
    /// Keygen/reshare: the vault key (hex).
    pub public_key: Option<String>,
    /// Keygen: chain code (hex).
    pub chain_code: Option<String>,
    /// Reshare: the new key generation.
    pub key_generation: Option<u32>,
    /// Keygen/reshare: the agreed key-set hash (hex).
    #[serde(default)]
    pub key_set_hash: Option<String>,
    /// Sign: signature hex (r‖s or Ed25519 64 B).
    pub signature: Option<String>,
    /// Sign secp256k1: recovery id.
    pub recovery_id: Option<u8>,
    /// Sign: the device that submitted the signature.
    pub submitted_by: Option<DeviceId>,
    /// Sign eth_tx: signed raw transaction `0x02…`.
    pub raw_transaction: Option<String>,
    /// Broadcast: transaction hash returned by the node.
    pub tx_hash: Option<String>,
    /// Broadcast: error from the node.
    pub broadcast_error: Option<String>,
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Reason.
    pub reason: String,
    /// Devices blamed.
    pub culprits: Vec<DeviceId>,
    /// The device that reported it, if a device did.
    pub reported_by: Option<DeviceId>,
}

/// An operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Operation {
    /// Id.
    pub id: OperationId,
    /// Organisation.
    pub org_id: OrgId,
    /// Vault.
    pub vault_id: VaultId,
    /// Vault curve (snapshot).
    pub curve: Curve,
    /// State.
    pub state: OperationState,
    /// Kind-specific details.
    pub details: OperationDetails,
    /// Random 32-byte execution nonce (devices put it in the MPC execution id).
    pub nonce: [u8; 32],
    /// Who may vote.
    pub voters: Vec<Voter>,
    /// Votes in arrival order (stored separately, one row per device).
    #[serde(skip)]
    pub votes: Vec<Vote>,
    /// Committee: its parties in party order (empty before Ready); a device of weight
    /// above 1 may run several.
    pub committee: Vec<CommitteeMember>,
    /// Keygen/reshare submissions so far.
    pub key_results: Vec<KeyResult>,
    /// Accepted result.
    pub result: Option<OperationResult>,
    /// Failure.
    pub failure: Option<Failure>,
    /// Rejection reason.
    pub rejection: Option<String>,
    /// The device that started the run.
    pub started_by: Option<DeviceId>,
    /// Creation time.
    pub created_at: Millis,
    /// Expiry time.
    pub expires_at: Millis,
    /// Last change.
    pub updated_at: Millis,
    /// Creator (API client).
    pub created_by: ClientId,
}

/// Default and configured expiry windows.
#[derive(Debug, Clone, Copy)]
pub struct ExpiryPolicy {
    /// Keygen window (default 10 min).
    pub keygen_ms: Millis,
    /// Reshare window (default 10 min).
    pub reshare_ms: Millis,
    /// Sign window (default 24 h).
    pub sign_ms: Millis,
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        Self {
            keygen_ms: 10 * 60 * 1000,
            reshare_ms: 10 * 60 * 1000,
            sign_ms: 24 * 3600 * 1000,
        }
    }
}

impl ExpiryPolicy {
    fn window(&self, kind: OperationKind) -> Millis {
        match kind {
            OperationKind::Keygen => self.keygen_ms,
            OperationKind::Reshare => self.reshare_ms,
            OperationKind::Sign | OperationKind::Presign => self.sign_ms,
        }
    }
}

impl Operation {
    /// A new operation awaiting approval on `vault`.
    pub fn new(
        vault: &Vault,
        details: OperationDetails,
        created_by: &ClientId,
        now: Millis,
        expiry: &ExpiryPolicy,
    ) -> Self {
        let mut voters = voters_for(&details);
        if let OperationDetails::Sign { .. } = details {
            voters = vault
                .signers
                .iter()
                .enumerate()
                .map(|(i, s)| Voter {
                    device_id: s.device_id.clone(),
                    weight: s.weight,
                    old_index: u16::try_from(i).ok(),
                    new_index: None,
                })
                .collect();
        }
        let window = expiry.window(details.kind());
        Self {
            id: OperationId::random(),
            org_id: vault.org_id.clone(),
            vault_id: vault.id.clone(),
            curve: vault.curve,
            state: OperationState::AwaitingApproval,
            details,
            nonce: crypto::random_bytes::<32>(),
            voters,
            votes: Vec::new(),
            committee: Vec::new(),
            key_results: Vec::new(),
            result: None,
            failure: None,
            rejection: None,
            started_by: None,
            created_at: now,
            expires_at: now.saturating_add(window),
            updated_at: now,
            created_by: created_by.clone(),
        }
    }

    /// The kind.
    pub fn kind(&self) -> OperationKind {
        self.details.kind()
    }

    /// The key generation a reshare gives the new shares; `None` for other kinds.
    pub fn new_key_generation(&self) -> Option<u32> {
        match &self.details {
            OperationDetails::Reshare {
                old_key_generation,
                new_key_generation,
                ..
            } => Some(new_key_generation.unwrap_or(old_key_generation.saturating_add(1))),
            _ => None,
        }
    }

    /// The key generation this operation works with (sign: the one it signs with;
    /// reshare: the one it replaces); `None` for keygen.
    pub fn key_generation(&self) -> Option<u32> {
        match &self.details {
            OperationDetails::Keygen { .. } => None,
            OperationDetails::Reshare {
                old_key_generation, ..
            } => Some(*old_key_generation),
            OperationDetails::Sign { key_generation, .. }
            | OperationDetails::Presign { key_generation, .. } => Some(*key_generation),
        }
    }

    /// The voter entry of a device.
    pub fn voter(&self, device: &DeviceId) -> Option<&Voter> {
        self.voters.iter().find(|v| &v.device_id == device)
    }

    /// The first party a device runs in the committee.
    pub fn committee_member(&self, device: &DeviceId) -> Option<&CommitteeMember> {
        self.committee.iter().find(|m| &m.device_id == device)
    }

    pub(super) fn set_state(&mut self, to: OperationState, now: Millis, out: &mut Outcome, why: &str) {
        let from = self.state;
        self.state = to;
        self.updated_at = now;
        out.events.push(AuditEvent::new(
            "state",
            None,
            serde_json::json!({"from": from.as_str(), "to": to.as_str(), "why": why}),
        ));
        if self.kind() == OperationKind::Keygen
            && matches!(
                to,
                OperationState::Failed | OperationState::Rejected | OperationState::Expired
            )
        {
            out.vault_update = Some(VaultUpdate::MarkFailed);
        }
    }

    /// Expires the operation if `now` is past `expires_at` and it is not final.
    pub fn expire_if_due(&mut self, now: Millis) -> Option<Outcome> {
        if self.state.is_final() || now < self.expires_at {
            return None;
        }
        let mut out = Outcome::default();
        self.set_state(OperationState::Expired, now, &mut out, "expiresAt passed");
        Some(out)
    }

    pub(super) fn check_live(&self, now: Millis) -> Result<()> {
        if self.state == OperationState::Expired || (!self.state.is_final() && now >= self.expires_at) {
            return Err(Error::new(
                ErrorCode::Expired,
                format!("operation {} has expired", self.id),
            ));
        }
        Ok(())
    }

    pub(super) fn check_running_member(&self, device: &DeviceId, now: Millis) -> Result<CommitteeMember> {
        self.check_live(now)?;
        let member = self.committee_member(device).cloned().ok_or_else(|| {
            Error::new(
                ErrorCode::NotInCommittee,
                format!("device {device} is not in the committee of operation {}", self.id),
            )
        })?;
        if !matches!(self.state, OperationState::Ready | OperationState::InProgress) {
            return Err(Error::invalid_state(format!(
                "operation {} is {}; this needs Ready or InProgress",
                self.id,
                self.state.as_str()
            )));
        }
        Ok(member)
    }

    pub(super) fn mark_started(&mut self, device: &DeviceId, now: Millis, out: &mut Outcome) {
        if self.state == OperationState::Ready {
            self.started_by = Some(device.clone());
            out.events
                .push(AuditEvent::new("started", Some(device), serde_json::json!({})));
            self.set_state(
                OperationState::InProgress,
                now,
                out,
                "a committee member started the protocol",
            );
        }
    }

    /// Ready → InProgress when the first committee member reports that it started
    /// (idempotent afterwards).
    pub fn start(&mut self, device: &DeviceId, now: Millis) -> Result<Outcome> {
        self.check_running_member(device, now)?;
        let mut out = Outcome::default();
        self.mark_started(device, now, &mut out);
        Ok(out)
    }

    pub(super) fn fail(
        &mut self,
        reason: String,
        culprits: Vec<DeviceId>,
        reported_by: Option<&DeviceId>,
        now: Millis,
        out: &mut Outcome,
    ) {
        out.events.push(AuditEvent::new(
            "failure",
            reported_by,
            serde_json::json!({"reason": reason, "culprits": culprits}),
        ));
        self.failure = Some(Failure {
            reason: reason.clone(),
            culprits,
            reported_by: reported_by.cloned(),
        });
        self.set_state(OperationState::Failed, now, out, &reason);
    }

    /// Fails an open operation created at a key generation older than
    /// `vault_key_generation` (the vault was reshared by `reshare`): its committee's
    /// shares are gone or about to be deleted, so it can never complete.
    pub fn fail_if_stale(
        &mut self,
        vault_key_generation: u32,
        reshare: &OperationId,
        now: Millis,
    ) -> Option<Outcome> {
        let generation = self.key_generation()?;
        if self.state.is_final() || generation >= vault_key_generation {
            return None;
        }
        let mut out = Outcome::default();
        out.events.push(AuditEvent::new(
            "stale",
            None,
            serde_json::json!({"reshareId": reshare, "keyGeneration": generation, "vaultKeyGeneration": vault_key_generation}),
        ));
        self.fail(
            format!(
                "stale: reshare {reshare} moved the vault to key generation {vault_key_generation}; this operation was created at key generation {generation} and can no longer complete"
            ),
            Vec::new(),
            None,
            now,
            &mut out,
        );
        Some(out)
    }

    /// A committee member reports that the protocol failed, naming culprits.
    pub fn report_failure(
        &mut self,
        device: &DeviceId,
        reason: &str,
        culprits: Vec<DeviceId>,
        now: Millis,
    ) -> Result<Outcome> {
        self.check_running_member(device, now)?;
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 2000 {
            return Err(Error::invalid_input("reason must be 1-2000 bytes"));
        }
        if let Some(c) = culprits.iter().find(|c| self.committee_member(c).is_none()) {
            return Err(Error::invalid_input(format!(
                "culprit {c} is not in the committee"
            )));
        }
        let mut out = Outcome::default();
        self.fail(reason.to_owned(), culprits, Some(device), now, &mut out);
        Ok(out)
    }

    /// When the key results so far disagree, fails the operation naming every device outside
    /// the largest agreeing group (everyone, on a tie) and refuses the submission; true then.
    pub(super) fn fail_on_disagreement(
        &mut self,
        what: &str,
        difference: &str,
        now: Millis,
        out: &mut Outcome,
    ) -> bool {
        let Some(culprits) = self.disagreeing_devices() else {
            return false;
        };
        let names: Vec<String> = culprits.iter().map(|d| d.to_string()).collect();
        let reason = format!(
            "{what} results disagree: devices {} reported {difference}",
            names.join(", ")
        );
        self.fail(reason, culprits, None, now, out);
        out.refusal = Some(Error::new(
            ErrorCode::ResultMismatch,
            format!("{what} results disagree; the operation failed"),
        ));
        true
    }

    /// The devices outside the largest group of agreeing submissions (everyone on a
    /// tie), or `None` when all submissions so far agree.
    pub(super) fn disagreeing_devices(&self) -> Option<Vec<DeviceId>> {
        let key_of = |r: &KeyResult| (r.public_key.clone(), r.chain_code.clone(), r.key_set_hash.clone());
        let mut groups: Vec<KeyGroup> = Vec::new();
        for r in &self.key_results {
            match groups.iter_mut().find(|(k, _)| *k == key_of(r)) {
                Some((_, ds)) => ds.push(r.device_id.clone()),
                None => groups.push((key_of(r), vec![r.device_id.clone()])),
            }
        }
        if groups.len() <= 1 {
            return None;
        }
        let max = groups.iter().map(|(_, d)| d.len()).max().unwrap_or(0);
        let unique_max = groups.iter().filter(|(_, d)| d.len() == max).count() == 1;
        Some(
            groups
                .iter()
                .filter(|(_, d)| !(unique_max && d.len() == max))
                .flat_map(|(_, d)| d.clone())
                .collect(),
        )
    }
}

/// Submissions that agree: (public key, chain code, key-set hash) and the devices that sent it.
type KeyGroup = ((Vec<u8>, Option<String>, Option<String>), Vec<DeviceId>);
