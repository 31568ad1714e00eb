//! The console's users and sessions: operators create users (a generated password, shown
//! once); a user signs in with the organisation, name and password and gets a session
//! (a cookie's token and a CSRF token, both random, stored hashed); each request of the
//! session must carry the CSRF token and is checked against the user's role
//! ([`ConsoleRole::permits`]) before it runs as an operator principal.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Service;
use crate::auth::{self, Secret};
use crate::domain::console::{ConsolePasskey, ConsoleRole, ConsoleUser};
use crate::domain::*;
use crate::error::{Error, ErrorCode, Result};

/// How long a session lasts (it is not extended).
pub const SESSION_TTL_MS: Millis = 8 * 3600 * 1000;
/// Failed sign-ins to one user name allowed within [`FAILURE_WINDOW_MS`].
pub const MAX_FAILURES: u32 = 5;
/// The window over which failures count.
pub const FAILURE_WINDOW_MS: Millis = 5 * 60 * 1000;
/// The shortest password a person may choose.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// At most this many names are remembered (the oldest window gives way).
const MAX_REMEMBERED: usize = 10_000;

/// A new session: the cookie's token, shown once (its CSRF token is
/// [`crate::console::csrf_of`] it).
pub struct NewSession {
    /// The user.
    pub user: ConsoleUser,
    /// The cookie's value.
    pub token: Secret,
    /// When it ends.
    pub expires_at: Millis,
}

/// Failed sign-ins per (organisation, name): after [`MAX_FAILURES`] in
/// [`FAILURE_WINDOW_MS`], that name is refused until the window ends, whatever the password
/// (so guessing is slow, and a locked-out person waits minutes, not forever). Per process.
#[derive(Default)]
pub struct SignInLimiter {
    failures: Mutex<HashMap<(String, String), (u32, Millis)>>,
}

impl SignInLimiter {
    fn locked(&self, key: &(String, String), now: Millis) -> bool {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .is_some_and(|(n, since)| *n >= MAX_FAILURES && now - since < FAILURE_WINDOW_MS)
    }

    fn failed(&self, key: (String, String), now: Millis) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, since)| now - *since < FAILURE_WINDOW_MS);
        if map.len() >= MAX_REMEMBERED && !map.contains_key(&key) {
            if let Some(oldest) = map.iter().min_by_key(|(_, (_, s))| *s).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
        let entry = map.entry(key).or_insert((0, now));
        entry.0 += 1;
    }

    fn succeeded(&self, key: &(String, String)) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

impl Service {
    /// Records `event` about console user `user_id`, done by `actor`, in the audit log.
    #[allow(clippy::too_many_arguments)]
    async fn audit_console_user(
        &self,
        tx: &mut sqlx::AnyConnection,
        org: &OrgId,
        user_id: &str,
        at: Millis,
        event: &str,
        actor: String,
        detail: serde_json::Value,
    ) -> Result<()> {
        let event = AuditEvent {
            event: event.into(),
            actor: Some(actor),
            detail,
        };
        self.store
            .audit(tx, org, "console_user", user_id, at, &[event])
            .await
    }

    /// Creates a console user with a generated password, returned once. Operator API
    /// clients and console admins only (the GraphQL gate keeps other console roles out).
    pub async fn create_console_user(
        &self,
        p: &Principal,
        name: &str,
        role: &str,
    ) -> Result<(ConsoleUser, Secret)> {
        Self::require_operator(p)?;
        let role = ConsoleRole::parse(role)?;
        let name = check_name("a console user's name", name)?;
        if name.chars().count() > 64 {
            return Err(Error::invalid_input(
                "a console user's name must be at most 64 characters",
            ));
        }
        let password = auth::new_console_password();
        let hash = {
            let p = password.clone();
            tokio::task::spawn_blocking(move || auth::hash_secret(&p))
                .await
                .map_err(|e| Error::internal("argon2", e))??
        };
        let user = ConsoleUser {
            id: ClientId::from_string(format!(
                "usr_{}",
                hex::encode(crate::crypto::random_bytes::<12>())
            )),
            org_id: p.org_id.clone(),
            name,
            role,
            created_at: self.clock.now(),
            revoked_at: None,
        };
        let mut tx = self.store.begin().await?;
        self.store
            .insert_console_user(&mut tx, &user, &hash, &p.client_id)
            .await?;
        let detail = serde_json::json!({"user": user.id, "name": user.name, "role": role.as_str()});
        self.audit_console_user(
            &mut tx,
            &p.org_id,
            user.id.as_str(),
            user.created_at,
            "console_user_created",
            p.client_id.to_string(),
            detail,
        )
        .await?;
        tx.commit().await?;
        Ok((user, password))
    }

