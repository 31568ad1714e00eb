//! Signing, for every scheme: the committee must be exactly the vault's threshold of its
//! shares, each party at a share of the device that runs it; the scheme signs what was
//! approved (computed locally from the approved payload, never taken from the coordinator).

use vsigner_approval::SignPayload;

use super::scheme::Scheme;
use super::{share_set, Committee, RunContext, RunFailure, Submission};
use crate::approval_request::SigningInput;
use crate::coordinator_api::Operation;

/// What a committee signs, as approved.
pub struct Signing<'a> {
    /// The approved payload.
    pub payload: &'a SignPayload,
    /// What the scheme signs, computed from the payload by this device.
    pub input: &'a SigningInput,
    /// The approved non-hardened derivation path, if any.
    pub path: Option<&'a str>,
    /// bip340: the approved Taproot tweak, if the signature is for the output key.
    pub taproot: Option<&'a vsigner_approval::Taproot>,
}

impl RunContext {
    /// Signs with the vault's shares of the operation's key generation.
    pub(super) async fn sign<S: Scheme>(
        &self,
        op: &Operation,
        what: &Signing<'_>,
    ) -> Result<Submission, RunFailure> {
        let details = op
            .sign
            .as_ref()
            .ok_or_else(|| RunFailure::new("sign without details"))?;
        let (committee, signers) = self.signing_committee(op)?;
        let record = self.load_share(&op.vault_id, details.key_generation).await?;
        let records = self.my_shares(op, &committee, &signers, &record)?;
        let signature = S::sign(self, op, &committee, &signers, &records, what).await?;
        Ok(Submission::Signature {
            signature: hex::encode(&signature.bytes),
            recovery_id: signature.recovery_id,
        })
    }

    /// A signing committee in party order with each party's share index, checked against
    /// the vault's signer set: exactly the threshold of shares, each held by the device
    /// that runs the party, none twice.
    pub(super) fn signing_committee(&self, op: &Operation) -> Result<(Committee, Vec<u16>), RunFailure> {
        let committee = Committee::new(op, self.me())?;
        let signers: Vec<u16> = committee
            .members
            .iter()
            .map(|m| match (m.index, m.old_index) {
                (Some(i), Some(o)) if i != o => None,
                (i, o) => i.or(o),
            })
            .collect::<Option<_>>()
            .ok_or_else(|| {
                RunFailure::new("a signing committee member has no share index, or two that differ")
            })?;
        let owners = share_set::share_owners(&op.vault.signers)?;
        for (m, s) in committee.members.iter().zip(&signers) {
            if owners.get(usize::from(*s)) != Some(&m.device_id.as_str()) {
                return Err(RunFailure::new(format!(
                    "committee member {} does not hold share {s} of the vault",
                    m.device_id
                )));
            }
        }
        // Parties in share order, none twice: one order for everyone.
        if signers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(RunFailure::new(
                "the committee's shares are not in ascending order, or one appears twice",
            ));
        }
        if signers.len() != usize::from(op.vault.threshold) {
            return Err(RunFailure::new(
                "the committee is not the vault's threshold of shares",
            ));
        }
        Ok((committee, signers))
    }

    /// The share records of this device's parties (in `committee.mine` order) out of its
    /// stored record of the vault.
    pub(super) fn my_shares<'r>(
        &self,
        op: &Operation,
        committee: &Committee,
        signers: &[u16],
        record: &'r [u8],
    ) -> Result<Vec<&'r [u8]>, RunFailure> {
        let parts = share_set::decode(record)?;
        let indices = share_set::share_indices(&op.vault.signers)?;
        let (_, range) = indices
            .iter()
            .find(|(d, _)| *d == self.me())
            .ok_or_else(|| RunFailure::new("this device is not a signer of the vault"))?;
        if parts.len() != range.len() {
            return Err(RunFailure::new(format!(
                "this device holds {} shares of the vault; its weight is {}",
                parts.len(),
                range.len()
            )));
        }
        committee
            .mine
            .iter()
            .map(|p| {
                let s = signers[usize::from(*p)];
                parts
                    .get(usize::from(s.wrapping_sub(range.start)))
                    .copied()
                    .ok_or_else(|| RunFailure::new(format!("this device does not hold share {s}")))
            })
            .collect()
    }
}
