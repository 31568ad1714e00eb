//! The audit log is append-only in the database itself (triggers), on both backends.
// Tests may unwrap; clippy.toml's allowance covers only #[test] fns, not scenario helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use sqlx::Connection;

per_backend!(audit_log_cannot_be_rewritten);

async fn audit_log_cannot_be_rewritten(db: Db) {
    init_org(&db, "acme").await;
    let mut c = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert!(n >= 3, "init records the organisation and its two clients");
    assert!(sqlx::query("UPDATE audit_log SET event = 'forged'")
        .execute(&mut c)
        .await
        .is_err());
    assert!(sqlx::query("DELETE FROM audit_log")
        .execute(&mut c)
        .await
        .is_err());
    let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(after, n);
    c.close().await.unwrap();
}
