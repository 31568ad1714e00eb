//! The coordinator service: authorisation, idempotency and transactions around the
//! pure domain transitions, then notifications and broadcasting after commit.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use sqlx::AnyConnection;

use crate::auth::{self, Secret};
use crate::broadcast::Broadcaster;
use crate::domain::*;
use crate::error::{Error, ErrorCode, Result};
use crate::notify::Notifier;
use crate::store::{AuditEntry, Store};

/// Wall clock in milliseconds, with an offset tests can advance (expiry tests).
#[derive(Clone, Default, Debug)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// Now, in ms since the epoch (plus the offset).
    pub fn now(&self) -> Millis {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        wall.saturating_add(self.offset_ms.load(Ordering::SeqCst))
    }

    /// Moves this clock forward (tests).
    pub fn advance(&self, d: std::time::Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

/// Service settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Expiry windows.
    pub expiry: ExpiryPolicy,
    /// Access token lifetime.
    pub token_ttl_ms: Millis,
    /// Argon2 verifications (`/oauth/token`) running at once; more wait.
    pub max_concurrent_verifications: usize,
    /// How long a token request waits for a verification slot before
    /// `TOO_MANY_REQUESTS` (HTTP 429).
    pub verification_wait_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            expiry: ExpiryPolicy::default(),
            token_ttl_ms: 15 * 60 * 1000,
            max_concurrent_verifications: 4,
            verification_wait_ms: 5000,
        }
    }
}

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

/// `registerDevice` input.
#[derive(Debug, Clone, Serialize)]
pub struct RegisterDevice {
    /// Name.
    pub name: String,
    /// `virtual` | `manual`.
    pub kind: String,
    /// Hex Ed25519 public key.
    pub identity_signing_key: String,
    /// Hex X25519 public key.
    pub identity_encryption_key: String,
}

/// A signer in an input.
#[derive(Debug, Clone, Serialize)]
pub struct SignerInput {
    /// Device id.
    pub device_id: String,
    /// Weight (must be 1).
    pub weight: i64,
}

/// `createVault` input.
#[derive(Debug, Clone, Serialize)]
pub struct CreateVault {
    /// Name.
    pub name: String,
    /// `secp256k1` | `ed25519`.
    pub curve: String,
    /// Threshold.
    pub threshold: i64,
    /// Signers.
    pub signers: Vec<SignerInput>,
}

/// `requestSignature` input.
#[derive(Debug, Clone, Serialize)]
pub struct RequestSignature {
    /// Vault.
    pub vault_id: String,
    /// 32-byte digest, hex.
    pub digest: Option<String>,
    /// Unsigned EIP-1559 transaction, hex.
    pub eth_tx: Option<String>,
    /// Message, hex.
    pub message: Option<String>,
    /// `m/0/1`.
    pub derivation_path: Option<String>,
}

/// `requestReshare` input.
#[derive(Debug, Clone, Serialize)]
pub struct RequestReshare {
    /// Vault.
    pub vault_id: String,
    /// New threshold.
    pub new_threshold: i64,
    /// New signers.
    pub new_signers: Vec<SignerInput>,
}

/// Operation list filter.
#[derive(Debug, Clone, Default)]
pub struct OperationFilter {
    /// Vault.
    pub vault_id: Option<String>,
    /// State.
    pub state: Option<String>,
    /// Kind.
    pub kind: Option<String>,
    /// Max rows (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// The service.
pub struct Service {
    store: Store,
    clock: Clock,
    settings: Settings,
    notifier: Option<Notifier>,
    broadcaster: Broadcaster,
    verifications: Arc<tokio::sync::Semaphore>,
}

fn forbidden(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::Forbidden, msg)
}

fn request_hash<T: Serialize>(mutation: &str, input: &T) -> Result<String> {
    let json = serde_json::to_string(input).map_err(|e| Error::internal("idempotency", e))?;
    Ok(hex::encode(Sha256::digest(
        format!("{mutation}\n{json}").as_bytes(),
    )))
}

fn signers_from_input(input: &[SignerInput]) -> Result<Vec<Signer>> {
    input
        .iter()
        .map(|s| {
            let weight = u32::try_from(s.weight).map_err(|_| {
                Error::new(
                    ErrorCode::UnsupportedWeight,
                    format!(
                        "device {} has weight {}; only weight 1 is supported",
                        s.device_id, s.weight
                    ),
                )
            })?;
            Ok(Signer {
                device_id: DeviceId::from_string(s.device_id.clone()),
                weight,
            })
        })
        .collect()
}

/// Most presign operations open (Ready or InProgress) per vault.
pub const MAX_OPEN_PRESIGNATURES: usize = 100;

