//! The domain: organisations, API clients, devices, vaults, operations, votes, quorum
//! and the operation lifecycle. No HTTP and no SQL here: the service loads objects,
//! calls these pure transitions, and stores what they return.
//!
//! # Operation lifecycle
//! ```text
//! AwaitingApproval ──quorum──▶ Ready ──startOperation / first result──▶ InProgress ──▶ Completed
//!        │                       │                                          │
//!        ├─quorum impossible─▶ Rejected                                     ├──▶ Failed (bad result, reportFailure)
//!        └─────────── expiresAt passed (any non-final state) ──────────────┴──▶ Expired
//! ```
//! `Ready` means "committee assigned": the committee is fixed when quorum is reached.

use serde::{Deserialize, Serialize};

use crate::crypto;
use crate::error::{Error, ErrorCode, Result};

fn random_id(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(crypto::random_bytes::<12>()))
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh random id.
            pub fn random() -> Self {
                Self(random_id($prefix))
            }
            /// Wraps an id read from storage or from a client (ids are opaque strings).
            pub fn from_string(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(/// An organisation id.
    OrgId, "org_");
id_type!(/// An API client id (`AuthClientId`).
    ClientId, "vsc_");
id_type!(/// A device id.
    DeviceId, "dev_");
id_type!(/// A vault id.
    VaultId, "vlt_");
id_type!(/// An operation id.
    OperationId, "op_");

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

macro_rules! str_enum {
    ($(#[$doc:meta])* $name:ident, $code:expr, $what:literal { $($(#[$vdoc:meta])* $variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// The stable string form.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),+ }
            }
            /// Parses the stable string form.
            pub fn parse(s: &str) -> Result<Self> {
                match s {
                    $($s => Ok(Self::$variant),)+
                    other => Err(Error::new($code, format!(
                        concat!("unknown ", $what, " {:?}; expected one of: ", $($s, " "),+), other))),
                }
            }
        }
    };
}

str_enum!(/// Vault curve.
    Curve, ErrorCode::UnknownCurve, "curve" {
    /// ECDSA over secp256k1 (CGGMP24).
    Secp256k1 => "secp256k1",
    /// EdDSA over Ed25519 (FROST).
    Ed25519 => "ed25519",
});
str_enum!(/// API client role.
    Role, ErrorCode::InvalidInput, "role" {
    /// Creates vaults, requests operations, reads.
    Operator => "operator",
    /// Registers devices and acts as the devices it registered.
    Signer => "signer",
});
str_enum!(/// Device kind.
    DeviceKind, ErrorCode::InvalidInput, "device kind" {
    /// A server-side virtual signer.
    Virtual => "virtual",
    /// A device whose votes come from a person.
    Manual => "manual",
});
str_enum!(/// Device status.
    DeviceStatus, ErrorCode::InvalidInput, "device status" {
    /// Can vote and sign.
    Active => "Active",
});
str_enum!(/// Vault status.
    VaultStatus, ErrorCode::InvalidInput, "vault status" {
    /// Keygen requested, not finished.
    Pending => "Pending",
    /// Key generated; can sign and reshare.
    Active => "Active",
    /// Keygen failed, was rejected or expired.
    Failed => "Failed",
});
str_enum!(/// Operation kind.
    OperationKind, ErrorCode::InvalidInput, "operation kind" {
    /// Vault key generation.
    Keygen => "Keygen",
    /// Move the key to a new signer set / threshold.
    Reshare => "Reshare",
    /// Signature.
    Sign => "Sign",
    /// ECDSA presignature of a committee, consumed later by one signature.
    Presign => "Presign",
});
str_enum!(/// Operation state.
    OperationState, ErrorCode::InvalidInput, "operation state" {
    /// Collecting votes.
    AwaitingApproval => "AwaitingApproval",
    /// Quorum reached, committee assigned, protocol not yet started.
    Ready => "Ready",
    /// A committee member reported that it started.
    InProgress => "InProgress",
    /// Result accepted.
    Completed => "Completed",
    /// A bad result or a reported failure.
    Failed => "Failed",
    /// Quorum can no longer be reached.
    Rejected => "Rejected",
    /// Not finished before `expiresAt`.
    Expired => "Expired",
});
str_enum!(/// A device's vote.
    VoteChoice, ErrorCode::InvalidInput, "vote" {
    /// Approve.
    Approve => "approve",
    /// Reject.
    Reject => "reject",
    /// Abstain (counts as not approving).
    Abstain => "abstain",
});

impl OperationState {
    /// Completed, Failed, Rejected or Expired.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Rejected | Self::Expired
        )
    }
}

/// An organisation.
#[derive(Debug, Clone)]
pub struct Organisation {
    /// Id.
    pub id: OrgId,
    /// Name.
    pub name: String,
}

/// An API client. The secret is never stored, only its Argon2id hash (in the store).
#[derive(Debug, Clone)]
pub struct ApiClient {
    /// `AuthClientId`.
    pub id: ClientId,
    /// Organisation.
    pub org_id: OrgId,
    /// Role.
    pub role: Role,
}

/// Who is calling: an authenticated API client.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Client id.
    pub client_id: ClientId,
    /// Organisation the token is scoped to.
    pub org_id: OrgId,
    /// Role.
    pub role: Role,
}

/// A device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Device {
    /// Id.
    pub id: DeviceId,
    /// Organisation.
    pub org_id: OrgId,
    /// Human name.
    pub name: String,
    /// Virtual or manual.
    pub kind: DeviceKind,
    /// Ed25519 identity public key (signs MPC messages).
    pub identity_signing_key: [u8; 32],
    /// X25519 identity public key (MPC message encryption).
    pub identity_encryption_key: [u8; 32],
    /// Status.
    pub status: DeviceStatus,
    /// The signer API client that registered it (the only client that may act as it).
    pub registered_by: ClientId,
    /// Creation time.
    pub created_at: Millis,
}

/// Checks and builds a new device from client input.
pub fn new_device(
    org_id: &OrgId,
    registered_by: &ClientId,
    name: &str,
    kind: &str,
    identity_signing_key_hex: &str,
    identity_encryption_key_hex: &str,
    now: Millis,
) -> Result<Device> {
    let name = check_name("device name", name)?;
    let kind = DeviceKind::parse(kind)?;
    let sk = crypto::decode_hex_array::<32>(
        "identitySigningKey",
        identity_signing_key_hex,
        ErrorCode::InvalidInput,
    )?;
    crypto::check_ed25519_identity_key(&sk)?;
    let ek = crypto::decode_hex_array::<32>(
        "identityEncryptionKey",
        identity_encryption_key_hex,
        ErrorCode::InvalidInput,
    )?;
    crypto::check_x25519_identity_key(&ek)?;
    Ok(Device {
        id: DeviceId::random(),
        org_id: org_id.clone(),
        name,
        kind,
        identity_signing_key: sk,
        identity_encryption_key: ek,
        status: DeviceStatus::Active,
        registered_by: registered_by.clone(),
        created_at: now,
    })
}

fn check_name(what: &str, name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(Error::invalid_input(format!(
            "{what} must be 1-200 characters without control characters"
        )));
    }
    Ok(name.to_owned())
}

/// A member of a vault's signer set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    /// Device.
    pub device_id: DeviceId,
    /// Voting weight (1 only, for now).
    pub weight: u32,
}

