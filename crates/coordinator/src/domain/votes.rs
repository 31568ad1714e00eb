//! Votes and quorum: who may vote on an operation, how approving weight is counted, when
//! quorum is reached or impossible, and which devices form the committee.

use serde::{Deserialize, Serialize};

use super::{
    AuditEvent, DeviceId, Error, ErrorCode, Millis, Operation, OperationDetails, OperationState, Outcome,
    Result, Signer,
};

str_enum!(/// A device's vote.
    VoteChoice, ErrorCode::InvalidInput, "vote" {
    /// Approve.
    Approve => "approve",
    /// Reject.
    Reject => "reject",
    /// Abstain (counts as not approving).
    Abstain => "abstain",
});

/// A device entitled to vote, with its role(s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voter {
    /// Device.
    pub device_id: DeviceId,
    /// Weight.
    pub weight: u32,
    /// Index in the current (old) signer set: holders of the key (sign, reshare).
    pub old_index: Option<u16>,
    /// Index in the new signer set: receivers of the key (keygen, reshare).
    pub new_index: Option<u16>,
}

/// A vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// Device.
    pub device_id: DeviceId,
    /// Choice.
    pub choice: VoteChoice,
    /// The voter's weight.
    pub weight: u32,
    /// Order of arrival (0-based within the operation).
    pub seq: u32,
    /// When.
    pub at: Millis,
}

/// A committee member and its role(s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitteeMember {
    /// Device.
    pub device_id: DeviceId,
    /// Index in the old signer set if it deals/signs with its old share.
    pub old_index: Option<u16>,
    /// Index in the new signer set if it receives a new share.
    pub new_index: Option<u16>,
}

pub(super) fn voters_for(details: &OperationDetails) -> Vec<Voter> {
    let mut voters: Vec<Voter> = Vec::new();
    let idx = |i: usize| u16::try_from(i).ok();
    let (old, new): (&[Signer], &[Signer]) = match details {
        OperationDetails::Keygen { signers, .. } => (&[], signers),
        OperationDetails::Sign { .. } | OperationDetails::Presign { .. } => (&[], &[]),
        OperationDetails::Reshare {
            old_signers,
            new_signers,
            ..
        } => (old_signers, new_signers),
    };
    for (i, s) in old.iter().enumerate() {
        voters.push(Voter {
            device_id: s.device_id.clone(),
            weight: s.weight,
            old_index: idx(i),
            new_index: None,
        });
    }
    for (i, s) in new.iter().enumerate() {
        if let Some(v) = voters.iter_mut().find(|v| v.device_id == s.device_id) {
            v.new_index = idx(i);
        } else {
            voters.push(Voter {
                device_id: s.device_id.clone(),
                weight: s.weight,
                old_index: None,
                new_index: idx(i),
            });
        }
    }
    voters
}

impl Operation {
    /// Approving weight so far (old set for sign/reshare, new set for keygen).
    pub fn approved_weight(&self) -> u32 {
        let keygen = matches!(self.details, OperationDetails::Keygen { .. });
        self.votes
            .iter()
            .filter(|v| v.choice == VoteChoice::Approve)
            .filter(|v| {
                self.voter(&v.device_id).is_some_and(|r| {
                    if keygen {
                        r.new_index.is_some()
                    } else {
                        r.old_index.is_some()
                    }
                })
            })
            .map(|v| v.weight)
            .sum()
    }

    /// Approving weight needed: threshold (sign), old threshold (reshare), all members (keygen).
    pub fn required_weight(&self) -> u32 {
        match self.details.old_threshold() {
            Some(t) => u32::from(t),
            None => self.voters.iter().map(|v| v.weight).sum(),
        }
    }

