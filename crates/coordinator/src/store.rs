//! Persistence with `sqlx` (Any driver): SQLite (one coordinator process) or
//! PostgreSQL (several coordinator processes).
//!
//! Concurrency: every change to an operation runs in one transaction that first locks
//! the operation row (`SELECT … FOR UPDATE` on PostgreSQL; SQLite has one writer and
//! the pool has one connection), then re-reads its votes, applies the pure domain
//! transition and writes back with `UPDATE … WHERE version = $expected` (0 rows → the
//! transaction is abandoned, nothing is lost). Votes have a primary key
//! `(operation_id, device_id)`, so a device can never vote twice, even across processes.
//!
//! Dynamic SQL (`AssertSqlSafe`) only ever splices constant fragments (`FOR UPDATE`,
//! placeholders, state names from the domain enum); all values are bound.

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::AnyConnection;
use sqlx::{AnyPool, Row};

use crate::domain::*;
use crate::error::{Error, Result};

/// Database backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file (or memory).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Most presignatures looked at when a signature becomes Ready.
pub const PRESIGNATURE_SCAN: usize = 64;

/// The store: a pool and its backend.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// A transaction.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

impl Store {
    /// Connects to `url` (`sqlite://path?mode=rwc`, `sqlite::memory:`, `postgres://…`)
    /// and runs the migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            anyhow::bail!("--database must be a sqlite:… or postgres://… URL");
        };
        // SQLite: one connection. It has a single writer anyway, and one connection
        // makes every transaction serialisable (and `sqlite::memory:` one database).
        let max = if backend == Backend::Sqlite { 1 } else { 10 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers do not block the writer; NORMAL sync is durable
                        // across application crashes (a power loss may lose the last
                        // commits, never corrupt the file).
                        sqlx::raw_sql("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000")
                            .execute(conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Self { pool, backend })
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(self.pool.begin().await?)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    // ---------------------------------------------------------------- orgs, clients, tokens

    /// Inserts an organisation.
    pub async fn insert_org(&self, c: &mut AnyConnection, org: &Organisation, now: Millis) -> Result<()> {
        sqlx::query("INSERT INTO organisations (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(org.id.as_str())
            .bind(&org.name)
            .bind(now)
            .execute(c)
            .await?;
        Ok(())
    }

    /// Inserts an API client with its secret hash.
    pub async fn insert_client(
        &self,
        c: &mut AnyConnection,
        client: &ApiClient,
        secret_hash: &str,
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_clients (id, org_id, role, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(client.id.as_str())
        .bind(client.org_id.as_str())
        .bind(client.role.as_str())
        .bind(secret_hash)
        .bind(now)
        .execute(c)
        .await?;
        Ok(())
    }

    /// An API client and its secret hash.
    pub async fn client(&self, client_id: &str) -> Result<Option<(ApiClient, String)>> {
        let row = sqlx::query("SELECT id, org_id, role, secret_hash FROM api_clients WHERE id = $1")
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok((
                ApiClient {
                    id: ClientId::from_string(r.try_get::<String, _>("id")?),
                    org_id: OrgId::from_string(r.try_get::<String, _>("org_id")?),
                    role: Role::parse(&r.try_get::<String, _>("role")?)?,
                },
                r.try_get::<String, _>("secret_hash")?,
            ))
        })
        .transpose()
    }

    /// Stores an access token (its hash).
    pub async fn insert_token(
        &self,
        token_hash: &str,
        client: &ApiClient,
        expires_at: Millis,
        now: Millis,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM access_tokens WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO access_tokens (token_hash, client_id, org_id, role, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(token_hash)
            .bind(client.id.as_str())
            .bind(client.org_id.as_str())
            .bind(client.role.as_str())
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The principal of an unexpired token hash.
    pub async fn token(&self, token_hash: &str, now: Millis) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT client_id, org_id, role FROM access_tokens WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Principal {
                client_id: ClientId::from_string(r.try_get::<String, _>("client_id")?),
                org_id: OrgId::from_string(r.try_get::<String, _>("org_id")?),
                role: Role::parse(&r.try_get::<String, _>("role")?)?,
            })
        })
        .transpose()
    }

    // ---------------------------------------------------------------- devices

    /// Inserts a device.
    pub async fn insert_device(&self, c: &mut AnyConnection, d: &Device) -> Result<()> {
        sqlx::query(
            "INSERT INTO devices (id, org_id, registered_by, name, kind, identity_signing_key, identity_encryption_key, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(d.id.as_str())
        .bind(d.org_id.as_str())
        .bind(d.registered_by.as_str())
        .bind(&d.name)
        .bind(d.kind.as_str())
        .bind(hex::encode(d.identity_signing_key))
        .bind(hex::encode(d.identity_encryption_key))
        .bind(d.status.as_str())
        .bind(d.created_at)
        .execute(c)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Error::new(
                crate::error::ErrorCode::DuplicateKey,
                "a device with this identitySigningKey or identityEncryptionKey is already registered",
            ),
            _ => Error::from(e),
        })?;
        Ok(())
    }

    fn device_from_row(r: &AnyRow) -> Result<Device> {
        let key = |col: &str| -> Result<[u8; 32]> {
            let s: String = r.try_get(col)?;
            let v = hex::decode(s).map_err(|e| Error::internal("device key", e))?;
            <[u8; 32]>::try_from(v.as_slice()).map_err(|e| Error::internal("device key", e))
        };
        Ok(Device {
            id: DeviceId::from_string(r.try_get::<String, _>("id")?),
            org_id: OrgId::from_string(r.try_get::<String, _>("org_id")?),
            name: r.try_get("name")?,
            kind: DeviceKind::parse(&r.try_get::<String, _>("kind")?)?,
            identity_signing_key: key("identity_signing_key")?,
            identity_encryption_key: key("identity_encryption_key")?,
            status: DeviceStatus::parse(&r.try_get::<String, _>("status")?)?,
            registered_by: ClientId::from_string(r.try_get::<String, _>("registered_by")?),
            created_at: r.try_get("created_at")?,
        })
    }

    /// A device of an organisation.
    pub async fn device(&self, c: &mut AnyConnection, org: &OrgId, id: &str) -> Result<Option<Device>> {
        let row = sqlx::query("SELECT * FROM devices WHERE id = $1 AND org_id = $2")
            .bind(id)
            .bind(org.as_str())
            .fetch_optional(c)
            .await?;
        row.as_ref().map(Self::device_from_row).transpose()
    }

    /// All devices of an organisation.
    pub async fn devices(&self, org: &OrgId) -> Result<Vec<Device>> {
        let rows = sqlx::query("SELECT * FROM devices WHERE org_id = $1 ORDER BY created_at, id")
            .bind(org.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::device_from_row).collect()
    }

    /// A device by id, outside a transaction.
    pub async fn device_by_id(&self, org: &OrgId, id: &str) -> Result<Option<Device>> {
        let mut c = self.pool.acquire().await?;
        self.device(&mut c, org, id).await
    }

    // ---------------------------------------------------------------- vaults

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

    fn vault_from_row(r: &AnyRow) -> Result<(Vault, i64)> {
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
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Self::vault_from_row(r).map(|(v, _)| v))
            .collect()
    }

    /// A vault outside a transaction.
    pub async fn vault_by_id(&self, org: &OrgId, id: &str) -> Result<Option<Vault>> {
        let mut c = self.pool.acquire().await?;
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

    // ---------------------------------------------------------------- operations

    /// Inserts an operation (version 0).
    pub async fn insert_operation(&self, c: &mut AnyConnection, op: &Operation) -> Result<()> {
        let body = serde_json::to_string(op).map_err(|e| Error::internal("operation json", e))?;
        sqlx::query(
            "INSERT INTO operations (id, org_id, vault_id, kind, state, expires_at, version, body, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9)",
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
        .execute(c)
        .await?;
        Ok(())
    }

    async fn votes(&self, c: &mut AnyConnection, op: &OperationId) -> Result<Vec<Vote>> {
        let rows = sqlx::query(
            "SELECT device_id, choice, weight, seq, at FROM votes WHERE operation_id = $1 ORDER BY seq",
        )
        .bind(op.as_str())
        .fetch_all(c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Vote {
                    device_id: DeviceId::from_string(r.try_get::<String, _>("device_id")?),
                    choice: VoteChoice::parse(&r.try_get::<String, _>("choice")?)?,
                    weight: u32::try_from(r.try_get::<i64, _>("weight")?)
                        .map_err(|e| Error::internal("vote", e))?,
                    seq: u32::try_from(r.try_get::<i64, _>("seq")?)
                        .map_err(|e| Error::internal("vote", e))?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    fn operation_from_row(r: &AnyRow) -> Result<(Operation, i64)> {
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
        let mut c = self.pool.acquire().await?;
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
        sql.push_str(&format!(" ORDER BY created_at DESC, id LIMIT ${n}"));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(org.as_str());
        if let Some(v) = vault {
            q = q.bind(v);
        }
        if let Some(k) = kind {
            q = q.bind(k.as_str());
        }
        let mut c = self.pool.acquire().await?;
        let rows = q.bind(limit).fetch_all(&mut *c).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let (mut op, _) = Self::operation_from_row(r)?;
            op.votes = self.votes(&mut c, &op.id).await?;
            out.push(op);
        }
        Ok(out)
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

    /// Ids of the newest Completed presign operations of a vault (at most
    /// [`PRESIGNATURE_SCAN`]): consumption is in the body, so the caller locks and checks
    /// each; newest first, because consumed ones accumulate among the old. Missing an
    /// older unconsumed one only means the full protocol.
    pub async fn presignature_ids(&self, c: &mut AnyConnection, vault_id: &VaultId) -> Result<Vec<String>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM operations WHERE vault_id = $1 AND kind = 'Presign' AND state = 'Completed' ORDER BY created_at DESC, id DESC LIMIT {PRESIGNATURE_SCAN}"
        )))
        .bind(vault_id.as_str())
        .fetch_all(c)
        .await?;
        rows.iter().map(|r| Ok(r.try_get::<String, _>("id")?)).collect()
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
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(r.try_get::<String, _>("id")?)).collect()
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
            "UPDATE operations SET body = $1, state = $2, expires_at = $3, updated_at = $4, version = version + 1 \
             WHERE id = $5 AND version = $6",
        )
        .bind(body)
        .bind(op.state.as_str())
        .bind(op.expires_at)
        .bind(op.updated_at)
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

    // ---------------------------------------------------------------- audit, idempotency

    /// Appends audit events for an entity.
    pub async fn audit(
        &self,
        c: &mut AnyConnection,
        org: &OrgId,
        entity_kind: &str,
        entity_id: &str,
        at: Millis,
        events: &[AuditEvent],
    ) -> Result<()> {
        for e in events {
            sqlx::query(
                "INSERT INTO audit_log (org_id, entity_kind, entity_id, at, actor, event, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(org.as_str())
            .bind(entity_kind)
            .bind(entity_id)
            .bind(at)
            .bind(e.actor.clone())
            .bind(&e.event)
            .bind(e.detail.to_string())
            .execute(&mut *c)
            .await?;
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
        let rows = q.fetch_all(&self.pool).await?;
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
            .fetch_optional(&self.pool)
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