/// Checks a signer set and threshold: non-empty, no duplicates, weights 1, 1 ≤ t ≤ total weight.
pub fn check_signer_set(signers: &[Signer], threshold: i64) -> Result<u16> {
    if signers.is_empty() {
        return Err(Error::new(ErrorCode::InvalidThreshold, "the signer set is empty"));
    }
    if signers.len() > 255 {
        return Err(Error::invalid_input("at most 255 signers"));
    }
    for (i, s) in signers.iter().enumerate() {
        if s.weight != 1 {
            return Err(Error::new(
                ErrorCode::UnsupportedWeight,
                format!(
                    "device {} has weight {}; only weight 1 is supported (a heavier device would have to hold several shares)",
                    s.device_id, s.weight
                ),
            ));
        }
        if signers.iter().take(i).any(|o| o.device_id == s.device_id) {
            return Err(Error::invalid_input(format!(
                "device {} appears twice in the signer set",
                s.device_id
            )));
        }
    }
    let total: i64 = signers.iter().map(|s| i64::from(s.weight)).sum();
    if threshold < 1 || threshold > total {
        return Err(Error::new(
            ErrorCode::InvalidThreshold,
            format!("threshold must be between 1 and the signer set's total weight {total}, got {threshold}"),
        ));
    }
    u16::try_from(threshold).map_err(|_| Error::new(ErrorCode::InvalidThreshold, "threshold too large"))
}

/// A vault.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Vault {
    /// Id.
    pub id: VaultId,
    /// Organisation.
    pub org_id: OrgId,
    /// Name.
    pub name: String,
    /// Curve.
    pub curve: Curve,
    /// Signing threshold (approving weight needed).
    pub threshold: u16,
    /// Signer set, in share-index order (index = position).
    pub signers: Vec<Signer>,
    /// Public key: SEC1 compressed (secp256k1) or 32 bytes (ed25519), once Active.
    pub public_key: Option<Vec<u8>>,
    /// BIP-32 chain code (secp256k1 only), once Active.
    pub chain_code: Option<[u8; 32]>,
    /// Key generation: 0 after keygen, +1 per completed reshare.
    pub key_generation: u32,
    /// Key-set hash of the current generation (see [`crypto::key_set_hash`]):
    /// SHA-256 over every party's public key share, in share-index order. Set once Active.
    #[serde(default)]
    pub key_set_hash: Option<[u8; 32]>,
    /// Status.
    pub status: VaultStatus,
    /// Creation time.
    pub created_at: Millis,
}

impl Vault {
    /// Index of a device in the signer set.
    pub fn signer_index(&self, device: &DeviceId) -> Option<u16> {
        self.signers
            .iter()
            .position(|s| &s.device_id == device)
            .and_then(|i| u16::try_from(i).ok())
    }
}

/// Checks vault input and builds a Pending vault.
pub fn new_vault(
    org_id: &OrgId,
    name: &str,
    curve: &str,
    threshold: i64,
    signers: Vec<Signer>,
    now: Millis,
) -> Result<Vault> {
    let name = check_name("vault name", name)?;
    let curve = Curve::parse(curve)?;
    let threshold = check_signer_set(&signers, threshold)?;
    Ok(Vault {
        id: VaultId::random(),
        org_id: org_id.clone(),
        name,
        curve,
        threshold,
        signers,
        public_key: None,
        chain_code: None,
        key_generation: 0,
        key_set_hash: None,
        status: VaultStatus::Pending,
        created_at: now,
    })
}

/// What to sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "hex", rename_all = "snake_case")]
pub enum SignPayload {
    /// A 32-byte digest, signed as given.
    Digest(#[serde(with = "hex::serde")] [u8; 32]),
    /// An unsigned EIP-1559 transaction `0x02 ‖ rlp(…)`; digest keccak256(bytes).
    EthTx(#[serde(with = "hex::serde")] Vec<u8>),
    /// Message bytes: EIP-191 personal-message hash on secp256k1, raw on ed25519.
    Message(#[serde(with = "hex::serde")] Vec<u8>),
}

impl SignPayload {
    /// `digest`, `eth_tx` or `message`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Digest(_) => "digest",
            Self::EthTx(_) => "eth_tx",
            Self::Message(_) => "message",
        }
    }
    /// The payload bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Digest(d) => d,
            Self::EthTx(b) | Self::Message(b) => b,
        }
    }
}

/// Builds the sign payload from client input: exactly one of digest, ethTx, message.
pub fn parse_sign_payload(
    curve: Curve,
    digest: Option<&str>,
    eth_tx: Option<&str>,
    message: Option<&str>,
) -> Result<SignPayload> {
    let payload = match (digest, eth_tx, message) {
        (Some(d), None, None) => SignPayload::Digest(crypto::decode_hex_array::<32>(
            "digest",
            d,
            ErrorCode::InvalidDigest,
        )?),
        (None, Some(t), None) => {
            let bytes = crypto::decode_hex("ethTx", t)
                .map_err(|e| Error::new(ErrorCode::InvalidPayload, e.message().to_owned()))?;
            SignPayload::EthTx(bytes)
        }
        (None, None, Some(m)) => {
            let bytes = crypto::decode_hex("message", m)
                .map_err(|e| Error::new(ErrorCode::InvalidPayload, e.message().to_owned()))?;
            if bytes.is_empty() || bytes.len() > 64 * 1024 {
                return Err(Error::new(
                    ErrorCode::InvalidPayload,
                    "message must be 1 byte to 64 KiB",
                ));
            }
            SignPayload::Message(bytes)
        }
        _ => {
            return Err(Error::new(
                ErrorCode::InvalidPayload,
                "give exactly one of digest, ethTx, message",
            ))
        }
    };
    if let SignPayload::EthTx(bytes) = &payload {
        if curve != Curve::Secp256k1 {
            return Err(Error::new(
                ErrorCode::InvalidPayload,
                "ethTx needs a secp256k1 vault",
            ));
        }
        crypto::decode_unsigned_eip1559(bytes)?;
    }
    Ok(payload)
}

/// The 32 bytes the ECDSA committee signs (secp256k1), or `None` for ed25519
/// `message` payloads (signed as is).
pub fn signing_digest(curve: Curve, payload: &SignPayload) -> Option<[u8; 32]> {
    match (curve, payload) {
        (_, SignPayload::Digest(d)) => Some(*d),
        (_, SignPayload::EthTx(b)) => Some(crypto::keccak256(b)),
        (Curve::Secp256k1, SignPayload::Message(m)) => Some(crypto::eip191_hash(m)),
        (Curve::Ed25519, SignPayload::Message(_)) => None,
    }
}

/// The bytes the signature is verified over: the digest on secp256k1 (prehash), the
/// message itself (or the 32 digest bytes) on ed25519.
fn verification_message(curve: Curve, payload: &SignPayload) -> Vec<u8> {
    match signing_digest(curve, payload) {
        Some(d) => d.to_vec(),
        None => payload.bytes().to_vec(),
    }
}

/// A device entitled to vote, with its role(s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voter {
    /// Device.
    pub device_id: DeviceId,
    /// Weight.
    pub weight: u32,
    /// Index in the current (old) signer set: holders of the key (sign, reshare).
    pub old_index: Option<u16>,
    /// Index in the new signer set: receivers of the key (keygen, reshare).
    pub new_index: Option<u16>,
}

/// A vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// Device.
    pub device_id: DeviceId,
    /// Choice.
    pub choice: VoteChoice,
    /// The voter's weight.
    pub weight: u32,
    /// Order of arrival (0-based within the operation).
    pub seq: u32,
    /// When.
    pub at: Millis,
}

/// A committee member and its role(s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitteeMember {
    /// Device.
    pub device_id: DeviceId,
    /// Index in the old signer set if it deals/signs with its old share.
    pub old_index: Option<u16>,
    /// Index in the new signer set if it receives a new share.
    pub new_index: Option<u16>,
}

