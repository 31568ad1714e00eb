//! What an approver is asked to approve: [`ApprovalRequest`], and its io.finnet-style JSON.
//!
//! The JSON body is io.finnet's for each operation (`docs/approvals.md` shows one of each):
//! the typenames `OperationCreateVault_v3`, `OperationReshare_v3`, `OperationSign` and
//! `OperationTransferOut_v3`, and the fields their samples and docs read at the same paths
//! and with the same types (`id`, `organisationId`, `details.expiresAt`,
//! `details.vault.details.name`, `voting.votes[].device.id`, `rDetails.newThreshold`,
//! `signingData.data` as text for a text message, `amountOriginal` as a decimal string in the
//! asset's smallest unit, `receivingAddress`). vsigner's own facts (raw bytes as hex, the
//! decoded transaction, identity keys, record hashes, the key generation) are under names
//! io.finnet does not use (`signingData.dataHex`, `transaction.value`,
//! `details.vault.keyGeneration`, `device.publicKey`, `device.recordHash`…), so one body
//! serves a handler written for either.

use alloy::consensus::transaction::RlpEcdsaDecodableTx;
use alloy::consensus::{SignableTransaction, TxEip1559};
use alloy::primitives::{keccak256, TxKind, B256};
use serde_json::{json, Value};

use crate::error::RequestError;
use crate::transfer::Transfer;

/// The signature scheme of a vault, named as the coordinator names it (its `curve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// ECDSA over secp256k1 (CGGMP24).
    Secp256k1,
    /// ECDSA over NIST P-256 (CGGMP24); messages are hashed with SHA-256.
    Secp256r1,
    /// EdDSA over ed25519 (FROST).
    Ed25519,
    /// BIP-340 Schnorr over secp256k1 (FROST), with the BIP-341 Taproot tweak on request.
    Bip340,
}

impl Curve {
    /// Every scheme, in the order the documentation lists them.
    pub const ALL: [Curve; 4] = [Curve::Secp256k1, Curve::Secp256r1, Curve::Ed25519, Curve::Bip340];

    /// The name used in JSON and in the contract ABI: `secp256k1`, `secp256r1`, `ed25519`
    /// or `bip340`.
    pub fn as_str(self) -> &'static str {
        match self {
            Curve::Secp256k1 => "secp256k1",
            Curve::Secp256r1 => "secp256r1",
            Curve::Ed25519 => "ed25519",
            Curve::Bip340 => "bip340",
        }
    }

    /// The scheme named `name` (its [`Curve::as_str`]).
    pub fn from_name(name: &str) -> Option<Curve> {
        Curve::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The elliptic curve under the scheme (io.finnet's `curves[].curve`): `secp256k1`,
    /// `secp256r1` or `ed25519`.
    pub fn elliptic_curve(self) -> &'static str {
        match self {
            Curve::Secp256k1 | Curve::Bip340 => "secp256k1",
            Curve::Secp256r1 => "secp256r1",
            Curve::Ed25519 => "ed25519",
        }
    }

    /// The signature algorithm (io.finnet's `curves[].algorithm`): `ECDSA`, `EDDSA` or
    /// `SCHNORR`.
    pub fn algorithm(self) -> &'static str {
        match self {
            Curve::Secp256k1 | Curve::Secp256r1 => "ECDSA",
            Curve::Ed25519 => "EDDSA",
            Curve::Bip340 => "SCHNORR",
        }
    }
}

impl std::fmt::Display for Curve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One device of a signer set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// Device id.
    pub id: String,
    /// Device name.
    pub name: String,
    /// Voting weight of the device in the vault.
    pub weight: u32,
    /// Hex of the device's identity public key (Ed25519: it signs the device's record,
    /// its messages and its actions).
    pub identity_public_key_hex: String,
    /// Hex SHA-256 of the device's signed record of its keys (empty if it has none): an
    /// approver with a device registry can refuse devices it does not know.
    pub record_hash_hex: String,
}

/// The vault an operation is about. For a reshare, `threshold` and `signers` are the
/// current (old) ones; the new ones are in [`Operation::Reshare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vault {
    /// Vault id.
    pub id: String,
    /// Vault name.
    pub name: String,
    /// Curve of the vault key.
    pub curve: Curve,
    /// Signing threshold (sum of weights needed).
    pub threshold: u32,
    /// The signer set.
    pub signers: Vec<Signer>,
    /// The vault's public key (hex, as the coordinator writes it); `None` for a vault
    /// creation. A device that holds a share checks it against its own before asking.
    pub public_key: Option<String>,
    /// The key generation the operation works with (sign: the one it signs with; reshare:
    /// the one it replaces; creation: 0).
    pub key_generation: u64,
}

