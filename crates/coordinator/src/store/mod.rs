//! Persistence with `sqlx` (Any driver): SQLite (one coordinator process) or
//! PostgreSQL (several coordinator processes).
//!
//! Concurrency: every change to an operation runs in one transaction that first locks
//! the operation row (`SELECT … FOR UPDATE` on PostgreSQL; SQLite has one writer and
//! its writing pool has one connection), then re-reads its votes, applies the pure domain
//! transition and writes back with `UPDATE … WHERE version = $expected` (0 rows → the
//! transaction is abandoned, nothing is lost). Votes have a primary key
//! `(operation_id, device_id)`, so a device can never vote twice, even across processes.
//!
//! Reads outside a transaction use the store's read pool: on a SQLite file, read-only
//! connections that see the last commit while a transaction runs.
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

/// Connections that only read a SQLite file, beside its one writer.
const SQLITE_READERS: u32 = 4;

/// The store: a pool for transactions and writes, one for reads outside them, and the
/// backend.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Reads outside a transaction. On a SQLite file, read-only connections of their own:
    /// under WAL they read the last commit while the writer's transaction runs, so a
    /// device's listing or a token check does not queue behind the votes of others. Else
    /// (PostgreSQL, or an in-memory SQLite, which is one database per connection) the same
    /// pool.
    reads: AnyPool,
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
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let reads = if backend == Backend::Sqlite && !in_memory {
            AnyPoolOptions::new()
                .max_connections(SQLITE_READERS)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::raw_sql(
                            "PRAGMA query_only = ON; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000",
                        )
                        .execute(conn)
                        .await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the database for reading: {e}"))?
        } else {
            pool.clone()
        };
        Ok(Self { pool, reads, backend })
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(self.pool.begin().await?)
    }

    /// A read transaction on the readers: what is read in it comes from one snapshot (an
    /// operation's body and its votes, read apart, could otherwise contradict each other: a
    /// vote committed between the two reads). Dropped, it ends.
    pub(crate) async fn snapshot(&self) -> Result<Tx> {
        Ok(self.reads.begin().await?)
    }

    /// Whether the database answers (`SELECT 1`).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Closes the pools.
    pub async fn close(&self) {
        self.reads.close().await;
        self.pool.close().await;
    }

    pub(super) fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::time::Duration;

    use sqlx::Row as _;

    use super::Store;

    async fn organisations(store: &Store) -> i64 {
        sqlx::query("SELECT COUNT(*) AS n FROM organisations")
            .fetch_one(&store.reads)
            .await
            .unwrap()
            .try_get("n")
            .unwrap()
    }

    /// On a SQLite file, a read outside a transaction does not wait for the writer's open
    /// transaction: it answers with the last commit (one connection for both made it wait
    /// until the transaction ended); the reading connections cannot write.
    #[tokio::test]
    async fn sqlite_reads_see_the_last_commit_while_a_transaction_writes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
        let store = Store::connect(&url).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        sqlx::query("INSERT INTO organisations (id, name, created_at) VALUES ('org_a', 'a', 0)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let during = tokio::time::timeout(Duration::from_secs(3), organisations(&store))
            .await
            .expect("a read waited for the writer's transaction");
        assert_eq!(during, 0, "a read saw an uncommitted write");
        tx.commit().await.unwrap();
        assert_eq!(organisations(&store).await, 1, "a read missed the commit");
        assert!(
            sqlx::query("DELETE FROM organisations")
                .execute(&store.reads)
                .await
                .is_err(),
            "a reading connection wrote"
        );
    }

    /// A relay to PostgreSQL that, once armed, holds the server's reply to the next `BEGIN`
    /// until released: the window in which a request's future can be dropped (a client that
    /// hangs up, a timeout) with the `BEGIN` sent and its answer not yet read.
    struct StallingRelay {
        addr: std::net::SocketAddr,
        armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
        /// Signalled when a `BEGIN`'s reply is held.
        holding: std::sync::Arc<tokio::sync::Notify>,
        release: tokio::sync::watch::Sender<bool>,
    }

    impl StallingRelay {
        async fn start(to: String) -> StallingRelay {
            use std::sync::atomic::{AtomicBool, Ordering};
            use std::sync::Arc;
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let armed = Arc::new(AtomicBool::new(false));
            let (release, released) = tokio::sync::watch::channel(false);
            let relay_armed = armed.clone();
            let holding = Arc::new(tokio::sync::Notify::new());
            let relay_holding = holding.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let server = tokio::net::TcpStream::connect(&to).await.unwrap();
                    let (mut client_rx, mut client_tx) = client.into_split();
                    let (mut server_rx, mut server_tx) = server.into_split();
                    let held = Arc::new(AtomicBool::new(false));
                    let (armed, held_up) = (relay_armed.clone(), held.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n @ 1..) = client_rx.read(&mut buf).await {
                            let begin = buf[..n].windows(5).any(|w| w == b"BEGIN");
                            if begin && armed.swap(false, Ordering::SeqCst) {
                                held_up.store(true, Ordering::SeqCst);
                            }
                            if server_tx.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut released = released.clone();
                    let holding = relay_holding.clone();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n @ 1..) = server_rx.read(&mut buf).await {
                            if held.load(Ordering::SeqCst) {
                                holding.notify_one();
                                let _ = released.wait_for(|r| *r).await;
                            }
                            if client_tx.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            });
            StallingRelay {
                addr,
                armed,
                holding,
                release,
            }
        }
    }

    /// A request whose future is dropped while its `BEGIN` is unanswered (a client hanging
    /// up, a timeout) must not leave its connection inside a transaction: the pool would hand
    /// it on, and the next borrower's statements would run in that stale transaction, hold
    /// its locks, and be lost when the connection closes (sqlx before 0.9.1 did so on
    /// PostgreSQL, transact-rs/sqlx#4393, seen as "there is already a transaction in
    /// progress" warnings in the 10,000-request soak).
    #[tokio::test]
    async fn postgres_a_transaction_cancelled_during_begin_is_not_handed_on() {
        let Ok(admin) = std::env::var("VSIGNER_TEST_PG_URL") else {
            eprintln!("skipping: VSIGNER_TEST_PG_URL is not set");
            return;
        };
        sqlx::any::install_default_drivers();
        let url = url::Url::parse(&admin).unwrap();
        let name = format!(
            "vsigner_cancel_{}",
            hex::encode(rand_core::RngCore::next_u64(&mut rand_core::OsRng).to_le_bytes())
        );
        let mut direct = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut direct)
            .await
            .unwrap();
        let _dropped = DropDatabase {
            admin: admin.clone(),
            name: name.clone(),
        };
        let server = format!(
            "{}:{}",
            url.host_str().unwrap(),
            url.port_or_known_default().unwrap()
        );
        let relay = StallingRelay::start(server).await;
        let mut through = url.clone();
        through.set_host(Some("127.0.0.1")).unwrap();
        through.set_port(Some(relay.addr.port())).unwrap();
        through.set_path(&format!("/{name}"));
        // In clear, so that the relay reads the statements.
        through.query_pairs_mut().append_pair("sslmode", "disable");
        let store = Store::connect(through.as_str()).await.unwrap();

        // The request is dropped as soon as the relay holds its BEGIN's reply.
        relay.armed.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::select! {
            r = store.begin() => panic!("BEGIN was answered though the relay held its reply ({})", r.is_ok()),
            () = relay.holding.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(20)) => panic!("no BEGIN went through the relay"),
        }
        relay.release.send(true).unwrap();
        // The cancelled connection goes back to the pool once its reply is read.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while store.pool.num_idle() < store.pool.size() as usize {
            assert!(
                std::time::Instant::now() < deadline,
                "the cancelled connection never came back to the pool"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let since: i64 =
            sqlx::query_scalar("SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::bigint")
                .fetch_one(&mut direct)
                .await
                .unwrap();
        // Every transaction begun now starts now: one on each of the pool's connections (all
        // idle, so the pool hands each of them out before it opens another), the cancelled
        // one among them.
        let mut held = Vec::new();
        for _ in 0..store.pool.size() {
            let mut tx = store.begin().await.unwrap();
            let began: i64 = sqlx::query_scalar("SELECT (EXTRACT(EPOCH FROM now()) * 1000000)::bigint")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            assert!(
                began >= since,
                "a transaction begun now started {} ms earlier: the one cancelled during BEGIN, handed on by the pool",
                (since - began) / 1000
            );
            held.push(tx);
        }
        drop(held);
        store.close().await;
    }

    /// Drops a test database when dropped, whether the test passed or not.
    struct DropDatabase {
        admin: String,
        name: String,
    }

    impl Drop for DropDatabase {
        fn drop(&mut self) {
            let (admin, name) = (self.admin.clone(), self.name.clone());
            // On a thread with its own runtime: the test's may be gone or panicking.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut c) = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}
