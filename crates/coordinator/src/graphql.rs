//! The GraphQL API (async-graphql). Every error carries `extensions.code`.
//!
//! Conventions: ids are `ID`; byte strings are lowercase hex without `0x` (except
//! `rawTransaction`, `0x…`); times are RFC 3339 strings; states, kinds and curves are
//! strings (`AwaitingApproval`, `Sign`, `secp256k1`…) so that unknown values get the
//! coordinator's own error codes (e.g. `UNKNOWN_CURVE`).

use std::sync::Arc;

use async_graphql::{
    Context, EmptySubscription, ErrorExtensions, InputObject, Object, Schema, SimpleObject, ID,
};

use crate::domain::{
    self, Curve, Device, Millis, Operation, OperationDetails, OperationKind, Principal, Vault,
};
use crate::error::{Error, ErrorCode};
use crate::service::{self, Service};
use crate::store::AuditEntry;

/// The schema type.
pub type CoordinatorSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Who called (set per HTTP request by the server).
#[derive(Debug, Clone)]
pub struct AuthState(pub Result<Principal, Error>);

/// Builds the schema; `service` is `None` only for exporting the SDL.
pub fn build_schema(service: Option<Arc<Service>>) -> CoordinatorSchema {
    let mut b = Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .limit_depth(12)
        .limit_complexity(5000);
    if let Some(s) = service {
        b = b.data(s);
    }
    b.finish()
}

/// The schema in SDL, as committed in `schema.graphql`.
pub fn schema_sdl() -> String {
    build_schema(None).sdl()
}

type GqlResult<T> = async_graphql::Result<T>;

fn gql(e: Error) -> async_graphql::Error {
    let code = e.code().as_str();
    async_graphql::Error::new(e.message().to_owned()).extend_with(|_, ext| ext.set("code", code))
}

fn ctx_service<'a>(ctx: &Context<'a>) -> GqlResult<&'a Arc<Service>> {
    ctx.data::<Arc<Service>>()
        .map_err(|_| gql(Error::internal("graphql", "no service")))
}

fn ctx_principal<'a>(ctx: &Context<'a>) -> GqlResult<&'a Principal> {
    match ctx.data_opt::<AuthState>() {
        Some(AuthState(Ok(p))) => Ok(p),
        Some(AuthState(Err(e))) => Err(gql(e.clone())),
        None => Err(gql(Error::new(
            ErrorCode::Unauthenticated,
            "missing bearer token; get one from POST /oauth/token",
        ))),
    }
}

