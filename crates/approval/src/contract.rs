//! `SmartContract` mode: a read-only `eth_call` to an approval contract.
//!
//! The argument is the ABI encoding (Solidity `abi.encode(request)`) of one of the structs in
//! [`abi`], each with a `version` field (currently [`abi::VERSION`]); the contract decodes it
//! with `abi.decode(data, (Struct))`. It returns `uint8`: 0 approve, 1 reject, 2 abstain.
//! Documented in `examples/approval-contract/README.md`.

use std::time::Duration;

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{DynProvider, Provider as _, ProviderBuilder};
use alloy::sol_types::SolValue as _;

use crate::api::fmt_duration;
use crate::config::{ApprovalMode, ContractConfig};
use crate::decision::{Decision, Vote};
use crate::request::{ApprovalRequest, Operation, SignPayload, Signer};

/// The ABI of the approval contract and of its request structs (version 1).
#[allow(missing_docs)]
pub mod abi {
    alloy::sol! {
        /// The approval contract. Declared here as returning `uint256` (the ABI word of the
        /// contract's `uint8`) so that an out-of-range result is seen, not truncated.
        #[sol(rpc)]
        interface IApproval {
            function approvedKeygenReshare(bytes encodedKeygenReshare) external view returns (uint256);
            function approvedTx(bytes encodedTx) external view returns (uint256);
            function approvedSignOp(bytes encodedSignOp) external view returns (uint256);
        }

        /// One device of a signer set.
        #[derive(Debug, PartialEq, Eq)]
        struct SignerSC {
            string id;
            string name;
            uint256 weight;
            string identityPublicKeyHex;
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
            string derivationPath;
            string contentType;
            bytes data;
        }
    }

    /// The version of the structs above.
    pub const VERSION: u8 = 1;
}

/// Which contract function a request goes to, and its encoded argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractCall {
    /// `approvedKeygenReshare(bytes)` with an encoded [`abi::KeygenReshareRequestSC`].
    KeygenReshare(Bytes),
    /// `approvedTx(bytes)` with an encoded [`abi::TxRequestSC`].
    Tx(Bytes),
    /// `approvedSignOp(bytes)` with an encoded [`abi::SignOpRequestSC`].
    SignOp(Bytes),
}

impl ContractCall {
    /// The contract function's name.
    pub fn function(&self) -> &'static str {
        match self {
            ContractCall::KeygenReshare(_) => "approvedKeygenReshare",
            ContractCall::Tx(_) => "approvedTx",
            ContractCall::SignOp(_) => "approvedSignOp",
        }
    }
}

fn signers_sc(s: &[Signer]) -> Vec<abi::SignerSC> {
    s.iter()
        .map(|s| abi::SignerSC {
            id: s.id.clone(),
            name: s.name.clone(),
            weight: U256::from(s.weight),
            identityPublicKeyHex: s.identity_public_key_hex.clone(),
        })
        .collect()
}