    /// Records a vote and re-evaluates quorum. Votes are accepted only while
    /// AwaitingApproval, once per device, from the operation's voters.
    pub fn vote(&mut self, device: &DeviceId, choice: VoteChoice, now: Millis) -> Result<Outcome> {
        self.check_live(now)?;
        let voter = self.voter(device).cloned().ok_or_else(|| {
            Error::new(
                ErrorCode::NotAVoter,
                format!("device {device} is not a voter of operation {}", self.id),
            )
        })?;
        if self.votes.iter().any(|v| &v.device_id == device) {
            return Err(Error::new(
                ErrorCode::AlreadyVoted,
                format!("device {device} has already voted on operation {}", self.id),
            ));
        }
        if self.state != OperationState::AwaitingApproval {
            return Err(Error::invalid_state(format!(
                "operation {} is {}, votes are taken only while AwaitingApproval",
                self.id,
                self.state.as_str()
            )));
        }
        let seq = u32::try_from(self.votes.len()).unwrap_or(u32::MAX);
        let vote = Vote {
            device_id: device.clone(),
            choice,
            weight: voter.weight,
            seq,
            at: now,
        };
        self.votes.push(vote.clone());
        let mut out = Outcome {
            new_vote: Some(vote),
            ..Outcome::default()
        };
        out.events.push(AuditEvent::new(
            "vote",
            Some(device),
            serde_json::json!({"vote": choice.as_str()}),
        ));
        self.updated_at = now;
        match self.evaluate_quorum() {
            Quorum::Pending => {}
            Quorum::Impossible(why) => {
                self.rejection = Some(why.clone());
                self.set_state(OperationState::Rejected, now, &mut out, &why);
            }
            Quorum::Reached(committee) => {
                out.events.push(AuditEvent::new(
                    "committee",
                    None,
                    serde_json::json!({"committee": committee.iter().map(|m| serde_json::json!({
                        "deviceId": m.device_id, "oldIndex": m.old_index, "newIndex": m.new_index})).collect::<Vec<_>>()}),
                ));
                self.committee = committee;
                self.set_state(OperationState::Ready, now, &mut out, "quorum reached");
            }
        }
        Ok(out)
    }

    /// Quorum rules:
    /// - new-set members (keygen, reshare) must all approve;
    /// - old-set approving weight (sign, reshare) must reach the old threshold;
    ///   the committee's old part is the earliest approvers reaching it;
    /// - rejected at once when that can no longer happen.
    fn evaluate_quorum(&self) -> Quorum {
        let vote_of = |d: &DeviceId| self.votes.iter().find(|v| &v.device_id == d);
        // New members: every one must approve.
        for voter in self.voters.iter().filter(|v| v.new_index.is_some()) {
            if let Some(v) = vote_of(&voter.device_id) {
                if v.choice != VoteChoice::Approve {
                    // A keygen's members are all new; a reshare's new set is named so.
                    let who = if matches!(self.details, OperationDetails::Keygen { .. }) {
                        "member"
                    } else {
                        "new-set member"
                    };
                    return Quorum::Impossible(format!(
                        "{who} {} voted {}; every {who} must approve",
                        voter.device_id,
                        v.choice.as_str()
                    ));
                }
            }
        }
        let all_new_approved = self
            .voters
            .iter()
            .filter(|v| v.new_index.is_some())
            .all(|v| vote_of(&v.device_id).is_some());
        let mut old_committee: Vec<&Voter> = Vec::new();
        if let Some(t) = self.details.old_threshold() {
            let t = u32::from(t);
            let mut approved = 0u32;
            for vote in &self.votes {
                let Some(voter) = self.voter(&vote.device_id) else {
                    continue;
                };
                if voter.old_index.is_none() || vote.choice != VoteChoice::Approve || approved >= t {
                    continue;
                }
                approved += vote.weight;
                old_committee.push(voter);
            }
            if approved < t {
                let total_approved: u32 = self
                    .votes
                    .iter()
                    .filter(|v| v.choice == VoteChoice::Approve)
                    .filter(|v| self.voter(&v.device_id).is_some_and(|r| r.old_index.is_some()))
                    .map(|v| v.weight)
                    .sum();
                let remaining: u32 = self
                    .voters
                    .iter()
                    .filter(|v| v.old_index.is_some() && vote_of(&v.device_id).is_none())
                    .map(|v| v.weight)
                    .sum();
                if total_approved + remaining < t {
                    return Quorum::Impossible(format!(
                        "approving weight can reach at most {} of the {} required",
                        total_approved + remaining,
                        t
                    ));
                }
                return Quorum::Pending;
            }
        }
        if !all_new_approved {
            return Quorum::Pending;
        }
        let mut committee: Vec<CommitteeMember> = Vec::new();
        for v in self.voters.iter().filter(|v| v.new_index.is_some()) {
            let old_index = old_committee
                .iter()
                .find(|o| o.device_id == v.device_id)
                .and_then(|o| o.old_index);
            committee.push(CommitteeMember {
                device_id: v.device_id.clone(),
                old_index,
                new_index: v.new_index,
            });
        }
        let mut old_only: Vec<CommitteeMember> = old_committee
            .iter()
            .filter(|o| o.new_index.is_none())
            .map(|o| CommitteeMember {
                device_id: o.device_id.clone(),
                old_index: o.old_index,
                new_index: None,
            })
            .collect();
        committee.sort_by_key(|m| m.new_index);
        old_only.sort_by_key(|m| m.old_index);
        committee.extend(old_only);
        Quorum::Reached(committee)
    }
}

enum Quorum {
    Pending,
    Reached(Vec<CommitteeMember>),
    Impossible(String),
}
