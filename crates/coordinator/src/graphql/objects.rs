//! The GraphQL objects of devices, vaults, votes, committees, operation details, results
//! and audit entries.

use super::*;

/// The caller.
#[derive(SimpleObject)]
pub struct Me {
    pub(crate) client_id: ID,
    pub(crate) organisation_id: ID,
    /// `operator` | `signer`.
    pub(crate) role: String,
}

/// An API client of the organisation (never its secret).
#[derive(SimpleObject)]
#[graphql(name = "ApiClient")]
pub struct ApiClientObj {
    pub(crate) client_id: ID,
    /// `operator` | `signer`.
    pub(crate) role: String,
    pub(crate) created_at: String,
    /// Last secret rotation.
    pub(crate) rotated_at: Option<String>,
    /// Until when the previous secret is still accepted (after a rotation).
    pub(crate) previous_secret_valid_until: Option<String>,
    /// Set once revoked: its secrets and tokens are refused.
    pub(crate) revoked_at: Option<String>,
}

impl From<domain::ClientCredentials> for ApiClientObj {
    fn from(c: domain::ClientCredentials) -> Self {
        Self {
            client_id: ID(c.client.id.to_string()),
            role: c.client.role.as_str().to_owned(),
            created_at: time(c.created_at),
            rotated_at: c.rotated_at.map(time),
            previous_secret_valid_until: c.previous.map(|(_, until)| time(until)),
            revoked_at: c.revoked_at.map(time),
        }
    }
}

/// A device.
pub struct DeviceObj(pub(crate) Device);

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
    /// The device's own record of its keys, signed by its signing key (hex of
    /// `vsigner-records`' encoding), once published: devices verify it before they encrypt
    /// to the device or accept its messages.
    async fn record(&self) -> Option<String> {
        self.0.record.as_ref().map(|r| r.to_hex())
    }
    /// SHA-256 of the record (hex): what an approver pins.
    async fn record_hash(&self) -> Option<String> {
        self.0.record.as_ref().map(|r| hex::encode(r.hash()))
    }

    /// When the device's own signer client last called for it (a poll, a vote, a result)
    /// since the coordinator started; null if not since then (a liveness hint, kept in
    /// memory).
    async fn last_seen_at(&self, ctx: &Context<'_>) -> Option<String> {
        ctx_service(ctx).ok()?.last_seen(&self.0.id).map(time)
    }
}

/// A member of a signer set.
#[derive(SimpleObject)]
pub struct VaultSigner {
    pub(crate) device_id: ID,
    pub(crate) weight: i32,
    /// Position in the set. The device holds `weight` share indices, after those of the
    /// signers before it (with weights 1, the share index is the position).
    pub(crate) index: i32,
}

