//! Idempotency keys: a mutation repeated with the same key and input returns the first
//! result; the same key with another input is refused.

use sqlx::AnyConnection;

use super::Service;
use crate::domain::*;
use crate::error::{Error, ErrorCode, Result};

impl Service {
    pub(super) async fn idempotent_existing(
        &self,
        p: &Principal,
        key: Option<&str>,
        mutation: &str,
        hash: &str,
    ) -> Result<Option<String>> {
        let Some(key) = key else { return Ok(None) };
        if key.is_empty() || key.len() > 200 {
            return Err(Error::invalid_input("idempotencyKey must be 1-200 bytes"));
        }
        match self.store.idempotency(&p.client_id, key).await? {
            None => Ok(None),
            Some((m, h, id)) if m == mutation && h == hash => Ok(Some(id)),
            Some(_) => Err(Error::new(
                ErrorCode::IdempotencyConflict,
                format!("idempotencyKey {key:?} was already used with a different input"),
            )),
        }
    }

    /// Records the key in `c`'s transaction. `Ok(Some(id))` when another request won
    /// the race with the same key (the caller rolls back and returns that).
    pub(super) async fn idempotent_record(
        &self,
        c: &mut AnyConnection,
        p: &Principal,
        key: Option<&str>,
        mutation: &str,
        hash: &str,
        result_id: &str,
    ) -> Result<bool> {
        let Some(key) = key else { return Ok(true) };
        match self
            .store
            .insert_idempotency(
                c,
                &p.client_id,
                &p.org_id,
                key,
                mutation,
                hash,
                result_id,
                self.clock.now(),
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn idempotent_lost_race(
        &self,
        p: &Principal,
        key: Option<&str>,
        mutation: &str,
        hash: &str,
    ) -> Result<String> {
        self.idempotent_existing(p, key, mutation, hash)
            .await?
            .ok_or_else(|| Error::internal("idempotency", "key vanished"))
    }
}
