//! A client of the coordinator's API (`APIBaseURL`): OAuth2 client credentials at
//! `/oauth/token`, GraphQL at `/graphql` (schema: `crates/coordinator/schema.graphql`).
//!
//! The access token is fetched on first use, kept until shortly before it expires, and
//! fetched again once when the coordinator answers `UNAUTHENTICATED`. Errors carry the
//! GraphQL `extensions.code` so callers can tell "already done" from "failed". The client
//! secret and the token never appear in an error or a log.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use url::Url;
use zeroize::Zeroizing;

/// Time allowed for one HTTP request to the coordinator.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A token is renewed this long before the coordinator said it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(30);

/// A failed call to the coordinator.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The coordinator could not be reached or answered garbage.
    #[error("coordinator unreachable: {0}")]
    Unreachable(String),
    /// The client credentials were refused.
    #[error("the coordinator refused the client credentials (AuthClientId/AuthClientSecret): {0}")]
    Credentials(String),
    /// The coordinator refused the request with a stable code.
    #[error("coordinator refused ({code}): {message}")]
    Refused {
        /// `extensions.code`, e.g. `INVALID_STATE`.
        code: String,
        /// The coordinator's message.
        message: String,
    },
}

impl ApiError {
    /// The coordinator's error code, if it refused the request.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether retrying later may help (network trouble, overload).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Unreachable(_) => true,
            ApiError::Refused { code, .. } => matches!(code.as_str(), "TOO_MANY_REQUESTS" | "INTERNAL"),
            ApiError::Credentials(_) => false,
        }
    }
}

struct Token {
    value: Zeroizing<String>,
    renew_at: Instant,
}

/// A coordinator client authenticated as one API client.
pub struct CoordinatorClient {
    shown: String,
    http: reqwest::Client,
    graphql: Url,
    token_url: Url,
    client_id: String,
    client_secret: Zeroizing<String>,
    token: Mutex<Option<Token>>,
}

