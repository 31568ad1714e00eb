//! What the coordinator answers, as a device reads it (the GraphQL schema is
//! `crates/coordinator/schema.graphql`).

use serde::Deserialize;

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
    /// The device's own signed record of its keys (hex), once published.
    #[serde(default)]
    pub record: Option<String>,
}

/// A member of a signer set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultSigner {
    /// Device.
    pub device_id: String,
    /// Weight: the number of shares the device holds.
    pub weight: u32,
    /// Position in the set (the device's shares follow those of the signers before it:
    /// [`crate::protocol::share_set::share_indices`]).
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
    /// The device's own signed record of its keys (hex), once published.
    #[serde(default)]
    pub record: Option<String>,
    /// Sign/keygen share index.
    pub index: Option<u16>,
    /// The old share this party uses (sign, reshare).
    pub old_index: Option<u16>,
    /// The new share this party receives (keygen, reshare).
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
    /// The generation of the new shares (absent from older coordinators: the old one + 1).
    #[serde(default)]
    pub new_key_generation: Option<u64>,
}

impl ReshareDetails {
    /// The generation of the new shares.
    pub fn new_generation(&self) -> u64 {
        self.new_key_generation
            .unwrap_or(self.old_key_generation.saturating_add(1))
    }
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
    /// bip340: sign for the vault's Taproot output key.
    #[serde(default)]
    pub taproot: Option<TaprootDetails>,
    /// Chain id of an eth_tx.
    pub chain_id: Option<String>,
    /// Key generation to sign with.
    pub key_generation: u64,
    /// The presignature (a Presign operation's id) the committee uses, if any.
    pub presignature_id: Option<String>,
}

/// A BIP-341 key-path tweak asked for with a bip340 signature.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaprootDetails {
    /// The script tree's Merkle root (hex), if any.
    pub merkle_root: Option<String>,
}

/// Presign details.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresignDetails {
    /// Key generation presigned with.
    pub key_generation: u64,
    /// The sign operation that consumed it.
    pub consumed_by: Option<String>,
    /// The committee member that no longer holds its part (it restarted).
    #[serde(default)]
    pub discarded_by: Option<String>,
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

/// A person's answer to a human-approved device's request, as delivered (checked by the
/// device's approver, never trusted as it comes).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HumanAnswer {
    /// `approve` | `reject`.
    pub verdict: String,
    /// The WebAuthn assertion (JSON).
    pub assertion: String,
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
