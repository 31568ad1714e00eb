//! Organisations, their API clients (OAuth2 client credentials) and access tokens.

use zeroize::Zeroizing;

use super::{request_hash, Service};
use crate::auth::{self, Secret};
use crate::domain::*;
use crate::error::{Error, ErrorCode, Result};
use crate::metrics::{self, ClientChange};

/// The longest overlap of an old secret after a rotation: 30 days.
pub const MAX_OVERLAP_SECS: i64 = 30 * 24 * 3600;

/// A created organisation and its two API clients; the secrets are shown once.
#[derive(Debug, Clone)]
pub struct InitOutput {
    /// Organisation id.
    pub org_id: OrgId,
    /// Operator client id.
    pub operator_client_id: ClientId,
    /// Operator client secret.
    pub operator_client_secret: Secret,
    /// Signer client id.
    pub signer_client_id: ClientId,
    /// Signer client secret.
    pub signer_client_secret: Secret,
}

impl Service {
    /// Creates an organisation with an operator and a signer API client.
    pub async fn init_org(&self, name: &str) -> Result<InitOutput> {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(Error::invalid_input("organisation name must be 1-200 bytes"));
        }
        let now = self.clock.now();
        let org = Organisation {
            id: OrgId::random(),
            name: name.to_owned(),
        };
        let operator = ApiClient {
            id: ClientId::random(),
            org_id: org.id.clone(),
            role: Role::Operator,
        };
        let signer = ApiClient {
            id: ClientId::random(),
            org_id: org.id.clone(),
            role: Role::Signer,
        };
        let (op_secret, sg_secret) = (auth::new_client_secret(), auth::new_client_secret());
        let (op_hash, sg_hash) = {
            let (a, b) = (op_secret.clone(), sg_secret.clone());
            tokio::task::spawn_blocking(move || {
                Ok::<_, Error>((auth::hash_secret(&a)?, auth::hash_secret(&b)?))
            })
            .await
            .map_err(|e| Error::internal("argon2", e))??
        };
        let mut tx = self.store.begin().await?;
        self.store.insert_org(&mut tx, &org, now).await?;
        self.store
            .insert_client(&mut tx, &operator, &op_hash, now)
            .await?;
        self.store.insert_client(&mut tx, &signer, &sg_hash, now).await?;
        let ev = |e: &str, d| AuditEvent {
            event: e.to_owned(),
            actor: None,
            detail: d,
        };
        self.store
            .audit(
                &mut tx,
                &org.id,
                "organisation",
                org.id.as_str(),
                now,
                &[
                    ev("created", serde_json::json!({"name": org.name})),
                    ev(
                        "api_client_created",
                        serde_json::json!({"clientId": operator.id, "role": "operator"}),
                    ),
                    ev(
                        "api_client_created",
                        serde_json::json!({"clientId": signer.id, "role": "signer"}),
                    ),
                ],
            )
            .await?;
        tx.commit().await?;
        Ok(InitOutput {
            org_id: org.id,
            operator_client_id: operator.id,
            operator_client_secret: op_secret,
            signer_client_id: signer.id,
            signer_client_secret: sg_secret,
        })
    }

    /// Creates another API client in the caller's organisation (operators); the
    /// secret is returned once. With an idempotency key, a replay returns the same
    /// client without a secret (`None`): only its hash is stored.
    pub async fn create_api_client(
        &self,
        p: &Principal,
        role: &str,
        key: Option<&str>,
    ) -> Result<(ApiClient, Option<Secret>)> {
        Self::require_operator(p)?;
        let role = Role::parse(role)?;
        let hash = request_hash("createApiClient", &role.as_str())?;
        if let Some(id) = self.idempotent_existing(p, key, "createApiClient", &hash).await? {
            return Ok((self.api_client(p, &id).await?, None));
        }
        let client = ApiClient {
            id: ClientId::random(),
            org_id: p.org_id.clone(),
            role,
        };
        let secret = auth::new_client_secret();
        let s = secret.clone();
        let secret_hash = tokio::task::spawn_blocking(move || auth::hash_secret(&s))
            .await
            .map_err(|e| Error::internal("argon2", e))??;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        self.store
            .insert_client(&mut tx, &client, &secret_hash, now)
            .await?;
        if !self
            .idempotent_record(&mut tx, p, key, "createApiClient", &hash, client.id.as_str())
            .await?
        {
            tx.rollback().await?;
            let id = self
                .idempotent_lost_race(p, key, "createApiClient", &hash)
                .await?;
            return Ok((self.api_client(p, &id).await?, None));
        }
        let ev = AuditEvent {
            event: "api_client_created".to_owned(),
            actor: Some(p.client_id.to_string()),
            detail: serde_json::json!({"clientId": client.id, "role": role.as_str()}),
        };
        self.store
            .audit(&mut tx, &p.org_id, "organisation", p.org_id.as_str(), now, &[ev])
            .await?;
        tx.commit().await?;
        metrics::api_client_changed(ClientChange::Created);
        Ok((client, Some(secret)))
    }

    async fn api_client(&self, p: &Principal, id: &str) -> Result<ApiClient> {
        Ok(self.client_credentials(p, id).await?.client)
    }

    async fn client_credentials(&self, p: &Principal, id: &str) -> Result<ClientCredentials> {
        match self.store.client(id).await? {
            Some(c) if c.client.org_id == p.org_id => Ok(c),
            _ => Err(Error::not_found("API client", id)),
        }
    }

    /// The organisation's API clients, revoked ones included (operators).
    pub async fn api_clients(&self, p: &Principal) -> Result<Vec<ClientCredentials>> {
        Self::require_operator(p)?;
        self.store.clients(&p.org_id).await
    }

    /// Gives an API client a new secret, returned once (operators only: a client cannot
    /// rotate itself, or a stolen access token would buy a permanent secret). The old secret
    /// stays accepted for `overlap_secs` (default: the configured overlap) so that whatever
    /// uses it can move to the new one; tokens already issued live out their lifetime. For a
    /// leaked secret, revoke the client instead.
    pub async fn rotate_api_client_secret(
        &self,
        p: &Principal,
        id: &str,
        overlap_secs: Option<i64>,
    ) -> Result<(ApiClient, Secret, Millis)> {
        Self::require_operator(p)?;
        let overlap_ms = match overlap_secs {
            None => self.settings.client_secret_overlap_ms,
            Some(s) if (0..=MAX_OVERLAP_SECS).contains(&s) => s * 1000,
            Some(_) => {
                return Err(Error::invalid_input(format!(
                    "overlapSeconds must be between 0 and {MAX_OVERLAP_SECS} (30 days)"
                )))
            }
        };
        let found = self.client_credentials(p, id).await?;
        if found.revoked_at.is_some() {
            return Err(Error::invalid_state(format!("API client {id} is revoked")));
        }
        let secret = auth::new_client_secret();
        let s = secret.clone();
        let hash = tokio::task::spawn_blocking(move || auth::hash_secret(&s))
            .await
            .map_err(|e| Error::internal("argon2", e))??;
        let now = self.clock.now();
        let until = now.saturating_add(overlap_ms);
        let mut tx = self.store.begin().await?;
        if !self.store.rotate_client(&mut tx, id, &hash, until, now).await? {
            tx.rollback().await?;
            return Err(Error::invalid_state(format!("API client {id} is revoked")));
        }
        let ev = AuditEvent {
            event: "api_client_rotated".to_owned(),
            actor: Some(p.client_id.to_string()),
            detail: serde_json::json!({"clientId": id, "previousSecretValidUntil": until}),
        };
        self.store
            .audit(&mut tx, &p.org_id, "organisation", p.org_id.as_str(), now, &[ev])
            .await?;
        tx.commit().await?;
        metrics::api_client_changed(ClientChange::Rotated);
        Ok((found.client, secret, until))
    }

    /// Revokes an API client (operators): its secrets and tokens are refused from now on.
    /// The organisation's last operator client cannot be revoked (nobody could manage it).
    pub async fn revoke_api_client(&self, p: &Principal, id: &str) -> Result<ClientCredentials> {
        Self::require_operator(p)?;
        let found = self.client_credentials(p, id).await?;
        if found.revoked_at.is_some() {
            return Ok(found);
        }
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        // Counted under the organisation's lock: two revocations at once cannot both see
        // another operator left.
        self.store.lock_org(&mut tx, &p.org_id).await?;
        if found.client.role == Role::Operator && self.store.active_operators(&mut tx, &p.org_id).await? <= 1
        {
            tx.rollback().await?;
            return Err(Error::invalid_state(
                "this is the organisation's last operator client: create another before revoking it",
            ));
        }
        self.store.revoke_client(&mut tx, id, now).await?;
        let ev = AuditEvent {
            event: "api_client_revoked".to_owned(),
            actor: Some(p.client_id.to_string()),
            detail: serde_json::json!({"clientId": id}),
        };
        self.store
            .audit(&mut tx, &p.org_id, "organisation", p.org_id.as_str(), now, &[ev])
            .await?;
        tx.commit().await?;
        metrics::api_client_changed(ClientChange::Revoked);
        self.client_credentials(p, id).await
    }

    /// OAuth2 client credentials → (access token, lifetime in seconds).
    pub async fn issue_token(&self, client_id: &str, client_secret: &str) -> Result<(Secret, i64)> {
        let bad = || Error::new(ErrorCode::Unauthenticated, "invalid client id or secret");
        let _slot = self.verification_slot("token requests").await?;
        let found = self.store.client(client_id).await?;
        let now = self.clock.now();
        // Every request verifies exactly two hashes (the current secret's and the previous
        // one's, or a fixed dummy hash in their place), without stopping at a match: the same
        // cost and timing whether the client exists, is revoked or is mid-rotation.
        let (client, mut hashes) = match &found {
            Some(c) if c.revoked_at.is_none() => (
                Some(c.client.clone()),
                c.accepted_hashes(now)
                    .into_iter()
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            ),
            _ => (None, Vec::new()),
        };
        hashes.resize(2, auth::dummy_hash().to_owned());
        let secret = Zeroizing::new(client_secret.to_owned());
        let ok = tokio::task::spawn_blocking(move || {
            hashes
                .iter()
                .fold(false, |ok, h| auth::verify_secret(&secret, h) | ok)
        })
        .await
        .map_err(|e| Error::internal("argon2", e))?;
        let Some(client) = client.filter(|_| ok) else {
            return Err(bad());
        };
        let token = auth::new_token();
        // A revocation that committed while the secret was being verified wins.
        let stored = self
            .store
            .insert_token(
                &auth::token_hash(token.expose()),
                &client,
                now + self.settings.token_ttl_ms,
                now,
            )
            .await?;
        if !stored {
            return Err(bad());
        }
        Ok((token, self.settings.token_ttl_ms / 1000))
    }

    /// The principal of a bearer token.
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        self.store
            .token(&auth::token_hash(token), self.clock.now())
            .await?
            .ok_or_else(|| Error::new(ErrorCode::Unauthenticated, "invalid or expired access token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::Broadcaster;
    use crate::service::{Clock, Settings};
    use crate::store::Store;

    #[tokio::test]
    async fn token_requests_beyond_the_verification_bound_get_too_many_requests() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let settings = Settings {
            max_concurrent_verifications: 1,
            verification_wait_ms: 50,
            ..Settings::default()
        };
        let svc = Service::new(store, Clock::default(), settings, None, Broadcaster::default());
        let init = svc.init_org("acme").await.unwrap();
        let id = init.operator_client_id.to_string();
        let secret = init.operator_client_secret.expose().to_owned();
        let busy = svc.verifications.clone().acquire_owned().await.unwrap();
        let err = svc.issue_token(&id, &secret).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::TooManyRequests);
        drop(busy);
        svc.issue_token(&id, &secret).await.unwrap();
        let err = svc.issue_token("vsc_unknown", &secret).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::Unauthenticated);
    }
}
