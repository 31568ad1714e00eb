//! The GraphQL object of an operation.

use super::*;

/// An operation.
pub struct OperationObj(pub(crate) Operation);

#[Object(name = "Operation")]
impl OperationObj {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn organisation_id(&self) -> ID {
        ID(self.0.org_id.to_string())
    }
    /// `Keygen` | `Reshare` | `Sign` | `Presign`.
    async fn kind(&self) -> &str {
        self.0.kind().as_str()
    }
    /// `AwaitingApproval` | `Ready` | `InProgress` | `Completed` | `Failed` | `Rejected` | `Expired`.
    async fn state(&self) -> &str {
        self.0.state.as_str()
    }
    async fn vault_id(&self) -> ID {
        ID(self.0.vault_id.to_string())
    }
    /// The vault now (for reshare: after completion it shows the new set).
    async fn vault(&self, ctx: &Context<'_>) -> GqlResult<VaultObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .vault_as_stored(p, self.0.vault_id.as_str())
            .await
            .map(VaultObj)
            .map_err(gql)
    }
    /// `secp256k1` | `ed25519`.
    async fn curve(&self) -> &str {
        self.0.curve.as_str()
    }
    /// Random 32-byte execution nonce (hex); devices put it in the MPC execution id.
    async fn nonce(&self) -> String {
        hex::encode(self.0.nonce)
    }
    async fn created_at(&self) -> String {
        time(self.0.created_at)
    }
    async fn updated_at(&self) -> String {
        time(self.0.updated_at)
    }
    async fn expires_at(&self) -> String {
        time(self.0.expires_at)
    }
    /// Approving weight so far.
    async fn approved_weight(&self) -> i32 {
        i32::try_from(self.0.approved_weight()).unwrap_or(i32::MAX)
    }
    /// Approving weight needed (sign: threshold; reshare: old threshold, plus every
    /// new member; keygen: every member).
    async fn required_weight(&self) -> i32 {
        i32::try_from(self.0.required_weight()).unwrap_or(i32::MAX)
    }
    async fn voters(&self) -> Vec<Voter> {
        self.0
            .voters
            .iter()
            .map(|v| Voter {
                device_id: ID(v.device_id.to_string()),
                weight: i32::try_from(v.weight).unwrap_or(i32::MAX),
                old_index: opt_i32(v.old_index),
                new_index: opt_i32(v.new_index),
            })
            .collect()
    }
    /// What human-approved devices ask people about this operation, with the answers.
    async fn human_approvals(&self, ctx: &Context<'_>) -> GqlResult<Vec<HumanApprovalRequestObj>> {
        let p = ctx_principal(ctx)?;
        Ok(ctx_service(ctx)?
            .human_approvals(p, self.0.id.as_str())
            .await
            .map_err(gql)?
            .into_iter()
            .map(Into::into)
            .collect())
    }
    /// Votes in arrival order.
    async fn votes(&self) -> Vec<VoteObj> {
        self.0
            .votes
            .iter()
            .map(|v| VoteObj {
                device_id: ID(v.device_id.to_string()),
                vote: v.choice.as_str().to_owned(),
                weight: i32::try_from(v.weight).unwrap_or(i32::MAX),
                at: time(v.at),
            })
            .collect()
    }
    /// The committee's parties (empty before Ready), in party order: sign by share
    /// index; keygen by index; reshare: parties with a new share by new index, then the
    /// others by old index. A device of weight `w` runs up to `w` parties and is listed
    /// once for each.
    async fn committee(&self, ctx: &Context<'_>) -> GqlResult<Vec<CommitteeMember>> {
        let p = ctx_principal(ctx)?;
        let svc = ctx_service(ctx)?;
        let ids: Vec<&str> = self.0.committee.iter().map(|m| m.device_id.as_str()).collect();
        let devices = svc.devices_by_ids(p, &ids).await.map_err(gql)?;
        let mut out = Vec::new();
        for m in &self.0.committee {
            let d = devices
                .get(m.device_id.as_str())
                .cloned()
                .ok_or_else(|| gql(Error::not_found("device", m.device_id.as_str())))?;
            let index = match self.0.kind() {
                OperationKind::Sign | OperationKind::Presign => opt_i32(m.old_index),
                OperationKind::Keygen => opt_i32(m.new_index),
                OperationKind::Reshare => None,
            };
            out.push(CommitteeMember {
                device_id: ID(m.device_id.to_string()),
                name: d.name,
                identity_signing_key: hex::encode(d.identity_signing_key),
                identity_encryption_key: hex::encode(d.identity_encryption_key),
                record: d.record.as_ref().map(|r| r.to_hex()),
                index,
                old_index: opt_i32(m.old_index),
                new_index: opt_i32(m.new_index),
            });
        }
        Ok(out)
    }
    /// Devices that submitted a keygen/reshare result so far.
    async fn submitted_device_ids(&self) -> Vec<ID> {
        self.0
            .key_results
            .iter()
            .map(|r| ID(r.device_id.to_string()))
            .collect()
    }
    async fn keygen(&self) -> Option<KeygenDetails> {
        match &self.0.details {
            OperationDetails::Keygen {
                threshold,
                signers: s,
            } => Some(KeygenDetails {
                threshold: i32::from(*threshold),
                signers: signers(s),
            }),
            _ => None,
        }
    }
    async fn reshare(&self) -> Option<ReshareDetails> {
        match &self.0.details {
            OperationDetails::Reshare {
                old_threshold,
                old_signers,
                new_threshold,
                new_signers,
                old_key_generation,
                ..
            } => Some(ReshareDetails {
                old_threshold: i32::from(*old_threshold),
                old_signers: signers(old_signers),
                new_threshold: i32::from(*new_threshold),
                new_signers: signers(new_signers),
                old_key_generation: i32::try_from(*old_key_generation).unwrap_or(i32::MAX),
                new_key_generation: self
                    .0
                    .new_key_generation()
                    .and_then(|g| i32::try_from(g).ok())
                    .unwrap_or(i32::MAX),
            }),
            _ => None,
        }
    }
    async fn sign(&self) -> Option<SignDetails> {
        match &self.0.details {
            OperationDetails::Sign {
                payload,
                derivation_path,
                taproot,
                key_generation,
                presignature,
                ..
            } => Some(SignDetails {
                payload_kind: payload.kind().to_owned(),
                payload: hex::encode(payload.bytes()),
                signing_digest: self.0.signing_digest().map(hex::encode),
                derivation_path: derivation_path.clone(),
                taproot: taproot.as_ref().map(|t| TaprootObj {
                    merkle_root: t.merkle_root_hex.clone(),
                }),
                chain_id: self.0.eth_chain_id().map(|c| c.to_string()),
                key_generation: i32::try_from(*key_generation).unwrap_or(i32::MAX),
                presignature_id: presignature.as_ref().map(|p| ID(p.to_string())),
            }),
            _ => None,
        }
    }
    async fn presign(&self) -> Option<PresignDetails> {
        match &self.0.details {
            OperationDetails::Presign {
                key_generation,
                consumed_by,
                discarded_by,
            } => Some(PresignDetails {
                key_generation: i32::try_from(*key_generation).unwrap_or(i32::MAX),
                consumed_by: consumed_by.as_ref().map(|p| ID(p.to_string())),
                discarded_by: discarded_by.as_ref().map(|d| ID(d.to_string())),
            }),
            _ => None,
        }
    }
    async fn result(&self) -> Option<ResultObj> {
        self.0.result.as_ref().map(|r| ResultObj {
            public_key: r.public_key.clone(),
            chain_code: r.chain_code.clone(),
            key_generation: r.key_generation.map(|k| i32::try_from(k).unwrap_or(i32::MAX)),
            key_set_hash: r.key_set_hash.clone(),
            signature: r.signature.clone(),
            recovery_id: r.recovery_id.map(i32::from),
            submitted_by: r.submitted_by.as_ref().map(|d| ID(d.to_string())),
            raw_transaction: r.raw_transaction.clone(),
            tx_hash: r.tx_hash.clone(),
            broadcast_error: r.broadcast_error.clone(),
        })
    }
    async fn failure(&self) -> Option<FailureObj> {
        self.0.failure.as_ref().map(|f| FailureObj {
            reason: f.reason.clone(),
            culprit_device_ids: f.culprits.iter().map(|d| ID(d.to_string())).collect(),
            reported_by: f.reported_by.as_ref().map(|d| ID(d.to_string())),
        })
    }
    /// Why quorum became impossible (Rejected).
    async fn rejection_reason(&self) -> Option<&str> {
        self.0.rejection.as_deref()
    }
    /// The committee member that started the run.
    async fn started_by(&self) -> Option<ID> {
        self.0.started_by.as_ref().map(|d| ID(d.to_string()))
    }
}
