//! Resharing, for every scheme: the run's sets must be exactly the approved ones (each new
//! share received by its holder and no other, each dealer dealing an old share of its own);
//! a device runs a party for each share it deals or receives (a device of weight `w` may run
//! several), old holders load their shares; the scheme deals and receives. Afterwards every participant keeps what it needs
//! to commit the new generation (a [`PendingReshare`]): the new holders and the key-set
//! hash their signed receipts must state. A new holder stores its new share (unconfirmed,
//! never over another share) and submits its receipt; an old-only member submits nothing.
//! Nothing old is destroyed here: that waits for the receipts of every new holder
//! (`daemon::confirm`). The protocol and the commit rule are in docs/reshare.md.

use serde::{Deserialize, Serialize};
use vsigner_keystore::RecordId;
use vsigner_tss::reshare::{Acknowledged, Role};

use super::scheme::{NewShare, ReshareParams, Scheme};
use super::{share_set, Committee, RunContext, RunFailure, Submission};
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

/// Checks that the committee is exactly the approved reshare: every share of the approved
/// new set is received by one party, run by the device that holds it, and no one else
/// receives; every dealer deals an old share of the device that runs it, none twice.
/// Returns each party's role in party order.
fn roles(committee: &Committee, details: &ReshareDetails) -> Result<Vec<Role>, RunFailure> {
    let new_owners = share_set::share_owners(&details.new_signers)?;
    let mut given: Vec<(u16, &str)> = committee
        .members
        .iter()
        .filter_map(|m| m.new_index.map(|k| (k, m.device_id.as_str())))
        .collect();
    given.sort_unstable();
    let expected: Vec<(u16, &str)> = new_owners
        .iter()
        .enumerate()
        .map(|(k, d)| (k as u16, *d))
        .collect();
    if given != expected {
        return Err(RunFailure::new(format!(
            "the run's new set of shares {given:?} is not the approved one {expected:?}"
        )));
    }
    // One party order for everyone: receivers by new index, then dealers only by old index.
    let order: Vec<(bool, Option<u16>, Option<u16>)> = committee
        .members
        .iter()
        .map(|m| (m.new_index.is_none(), m.new_index, m.old_index))
        .collect();
    if order.windows(2).any(|w| w[0] >= w[1]) {
        return Err(RunFailure::new(
            "the reshare's parties are not in order (receivers by new index, then dealers by old index)",
        ));
    }
    let old_owners = share_set::share_owners(&details.old_signers)?;
    let mut dealt = std::collections::BTreeSet::new();
    let mut roles = Vec::with_capacity(committee.members.len());
    for m in &committee.members {
        if let Some(k) = m.old_index {
            if old_owners.get(usize::from(k)) != Some(&m.device_id.as_str()) || !dealt.insert(k) {
                return Err(RunFailure::new(format!(
                    "committee member {} does not hold old share {k} of the approved reshare (or it is dealt twice)",
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
    /// Takes part in a reshare of the vault's key, with a party for each share this device
    /// deals or receives.
    pub(super) async fn reshare<S: Scheme>(&self, op: &Operation) -> Result<Submission, RunFailure> {
        let details = op
            .reshare
            .as_ref()
            .ok_or_else(|| RunFailure::new("reshare without details"))?;
        let committee = Committee::new(op, self.me())?;
        let roles = roles(&committee, details)?;
        let new_generation = details.new_generation();
        let public_key_hex = op
            .vault
            .public_key
            .as_deref()
            .ok_or_else(|| RunFailure::new("the vault has no public key"))?;
        let public_key =
            hex::decode(public_key_hex).map_err(|_| RunFailure::new("vault public key is not hex"))?;
        // The parties that receive a share, in new-index order.
        let new_set: Vec<&CommitteeMember> = {
            let mut v: Vec<&CommitteeMember> = committee
                .members
                .iter()
                .filter(|m| m.new_index.is_some())
                .collect();
            v.sort_by_key(|m| m.new_index);
            v
        };
        // The old share each of this device's parties deals with, if any.
        let deals = committee
            .mine
            .iter()
            .any(|p| committee.member(*p).old_index.is_some());
        let record = match deals {
            true => Some(self.load_share(&op.vault_id, details.old_key_generation).await?),
            false => None,
        };
        let old_parts = record.as_deref().map(|r| share_set::decode(r)).transpose()?;
        let old_indices = share_set::share_indices(&details.old_signers)?;
        let my_old_start = old_indices
            .iter()
            .find(|(d, _)| *d == self.me())
            .map(|(_, r)| r.clone());
        let mut old: Vec<Option<&[u8]>> = Vec::with_capacity(committee.mine.len());
        for p in &committee.mine {
            old.push(
                match (committee.member(*p).old_index, &old_parts, &my_old_start) {
                    (None, _, _) => None,
                    (Some(k), Some(parts), Some(range))
                        if range.contains(&k) && parts.len() == range.len() =>
                    {
                        Some(parts[usize::from(k - range.start)])
                    }
                    (Some(k), _, _) => {
                        return Err(RunFailure::new(format!(
                            "this device does not hold old share {k} of vault {}",
                            op.vault_id
                        )))
                    }
                },
            );
        }
        let old_n = old_indices.last().map_or(0, |(_, r)| r.end);
        let params = ReshareParams {
            roles: &roles,
            old_n,
            old_threshold: details.old_threshold,
            new_threshold: details.new_threshold,
            public_key: &public_key,
            new_set: &new_set,
        };
        let reshared = S::reshare(self, op, &committee, &params, &old).await?;
        let key_set_hash = reshared
            .first()
            .map(|r| r.key_set_hash.clone())
            .ok_or_else(|| RunFailure::new("the reshare returned nothing"))?;
        for r in &reshared {
            if r.key_set_hash != key_set_hash {
                return Err(RunFailure::new(
                    "this device's parties ended with different new key sets",
                ));
            }
            if let Acknowledged::Incomplete(why) = &r.acknowledged {
                tracing::warn!(reason = %why, "not every acknowledgement arrived; this device's part is complete and checked, and the new generation is committed only on every new holder's receipt");
            }
        }
        let mut new_holders: Vec<String> = Vec::new();
        for m in &new_set {
            if !new_holders.contains(&m.device_id) {
                new_holders.push(m.device_id.clone());
            }
        }
        // This device's new shares, by new index.
        let mut new_shares: Vec<(u16, NewShare)> = committee
            .mine
            .iter()
            .zip(reshared)
            .filter_map(|(p, r)| Some((committee.member(*p).new_index?, r.share?)))
            .collect();
        new_shares.sort_by_key(|(k, _)| *k);
        let pending = PendingReshare {
            operation_id: op.id.clone(),
            vault_id: op.vault_id.clone(),
            curve: op.curve.clone(),
            generation: new_generation,
            public_key: public_key_hex.to_owned(),
            key_set_hash: key_set_hash.clone(),
            new_holders,
            holds_share: !new_shares.is_empty(),
        };
        self.keep_pending(&pending).await?;
        if new_shares.is_empty() {
            return Ok(Submission::Departed {
                generation: new_generation,
            });
        }
        for (_, share) in &new_shares {
            if hex::encode(&share.public_key) != public_key_hex || share.key_set_hash != pending.key_set_hash
            {
                return Err(RunFailure::new(
                    "the new share is not of the vault key or of the run's key set",
                ));
            }
        }
        let records: Vec<_> = new_shares.iter().map(|(_, s)| s.record.clone()).collect();
        self.store_share(&op.vault_id, new_generation, &share_set::encode(&records)?)
            .await?;
        Ok(Submission::Reshare {
            public_key: public_key_hex.to_owned(),
            key_set_hash,
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
