//! What every operation goes through in the service: creation (with what its kind needs
//! of the vault, checked under the vault's lock), each device action as one locked
//! transaction around a pure domain transition, persistence of the transition's outcome
//! (audit, vault change) and notifications after commit. Expiry is in [`super::expiry`].

use sqlx::AnyConnection;

use vsigner_records::{Statement, StatementKind};

use super::Service;
use crate::domain::*;
use crate::error::{Error, ErrorCode, Result};
use crate::metrics;

impl Service {
    pub(super) async fn create_operation(
        &self,
        p: &Principal,
        mutation: &str,
        hash: &str,
        key: Option<&str>,
        new_vault: Option<&Vault>,
        op: Operation,
    ) -> Result<Operation> {
        let now = op.created_at;
        let timer = metrics::TransactionTimer::start("create");
        let mut tx = self.store.begin().await?;
        // What the kind requires of the vault at this moment, checked under its lock.
        match &op.details {
            OperationDetails::Reshare { .. } => self.reshare_may_open(&mut tx, p, &op, now).await?,
            OperationDetails::Presign { .. } => self.presign_may_open(&mut tx, p, &op, now).await?,
            OperationDetails::Keygen { .. } | OperationDetails::Sign { .. } => {}
        }
        if let Some(v) = new_vault {
            self.store.insert_vault(&mut tx, v).await?;
            let ev = AuditEvent {
                event: "created".to_owned(),
                actor: Some(p.client_id.to_string()),
                detail: serde_json::json!({"name": v.name, "curve": v.curve.as_str(), "threshold": v.threshold,
                    "signers": v.signers.iter().map(|s| s.device_id.as_str()).collect::<Vec<_>>()}),
            };
            self.store
                .audit(&mut tx, &p.org_id, "vault", v.id.as_str(), now, &[ev])
                .await?;
        }
        self.store.insert_operation(&mut tx, &op).await?;
        if !self
            .idempotent_record(&mut tx, p, key, mutation, hash, op.id.as_str())
            .await?
        {
            tx.rollback().await?;
            let id = self.idempotent_lost_race(p, key, mutation, hash).await?;
            return self.operation(p, &id).await;
        }
        let ev = AuditEvent {
            event: "created".to_owned(),
            actor: Some(p.client_id.to_string()),
            detail: serde_json::json!({"kind": op.kind().as_str(), "vaultId": op.vault_id, "expiresAt": op.expires_at}),
        };
        self.store
            .audit(&mut tx, &p.org_id, "operation", op.id.as_str(), now, &[ev])
            .await?;
        tx.commit().await?;
        timer.committed();
        metrics::operation_created(op.kind());
        self.announce(&op);
        if let Some(n) = &self.notifier {
            let voters: Vec<DeviceId> = op.voters.iter().map(|v| v.device_id.clone()).collect();
            n.notify(&voters, &op.id, OperationState::AwaitingApproval);
        }
        Ok(op)
    }