impl std::fmt::Debug for CoordinatorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorClient")
            .field("graphql", &crate::config::shown_url(&self.graphql))
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl CoordinatorClient {
    /// A client of the coordinator at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &Url, client_id: &str, client_secret: Zeroizing<String>) -> Result<Self, ApiError> {
        let join = |path: &str| {
            let mut u = base.clone();
            let prefix = u.path().trim_end_matches('/').to_owned();
            u.set_path(&format!("{prefix}{path}"));
            u.set_query(None);
            u
        };
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ApiError::Unreachable(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            shown: crate::config::shown_url(base),
            http,
            graphql: join("/graphql"),
            token_url: join("/oauth/token"),
            client_id: client_id.to_owned(),
            client_secret,
            token: Mutex::new(None),
        })
    }

    fn unreachable(&self, e: reqwest::Error) -> ApiError {
        // The whole cause chain ("… tcp connect error: Connection refused"), without the URL
        // (ours carry no credentials, but a query could).
        let e = e.without_url();
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        ApiError::Unreachable(format!("{} ({text})", self.shown))
    }

    async fn token(&self, force: bool) -> Result<Zeroizing<String>, ApiError> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            if !force && Instant::now() < t.renew_at {
                return Ok(t.value.clone());
            }
        }
        #[derive(Deserialize)]
        struct TokenReply {
            access_token: String,
            expires_in: u64,
        }
        let resp = self
            .http
            .post(self.token_url.clone())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.as_str()),
            ])
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::BAD_REQUEST {
            let reason = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error_description"].as_str().map(str::to_owned))
                .unwrap_or_else(|| status.to_string());
            return Err(ApiError::Credentials(reason));
        }
        if !status.is_success() {
            return Err(ApiError::Unreachable(format!("/oauth/token answered {status}")));
        }
        let body = Zeroizing::new(body.to_vec());
        let reply: TokenReply = serde_json::from_slice(&body)
            .map_err(|_| ApiError::Unreachable("/oauth/token reply is not the expected JSON".into()))?;
        let ttl = Duration::from_secs(reply.expires_in).saturating_sub(TOKEN_MARGIN);
        let value = Zeroizing::new(reply.access_token);
        *guard = Some(Token {
            value: value.clone(),
            renew_at: Instant::now() + ttl,
        });
        Ok(value)
    }

    /// Runs a GraphQL document and returns its `data`.
    pub async fn execute(&self, query: &str, variables: Value) -> Result<Value, ApiError> {
        let body = json!({"query": query, "variables": variables});
        let mut renewed = false;
        loop {
            let token = self.token(renewed).await?;
            let resp = self
                .http
                .post(self.graphql.clone())
                .bearer_auth(token.as_str())
                .json(&body)
                .send()
                .await
                .map_err(|e| self.unreachable(e))?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|e| self.unreachable(e))?;
            let mut reply: Value = serde_json::from_slice(&bytes).map_err(|_| {
                ApiError::Unreachable(format!("/graphql answered {status} with a body that is not JSON"))
            })?;
            if let Some(first) = reply["errors"].as_array().and_then(|e| e.first()) {
                let code = first["extensions"]["code"]
                    .as_str()
                    .unwrap_or("UNKNOWN")
                    .to_owned();
                let message = first["message"].as_str().unwrap_or_default().to_owned();
                if code == "UNAUTHENTICATED" && !renewed {
                    renewed = true;
                    continue;
                }
                return Err(ApiError::Refused { code, message });
            }
            if !status.is_success() {
                return Err(ApiError::Unreachable(format!("/graphql answered {status}")));
            }
            return Ok(reply["data"].take());
        }
    }

    /// Runs a GraphQL document and decodes `data.<field>`.
    pub async fn field<T: DeserializeOwned>(
        &self,
        query: &str,
        variables: Value,
        field: &str,
    ) -> Result<T, ApiError> {
        let mut data = self.execute(query, variables).await?;
        serde_json::from_value(data[field].take()).map_err(|e| {
            ApiError::Unreachable(format!("unexpected `{field}` in the coordinator's reply: {e}"))
        })
    }

    // ---- queries and mutations a device needs ----

    /// `registerDevice`, idempotent on `idempotency_key`.
    pub async fn register_device(
        &self,
        name: &str,
        signing_key_hex: &str,
        encryption_key_hex: &str,
        idempotency_key: &str,
    ) -> Result<Device, ApiError> {
        let q = format!(
            "mutation($i: RegisterDeviceInput!, $k: String) {{ registerDevice(input: $i, idempotencyKey: $k) {{ {DEVICE_FIELDS} }} }}"
        );
        let vars = json!({"i": {"name": name, "kind": "virtual", "identitySigningKey": signing_key_hex, "identityEncryptionKey": encryption_key_hex}, "k": idempotency_key});
        self.field(&q, vars, "registerDevice").await
    }

    /// Every device of the organisation.
    pub async fn devices(&self) -> Result<Vec<Device>, ApiError> {
        self.field(
            &format!("{{ devices {{ {DEVICE_FIELDS} }} }}"),
            json!({}),
            "devices",
        )
        .await
    }

    /// A vault.
    pub async fn vault(&self, id: &str) -> Result<Vault, ApiError> {
        let q = format!("query($id: ID!) {{ vault(id: $id) {{ {VAULT_FIELDS} }} }}");
        self.field(&q, json!({"id": id}), "vault").await
    }

    /// An operation.
    pub async fn operation(&self, id: &str) -> Result<Operation, ApiError> {
        let q = format!("query($id: ID!) {{ operation(id: $id) {{ {OPERATION_FIELDS} }} }}");
        self.field(&q, json!({"id": id}), "operation").await
    }

    /// Operations this device may still vote on, oldest first.
    pub async fn operations_awaiting_vote(&self, device: &str) -> Result<Vec<Operation>, ApiError> {
        let q = format!("query($d: ID!) {{ operationsAwaitingVote(deviceId: $d) {{ {OPERATION_FIELDS} }} }}");
        self.field(&q, json!({"d": device}), "operationsAwaitingVote")
            .await
    }

    /// Ready or running operations whose committee includes this device, oldest first.
    pub async fn operations_ready(&self, device: &str) -> Result<Vec<Operation>, ApiError> {
        let q = format!("query($d: ID!) {{ operationsReady(deviceId: $d) {{ {OPERATION_FIELDS} }} }}");
        self.field(&q, json!({"d": device}), "operationsReady").await
    }

    async fn act(&self, mutation: &str, args: &str, vars: Value) -> Result<Operation, ApiError> {
        let q = format!("mutation({args}) {{ {mutation} {{ {OPERATION_FIELDS} }} }}");
        let name = mutation.split('(').next().unwrap_or(mutation);
        self.field(&q, vars, name).await
    }

    /// `vote`: `approve` | `reject` | `abstain`.
    pub async fn vote(&self, op: &str, device: &str, vote: &str) -> Result<Operation, ApiError> {
        self.act(
            "vote(operationId: $o, deviceId: $d, vote: $v)",
            "$o: ID!, $d: ID!, $v: String!",
            json!({"o": op, "d": device, "v": vote}),
        )
        .await
    }

    /// `startOperation`.
    pub async fn start_operation(&self, op: &str, device: &str) -> Result<Operation, ApiError> {
        self.act(
            "startOperation(operationId: $o, deviceId: $d)",
            "$o: ID!, $d: ID!",
            json!({"o": op, "d": device}),
        )
        .await
    }

    /// `submitKeygenResult`.
    pub async fn submit_keygen_result(
        &self,
        op: &str,
        device: &str,
        public_key: &str,
        chain_code: Option<&str>,
        key_set_hash: &str,
    ) -> Result<Operation, ApiError> {
        self.act(
            "submitKeygenResult(operationId: $o, deviceId: $d, publicKey: $p, chainCode: $c, keySetHash: $h)",
            "$o: ID!, $d: ID!, $p: String!, $c: String, $h: String!",
            json!({"o": op, "d": device, "p": public_key, "c": chain_code, "h": key_set_hash}),
        )
        .await
    }

    /// `submitReshareResult`.
    pub async fn submit_reshare_result(
        &self,
        op: &str,
        device: &str,
        public_key: &str,
        key_set_hash: &str,
    ) -> Result<Operation, ApiError> {
        self.act(
            "submitReshareResult(operationId: $o, deviceId: $d, publicKey: $p, keySetHash: $h)",
            "$o: ID!, $d: ID!, $p: String!, $h: String!",
            json!({"o": op, "d": device, "p": public_key, "h": key_set_hash}),
        )
        .await
    }

    /// `submitSignature`.
    pub async fn submit_signature(
        &self,
        op: &str,
        device: &str,
        signature: &str,
        recovery_id: Option<u8>,
    ) -> Result<Operation, ApiError> {
        self.act(
            "submitSignature(operationId: $o, deviceId: $d, signature: $s, recoveryId: $r)",
            "$o: ID!, $d: ID!, $s: String!, $r: Int",
            json!({"o": op, "d": device, "s": signature, "r": recovery_id}),
        )
        .await
    }

    /// Every vault of the organisation.
    pub async fn vaults(&self) -> Result<Vec<Vault>, ApiError> {
        self.field(&format!("{{ vaults {{ {VAULT_FIELDS} }} }}"), json!({}), "vaults")
            .await
    }

    /// Operations of a vault of one kind, newest first (at most 1000).
    pub async fn operations_of(&self, vault: &str, kind: &str) -> Result<Vec<Operation>, ApiError> {
        let q = format!("query($f: OperationFilter) {{ operations(filter: $f) {{ {OPERATION_FIELDS} }} }}");
        self.field(
            &q,
            json!({"f": {"vaultId": vault, "kind": kind, "limit": 1000}}),
            "operations",
        )
        .await
    }

    /// `requestPresignatures`.
    pub async fn request_presignatures(
        &self,
        vault: &str,
        committee: &[String],
        count: u32,
    ) -> Result<Vec<Operation>, ApiError> {
        let q = format!(
            "mutation($v: ID!, $c: [ID!]!, $n: Int!) {{ requestPresignatures(vaultId: $v, committee: $c, count: $n) {{ {OPERATION_FIELDS} }} }}"
        );
        self.field(
            &q,
            json!({"v": vault, "c": committee, "n": count}),
            "requestPresignatures",
        )
        .await
    }

    /// `submitPresignResult`.
    pub async fn submit_presign_result(
        &self,
        op: &str,
        device: &str,
        fingerprint: &str,
    ) -> Result<Operation, ApiError> {
        self.act(
            "submitPresignResult(operationId: $o, deviceId: $d, fingerprint: $f)",
            "$o: ID!, $d: ID!, $f: String!",
            json!({"o": op, "d": device, "f": fingerprint}),
        )
        .await
    }

    /// `reportFailure`.
    pub async fn report_failure(
        &self,
        op: &str,
        device: &str,
        reason: &str,
        culprits: &[String],
    ) -> Result<Operation, ApiError> {
        self.act(
            "reportFailure(operationId: $o, deviceId: $d, reason: $r, culpritDeviceIds: $c)",
            "$o: ID!, $d: ID!, $r: String!, $c: [ID!]",
            json!({"o": op, "d": device, "r": reason, "c": culprits}),
        )
        .await
    }
}

