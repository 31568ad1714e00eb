//! `SmartContract` mode: a read-only `eth_call` to an approval contract.
//!
//! The contract's three functions take the ABI encoding (Solidity `abi.encode(request)`) of
//! a request struct and return `uint8`: 0 approve, 1 reject, 2 abstain. Which structs is
//! `ApprovalContractLayout`:
//! - [`iofinnet`] (default): io.finnet's published `Approval.sol` structs, field for field, so
//!   a policy contract written for io.finnet's Virtual Signer decides unchanged;
//! - [`vsigner_v3`]: vsigner's richer structs (`examples/approval-contract/README.md`).
//!
//! A layout mismatch must never approve. Every encoded request is decoded back under the
//! configured layout before it is sent (a guard against an encoding fault in vsigner: it
//! cannot see which structs the deployed contract was written to). A contract written to
//! the other layout reverts on `approvedKeygenReshare` and `approvedTx` (a revert, an answer
//! other than 0, 1 or 2 and an RPC failure are not approvals); only `vsigner-v3` against an
//! io.finnet-style `approvedSignOp` decodes, one field out of place, which is why `iofinnet`
//! is the default and `vsigner-v3` is for contracts written to it.

use std::time::Duration;

use alloy::primitives::Bytes;
use alloy::providers::{DynProvider, Provider as _, ProviderBuilder};
use alloy::sol_types::SolValue;
use sha2::Digest as _;

use crate::api::fmt_duration;
use crate::config::{ApprovalMode, ContractConfig, ContractLayout};
use crate::decision::{Decision, Vote};
use crate::request::ApprovalRequest;

pub mod iofinnet;
pub mod vsigner_v3;

pub use vsigner_v3::abi;

alloy::sol! {
    /// The approval contract. Declared here as returning `uint256` (the ABI word of the
    /// contract's `uint8`) so that an out-of-range result is seen, not truncated.
    #[sol(rpc)]
    interface IApproval {
        function approvedKeygenReshare(bytes encodedKeygenReshare) external view returns (uint256);
        function approvedTx(bytes encodedTx) external view returns (uint256);
        function approvedSignOp(bytes encodedSignOp) external view returns (uint256);
    }

}

/// Which contract function a request goes to, and its encoded argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractCall {
    /// `approvedKeygenReshare(bytes)` with an encoded keygen/reshare struct.
    KeygenReshare(Bytes),
    /// `approvedTx(bytes)` with an encoded transaction struct.
    Tx(Bytes),
    /// `approvedSignOp(bytes)` with an encoded sign-op struct.
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

impl ContractCall {
    /// The encoded argument.
    pub fn argument(&self) -> &Bytes {
        match self {
            ContractCall::KeygenReshare(b) | ContractCall::Tx(b) | ContractCall::SignOp(b) => b,
        }
    }
}

/// Encodes a request for the contract under `layout`, and checks that it decodes back under
/// the same layout to the same bytes (a struct mismatch must never reach the contract).
///
/// A request for a Taproot-tweaked signature is refused: neither layout has a field for the
/// tweak, and a contract must not approve a signature for a key it was not shown.
pub fn encode_request(r: &ApprovalRequest, layout: ContractLayout) -> Result<ContractCall, String> {
    if let crate::Operation::Sign { taproot: Some(_), .. } = &r.operation {
        return Err(format!(
            "a Taproot-tweaked signature cannot be shown in the {} contract structs (no field \
             names the tweak); use a webhook approver for Taproot signatures",
            layout.as_str()
        ));
    }
    let call = match layout {
        ContractLayout::IoFinnet => iofinnet::encode(r),
        ContractLayout::VsignerV3 => vsigner_v3::encode(r),
    };
    let ok = match (layout, &call) {
        (ContractLayout::IoFinnet, ContractCall::KeygenReshare(b)) => {
            decodes_back::<iofinnet::abi::KeygenReshareRequestSC>(b)
        }
        (ContractLayout::IoFinnet, ContractCall::Tx(b)) => {
            decodes_back::<iofinnet::abi::SigningTransactionRequestSC>(b)
        }
        (ContractLayout::IoFinnet, ContractCall::SignOp(b)) => {
            decodes_back::<iofinnet::abi::NodeOpSignRequestSC>(b)
        }
        (ContractLayout::VsignerV3, ContractCall::KeygenReshare(b)) => {
            decodes_back::<abi::KeygenReshareRequestSC>(b)
        }
        (ContractLayout::VsignerV3, ContractCall::Tx(b)) => decodes_back::<abi::TxRequestSC>(b),
        (ContractLayout::VsignerV3, ContractCall::SignOp(b)) => decodes_back::<abi::SignOpRequestSC>(b),
    };
    if ok {
        Ok(call)
    } else {
        Err(format!(
            "the {} request does not decode back under the {} layout",
            call.function(),
            layout.as_str()
        ))
    }
}

/// True when `bytes` decode as `T` and encode again to exactly `bytes`.
fn decodes_back<T: SolValue + From<<T::SolType as alloy::sol_types::SolType>::RustType>>(
    bytes: &[u8],
) -> bool {
    T::abi_decode(bytes).is_ok_and(|v| v.abi_encode() == bytes)
}

/// Asks an approval contract.
#[derive(Debug)]
pub struct ContractApprover {
    config: ContractConfig,
    timeout: Duration,
    retries: u32,
    provider: DynProvider,
    /// The chain id and code hash first seen, when the configuration pins none.
    seen: std::sync::Mutex<(Option<u64>, Option<[u8; 32]>)>,
}