    /// Applies `outcome` of a transition to storage inside `c`'s transaction. Returns the
    /// other operations of the vault it failed (a completed reshare makes them stale), for
    /// [`Self::committed`] once the transaction commits.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn persist(
        &self,
        c: &mut AnyConnection,
        op: &Operation,
        version: i64,
        vault: Option<(&mut Vault, i64)>,
        out: &Outcome,
        now: Millis,
    ) -> Result<Vec<Operation>> {
        let mut stale = Vec::new();
        self.store
            .update_operation(c, op, version, out.new_vote.as_ref())
            .await?;
        self.store
            .audit(c, &op.org_id, "operation", op.id.as_str(), now, &out.events)
            .await?;
        if let (Some(update), Some((vault, vversion))) = (&out.vault_update, vault) {
            let event = match update {
                VaultUpdate::Activate {
                    public_key,
                    chain_code,
                    key_set_hash,
                } => {
                    vault.public_key = Some(public_key.clone());
                    vault.chain_code = *chain_code;
                    vault.key_set_hash = Some(*key_set_hash);
                    vault.status = VaultStatus::Active;
                    AuditEvent {
                        event: "activated".to_owned(),
                        actor: None,
                        detail: serde_json::json!({"operationId": op.id, "publicKey": hex::encode(public_key), "keySetHash": hex::encode(key_set_hash)}),
                    }
                }
                VaultUpdate::MarkFailed => {
                    vault.status = VaultStatus::Failed;
                    AuditEvent {
                        event: "failed".to_owned(),
                        actor: None,
                        detail: serde_json::json!({"operationId": op.id, "state": op.state.as_str()}),
                    }
                }
                VaultUpdate::Reshared {
                    signers,
                    threshold,
                    key_generation,
                    key_set_hash,
                } => {
                    vault.signers = signers.clone();
                    vault.threshold = *threshold;
                    vault.key_generation = *key_generation;
                    vault.key_set_hash = Some(*key_set_hash);
                    AuditEvent {
                        event: "reshared".to_owned(),
                        actor: None,
                        detail: serde_json::json!({"operationId": op.id, "threshold": threshold, "keyGeneration": key_generation, "keySetHash": hex::encode(key_set_hash),
                            "signers": signers.iter().map(|s| s.device_id.as_str()).collect::<Vec<_>>()}),
                    }
                }
            };
            self.store.update_vault(c, vault, vversion).await?;
            self.store
                .audit(c, &op.org_id, "vault", vault.id.as_str(), now, &[event])
                .await?;
            if matches!(update, VaultUpdate::Reshared { .. }) {
                stale = self.fail_stale_operations(c, vault, &op.id, now).await?;
            }
        }
        Ok(stale)
    }

    /// What a committed transition of `op` from `before` tells the metrics: its state change,
    /// the vote it took, the operations it made stale.
    pub(super) fn committed(
        &self,
        op: &Operation,
        before: OperationState,
        out: &Outcome,
        stale: &[Operation],
        now: Millis,
    ) {
        metrics::operation_changed(op, before, now);
        if let Some(v) = &out.new_vote {
            metrics::vote(v.choice);
        }
        // Any commit on an operation wakes its waiters (they read it again).
        self.waiters.changed(&op.id);
        self.announce(op);
        for s in stale {
            metrics::operation_ended(s, now);
            self.waiters.changed(&s.id);
            self.announce(s);
        }
    }

    /// Tells the console's live views that `op` changed (nobody listening is fine).
    pub(super) fn announce(&self, op: &Operation) {
        let _ = self.events.send(super::OperationEvent {
            org_id: op.org_id.clone(),
            operation_id: op.id.clone(),
            state: op.state,
        });
    }

    /// Every committed change of an operation from now on.
    pub fn operation_events(&self) -> tokio::sync::broadcast::Receiver<super::OperationEvent> {
        self.events.subscribe()
    }

    pub(super) async fn notify_after(&self, op: &Operation, before: OperationState) {
        if op.state == OperationState::Ready && before != OperationState::Ready {
            if let Some(n) = &self.notifier {
                let members = op.committee_devices();
                n.notify(&members, &op.id, OperationState::Ready);
            }
        }
    }

    /// Runs a device's action on an operation in one locked transaction. The action must
    /// carry the device's signature over `what` (its kind and content as received): a
    /// client may act only as the devices whose keys sign for it, and the signed statement
    /// goes to the audit log with the transition.
    #[tracing::instrument(name = "act", skip_all, fields(operation = op_id, device = device_id))]
    pub(super) async fn act<F>(
        &self,
        p: &Principal,
        op_id: &str,
        device_id: &str,
        what: Signed<'_>,
        f: F,
    ) -> Result<Operation>
    where
        F: FnOnce(&mut Operation, &Vault, &DeviceId, Millis) -> Result<Outcome>,
    {
        let now = self.clock.now();
        let timer = metrics::TransactionTimer::start("act");
        let mut tx = self.store.begin().await?;
        let device = self.acting_device(&mut tx, p, device_id).await?;
        let statement = what.check(p, op_id, &device)?;
        // Lock order everywhere: vault row, then operation rows.
        let (vault_id, _) = self
            .store
            .operation_vault_id(&mut tx, Some(&p.org_id), op_id)
            .await?
            .ok_or_else(|| Error::not_found("operation", op_id))?;
        let (mut vault, vversion) = self
            .store
            .vault(&mut tx, &p.org_id, &vault_id, true)
            .await?
            .ok_or_else(|| Error::internal("act", "operation without vault"))?;
        let (mut op, version) = self
            .store
            .operation(&mut tx, Some(&p.org_id), op_id, true)
            .await?
            .ok_or_else(|| Error::not_found("operation", op_id))?;
        let before = op.state;
        if let Some(out) = op.expire_if_due(now) {
            let stale = self
                .persist(&mut tx, &op, version, Some((&mut vault, vversion)), &out, now)
                .await?;
            tx.commit().await?;
            timer.committed();
            self.committed(&op, before, &out, &stale, now);
            return Err(Error::new(
                ErrorCode::Expired,
                format!("operation {op_id} has expired"),
            ));
        }
        let mut out = match f(&mut op, &vault, &device.id, now) {
            Ok(out) => out,
            Err(e) => {
                tx.rollback().await?;
                return Err(e);
            }
        };
        out.events.insert(0, statement);
        // A signature that just became Ready takes a presignature of its committee, if one
        // is stocked, in the same transaction (so no presignature serves two signatures).
        if op.state == OperationState::Ready && before != OperationState::Ready && op.can_use_presignature() {
            self.assign_presignature(&mut tx, &mut op, now).await?;
        }
        let stale = self
            .persist(&mut tx, &op, version, Some((&mut vault, vversion)), &out, now)
            .await?;
        tx.commit().await?;
        timer.committed();
        self.committed(&op, before, &out, &stale, now);
        self.notify_after(&op, before).await;
        match out.refusal {
            Some(e) => Err(e),
            None => Ok(op),
        }
    }

    /// A device's vote, signed by it.
    pub async fn vote(
        &self,
        p: &Principal,
        op_id: &str,
        device_id: &str,
        vote: &str,
        device_signature: Option<&str>,
    ) -> Result<Operation> {
        let choice = VoteChoice::parse(vote)?;
        let what = Signed::new(StatementKind::Vote, vec![vote], device_signature);
        self.act(p, op_id, device_id, what, |op, _, d, now| op.vote(d, choice, now))
            .await
    }

    /// A committee member reports it started the protocol.
    pub async fn start_operation(
        &self,
        p: &Principal,
        op_id: &str,
        device_id: &str,
        device_signature: Option<&str>,
    ) -> Result<Operation> {
        let what = Signed::new(StatementKind::Start, vec![], device_signature);
        self.act(p, op_id, device_id, what, |op, _, d, now| op.start(d, now))
            .await
    }

    /// A committee member reports a protocol failure.
    pub async fn report_failure(
        &self,
        p: &Principal,
        op_id: &str,
        device_id: &str,
        reason: &str,
        culprits: Vec<String>,
        device_signature: Option<&str>,
    ) -> Result<Operation> {
        let mut content = vec![reason];
        content.extend(culprits.iter().map(String::as_str));
        let what = Signed::new(StatementKind::Failure, content, device_signature);
        let culprits: Vec<DeviceId> = culprits.iter().cloned().map(DeviceId::from_string).collect();
        self.act(p, op_id, device_id, what, |op, _, d, now| {
            op.report_failure(d, reason, culprits, now)
        })
        .await
    }
}