/// Kind-specific details.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum OperationDetails {
    /// Keygen of a vault's initial key.
    Keygen {
        /// Threshold.
        threshold: u16,
        /// Signer set.
        signers: Vec<Signer>,
    },
    /// Reshare.
    Reshare {
        /// Old threshold.
        old_threshold: u16,
        /// Old signer set.
        old_signers: Vec<Signer>,
        /// New threshold.
        new_threshold: u16,
        /// New signer set.
        new_signers: Vec<Signer>,
        /// Key generation being replaced.
        old_key_generation: u32,
    },
    /// Sign.
    Sign {
        /// Threshold (approving weight needed).
        threshold: u16,
        /// What to sign.
        payload: SignPayload,
        /// Non-hardened derivation path, `m/…`.
        derivation_path: Option<String>,
        /// Key generation the committee signs with.
        key_generation: u32,
        /// The presignature (a Completed `Presign` operation of the same committee) the
        /// committee uses, assigned when the operation becomes Ready.
        #[serde(default)]
        presignature: Option<OperationId>,
    },
    /// ECDSA presignature generation by a fixed committee (no approval: nothing is signed;
    /// the signature that later consumes it is approved as usual).
    Presign {
        /// Key generation the committee presigns with.
        key_generation: u32,
        /// The sign operation that consumed it.
        #[serde(default)]
        consumed_by: Option<OperationId>,
    },
}

impl OperationDetails {
    /// The kind.
    pub fn kind(&self) -> OperationKind {
        match self {
            Self::Keygen { .. } => OperationKind::Keygen,
            Self::Reshare { .. } => OperationKind::Reshare,
            Self::Sign { .. } => OperationKind::Sign,
            Self::Presign { .. } => OperationKind::Presign,
        }
    }

    /// Old-set approving weight needed, if any.
    fn old_threshold(&self) -> Option<u16> {
        match self {
            Self::Keygen { .. } => None,
            Self::Reshare { old_threshold, .. } => Some(*old_threshold),
            Self::Sign { threshold, .. } => Some(*threshold),
            Self::Presign { .. } => None,
        }
    }
}

/// One committee member's keygen/reshare result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyResult {
    /// Submitter.
    pub device_id: DeviceId,
    /// Public key (normalised).
    #[serde(with = "hex::serde")]
    pub public_key: Vec<u8>,
    /// Chain code (secp256k1 keygen).
    pub chain_code: Option<String>,
    /// Key-set hash (hex, 32 bytes).
    #[serde(default)]
    pub key_set_hash: Option<String>,
}

/// The accepted result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationResult {
    /// Keygen/reshare: the vault key (hex).
    pub public_key: Option<String>,
    /// Keygen: chain code (hex).
    pub chain_code: Option<String>,
    /// Reshare: the new key generation.
    pub key_generation: Option<u32>,
    /// Keygen/reshare: the agreed key-set hash (hex).
    #[serde(default)]
    pub key_set_hash: Option<String>,
    /// Sign: signature hex (r‖s or Ed25519 64 B).
    pub signature: Option<String>,
    /// Sign secp256k1: recovery id.
    pub recovery_id: Option<u8>,
    /// Sign: the device that submitted the signature.
    pub submitted_by: Option<DeviceId>,
    /// Sign eth_tx: signed raw transaction `0x02…`.
    pub raw_transaction: Option<String>,
    /// Broadcast: transaction hash returned by the node.
    pub tx_hash: Option<String>,
    /// Broadcast: error from the node.
    pub broadcast_error: Option<String>,
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Reason.
    pub reason: String,
    /// Devices blamed.
    pub culprits: Vec<DeviceId>,
    /// The device that reported it, if a device did.
    pub reported_by: Option<DeviceId>,
}

/// An audit log entry produced by a transition (the store adds time and sequence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Short event name, e.g. `vote`, `state`, `signature_refused`.
    pub event: String,
    /// Acting device or client, if any.
    pub actor: Option<String>,
    /// JSON details.
    pub detail: serde_json::Value,
}

impl AuditEvent {
    fn new(event: &str, actor: Option<&DeviceId>, detail: serde_json::Value) -> Self {
        Self {
            event: event.to_owned(),
            actor: actor.map(|d| d.to_string()),
            detail,
        }
    }
}

/// A change to apply to the vault together with the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultUpdate {
    /// Keygen done.
    Activate {
        /// Public key.
        public_key: Vec<u8>,
        /// Chain code.
        chain_code: Option<[u8; 32]>,
        /// Key-set hash.
        key_set_hash: [u8; 32],
    },
    /// Keygen failed, rejected or expired.
    MarkFailed,
    /// Reshare done: new signer set, threshold, generation.
    Reshared {
        /// New signers.
        signers: Vec<Signer>,
        /// New threshold.
        threshold: u16,
        /// New key generation.
        key_generation: u32,
        /// Key-set hash of the new shares.
        key_set_hash: [u8; 32],
    },
}

/// What a transition produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Audit events, in order.
    pub events: Vec<AuditEvent>,
    /// Vault change.
    pub vault_update: Option<VaultUpdate>,
    /// An error to return to the caller *after* persisting (e.g. a refused signature
    /// that failed the operation).
    pub refusal: Option<Error>,
    /// The vote to insert, if the transition was a vote.
    pub new_vote: Option<Vote>,
}

/// An operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Operation {
    /// Id.
    pub id: OperationId,
    /// Organisation.
    pub org_id: OrgId,
    /// Vault.
    pub vault_id: VaultId,
    /// Vault curve (snapshot).
    pub curve: Curve,
    /// State.
    pub state: OperationState,
    /// Kind-specific details.
    pub details: OperationDetails,
    /// Random 32-byte execution nonce (devices put it in the MPC execution id).
    pub nonce: [u8; 32],
    /// Who may vote.
    pub voters: Vec<Voter>,
    /// Votes in arrival order (stored separately, one row per device).
    #[serde(skip)]
    pub votes: Vec<Vote>,
    /// Committee, ordered (empty before Ready).
    pub committee: Vec<CommitteeMember>,
    /// Keygen/reshare submissions so far.
    pub key_results: Vec<KeyResult>,
    /// Accepted result.
    pub result: Option<OperationResult>,
    /// Failure.
    pub failure: Option<Failure>,
    /// Rejection reason.
    pub rejection: Option<String>,
    /// The device that started the run.
    pub started_by: Option<DeviceId>,
    /// Creation time.
    pub created_at: Millis,
    /// Expiry time.
    pub expires_at: Millis,
    /// Last change.
    pub updated_at: Millis,
    /// Creator (API client).
    pub created_by: ClientId,
}

fn voters_for(details: &OperationDetails) -> Vec<Voter> {
    let mut voters: Vec<Voter> = Vec::new();
    let idx = |i: usize| u16::try_from(i).ok();
    let (old, new): (&[Signer], &[Signer]) = match details {
        OperationDetails::Keygen { signers, .. } => (&[], signers),
        OperationDetails::Sign { .. } | OperationDetails::Presign { .. } => (&[], &[]),
        OperationDetails::Reshare {
            old_signers,
            new_signers,
            ..
        } => (old_signers, new_signers),
    };
    for (i, s) in old.iter().enumerate() {
        voters.push(Voter {
            device_id: s.device_id.clone(),
            weight: s.weight,
            old_index: idx(i),
            new_index: None,
        });
    }
    for (i, s) in new.iter().enumerate() {
        if let Some(v) = voters.iter_mut().find(|v| v.device_id == s.device_id) {
            v.new_index = idx(i);
        } else {
            voters.push(Voter {
                device_id: s.device_id.clone(),
                weight: s.weight,
                old_index: None,
                new_index: idx(i),
            });
        }
    }
    voters
}

