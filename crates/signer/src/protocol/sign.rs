//! Signing, for every scheme: the committee must be the vault's threshold of its signers,
//! each at its own share index; the scheme signs what was approved (computed locally from
//! the approved payload, never taken from the coordinator).

use vsigner_approval::SignPayload;

use super::scheme::Scheme;
use super::{Committee, RunContext, RunFailure, Submission};
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
    /// Signs with the vault's share of the operation's key generation.
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
        let signature = S::sign(self, op, &committee, &signers, &record, what).await?;
        Ok(Submission::Signature {
            signature: hex::encode(&signature.bytes),
            recovery_id: signature.recovery_id,
        })
    }

    /// A signing committee in party order with each member's share index, checked against
    /// the vault's signer set.
    pub(super) fn signing_committee(&self, op: &Operation) -> Result<(Committee, Vec<u16>), RunFailure> {
        let committee = Committee::new(op, self.me())?;
        let signers: Vec<u16> = committee
            .members
            .iter()
            .map(|m| m.index.or(m.old_index))
            .collect::<Option<_>>()
            .ok_or_else(|| RunFailure::new("a signing committee member has no share index"))?;
        for (m, s) in committee.members.iter().zip(&signers) {
            let listed = op.vault.signers.iter().find(|v| v.device_id == m.device_id);
            if listed.map(|v| v.index) != Some(*s) {
                return Err(RunFailure::new(format!(
                    "committee member {} is not signer {s} of the vault",
                    m.device_id
                )));
            }
        }
        if signers.len() != usize::from(op.vault.threshold) {
            return Err(RunFailure::new(
                "the committee is not the vault's threshold of signers",
            ));
        }
        Ok((committee, signers))
    }
}
