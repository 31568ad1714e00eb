//! Reads: an operation (expired lazily), filtered lists, the lists a device polls (awaiting
//! its vote, ready for it to run), and the audit log.

use super::Service;
use crate::domain::*;
use crate::error::{Error, Result};
use crate::store::AuditEntry;

/// Operation list filter.
#[derive(Debug, Clone, Default)]
pub struct OperationFilter {
    /// Vault.
    pub vault_id: Option<String>,
    /// State.
    pub state: Option<String>,
    /// Kind.
    pub kind: Option<String>,
    /// Max rows (default 100, at most 1000).
    pub limit: Option<i64>,
    /// Rows to skip first, for paging (default 0).
    pub offset: Option<i64>,
}

impl Service {
    /// An operation (expired lazily on read).
    pub async fn operation(&self, p: &Principal, id: &str) -> Result<Operation> {
        let op = self
            .store
            .operation_by_id(&p.org_id, id)
            .await?
            .ok_or_else(|| Error::not_found("operation", id))?;
        if !op.state.is_final() && self.clock.now() >= op.expires_at {
            self.expire_one(id).await?;
            return self
                .store
                .operation_by_id(&p.org_id, id)
                .await?
                .ok_or_else(|| Error::not_found("operation", id));
        }
        Ok(op)
    }

    /// Operations matching `filter`, newest first.
    pub async fn operations(&self, p: &Principal, filter: OperationFilter) -> Result<Vec<Operation>> {
        self.sweep_expired(Some(&p.org_id)).await?;
        let states = match filter.state.as_deref() {
            Some(s) => vec![OperationState::parse(s)?],
            None => vec![],
        };
        let kind = filter.kind.as_deref().map(OperationKind::parse).transpose()?;
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        let offset = filter.offset.unwrap_or(0);
        if offset < 0 {
            return Err(Error::invalid_input("offset must not be negative"));
        }
        self.store
            .operations_page(
                &p.org_id,
                filter.vault_id.as_deref(),
                &states,
                kind,
                limit,
                offset,
            )
            .await
    }

    /// Operations the device may still vote on.
    pub async fn operations_awaiting_vote(&self, p: &Principal, device_id: &str) -> Result<Vec<Operation>> {
        let device = self.device(p, device_id).await?;
        self.saw(p, &device);
        let device = device.id;
        self.sweep_expired(Some(&p.org_id)).await?;
        let ops = self
            .store
            .operations_not_voted_by(&p.org_id, &device, 10_000)
            .await?;
        Ok(ops
            .into_iter()
            .filter(|op| op.voter(&device).is_some() && !op.votes.iter().any(|v| v.device_id == device))
            .rev()
            .collect())
    }

    /// Operations whose committee includes the device and that must run (Ready or InProgress).
    pub async fn operations_ready(&self, p: &Principal, device_id: &str) -> Result<Vec<Operation>> {
        let device = self.device(p, device_id).await?;
        self.saw(p, &device);
        let device = device.id;
        self.sweep_expired(Some(&p.org_id)).await?;
        let ops = self
            .store
            .operations(
                &p.org_id,
                None,
                &[OperationState::Ready, OperationState::InProgress],
                None,
                10_000,
            )
            .await?;
        Ok(ops
            .into_iter()
            .filter(|op| op.committee_member(&device).is_some())
            .rev()
            .collect())
    }

    /// Audit log entries.
    pub async fn audit_log(&self, p: &Principal, entity: Option<&str>) -> Result<Vec<AuditEntry>> {
        self.store.audit_log(&p.org_id, entity).await
    }
}
