//! vsigner's own request structs (`ApprovalContractLayout` = `vsigner-v3`): the curve, the
//! vault's public key and key generation, each signer's identity key and record hash, and the
//! decoded transaction. Documented in `examples/approval-contract/README.md`.

use alloy::primitives::{Address, Bytes, U256};
use alloy::sol_types::SolValue as _;

use super::ContractCall;
use crate::request::{ApprovalRequest, Operation, SignPayload, Signer};

/// vsigner's request structs (version [`abi::VERSION`]).
#[allow(missing_docs)]
pub mod abi {
    alloy::sol! {
        /// One device of a signer set.
        #[derive(Debug, PartialEq, Eq)]
        struct SignerSC {
            string id;
            string name;
            uint256 weight;
            string identityPublicKeyHex;
            string recordHash;
        }

        /// Vault creation (old set empty, old threshold 0) or reshare.
        #[derive(Debug, PartialEq, Eq)]
        struct KeygenReshareRequestSC {
            uint8 version;
            string typename;
            string id;
            string organisationId;
            string expiresAt;
            string vaultId;
            string vaultName;
            string curve;
            string vaultPublicKey;
            uint256 keyGeneration;
            uint256 oldThreshold;
            SignerSC[] oldSigners;
            uint256 newThreshold;
            SignerSC[] newSigners;
        }

        /// Signing of an Ethereum EIP-1559 transaction.
        #[derive(Debug, PartialEq, Eq)]
        struct TxRequestSC {
            uint8 version;
            string typename;
            string id;
            string organisationId;
            string expiresAt;
            string vaultId;
            string vaultName;
            string curve;
            string vaultPublicKey;
            uint256 keyGeneration;
            string derivationPath;
            uint256 chainId;
            uint256 nonce;
            address to;
            bool isCreate;
            uint256 value;
            bytes data;
            uint256 gasLimit;
            uint256 maxFeePerGas;
            uint256 maxPriorityFeePerGas;
            bytes rawTransaction;
        }

        /// Signing of a raw digest or a message.
        #[derive(Debug, PartialEq, Eq)]
        struct SignOpRequestSC {
            uint8 version;
            string typename;
            string id;
            string organisationId;
            string expiresAt;
            string vaultId;
            string vaultName;
            string curve;
            string vaultPublicKey;
            uint256 keyGeneration;
            string derivationPath;
            string contentType;
            bytes data;
        }
    }

    /// The version of the structs above (2: signers carry their record hash; 3: the
    /// vault's public key and key generation).
    pub const VERSION: u8 = 3;
}

fn signers_sc(s: &[Signer]) -> Vec<abi::SignerSC> {
    s.iter()
        .map(|s| abi::SignerSC {
            id: s.id.clone(),
            name: s.name.clone(),
            weight: U256::from(s.weight),
            identityPublicKeyHex: s.identity_public_key_hex.clone(),
            recordHash: s.record_hash_hex.clone(),
        })
        .collect()
}

/// Encodes a request as vsigner's structs (Solidity `abi.encode(struct)`).
pub fn encode(r: &ApprovalRequest) -> ContractCall {
    let v = &r.vault;
    match &r.operation {
        Operation::CreateVault | Operation::Reshare { .. } => {
            let (old_threshold, old_signers, new_threshold, new_signers) = match &r.operation {
                Operation::Reshare {
                    new_threshold,
                    new_signers,
                } => (
                    v.threshold,
                    signers_sc(&v.signers),
                    *new_threshold,
                    signers_sc(new_signers),
                ),
                _ => (0, Vec::new(), v.threshold, signers_sc(&v.signers)),
            };
            let s = abi::KeygenReshareRequestSC {
                version: abi::VERSION,
                typename: r.vsigner_typename().into(),
                id: r.operation_id.clone(),
                organisationId: r.organisation_id.clone(),
                expiresAt: r.expires_at.clone(),
                vaultId: v.id.clone(),
                vaultName: v.name.clone(),
                curve: v.curve.as_str().into(),
                vaultPublicKey: v.public_key.clone().unwrap_or_default(),
                keyGeneration: U256::from(v.key_generation),
                oldThreshold: U256::from(old_threshold),
                oldSigners: old_signers,
                newThreshold: U256::from(new_threshold),
                newSigners: new_signers,
            };
            ContractCall::KeygenReshare(s.abi_encode().into())
        }
        Operation::Sign {
            payload,
            derivation_path,
            ..
        } => {
            let path = derivation_path.clone().unwrap_or_default();
            match payload {
                SignPayload::EthereumTransaction(tx) => {
                    let t = tx.transaction();
                    let s = abi::TxRequestSC {
                        version: abi::VERSION,
                        typename: r.vsigner_typename().into(),
                        id: r.operation_id.clone(),
                        organisationId: r.organisation_id.clone(),
                        expiresAt: r.expires_at.clone(),
                        vaultId: v.id.clone(),
                        vaultName: v.name.clone(),
                        curve: v.curve.as_str().into(),
                        vaultPublicKey: v.public_key.clone().unwrap_or_default(),
                        keyGeneration: U256::from(v.key_generation),
                        derivationPath: path,
                        chainId: U256::from(t.chain_id),
                        nonce: U256::from(t.nonce),
                        to: tx.to().unwrap_or(Address::ZERO),
                        isCreate: tx.to().is_none(),
                        value: t.value,
                        data: t.input.clone(),
                        gasLimit: U256::from(t.gas_limit),
                        maxFeePerGas: U256::from(t.max_fee_per_gas),
                        maxPriorityFeePerGas: U256::from(t.max_priority_fee_per_gas),
                        rawTransaction: Bytes::copy_from_slice(tx.raw()),
                    };
                    ContractCall::Tx(s.abi_encode().into())
                }
                SignPayload::Digest(_) | SignPayload::Message(_) => {
                    let s = abi::SignOpRequestSC {
                        version: abi::VERSION,
                        typename: r.vsigner_typename().into(),
                        id: r.operation_id.clone(),
                        organisationId: r.organisation_id.clone(),
                        expiresAt: r.expires_at.clone(),
                        vaultId: v.id.clone(),
                        vaultName: v.name.clone(),
                        curve: v.curve.as_str().into(),
                        vaultPublicKey: v.public_key.clone().unwrap_or_default(),
                        keyGeneration: U256::from(v.key_generation),
                        derivationPath: path,
                        contentType: payload.content_type().into(),
                        data: Bytes::copy_from_slice(payload.data()),
                    };
                    ContractCall::SignOp(s.abi_encode().into())
                }
            }
        }
    }
}