pub(super) fn signers(list: &[domain::Signer]) -> Vec<VaultSigner> {
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
pub struct VaultObj(pub(crate) Vault);

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
    /// The vault's scheme: `secp256k1` (ECDSA), `secp256r1` (ECDSA on P-256), `ed25519`
    /// (EdDSA) or `bip340` (Schnorr on secp256k1).
    async fn curve(&self) -> &str {
        self.0.curve.as_str()
    }
    async fn threshold(&self) -> i32 {
        i32::from(self.0.threshold)
    }
    async fn signers(&self) -> Vec<VaultSigner> {
        signers(&self.0.signers)
    }
    /// Hex: SEC1 compressed (secp256k1, secp256r1), 32 bytes (ed25519) or the 32-byte
    /// x-only key (bip340); null until Active.
    async fn public_key(&self) -> Option<String> {
        self.0.public_key.as_ref().map(hex::encode)
    }
    /// Hex, 32 bytes, for non-hardened child keys (secp256k1, secp256r1, ed25519; null for
    /// bip340 and for an ed25519 vault made before ed25519 had child keys).
    async fn chain_code(&self) -> Option<String> {
        self.0.chain_code.map(hex::encode)
    }
    async fn key_generation(&self) -> i32 {
        i32::try_from(self.0.key_generation).unwrap_or(i32::MAX)
    }
    /// Hex, 32 bytes: SHA-256 over the concatenation, in share-index order, of every
    /// party's public key share in compressed encoding (secp256k1, secp256r1, bip340:
    /// 33-byte SEC1 compressed; ed25519: 32 bytes) of the current key generation; null
    /// until Active.
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
    /// bip340: the BIP-341 Taproot output key of the vault key with no script tree
    /// (x-only, hex), what a `taproot` signature verifies under.
    async fn taproot_output_key(&self) -> Option<String> {
        self.output_key().map(hex::encode)
    }
    /// bip340: the Taproot (witness v1, bech32m) address of `taprootOutputKey` on
    /// `network`: `mainnet` (bc1p…), `testnet` (tb1p…, also signet) or `regtest` (bcrt1p…).
    async fn taproot_address(
        &self,
        #[graphql(default_with = "\"mainnet\".to_owned()")] network: String,
    ) -> async_graphql::Result<Option<String>> {
        let network = match network.as_str() {
            "mainnet" => crate::crypto::TaprootNetwork::Mainnet,
            "testnet" => crate::crypto::TaprootNetwork::Testnet,
            "regtest" => crate::crypto::TaprootNetwork::Regtest,
            other => {
                return Err(
                    format!("unknown network {other:?}; expected one of: mainnet testnet regtest").into(),
                )
            }
        };
        Ok(self
            .output_key()
            .and_then(|q| crate::crypto::taproot_address(&q, network).ok()))
    }
    async fn created_at(&self) -> String {
        time(self.0.created_at)
    }
}

impl VaultObj {
    /// bip340: the Taproot output key with no script tree.
    fn output_key(&self) -> Option<[u8; 32]> {
        match (self.0.curve, &self.0.public_key) {
            (Curve::Bip340, Some(pk)) => crate::crypto::taproot_output_key(pk, None).ok(),
            _ => None,
        }
    }
}

/// A device entitled to vote.
#[derive(SimpleObject)]
pub struct Voter {
    pub(crate) device_id: ID,
    pub(crate) weight: i32,
    /// Index in the current signer set (key holders: sign, reshare).
    pub(crate) old_index: Option<i32>,
    /// Index in the new signer set (keygen, reshare).
    pub(crate) new_index: Option<i32>,
}

/// What a human-approved device asks people about an operation (`ApprovalMode = Human`),
/// with the answers delivered so far. Nothing here is verified by the coordinator: the
/// device checks each answer against its own passkeys and its own request.
#[derive(SimpleObject)]
#[graphql(name = "HumanApprovalRequest")]
pub struct HumanApprovalRequestObj {
    pub(crate) device_id: ID,
    /// The exact bytes (JSON) a person's passkey signs, with the verdict: the WebAuthn
    /// challenge is SHA-256("vsigner human approval v1" 0x00 verdict 0x00 request).
    pub(crate) request: String,
    /// The passkeys (credential ids, base64url) whose answers the device reads: a console
    /// asks the browser for one of these.
    pub(crate) credential_ids: Vec<String>,
    pub(crate) posted_at: String,
    /// The latest answer of each passkey.
    pub(crate) answers: Vec<HumanAnswerObj>,
}

/// A person's answer, as delivered (unverified by the coordinator).
#[derive(SimpleObject)]
#[graphql(name = "HumanAnswer")]
pub struct HumanAnswerObj {
    pub(crate) seq: i32,
    /// `approve` | `reject`.
    pub(crate) verdict: String,
    /// The passkey's credential id (base64url).
    pub(crate) credential_id: String,
    /// The WebAuthn assertion (`PublicKeyCredential.toJSON()`).
    pub(crate) assertion: String,
    /// The API client that delivered it.
    pub(crate) answered_by: ID,
    pub(crate) at: String,
}

impl From<crate::domain::human_approval::HumanAnswer> for HumanAnswerObj {
    fn from(a: crate::domain::human_approval::HumanAnswer) -> Self {
        Self {
            seq: i32::try_from(a.seq).unwrap_or(i32::MAX),
            verdict: a.verdict.as_str().to_owned(),
            credential_id: a.credential_id,
            assertion: a.assertion,
            answered_by: ID(a.answered_by.to_string()),
            at: time(a.at),
        }
    }
}