const DEVICE_FIELDS: &str = "id organisationId name kind identitySigningKey identityEncryptionKey status";
const VAULT_FIELDS: &str = "id organisationId name curve threshold signers { deviceId weight index } publicKey chainCode keyGeneration keySetHash status ethereumAddress";
const OPERATION_FIELDS: &str = "id organisationId kind state vaultId curve nonce createdAt updatedAt expiresAt \
    vault { id organisationId name curve threshold signers { deviceId weight index } publicKey chainCode keyGeneration keySetHash status ethereumAddress } \
    committee { deviceId name identitySigningKey identityEncryptionKey index oldIndex newIndex } \
    submittedDeviceIds \
    keygen { threshold signers { deviceId weight index } } \
    reshare { oldThreshold oldSigners { deviceId weight index } newThreshold newSigners { deviceId weight index } oldKeyGeneration } \
    sign { payloadKind payload signingDigest derivationPath chainId keyGeneration presignatureId } \
    presign { keyGeneration consumedBy } \
    result { publicKey chainCode keyGeneration keySetHash signature recoveryId submittedBy rawTransaction txHash broadcastError } \
    failure { reason culpritDeviceIds reportedBy } rejectionReason startedBy";

/// A device as the coordinator knows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Id.
    pub id: String,
    /// Organisation.
    pub organisation_id: String,
    /// Name.
    pub name: String,
    /// `virtual` | `manual`.
    pub kind: String,
    /// Hex Ed25519 identity key.
    pub identity_signing_key: String,
    /// Hex X25519 identity key.
    pub identity_encryption_key: String,
    /// `Active`.
    pub status: String,
}