/// Default and configured expiry windows.
#[derive(Debug, Clone, Copy)]
pub struct ExpiryPolicy {
    /// Keygen window (default 10 min).
    pub keygen_ms: Millis,
    /// Reshare window (default 10 min).
    pub reshare_ms: Millis,
    /// Sign window (default 24 h).
    pub sign_ms: Millis,
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        Self {
            keygen_ms: 10 * 60 * 1000,
            reshare_ms: 10 * 60 * 1000,
            sign_ms: 24 * 3600 * 1000,
        }
    }
}

impl ExpiryPolicy {
    fn window(&self, kind: OperationKind) -> Millis {
        match kind {
            OperationKind::Keygen => self.keygen_ms,
            OperationKind::Reshare => self.reshare_ms,
            OperationKind::Sign | OperationKind::Presign => self.sign_ms,
        }
    }
}

impl Operation {
    /// A new operation awaiting approval on `vault`.
    pub fn new(
        vault: &Vault,
        details: OperationDetails,
        created_by: &ClientId,
        now: Millis,
        expiry: &ExpiryPolicy,
    ) -> Self {
        let mut voters = voters_for(&details);
        if let OperationDetails::Sign { .. } = details {
            voters = vault
                .signers
                .iter()
                .enumerate()
                .map(|(i, s)| Voter {
                    device_id: s.device_id.clone(),
                    weight: s.weight,
                    old_index: u16::try_from(i).ok(),
                    new_index: None,
                })
                .collect();
        }
        let window = expiry.window(details.kind());
        Self {
            id: OperationId::random(),
            org_id: vault.org_id.clone(),
            vault_id: vault.id.clone(),
            curve: vault.curve,
            state: OperationState::AwaitingApproval,
            details,
            nonce: crypto::random_bytes::<32>(),
            voters,
            votes: Vec::new(),
            committee: Vec::new(),
            key_results: Vec::new(),
            result: None,
            failure: None,
            rejection: None,
            started_by: None,
            created_at: now,
            expires_at: now.saturating_add(window),
            updated_at: now,
            created_by: created_by.clone(),
        }
    }

    /// The kind.
    pub fn kind(&self) -> OperationKind {
        self.details.kind()
    }

    /// A presignature operation for `committee` (device ids of current signers, exactly the
    /// threshold), Ready at once: a presignature signs nothing, so nobody votes on it.
    pub fn new_presign(
        vault: &Vault,
        committee: &[DeviceId],
        created_by: &ClientId,
        now: Millis,
        expiry: &ExpiryPolicy,
    ) -> Result<Self> {
        if vault.curve != Curve::Secp256k1 {
            return Err(Error::invalid_input(
                "presignatures exist for secp256k1 vaults only",
            ));
        }
        if committee.len() != usize::from(vault.threshold) {
            return Err(Error::invalid_input(format!(
                "a presignature committee has exactly the threshold ({}) of signers, got {}",
                vault.threshold,
                committee.len()
            )));
        }
        let mut members: Vec<CommitteeMember> = Vec::with_capacity(committee.len());
        for d in committee {
            let index = vault
                .signers
                .iter()
                .position(|s| &s.device_id == d)
                .ok_or_else(|| {
                    Error::invalid_input(format!("device {d} is not a signer of vault {}", vault.id))
                })?;
            if members.iter().any(|m| &m.device_id == d) {
                return Err(Error::invalid_input(format!("device {d} appears twice")));
            }
            members.push(CommitteeMember {
                device_id: d.clone(),
                old_index: u16::try_from(index).ok(),
                new_index: None,
            });
        }
        members.sort_by_key(|m| m.old_index);
        let details = OperationDetails::Presign {
            key_generation: vault.key_generation,
            consumed_by: None,
        };
        let mut op = Self::new(vault, details, created_by, now, expiry);
        op.committee = members;
        op.state = OperationState::Ready;
        Ok(op)
    }

    /// A committee member's presignature result: a fingerprint of the presignature's
    /// public data, on which every member must agree. Completed when all agree.
    pub fn submit_presign_result(
        &mut self,
        vault: &Vault,
        device: &DeviceId,
        fingerprint_hex: &str,
        now: Millis,
    ) -> Result<Outcome> {
        if self.kind() != OperationKind::Presign {
            return Err(Error::invalid_state(format!(
                "operation {} is not a presign",
                self.id
            )));
        }
        self.check_running_member(device, now)?;
        if self.key_results.iter().any(|r| &r.device_id == device) {
            return Err(Error::new(
                ErrorCode::AlreadySubmitted,
                format!("device {device} already submitted"),
            ));
        }
        let fingerprint =
            crypto::decode_hex_array::<32>("fingerprint", fingerprint_hex, ErrorCode::InvalidInput)?;
        let mut out = Outcome::default();
        self.mark_started(device, now, &mut out);
        // The key the presignature is for, with the fingerprint: both must agree.
        self.key_results.push(KeyResult {
            device_id: device.clone(),
            public_key: vault.public_key.clone().unwrap_or_default(),
            chain_code: None,
            key_set_hash: Some(hex::encode(fingerprint)),
        });
        out.events.push(AuditEvent::new(
            "presign_result",
            Some(device),
            serde_json::json!({"fingerprint": hex::encode(fingerprint)}),
        ));
        if self.fail_on_disagreement("presign", "a different presignature", now, &mut out) {
            return Ok(out);
        }
        if self.key_results.len() == self.committee.len() {
            self.result = Some(OperationResult {
                key_set_hash: Some(hex::encode(fingerprint)),
                ..OperationResult::default()
            });
            self.set_state(
                OperationState::Completed,
                now,
                &mut out,
                "every committee member holds the same presignature",
            );
        }
        Ok(out)
    }

    /// Whether this sign operation may use a presignature: secp256k1, a payload the
    /// protocol hashes itself (eth_tx, message), the root key.
    pub fn can_use_presignature(&self) -> bool {
        matches!(
            &self.details,
            OperationDetails::Sign {
                payload: SignPayload::EthTx(_) | SignPayload::Message(_),
                derivation_path: None,
                presignature: None,
                ..
            }
        ) && self.curve == Curve::Secp256k1
    }

    /// Whether this Completed presign operation can serve a sign operation `sign` (same
    /// vault, key generation and committee, not consumed).
    pub fn presignature_serves(&self, sign: &Operation) -> bool {
        let OperationDetails::Presign {
            key_generation,
            consumed_by: None,
        } = &self.details
        else {
            return false;
        };
        let ids = |c: &[CommitteeMember]| {
            let mut v: Vec<DeviceId> = c.iter().map(|m| m.device_id.clone()).collect();
            v.sort();
            v
        };
        self.state == OperationState::Completed
            && self.vault_id == sign.vault_id
            && sign.key_generation() == Some(*key_generation)
            && ids(&self.committee) == ids(&sign.committee)
    }

    /// Records that `sign` uses this presignature, and `sign` that it uses it.
    pub fn consume_presignature(&mut self, sign: &mut Operation, now: Millis) -> Outcome {
        let mut out = Outcome::default();
        if let OperationDetails::Presign { consumed_by, .. } = &mut self.details {
            *consumed_by = Some(sign.id.clone());
        }
        if let OperationDetails::Sign { presignature, .. } = &mut sign.details {
            *presignature = Some(self.id.clone());
        }
        self.updated_at = now;
        out.events.push(AuditEvent::new(
            "presignature_consumed",
            None,
            serde_json::json!({"by": sign.id}),
        ));
        out
    }

    /// The signing digest (sign operations on secp256k1, or digest/eth_tx payloads).
    pub fn signing_digest(&self) -> Option<[u8; 32]> {
        match &self.details {
            OperationDetails::Sign { payload, .. } => signing_digest(self.curve, payload),
            _ => None,
        }
    }

