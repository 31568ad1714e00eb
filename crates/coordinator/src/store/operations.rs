//! Operation rows (versioned, locked for update) and their votes.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Store, PRESIGNATURE_SCAN};

/// Operations whose votes one query reads (well under SQLite's and PostgreSQL's limits on
/// bound parameters).
const VOTES_PER_READ: usize = 500;
use crate::domain::*;
use crate::error::{Error, Result};

impl Store {
    /// Inserts an operation (version 0).
    pub async fn insert_operation(&self, c: &mut AnyConnection, op: &Operation) -> Result<()> {
        let body = serde_json::to_string(op).map_err(|e| Error::internal("operation json", e))?;
        sqlx::query(
            "INSERT INTO operations (id, org_id, vault_id, kind, state, expires_at, version, body, created_at, updated_at, presignature_free) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9, $10)",
        )
        .bind(op.id.as_str())
        .bind(op.org_id.as_str())
        .bind(op.vault_id.as_str())
        .bind(op.kind().as_str())
        .bind(op.state.as_str())
        .bind(op.expires_at)
        .bind(body)
        .bind(op.created_at)
        .bind(op.updated_at)
        .bind(Self::presignature_free(op))
        .execute(c)
        .await?;
        Ok(())
    }

    /// The `presignature_free` column of `op`: 1 while a signature can take it, else NULL
    /// (the free presignatures' index holds only these).
    fn presignature_free(op: &Operation) -> Option<i64> {
        op.is_free_presignature().then_some(1)
    }

    pub(super) async fn votes(&self, c: &mut AnyConnection, op: &OperationId) -> Result<Vec<Vote>> {
        let rows = sqlx::query(
            "SELECT device_id, choice, weight, seq, at FROM votes WHERE operation_id = $1 ORDER BY seq",
        )
        .bind(op.as_str())
        .fetch_all(c)
        .await?;
        rows.iter().map(Self::vote_from_row).collect()
    }

    fn vote_from_row(r: &AnyRow) -> Result<Vote> {
        Ok(Vote {
            device_id: DeviceId::from_string(r.try_get::<String, _>("device_id")?),
            choice: VoteChoice::parse(&r.try_get::<String, _>("choice")?)?,
            weight: u32::try_from(r.try_get::<i64, _>("weight")?).map_err(|e| Error::internal("vote", e))?,
            seq: u32::try_from(r.try_get::<i64, _>("seq")?).map_err(|e| Error::internal("vote", e))?,
            at: r.try_get("at")?,
        })
    }

    pub(super) fn operation_from_row(r: &AnyRow) -> Result<(Operation, i64)> {
        let body: String = r.try_get("body")?;
        let op: Operation = serde_json::from_str(&body).map_err(|e| Error::internal("operation json", e))?;
        Ok((op, r.try_get("version")?))
    }

    /// An operation with its votes and version; `lock` takes a row lock (PostgreSQL).
    pub async fn operation(
        &self,
        c: &mut AnyConnection,
        org: Option<&OrgId>,
        id: &str,
        lock: bool,
    ) -> Result<Option<(Operation, i64)>> {
        let sql = format!(
            "SELECT body, version FROM operations WHERE id = $1{}{}",
            if org.is_some() { " AND org_id = $2" } else { "" },
            if lock { self.for_update() } else { "" }
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id);
        if let Some(org) = org {
            q = q.bind(org.as_str());
        }
        let Some(row) = q.fetch_optional(&mut *c).await? else {
            return Ok(None);
        };
        let (mut op, version) = Self::operation_from_row(&row)?;
        op.votes = self.votes(c, &op.id).await?;
        Ok(Some((op, version)))
    }

    /// The vault and organisation of an operation (no lock): callers lock the vault row first, then the
    /// operation row, so that every transaction takes locks in the order vault → operation.
    pub async fn operation_vault_id(
        &self,
        c: &mut AnyConnection,
        org: Option<&OrgId>,
        id: &str,
    ) -> Result<Option<(String, OrgId)>> {
        let sql = format!(
            "SELECT vault_id, org_id FROM operations WHERE id = $1{}",
            if org.is_some() { " AND org_id = $2" } else { "" }
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id);
        if let Some(org) = org {
            q = q.bind(org.as_str());
        }
        let row = q.fetch_optional(c).await?;
        row.map(|r| {
            Ok((
                r.try_get::<String, _>("vault_id")?,
                OrgId::from_string(r.try_get::<String, _>("org_id")?),
            ))
        })
        .transpose()
    }

    /// An operation outside a transaction.
    pub async fn operation_by_id(&self, org: &OrgId, id: &str) -> Result<Option<Operation>> {
        let mut c = self.snapshot().await?;
        Ok(self
            .operation(&mut c, Some(org), id, false)
            .await?
            .map(|(o, _)| o))
    }