/// A member of a signer set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultSigner {
    /// Device.
    pub device_id: String,
    /// Weight (1).
    pub weight: u32,
    /// Share index.
    pub index: u16,
}

/// A vault.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vault {
    /// Id.
    pub id: String,
    /// Organisation.
    pub organisation_id: String,
    /// Name.
    pub name: String,
    /// `secp256k1` | `ed25519`.
    pub curve: String,
    /// Threshold.
    pub threshold: u16,
    /// Signers in index order.
    pub signers: Vec<VaultSigner>,
    /// Hex public key once Active.
    pub public_key: Option<String>,
    /// Hex chain code (secp256k1).
    pub chain_code: Option<String>,
    /// Current key generation.
    pub key_generation: u64,
    /// Hex key-set hash once Active.
    pub key_set_hash: Option<String>,
    /// `Pending` | `Active` | `Failed`.
    pub status: String,
    /// Root Ethereum address (secp256k1).
    pub ethereum_address: Option<String>,
}

/// A committee member.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitteeMember {
    /// Device.
    pub device_id: String,
    /// Name.
    pub name: String,
    /// Hex Ed25519 identity key.
    pub identity_signing_key: String,
    /// Hex X25519 identity key.
    pub identity_encryption_key: String,
    /// Sign/keygen index.
    pub index: Option<u16>,
    /// Old index (sign, reshare).
    pub old_index: Option<u16>,
    /// New index (keygen, reshare).
    pub new_index: Option<u16>,
}