impl Service {
    /// A service over `store`.
    pub fn new(
        store: Store,
        clock: Clock,
        settings: Settings,
        notifier: Option<Notifier>,
        broadcaster: Broadcaster,
    ) -> Self {
        let verifications = Arc::new(tokio::sync::Semaphore::new(
            settings.max_concurrent_verifications.max(1),
        ));
        Self {
            store,
            clock,
            settings,
            notifier,
            broadcaster,
            verifications,
        }
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    // ------------------------------------------------------------------ auth

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
        Ok((client, Some(secret)))
    }

    async fn api_client(&self, p: &Principal, id: &str) -> Result<ApiClient> {
        match self.store.client(id).await? {
            Some((client, _)) if client.org_id == p.org_id => Ok(client),
            _ => Err(Error::not_found("API client", id)),
        }
    }

    /// OAuth2 client credentials → (access token, lifetime in seconds).
    pub async fn issue_token(&self, client_id: &str, client_secret: &str) -> Result<(Secret, i64)> {
        let bad = || Error::new(ErrorCode::Unauthenticated, "invalid client id or secret");
        // Argon2 is deliberately expensive: bound how many run at once.
        let _permit = tokio::time::timeout(
            std::time::Duration::from_millis(self.settings.verification_wait_ms),
            self.verifications.clone().acquire_owned(),
        )
        .await
        .map_err(|_| {
            Error::new(
                ErrorCode::TooManyRequests,
                "too many token requests at once; retry shortly",
            )
        })?
        .map_err(|e| Error::internal("semaphore", e))?;
        let found = self.store.client(client_id).await?;
        // Unknown ids are verified against a fixed hash: same cost and timing, so a
        // token request does not reveal which client ids exist.
        let (client, hash) = match found {
            Some((client, hash)) => (Some(client), hash),
            None => (None, auth::dummy_hash().to_owned()),
        };
        let secret = client_secret.to_owned();
        let ok = tokio::task::spawn_blocking(move || auth::verify_secret(&secret, &hash))
            .await
            .map_err(|e| Error::internal("argon2", e))?;
        let Some(client) = client.filter(|_| ok) else {
            return Err(bad());
        };
        let token = auth::new_token();
        let now = self.clock.now();
        self.store
            .insert_token(
                &auth::token_hash(token.expose()),
                &client,
                now + self.settings.token_ttl_ms,
                now,
            )
            .await?;
        Ok((token, self.settings.token_ttl_ms / 1000))
    }