    /// Operations of an organisation, newest first, optionally filtered.
    pub async fn operations(
        &self,
        org: &OrgId,
        vault: Option<&str>,
        states: &[OperationState],
        kind: Option<OperationKind>,
        limit: i64,
    ) -> Result<Vec<Operation>> {
        self.operations_page(org, vault, states, kind, limit, 0).await
    }

    /// [`Store::operations`] after skipping the `offset` newest.
    pub async fn operations_page(
        &self,
        org: &OrgId,
        vault: Option<&str>,
        states: &[OperationState],
        kind: Option<OperationKind>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Operation>> {
        let mut sql = "SELECT body, version FROM operations WHERE org_id = $1".to_owned();
        let mut n = 1;
        if vault.is_some() {
            n += 1;
            sql.push_str(&format!(" AND vault_id = ${n}"));
        }
        if kind.is_some() {
            n += 1;
            sql.push_str(&format!(" AND kind = ${n}"));
        }
        if !states.is_empty() {
            let list: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
            sql.push_str(&format!(" AND state IN ({})", list.join(", ")));
        }
        n += 1;
        sql.push_str(&format!(
            " ORDER BY created_at DESC, id LIMIT ${n} OFFSET ${}",
            n + 1
        ));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(org.as_str());
        if let Some(v) = vault {
            q = q.bind(v);
        }
        if let Some(k) = kind {
            q = q.bind(k.as_str());
        }
        let mut c = self.snapshot().await?;
        let rows = q.bind(limit).bind(offset).fetch_all(&mut *c).await?;
        self.with_votes(&mut c, &rows).await
    }

    /// The operations of `org` awaiting approval that `device` has not voted on (at most
    /// `limit`, newest first); whether it is a voter is the caller's check.
    pub async fn operations_not_voted_by(
        &self,
        org: &OrgId,
        device: &DeviceId,
        limit: i64,
    ) -> Result<Vec<Operation>> {
        let mut c = self.snapshot().await?;
        let rows = sqlx::query(
            "SELECT body, version FROM operations WHERE org_id = $1 AND state = 'AwaitingApproval' \
             AND NOT EXISTS (SELECT 1 FROM votes WHERE votes.operation_id = operations.id AND votes.device_id = $2) \
             ORDER BY created_at DESC, id LIMIT $3",
        )
        .bind(org.as_str())
        .bind(device.as_str())
        .bind(limit)
        .fetch_all(&mut *c)
        .await?;
        self.with_votes(&mut c, &rows).await
    }

    /// The operations of `rows` (`body`, `version`) with their votes.
    async fn with_votes(&self, c: &mut AnyConnection, rows: &[AnyRow]) -> Result<Vec<Operation>> {
        let mut out = rows
            .iter()
            .map(|r| Self::operation_from_row(r).map(|(op, _)| op))
            .collect::<Result<Vec<_>>>()?;
        self.votes_of_all(c, &mut out).await?;
        Ok(out)
    }

    /// Fills in the votes of `ops` with one query per [`VOTES_PER_READ`] operations (a
    /// listing of many operations is not one query per operation).
    async fn votes_of_all(&self, c: &mut AnyConnection, ops: &mut [Operation]) -> Result<()> {
        for chunk in ops.chunks_mut(VOTES_PER_READ) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT operation_id, device_id, choice, weight, seq, at FROM votes WHERE operation_id IN ({}) ORDER BY seq",
                placeholders.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for op in chunk.iter() {
                q = q.bind(op.id.as_str());
            }
            let rows = q.fetch_all(&mut *c).await?;
            let mut by_operation: std::collections::HashMap<String, Vec<Vote>> =
                std::collections::HashMap::new();
            for r in &rows {
                by_operation
                    .entry(r.try_get::<String, _>("operation_id")?)
                    .or_default()
                    .push(Self::vote_from_row(r)?);
            }
            for op in chunk.iter_mut() {
                op.votes = by_operation.remove(op.id.as_str()).unwrap_or_default();
            }
        }
        Ok(())
    }

