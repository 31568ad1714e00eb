//! Resharing, for every scheme: the run's sets must be exactly the approved ones (each new
//! signer at its index and no other, each dealer at its old index); old holders load their
//! share; the scheme deals and receives. Afterwards every participant keeps what it needs
//! to commit the new generation (a [`PendingReshare`]): the new holders and the key-set
//! hash their signed receipts must state. A new holder stores its new share (unconfirmed,
//! never over another share) and submits its receipt; an old-only member submits nothing.
//! Nothing old is destroyed here: that waits for the receipts of every new holder
//! (`daemon::confirm`). The protocol and the commit rule are in docs/reshare.md.

use serde::{Deserialize, Serialize};
use vsigner_keystore::RecordId;
use vsigner_tss::reshare::{Acknowledged, Role};

use super::scheme::{ReshareParams, Scheme};
use super::{Committee, RunContext, RunFailure, Submission};
use crate::coordinator_api::{CommitteeMember, Operation, ReshareDetails};

/// What a participant of a reshare keeps until the new generation is committed (a
/// keystore `reshare-pending` record, JSON). Public data only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReshare {
    /// The reshare operation (the receipts are statements about it).
    pub operation_id: String,
    /// The vault.
    pub vault_id: String,
    /// The vault's curve (the coordinator's name), which reads the share records.
    pub curve: String,
    /// The new shares' key generation.
    pub generation: u64,
    /// The vault's public key (hex), unchanged.
    pub public_key: String,
    /// Key-set hash of the new sharing, which every new holder's receipt must state.
    pub key_set_hash: String,
    /// The new holders, in new-index order: a receipt from each commits the generation.
    pub new_holders: Vec<String>,
    /// Whether this device holds a share of the new generation (else it leaves the set).
    pub holds_share: bool,
}

impl PendingReshare {
    /// Reads a stored record.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("pending reshare record: {e}"))
    }
}

/// Checks that the committee is exactly the approved reshare: every approved new signer is
/// a member at its new index and no one else receives; every dealer is the old signer of
/// its old index. Returns each member's role in party order.
fn roles(committee: &Committee, details: &ReshareDetails) -> Result<Vec<Role>, RunFailure> {
    let mut expected: Vec<(u16, &str)> = details
        .new_signers
        .iter()
        .map(|s| (s.index, s.device_id.as_str()))
        .collect();
    expected.sort_unstable();
    let mut given: Vec<(u16, &str)> = committee
        .members
        .iter()
        .filter_map(|m| m.new_index.map(|k| (k, m.device_id.as_str())))
        .collect();
    given.sort_unstable();
    if given != expected {
        return Err(RunFailure::new(format!(
            "the run's new signer set {given:?} is not the approved one {expected:?}"
        )));
    }
    if expected
        .iter()
        .enumerate()
        .any(|(k, (i, _))| usize::from(*i) != k)
    {
        return Err(RunFailure::new("the approved new signer indices are not 0..n"));
    }
    let mut roles = Vec::with_capacity(committee.members.len());
    for m in &committee.members {
        if let Some(k) = m.old_index {
            let listed = details.old_signers.iter().find(|s| s.index == k);
            if listed.map(|s| s.device_id.as_str()) != Some(m.device_id.as_str()) {
                return Err(RunFailure::new(format!(
                    "committee member {} is not old signer {k} of the approved reshare",
                    m.device_id
                )));
            }
        }
        if m.old_index.is_none() && m.new_index.is_none() {
            return Err(RunFailure::new(format!(
                "committee member {} has no role in the reshare",
                m.device_id
            )));
        }
        roles.push(Role {
            old_index: m.old_index,
            new_index: m.new_index,
        });
    }
    Ok(roles)
}

impl RunContext {
    /// Takes part in a reshare of the vault's key.
    pub(super) async fn reshare<S: Scheme>(&self, op: &Operation) -> Result<Submission, RunFailure> {
        let details = op
            .reshare
            .as_ref()
            .ok_or_else(|| RunFailure::new("reshare without details"))?;
        let committee = Committee::new(op, self.me())?;
        let roles = roles(&committee, details)?;
        let me = &committee.members[usize::from(committee.me)];
        let new_generation = details.new_generation();
        let public_key_hex = op
            .vault
            .public_key
            .as_deref()
            .ok_or_else(|| RunFailure::new("the vault has no public key"))?;
        let public_key =
            hex::decode(public_key_hex).map_err(|_| RunFailure::new("vault public key is not hex"))?;
        // The new set in new-index order.
        let new_set: Vec<&CommitteeMember> = {
            let mut v: Vec<&CommitteeMember> = committee
                .members
                .iter()
                .filter(|m| m.new_index.is_some())
                .collect();
            v.sort_by_key(|m| m.new_index);
            v
        };
        let old = match me.old_index {
            Some(_) => Some(self.load_share(&op.vault_id, details.old_key_generation).await?),
            None => None,
        };
        let old_n = u16::try_from(details.old_signers.len())
            .map_err(|_| RunFailure::new("the old signer set is too large"))?;
        let params = ReshareParams {
            roles: &roles,
            me: committee.me,
            old_n,
            old_threshold: details.old_threshold,
            new_threshold: details.new_threshold,
            public_key: &public_key,
            new_set: &new_set,
            new_index: me.new_index,
        };
        let reshared = S::reshare(self, op, &committee, &params, old.as_deref().map(|r| &r[..])).await?;
        if let Acknowledged::Incomplete(why) = &reshared.acknowledged {
            tracing::warn!(reason = %why, "not every acknowledgement arrived; this device's part is complete and checked, and the new generation is committed only on every new holder's receipt");
        }
        let pending = PendingReshare {
            operation_id: op.id.clone(),
            vault_id: op.vault_id.clone(),
            curve: op.curve.clone(),
            generation: new_generation,
            public_key: public_key_hex.to_owned(),
            key_set_hash: reshared.key_set_hash.clone(),
            new_holders: new_set.iter().map(|m| m.device_id.clone()).collect(),
            holds_share: reshared.share.is_some(),
        };
        self.keep_pending(&pending).await?;
        let Some(share) = reshared.share else {
            return Ok(Submission::Departed {
                generation: new_generation,
            });
        };
        if hex::encode(&share.public_key) != public_key_hex || share.key_set_hash != pending.key_set_hash {
            return Err(RunFailure::new(
                "the new share is not of the vault key or of the run's key set",
            ));
        }
        self.store_share(&op.vault_id, new_generation, &share.record)
            .await?;
        Ok(Submission::Reshare {
            public_key: hex::encode(&share.public_key),
            key_set_hash: share.key_set_hash,
            generation: new_generation,
        })
    }

    /// Writes the pending-reshare record (once per vault and generation).
    async fn keep_pending(&self, pending: &PendingReshare) -> Result<(), RunFailure> {
        let id = RecordId::pending_reshare(self.me(), &pending.vault_id, pending.generation)
            .map_err(|e| RunFailure::new(e.to_string()))?;
        let bytes = serde_json::to_vec(pending).map_err(|e| RunFailure::new(e.to_string()))?;
        self.keystore
            .put(&id, &bytes)
            .await
            .map_err(|e| RunFailure::new(format!("cannot keep the reshare's commit data: {e}")))
    }
}
