//! Rows of the console's users and sessions.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::Store;
use crate::domain::console::{ConsolePasskey, ConsoleRole, ConsoleSession, ConsoleUser};
use crate::domain::*;
use crate::error::{Error, ErrorCode, Result};

/// The columns [`user_from_row`] reads (a macro: the queries are built with `concat!`, so
/// they stay static SQL).
macro_rules! user_columns {
    () => {
        "u.id, u.org_id, u.name, u.role, u.created_at, u.revoked_at"
    };
}

fn user_from_row(r: &AnyRow) -> Result<ConsoleUser> {
    Ok(ConsoleUser {
        id: ClientId::from_string(r.try_get::<String, _>("id")?),
        org_id: OrgId::from_string(r.try_get::<String, _>("org_id")?),
        name: r.try_get("name")?,
        role: ConsoleRole::parse(&r.try_get::<String, _>("role")?)?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

impl Store {
    /// Inserts a console user with its password's hash.
    pub async fn insert_console_user(
        &self,
        c: &mut AnyConnection,
        user: &ConsoleUser,
        password_hash: &str,
        created_by: &ClientId,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO console_users (id, org_id, name, role, password_hash, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(user.id.as_str())
        .bind(user.org_id.as_str())
        .bind(&user.name)
        .bind(user.role.as_str())
        .bind(password_hash)
        .bind(created_by.as_str())
        .bind(user.created_at)
        .execute(c)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => Error::new(
                ErrorCode::DuplicateKey,
                format!("a console user named {:?} already exists", user.name),
            ),
            _ => Error::from(e),
        })?;
        Ok(())
    }

    /// A console user by organisation and name, with its password's hash.
    pub async fn console_user(&self, org: &str, name: &str) -> Result<Option<(ConsoleUser, String)>> {
        let mut c = self.reads.acquire().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            ", u.password_hash FROM console_users u WHERE u.org_id = $1 AND u.name = $2 AND u.revoked_at IS NULL"
        ))
        .bind(org)
        .bind(name)
        .fetch_optional(&mut *c)
        .await?;
        row.map(|r| Ok((user_from_row(&r)?, r.try_get("password_hash")?)))
            .transpose()
    }

    /// The organisation's console users, by name.
    pub async fn console_users(&self, org: &OrgId) -> Result<Vec<ConsoleUser>> {
        let mut c = self.reads.acquire().await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM console_users u WHERE u.org_id = $1 ORDER BY u.name"
        ))
        .bind(org.as_str())
        .fetch_all(&mut *c)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Stores a session (its token's hash), deleting expired ones.
    pub async fn insert_console_session(
        &self,
        token_hash: &str,
        user: &ClientId,
        password_hash: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // Only while the password checked is still the user's (a change or a reset that
        // landed during the check ends the sign-in) and the user is not revoked.
        let made = sqlx::query(
            "INSERT INTO console_sessions (token_hash, user_id, created_at, expires_at) \
             SELECT $1, id, $3, $4 FROM console_users WHERE id = $2 AND password_hash = $5 AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .bind(user.as_str())
        .bind(now)
        .bind(expires_at)
        .bind(password_hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(made.rows_affected() == 1)
    }

    /// The unexpired session whose token hashes to `token_hash`.
    pub async fn console_session(&self, token_hash: &str, now: Millis) -> Result<Option<ConsoleSession>> {
        let mut c = self.reads.acquire().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            ", s.expires_at FROM console_sessions s \
             JOIN console_users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2 \
             AND u.revoked_at IS NULL"
        ))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *c)
        .await?;
        row.map(|r| {
            Ok(ConsoleSession {
                user: user_from_row(&r)?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// Revokes a console user of `org` and ends its sessions; the user as it is now, or
    /// `None` when there is no such user.
    pub async fn revoke_console_user(
        &self,
        c: &mut AnyConnection,
        org: &OrgId,
        id: &str,
        now: Millis,
    ) -> Result<Option<ConsoleUser>> {
        sqlx::query(
            "UPDATE console_users SET revoked_at = $1 WHERE org_id = $2 AND id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(org.as_str())
        .bind(id)
        .execute(&mut *c)
        .await?;
        sqlx::query("DELETE FROM console_sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *c)
            .await?;
        Self::console_user_by_id(c, org, id).await
    }

    /// Sets a console user's password hash (a user of `org` not revoked) and ends its
    /// sessions, all but the one whose token hash is `keep`; the user, or `None` when there
    /// is no such user. With `was`, only while the stored hash is still `was` and the
    /// session `keep` still exists (what was checked has not changed meanwhile).
    pub async fn set_console_password(
        &self,
        c: &mut AnyConnection,
        org: &OrgId,
        id: &str,
        hash: &str,
        keep: Option<&str>,
        was: Option<&str>,
    ) -> Result<Option<ConsoleUser>> {
        let changed = match was {
            None => sqlx::query(
                "UPDATE console_users SET password_hash = $1 WHERE org_id = $2 AND id = $3 AND revoked_at IS NULL",
            )
            .bind(hash)
            .bind(org.as_str())
            .bind(id),
            Some(was) => sqlx::query(
                "UPDATE console_users SET password_hash = $1 WHERE org_id = $2 AND id = $3 AND revoked_at IS NULL \
                 AND password_hash = $4 AND EXISTS (SELECT 1 FROM console_sessions s WHERE s.token_hash = $5 AND s.user_id = $3)",
            )
            .bind(hash)
            .bind(org.as_str())
            .bind(id)
            .bind(was)
            .bind(keep.unwrap_or_default()),
        }
        .execute(&mut *c)
        .await?;
        if changed.rows_affected() == 0 {
            return Ok(None);
        }
        sqlx::query("DELETE FROM console_sessions WHERE user_id = $1 AND token_hash <> $2")
            .bind(id)
            .bind(keep.unwrap_or_default())
            .execute(&mut *c)
            .await?;
        Self::console_user_by_id(c, org, id).await
    }

    /// A console user of `org` by id, revoked or not.
    async fn console_user_by_id(c: &mut AnyConnection, org: &OrgId, id: &str) -> Result<Option<ConsoleUser>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM console_users u WHERE u.org_id = $1 AND u.id = $2"
        ))
        .bind(org.as_str())
        .bind(id)
        .fetch_optional(&mut *c)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Stores a passkey a user registered.
    pub async fn insert_console_passkey(&self, p: &ConsolePasskey) -> Result<()> {
        let mut c = self.pool.acquire().await?;
        sqlx::query(
            "INSERT INTO console_passkeys (credential_id, user_id, org_id, passkey, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&p.credential_id)
        .bind(p.user.id.as_str())
        .bind(p.user.org_id.as_str())
        .bind(&p.passkey)
        .bind(p.created_at)
        .execute(&mut *c)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Error::new(ErrorCode::DuplicateKey, "this passkey is already registered")
            }
            _ => Error::from(e),
        })?;
        Ok(())
    }

    /// The organisation's registered passkeys, by person then date.
    pub async fn console_passkeys(&self, org: &OrgId) -> Result<Vec<ConsolePasskey>> {
        let mut c = self.reads.acquire().await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            ", k.credential_id, k.passkey, k.created_at AS registered_at FROM console_passkeys k \
             JOIN console_users u ON u.id = k.user_id WHERE k.org_id = $1 AND u.revoked_at IS NULL \
             ORDER BY u.name, k.created_at"
        ))
        .bind(org.as_str())
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ConsolePasskey {
                    credential_id: r.try_get("credential_id")?,
                    user: user_from_row(r)?,
                    passkey: r.try_get("passkey")?,
                    created_at: r.try_get("registered_at")?,
                })
            })
            .collect()
    }

    /// Ends a session.
    pub async fn delete_console_session(&self, token_hash: &str) -> Result<()> {
        let mut c = self.pool.acquire().await?;
        sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&mut *c)
            .await?;
        Ok(())
    }
}
