//! ECDSA presignatures: a committee makes one in the background (nothing is signed, so
//! nothing is approved), each member keeps its part in the keystore, and one later
//! signature of an approved message takes it out (deleted before the partial signature
//! leaves the device) and signs in one round.

use rand_core::OsRng;
use vsigner_approval::SignPayload;
use vsigner_keystore::RecordId;
use vsigner_tss::ecdsa::{self, HashAlgorithm, Preimage, Secp256k1};
use vsigner_tss::ProtocolTag;

use super::{ecdsa::share_of, RunContext, RunFailure, Submission};
use crate::approval_request;
use crate::coordinator_api::{CommitteeMember, Operation};
use crate::metrics::Protocol;

impl RunContext {
    /// Generates a presignature with the committee and keeps it for one signature.
    pub(super) async fn presign(&self, op: &Operation) -> Result<Submission, RunFailure> {
        let details = op
            .presign
            .as_ref()
            .ok_or_else(|| RunFailure::new("presign without details"))?;
        if op.curve != "secp256k1" || op.vault.status != "Active" {
            return Err(RunFailure::new("presignatures are for Active secp256k1 vaults"));
        }
        if details.key_generation != op.vault.key_generation {
            return Err(RunFailure::new(
                "the presignature is for a key generation the vault no longer has",
            ));
        }
        let (committee, signers) = self.signing_committee(op)?;
        let i = committee.me;
        let share = share_of(&self.load_share(&op.vault_id, details.key_generation).await?)?;
        let members: Vec<&CommitteeMember> = committee.members.iter().collect();
        let presignature = self
            .session(
                ProtocolTag::EcdsaPresign,
                op,
                &members,
                Some(Protocol::EcdsaPresign),
                |party, eid| {
                    let (share, signers) = (&share, &signers);
                    async move { ecdsa::presign(party, eid, i, signers, share, &mut OsRng).await }
                },
            )
            .await?;
        let fingerprint = hex::encode(presignature.public().fingerprint());
        let bytes = presignature
            .to_bytes()
            .map_err(|e| RunFailure::new(format!("presignature: {e}")))?;
        let id = RecordId::presignature(self.me(), &op.vault_id, &op.id)
            .map_err(|e| RunFailure::new(e.to_string()))?;
        self.keystore
            .put(&id, &bytes)
            .await
            .map_err(|e| RunFailure::new(format!("cannot store the presignature: {e}")))?;
        Ok(Submission::Presign { fingerprint })
    }

    /// The one-round signature with presignature `presignature_id`: it is taken out of the
    /// keystore (deleted) before its partial signature leaves the device.
    pub(super) async fn sign_with_presignature(
        &self,
        op: &Operation,
        members: &[&CommitteeMember],
        signers: &[u16],
        presignature_id: &str,
        payload: &SignPayload,
        digest: &[u8; 32],
    ) -> Result<ecdsa::Signature, RunFailure> {
        let preimage =
            match payload {
                SignPayload::EthereumTransaction(tx) => Preimage {
                    hash: HashAlgorithm::Keccak256,
                    data: tx.raw().to_vec(),
                },
                SignPayload::Message(m) => Preimage {
                    hash: HashAlgorithm::Keccak256,
                    data: approval_request::eip191_prefixed(m),
                },
                SignPayload::Digest(_) => return Err(RunFailure::new(
                    "a presignature cannot sign a raw digest (CGGMP24 signs only messages it hashes itself)",
                )),
            };
        if &preimage.digest() != digest {
            return Err(RunFailure::new(
                "the presigned message does not hash to the approved digest",
            ));
        }
        let id = RecordId::presignature(self.me(), &op.vault_id, presignature_id)
            .map_err(|e| RunFailure::new(e.to_string()))?;
        let bytes = self
            .keystore
            .take(&id)
            .await
            .map_err(|e| RunFailure::new(format!("keystore: {e}")))?
            .ok_or_else(|| {
                RunFailure::new(format!(
                    "this device holds no presignature {presignature_id} (used or lost)"
                ))
            })?;
        let presignature = ecdsa::Presignature::<Secp256k1>::from_bytes(&bytes)
            .map_err(|e| RunFailure::new(format!("stored presignature: {e}")))?;
        if presignature.public().signers != signers {
            return Err(RunFailure::new("the presignature belongs to another committee"));
        }
        let vault_key = op.vault.public_key.as_deref().unwrap_or_default();
        if hex::encode(presignature.public().public_key.to_bytes(true)) != vault_key {
            return Err(RunFailure::new(
                "the presignature is for another key (an older key generation?)",
            ));
        }
        self.session(
            ProtocolTag::EcdsaSign,
            op,
            members,
            Some(Protocol::EcdsaSign),
            |party, eid| {
                let preimage = &preimage;
                async move { ecdsa::sign_with_presignature(party, eid, presignature, preimage).await }
            },
        )
        .await
    }
}
