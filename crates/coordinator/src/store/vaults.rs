//! Vault rows, versioned for optimistic concurrency.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::Store;
use crate::domain::*;
use crate::error::{Error, Result};

impl Store {
    /// Inserts a vault (version 0).
    pub async fn insert_vault(&self, c: &mut AnyConnection, v: &Vault) -> Result<()> {
        let body = serde_json::to_string(v).map_err(|e| Error::internal("vault json", e))?;
        sqlx::query("INSERT INTO vaults (id, org_id, status, version, body, created_at) VALUES ($1, $2, $3, 0, $4, $5)")
            .bind(v.id.as_str())
            .bind(v.org_id.as_str())
            .bind(v.status.as_str())
            .bind(body)
            .bind(v.created_at)
            .execute(c)
            .await?;
        Ok(())
    }

    pub(super) fn vault_from_row(r: &AnyRow) -> Result<(Vault, i64)> {
        let body: String = r.try_get("body")?;
        let v: Vault = serde_json::from_str(&body).map_err(|e| Error::internal("vault json", e))?;
        Ok((v, r.try_get("version")?))
    }

    /// A vault and its version; `lock` takes a row lock (PostgreSQL).
    pub async fn vault(
        &self,
        c: &mut AnyConnection,
        org: &OrgId,
        id: &str,
        lock: bool,
    ) -> Result<Option<(Vault, i64)>> {
        let sql = format!(
            "SELECT body, version FROM vaults WHERE id = $1 AND org_id = $2{}",
            if lock { self.for_update() } else { "" }
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(org.as_str())
            .fetch_optional(c)
            .await?;
        row.as_ref().map(Self::vault_from_row).transpose()
    }

    /// All vaults of an organisation.
    pub async fn vaults(&self, org: &OrgId) -> Result<Vec<Vault>> {
        let rows = sqlx::query("SELECT body, version FROM vaults WHERE org_id = $1 ORDER BY created_at, id")
            .bind(org.as_str())
            .fetch_all(&self.reads)
            .await?;
        rows.iter()
            .map(|r| Self::vault_from_row(r).map(|(v, _)| v))
            .collect()
    }

    /// A vault outside a transaction.
    pub async fn vault_by_id(&self, org: &OrgId, id: &str) -> Result<Option<Vault>> {
        let mut c = self.reads.acquire().await?;
        Ok(self.vault(&mut c, org, id, false).await?.map(|(v, _)| v))
    }

    /// Writes a vault if its version is still `expected`.
    pub async fn update_vault(&self, c: &mut AnyConnection, v: &Vault, expected: i64) -> Result<()> {
        let body = serde_json::to_string(v).map_err(|e| Error::internal("vault json", e))?;
        let done = sqlx::query(
            "UPDATE vaults SET body = $1, status = $2, version = version + 1 WHERE id = $3 AND version = $4",
        )
        .bind(body)
        .bind(v.status.as_str())
        .bind(v.id.as_str())
        .bind(expected)
        .execute(c)
        .await?;
        if done.rows_affected() != 1 {
            return Err(Error::internal(
                "update vault",
                "concurrent update of the vault; retry",
            ));
        }
        Ok(())
    }
}
