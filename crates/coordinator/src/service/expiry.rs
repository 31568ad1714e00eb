//! How operations end without their devices: expiry past the deadline (the sweeper and the
//! reads that find a due operation), and the open operations of a vault that a completed
//! reshare made stale.

use sqlx::AnyConnection;

use super::Service;
use crate::domain::*;
use crate::error::Result;
use crate::metrics;

impl Service {
    /// Expires one operation if it is due (locked).
    pub(super) async fn expire_one(&self, op_id: &str) -> Result<()> {
        let now = self.clock.now();
        let timer = metrics::TransactionTimer::start("expire");
        let mut tx = self.store.begin().await?;
        // Lock order: vault row, then operation row.
        let Some((vault_id, org)) = self.store.operation_vault_id(&mut tx, None, op_id).await? else {
            return Ok(());
        };
        let mut vault = self.store.vault(&mut tx, &org, &vault_id, true).await?;
        let Some((mut op, version)) = self.store.operation(&mut tx, None, op_id, true).await? else {
            return Ok(());
        };
        let before = op.state;
        let Some(out) = op.expire_if_due(now) else {
            return Ok(());
        };
        let vault_ref = vault.as_mut().map(|(v, ver)| (v, *ver));
        let stale = self.persist(&mut tx, &op, version, vault_ref, &out, now).await?;
        tx.commit().await?;
        timer.committed();
        self.committed(&op, before, &out, &stale, now);
        Ok(())
    }

    /// Expires every due operation (of one organisation, or all). Returns how many.
    pub async fn sweep_expired(&self, org: Option<&OrgId>) -> Result<usize> {
        let ids = self.store.due_for_expiry(org, self.clock.now()).await?;
        for id in &ids {
            self.expire_one(id).await?;
        }
        Ok(ids.len())
    }

    /// After a completed reshare (same transaction, vault row locked): fails every
    /// open operation of the vault created at an older key generation; returns them.
    pub(super) async fn fail_stale_operations(
        &self,
        c: &mut AnyConnection,
        vault: &Vault,
        completed: &OperationId,
        now: Millis,
    ) -> Result<Vec<Operation>> {
        let mut failed = Vec::new();
        let ids = self.store.open_operation_ids(c, &vault.id, None, None).await?;
        for id in ids.iter().filter(|id| id.as_str() != completed.as_str()) {
            let Some((mut stale, version)) = self.store.operation(c, Some(&vault.org_id), id, true).await?
            else {
                continue;
            };
            if let Some(out) = stale.fail_if_stale(vault.key_generation, completed, now) {
                self.store.update_operation(c, &stale, version, None).await?;
                self.store
                    .audit(c, &stale.org_id, "operation", stale.id.as_str(), now, &out.events)
                    .await?;
                failed.push(stale);
            }
        }
        Ok(failed)
    }
}