/// A decoded Ethereum EIP-1559 unsigned transaction, kept with its exact raw bytes.
///
/// Built only by [`EthTransaction::decode`], which checks that the bytes are the canonical
/// encoding of the fields exposed here: what the approver sees is what gets signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthTransaction {
    raw: Vec<u8>,
    tx: TxEip1559,
}

impl EthTransaction {
    /// Decodes `0x02 || rlp([chain_id, nonce, max_priority_fee_per_gas, max_fee_per_gas,
    /// gas_limit, to, value, data, access_list])`, the EIP-1559 signing payload.
    pub fn decode(raw: &[u8]) -> Result<Self, RequestError> {
        let Some((&ty, mut rest)) = raw.split_first() else {
            return Err(RequestError::EthTransaction("empty transaction".into()));
        };
        if ty != 0x02 {
            return Err(RequestError::EthTransaction(format!(
                "transaction type {ty:#04x} is not EIP-1559 (0x02)"
            )));
        }
        let tx = TxEip1559::rlp_decode(&mut rest)
            .map_err(|e| RequestError::EthTransaction(format!("bad RLP: {e}")))?;
        if !rest.is_empty() {
            return Err(RequestError::EthTransaction(format!(
                "{} trailing bytes",
                rest.len()
            )));
        }
        if tx.encoded_for_signing() != raw {
            return Err(RequestError::EthTransaction("not the canonical encoding".into()));
        }
        Ok(Self {
            raw: raw.to_vec(),
            tx,
        })
    }

    /// The raw unsigned transaction bytes, as given to [`EthTransaction::decode`].
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The decoded transaction.
    pub fn transaction(&self) -> &TxEip1559 {
        &self.tx
    }

    /// The hash to sign: keccak256 of the raw bytes.
    pub fn signing_hash(&self) -> B256 {
        keccak256(&self.raw)
    }

    /// Chain id.
    pub fn chain_id(&self) -> u64 {
        self.tx.chain_id
    }

    /// Destination address, `None` for a contract creation.
    pub fn to(&self) -> Option<alloy::primitives::Address> {
        match self.tx.to {
            TxKind::Call(a) => Some(a),
            TxKind::Create => None,
        }
    }

    /// Amount in wei.
    pub fn value(&self) -> alloy::primitives::U256 {
        self.tx.value
    }

    fn to_json(&self) -> Value {
        json!({
            "type": "eip1559",
            "chainId": self.tx.chain_id,
            "nonce": self.tx.nonce,
            "to": self.to().map(|a| a.to_checksum(None)),
            "value": self.tx.value.to_string(),
            "data": format!("0x{}", hex::encode(&self.tx.input)),
            "gasLimit": self.tx.gas_limit,
            "maxFeePerGas": self.tx.max_fee_per_gas.to_string(),
            "maxPriorityFeePerGas": self.tx.max_priority_fee_per_gas.to_string(),
            "accessListLength": self.tx.access_list.len(),
        })
    }
}

/// What a sign operation signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignPayload {
    /// A raw 32-byte digest (no structure the approver can check).
    Digest([u8; 32]),
    /// An Ethereum EIP-1559 unsigned transaction (secp256k1 vaults).
    EthereumTransaction(EthTransaction),
    /// Message bytes (ed25519 vaults sign the message itself).
    Message(Vec<u8>),
}

impl SignPayload {
    /// vsigner's name of the payload's kind (`signingData.payloadKind`, and `contentType` in
    /// the `vsigner-v3` contract structs): `digest`, `eth_tx` or `message`.
    pub fn content_type(&self) -> &'static str {
        match self {
            SignPayload::Digest(_) => "digest",
            SignPayload::EthereumTransaction(_) => "eth_tx",
            SignPayload::Message(_) => "message",
        }
    }

    /// The payload bytes (digest, raw transaction, or message).
    pub fn data(&self) -> &[u8] {
        match self {
            SignPayload::Digest(d) => d,
            SignPayload::EthereumTransaction(t) => t.raw(),
            SignPayload::Message(m) => m,
        }
    }

    /// The message as text, when it is one that reads as it is: valid UTF-8 with no control
    /// character but tab and line feed, and no invisible or direction-changing character
    /// (format characters, bidi controls, zero-width characters, line separators, variation
    /// selectors, tags, private use). Anything else is shown as hex, so what an approver reads
    /// is never other than what is signed; a policy that looks for words should refuse what
    /// is not text.
    pub fn text(&self) -> Option<&str> {
        let SignPayload::Message(m) = self else {
            return None;
        };
        let text = std::str::from_utf8(m).ok()?;
        text.chars().all(reads_as_itself).then_some(text)
    }

    /// io.finnet's `signingData.data` and `contentType`: a text message as text
    /// (`text/plain`), other bytes as lowercase hex (`application/octet-stream` for a binary
    /// message, `digest` for a digest, `eth_tx` for a raw transaction).
    pub fn shown_data(&self) -> (String, &'static str) {
        match (self, self.text()) {
            (_, Some(text)) => (text.to_owned(), "text/plain"),
            (SignPayload::Message(m), None) => (hex::encode(m), "application/octet-stream"),
            (other, None) => (hex::encode(other.data()), other.content_type()),
        }
    }
}