impl From<crate::domain::human_approval::HumanApprovalRequest> for HumanApprovalRequestObj {
    fn from(r: crate::domain::human_approval::HumanApprovalRequest) -> Self {
        Self {
            device_id: ID(r.device_id.to_string()),
            request: r.request,
            credential_ids: r.credential_ids,
            posted_at: time(r.posted_at),
            answers: r.answers.into_iter().map(Into::into).collect(),
        }
    }
}

/// A console user.
#[derive(SimpleObject)]
#[graphql(name = "ConsoleUser")]
pub struct ConsoleUserObj {
    pub(crate) id: ID,
    pub(crate) name: String,
    /// `viewer` | `approver` | `operator` | `admin`.
    pub(crate) role: String,
    pub(crate) created_at: String,
    /// Set once an admin revoked the user.
    pub(crate) revoked_at: Option<String>,
}

impl From<crate::domain::console::ConsoleUser> for ConsoleUserObj {
    fn from(u: crate::domain::console::ConsoleUser) -> Self {
        Self {
            id: ID(u.id.to_string()),
            name: u.name,
            role: u.role.as_str().to_owned(),
            created_at: time(u.created_at),
            revoked_at: u.revoked_at.map(time),
        }
    }
}

/// A passkey a console user registered.
#[derive(SimpleObject)]
#[graphql(name = "ConsolePasskey")]
pub struct ConsolePasskeyObj {
    /// Credential id, base64url.
    pub(crate) credential_id: String,
    /// The person's console user name.
    pub(crate) user_name: String,
    /// The person's console role (`approver`, `operator`, `admin`).
    pub(crate) user_role: String,
    pub(crate) registered_at: String,
    /// The entry of a device's `HumanApprovalPasskeysFile` (JSON): the name and
    /// webauthn-rs's serialised passkey, public material only.
    pub(crate) file_entry: String,
}

impl From<crate::domain::console::ConsolePasskey> for ConsolePasskeyObj {
    fn from(p: crate::domain::console::ConsolePasskey) -> Self {
        Self {
            file_entry: p.file_entry().to_string(),
            credential_id: p.credential_id,
            user_role: p.user.role.as_str().to_owned(),
            user_name: p.user.name,
            registered_at: time(p.created_at),
        }
    }
}

/// A new console user and its password, shown only this once.
#[derive(SimpleObject)]
pub struct ConsoleUserCreated {
    pub(crate) user: ConsoleUserObj,
    /// Shown once: give it to the person, who signs in at `/console/` with the
    /// organisation id, the name and this password.
    pub(crate) password: String,
}

/// A vote.
#[derive(SimpleObject)]
#[graphql(name = "Vote")]
pub struct VoteObj {
    pub(crate) device_id: ID,
    /// `approve` | `reject` | `abstain`.
    pub(crate) vote: String,
    pub(crate) weight: i32,
    pub(crate) at: String,
}

/// A party of a committee, with what a device needs to address the device that runs it
/// (a device of weight `w` may run several parties of one operation).
#[derive(SimpleObject)]
pub struct CommitteeMember {
    pub(crate) device_id: ID,
    pub(crate) name: String,
    pub(crate) identity_signing_key: String,
    pub(crate) identity_encryption_key: String,
    /// The device's own signed record of its keys (hex), once published: a device checks
    /// it before it encrypts to this member or accepts its messages.
    pub(crate) record: Option<String>,
    /// Share index for sign (old index) and keygen (new index); null for reshare.
    pub(crate) index: Option<i32>,
    /// Reshare/sign: the index of the old share this party uses, if any.
    pub(crate) old_index: Option<i32>,
    /// Reshare/keygen: the index of the new share this party receives, if any.
    pub(crate) new_index: Option<i32>,
}