    /// The voter entry of a device.
    pub fn voter(&self, device: &DeviceId) -> Option<&Voter> {
        self.voters.iter().find(|v| &v.device_id == device)
    }

    /// The committee entry of a device.
    pub fn committee_member(&self, device: &DeviceId) -> Option<&CommitteeMember> {
        self.committee.iter().find(|m| &m.device_id == device)
    }

    /// Approving weight so far (old set for sign/reshare, new set for keygen).
    pub fn approved_weight(&self) -> u32 {
        let keygen = matches!(self.details, OperationDetails::Keygen { .. });
        self.votes
            .iter()
            .filter(|v| v.choice == VoteChoice::Approve)
            .filter(|v| {
                self.voter(&v.device_id).is_some_and(|r| {
                    if keygen {
                        r.new_index.is_some()
                    } else {
                        r.old_index.is_some()
                    }
                })
            })
            .map(|v| v.weight)
            .sum()
    }

    /// Approving weight needed: threshold (sign), old threshold (reshare), all members (keygen).
    pub fn required_weight(&self) -> u32 {
        match self.details.old_threshold() {
            Some(t) => u32::from(t),
            None => self.voters.iter().map(|v| v.weight).sum(),
        }
    }

    fn set_state(&mut self, to: OperationState, now: Millis, out: &mut Outcome, why: &str) {
        let from = self.state;
        self.state = to;
        self.updated_at = now;
        out.events.push(AuditEvent::new(
            "state",
            None,
            serde_json::json!({"from": from.as_str(), "to": to.as_str(), "why": why}),
        ));
        if self.kind() == OperationKind::Keygen
            && matches!(
                to,
                OperationState::Failed | OperationState::Rejected | OperationState::Expired
            )
        {
            out.vault_update = Some(VaultUpdate::MarkFailed);
        }
    }

    /// Expires the operation if `now` is past `expires_at` and it is not final.
    pub fn expire_if_due(&mut self, now: Millis) -> Option<Outcome> {
        if self.state.is_final() || now < self.expires_at {
            return None;
        }
        let mut out = Outcome::default();
        self.set_state(OperationState::Expired, now, &mut out, "expiresAt passed");
        Some(out)
    }

    fn check_live(&self, now: Millis) -> Result<()> {
        if self.state == OperationState::Expired || (!self.state.is_final() && now >= self.expires_at) {
            return Err(Error::new(
                ErrorCode::Expired,
                format!("operation {} has expired", self.id),
            ));
        }
        Ok(())
    }

    /// Records a vote and re-evaluates quorum. Votes are accepted only while
    /// AwaitingApproval, once per device, from the operation's voters.
    pub fn vote(&mut self, device: &DeviceId, choice: VoteChoice, now: Millis) -> Result<Outcome> {
        self.check_live(now)?;
        let voter = self.voter(device).cloned().ok_or_else(|| {
            Error::new(
                ErrorCode::NotAVoter,
                format!("device {device} is not a voter of operation {}", self.id),
            )
        })?;
        if self.votes.iter().any(|v| &v.device_id == device) {
            return Err(Error::new(
                ErrorCode::AlreadyVoted,
                format!("device {device} has already voted on operation {}", self.id),
            ));
        }
        if self.state != OperationState::AwaitingApproval {
            return Err(Error::invalid_state(format!(
                "operation {} is {}, votes are taken only while AwaitingApproval",
                self.id,
                self.state.as_str()
            )));
        }
        let seq = u32::try_from(self.votes.len()).unwrap_or(u32::MAX);
        let vote = Vote {
            device_id: device.clone(),
            choice,
            weight: voter.weight,
            seq,
            at: now,
        };
        self.votes.push(vote.clone());
        let mut out = Outcome {
            new_vote: Some(vote),
            ..Outcome::default()
        };
        out.events.push(AuditEvent::new(
            "vote",
            Some(device),
            serde_json::json!({"vote": choice.as_str()}),
        ));
        self.updated_at = now;
        match self.evaluate_quorum() {
            Quorum::Pending => {}
            Quorum::Impossible(why) => {
                self.rejection = Some(why.clone());
                self.set_state(OperationState::Rejected, now, &mut out, &why);
            }
            Quorum::Reached(committee) => {
                out.events.push(AuditEvent::new(
                    "committee",
                    None,
                    serde_json::json!({"committee": committee.iter().map(|m| serde_json::json!({
                        "deviceId": m.device_id, "oldIndex": m.old_index, "newIndex": m.new_index})).collect::<Vec<_>>()}),
                ));
                self.committee = committee;
                self.set_state(OperationState::Ready, now, &mut out, "quorum reached");
            }
        }
        Ok(out)
    }

    /// Quorum rules:
    /// - new-set members (keygen, reshare) must all approve;
    /// - old-set approving weight (sign, reshare) must reach the old threshold;
    ///   the committee's old part is the earliest approvers reaching it;
    /// - rejected at once when that can no longer happen.
    fn evaluate_quorum(&self) -> Quorum {
        let vote_of = |d: &DeviceId| self.votes.iter().find(|v| &v.device_id == d);
        // New members: every one must approve.
        for voter in self.voters.iter().filter(|v| v.new_index.is_some()) {
            if let Some(v) = vote_of(&voter.device_id) {
                if v.choice != VoteChoice::Approve {
                    return Quorum::Impossible(format!(
                        "new member {} voted {}; every new member must approve",
                        voter.device_id,
                        v.choice.as_str()
                    ));
                }
            }
        }
        let all_new_approved = self
            .voters
            .iter()
            .filter(|v| v.new_index.is_some())
            .all(|v| vote_of(&v.device_id).is_some());
        let mut old_committee: Vec<&Voter> = Vec::new();
        if let Some(t) = self.details.old_threshold() {
            let t = u32::from(t);
            let mut approved = 0u32;
            for vote in &self.votes {
                let Some(voter) = self.voter(&vote.device_id) else {
                    continue;
                };
                if voter.old_index.is_none() || vote.choice != VoteChoice::Approve || approved >= t {
                    continue;
                }
                approved += vote.weight;
                old_committee.push(voter);
            }
            if approved < t {
                let total_approved: u32 = self
                    .votes
                    .iter()
                    .filter(|v| v.choice == VoteChoice::Approve)
                    .filter(|v| self.voter(&v.device_id).is_some_and(|r| r.old_index.is_some()))
                    .map(|v| v.weight)
                    .sum();
                let remaining: u32 = self
                    .voters
                    .iter()
                    .filter(|v| v.old_index.is_some() && vote_of(&v.device_id).is_none())
                    .map(|v| v.weight)
                    .sum();
                if total_approved + remaining < t {
                    return Quorum::Impossible(format!(
                        "approving weight can reach at most {} of the {} required",
                        total_approved + remaining,
                        t
                    ));
                }
                return Quorum::Pending;
            }
        }
        if !all_new_approved {
            return Quorum::Pending;
        }
        let mut committee: Vec<CommitteeMember> = Vec::new();
        for v in self.voters.iter().filter(|v| v.new_index.is_some()) {
            let old_index = old_committee
                .iter()
                .find(|o| o.device_id == v.device_id)
                .and_then(|o| o.old_index);
            committee.push(CommitteeMember {
                device_id: v.device_id.clone(),
                old_index,
                new_index: v.new_index,
            });
        }
        let mut old_only: Vec<CommitteeMember> = old_committee
            .iter()
            .filter(|o| o.new_index.is_none())
            .map(|o| CommitteeMember {
                device_id: o.device_id.clone(),
                old_index: o.old_index,
                new_index: None,
            })
            .collect();
        committee.sort_by_key(|m| m.new_index);
        old_only.sort_by_key(|m| m.old_index);
        committee.extend(old_only);
        Quorum::Reached(committee)
    }

