//! Signatures: the request (payload and derivation path checked), the verified result, and
//! the broadcast of a signed EIP-1559 transaction.

use serde::Serialize;

use vsigner_records::StatementKind;

use super::lifecycle::Signed;
use super::{request_hash, Service};
use crate::domain::*;
use crate::error::{Error, ErrorCode, Result};

/// `requestSignature` input.
#[derive(Debug, Clone, Serialize)]
pub struct RequestSignature {
    /// Vault.
    pub vault_id: String,
    /// 32-byte digest, hex.
    pub digest: Option<String>,
    /// Unsigned EIP-1559 transaction, hex.
    pub eth_tx: Option<String>,
    /// Message, hex.
    pub message: Option<String>,
    /// `m/0/1`.
    pub derivation_path: Option<String>,
    /// bip340: sign for the vault's Taproot output key.
    pub taproot: bool,
    /// bip340: the Taproot script tree's Merkle root, hex (implies `taproot`).
    pub taproot_merkle_root: Option<String>,
}

impl Service {
    /// Requests a signature from an Active vault.
    pub async fn request_signature(
        &self,
        p: &Principal,
        input: RequestSignature,
        key: Option<&str>,
    ) -> Result<Operation> {
        Self::require_operator(p)?;
        let hash = request_hash("requestSignature", &input)?;
        if let Some(id) = self
            .idempotent_existing(p, key, "requestSignature", &hash)
            .await?
        {
            return self.operation(p, &id).await;
        }
        let vault = self.vault(p, &input.vault_id).await?;
        if vault.status != VaultStatus::Active {
            return Err(Error::invalid_state(format!(
                "vault {} is {}, not Active",
                vault.id,
                vault.status.as_str()
            )));
        }
        let payload = parse_sign_payload(
            vault.curve,
            input.digest.as_deref(),
            input.eth_tx.as_deref(),
            input.message.as_deref(),
        )?;
        let taproot = TaprootTweak::parse(vault.curve, input.taproot, input.taproot_merkle_root.as_deref())?;
        let derivation_path = match input.derivation_path.as_deref() {
            None => None,
            Some(_) if !vault.curve.has_child_keys() => {
                return Err(Error::new(
                    ErrorCode::InvalidDerivationPath,
                    format!("{} vaults have no child keys", vault.curve.as_str()),
                ))
            }
            Some(_) if vault.chain_code.is_none() => {
                return Err(Error::new(
                    ErrorCode::InvalidDerivationPath,
                    format!(
                        "vault {} has no chain code (it was created before its scheme had child keys); it signs at its root key only",
                        vault.id
                    ),
                ))
            }
            Some(path) => {
                let indexes = crate::crypto::parse_derivation_path(path)?;
                if indexes.is_empty() {
                    None
                } else {
                    Some(format!(
                        "m/{}",
                        indexes.iter().map(u32::to_string).collect::<Vec<_>>().join("/")
                    ))
                }
            }
        };
        let details = OperationDetails::Sign {
            threshold: vault.threshold,
            payload,
            derivation_path,
            taproot,
            key_generation: vault.key_generation,
            presignature: None,
        };
        let op = Operation::new(
            &vault,
            details,
            &p.client_id,
            self.clock.now(),
            &self.settings.expiry,
        );
        self.create_operation(p, "requestSignature", &hash, key, None, op)
            .await
    }

    /// Signature result; broadcasts a completed eth_tx when an RPC is configured.
    pub async fn submit_signature(
        &self,
        p: &Principal,
        op_id: &str,
        device_id: &str,
        signature: &str,
        recovery_id: Option<i64>,
        device_signature: Option<&str>,
    ) -> Result<Operation> {
        let recovery = recovery_id.map(|r| r.to_string()).unwrap_or_default();
        let what = Signed::new(
            StatementKind::Signature,
            vec![signature, &recovery],
            device_signature,
        );
        let op = self
            .act(p, op_id, device_id, what, |op, vault, d, now| {
                op.submit_signature(vault, d, signature, recovery_id, now)
            })
            .await?;
        self.broadcast(op).await
    }

    async fn broadcast(&self, op: Operation) -> Result<Operation> {
        let Some(chain_id) = op.eth_chain_id() else {
            return Ok(op);
        };
        let Some(raw) = op.result.as_ref().and_then(|r| r.raw_transaction.clone()) else {
            return Ok(op);
        };
        if op.state != OperationState::Completed || !self.broadcaster.has(chain_id) {
            return Ok(op);
        }
        let sent = self.broadcaster.send(chain_id, &raw).await;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let (mut op, version) = self
            .store
            .operation(&mut tx, Some(&op.org_id), op.id.as_str(), true)
            .await?
            .ok_or_else(|| Error::internal("broadcast", "operation vanished"))?;
        let event = match (&sent, op.result.as_mut()) {
            (Ok(hash), Some(r)) => {
                r.tx_hash = Some(hash.clone());
                AuditEvent {
                    event: "broadcast".to_owned(),
                    actor: None,
                    detail: serde_json::json!({"chainId": chain_id, "txHash": hash}),
                }
            }
            (Err(e), Some(r)) => {
                r.broadcast_error = Some(e.clone());
                AuditEvent {
                    event: "broadcast_failed".to_owned(),
                    actor: None,
                    detail: serde_json::json!({"chainId": chain_id, "error": e}),
                }
            }
            (_, None) => return Err(Error::internal("broadcast", "no result")),
        };
        op.updated_at = now;
        let out = Outcome {
            events: vec![event],
            ..Outcome::default()
        };
        self.persist(&mut tx, &op, version, None, &out, now).await?;
        tx.commit().await?;
        Ok(op)
    }
}
