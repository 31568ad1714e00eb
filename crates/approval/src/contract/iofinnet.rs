//! io.finnet's published request structs (`ApprovalContractLayout` = `iofinnet`, the
//! default), field for field as in `smart_contract_approvals/Approval.sol` of
//! `IoFinnet/io-vault-virtual-signer-docs`: a policy contract written for io.finnet's
//! Virtual Signer decodes them with `abi.decode(data, (KeygenReshareRequestSC))` and decides
//! unchanged.
//!
//! What vsigner puts in each field is in `docs/approvals.md` ("Smart contract"). Fields
//! that the coordinator does not know (creation and update times, the requesting user, USD
//! amounts, asset ids) are empty strings; vsigner's own facts (curve, vault public key,
//! identity keys) are only in the `vsigner-v3` layout.

use alloy::primitives::U256;
use alloy::sol_types::SolValue as _;

use super::ContractCall;
use crate::request::{ApprovalRequest, Curve, Operation, SignPayload};
use crate::transfer::Transfer;

/// The structs of io.finnet's `Approval.sol`.
#[allow(missing_docs, non_snake_case)]
pub mod abi {
    alloy::sol! {
        /// A signer of the vault before the reshare (none for a vault creation).
        #[derive(Debug, PartialEq, Eq)]
        struct KeygenReshareRequestOriginalSignersSC {
            uint Weight;
            string Uiid;
            string Id;
        }

        /// A signer of the vault after the reshare (the signers of a new vault).
        #[derive(Debug, PartialEq, Eq)]
        struct KeygenReshareRequestNewSignersSC {
            uint Weight;
            string Uiid;
            string Id;
        }

        /// Vault creation or reshare (`approvedKeygenReshare`).
        #[derive(Debug, PartialEq, Eq)]
        struct KeygenReshareRequestSC {
            string Typename;
            string Id;
            string ExpiresAt;
            string OrganisationId;
            string ReshareRequestStatus;
            string VaultId;
            string VaultName;
            uint ReshareNonce;
            uint NewThreshold;
            KeygenReshareRequestOriginalSignersSC[] OriginalSigners;
            KeygenReshareRequestNewSignersSC[] NewSigners;
        }

        /// A transaction's fees and origin.
        #[derive(Debug, PartialEq, Eq)]
        struct SigningTransactionRequestMetadataSC {
            string MaxFees;
            uint MaxFeePerGas;
            uint MaxPriorityFeePerGas;
            string Source;
            string ContractData;
        }

        /// A transfer: an Ethereum transaction (`approvedTx`).
        #[derive(Debug, PartialEq, Eq)]
        struct SigningTransactionRequestSC {
            string Typename;
            string Id;
            string CreatedAt;
            string UpdatedAt;
            string ExpiresAt;
            string CreatedByUserId;
            string AmountOriginal;
            string AmountUsd;
            string ReceivingAddress;
            string SendingAddressId;
            string VaultId;
            string VaultName;
            string AssetId;
            string OrganisationId;
            string RawTransaction;
            string Status;
            string AssetExecutionType;
            SigningTransactionRequestMetadataSC Metadata;
            string NetworkId;
        }

        /// A message or digest to sign (`approvedSignOp`).
        #[derive(Debug, PartialEq, Eq)]
        struct NodeOpSignRequestSC {
            string Typename;
            string Id;
            string OrganisationId;
            string OperationSignStatus;
            string VaultId;
            string VaultName;
            string Data;
            string ContentType;
            uint ChainId;
        }
    }
}

/// The status of an operation being voted on.
const VOTING: &str = "VOTING";

/// `AmountOriginal` of a transaction whose effect vsigner does not decode.
pub const UNKNOWN: &str = "unknown";

/// Where a transaction request comes from (`Metadata.Source`).
const SOURCE: &str = "vsigner";

