//! Keygen, for every scheme: the committee must be every share of the vault's signer set in
//! index order (a device of weight `w` runs its `w` parties); the scheme generates the key;
//! the new shares are stored (unconfirmed, one record for all of this device's) before the
//! result is submitted.

use super::scheme::{NewShare, Scheme};
use super::{share_set, Committee, RunContext, RunFailure, Submission};
use crate::coordinator_api::Operation;

impl RunContext {
    /// Generates this device's shares of a new vault key with the committee.
    pub(super) async fn keygen<S: Scheme>(&self, op: &Operation) -> Result<Submission, RunFailure> {
        let details = op
            .keygen
            .as_ref()
            .ok_or_else(|| RunFailure::new("keygen without details"))?;
        let committee = Committee::new(op, self.me())?;
        // Party p must be share p of the signer set.
        let owners = share_set::share_owners(&details.signers)?;
        let in_order = committee
            .members
            .iter()
            .enumerate()
            .all(|(p, m)| usize::from(m.new_index.or(m.index).unwrap_or(u16::MAX)) == p);
        if committee.ids() != owners || !in_order {
            return Err(RunFailure::new(
                "the keygen committee is not the vault's signer set's shares in index order",
            ));
        }
        let generation = op.vault.key_generation;
        let shares = S::keygen(self, op, &committee, details.threshold).await?;
        let share = agreed(&shares)?;
        let records: Vec<_> = shares.iter().map(|s| s.record.clone()).collect();
        self.store_share(&op.vault_id, generation, &share_set::encode(&records)?)
            .await?;
        Ok(Submission::Keygen {
            public_key: hex::encode(&share.public_key),
            chain_code: share.chain_code.as_ref().map(hex::encode),
            key_set_hash: share.key_set_hash.clone(),
            generation,
        })
    }
}

/// The one key this device's new shares are of: every party it ran must have the same
/// public key, chain code and key-set hash.
pub(super) fn agreed(shares: &[NewShare]) -> Result<&NewShare, RunFailure> {
    let first = shares
        .first()
        .ok_or_else(|| RunFailure::new("the run gave this device no share"))?;
    if shares.iter().any(|s| {
        s.public_key != first.public_key
            || s.chain_code != first.chain_code
            || s.key_set_hash != first.key_set_hash
    }) {
        return Err(RunFailure::new(
            "this device's parties ended with different keys; nothing is stored",
        ));
    }
    Ok(first)
}