/// Keygen details.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KeygenDetails {
    /// Threshold.
    pub threshold: u16,
    /// Signers by index.
    pub signers: Vec<VaultSigner>,
}

/// Reshare details.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReshareDetails {
    /// Old threshold.
    pub old_threshold: u16,
    /// Old signers by index.
    pub old_signers: Vec<VaultSigner>,
    /// New threshold.
    pub new_threshold: u16,
    /// New signers by index.
    pub new_signers: Vec<VaultSigner>,
    /// The generation being reshared.
    pub old_key_generation: u64,
}

/// Sign details.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignDetails {
    /// `digest` | `eth_tx` | `message`.
    pub payload_kind: String,
    /// Hex payload.
    pub payload: String,
    /// Hex digest the ECDSA committee signs (checked locally, never trusted).
    pub signing_digest: Option<String>,
    /// BIP-32 path.
    pub derivation_path: Option<String>,
    /// Chain id of an eth_tx.
    pub chain_id: Option<String>,
    /// Key generation to sign with.
    pub key_generation: u64,
    /// The presignature (a Presign operation's id) the committee uses, if any.
    pub presignature_id: Option<String>,
}

/// Presign details.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresignDetails {
    /// Key generation presigned with.
    pub key_generation: u64,
    /// The sign operation that consumed it.
    pub consumed_by: Option<String>,
}

/// The accepted result.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationResult {
    /// Keygen/reshare public key.
    pub public_key: Option<String>,
    /// Keygen chain code.
    pub chain_code: Option<String>,
    /// Reshare: the new key generation.
    pub key_generation: Option<u64>,
    /// Keygen/reshare key-set hash.
    pub key_set_hash: Option<String>,
    /// Signature hex.
    pub signature: Option<String>,
    /// Recovery id.
    pub recovery_id: Option<u8>,
    /// Submitting device.
    pub submitted_by: Option<String>,
    /// Signed raw transaction.
    pub raw_transaction: Option<String>,
    /// Broadcast hash.
    pub tx_hash: Option<String>,
    /// Broadcast error.
    pub broadcast_error: Option<String>,
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// Reason.
    pub reason: String,
    /// Devices named.
    pub culprit_device_ids: Vec<String>,
    /// Reporting device.
    pub reported_by: Option<String>,
}

/// An operation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// Id.
    pub id: String,
    /// Organisation.
    pub organisation_id: String,
    /// `Keygen` | `Reshare` | `Sign`.
    pub kind: String,
    /// State name.
    pub state: String,
    /// Vault id.
    pub vault_id: String,
    /// The vault now.
    pub vault: Vault,
    /// Curve.
    pub curve: String,
    /// Hex nonce for the execution id.
    pub nonce: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// RFC 3339.
    pub expires_at: String,
    /// The committee (empty before Ready).
    pub committee: Vec<CommitteeMember>,
    /// Devices that submitted keygen/reshare results.
    pub submitted_device_ids: Vec<String>,
    /// Keygen details.
    pub keygen: Option<KeygenDetails>,
    /// Reshare details.
    pub reshare: Option<ReshareDetails>,
    /// Sign details.
    pub sign: Option<SignDetails>,
    /// Presign details.
    pub presign: Option<PresignDetails>,
    /// Result.
    pub result: Option<OperationResult>,
    /// Failure.
    pub failure: Option<Failure>,
    /// Why it was rejected.
    pub rejection_reason: Option<String>,
    /// Who started it.
    pub started_by: Option<String>,
}

impl Operation {
    /// Whether the operation reached a final state.
    pub fn is_final(&self) -> bool {
        matches!(
            self.state.as_str(),
            "Completed" | "Failed" | "Rejected" | "Expired"
        )
    }
}
