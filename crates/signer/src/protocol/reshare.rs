//! Resharing, for every scheme: each committee member must hold the indices it is given in
//! the old and new signer sets; old holders load their share; the scheme deals and
//! receives; a new holder stores its new share (unconfirmed), an old-only member leaves
//! with nothing to submit. The protocol is in docs/reshare.md.

use vsigner_tss::reshare::Role;

use super::scheme::{ReshareParams, Scheme};
use super::{Committee, RunContext, RunFailure, Submission};
use crate::coordinator_api::{CommitteeMember, Operation};

impl RunContext {
    /// Takes part in a reshare of the vault's key.
    pub(super) async fn reshare<S: Scheme>(&self, op: &Operation) -> Result<Submission, RunFailure> {
        let details = op
            .reshare
            .as_ref()
            .ok_or_else(|| RunFailure::new("reshare without details"))?;
        let committee = Committee::new(op, self.me())?;
        let mut roles = Vec::with_capacity(committee.members.len());
        for m in &committee.members {
            let old = m.old_index.map(|k| (k, details.old_signers.get(usize::from(k))));
            let new = m.new_index.map(|k| (k, details.new_signers.get(usize::from(k))));
            for (k, listed) in [old, new].into_iter().flatten() {
                if listed.map(|s| s.device_id.as_str()) != Some(m.device_id.as_str()) {
                    return Err(RunFailure::new(format!(
                        "committee member {} does not hold index {k} in the signer sets",
                        m.device_id
                    )));
                }
            }
            roles.push(Role {
                old_index: m.old_index,
                new_index: m.new_index,
            });
        }
        let me = &committee.members[usize::from(committee.me)];
        let new_generation = details.old_key_generation + 1;
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
        let params = ReshareParams {
            roles: &roles,
            me: committee.me,
            old_threshold: details.old_threshold,
            new_threshold: details.new_threshold,
            public_key: &public_key,
            new_set: &new_set,
            new_index: me.new_index,
        };
        let Some(share) = S::reshare(self, op, &committee, &params, old.as_deref().map(|r| &r[..])).await?
        else {
            return Ok(Submission::Departed {
                generation: new_generation,
            });
        };
        self.store_share(&op.vault_id, new_generation, &share.record)
            .await?;
        Ok(Submission::Reshare {
            public_key: hex::encode(&share.public_key),
            key_set_hash: share.key_set_hash,
            generation: new_generation,
        })
    }
}
