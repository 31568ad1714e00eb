//! Organisations, API clients (secret hashes) and access tokens (hashes).

use sqlx::{AnyConnection, Row};

use super::Store;
use crate::domain::*;
use crate::error::Result;

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
}
