//! Organisations, API clients (secret hashes) and access tokens (hashes).

use sqlx::{AnyConnection, Row};

use super::Store;
use crate::domain::*;
use crate::error::Result;

/// `SELECT` of every credentials column of `api_clients`, then `$tail`.
macro_rules! select_clients {
    ($tail:literal) => {
        concat!(
            "SELECT id, org_id, role, secret_hash, previous_secret_hash, previous_valid_until, ",
            "created_at, rotated_at, revoked_at FROM api_clients ",
            $tail
        )
    };
}

impl Store {
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

    /// An API client's stored credentials.
    pub async fn client(&self, client_id: &str) -> Result<Option<ClientCredentials>> {
        let row = sqlx::query(select_clients!("WHERE id = $1"))
            .bind(client_id)
            .fetch_optional(&self.reads)
            .await?;
        row.as_ref().map(client_row).transpose()
    }

    /// Every API client of an organisation, oldest first.
    pub async fn clients(&self, org: &OrgId) -> Result<Vec<ClientCredentials>> {
        let rows = sqlx::query(select_clients!("WHERE org_id = $1 ORDER BY created_at, id"))
            .bind(org.as_str())
            .fetch_all(&self.reads)
            .await?;
        rows.iter().map(client_row).collect()
    }

    /// Gives a client a new secret hash; the current one stays accepted until
    /// `previous_until`. Whether it did (not for a revoked client).
    pub async fn rotate_client(
        &self,
        c: &mut AnyConnection,
        client_id: &str,
        new_hash: &str,
        previous_until: Millis,
        now: Millis,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_clients SET previous_secret_hash = secret_hash, previous_valid_until = $1, \
             secret_hash = $2, rotated_at = $3 WHERE id = $4 AND revoked_at IS NULL",
        )
        .bind(previous_until)
        .bind(new_hash)
        .bind(now)
        .bind(client_id)
        .execute(c)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Locks an organisation's row until the transaction ends (both databases): decisions
    /// about its clients as a whole (its last operator) are taken one at a time.
    pub async fn lock_org(&self, c: &mut AnyConnection, org: &OrgId) -> Result<()> {
        sqlx::query("UPDATE organisations SET name = name WHERE id = $1")
            .bind(org.as_str())
            .execute(c)
            .await?;
        Ok(())
    }

    /// The organisation's operator clients that are not revoked (inside a transaction).
    pub async fn active_operators(&self, c: &mut AnyConnection, org: &OrgId) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM api_clients WHERE org_id = $1 AND role = 'operator' AND revoked_at IS NULL",
        )
        .bind(org.as_str())
        .fetch_one(c)
        .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    /// Revokes a client: its secrets are refused and its access tokens deleted.
    pub async fn revoke_client(&self, c: &mut AnyConnection, client_id: &str, now: Millis) -> Result<()> {
        sqlx::query("UPDATE api_clients SET revoked_at = $1, previous_secret_hash = NULL WHERE id = $2")
            .bind(now)
            .bind(client_id)
            .execute(&mut *c)
            .await?;
        sqlx::query("DELETE FROM access_tokens WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *c)
            .await?;
        Ok(())
    }

    /// Stores an access token (its hash) unless the client has been revoked meanwhile (a
    /// revocation that commits while the secret is being verified wins): whether it was
    /// stored.
    pub async fn insert_token(
        &self,
        token_hash: &str,
        client: &ApiClient,
        expires_at: Millis,
        now: Millis,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM access_tokens WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let stored = sqlx::query(
            "INSERT INTO access_tokens (token_hash, client_id, org_id, role, expires_at) \
             SELECT $1, id, org_id, role, $2 FROM api_clients WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .bind(expires_at)
        .bind(client.id.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(stored == 1)
    }

    /// The principal of an unexpired token hash.
    pub async fn token(&self, token_hash: &str, now: Millis) -> Result<Option<Principal>> {
        // A token of a revoked client is refused even if it was stored after the revocation
        // deleted the client's tokens.
        let row = sqlx::query(
            "SELECT t.client_id, t.org_id, t.role FROM access_tokens t JOIN api_clients c ON c.id = t.client_id \
             WHERE t.token_hash = $1 AND t.expires_at > $2 AND c.revoked_at IS NULL",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.reads)
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
}

fn client_row(r: &sqlx::any::AnyRow) -> Result<ClientCredentials> {
    let previous = match (
        r.try_get::<Option<String>, _>("previous_secret_hash")?,
        r.try_get::<Option<i64>, _>("previous_valid_until")?,
    ) {
        (Some(hash), Some(until)) => Some((hash, until)),
        _ => None,
    };
    Ok(ClientCredentials {
        client: ApiClient {
            id: ClientId::from_string(r.try_get::<String, _>("id")?),
            org_id: OrgId::from_string(r.try_get::<String, _>("org_id")?),
            role: Role::parse(&r.try_get::<String, _>("role")?)?,
        },
        secret_hash: r.try_get::<String, _>("secret_hash")?,
        previous,
        created_at: r.try_get::<i64, _>("created_at")?,
        rotated_at: r.try_get::<Option<i64>, _>("rotated_at")?,
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?,
    })
}