/// Whether `c` shows as itself in a text message (see [`SignPayload::text`]).
fn reads_as_itself(c: char) -> bool {
    if c == '\t' || c == '\n' {
        return true;
    }
    !c.is_control()
        && !matches!(u32::from(c),
            0xAD | 0x34F | 0x61C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x3164 | 0xFEFF | 0xFFA0
            | 0x600..=0x605 | 0x6DD | 0x70F | 0x8E2 | 0x180B..=0x180F
            | 0x200B..=0x200F | 0x2028..=0x202F | 0x205F..=0x206F
            | 0xE000..=0xF8FF | 0xFE00..=0xFE0F | 0xFFF0..=0xFFFB
            | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF | 0xF0000..)
}

/// The kind of operation and its kind-specific content.
// One per operation, passed by reference: boxing the transaction would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Vault creation (distributed key generation) with the vault's signer set and threshold.
    CreateVault,
    /// Move the vault key to a new signer set and/or threshold.
    Reshare {
        /// The threshold after the reshare.
        new_threshold: u32,
        /// The signer set after the reshare.
        new_signers: Vec<Signer>,
    },
    /// Sign a payload with the vault key.
    Sign {
        /// What is signed.
        payload: SignPayload,
        /// Optional non-hardened BIP-32 derivation path, e.g. `m/0/1`.
        derivation_path: Option<String>,
        /// BIP-340 vaults: sign for the Taproot output key instead of the vault key.
        taproot: Option<Taproot>,
    },
}

/// A BIP-341 key-path tweak: the signature is for the Taproot output key
/// `Q = P + H_TapTweak(P ‖ merkle_root)·G` of the vault key `P`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taproot {
    /// The script tree's Merkle root; `None` for an output with no script path.
    pub merkle_root: Option<[u8; 32]>,
    /// The output key `Q` (x-only) the signature is for, as the device computed it from
    /// the vault key: a policy can match it against the addresses it knows.
    pub output_key: Option<[u8; 32]>,
}

impl Taproot {
    fn to_json(self) -> Value {
        json!({
            "merkleRoot": self.merkle_root.map(hex::encode),
            "outputKey": self.output_key.map(hex::encode),
        })
    }
}

/// An operation to approve, as the daemon knows it from the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// Operation id.
    pub operation_id: String,
    /// Organisation id.
    pub organisation_id: String,
    /// The vault concerned.
    pub vault: Vault,
    /// When the operation expires, RFC 3339 (e.g. `2026-11-25T10:00:00Z`).
    pub expires_at: String,
    /// What is to be done.
    pub operation: Operation,
}

/// Which approval webhook URL a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestClass {
    /// Keygen and reshare: `ExternalReshareApprovalURL`, `approvedKeygenReshare`.
    KeygenReshare,
    /// Sign: `ExternalTransactionApprovalURL`, `approvedTx` or `approvedSignOp`.
    Transaction,
}

