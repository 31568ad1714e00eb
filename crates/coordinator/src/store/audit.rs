//! The append-only audit log, and idempotency keys of mutations.

use sqlx::{AnyConnection, Row};

use super::Store;

/// Audit events one `INSERT` appends (well under the databases' limits on bound values).
const AUDIT_ROWS_PER_INSERT: usize = 64;
use crate::domain::*;
use crate::error::Result;

impl Store {
    /// Appends audit events for an entity, in order (one statement for all of them).
    pub async fn audit(
        &self,
        c: &mut AnyConnection,
        org: &OrgId,
        entity_kind: &str,
        entity_id: &str,
        at: Millis,
        events: &[AuditEvent],
    ) -> Result<()> {
        // Seven values per row; a transition has a handful of events.
        for chunk in events.chunks(AUDIT_ROWS_PER_INSERT) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|k| {
                    let n = k * 7;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                        n + 1,
                        n + 2,
                        n + 3,
                        n + 4,
                        n + 5,
                        n + 6,
                        n + 7
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO audit_log (org_id, entity_kind, entity_id, at, actor, event, detail) VALUES {}",
                rows.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for e in chunk {
                q = q
                    .bind(org.as_str())
                    .bind(entity_kind)
                    .bind(entity_id)
                    .bind(at)
                    .bind(e.actor.clone())
                    .bind(&e.event)
                    .bind(e.detail.to_string());
            }
            q.execute(&mut *c).await?;
        }
        Ok(())
    }

    /// Audit entries of an organisation (optionally of one entity), in order.
    pub async fn audit_log(&self, org: &OrgId, entity: Option<&str>) -> Result<Vec<AuditEntry>> {
        let sql = format!(
            "SELECT seq, entity_kind, entity_id, at, actor, event, detail FROM audit_log WHERE org_id = $1{} ORDER BY seq",
            if entity.is_some() { " AND entity_id = $2" } else { "" }
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(org.as_str());
        if let Some(e) = entity {
            q = q.bind(e);
        }
        let rows = q.fetch_all(&self.reads).await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    seq: r.try_get("seq")?,
                    entity_kind: r.try_get("entity_kind")?,
                    entity_id: r.try_get("entity_id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    event: r.try_get("event")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// A stored idempotency record: (mutation, request hash, result id).
    pub async fn idempotency(
        &self,
        client: &ClientId,
        key: &str,
    ) -> Result<Option<(String, String, String)>> {
        let row = sqlx::query("SELECT mutation, request_hash, result_id FROM idempotency_keys WHERE client_id = $1 AND idem_key = $2")
            .bind(client.as_str())
            .bind(key)
            .fetch_optional(&self.reads)
            .await?;
        row.map(|r| {
            Ok((
                r.try_get("mutation")?,
                r.try_get("request_hash")?,
                r.try_get("result_id")?,
            ))
        })
        .transpose()
    }

    /// Records an idempotency key of an API client; fails with a unique violation if
    /// the client already used it.
    // One column per argument; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_idempotency(
        &self,
        c: &mut AnyConnection,
        client: &ClientId,
        org: &OrgId,
        key: &str,
        mutation: &str,
        request_hash: &str,
        result_id: &str,
        now: Millis,
    ) -> std::result::Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO idempotency_keys (client_id, org_id, idem_key, mutation, request_hash, result_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(client.as_str())
        .bind(org.as_str())
        .bind(key)
        .bind(mutation)
        .bind(request_hash)
        .bind(result_id)
        .bind(now)
        .execute(c)
        .await?;
        Ok(())
    }
}

/// An audit log row.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Global order.
    pub seq: i64,
    /// `operation`, `vault`, `device`, `organisation`.
    pub entity_kind: String,
    /// Entity id.
    pub entity_id: String,
    /// When.
    pub at: Millis,
    /// Acting device/client.
    pub actor: Option<String>,
    /// Event name.
    pub event: String,
    /// JSON details.
    pub detail: String,
}