    fn check_running_member(&self, device: &DeviceId, now: Millis) -> Result<CommitteeMember> {
        self.check_live(now)?;
        let member = self.committee_member(device).cloned().ok_or_else(|| {
            Error::new(
                ErrorCode::NotInCommittee,
                format!("device {device} is not in the committee of operation {}", self.id),
            )
        })?;
        if !matches!(self.state, OperationState::Ready | OperationState::InProgress) {
            return Err(Error::invalid_state(format!(
                "operation {} is {}; this needs Ready or InProgress",
                self.id,
                self.state.as_str()
            )));
        }
        Ok(member)
    }

    fn mark_started(&mut self, device: &DeviceId, now: Millis, out: &mut Outcome) {
        if self.state == OperationState::Ready {
            self.started_by = Some(device.clone());
            out.events
                .push(AuditEvent::new("started", Some(device), serde_json::json!({})));
            self.set_state(
                OperationState::InProgress,
                now,
                out,
                "a committee member started the protocol",
            );
        }
    }

    /// Ready → InProgress when the first committee member reports that it started
    /// (idempotent afterwards).
    pub fn start(&mut self, device: &DeviceId, now: Millis) -> Result<Outcome> {
        self.check_running_member(device, now)?;
        let mut out = Outcome::default();
        self.mark_started(device, now, &mut out);
        Ok(out)
    }

    fn fail(
        &mut self,
        reason: String,
        culprits: Vec<DeviceId>,
        reported_by: Option<&DeviceId>,
        now: Millis,
        out: &mut Outcome,
    ) {
        out.events.push(AuditEvent::new(
            "failure",
            reported_by,
            serde_json::json!({"reason": reason, "culprits": culprits}),
        ));
        self.failure = Some(Failure {
            reason: reason.clone(),
            culprits,
            reported_by: reported_by.cloned(),
        });
        self.set_state(OperationState::Failed, now, out, &reason);
    }

    /// The key generation this operation works with (sign: the one it signs with;
    /// reshare: the one it replaces); `None` for keygen.
    pub fn key_generation(&self) -> Option<u32> {
        match &self.details {
            OperationDetails::Keygen { .. } => None,
            OperationDetails::Reshare {
                old_key_generation, ..
            } => Some(*old_key_generation),
            OperationDetails::Sign { key_generation, .. }
            | OperationDetails::Presign { key_generation, .. } => Some(*key_generation),
        }
    }

    /// Fails an open operation created at a key generation older than
    /// `vault_key_generation` (the vault was reshared by `reshare`): its committee's
    /// shares are gone or about to be deleted, so it can never complete.
    pub fn fail_if_stale(
        &mut self,
        vault_key_generation: u32,
        reshare: &OperationId,
        now: Millis,
    ) -> Option<Outcome> {
        let generation = self.key_generation()?;
        if self.state.is_final() || generation >= vault_key_generation {
            return None;
        }
        let mut out = Outcome::default();
        out.events.push(AuditEvent::new(
            "stale",
            None,
            serde_json::json!({"reshareId": reshare, "keyGeneration": generation, "vaultKeyGeneration": vault_key_generation}),
        ));
        self.fail(
            format!(
                "stale: reshare {reshare} moved the vault to key generation {vault_key_generation}; this operation was created at key generation {generation} and can no longer complete"
            ),
            Vec::new(),
            None,
            now,
            &mut out,
        );
        Some(out)
    }

    /// A committee member reports that the protocol failed, naming culprits.
    pub fn report_failure(
        &mut self,
        device: &DeviceId,
        reason: &str,
        culprits: Vec<DeviceId>,
        now: Millis,
    ) -> Result<Outcome> {
        self.check_running_member(device, now)?;
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 2000 {
            return Err(Error::invalid_input("reason must be 1-2000 bytes"));
        }
        if let Some(c) = culprits.iter().find(|c| self.committee_member(c).is_none()) {
            return Err(Error::invalid_input(format!(
                "culprit {c} is not in the committee"
            )));
        }
        let mut out = Outcome::default();
        self.fail(reason.to_owned(), culprits, Some(device), now, &mut out);
        Ok(out)
    }

    /// When the key results so far disagree, fails the operation naming every device outside
    /// the largest agreeing group (everyone, on a tie) and refuses the submission; true then.
    fn fail_on_disagreement(&mut self, what: &str, difference: &str, now: Millis, out: &mut Outcome) -> bool {
        let Some(culprits) = self.disagreeing_devices() else {
            return false;
        };
        let names: Vec<String> = culprits.iter().map(|d| d.to_string()).collect();
        let reason = format!(
            "{what} results disagree: devices {} reported {difference}",
            names.join(", ")
        );
        self.fail(reason, culprits, None, now, out);
        out.refusal = Some(Error::new(
            ErrorCode::ResultMismatch,
            format!("{what} results disagree; the operation failed"),
        ));
        true
    }

    /// The devices outside the largest group of agreeing submissions (everyone on a
    /// tie), or `None` when all submissions so far agree.
    fn disagreeing_devices(&self) -> Option<Vec<DeviceId>> {
        let key_of = |r: &KeyResult| (r.public_key.clone(), r.chain_code.clone(), r.key_set_hash.clone());
        let mut groups: Vec<KeyGroup> = Vec::new();
        for r in &self.key_results {
            match groups.iter_mut().find(|(k, _)| *k == key_of(r)) {
                Some((_, ds)) => ds.push(r.device_id.clone()),
                None => groups.push((key_of(r), vec![r.device_id.clone()])),
            }
        }
        if groups.len() <= 1 {
            return None;
        }
        let max = groups.iter().map(|(_, d)| d.len()).max().unwrap_or(0);
        let unique_max = groups.iter().filter(|(_, d)| d.len() == max).count() == 1;
        Some(
            groups
                .iter()
                .filter(|(_, d)| !(unique_max && d.len() == max))
                .flat_map(|(_, d)| d.clone())
                .collect(),
        )
    }