/// Encodes a request as io.finnet's structs.
pub fn encode(r: &ApprovalRequest) -> ContractCall {
    let v = &r.vault;
    match &r.operation {
        Operation::CreateVault | Operation::Reshare { .. } => {
            let (old, new, new_threshold) = match &r.operation {
                Operation::Reshare {
                    new_threshold,
                    new_signers,
                } => (&v.signers[..], &new_signers[..], *new_threshold),
                _ => (&[][..], &v.signers[..], v.threshold),
            };
            let s = abi::KeygenReshareRequestSC {
                Typename: r.typename().into(),
                Id: r.operation_id.clone(),
                ExpiresAt: r.expires_at.clone(),
                OrganisationId: r.organisation_id.clone(),
                ReshareRequestStatus: VOTING.into(),
                VaultId: v.id.clone(),
                VaultName: v.name.clone(),
                // The number of reshares the key went through: its key generation.
                ReshareNonce: U256::from(v.key_generation),
                NewThreshold: U256::from(new_threshold),
                OriginalSigners: old
                    .iter()
                    .map(|s| abi::KeygenReshareRequestOriginalSignersSC {
                        Weight: U256::from(s.weight),
                        // vsigner devices have one id; io.finnet's `Uiid` (the device's
                        // UUID) carries it too.
                        Uiid: s.id.clone(),
                        Id: s.id.clone(),
                    })
                    .collect(),
                NewSigners: new
                    .iter()
                    .map(|s| abi::KeygenReshareRequestNewSignersSC {
                        Weight: U256::from(s.weight),
                        // vsigner devices have one id; io.finnet's `Uiid` (the device's
                        // UUID) carries it too.
                        Uiid: s.id.clone(),
                        Id: s.id.clone(),
                    })
                    .collect(),
            };
            ContractCall::KeygenReshare(s.abi_encode().into())
        }
        Operation::Sign {
            payload: SignPayload::EthereumTransaction(tx),
            derivation_path,
            ..
        } => {
            let t = tx.transaction();
            let transfer = Transfer::of(tx);
            let max_fees = U256::from(t.max_fee_per_gas) * U256::from(t.gas_limit);
            let s = abi::SigningTransactionRequestSC {
                Typename: r.typename().into(),
                Id: r.operation_id.clone(),
                CreatedAt: String::new(),
                UpdatedAt: String::new(),
                ExpiresAt: r.expires_at.clone(),
                CreatedByUserId: String::new(),
                // Unknown is not a number: a rule that parses it refuses, none reads "0".
                AmountOriginal: r.amount_original().unwrap_or_else(|| UNKNOWN.to_owned()),
                AmountUsd: String::new(),
                ReceivingAddress: transfer.recipient().unwrap_or_default(),
                // The sending key: its BIP-32 path, empty for the vault key itself.
                SendingAddressId: derivation_path.clone().unwrap_or_default(),
                VaultId: v.id.clone(),
                VaultName: v.name.clone(),
                AssetId: transfer.token().unwrap_or_default(),
                OrganisationId: r.organisation_id.clone(),
                RawTransaction: format!("0x{}", hex::encode(tx.raw())),
                Status: VOTING.into(),
                AssetExecutionType: String::new(),
                Metadata: abi::SigningTransactionRequestMetadataSC {
                    MaxFees: max_fees.to_string(),
                    MaxFeePerGas: U256::from(t.max_fee_per_gas),
                    MaxPriorityFeePerGas: U256::from(t.max_priority_fee_per_gas),
                    Source: SOURCE.into(),
                    ContractData: format!("0x{}", hex::encode(&t.input)),
                },
                NetworkId: tx.chain_id().to_string(),
            };
            ContractCall::Tx(s.abi_encode().into())
        }
        Operation::Sign {
            payload,
            derivation_path,
            ..
        } => {
            let (data, content_type) = payload.shown_data();
            let content_type = sign_op_content_type(content_type, v.curve, derivation_path.as_deref());
            let s = abi::NodeOpSignRequestSC {
                Typename: r.typename().into(),
                Id: r.operation_id.clone(),
                OrganisationId: r.organisation_id.clone(),
                OperationSignStatus: VOTING.into(),
                VaultId: v.id.clone(),
                VaultName: v.name.clone(),
                Data: data,
                ContentType: content_type,
                // A message or digest is not bound to a chain.
                ChainId: U256::ZERO,
            };
            ContractCall::SignOp(s.abi_encode().into())
        }
    }
}

/// `NodeOpSignRequestSC.ContentType`: the payload's content type, with MIME parameters for
/// what io.finnet's struct has no field for: `scheme=<curve>` unless the vault is secp256k1
/// (a Schnorr or EdDSA scheme signs the message bytes themselves, which may be a Bitcoin
/// sighash or a Solana transaction), and `path=<path>` for a child key. A policy that
/// compares the content type exactly (`text/plain`) therefore never approves either
/// without knowing it.
fn sign_op_content_type(content_type: &str, curve: Curve, derivation_path: Option<&str>) -> String {
    let mut out = content_type.to_owned();
    if curve != Curve::Secp256k1 {
        out.push_str(&format!("; scheme={}", curve.as_str()));
    }
    if let Some(path) = derivation_path {
        out.push_str(&format!("; path={path}"));
    }
    out
}