/// Why the approval node or contract cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendProblem {
    /// The node did not answer (it may come back).
    Unreachable(String),
    /// The node is on another chain, or the contract's code is not the expected one.
    Refused(String),
}

impl std::fmt::Display for BackendProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendProblem::Unreachable(s) | BackendProblem::Refused(s) => f.write_str(s),
        }
    }
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
            seen: std::sync::Mutex::new((None, None)),
        }
    }

    /// Checks that the node is on the configured chain (`ApprovalChainId`) and that the
    /// contract's runtime code has the configured hash (`ApprovalContractCodeHash`); what
    /// the configuration leaves unset must stay what the first check saw. One RPC's answer
    /// is all a contract decision rests on: a node on a test chain, or a contract replaced
    /// at the address, must not approve anything.
    pub async fn check_backend(&self) -> Result<(), BackendProblem> {
        let unreachable =
            |what: &str, e: String| BackendProblem::Unreachable(self.redact(format!("{what}: {e}")));
        let chain = tokio::time::timeout(self.timeout, self.provider.get_chain_id())
            .await
            .map_err(|_| unreachable("eth_chainId", "timed out".into()))?
            .map_err(|e| unreachable("eth_chainId", with_sources(&e)))?;
        let code = tokio::time::timeout(self.timeout, self.provider.get_code_at(self.config.address))
            .await
            .map_err(|_| unreachable("eth_getCode", "timed out".into()))?
            .map_err(|e| unreachable("eth_getCode", with_sources(&e)))?;
        if code.is_empty() {
            return Err(BackendProblem::Refused(format!(
                "there is no contract at {} on chain {chain}",
                self.config.address
            )));
        }
        let hash: [u8; 32] = sha2::Sha256::digest(&code).into();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (seen_chain, seen_hash) = &mut *seen;
        match self.config.chain_id.or(*seen_chain) {
            Some(expected) if expected != chain => {
                return Err(BackendProblem::Refused(format!(
                    "the approval node is on chain {chain}, not chain {expected}{}",
                    if self.config.chain_id.is_some() {
                        " (ApprovalChainId)"
                    } else {
                        " (the chain it was on at start)"
                    }
                )))
            }
            _ => *seen_chain = Some(chain),
        }
        match self.config.code_hash.or(*seen_hash) {
            Some(expected) if expected != hash => {
                return Err(BackendProblem::Refused(format!(
                    "the code of contract {} has SHA-256 {}, not {}{}",
                    self.config.address,
                    hex::encode(hash),
                    hex::encode(expected),
                    if self.config.code_hash.is_some() {
                        " (ApprovalContractCodeHash)"
                    } else {
                        " (the code it had at start)"
                    }
                )))
            }
            _ => *seen_hash = Some(hash),
        }
        Ok(())
    }

    /// Calls the contract. Never fails: a failure is a decision that is not an approval.
    pub async fn decide(&self, request: &ApprovalRequest) -> Decision {
        let call = match encode_request(request, self.config.layout) {
            Ok(call) => call,
            Err(reason) => {
                tracing::warn!(operation = %request.operation_id, %reason, "approval failed");
                return Decision::failure(ApprovalMode::SmartContract, reason);
            }
        };
        let f = call.function();
        let contract = IApproval::new(self.config.address, &self.provider);
        let fail = |reason: String| {
            tracing::warn!(operation = %request.operation_id, function = f, %reason, "approval failed");
            Decision::failure(ApprovalMode::SmartContract, reason)
        };
        // The node was only unavailable: asked again later.
        let unavailable = |reason: String| {
            tracing::warn!(operation = %request.operation_id, function = f, %reason, "approval node unavailable");
            Decision::unavailable(ApprovalMode::SmartContract, reason)
        };
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0u32;
        let result = loop {
            attempt += 1;
            match self.check_backend().await {
                Ok(()) => {}
                Err(BackendProblem::Refused(why)) => return fail(why),
                Err(BackendProblem::Unreachable(why)) if attempt <= self.retries => {
                    tracing::debug!(attempt, error = %why, "approval node unreachable, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    continue;
                }
                Err(BackendProblem::Unreachable(why)) => {
                    return unavailable(format!(
                        "approval node {} unreachable after {attempt} attempt(s): {why}",
                        crate::config::shown_url(&self.config.rpc_url, false)
                    ))
                }
            }
            let fut = async {
                match &call {
                    ContractCall::KeygenReshare(b) => contract.approvedKeygenReshare(b.clone()).call().await,
                    ContractCall::Tx(b) => contract.approvedTx(b.clone()).call().await,
                    ContractCall::SignOp(b) => contract.approvedSignOp(b.clone()).call().await,
                }
            };
            match tokio::time::timeout(self.timeout, fut).await {
                Err(_) => {
                    return unavailable(format!(
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
                    return unavailable(format!(
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
        self.redact(out)
    }

    /// `text` with the RPC URL reduced to scheme, host and port.
    fn redact(&self, text: String) -> String {
        let full = self.config.rpc_url.as_str();
        let shown = crate::config::shown_url(&self.config.rpc_url, false);
        text.replace(full, &shown)
            .replace(full.trim_end_matches('/'), &shown)
    }
}

/// An error and its causes, each once.
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

fn is_connection_error(e: &alloy::contract::Error) -> bool {
    matches!(e, alloy::contract::Error::TransportError(alloy::transports::RpcError::Transport(k)) if k.is_retry_err() || matches!(k, alloy::transports::TransportErrorKind::Custom(_)))
}