    /// A keygen result from a committee member. All must agree on the public key, the
    /// chain code and the key-set hash; the vault becomes Active when every member has
    /// submitted the same values.
    pub fn submit_keygen_result(
        &mut self,
        device: &DeviceId,
        public_key_hex: &str,
        chain_code_hex: Option<&str>,
        key_set_hash_hex: &str,
        now: Millis,
    ) -> Result<Outcome> {
        if self.kind() != OperationKind::Keygen {
            return Err(Error::invalid_state(format!(
                "operation {} is not a keygen",
                self.id
            )));
        }
        self.check_running_member(device, now)?;
        if self.key_results.iter().any(|r| &r.device_id == device) {
            return Err(Error::new(
                ErrorCode::AlreadySubmitted,
                format!("device {device} already submitted"),
            ));
        }
        let raw = crypto::decode_hex("publicKey", public_key_hex)?;
        let public_key = match self.curve {
            Curve::Secp256k1 => crypto::normalize_secp256k1_public_key(&raw)?,
            Curve::Ed25519 => crypto::check_ed25519_public_key(&raw)?,
        };
        let chain_code = match (self.curve, chain_code_hex) {
            (Curve::Secp256k1, Some(cc)) => Some(hex::encode(crypto::decode_hex_array::<32>(
                "chainCode",
                cc,
                ErrorCode::InvalidInput,
            )?)),
            (Curve::Secp256k1, None) => {
                return Err(Error::invalid_input(
                    "chainCode (32 bytes hex) is required for secp256k1",
                ))
            }
            (Curve::Ed25519, Some(_)) => {
                return Err(Error::invalid_input("chainCode is not used for ed25519"))
            }
            (Curve::Ed25519, None) => None,
        };
        let key_set_hash =
            crypto::decode_hex_array::<32>("keySetHash", key_set_hash_hex, ErrorCode::InvalidInput)?;
        let mut out = Outcome::default();
        self.mark_started(device, now, &mut out);
        self.key_results.push(KeyResult {
            device_id: device.clone(),
            public_key,
            chain_code,
            key_set_hash: Some(hex::encode(key_set_hash)),
        });
        out.events.push(AuditEvent::new(
            "keygen_result",
            Some(device),
            serde_json::json!({"publicKey": public_key_hex, "keySetHash": hex::encode(key_set_hash)}),
        ));
        // Anyone outside the largest agreeing group is named (everyone, on a tie).
        if self.fail_on_disagreement(
            "keygen",
            "a different public key, chain code or key-set hash",
            now,
            &mut out,
        ) {
            return Ok(out);
        }
        if self.key_results.len() == self.committee.len() {
            let first = self.key_results.first().cloned();
            if let Some(first) = first {
                let chain_code = match &first.chain_code {
                    Some(cc) => {
                        let bytes = hex::decode(cc).map_err(|e| Error::internal("chain code", e))?;
                        Some(
                            <[u8; 32]>::try_from(bytes.as_slice())
                                .map_err(|e| Error::internal("chain code", e))?,
                        )
                    }
                    None => None,
                };
                self.result = Some(OperationResult {
                    public_key: Some(hex::encode(&first.public_key)),
                    chain_code: first.chain_code.clone(),
                    key_set_hash: Some(hex::encode(key_set_hash)),
                    ..OperationResult::default()
                });
                out.vault_update = Some(VaultUpdate::Activate {
                    public_key: first.public_key,
                    chain_code,
                    key_set_hash,
                });
                self.set_state(
                    OperationState::Completed,
                    now,
                    &mut out,
                    "all committee members reported the same key and key-set hash",
                );
            }
        }
        Ok(out)
    }

    /// A reshare result from a new member: the public key, which must be the vault's,
    /// and the key-set hash of the new shares, on which every new member must agree.
    pub fn submit_reshare_result(
        &mut self,
        vault: &Vault,
        device: &DeviceId,
        public_key_hex: &str,
        key_set_hash_hex: &str,
        now: Millis,
    ) -> Result<Outcome> {
        let OperationDetails::Reshare {
            new_signers,
            new_threshold,
            old_key_generation,
            ..
        } = &self.details
        else {
            return Err(Error::invalid_state(format!(
                "operation {} is not a reshare",
                self.id
            )));
        };
        let (new_signers, new_threshold, old_key_generation) =
            (new_signers.clone(), *new_threshold, *old_key_generation);
        let member = self.check_running_member(device, now)?;
        if member.new_index.is_none() {
            return Err(Error::new(
                ErrorCode::NotInCommittee,
                format!(
                    "device {device} is not a new member of operation {}; only new members submit",
                    self.id
                ),
            ));
        }
        if self.key_results.iter().any(|r| &r.device_id == device) {
            return Err(Error::new(
                ErrorCode::AlreadySubmitted,
                format!("device {device} already submitted"),
            ));
        }
        let raw = crypto::decode_hex("publicKey", public_key_hex)?;
        let public_key = match self.curve {
            Curve::Secp256k1 => crypto::normalize_secp256k1_public_key(&raw)?,
            Curve::Ed25519 => crypto::check_ed25519_public_key(&raw)?,
        };
        let key_set_hash =
            crypto::decode_hex_array::<32>("keySetHash", key_set_hash_hex, ErrorCode::InvalidInput)?;
        let mut out = Outcome::default();
        self.mark_started(device, now, &mut out);
        out.events.push(AuditEvent::new(
            "reshare_result",
            Some(device),
            serde_json::json!({"publicKey": public_key_hex, "keySetHash": hex::encode(key_set_hash)}),
        ));
        if vault.public_key.as_deref() != Some(public_key.as_slice()) {
            self.fail(
                format!("device {device} reported a public key different from the vault's"),
                vec![device.clone()],
                None,
                now,
                &mut out,
            );
            out.refusal = Some(Error::new(
                ErrorCode::ResultMismatch,
                "the reshared public key differs from the vault's; the operation failed",
            ));
            return Ok(out);
        }
        self.key_results.push(KeyResult {
            device_id: device.clone(),
            public_key,
            chain_code: None,
            key_set_hash: Some(hex::encode(key_set_hash)),
        });
        if self.fail_on_disagreement(
            "reshare",
            "a different key-set hash; the new shares are inconsistent and the old ones must be kept",
            now,
            &mut out,
        ) {
            return Ok(out);
        }
        let new_members = self.committee.iter().filter(|m| m.new_index.is_some()).count();
        if self.key_results.len() == new_members {
            let key_generation = old_key_generation.saturating_add(1);
            self.result = Some(OperationResult {
                public_key: vault.public_key.as_ref().map(hex::encode),
                key_generation: Some(key_generation),
                key_set_hash: Some(hex::encode(key_set_hash)),
                ..OperationResult::default()
            });
            out.vault_update = Some(VaultUpdate::Reshared {
                signers: new_signers,
                threshold: new_threshold,
                key_generation,
                key_set_hash,
            });
            self.set_state(
                OperationState::Completed,
                now,
                &mut out,
                "every new member reported the vault key and the same key-set hash",
            );
        }
        Ok(out)
    }

    /// A signature from a committee member, verified before acceptance. A signature
    /// that does not verify fails the operation, naming the device, and is refused.
    pub fn submit_signature(
        &mut self,
        vault: &Vault,
        device: &DeviceId,
        signature_hex: &str,
        recovery_id: Option<i64>,
        now: Millis,
    ) -> Result<Outcome> {
        let OperationDetails::Sign {
            payload,
            derivation_path,
            key_generation,
            ..
        } = &self.details
        else {
            return Err(Error::invalid_state(format!(
                "operation {} is not a sign operation",
                self.id
            )));
        };
        let (payload, derivation_path, key_generation) =
            (payload.clone(), derivation_path.clone(), *key_generation);
        self.check_running_member(device, now)?;
        if vault.key_generation != key_generation {
            return Err(Error::invalid_state(format!(
                "the vault was reshared (key generation {} → {}) since this operation was created",
                key_generation, vault.key_generation
            )));
        }
        // Malformed input is refused before any state change (the operation stays).
        let recovery_id = match (self.curve, recovery_id) {
            (Curve::Secp256k1, Some(r @ 0..=1)) => Some(r),
            (Curve::Secp256k1, Some(r)) => {
                return Err(Error::invalid_input(format!(
                    "recoveryId must be 0 or 1, got {r}"
                )))
            }
            (Curve::Secp256k1, None) => {
                return Err(Error::invalid_input(
                    "recoveryId (0 or 1) is required for secp256k1",
                ))
            }
            (Curve::Ed25519, _) => None,
        };
        let signature = crypto::decode_hex("signature", signature_hex)?;
        let public_key = vault
            .public_key
            .clone()
            .ok_or_else(|| Error::invalid_state(format!("vault {} has no key", vault.id)))?;
        let message = verification_message(self.curve, &payload);
        let mut recovery = None;
        let verdict = match self.curve {
            Curve::Secp256k1 => {
                let key = match &derivation_path {
                    Some(path) => {
                        let path = crypto::parse_derivation_path(path)?;
                        let cc = vault
                            .chain_code
                            .ok_or_else(|| Error::internal("derive", "vault has no chain code"))?;
                        crypto::derive_secp256k1_child(&public_key, &cc, &path)?
                    }
                    None => public_key.clone(),
                };
                match recovery_id.and_then(|r| u8::try_from(r).ok()) {
                    Some(rid) => {
                        recovery = Some(rid);
                        let digest: [u8; 32] = message
                            .as_slice()
                            .try_into()
                            .map_err(|e| Error::internal("digest", e))?;
                        crypto::verify_secp256k1(&key, &digest, &signature, rid)
                    }
                    None => Err("recoveryId (0 or 1) is required for secp256k1".to_owned()),
                }
            }
            Curve::Ed25519 => crypto::verify_ed25519(&public_key, &message, &signature),
        };
        let mut out = Outcome::default();
        self.mark_started(device, now, &mut out);
        if let Err(why) = verdict {
            out.events.push(AuditEvent::new(
                "signature_refused",
                Some(device),
                serde_json::json!({"reason": why, "signature": signature_hex}),
            ));
            self.fail(
                format!("device {device} submitted a signature that was refused: {why}"),
                vec![device.clone()],
                None,
                now,
                &mut out,
            );
            out.refusal = Some(Error::new(
                ErrorCode::SignatureInvalid,
                format!(
                    "signature refused ({why}); operation {} failed, device {device} named",
                    self.id
                ),
            ));
            return Ok(out);
        }
        let mut result = OperationResult {
            signature: Some(hex::encode(&signature)),
            recovery_id: recovery,
            submitted_by: Some(device.clone()),
            ..OperationResult::default()
        };
        if let SignPayload::EthTx(bytes) = &payload {
            let tx = crypto::decode_unsigned_eip1559(bytes)?;
            let sig: [u8; 64] = signature
                .as_slice()
                .try_into()
                .map_err(|e| Error::internal("signature", e))?;
            let raw = crypto::assemble_signed_eip1559(&tx, &sig, recovery.unwrap_or(0));
            result.raw_transaction = Some(format!("0x{}", hex::encode(raw)));
        }
        out.events.push(AuditEvent::new(
            "signature_accepted",
            Some(device),
            serde_json::json!({}),
        ));
        self.result = Some(result);
        self.set_state(OperationState::Completed, now, &mut out, "signature verified");
        Ok(out)
    }