/// Encodes a request for the contract (Solidity `abi.encode(struct)`).
pub fn encode_request(r: &ApprovalRequest) -> ContractCall {
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
                typename: r.typename().into(),
                id: r.operation_id.clone(),
                organisationId: r.organisation_id.clone(),
                expiresAt: r.expires_at.clone(),
                vaultId: v.id.clone(),
                vaultName: v.name.clone(),
                curve: v.curve.as_str().into(),
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
        } => {
            let path = derivation_path.clone().unwrap_or_default();
            match payload {
                SignPayload::EthereumTransaction(tx) => {
                    let t = tx.transaction();
                    let s = abi::TxRequestSC {
                        version: abi::VERSION,
                        typename: r.typename().into(),
                        id: r.operation_id.clone(),
                        organisationId: r.organisation_id.clone(),
                        expiresAt: r.expires_at.clone(),
                        vaultId: v.id.clone(),
                        vaultName: v.name.clone(),
                        curve: v.curve.as_str().into(),
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
                        typename: r.typename().into(),
                        id: r.operation_id.clone(),
                        organisationId: r.organisation_id.clone(),
                        expiresAt: r.expires_at.clone(),
                        vaultId: v.id.clone(),
                        vaultName: v.name.clone(),
                        curve: v.curve.as_str().into(),
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

/// Asks an approval contract.
#[derive(Debug)]
pub struct ContractApprover {
    config: ContractConfig,
    timeout: Duration,
    retries: u32,
    provider: DynProvider,
}

impl ContractApprover {
    /// An approver calling `config.address` through `config.rpc_url`.
    pub fn new(config: ContractConfig, timeout: Duration, retries: u32) -> Self {
        // TLS is rustls with ring (the workspace's one provider); one installed earlier stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let provider = ProviderBuilder::new()
            .connect_http(config.rpc_url.clone())
            .erased();
        Self {
            config,
            timeout,
            retries,
            provider,
        }
    }

    /// Calls the contract. Never fails: a failure is a decision that is not an approval.
    pub async fn decide(&self, request: &ApprovalRequest) -> Decision {
        let call = encode_request(request);
        let f = call.function();
        let contract = abi::IApproval::new(self.config.address, &self.provider);
        let fail = |reason: String| {
            tracing::warn!(operation = %request.operation_id, function = f, %reason, "approval failed");
            Decision::failure(ApprovalMode::SmartContract, reason)
        };
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0u32;
        let result = loop {
            attempt += 1;
            let fut = async {
                match &call {
                    ContractCall::KeygenReshare(b) => contract.approvedKeygenReshare(b.clone()).call().await,
                    ContractCall::Tx(b) => contract.approvedTx(b.clone()).call().await,
                    ContractCall::SignOp(b) => contract.approvedSignOp(b.clone()).call().await,
                }
            };
            match tokio::time::timeout(self.timeout, fut).await {
                Err(_) => {
                    return fail(format!(
                        "contract call {f} timed out after {}",
                        fmt_duration(self.timeout)
                    ))
                }
                Ok(Ok(v)) => break v,
                Ok(Err(e)) if is_connection_error(&e) && attempt <= self.retries => {
                    tracing::debug!(attempt, error = %self.describe(&e), "approval node unreachable, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Ok(Err(e)) if is_connection_error(&e) => {
                    return fail(format!(
                        "approval node {} unreachable after {attempt} attempt(s): {}",
                        crate::config::shown_url(&self.config.rpc_url, false),
                        self.describe(&e)
                    ))
                }
                Ok(Err(e)) => return fail(format!("contract call {f} failed: {}", self.describe(&e))),
            }
        };
        let vote = match u8::try_from(result) {
            Ok(0) => Vote::Approve,
            Ok(1) => Vote::Reject,
            Ok(2) => Vote::Abstain,
            _ => return fail(format!("contract call {f} returned {result}, not 0, 1 or 2")),
        };
        let reason = match vote {
            Vote::Approve => String::new(),
            Vote::Reject => format!("contract {} rejected the operation ({f})", self.config.address),
            Vote::Abstain => format!("contract {} abstained ({f})", self.config.address),
        };
        tracing::info!(operation = %request.operation_id, function = f, vote = %vote, "contract answered");
        Decision::answered(ApprovalMode::SmartContract, vote, reason)
    }

    /// The error and its causes, with the RPC URL reduced to scheme, host and port (its path
    /// or query often holds an API key).
    fn describe(&self, e: &alloy::contract::Error) -> String {
        let mut out = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            let s_text = s.to_string();
            if !out.contains(&s_text) {
                out.push_str(": ");
                out.push_str(&s_text);
            }
            src = s.source();
        }
        let full = self.config.rpc_url.as_str();
        let shown = crate::config::shown_url(&self.config.rpc_url, false);
        out.replace(full, &shown)
            .replace(full.trim_end_matches('/'), &shown)
    }
}

fn is_connection_error(e: &alloy::contract::Error) -> bool {
    matches!(e, alloy::contract::Error::TransportError(alloy::transports::RpcError::Transport(k)) if k.is_retry_err() || matches!(k, alloy::transports::TransportErrorKind::Custom(_)))
}