impl ApprovalRequest {
    /// io.finnet's `__typename`: `OperationCreateVault_v3`, `OperationReshare_v3`,
    /// `OperationTransferOut_v3` (an Ethereum transaction) or `OperationSign` (a message or a
    /// digest).
    pub fn typename(&self) -> &'static str {
        match &self.operation {
            Operation::CreateVault => "OperationCreateVault_v3",
            Operation::Reshare { .. } => "OperationReshare_v3",
            Operation::Sign {
                payload: SignPayload::EthereumTransaction(_),
                ..
            } => "OperationTransferOut_v3",
            Operation::Sign { .. } => "OperationSign",
        }
    }

    /// The typename of vsigner's own (`vsigner-v3`) contract structs, as they always were:
    /// `OperationCreateVault`, `OperationReshare`, `OperationSign`.
    pub fn vsigner_typename(&self) -> &'static str {
        match self.operation {
            Operation::CreateVault => "OperationCreateVault",
            Operation::Reshare { .. } => "OperationReshare",
            Operation::Sign { .. } => "OperationSign",
        }
    }

    /// `amountOriginal`: what a transfer moves in the asset's smallest unit, as a decimal
    /// string ([`Transfer`]); "0" for a vault creation or reshare (nothing moves); `None` for a
    /// transaction whose effect vsigner does not decode and for a message or digest (either
    /// may authorise anything): unknown, never zero.
    pub fn amount_original(&self) -> Option<String> {
        match &self.operation {
            Operation::Sign {
                payload: SignPayload::EthereumTransaction(tx),
                ..
            } => Transfer::of(tx).amount(),
            Operation::Sign { .. } => None,
            Operation::CreateVault | Operation::Reshare { .. } => Some("0".to_owned()),
        }
    }

    /// Keygen/reshare or transaction.
    pub fn class(&self) -> RequestClass {
        match self.operation {
            Operation::CreateVault | Operation::Reshare { .. } => RequestClass::KeygenReshare,
            Operation::Sign { .. } => RequestClass::Transaction,
        }
    }

    /// The io.finnet-style JSON posted to the webhook (schema in `docs/approvals.md`).
    pub fn to_json(&self) -> Value {
        let vault = &self.vault;
        let signers_json = |signers: &[Signer]| -> Value {
            Value::Array(
                signers
                    .iter()
                    .map(|s| {
                        json!({
                            "id": s.id,
                            "device": {
                                "id": s.id,
                                "name": s.name,
                                "theType": "VirtualSigner",
                                "publicKey": s.identity_public_key_hex,
                                "recordHash": s.record_hash_hex,
                            },
                            "weight": s.weight,
                        })
                    })
                    .collect(),
            )
        };
        let voters = match &self.operation {
            Operation::Reshare { new_signers, .. } => {
                // Both sets vote on a reshare; each device once.
                let mut all: Vec<Signer> = vault.signers.clone();
                for s in new_signers {
                    if !all.iter().any(|o| o.id == s.id) {
                        all.push(s.clone());
                    }
                }
                all
            }
            _ => vault.signers.clone(),
        };
        let mut out = json!({
            "__typename": self.typename(),
            "id": self.operation_id,
            "organisationId": self.organisation_id,
            "amountOriginal": self.amount_original(),
            "voting": {
                "threshold": vault.threshold,
                "votes": voters.iter().map(|s| json!({
                    "device": {"id": s.id},
                    "weight": s.weight,
                    "vote": "",
                })).collect::<Vec<_>>(),
            },
            "details": {
                "__typename": format!("{}Details", self.typename().trim_end_matches("_v3")),
                "expiresAt": self.expires_at,
                "status": "VOTING",
                "vault": {
                    "id": vault.id,
                    "curves": [{
                        "curve": vault.curve.elliptic_curve(),
                        "algorithm": vault.curve.algorithm(),
                        "publicKey": vault.public_key,
                    }],
                    "curve": vault.curve.as_str(),
                    "threshold": vault.threshold,
                    "publicKey": vault.public_key,
                    "keyGeneration": vault.key_generation,
                    "signers": signers_json(&vault.signers),
                    "details": {
                        "id": vault.id,
                        "name": vault.name,
                        "threshold": vault.threshold,
                    },
                },
            },
        });
        let extra = match &self.operation {
            Operation::CreateVault => json!({
                "cDetails": {"status": "VOTING", "threshold": vault.threshold},
            }),
            Operation::Reshare {
                new_threshold,
                new_signers,
            } => json!({
                "rDetails": {
                    "originalThreshold": vault.threshold,
                    "newThreshold": new_threshold,
                    "originalSigners": signers_json(&vault.signers),
                    "newSigners": signers_json(new_signers),
                },
            }),
            Operation::Sign {
                payload,
                derivation_path,
                taproot,
            } => {
                let (data, content_type) = payload.shown_data();
                let mut e = json!({
                    "signingData": {
                        "contentType": content_type,
                        "data": data,
                        "dataHex": hex::encode(payload.data()),
                        "payloadKind": payload.content_type(),
                        "derivationPath": derivation_path,
                        "taproot": taproot.map(Taproot::to_json),
                    },
                });
                if let SignPayload::EthereumTransaction(tx) = payload {
                    let transfer = Transfer::of(tx);
                    // vsigner's decoded transaction, with io.finnet's `toAddress` (the
                    // transfer's recipient) added.
                    let mut transaction = tx.to_json();
                    transaction["toAddress"] = json!(transfer.recipient());
                    e["transaction"] = transaction;
                    e["receivingAddress"] = json!(transfer.recipient());
                    e["asset"] = json!(transfer.token().map(|t| json!({"contractAddress": t})));
                    e["networkId"] = Value::String(tx.chain_id().to_string());
                    e["rawTransaction"] = Value::String(format!("0x{}", hex::encode(tx.raw())));
                }
                e
            }
        };
        if let (Value::Object(o), Value::Object(e)) = (&mut out, extra) {
            o.extend(e);
        }
        out
    }

    /// [`ApprovalRequest::to_json`] serialised to bytes.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serialising a `Value` cannot fail (all keys are strings).
        serde_json::to_vec(&self.to_json()).unwrap_or_default()
    }
}