fn time(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The caller.
#[derive(SimpleObject)]
pub struct Me {
    client_id: ID,
    organisation_id: ID,
    /// `operator` | `signer`.
    role: String,
}

/// A device.
pub struct DeviceObj(Device);

#[Object(name = "Device")]
impl DeviceObj {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn organisation_id(&self) -> ID {
        ID(self.0.org_id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// `virtual` | `manual`.
    async fn kind(&self) -> &str {
        self.0.kind.as_str()
    }
    /// Hex of the 32-byte Ed25519 identity public key.
    async fn identity_signing_key(&self) -> String {
        hex::encode(self.0.identity_signing_key)
    }
    /// Hex of the 32-byte X25519 identity public key.
    async fn identity_encryption_key(&self) -> String {
        hex::encode(self.0.identity_encryption_key)
    }
    /// `Active`.
    async fn status(&self) -> &str {
        self.0.status.as_str()
    }
    /// The signer API client that registered it.
    async fn registered_by(&self) -> ID {
        ID(self.0.registered_by.to_string())
    }
    async fn created_at(&self) -> String {
        time(self.0.created_at)
    }
}

/// A member of a signer set.
#[derive(SimpleObject)]
pub struct VaultSigner {
    device_id: ID,
    weight: i32,
    /// Position in the set (the share index).
    index: i32,
}

fn signers(list: &[domain::Signer]) -> Vec<VaultSigner> {
    list.iter()
        .enumerate()
        .map(|(i, s)| VaultSigner {
            device_id: ID(s.device_id.to_string()),
            weight: i32::try_from(s.weight).unwrap_or(i32::MAX),
            index: i32::try_from(i).unwrap_or(i32::MAX),
        })
        .collect()
}

/// A vault.
pub struct VaultObj(Vault);

#[Object(name = "Vault")]
impl VaultObj {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn organisation_id(&self) -> ID {
        ID(self.0.org_id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// `secp256k1` | `ed25519`.
    async fn curve(&self) -> &str {
        self.0.curve.as_str()
    }
    async fn threshold(&self) -> i32 {
        i32::from(self.0.threshold)
    }
    async fn signers(&self) -> Vec<VaultSigner> {
        signers(&self.0.signers)
    }
    /// Hex: SEC1 compressed (secp256k1) or 32 bytes (ed25519); null until Active.
    async fn public_key(&self) -> Option<String> {
        self.0.public_key.as_ref().map(hex::encode)
    }
    /// Hex, 32 bytes, secp256k1 only.
    async fn chain_code(&self) -> Option<String> {
        self.0.chain_code.map(hex::encode)
    }
    async fn key_generation(&self) -> i32 {
        i32::try_from(self.0.key_generation).unwrap_or(i32::MAX)
    }
    /// Hex, 32 bytes: SHA-256 over the concatenation, in share-index order, of every
    /// party's public key share in compressed encoding (secp256k1: 33-byte SEC1
    /// compressed; ed25519: 32 bytes) of the current key generation; null until Active.
    async fn key_set_hash(&self) -> Option<String> {
        self.0.key_set_hash.map(hex::encode)
    }
    /// `Pending` | `Active` | `Failed`.
    async fn status(&self) -> &str {
        self.0.status.as_str()
    }
    /// Ethereum address of the root key (secp256k1, Active).
    async fn ethereum_address(&self) -> Option<String> {
        match (self.0.curve, &self.0.public_key) {
            (Curve::Secp256k1, Some(pk)) => crate::crypto::eth_address(pk),
            _ => None,
        }
    }
    async fn created_at(&self) -> String {
        time(self.0.created_at)
    }
}

/// A device entitled to vote.
#[derive(SimpleObject)]
pub struct Voter {
    device_id: ID,
    weight: i32,
    /// Index in the current signer set (key holders: sign, reshare).
    old_index: Option<i32>,
    /// Index in the new signer set (keygen, reshare).
    new_index: Option<i32>,
}

/// A vote.
#[derive(SimpleObject)]
#[graphql(name = "Vote")]
pub struct VoteObj {
    device_id: ID,
    /// `approve` | `reject` | `abstain`.
    vote: String,
    weight: i32,
    at: String,
}

/// A committee member, with what a device needs to address it.
#[derive(SimpleObject)]
pub struct CommitteeMember {
    device_id: ID,
    name: String,
    identity_signing_key: String,
    identity_encryption_key: String,
    /// Share index for sign (old index) and keygen (new index); null for reshare.
    index: Option<i32>,
    /// Reshare/sign: index in the old signer set if it takes part with its old share.
    old_index: Option<i32>,
    /// Reshare/keygen: index in the new signer set if it receives a share.
    new_index: Option<i32>,
}

/// Sign details.
#[derive(SimpleObject)]
pub struct SignDetails {
    /// `digest` | `eth_tx` | `message`.
    payload_kind: String,
    /// Payload bytes, hex.
    payload: String,
    /// The 32-byte digest the ECDSA committee signs (hex): `digest` as given,
    /// keccak256(ethTx), or the EIP-191 personal-message hash of `message` on
    /// secp256k1. Null for ed25519 `message` (signed as is).
    signing_digest: Option<String>,
    /// Non-hardened BIP-32 path `m/…`, or null for the root key.
    derivation_path: Option<String>,
    /// Chain id of an eth_tx.
    chain_id: Option<String>,
    /// Key generation the committee signs with.
    key_generation: i32,
    /// The presignature (a Completed `Presign` operation of this committee) the committee
    /// uses for a one-round signature; null for the full protocol.
    presignature_id: Option<ID>,
}

/// Presign details.
#[derive(SimpleObject)]
pub struct PresignDetails {
    /// Key generation the committee presigns with.
    key_generation: i32,
    /// The sign operation that consumed the presignature, if any.
    consumed_by: Option<ID>,
}

/// Keygen details.
#[derive(SimpleObject)]
pub struct KeygenDetails {
    threshold: i32,
    signers: Vec<VaultSigner>,
}

/// Reshare details.
#[derive(SimpleObject)]
pub struct ReshareDetails {
    old_threshold: i32,
    old_signers: Vec<VaultSigner>,
    new_threshold: i32,
    new_signers: Vec<VaultSigner>,
    old_key_generation: i32,
}

/// The accepted result.
#[derive(SimpleObject)]
#[graphql(name = "OperationResult")]
pub struct ResultObj {
    /// Keygen/reshare: vault key (hex).
    public_key: Option<String>,
    /// Keygen (secp256k1): chain code (hex).
    chain_code: Option<String>,
    /// Reshare: the new key generation.
    key_generation: Option<i32>,
    /// Keygen/reshare: the key-set hash every submission agreed on (hex).
    key_set_hash: Option<String>,
    /// Sign: r‖s (secp256k1, low-s) or Ed25519 signature, hex.
    signature: Option<String>,
    /// Sign secp256k1: recovery id 0/1.
    recovery_id: Option<i32>,
    /// Sign: the submitting device.
    submitted_by: Option<ID>,
    /// Sign eth_tx: the signed raw transaction, `0x02…`.
    raw_transaction: Option<String>,
    /// Broadcast: transaction hash.
    tx_hash: Option<String>,
    /// Broadcast: node error.
    broadcast_error: Option<String>,
}

/// Failure.
#[derive(SimpleObject)]
#[graphql(name = "Failure")]
pub struct FailureObj {
    reason: String,
    culprit_device_ids: Vec<ID>,
    reported_by: Option<ID>,
}

/// An audit log entry.
#[derive(SimpleObject)]
#[graphql(name = "AuditEntry")]
pub struct AuditEntryObj {
    seq: String,
    entity_kind: String,
    entity_id: ID,
    at: String,
    actor: Option<String>,
    event: String,
    /// JSON.
    detail: String,
}

impl From<AuditEntry> for AuditEntryObj {
    fn from(e: AuditEntry) -> Self {
        Self {
            seq: e.seq.to_string(),
            entity_kind: e.entity_kind,
            entity_id: ID(e.entity_id),
            at: time(e.at),
            actor: e.actor,
            event: e.event,
            detail: e.detail,
        }
    }
}

fn opt_i32(v: Option<u16>) -> Option<i32> {
    v.map(i32::from)
}

/// An operation.
pub struct OperationObj(Operation);

#[Object(name = "Operation")]
impl OperationObj {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn organisation_id(&self) -> ID {
        ID(self.0.org_id.to_string())
    }
    /// `Keygen` | `Reshare` | `Sign` | `Presign`.
    async fn kind(&self) -> &str {
        self.0.kind().as_str()
    }
    /// `AwaitingApproval` | `Ready` | `InProgress` | `Completed` | `Failed` | `Rejected` | `Expired`.
    async fn state(&self) -> &str {
        self.0.state.as_str()
    }
    async fn vault_id(&self) -> ID {
        ID(self.0.vault_id.to_string())
    }
    /// The vault now (for reshare: after completion it shows the new set).
    async fn vault(&self, ctx: &Context<'_>) -> GqlResult<VaultObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .vault_as_stored(p, self.0.vault_id.as_str())
            .await
            .map(VaultObj)
            .map_err(gql)
    }
    /// `secp256k1` | `ed25519`.
    async fn curve(&self) -> &str {
        self.0.curve.as_str()
    }
    /// Random 32-byte execution nonce (hex); devices put it in the MPC execution id.
    async fn nonce(&self) -> String {
        hex::encode(self.0.nonce)
    }
    async fn created_at(&self) -> String {
        time(self.0.created_at)
    }
    async fn updated_at(&self) -> String {
        time(self.0.updated_at)
    }
    async fn expires_at(&self) -> String {
        time(self.0.expires_at)
    }
    /// Approving weight so far.
    async fn approved_weight(&self) -> i32 {
        i32::try_from(self.0.approved_weight()).unwrap_or(i32::MAX)
    }
    /// Approving weight needed (sign: threshold; reshare: old threshold, plus every
    /// new member; keygen: every member).
    async fn required_weight(&self) -> i32 {
        i32::try_from(self.0.required_weight()).unwrap_or(i32::MAX)
    }
    async fn voters(&self) -> Vec<Voter> {
        self.0
            .voters
            .iter()
            .map(|v| Voter {
                device_id: ID(v.device_id.to_string()),
                weight: i32::try_from(v.weight).unwrap_or(i32::MAX),
                old_index: opt_i32(v.old_index),
                new_index: opt_i32(v.new_index),
            })
            .collect()
    }
    /// Votes in arrival order.
    async fn votes(&self) -> Vec<VoteObj> {
        self.0
            .votes
            .iter()
            .map(|v| VoteObj {
                device_id: ID(v.device_id.to_string()),
                vote: v.choice.as_str().to_owned(),
                weight: i32::try_from(v.weight).unwrap_or(i32::MAX),
                at: time(v.at),
            })
            .collect()
    }
    /// The committee (empty before Ready). Ordered: sign by share index; keygen by
    /// index; reshare: new members by new index, then old-only members by old index.
    async fn committee(&self, ctx: &Context<'_>) -> GqlResult<Vec<CommitteeMember>> {
        let p = ctx_principal(ctx)?;
        let svc = ctx_service(ctx)?;
        let mut out = Vec::new();
        for m in &self.0.committee {
            let d = svc.device(p, m.device_id.as_str()).await.map_err(gql)?;
            let index = match self.0.kind() {
                OperationKind::Sign | OperationKind::Presign => opt_i32(m.old_index),
                OperationKind::Keygen => opt_i32(m.new_index),
                OperationKind::Reshare => None,
            };
            out.push(CommitteeMember {
                device_id: ID(m.device_id.to_string()),
                name: d.name,
                identity_signing_key: hex::encode(d.identity_signing_key),
                identity_encryption_key: hex::encode(d.identity_encryption_key),
                index,
                old_index: opt_i32(m.old_index),
                new_index: opt_i32(m.new_index),
            });
        }
        Ok(out)
    }
    /// Devices that submitted a keygen/reshare result so far.
    async fn submitted_device_ids(&self) -> Vec<ID> {
        self.0
            .key_results
            .iter()
            .map(|r| ID(r.device_id.to_string()))
            .collect()
    }
    async fn keygen(&self) -> Option<KeygenDetails> {
        match &self.0.details {
            OperationDetails::Keygen {
                threshold,
                signers: s,
            } => Some(KeygenDetails {
                threshold: i32::from(*threshold),
                signers: signers(s),
            }),
            _ => None,
        }
    }
    async fn reshare(&self) -> Option<ReshareDetails> {
        match &self.0.details {
            OperationDetails::Reshare {
                old_threshold,
                old_signers,
                new_threshold,
                new_signers,
                old_key_generation,
            } => Some(ReshareDetails {
                old_threshold: i32::from(*old_threshold),
                old_signers: signers(old_signers),
                new_threshold: i32::from(*new_threshold),
                new_signers: signers(new_signers),
                old_key_generation: i32::try_from(*old_key_generation).unwrap_or(i32::MAX),
            }),
            _ => None,
        }
    }
    async fn sign(&self) -> Option<SignDetails> {
        match &self.0.details {
            OperationDetails::Sign {
                payload,
                derivation_path,
                key_generation,
                presignature,
                ..
            } => Some(SignDetails {
                payload_kind: payload.kind().to_owned(),
                payload: hex::encode(payload.bytes()),
                signing_digest: self.0.signing_digest().map(hex::encode),
                derivation_path: derivation_path.clone(),
                chain_id: self.0.eth_chain_id().map(|c| c.to_string()),
                key_generation: i32::try_from(*key_generation).unwrap_or(i32::MAX),
                presignature_id: presignature.as_ref().map(|p| ID(p.to_string())),
            }),
            _ => None,
        }
    }
    async fn presign(&self) -> Option<PresignDetails> {
        match &self.0.details {
            OperationDetails::Presign {
                key_generation,
                consumed_by,
            } => Some(PresignDetails {
                key_generation: i32::try_from(*key_generation).unwrap_or(i32::MAX),
                consumed_by: consumed_by.as_ref().map(|p| ID(p.to_string())),
            }),
            _ => None,
        }
    }
    async fn result(&self) -> Option<ResultObj> {
        self.0.result.as_ref().map(|r| ResultObj {
            public_key: r.public_key.clone(),
            chain_code: r.chain_code.clone(),
            key_generation: r.key_generation.map(|k| i32::try_from(k).unwrap_or(i32::MAX)),
            key_set_hash: r.key_set_hash.clone(),
            signature: r.signature.clone(),
            recovery_id: r.recovery_id.map(i32::from),
            submitted_by: r.submitted_by.as_ref().map(|d| ID(d.to_string())),
            raw_transaction: r.raw_transaction.clone(),
            tx_hash: r.tx_hash.clone(),
            broadcast_error: r.broadcast_error.clone(),
        })
    }
    async fn failure(&self) -> Option<FailureObj> {
        self.0.failure.as_ref().map(|f| FailureObj {
            reason: f.reason.clone(),
            culprit_device_ids: f.culprits.iter().map(|d| ID(d.to_string())).collect(),
            reported_by: f.reported_by.as_ref().map(|d| ID(d.to_string())),
        })
    }
    /// Why quorum became impossible (Rejected).
    async fn rejection_reason(&self) -> Option<&str> {
        self.0.rejection.as_deref()
    }
    /// The committee member that started the run.
    async fn started_by(&self) -> Option<ID> {
        self.0.started_by.as_ref().map(|d| ID(d.to_string()))
    }
}

/// Operation filter.
#[derive(InputObject, Default)]
pub struct OperationFilter {
    vault_id: Option<ID>,
    /// A state name, e.g. `Completed`.
    state: Option<String>,
    /// `Keygen` | `Reshare` | `Sign` | `Presign`.
    kind: Option<String>,
    /// Default 100, at most 1000.
    limit: Option<i32>,
}

/// Queries.
pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// The calling API client.
    async fn me(&self, ctx: &Context<'_>) -> GqlResult<Me> {
        let p = ctx_principal(ctx)?;
        Ok(Me {
            client_id: ID(p.client_id.to_string()),
            organisation_id: ID(p.org_id.to_string()),
            role: p.role.as_str().to_owned(),
        })
    }
    async fn devices(&self, ctx: &Context<'_>) -> GqlResult<Vec<DeviceObj>> {
        let p = ctx_principal(ctx)?;
        Ok(ctx_service(ctx)?
            .devices(p)
            .await
            .map_err(gql)?
            .into_iter()
            .map(DeviceObj)
            .collect())
    }
    async fn device(&self, ctx: &Context<'_>, id: ID) -> GqlResult<DeviceObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?.device(p, &id).await.map(DeviceObj).map_err(gql)
    }
    async fn vaults(&self, ctx: &Context<'_>) -> GqlResult<Vec<VaultObj>> {
        let p = ctx_principal(ctx)?;
        Ok(ctx_service(ctx)?
            .vaults(p)
            .await
            .map_err(gql)?
            .into_iter()
            .map(VaultObj)
            .collect())
    }
    async fn vault(&self, ctx: &Context<'_>, id: ID) -> GqlResult<VaultObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?.vault(p, &id).await.map(VaultObj).map_err(gql)
    }
    async fn operation(&self, ctx: &Context<'_>, id: ID) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .operation(p, &id)
            .await
            .map(OperationObj)
            .map_err(gql)
    }
    /// Operations, newest first.
    async fn operations(
        &self,
        ctx: &Context<'_>,
        filter: Option<OperationFilter>,
    ) -> GqlResult<Vec<OperationObj>> {
        let p = ctx_principal(ctx)?;
        let f = filter.unwrap_or_default();
        let f = service::OperationFilter {
            vault_id: f.vault_id.map(|i| i.0),
            state: f.state,
            kind: f.kind,
            limit: f.limit.map(i64::from),
        };
        Ok(ctx_service(ctx)?
            .operations(p, f)
            .await
            .map_err(gql)?
            .into_iter()
            .map(OperationObj)
            .collect())
    }
    /// Operations (AwaitingApproval) on which this device may still vote, oldest first.
    async fn operations_awaiting_vote(
        &self,
        ctx: &Context<'_>,
        device_id: ID,
    ) -> GqlResult<Vec<OperationObj>> {
        let p = ctx_principal(ctx)?;
        Ok(ctx_service(ctx)?
            .operations_awaiting_vote(p, &device_id)
            .await
            .map_err(gql)?
            .into_iter()
            .map(OperationObj)
            .collect())
    }
    /// Operations (Ready or InProgress) whose committee includes this device, oldest first.
    async fn operations_ready(&self, ctx: &Context<'_>, device_id: ID) -> GqlResult<Vec<OperationObj>> {
        let p = ctx_principal(ctx)?;
        Ok(ctx_service(ctx)?
            .operations_ready(p, &device_id)
            .await
            .map_err(gql)?
            .into_iter()
            .map(OperationObj)
            .collect())
    }
    /// The append-only audit log (of one entity, or the whole organisation).
    async fn audit_log(&self, ctx: &Context<'_>, entity_id: Option<ID>) -> GqlResult<Vec<AuditEntryObj>> {
        let p = ctx_principal(ctx)?;
        let entries = ctx_service(ctx)?
            .audit_log(p, entity_id.as_ref().map(|i| i.0.as_str()))
            .await
            .map_err(gql)?;
        Ok(entries.into_iter().map(AuditEntryObj::from).collect())
    }
}

/// `registerDevice` input.
#[derive(InputObject)]
pub struct RegisterDeviceInput {
    name: String,
    /// `virtual` (default) | `manual`.
    kind: Option<String>,
    /// Hex of a 32-byte Ed25519 public key.
    identity_signing_key: String,
    /// Hex of a 32-byte X25519 public key.
    identity_encryption_key: String,
}

/// A signer in a signer set.
#[derive(InputObject)]
pub struct SignerInput {
    device_id: ID,
    /// Must be 1 (default).
    weight: Option<i32>,
}

fn signer_inputs(list: Vec<SignerInput>) -> Vec<service::SignerInput> {
    list.into_iter()
        .map(|s| service::SignerInput {
            device_id: s.device_id.0,
            weight: i64::from(s.weight.unwrap_or(1)),
        })
        .collect()
}

/// `createVault` input.
#[derive(InputObject)]
pub struct CreateVaultInput {
    name: String,
    /// `secp256k1` | `ed25519`.
    curve: String,
    threshold: i32,
    /// Ordered: position = share index.
    signers: Vec<SignerInput>,
}

/// `requestSignature` input: exactly one of `digest`, `ethTx`, `message` (hex).
#[derive(InputObject)]
pub struct RequestSignatureInput {
    vault_id: ID,
    /// 32 bytes.
    digest: Option<String>,
    /// Unsigned EIP-1559 transaction `0x02 ‖ rlp(…)` (secp256k1).
    eth_tx: Option<String>,
    /// Message bytes: EIP-191 personal message on secp256k1, raw on ed25519.
    message: Option<String>,
    /// Non-hardened path `m/0/1` (secp256k1).
    derivation_path: Option<String>,
}

/// `requestReshare` input.
#[derive(InputObject)]
pub struct RequestReshareInput {
    vault_id: ID,
    new_threshold: i32,
    new_signers: Vec<SignerInput>,
}

/// New API client credentials; the secret is shown only in this response.
#[derive(SimpleObject)]
pub struct ApiClientCredentials {
    client_id: ID,
    /// `operator` | `signer`.
    role: String,
    /// Shown once; only its Argon2id hash is stored. Null when an idempotent replay
    /// returns an existing client (the secret cannot be shown again).
    client_secret: Option<String>,
}

/// Mutations.
pub struct MutationRoot;

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Creates another API client of the caller's organisation (operators), e.g. one
    /// signer client per Virtual Signer instance.
    async fn create_api_client(
        &self,
        ctx: &Context<'_>,
        role: String,
        idempotency_key: Option<String>,
    ) -> GqlResult<ApiClientCredentials> {
        let p = ctx_principal(ctx)?;
        let (client, secret) = ctx_service(ctx)?
            .create_api_client(p, &role, idempotency_key.as_deref())
            .await
            .map_err(gql)?;
        Ok(ApiClientCredentials {
            client_id: ID(client.id.to_string()),
            role: client.role.as_str().to_owned(),
            client_secret: secret.map(|s| s.expose().to_owned()),
        })
    }

    /// Registers a device (signer clients); the device can then be acted as only by this client.
    async fn register_device(
        &self,
        ctx: &Context<'_>,
        input: RegisterDeviceInput,
        idempotency_key: Option<String>,
    ) -> GqlResult<DeviceObj> {
        let p = ctx_principal(ctx)?;
        let input = service::RegisterDevice {
            name: input.name,
            kind: input.kind.unwrap_or_else(|| "virtual".to_owned()),
            identity_signing_key: input.identity_signing_key,
            identity_encryption_key: input.identity_encryption_key,
        };
        ctx_service(ctx)?
            .register_device(p, input, idempotency_key.as_deref())
            .await
            .map(DeviceObj)
            .map_err(gql)
    }

    /// Creates a vault (Pending) and returns its Keygen operation (operators).
    async fn create_vault(
        &self,
        ctx: &Context<'_>,
        input: CreateVaultInput,
        idempotency_key: Option<String>,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        let input = service::CreateVault {
            name: input.name,
            curve: input.curve,
            threshold: i64::from(input.threshold),
            signers: signer_inputs(input.signers),
        };
        ctx_service(ctx)?
            .create_vault(p, input, idempotency_key.as_deref())
            .await
            .map(OperationObj)
            .map_err(gql)
    }

    /// Requests a signature (operators).
    async fn request_signature(
        &self,
        ctx: &Context<'_>,
        input: RequestSignatureInput,
        idempotency_key: Option<String>,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        let input = service::RequestSignature {
            vault_id: input.vault_id.0,
            digest: input.digest,
            eth_tx: input.eth_tx,
            message: input.message,
            derivation_path: input.derivation_path,
        };
        ctx_service(ctx)?
            .request_signature(p, input, idempotency_key.as_deref())
            .await
            .map(OperationObj)
            .map_err(gql)
    }

    /// Requests `count` (1-100) presignatures of a secp256k1 vault by `committee` (exactly
    /// the threshold of current signers), Ready at once (operators, or a signer client
    /// that registered a committee member). A later signature of an `eth_tx` or `message`
    /// at the root key by the same committee uses one in a single online round.
    async fn request_presignatures(
        &self,
        ctx: &Context<'_>,
        vault_id: ID,
        committee: Vec<ID>,
        count: i32,
    ) -> GqlResult<Vec<OperationObj>> {
        let p = ctx_principal(ctx)?;
        let committee: Vec<String> = committee.into_iter().map(|d| d.0).collect();
        ctx_service(ctx)?
            .request_presignatures(p, &vault_id, &committee, count)
            .await
            .map(|ops| ops.into_iter().map(OperationObj).collect())
            .map_err(gql)
    }

    /// Requests a reshare to a new signer set/threshold (operators).
    async fn request_reshare(
        &self,
        ctx: &Context<'_>,
        input: RequestReshareInput,
        idempotency_key: Option<String>,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        let input = service::RequestReshare {
            vault_id: input.vault_id.0,
            new_threshold: i64::from(input.new_threshold),
            new_signers: signer_inputs(input.new_signers),
        };
        ctx_service(ctx)?
            .request_reshare(p, input, idempotency_key.as_deref())
            .await
            .map(OperationObj)
            .map_err(gql)
    }

    /// A device's vote: `approve` | `reject` | `abstain` (once per device).
    async fn vote(
        &self,
        ctx: &Context<'_>,
        operation_id: ID,
        device_id: ID,
        vote: String,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .vote(p, &operation_id, &device_id, &vote)
            .await
            .map(OperationObj)
            .map_err(gql)
    }

    /// A committee member reports that it started the protocol (Ready → InProgress).
    async fn start_operation(
        &self,
        ctx: &Context<'_>,
        operation_id: ID,
        device_id: ID,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .start_operation(p, &operation_id, &device_id)
            .await
            .map(OperationObj)
            .map_err(gql)
    }

    /// Keygen result of one committee member (chain code required for secp256k1).
    /// `keySetHash` (hex, 32 bytes): SHA-256 over the concatenation, in share-index
    /// order, of every party's public key share in compressed encoding (secp256k1:
    /// 33-byte SEC1 compressed; ed25519: 32 bytes); all members must agree on it.
    async fn submit_keygen_result(
        &self,
        ctx: &Context<'_>,
        operation_id: ID,
        device_id: ID,
        public_key: String,
        chain_code: Option<String>,
        key_set_hash: String,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .submit_keygen_result(
                p,
                &operation_id,
                &device_id,
                &public_key,
                chain_code.as_deref(),
                &key_set_hash,
            )
            .await
            .map(OperationObj)
            .map_err(gql)
    }

    /// Reshare result of one new member: the (unchanged) public key and the key-set
    /// hash of the new shares (all new members must agree on it).
    async fn submit_reshare_result(
        &self,
        ctx: &Context<'_>,
        operation_id: ID,
        device_id: ID,
        public_key: String,
        key_set_hash: String,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .submit_reshare_result(p, &operation_id, &device_id, &public_key, &key_set_hash)
            .await
            .map(OperationObj)
            .map_err(gql)
    }

    /// A presign committee member's result: the SHA-256 fingerprint (hex) of the
    /// presignature's public data; all members must agree on it.
    async fn submit_presign_result(
        &self,
        ctx: &Context<'_>,
        operation_id: ID,
        device_id: ID,
        fingerprint: String,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .submit_presign_result(p, &operation_id, &device_id, &fingerprint)
            .await
            .map(OperationObj)
            .map_err(gql)
    }

    /// The signature (hex r‖s + recoveryId for secp256k1; 64-byte Ed25519), verified
    /// before acceptance. A bad one fails the operation and names the device.
    async fn submit_signature(
        &self,
        ctx: &Context<'_>,
        operation_id: ID,
        device_id: ID,
        signature: String,
        recovery_id: Option<i32>,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        ctx_service(ctx)?
            .submit_signature(
                p,
                &operation_id,
                &device_id,
                &signature,
                recovery_id.map(i64::from),
            )
            .await
            .map(OperationObj)
            .map_err(gql)
    }

    /// A committee member reports that the protocol failed, naming culprits.
    async fn report_failure(
        &self,
        ctx: &Context<'_>,
        operation_id: ID,
        device_id: ID,
        reason: String,
        culprit_device_ids: Option<Vec<ID>>,
    ) -> GqlResult<OperationObj> {
        let p = ctx_principal(ctx)?;
        let culprits = culprit_device_ids
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.0)
            .collect();
        ctx_service(ctx)?
            .report_failure(p, &operation_id, &device_id, &reason, culprits)
            .await
            .map(OperationObj)
            .map_err(gql)
    }
}