    /// The organisation's console users (operators).
    pub async fn console_users(&self, p: &Principal) -> Result<Vec<ConsoleUser>> {
        Self::require_operator(p)?;
        self.store.console_users(&p.org_id).await
    }

    /// Revokes a console user: it can no longer sign in and its sessions end at once
    /// (operator API clients and console admins).
    pub async fn revoke_console_user(&self, p: &Principal, id: &str) -> Result<ConsoleUser> {
        Self::require_operator(p)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let user = self
            .store
            .revoke_console_user(&mut tx, &p.org_id, id, now)
            .await?
            .ok_or_else(|| Error::not_found("console user", id))?;
        self.audit_console_user(
            &mut tx,
            &p.org_id,
            id,
            now,
            "console_user_revoked",
            p.client_id.to_string(),
            serde_json::json!({"user": user.id, "name": user.name}),
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Changes the signed-in user's own password: `current` must verify (a failure counts
    /// toward the name's sign-in lock-out), `new` must be 12 to 256 characters and not the
    /// current one. The user's other sessions end; the one with `token` stays.
    pub async fn change_console_password(
        &self,
        user: &ConsoleUser,
        token: &str,
        current: &str,
        new: &str,
    ) -> Result<()> {
        let length = new.chars().count();
        if !(MIN_PASSWORD_CHARS..=256).contains(&length) {
            return Err(Error::invalid_input(format!(
                "a new password must be {MIN_PASSWORD_CHARS} to 256 characters"
            )));
        }
        if new == current {
            return Err(Error::invalid_input("the new password is the current one"));
        }
        let now = self.clock.now();
        let key = (user.org_id.to_string(), user.name.clone());
        if self.sign_ins.locked(&key, now) {
            return Err(Error::new(
                ErrorCode::TooManyRequests,
                format!(
                    "too many wrong passwords for this name; wait {} minutes",
                    FAILURE_WINDOW_MS / 60_000
                ),
            ));
        }
        let (hash, stored) = {
            let _slot = self.verification_slot("sign-ins").await?;
            let stored = self
                .store
                .console_user(user.org_id.as_str(), &user.name)
                .await?
                .map(|(_, h)| h)
                .ok_or_else(|| Error::new(ErrorCode::Unauthenticated, "this user no longer exists"))?;
            let (given, new) = (Secret::new(current.to_owned()), Secret::new(new.to_owned()));
            let checked = stored.clone();
            let hash = tokio::task::spawn_blocking(move || {
                if auth::verify_secret(given.expose(), &checked) {
                    auth::hash_secret(&new).map(Some)
                } else {
                    Ok(None)
                }
            })
            .await
            .map_err(|e| Error::internal("argon2", e))??;
            (hash, stored)
        };
        let Some(hash) = hash else {
            self.sign_ins.failed(key, now);
            return Err(Error::new(
                ErrorCode::Unauthenticated,
                "the current password is wrong",
            ));
        };
        let mut tx = self.store.begin().await?;
        self.store
            .set_console_password(
                &mut tx,
                &user.org_id,
                user.id.as_str(),
                &hash,
                Some(&auth::token_hash(token)),
                Some(&stored),
            )
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::Unauthenticated,
                    "the password or the session changed meanwhile; sign in again",
                )
            })?;
        self.audit_console_user(
            &mut tx,
            &user.org_id,
            user.id.as_str(),
            now,
            "console_password_changed",
            user.id.to_string(),
            serde_json::json!({"user": user.id, "name": user.name}),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(user = %user.id, name = %user.name, "console password changed");
        Ok(())
    }

    /// Gives a console user a new generated password, returned once, and ends its sessions
    /// (operator API clients and console admins): for a person who forgot theirs.
    pub async fn reset_console_password(&self, p: &Principal, id: &str) -> Result<(ConsoleUser, Secret)> {
        Self::require_operator(p)?;
        let password = auth::new_console_password();
        let hash = {
            let p = password.clone();
            tokio::task::spawn_blocking(move || auth::hash_secret(&p))
                .await
                .map_err(|e| Error::internal("argon2", e))??
        };
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let user = self
            .store
            .set_console_password(&mut tx, &p.org_id, id, &hash, None, None)
            .await?
            .ok_or_else(|| Error::not_found("console user", id))?;
        self.audit_console_user(
            &mut tx,
            &p.org_id,
            id,
            now,
            "console_password_reset",
            p.client_id.to_string(),
            serde_json::json!({"user": user.id, "name": user.name}),
        )
        .await?;
        tx.commit().await?;
        // The person may sign in at once with the new password.
        self.sign_ins
            .succeeded(&(user.org_id.to_string(), user.name.clone()));
        Ok((user, password))
    }

