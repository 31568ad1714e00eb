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
//!
//! # Layout
//! - this file: the pool, its backend, transactions.
//! - [`organisations`]: organisations, API clients, access tokens.
//! - [`devices`], [`vaults`], [`operations`] (with their votes): rows of each entity.
//! - [`human_approvals`]: what human-approved devices ask people, and the answers.
//! - [`console`]: the web console's users and sessions.
//! - [`audit`]: the append-only audit log and idempotency keys.

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

use crate::error::Result;

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

pub mod audit;
pub mod console;
pub mod devices;
pub mod human_approvals;
mod migrations;
pub mod operations;
pub mod organisations;
pub mod vaults;

pub use audit::AuditEntry;

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
        migrations::migrator(backend).run(&pool).await?;
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

    /// Whether the database answers (`SELECT 1`).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(super) fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }
}