/// Sign details.
#[derive(SimpleObject)]
pub struct SignDetails {
    /// `digest` | `eth_tx` | `message`.
    pub(crate) payload_kind: String,
    /// Payload bytes, hex.
    pub(crate) payload: String,
    /// The 32-byte digest the ECDSA committee signs (hex): `digest` as given,
    /// keccak256(ethTx), or the hash of `message` (EIP-191 on secp256k1, SHA-256 on
    /// secp256r1). Null for a `message` on ed25519 or bip340 (signed as is).
    pub(crate) signing_digest: Option<String>,
    /// Non-hardened BIP-32 path `m/…`, or null for the root key.
    pub(crate) derivation_path: Option<String>,
    /// bip340: the signature is for the vault's Taproot output key (null: for the vault
    /// key itself).
    pub(crate) taproot: Option<TaprootObj>,
    /// Chain id of an eth_tx.
    pub(crate) chain_id: Option<String>,
    /// Key generation the committee signs with.
    pub(crate) key_generation: i32,
    /// The presignature (a Completed `Presign` operation of this committee) the committee
    /// uses for a one-round signature; null for the full protocol.
    pub(crate) presignature_id: Option<ID>,
}

/// A BIP-341 key-path tweak.
#[derive(SimpleObject)]
pub struct TaprootObj {
    /// The script tree's Merkle root (hex), null for an output without one (the output
    /// key is then the vault's `taprootOutputKey`).
    pub(crate) merkle_root: Option<String>,
}

/// Presign details.
#[derive(SimpleObject)]
pub struct PresignDetails {
    /// Key generation the committee presigns with.
    pub(crate) key_generation: i32,
    /// The sign operation that consumed the presignature, if any.
    pub(crate) consumed_by: Option<ID>,
    /// The committee member that no longer holds its part (a signer restarted), if any.
    pub(crate) discarded_by: Option<ID>,
}

/// Keygen details.
#[derive(SimpleObject)]
pub struct KeygenDetails {
    pub(crate) threshold: i32,
    pub(crate) signers: Vec<VaultSigner>,
}

/// Reshare details.
#[derive(SimpleObject)]
pub struct ReshareDetails {
    pub(crate) old_threshold: i32,
    pub(crate) old_signers: Vec<VaultSigner>,
    pub(crate) new_threshold: i32,
    pub(crate) new_signers: Vec<VaultSigner>,
    pub(crate) old_key_generation: i32,
    /// The key generation of the new shares (each attempt has its own).
    pub(crate) new_key_generation: i32,
}

/// The accepted result.
#[derive(SimpleObject)]
#[graphql(name = "OperationResult")]
pub struct ResultObj {
    /// Keygen/reshare: vault key (hex).
    pub(crate) public_key: Option<String>,
    /// Keygen (secp256k1): chain code (hex).
    pub(crate) chain_code: Option<String>,
    /// Reshare: the new key generation.
    pub(crate) key_generation: Option<i32>,
    /// Keygen/reshare: the key-set hash every submission agreed on (hex).
    pub(crate) key_set_hash: Option<String>,
    /// Sign: r‖s (secp256k1, low-s) or Ed25519 signature, hex.
    pub(crate) signature: Option<String>,
    /// Sign secp256k1: recovery id 0/1.
    pub(crate) recovery_id: Option<i32>,
    /// Sign: the submitting device.
    pub(crate) submitted_by: Option<ID>,
    /// Sign eth_tx: the signed raw transaction, `0x02…`.
    pub(crate) raw_transaction: Option<String>,
    /// Broadcast: transaction hash.
    pub(crate) tx_hash: Option<String>,
    /// Broadcast: node error.
    pub(crate) broadcast_error: Option<String>,
}

/// Failure.
#[derive(SimpleObject)]
#[graphql(name = "Failure")]
pub struct FailureObj {
    pub(crate) reason: String,
    pub(crate) culprit_device_ids: Vec<ID>,
    pub(crate) reported_by: Option<ID>,
}

/// An audit log entry.
#[derive(SimpleObject)]
#[graphql(name = "AuditEntry")]
pub struct AuditEntryObj {
    pub(crate) seq: String,
    pub(crate) entity_kind: String,
    pub(crate) entity_id: ID,
    pub(crate) at: String,
    pub(crate) actor: Option<String>,
    pub(crate) event: String,
    /// JSON.
    pub(crate) detail: String,
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
