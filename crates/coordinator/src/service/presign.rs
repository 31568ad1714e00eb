//! ECDSA presignatures: stocking them for a committee (Ready at once), their results, and
//! handing one to a signature that became Ready, in the same transaction.

use sqlx::AnyConnection;

use vsigner_records::StatementKind;

use super::lifecycle::Signed;
use super::{forbidden, Service};
use crate::domain::*;
use crate::error::{Error, ErrorCode, Result};

/// Most presign operations open (Ready or InProgress) per vault.
pub const MAX_OPEN_PRESIGNATURES: usize = 100;

impl Service {
    pub(super) async fn assign_presignature(
        &self,
        c: &mut AnyConnection,
        sign: &mut Operation,
        now: Millis,
    ) -> Result<()> {
        // The candidates are read in this transaction, which holds the vault's row (no other
        // signature of the vault takes one meanwhile, whichever coordinator process runs it);
        // on PostgreSQL they are locked too, on SQLite the one writer is alone. The first that
        // serves is taken as read, and its version is checked again as it is written.
        let candidates = self.store.presignatures(c, &sign.vault_id).await?;
        for (candidate, _) in candidates.iter().filter(|(p, _)| !p.is_free_presignature()) {
            // Marked free by a coordinator of an older version, which wrote no mark (a rolling
            // upgrade): the body says it is not, and it would otherwise hold a place in the
            // scan for ever.
            self.store.unmark_free_presignature(c, &candidate.id).await?;
        }
        if let Some((mut presign, version)) =
            candidates.into_iter().find(|(p, _)| p.presignature_serves(sign))
        {
            let out = presign.consume_presignature(sign, now);
            self.persist(c, &presign, version, None, &out, now).await?;
        }
        Ok(())
    }

    /// Requests `count` presignatures of a vault by a committee (Ready at once).
    pub async fn request_presignatures(
        &self,
        p: &Principal,
        vault_id: &str,
        committee: &[String],
        count: i32,
    ) -> Result<Vec<Operation>> {
        if !(1..=100).contains(&count) {
            return Err(Error::invalid_input("count must be between 1 and 100"));
        }
        let vault = self.vault(p, vault_id).await?;
        if vault.status != VaultStatus::Active {
            return Err(Error::invalid_state(format!(
                "vault {} is {}, not Active",
                vault.id,
                vault.status.as_str()
            )));
        }
        let committee: Vec<DeviceId> = committee.iter().map(DeviceId::from_string).collect();
        if p.role != Role::Operator {
            // A signer client may stock presignatures for committees with one of its devices.
            let mut own = false;
            for d in &committee {
                let mut tx = self.store.begin().await?;
                let dev = self.store.device(&mut tx, &p.org_id, d.as_str()).await?;
                tx.rollback().await?;
                own |= dev.is_some_and(|dev| dev.registered_by == p.client_id);
            }
            if !own {
                return Err(forbidden(
                    "a signer API client can request presignatures only for a committee with one of its devices",
                ));
            }
        }
        let mut out = Vec::new();
        for _ in 0..count {
            let op = Operation::new_presign(
                &vault,
                &committee,
                &p.client_id,
                self.clock.now(),
                &self.settings.expiry,
            )?;
            let op = self
                .create_operation(p, "requestPresignatures", "", None, None, op)
                .await?;
            self.notify_after(&op, OperationState::AwaitingApproval).await;
            out.push(op);
        }
        Ok(out)
    }

    /// A device's word that it no longer holds any of its unconsumed presignatures (a
    /// signer keeps them in process memory only, so a restart loses them): every Completed,
    /// unconsumed presignature with it in the committee is marked discarded and serves no
    /// signature. Returns how many were discarded.
    pub async fn discard_presignatures(
        &self,
        p: &Principal,
        device_id: &str,
        reason: &str,
        device_signature: Option<&str>,
    ) -> Result<usize> {
        let now = self.clock.now();
        let candidates: Vec<String> = self
            .store
            .operations(
                &p.org_id,
                None,
                &[OperationState::Completed],
                Some(OperationKind::Presign),
                i64::MAX,
            )
            .await?
            .into_iter()
            .filter(|op| op.committee.iter().any(|m| m.device_id.as_str() == device_id))
            .map(|op| op.id.to_string())
            .collect();
        let mut tx = self.store.begin().await?;
        let device = self.acting_device(&mut tx, p, device_id).await?;
        // A statement about the device itself: its operation id is the device id.
        let statement = Signed::new(
            StatementKind::DiscardPresignatures,
            vec![reason],
            device_signature,
        )
        .check(p, device_id, &device)?;
        self.store
            .audit(&mut tx, &p.org_id, "device", device_id, now, &[statement])
            .await?;
        let mut discarded = 0;
        for id in candidates {
            let Some((mut op, version)) = self.store.operation(&mut tx, Some(&p.org_id), &id, true).await?
            else {
                continue;
            };
            if let Some(out) = op.discard_presignature(&device.id, now) {
                self.persist(&mut tx, &op, version, None, &out, now).await?;
                discarded += 1;
            }
        }
        tx.commit().await?;
        Ok(discarded)
    }

    /// A presign committee member's result.
    pub async fn submit_presign_result(
        &self,
        p: &Principal,
        op_id: &str,
        device_id: &str,
        fingerprint: &str,
        device_signature: Option<&str>,
    ) -> Result<Operation> {
        let what = Signed::new(StatementKind::PresignResult, vec![fingerprint], device_signature);
        self.act(p, op_id, device_id, what, |op, vault, d, now| {
            op.submit_presign_result(vault, d, fingerprint, now)
        })
        .await
    }
}

impl Service {
    /// A presign operation may open only while the vault is Active at its key generation
    /// (a reshare completing meanwhile would leave it at a generation that no longer
    /// exists), and while fewer than [`MAX_OPEN_PRESIGNATURES`] are open (each run costs
    /// every member seconds of CPU). Checked under the vault row lock.
    pub(super) async fn presign_may_open(
        &self,
        c: &mut AnyConnection,
        p: &Principal,
        op: &Operation,
        now: Millis,
    ) -> Result<()> {
        let Some(key_generation) = op.key_generation() else {
            return Ok(());
        };
        let (vault, _) = self
            .store
            .vault(c, &p.org_id, op.vault_id.as_str(), true)
            .await?
            .ok_or_else(|| Error::not_found("vault", op.vault_id.as_str()))?;
        if vault.status != VaultStatus::Active || vault.key_generation != key_generation {
            return Err(Error::invalid_state(format!(
                "vault {} changed meanwhile (key generation {}); request the presignatures again",
                vault.id, vault.key_generation
            )));
        }
        let open = self
            .store
            .open_operation_ids(c, &vault.id, Some(OperationKind::Presign), Some(now))
            .await?;
        if open.len() >= MAX_OPEN_PRESIGNATURES {
            return Err(Error::new(
                ErrorCode::TooManyRequests,
                format!(
                    "vault {} has {} presignatures being made already (at most {MAX_OPEN_PRESIGNATURES})",
                    vault.id,
                    open.len()
                ),
            ));
        }
        Ok(())
    }
}