    /// Ids of the open (AwaitingApproval, Ready, InProgress) operations of a vault,
    /// optionally of one kind and only those not yet past their expiry, oldest first.
    /// Read inside `c`'s transaction (after the vault row was locked).
    pub async fn open_operation_ids(
        &self,
        c: &mut AnyConnection,
        vault_id: &VaultId,
        kind: Option<OperationKind>,
        live_at: Option<Millis>,
    ) -> Result<Vec<String>> {
        let mut sql = "SELECT id FROM operations WHERE vault_id = $1 AND state IN ('AwaitingApproval', 'Ready', 'InProgress')".to_owned();
        let mut n = 1;
        if kind.is_some() {
            n += 1;
            sql.push_str(&format!(" AND kind = ${n}"));
        }
        if live_at.is_some() {
            n += 1;
            sql.push_str(&format!(" AND expires_at > ${n}"));
        }
        sql.push_str(" ORDER BY created_at, id");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(vault_id.as_str());
        if let Some(k) = kind {
            q = q.bind(k.as_str());
        }
        if let Some(t) = live_at {
            q = q.bind(t);
        }
        let rows = q.fetch_all(c).await?;
        rows.iter().map(|r| Ok(r.try_get::<String, _>("id")?)).collect()
    }

    /// The newest free presignatures of a vault (Completed presign operations neither
    /// consumed nor discarded: at most [`PRESIGNATURE_SCAN`], without their votes: a
    /// presignature has none) with their versions, read through their own index in one query
    /// of the caller's transaction, to take one. Missing an older one only means the full
    /// protocol. On PostgreSQL the rows are locked, and rows another transaction holds are
    /// skipped (a device discarding its presignatures: it locks them one by one, and waiting
    /// for them while holding others could deadlock); on SQLite nothing is locked: the one
    /// writer connection is alone, and every write checks the version it read.
    pub async fn presignatures(
        &self,
        c: &mut AnyConnection,
        vault_id: &VaultId,
    ) -> Result<Vec<(Operation, i64)>> {
        let lock = match self.backend {
            super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            super::Backend::Sqlite => "",
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT body, version FROM operations WHERE vault_id = $1 AND presignature_free = 1 ORDER BY created_at DESC, id DESC LIMIT {PRESIGNATURE_SCAN}{lock}"
        )))
        .bind(vault_id.as_str())
        .fetch_all(c)
        .await?;
        rows.iter().map(Self::operation_from_row).collect()
    }

    /// Ids of operations past their expiry and not final (optionally of one org).
    pub async fn due_for_expiry(&self, org: Option<&OrgId>, now: Millis) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT id FROM operations WHERE state IN ('AwaitingApproval', 'Ready', 'InProgress') AND expires_at <= $1{}",
            if org.is_some() { " AND org_id = $2" } else { "" }
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
        if let Some(org) = org {
            q = q.bind(org.as_str());
        }
        let rows = q.fetch_all(&self.reads).await?;
        rows.iter().map(|r| Ok(r.try_get::<String, _>("id")?)).collect()
    }

    /// Takes operation `id` out of the free presignatures' index (its body says it is not
    /// free: a coordinator of an older version wrote it).
    pub async fn unmark_free_presignature(&self, c: &mut AnyConnection, id: &OperationId) -> Result<()> {
        sqlx::query("UPDATE operations SET presignature_free = NULL WHERE id = $1")
            .bind(id.as_str())
            .execute(c)
            .await?;
        Ok(())
    }

    /// Writes an operation if its version is still `expected`; inserts `new_vote`.
    pub async fn update_operation(
        &self,
        c: &mut AnyConnection,
        op: &Operation,
        expected: i64,
        new_vote: Option<&Vote>,
    ) -> Result<()> {
        if let Some(v) = new_vote {
            sqlx::query("INSERT INTO votes (operation_id, device_id, choice, weight, seq, at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(op.id.as_str())
                .bind(v.device_id.as_str())
                .bind(v.choice.as_str())
                .bind(i64::from(v.weight))
                .bind(i64::from(v.seq))
                .bind(v.at)
                .execute(&mut *c)
                .await
                .map_err(|e| match &e {
                    sqlx::Error::Database(db) if db.is_unique_violation() => Error::new(
                        crate::error::ErrorCode::AlreadyVoted,
                        format!("device {} has already voted on operation {}", v.device_id, op.id),
                    ),
                    _ => Error::from(e),
                })?;
        }
        let body = serde_json::to_string(op).map_err(|e| Error::internal("operation json", e))?;
        let done = sqlx::query(
            "UPDATE operations SET body = $1, state = $2, expires_at = $3, updated_at = $4, presignature_free = $5, version = version + 1 \
             WHERE id = $6 AND version = $7",
        )
        .bind(body)
        .bind(op.state.as_str())
        .bind(op.expires_at)
        .bind(op.updated_at)
        .bind(Self::presignature_free(op))
        .bind(op.id.as_str())
        .bind(expected)
        .execute(&mut *c)
        .await?;
        if done.rows_affected() != 1 {
            return Err(Error::internal(
                "update operation",
                "concurrent update of the operation; retry",
            ));
        }
        Ok(())
    }
}
