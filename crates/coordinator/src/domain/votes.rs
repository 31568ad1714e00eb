//! Votes and quorum: who may vote on an operation, how approving weight is counted, when
//! quorum is reached or impossible, and which parties form the committee.
//!
//! A device of weight `w` holds `w` shares ([`super::share_indices`]) and runs one party
//! per share it uses: a committee is a list of parties, and a device may appear in it
//! several times.

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
    /// Weight (in a reshare, a member of the old set votes with its old weight).
    pub weight: u32,
    /// Position in the current (old) signer set: holders of the key (sign, reshare).
    pub old_index: Option<u16>,
    /// Position in the new signer set: receivers of the key (keygen, reshare).
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

/// A party of a committee: the device that runs it and its role(s). A device of weight `w`
/// may run several parties of one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitteeMember {
    /// Device.
    pub device_id: DeviceId,
    /// The old share (its index) this party signs or deals with, if any.
    pub old_index: Option<u16>,
    /// The new share (its index) this party receives, if any.
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
        Quorum::Reached(self.parties(&old_committee))
    }

    /// The committee's parties once quorum is reached. Old shares: the earliest approvers'
    /// (`old_committee`, in vote order), each giving as many of its shares as are still
    /// needed, exactly the old threshold in all. New shares: every share of the new set. A
    /// device's old and new shares are paired into parties in index order. Party order:
    /// parties with a new share by new index, then the others by old index.
    fn parties(&self, old_committee: &[&Voter]) -> Vec<CommitteeMember> {
        let old_set = self.signer_set(|v| v.old_index);
        let old_ranges = super::share_indices(&old_set);
        let needed = usize::from(self.details.old_threshold().unwrap_or(0));
        let mut old_shares: Vec<(DeviceId, u16)> = Vec::new();
        for voter in old_committee {
            let Some(range) = voter.old_index.and_then(|i| old_ranges.get(usize::from(i))) else {
                continue;
            };
            for index in range.clone() {
                if old_shares.len() < needed {
                    old_shares.push((voter.device_id.clone(), index));
                }
            }
        }
        let new_set = self.details.new_signers();
        let new_shares: Vec<(DeviceId, u16)> = new_set
            .iter()
            .zip(super::share_indices(new_set))
            .flat_map(|(s, range)| range.map(move |i| (s.device_id.clone(), i)))
            .collect();
        let mut committee: Vec<CommitteeMember> = Vec::new();
        let mut devices: Vec<&DeviceId> = Vec::new();
        for (d, _) in old_shares.iter().chain(&new_shares) {
            if !devices.contains(&d) {
                devices.push(d);
            }
        }
        for device in devices {
            let of = |shares: &[(DeviceId, u16)]| -> Vec<u16> {
                shares
                    .iter()
                    .filter(|(d, _)| d == device)
                    .map(|(_, i)| *i)
                    .collect()
            };
            let (old, new) = (of(&old_shares), of(&new_shares));
            for k in 0..old.len().max(new.len()) {
                committee.push(CommitteeMember {
                    device_id: device.clone(),
                    old_index: old.get(k).copied(),
                    new_index: new.get(k).copied(),
                });
            }
        }
        committee.sort_by_key(|m| (m.new_index.is_none(), m.new_index, m.old_index));
        committee
    }

    /// The old (`role = old_index`) or new signer set as the voters list it, in set order.
    fn signer_set(&self, role: impl Fn(&Voter) -> Option<u16>) -> Vec<Signer> {
        let mut set: Vec<(u16, Signer)> = self
            .voters
            .iter()
            .filter_map(|v| {
                role(v).map(|i| {
                    (
                        i,
                        Signer {
                            device_id: v.device_id.clone(),
                            weight: v.weight,
                        },
                    )
                })
            })
            .collect();
        set.sort_by_key(|(i, _)| *i);
        set.into_iter().map(|(_, s)| s).collect()
    }

    /// The devices of the committee, each once, in party order of their first party.
    pub fn committee_devices(&self) -> Vec<DeviceId> {
        self.devices_of(|_| true)
    }

    /// The devices of the committee's parties that `keep`, each once, in party order.
    pub(super) fn devices_of(&self, keep: impl Fn(&CommitteeMember) -> bool) -> Vec<DeviceId> {
        let mut devices: Vec<DeviceId> = Vec::new();
        for m in self.committee.iter().filter(|m| keep(m)) {
            if !devices.contains(&m.device_id) {
                devices.push(m.device_id.clone());
            }
        }
        devices
    }
}

enum Quorum {
    Pending,
    Reached(Vec<CommitteeMember>),
    Impossible(String),
}