    /// The chain id of an eth_tx payload.
    pub fn eth_chain_id(&self) -> Option<u64> {
        match &self.details {
            OperationDetails::Sign {
                payload: SignPayload::EthTx(bytes),
                ..
            } => crypto::decode_unsigned_eip1559(bytes).ok().map(|tx| tx.chain_id),
            _ => None,
        }
    }
}

/// Submissions that agree: (public key, chain code, key-set hash) and the devices that sent it.
type KeyGroup = ((Vec<u8>, Option<String>, Option<String>), Vec<DeviceId>);

enum Quorum {
    Pending,
    Reached(Vec<CommitteeMember>),
    Impossible(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(i: u8) -> DeviceId {
        DeviceId::from_string(format!("dev_{i}"))
    }

    fn vault(n: u8, t: u16) -> Vault {
        let mut v = new_vault(
            &OrgId::from_string("org"),
            "v",
            "secp256k1",
            i64::from(t),
            (0..n)
                .map(|i| Signer {
                    device_id: dev(i),
                    weight: 1,
                })
                .collect(),
            0,
        )
        .unwrap();
        v.status = VaultStatus::Active;
        v
    }

    fn sign_op(v: &Vault) -> Operation {
        Operation::new(
            v,
            OperationDetails::Sign {
                threshold: v.threshold,
                payload: SignPayload::Digest([1; 32]),
                derivation_path: None,
                key_generation: 0,
                presignature: None,
            },
            &ClientId::from_string("c"),
            0,
            &ExpiryPolicy::default(),
        )
    }

    #[test]
    fn sign_committee_is_earliest_approvers() {
        let v = vault(4, 2);
        let mut op = sign_op(&v);
        op.vote(&dev(3), VoteChoice::Approve, 1).unwrap();
        op.vote(&dev(0), VoteChoice::Reject, 2).unwrap();
        assert_eq!(op.state, OperationState::AwaitingApproval);
        op.vote(&dev(1), VoteChoice::Approve, 3).unwrap();
        assert_eq!(op.state, OperationState::Ready);
        let ids: Vec<_> = op.committee.iter().map(|m| m.device_id.clone()).collect();
        assert_eq!(ids, vec![dev(1), dev(3)]); // ordered by share index
        assert_eq!(
            op.vote(&dev(2), VoteChoice::Approve, 4).unwrap_err().code(),
            ErrorCode::InvalidState
        );
        assert_eq!(
            op.vote(&dev(3), VoteChoice::Approve, 4).unwrap_err().code(),
            ErrorCode::AlreadyVoted
        );
    }

    #[test]
    fn sign_early_rejection() {
        let v = vault(3, 2);
        let mut op = sign_op(&v);
        op.vote(&dev(0), VoteChoice::Reject, 1).unwrap();
        assert_eq!(op.state, OperationState::AwaitingApproval);
        op.vote(&dev(1), VoteChoice::Abstain, 2).unwrap();
        assert_eq!(op.state, OperationState::Rejected);
    }

    #[test]
    fn reshare_quorum_and_roles() {
        let v = vault(3, 2);
        let new_signers: Vec<Signer> = [2u8, 3, 4]
            .iter()
            .map(|i| Signer {
                device_id: dev(*i),
                weight: 1,
            })
            .collect();
        let mut op = Operation::new(
            &v,
            OperationDetails::Reshare {
                old_threshold: 2,
                old_signers: v.signers.clone(),
                new_threshold: 2,
                new_signers,
                old_key_generation: 0,
            },
            &ClientId::from_string("c"),
            0,
            &ExpiryPolicy::default(),
        );
        for d in [3u8, 4, 2] {
            op.vote(&dev(d), VoteChoice::Approve, 1).unwrap();
        }
        // dev 2 approved as old (1 of 2) and new.
        assert_eq!(op.state, OperationState::AwaitingApproval);
        op.vote(&dev(0), VoteChoice::Approve, 2).unwrap();
        assert_eq!(op.state, OperationState::Ready);
        let c: Vec<_> = op
            .committee
            .iter()
            .map(|m| (m.device_id.clone(), m.old_index, m.new_index))
            .collect();
        assert_eq!(
            c,
            vec![
                (dev(2), Some(2), Some(0)),
                (dev(3), None, Some(1)),
                (dev(4), None, Some(2)),
                (dev(0), Some(0), None)
            ]
        );
    }

    #[test]
    fn keygen_needs_everyone() {
        let mut v = vault(2, 2);
        v.status = VaultStatus::Pending;
        let mut op = Operation::new(
            &v,
            OperationDetails::Keygen {
                threshold: 2,
                signers: v.signers.clone(),
            },
            &ClientId::from_string("c"),
            0,
            &ExpiryPolicy::default(),
        );
        let out = op.vote(&dev(0), VoteChoice::Abstain, 1).unwrap();
        assert_eq!(op.state, OperationState::Rejected);
        assert_eq!(out.vault_update, Some(VaultUpdate::MarkFailed));
    }

    #[test]
    fn weights_and_thresholds() {
        let s = |w| {
            vec![Signer {
                device_id: dev(0),
                weight: w,
            }]
        };
        assert_eq!(
            check_signer_set(&s(2), 1).unwrap_err().code(),
            ErrorCode::UnsupportedWeight
        );
        assert_eq!(
            check_signer_set(&s(1), 0).unwrap_err().code(),
            ErrorCode::InvalidThreshold
        );
        assert_eq!(
            check_signer_set(&s(1), 2).unwrap_err().code(),
            ErrorCode::InvalidThreshold
        );
        assert_eq!(Curve::parse("p256").unwrap_err().code(), ErrorCode::UnknownCurve);
    }
}