    /// The principal of a bearer token.
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        self.store
            .token(&auth::token_hash(token), self.clock.now())
            .await?
            .ok_or_else(|| Error::new(ErrorCode::Unauthenticated, "invalid or expired access token"))
    }

    fn require_operator(p: &Principal) -> Result<()> {
        if p.role != Role::Operator {
            return Err(forbidden("this needs an operator API client"));
        }
        Ok(())
    }

    /// Loads a device the caller may act as: same organisation, signer role, and
    /// registered by this very API client ("a device can only act as itself").
    async fn acting_device(&self, c: &mut AnyConnection, p: &Principal, device_id: &str) -> Result<Device> {
        let device = self
            .store
            .device(c, &p.org_id, device_id)
            .await?
            .ok_or_else(|| Error::not_found("device", device_id))?;
        if p.role != Role::Signer {
            return Err(forbidden("only a signer API client can act as a device"));
        }
        if device.registered_by != p.client_id {
            return Err(forbidden(format!(
                "device {device_id} was registered by another API client; a device can only act as itself"
            )));
        }
        Ok(device)
    }

    // ------------------------------------------------------------------ idempotency

    async fn idempotent_existing(
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
    async fn idempotent_record(
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

    async fn idempotent_lost_race(
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

    // ------------------------------------------------------------------ devices and vaults

    /// Registers a device (signer clients).
    pub async fn register_device(
        &self,
        p: &Principal,
        input: RegisterDevice,
        key: Option<&str>,
    ) -> Result<Device> {
        if p.role != Role::Signer {
            return Err(forbidden("only a signer API client can register devices"));
        }
        let hash = request_hash("registerDevice", &input)?;
        if let Some(id) = self.idempotent_existing(p, key, "registerDevice", &hash).await? {
            return self.device(p, &id).await;
        }
        let now = self.clock.now();
        let device = new_device(
            &p.org_id,
            &p.client_id,
            &input.name,
            &input.kind,
            &input.identity_signing_key,
            &input.identity_encryption_key,
            now,
        )?;
        let mut tx = self.store.begin().await?;
        if let Err(e) = self.store.insert_device(&mut tx, &device).await {
            tx.rollback().await?;
            // A racing request with the same idempotency key registered these keys.
            if e.code() == ErrorCode::DuplicateKey {
                if let Some(id) = self.idempotent_existing(p, key, "registerDevice", &hash).await? {
                    return self.device(p, &id).await;
                }
            }
            return Err(e);
        }
        if !self
            .idempotent_record(&mut tx, p, key, "registerDevice", &hash, device.id.as_str())
            .await?
        {
            tx.rollback().await?;
            let id = self.idempotent_lost_race(p, key, "registerDevice", &hash).await?;
            return self.device(p, &id).await;
        }
        let ev = AuditEvent {
            event: "registered".to_owned(),
            actor: Some(p.client_id.to_string()),
            detail: serde_json::json!({"name": device.name, "kind": device.kind.as_str()}),
        };
        self.store
            .audit(&mut tx, &p.org_id, "device", device.id.as_str(), now, &[ev])
            .await?;
        tx.commit().await?;
        Ok(device)
    }

    /// A device of the caller's organisation.
    pub async fn device(&self, p: &Principal, id: &str) -> Result<Device> {
        self.store
            .device_by_id(&p.org_id, id)
            .await?
            .ok_or_else(|| Error::not_found("device", id))
    }

    /// All devices of the caller's organisation.
    pub async fn devices(&self, p: &Principal) -> Result<Vec<Device>> {
        self.store.devices(&p.org_id).await
    }

    /// A vault (after expiring due operations, so a lapsed keygen shows `Failed`).
    pub async fn vault(&self, p: &Principal, id: &str) -> Result<Vault> {
        self.sweep_expired(Some(&p.org_id)).await?;
        self.store
            .vault_by_id(&p.org_id, id)
            .await?
            .ok_or_else(|| Error::not_found("vault", id))
    }

    /// A vault as stored (no expiry sweep; for nested reads).
    pub async fn vault_as_stored(&self, p: &Principal, id: &str) -> Result<Vault> {
        self.store
            .vault_by_id(&p.org_id, id)
            .await?
            .ok_or_else(|| Error::not_found("vault", id))
    }

    /// All vaults (after expiring due operations).
    pub async fn vaults(&self, p: &Principal) -> Result<Vec<Vault>> {
        self.sweep_expired(Some(&p.org_id)).await?;
        self.store.vaults(&p.org_id).await
    }

    async fn check_devices_exist(
        &self,
        c: &mut AnyConnection,
        p: &Principal,
        signers: &[Signer],
    ) -> Result<()> {
        for s in signers {
            if self
                .store
                .device(c, &p.org_id, s.device_id.as_str())
                .await?
                .is_none()
            {
                return Err(Error::not_found("device", s.device_id.as_str()));
            }
        }
        Ok(())
    }

    async fn create_operation(
        &self,
        p: &Principal,
        mutation: &str,
        hash: &str,
        key: Option<&str>,
        new_vault: Option<&Vault>,
        op: Operation,
    ) -> Result<Operation> {
        let now = op.created_at;
        let mut tx = self.store.begin().await?;
        if let OperationDetails::Reshare {
            old_key_generation, ..
        } = &op.details
        {
            // One open reshare per vault, atomically: lock the vault row (PostgreSQL;
            // SQLite has one connection, so transactions are serialised anyway), then
            // re-check its state and the open reshares inside this transaction.
            let (vault, _) = self
                .store
                .vault(&mut tx, &p.org_id, op.vault_id.as_str(), true)
                .await?
                .ok_or_else(|| Error::not_found("vault", op.vault_id.as_str()))?;
            if vault.status != VaultStatus::Active || vault.key_generation != *old_key_generation {
                return Err(Error::invalid_state(format!(
                    "vault {} changed meanwhile ({}, key generation {}); request the reshare again",
                    vault.id,
                    vault.status.as_str(),
                    vault.key_generation
                )));
            }
            let open = self
                .store
                .open_operation_ids(&mut tx, &vault.id, Some(OperationKind::Reshare), Some(now))
                .await?;
            if let Some(other) = open.first() {
                return Err(Error::invalid_state(format!(
                    "reshare {other} of vault {} is still open; wait for it to finish",
                    vault.id
                )));
            }
        }
        if let OperationDetails::Presign { key_generation, .. } = &op.details {
            // A reshare completing meanwhile would leave this presignature at a generation
            // that no longer exists: re-check under the vault lock.
            let (vault, _) = self
                .store
                .vault(&mut tx, &p.org_id, op.vault_id.as_str(), true)
                .await?
                .ok_or_else(|| Error::not_found("vault", op.vault_id.as_str()))?;
            if vault.status != VaultStatus::Active || vault.key_generation != *key_generation {
                return Err(Error::invalid_state(format!(
                    "vault {} changed meanwhile (key generation {}); request the presignatures again",
                    vault.id, vault.key_generation
                )));
            }
            // Presign runs cost every member minutes of CPU: bound what is open at once.
            let open = self
                .store
                .open_operation_ids(&mut tx, &vault.id, Some(OperationKind::Presign), Some(now))
                .await?;
            if open.len() >= MAX_OPEN_PRESIGNATURES {
                return Err(Error::new(
                    ErrorCode::TooManyRequests,
                    format!(
                        "vault {} has {} presignatures being made already (at most {MAX_OPEN_PRESIGNATURES})",
                        vault.id,
                        open.len()
                    ),
                ));
            }
        }
        if let Some(v) = new_vault {
            self.store.insert_vault(&mut tx, v).await?;
            let ev = AuditEvent {
                event: "created".to_owned(),
                actor: Some(p.client_id.to_string()),
                detail: serde_json::json!({"name": v.name, "curve": v.curve.as_str(), "threshold": v.threshold,
                    "signers": v.signers.iter().map(|s| s.device_id.as_str()).collect::<Vec<_>>()}),
            };
            self.store
                .audit(&mut tx, &p.org_id, "vault", v.id.as_str(), now, &[ev])
                .await?;
        }
        self.store.insert_operation(&mut tx, &op).await?;
        if !self
            .idempotent_record(&mut tx, p, key, mutation, hash, op.id.as_str())
            .await?
        {
            tx.rollback().await?;
            let id = self.idempotent_lost_race(p, key, mutation, hash).await?;
            return self.operation(p, &id).await;
        }
        let ev = AuditEvent {
            event: "created".to_owned(),
            actor: Some(p.client_id.to_string()),
            detail: serde_json::json!({"kind": op.kind().as_str(), "vaultId": op.vault_id, "expiresAt": op.expires_at}),
        };
        self.store
            .audit(&mut tx, &p.org_id, "operation", op.id.as_str(), now, &[ev])
            .await?;
        tx.commit().await?;
        if let Some(n) = &self.notifier {
            let voters: Vec<DeviceId> = op.voters.iter().map(|v| v.device_id.clone()).collect();
            n.notify(&voters, &op.id, OperationState::AwaitingApproval);
        }
        Ok(op)
    }

    /// Creates a vault (Pending) and its Keygen operation.
    pub async fn create_vault(
        &self,
        p: &Principal,
        input: CreateVault,
        key: Option<&str>,
    ) -> Result<Operation> {
        Self::require_operator(p)?;
        let hash = request_hash("createVault", &input)?;
        if let Some(id) = self.idempotent_existing(p, key, "createVault", &hash).await? {
            return self.operation(p, &id).await;
        }
        let now = self.clock.now();
        let signers = signers_from_input(&input.signers)?;
        let vault = new_vault(
            &p.org_id,
            &input.name,
            &input.curve,
            input.threshold,
            signers,
            now,
        )?;
        {
            let mut tx = self.store.begin().await?;
            self.check_devices_exist(&mut tx, p, &vault.signers).await?;
            tx.rollback().await?;
        }
        let details = OperationDetails::Keygen {
            threshold: vault.threshold,
            signers: vault.signers.clone(),
        };
        let op = Operation::new(&vault, details, &p.client_id, now, &self.settings.expiry);
        self.create_operation(p, "createVault", &hash, key, Some(&vault), op)
            .await
    }

    /// Requests a signature from an Active vault.
    pub async fn request_signature(
        &self,
        p: &Principal,
        input: RequestSignature,
        key: Option<&str>,
    ) -> Result<Operation> {
        Self::require_operator(p)?;
        let hash = request_hash("requestSignature", &input)?;
        if let Some(id) = self
            .idempotent_existing(p, key, "requestSignature", &hash)
            .await?
        {
            return self.operation(p, &id).await;
        }
        let vault = self.vault(p, &input.vault_id).await?;
        if vault.status != VaultStatus::Active {
            return Err(Error::invalid_state(format!(
                "vault {} is {}, not Active",
                vault.id,
                vault.status.as_str()
            )));
        }
        let payload = parse_sign_payload(
            vault.curve,
            input.digest.as_deref(),
            input.eth_tx.as_deref(),
            input.message.as_deref(),
        )?;
        let derivation_path = match input.derivation_path.as_deref() {
            None => None,
            Some(_) if vault.curve == Curve::Ed25519 => {
                return Err(Error::new(
                    ErrorCode::InvalidDerivationPath,
                    "HD derivation is not supported for ed25519 vaults yet",
                ))
            }
            Some(path) => {
                let indexes = crate::crypto::parse_derivation_path(path)?;
                if indexes.is_empty() {
                    None
                } else {
                    Some(format!(
                        "m/{}",
                        indexes.iter().map(u32::to_string).collect::<Vec<_>>().join("/")
                    ))
                }
            }
        };
        let details = OperationDetails::Sign {
            threshold: vault.threshold,
            payload,
            derivation_path,
            key_generation: vault.key_generation,
            presignature: None,
        };
        let op = Operation::new(
            &vault,
            details,
            &p.client_id,
            self.clock.now(),
            &self.settings.expiry,
        );
        self.create_operation(p, "requestSignature", &hash, key, None, op)
            .await
    }

    /// Requests a reshare of an Active vault to a new signer set and threshold.
    pub async fn request_reshare(
        &self,
        p: &Principal,
        input: RequestReshare,
        key: Option<&str>,
    ) -> Result<Operation> {
        Self::require_operator(p)?;
        let hash = request_hash("requestReshare", &input)?;
        if let Some(id) = self.idempotent_existing(p, key, "requestReshare", &hash).await? {
            return self.operation(p, &id).await;
        }
        let vault = self.vault(p, &input.vault_id).await?;
        if vault.status != VaultStatus::Active {
            return Err(Error::invalid_state(format!(
                "vault {} is {}, not Active",
                vault.id,
                vault.status.as_str()
            )));
        }
        let new_signers = signers_from_input(&input.new_signers)?;
        let new_threshold = check_signer_set(&new_signers, input.new_threshold)?;
        {
            let mut tx = self.store.begin().await?;
            self.check_devices_exist(&mut tx, p, &new_signers).await?;
            tx.rollback().await?;
        }
        let details = OperationDetails::Reshare {
            old_threshold: vault.threshold,
            old_signers: vault.signers.clone(),
            new_threshold,
            new_signers,
            old_key_generation: vault.key_generation,
        };
        let op = Operation::new(
            &vault,
            details,
            &p.client_id,
            self.clock.now(),
            &self.settings.expiry,
        );
        self.create_operation(p, "requestReshare", &hash, key, None, op)
            .await
    }

    // ------------------------------------------------------------------ operations

    /// Applies `outcome` of a transition to storage inside `c`'s transaction.
    #[allow(clippy::too_many_arguments)]
    async fn persist(
        &self,
        c: &mut AnyConnection,
        op: &Operation,
        version: i64,
        vault: Option<(&mut Vault, i64)>,
        out: &Outcome,
        now: Millis,
    ) -> Result<()> {
        self.store
            .update_operation(c, op, version, out.new_vote.as_ref())
            .await?;
        self.store
            .audit(c, &op.org_id, "operation", op.id.as_str(), now, &out.events)
            .await?;
        if let (Some(update), Some((vault, vversion))) = (&out.vault_update, vault) {
            let event = match update {
                VaultUpdate::Activate {
                    public_key,
                    chain_code,
                    key_set_hash,
                } => {
                    vault.public_key = Some(public_key.clone());
                    vault.chain_code = *chain_code;
                    vault.key_set_hash = Some(*key_set_hash);
                    vault.status = VaultStatus::Active;
                    AuditEvent {
                        event: "activated".to_owned(),
                        actor: None,
                        detail: serde_json::json!({"operationId": op.id, "publicKey": hex::encode(public_key), "keySetHash": hex::encode(key_set_hash)}),
                    }
                }
                VaultUpdate::MarkFailed => {
                    vault.status = VaultStatus::Failed;
                    AuditEvent {
                        event: "failed".to_owned(),
                        actor: None,
                        detail: serde_json::json!({"operationId": op.id, "state": op.state.as_str()}),
                    }
                }
                VaultUpdate::Reshared {
                    signers,
                    threshold,
                    key_generation,
                    key_set_hash,
                } => {
                    vault.signers = signers.clone();
                    vault.threshold = *threshold;
                    vault.key_generation = *key_generation;
                    vault.key_set_hash = Some(*key_set_hash);
                    AuditEvent {
                        event: "reshared".to_owned(),
                        actor: None,
                        detail: serde_json::json!({"operationId": op.id, "threshold": threshold, "keyGeneration": key_generation, "keySetHash": hex::encode(key_set_hash),
                            "signers": signers.iter().map(|s| s.device_id.as_str()).collect::<Vec<_>>()}),
                    }
                }
            };
            self.store.update_vault(c, vault, vversion).await?;
            self.store
                .audit(c, &op.org_id, "vault", vault.id.as_str(), now, &[event])
                .await?;
            if matches!(update, VaultUpdate::Reshared { .. }) {
                self.fail_stale_operations(c, vault, &op.id, now).await?;
            }
        }
        Ok(())
    }

    /// After a completed reshare (same transaction, vault row locked): fails every
    /// open operation of the vault created at an older key generation.
    async fn fail_stale_operations(
        &self,
        c: &mut AnyConnection,
        vault: &Vault,
        completed: &OperationId,
        now: Millis,
    ) -> Result<()> {
        let ids = self.store.open_operation_ids(c, &vault.id, None, None).await?;
        for id in ids.iter().filter(|id| id.as_str() != completed.as_str()) {
            let Some((mut stale, version)) = self.store.operation(c, Some(&vault.org_id), id, true).await?
            else {
                continue;
            };
            if let Some(out) = stale.fail_if_stale(vault.key_generation, completed, now) {
                self.store.update_operation(c, &stale, version, None).await?;
                self.store
                    .audit(c, &stale.org_id, "operation", stale.id.as_str(), now, &out.events)
                    .await?;
            }
        }
        Ok(())
    }

    async fn notify_after(&self, op: &Operation, before: OperationState) {
        if op.state == OperationState::Ready && before != OperationState::Ready {
            if let Some(n) = &self.notifier {
                let members: Vec<DeviceId> = op.committee.iter().map(|m| m.device_id.clone()).collect();
                n.notify(&members, &op.id, OperationState::Ready);
            }
        }
    }

    /// Runs a device's action on an operation in one locked transaction.
    async fn act<F>(&self, p: &Principal, op_id: &str, device_id: &str, f: F) -> Result<Operation>
    where
        F: FnOnce(&mut Operation, &Vault, &DeviceId, Millis) -> Result<Outcome>,
    {
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let device = self.acting_device(&mut tx, p, device_id).await?;
        // Lock order everywhere: vault row, then operation rows.
        let (vault_id, _) = self
            .store
            .operation_vault_id(&mut tx, Some(&p.org_id), op_id)
            .await?
            .ok_or_else(|| Error::not_found("operation", op_id))?;
        let (mut vault, vversion) = self
            .store
            .vault(&mut tx, &p.org_id, &vault_id, true)
            .await?
            .ok_or_else(|| Error::internal("act", "operation without vault"))?;
        let (mut op, version) = self
            .store
            .operation(&mut tx, Some(&p.org_id), op_id, true)
            .await?
            .ok_or_else(|| Error::not_found("operation", op_id))?;
        let before = op.state;
        if let Some(out) = op.expire_if_due(now) {
            self.persist(&mut tx, &op, version, Some((&mut vault, vversion)), &out, now)
                .await?;
            tx.commit().await?;
            return Err(Error::new(
                ErrorCode::Expired,
                format!("operation {op_id} has expired"),
            ));
        }
        let out = match f(&mut op, &vault, &device.id, now) {
            Ok(out) => out,
            Err(e) => {
                tx.rollback().await?;
                return Err(e);
            }
        };
        // A signature that just became Ready takes a presignature of its committee, if one
        // is stocked, in the same transaction (so no presignature serves two signatures).
        if op.state == OperationState::Ready && before != OperationState::Ready && op.can_use_presignature() {
            self.assign_presignature(&mut tx, &mut op, now).await?;
        }
        self.persist(&mut tx, &op, version, Some((&mut vault, vversion)), &out, now)
            .await?;
        tx.commit().await?;
        self.notify_after(&op, before).await;
        match out.refusal {
            Some(e) => Err(e),
            None => Ok(op),
        }
    }

    async fn assign_presignature(
        &self,
        c: &mut AnyConnection,
        sign: &mut Operation,
        now: Millis,
    ) -> Result<()> {
        for id in self.store.presignature_ids(c, &sign.vault_id).await? {
            let Some((mut presign, version)) = self.store.operation(c, Some(&sign.org_id), &id, true).await?
            else {
                continue;
            };
            if presign.presignature_serves(sign) {
                let out = presign.consume_presignature(sign, now);
                self.persist(c, &presign, version, None, &out, now).await?;
                return Ok(());
            }
        }
        Ok(())
    }

    /// Requests `count` presignatures of a vault by a committee (Ready at once).
    pub async fn request_presignatures(
        &self,
        p: &Principal,
        vault_id: &str,
        committee: &[String],
        count: i32,
    ) -> Result<Vec<Operation>> {
        if !(1..=100).contains(&count) {
            return Err(Error::invalid_input("count must be between 1 and 100"));
        }
        let vault = self.vault(p, vault_id).await?;
        if vault.status != VaultStatus::Active {
            return Err(Error::invalid_state(format!(
                "vault {} is {}, not Active",
                vault.id,
                vault.status.as_str()
            )));
        }
        let committee: Vec<DeviceId> = committee.iter().map(DeviceId::from_string).collect();
        if p.role != Role::Operator {
            // A signer client may stock presignatures for committees with one of its devices.
            let mut own = false;
            for d in &committee {
                let mut tx = self.store.begin().await?;
                let dev = self.store.device(&mut tx, &p.org_id, d.as_str()).await?;
                tx.rollback().await?;
                own |= dev.is_some_and(|dev| dev.registered_by == p.client_id);
            }
            if !own {
                return Err(forbidden(
                    "a signer API client can request presignatures only for a committee with one of its devices",
                ));
            }
        }
        let mut out = Vec::new();
        for _ in 0..count {
            let op = Operation::new_presign(
                &vault,
                &committee,
                &p.client_id,
                self.clock.now(),
                &self.settings.expiry,
            )?;
            let op = self
                .create_operation(p, "requestPresignatures", "", None, None, op)
                .await?;
            self.notify_after(&op, OperationState::AwaitingApproval).await;
            out.push(op);
        }
        Ok(out)
    }

    /// A presign committee member's result.
    pub async fn submit_presign_result(
        &self,
        p: &Principal,
        op_id: &str,
        device_id: &str,
        fingerprint: &str,
    ) -> Result<Operation> {
        self.act(p, op_id, device_id, |op, vault, d, now| {
            op.submit_presign_result(vault, d, fingerprint, now)
        })
        .await
    }

    /// A device's vote.
    pub async fn vote(&self, p: &Principal, op_id: &str, device_id: &str, vote: &str) -> Result<Operation> {
        let choice = VoteChoice::parse(vote)?;
        self.act(p, op_id, device_id, |op, _, d, now| op.vote(d, choice, now))
            .await
    }

    /// A committee member reports it started the protocol.
    pub async fn start_operation(&self, p: &Principal, op_id: &str, device_id: &str) -> Result<Operation> {
        self.act(p, op_id, device_id, |op, _, d, now| op.start(d, now))
            .await
    }

    /// Keygen result.
    pub async fn submit_keygen_result(
        &self,
        p: &Principal,
        op_id: &str,
        device_id: &str,
        public_key: &str,
        chain_code: Option<&str>,
        key_set_hash: &str,
    ) -> Result<Operation> {
        self.act(p, op_id, device_id, |op, _, d, now| {
            op.submit_keygen_result(d, public_key, chain_code, key_set_hash, now)
        })
        .await
    }

    /// Reshare result.
    pub async fn submit_reshare_result(
        &self,
        p: &Principal,
        op_id: &str,
        device_id: &str,
        public_key: &str,
        key_set_hash: &str,
    ) -> Result<Operation> {
        self.act(p, op_id, device_id, |op, vault, d, now| {
            if let OperationDetails::Reshare {
                old_key_generation, ..
            } = &op.details
            {
                if *old_key_generation != vault.key_generation {
                    return Err(Error::invalid_state(
                        "the vault was reshared by another operation meanwhile",
                    ));
                }
            }
            op.submit_reshare_result(vault, d, public_key, key_set_hash, now)
        })
        .await
    }

    /// Signature result; broadcasts a completed eth_tx when an RPC is configured.
    pub async fn submit_signature(
        &self,
        p: &Principal,
        op_id: &str,
        device_id: &str,
        signature: &str,
        recovery_id: Option<i64>,
    ) -> Result<Operation> {
        let op = self
            .act(p, op_id, device_id, |op, vault, d, now| {
                op.submit_signature(vault, d, signature, recovery_id, now)
            })
            .await?;
        self.broadcast(op).await
    }

    async fn broadcast(&self, op: Operation) -> Result<Operation> {
        let Some(chain_id) = op.eth_chain_id() else {
            return Ok(op);
        };
        let Some(raw) = op.result.as_ref().and_then(|r| r.raw_transaction.clone()) else {
            return Ok(op);
        };
        if op.state != OperationState::Completed || !self.broadcaster.has(chain_id) {
            return Ok(op);
        }
        let sent = self.broadcaster.send(chain_id, &raw).await;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let (mut op, version) = self
            .store
            .operation(&mut tx, Some(&op.org_id), op.id.as_str(), true)
            .await?
            .ok_or_else(|| Error::internal("broadcast", "operation vanished"))?;
        let event = match (&sent, op.result.as_mut()) {
            (Ok(hash), Some(r)) => {
                r.tx_hash = Some(hash.clone());
                AuditEvent {
                    event: "broadcast".to_owned(),
                    actor: None,
                    detail: serde_json::json!({"chainId": chain_id, "txHash": hash}),
                }
            }
            (Err(e), Some(r)) => {
                r.broadcast_error = Some(e.clone());
                AuditEvent {
                    event: "broadcast_failed".to_owned(),
                    actor: None,
                    detail: serde_json::json!({"chainId": chain_id, "error": e}),
                }
            }
            (_, None) => return Err(Error::internal("broadcast", "no result")),
        };
        op.updated_at = now;
        let out = Outcome {
            events: vec![event],
            ..Outcome::default()
        };
        self.persist(&mut tx, &op, version, None, &out, now).await?;
        tx.commit().await?;
        Ok(op)
    }

    /// A committee member reports a protocol failure.
    pub async fn report_failure(
        &self,
        p: &Principal,
        op_id: &str,
        device_id: &str,
        reason: &str,
        culprits: Vec<String>,
    ) -> Result<Operation> {
        let culprits: Vec<DeviceId> = culprits.into_iter().map(DeviceId::from_string).collect();
        self.act(p, op_id, device_id, |op, _, d, now| {
            op.report_failure(d, reason, culprits, now)
        })
        .await
    }

    // ------------------------------------------------------------------ expiry and reads

    /// Expires one operation if it is due (locked).
    async fn expire_one(&self, op_id: &str) -> Result<()> {
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        // Lock order: vault row, then operation row.
        let Some((vault_id, org)) = self.store.operation_vault_id(&mut tx, None, op_id).await? else {
            return Ok(());
        };
        let mut vault = self.store.vault(&mut tx, &org, &vault_id, true).await?;
        let Some((mut op, version)) = self.store.operation(&mut tx, None, op_id, true).await? else {
            return Ok(());
        };
        let Some(out) = op.expire_if_due(now) else {
            return Ok(());
        };
        let vault_ref = vault.as_mut().map(|(v, ver)| (v, *ver));
        self.persist(&mut tx, &op, version, vault_ref, &out, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Expires every due operation (of one organisation, or all). Returns how many.
    pub async fn sweep_expired(&self, org: Option<&OrgId>) -> Result<usize> {
        let ids = self.store.due_for_expiry(org, self.clock.now()).await?;
        for id in &ids {
            self.expire_one(id).await?;
        }
        Ok(ids.len())
    }

    /// An operation (expired lazily on read).
    pub async fn operation(&self, p: &Principal, id: &str) -> Result<Operation> {
        let op = self
            .store
            .operation_by_id(&p.org_id, id)
            .await?
            .ok_or_else(|| Error::not_found("operation", id))?;
        if !op.state.is_final() && self.clock.now() >= op.expires_at {
            self.expire_one(id).await?;
            return self
                .store
                .operation_by_id(&p.org_id, id)
                .await?
                .ok_or_else(|| Error::not_found("operation", id));
        }
        Ok(op)
    }

    /// Operations matching `filter`, newest first.
    pub async fn operations(&self, p: &Principal, filter: OperationFilter) -> Result<Vec<Operation>> {
        self.sweep_expired(Some(&p.org_id)).await?;
        let states = match filter.state.as_deref() {
            Some(s) => vec![OperationState::parse(s)?],
            None => vec![],
        };
        let kind = filter.kind.as_deref().map(OperationKind::parse).transpose()?;
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        self.store
            .operations(&p.org_id, filter.vault_id.as_deref(), &states, kind, limit)
            .await
    }

    /// Operations the device may still vote on.
    pub async fn operations_awaiting_vote(&self, p: &Principal, device_id: &str) -> Result<Vec<Operation>> {
        let device = DeviceId::from_string(self.device(p, device_id).await?.id.to_string());
        self.sweep_expired(Some(&p.org_id)).await?;
        let ops = self
            .store
            .operations(&p.org_id, None, &[OperationState::AwaitingApproval], None, 10_000)
            .await?;
        Ok(ops
            .into_iter()
            .filter(|op| op.voter(&device).is_some() && !op.votes.iter().any(|v| v.device_id == device))
            .rev()
            .collect())
    }

    /// Operations whose committee includes the device and that must run (Ready or InProgress).
    pub async fn operations_ready(&self, p: &Principal, device_id: &str) -> Result<Vec<Operation>> {
        let device = DeviceId::from_string(self.device(p, device_id).await?.id.to_string());
        self.sweep_expired(Some(&p.org_id)).await?;
        let ops = self
            .store
            .operations(
                &p.org_id,
                None,
                &[OperationState::Ready, OperationState::InProgress],
                None,
                10_000,
            )
            .await?;
        Ok(ops
            .into_iter()
            .filter(|op| op.committee_member(&device).is_some())
            .rev()
            .collect())
    }

    /// Audit log entries.
    pub async fn audit_log(&self, p: &Principal, entity: Option<&str>) -> Result<Vec<AuditEntry>> {
        self.store.audit_log(&p.org_id, entity).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