/// A device's signed statement about its action, as received ([`Statement`]): checked
/// against the acting device's key before the action runs, then kept in the audit log.
pub struct Signed<'a> {
    kind: StatementKind,
    content: Vec<&'a str>,
    signature: Option<&'a str>,
}

impl<'a> Signed<'a> {
    /// The statement of an action of `kind` with `content` (see [`StatementKind`]) and the
    /// device's signature over it (hex), if it sent one.
    pub fn new(kind: StatementKind, content: Vec<&'a str>, signature: Option<&'a str>) -> Self {
        Signed {
            kind,
            content,
            signature,
        }
    }

    /// The audit event of the statement, if `device`'s key signed it for operation `op_id`.
    pub(super) fn check(&self, p: &Principal, op_id: &str, device: &Device) -> Result<AuditEvent> {
        let refused = |why: &str| {
            Error::new(
                ErrorCode::DeviceSignatureInvalid,
                format!(
                    "{} of device {} on operation {op_id}: {why}",
                    self.kind.as_str(),
                    device.id
                ),
            )
        };
        let signature = self
            .signature
            .filter(|s| !s.is_empty())
            .ok_or_else(|| refused("not signed by the device (deviceSignature is missing)"))?;
        let statement = Statement {
            organisation_id: p.org_id.as_str(),
            operation_id: op_id,
            device_id: device.id.as_str(),
            kind: self.kind,
            content: self.content.clone(),
        };
        statement
            .verify(&device.identity_signing_key, signature)
            .map_err(|_| refused("the signature is not the device's over this statement"))?;
        Ok(AuditEvent {
            event: "device_statement".to_owned(),
            actor: Some(device.id.to_string()),
            detail: serde_json::json!({"kind": self.kind.as_str(), "content": self.content, "signature": signature}),
        })
    }
}