    /// Signs a console user in. Every attempt verifies one Argon2 hash (a fixed dummy one for
    /// an unknown name), so the answer takes as long whether the name exists; a name with
    /// too many recent failures is refused before any check.
    pub async fn sign_in(&self, org: &str, name: &str, password: &str) -> Result<NewSession> {
        let bad = || {
            Error::new(
                ErrorCode::Unauthenticated,
                "unknown organisation, name or password",
            )
        };
        // Ids and names are short: a long one is refused before it costs memory or a hash.
        if org.len() > 64 || name.len() > 256 {
            return Err(bad());
        }
        let now = self.clock.now();
        let key = (org.to_owned(), name.to_owned());
        if self.sign_ins.locked(&key, now) {
            return Err(Error::new(
                ErrorCode::TooManyRequests,
                format!(
                    "too many failed sign-ins for this name; wait {} minutes",
                    FAILURE_WINDOW_MS / 60_000
                ),
            ));
        }
        let _slot = self.verification_slot("sign-ins").await?;
        let found = self.store.console_user(org, name).await?;
        let hash = found
            .as_ref()
            .map_or_else(|| auth::dummy_hash().to_owned(), |(_, h)| h.clone());
        let given = Secret::new(password.to_owned());
        let checked = hash.clone();
        let verified = tokio::task::spawn_blocking(move || auth::verify_secret(given.expose(), &checked))
            .await
            .map_err(|e| Error::internal("argon2", e))?;
        let user = match (found, verified) {
            (Some((user, _)), true) => user,
            _ => {
                self.sign_ins.failed(key, now);
                return Err(bad());
            }
        };
        self.sign_ins.succeeded(&key);
        let token = auth::new_session_token();
        let expires_at = now + SESSION_TTL_MS;
        let made = self
            .store
            .insert_console_session(
                &auth::token_hash(token.expose()),
                &user.id,
                &hash,
                now,
                expires_at,
            )
            .await?;
        if !made {
            // The password changed, or the user was revoked, while it was being checked.
            return Err(bad());
        }
        tracing::info!(user = %user.id, name = %user.name, role = user.role.as_str(), "console sign-in");
        Ok(NewSession {
            user,
            token,
            expires_at,
        })
    }

    /// The session of a cookie's token. With `csrf`, the CSRF token must match too (every
    /// request that is not a plain read of the session itself).
    pub async fn console_session(
        &self,
        token: &str,
        csrf: Option<&str>,
    ) -> Result<(Principal, ConsoleRole, crate::domain::console::ConsoleSession)> {
        let session = self
            .store
            .console_session(&auth::token_hash(token), self.clock.now())
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::Unauthenticated,
                    "the console session has ended; sign in again",
                )
            })?;
        if let Some(csrf) = csrf {
            // The token is derived from the session's (a hash): comparing it says nothing of
            // the session token.
            if csrf != crate::console::csrf_of(token) {
                return Err(Error::new(ErrorCode::Forbidden, "missing or wrong X-CSRF-Token"));
            }
        }
        let principal = Principal {
            client_id: session.user.id.clone(),
            org_id: session.user.org_id.clone(),
            role: Role::Operator,
        };
        Ok((principal, session.user.role, session))
    }

    /// Stores a passkey the session's user just registered (the registration checked by
    /// the console's routes).
    pub async fn add_console_passkey(
        &self,
        user: &ConsoleUser,
        credential_id: String,
        passkey: String,
    ) -> Result<ConsolePasskey> {
        let now = self.clock.now();
        let registered = ConsolePasskey {
            credential_id,
            user: user.clone(),
            passkey,
            created_at: now,
        };
        self.store.insert_console_passkey(&registered).await?;
        let mut tx = self.store.begin().await?;
        self.audit_console_user(
            &mut tx,
            &user.org_id,
            user.id.as_str(),
            now,
            "passkey_registered",
            user.id.to_string(),
            serde_json::json!({"user": user.id, "name": user.name, "credentialId": registered.credential_id}),
        )
        .await?;
        tx.commit().await?;
        Ok(registered)
    }

    /// The passkeys a person registered.
    pub async fn console_passkeys_of(&self, user: &ConsoleUser) -> Result<Vec<ConsolePasskey>> {
        Ok(self
            .store
            .console_passkeys(&user.org_id)
            .await?
            .into_iter()
            .filter(|p| p.user.id == user.id)
            .collect())
    }

    /// The organisation's registered passkeys (operators).
    pub async fn console_passkeys(&self, p: &Principal) -> Result<Vec<ConsolePasskey>> {
        Self::require_operator(p)?;
        self.store.console_passkeys(&p.org_id).await
    }

    /// Ends a session.
    pub async fn sign_out(&self, token: &str) -> Result<()> {
        self.store.delete_console_session(&auth::token_hash(token)).await
    }
}
