//! Keygen, for every scheme: the committee must be the vault's signer set in index order;
//! the scheme generates the key; the new share is stored (unconfirmed) before the result
//! is submitted.

use super::scheme::Scheme;
use super::{Committee, RunContext, RunFailure, Submission};
use crate::coordinator_api::Operation;

impl RunContext {
    /// Generates this device's share of a new vault key with the committee.
    pub(super) async fn keygen<S: Scheme>(&self, op: &Operation) -> Result<Submission, RunFailure> {
        let details = op
            .keygen
            .as_ref()
            .ok_or_else(|| RunFailure::new("keygen without details"))?;
        let committee = Committee::new(op, self.me())?;
        // Party p must be the signer of index p.
        let order: Vec<&str> = details.signers.iter().map(|s| s.device_id.as_str()).collect();
        if committee.ids() != order {
            return Err(RunFailure::new(
                "the keygen committee is not the vault's signer set in index order",
            ));
        }
        let generation = op.vault.key_generation;
        let share = S::keygen(self, op, &committee, details.threshold).await?;
        self.store_share(&op.vault_id, generation, &share.record).await?;
        Ok(Submission::Keygen {
            public_key: hex::encode(&share.public_key),
            chain_code: share.chain_code.as_ref().map(hex::encode),
            key_set_hash: share.key_set_hash,
            generation,
        })
    }
}
