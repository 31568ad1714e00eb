//! External approvals for vsigner: before a device votes on a keygen, reshare or sign
//! operation, it asks its approver, chosen by `ApprovalMode`:
//! `AlwaysApprove` (development), `API` (an io.finnet-compatible webhook),
//! `SmartContract` (a read-only `eth_call` to an EVM policy contract) or `Human` (people
//! answer with passkeys; vsigner's own, [`human`]).
//!
//! # Layout
//! - [`request`]: what is asked ([`ApprovalRequest`]) and its io.finnet-style JSON;
//!   [`transfer`]: what a transaction transfers (amount, recipient, token).
//! - [`decision`]: the answer ([`Vote`], [`Decision`]).
//! - [`config`]: [`ApprovalConfig::from_values`] validates the configuration keys.
//! - [`httpsig`]: RFC 9421 request signatures and io.finnet reply signatures (no I/O).
//! - [`always`], [`api`], [`contract`], [`human`]: the four approvers; [`AnyApprover`]
//!   picks one.
//!   `webhook_http`: the webhook's HTTP/1.1 exchange, headers spelled as io.finnet's.
//!
//! # Fail closed
//! An approver never returns an error: a timeout, a connection failure, a non-2xx reply, a
//! malformed, unsigned or badly signed reply, a wrong nonce, an RPC failure or an unknown
//! contract result is a [`Decision`] that is not an approval, with the reason.
//!
//! # Security
//! The device's request-signing key ([`DeviceKey`]) is zeroized on drop and never appears in
//! `Debug`, logs or reasons. URLs in logs and reasons have their query removed.

#![warn(missing_docs)]

use std::future::Future;
use std::pin::Pin;

pub mod always;
pub mod api;
pub mod config;
pub mod contract;
pub mod decision;
pub mod error;
pub mod httpsig;
pub mod human;
pub mod request;
pub mod transfer;
mod webhook_http;

pub use always::AlwaysApprove;
pub use api::ApiApprover;
pub use config::{
    ApiConfig, ApprovalConfig, ApprovalMode, ApprovalValues, ContractConfig, ContractLayout, ModeConfig,
};
pub use contract::ContractApprover;
pub use decision::{Decision, Vote};
pub use error::{ConfigError, RequestError};
pub use httpsig::DeviceKey;
pub use human::{HumanApprover, HumanConfig, HumanDesk};
pub use request::{ApprovalRequest, Curve, EthTransaction, Operation, SignPayload, Signer, Taproot, Vault};

/// The future returned by [`Approver::decide`].
pub type DecisionFuture<'a> = Pin<Box<dyn Future<Output = Decision> + Send + 'a>>;

/// Something that decides a device's vote. Object safe: `Box<dyn Approver>` /
/// `Arc<dyn Approver>` work.
pub trait Approver: Send + Sync {
    /// The mode of this approver.
    fn mode(&self) -> ApprovalMode;
    /// Decides. Never fails: failures are decisions that are not approvals.
    fn decide<'a>(&'a self, request: &'a ApprovalRequest) -> DecisionFuture<'a>;
}

/// One of the four approvers, as configured.
// Built once per device: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum AnyApprover {
    /// `AlwaysApprove`.
    AlwaysApprove(AlwaysApprove),
    /// `API`.
    Api(ApiApprover),
    /// `SmartContract`.
    SmartContract(ContractApprover),
    /// `Human`.
    Human(HumanApprover),
}

impl AnyApprover {
    /// Builds the approver `config` asks for. `device` signs webhook requests (`API` mode;
    /// unused otherwise). `Human` mode needs a desk: use [`AnyApprover::with_desk`].
    pub fn from_config(config: &ApprovalConfig, device: DeviceKey) -> Result<Self, ConfigError> {
        Self::with_desk(config, device, None)
    }

    /// As [`AnyApprover::from_config`], with the desk where `Human` mode shows requests to
    /// people and reads their answers (the coordinator).
    pub fn with_desk(
        config: &ApprovalConfig,
        device: DeviceKey,
        desk: Option<std::sync::Arc<dyn HumanDesk>>,
    ) -> Result<Self, ConfigError> {
        Ok(match &config.mode {
            ModeConfig::Human(c) => match desk {
                Some(desk) => AnyApprover::Human(HumanApprover::new(c.clone(), desk)),
                None => {
                    return Err(ConfigError::Invalid {
                        key: config::keys::APPROVAL_MODE,
                        reason: "Human needs a place to show requests to people (the coordinator)".into(),
                    })
                }
            },
            ModeConfig::AlwaysApprove => AnyApprover::AlwaysApprove(AlwaysApprove::new()),
            ModeConfig::Api(c) => AnyApprover::Api(ApiApprover::new(
                c.clone(),
                config.timeout,
                config.retries,
                device,
            )?),
            ModeConfig::SmartContract(c) => {
                AnyApprover::SmartContract(ContractApprover::new(c.clone(), config.timeout, config.retries))
            }
        })
    }

    /// Checks what the approver rests on before it is used: for a policy contract, the
    /// node's chain and the contract's code ([`ContractApprover::check_backend`]).
    pub async fn check_backend(&self) -> Result<(), contract::BackendProblem> {
        match self {
            AnyApprover::SmartContract(a) => a.check_backend().await,
            AnyApprover::AlwaysApprove(_) | AnyApprover::Api(_) | AnyApprover::Human(_) => Ok(()),
        }
    }

    /// Decides (see [`Approver::decide`]).
    pub async fn decide(&self, request: &ApprovalRequest) -> Decision {
        match self {
            AnyApprover::AlwaysApprove(a) => a.decide(request),
            AnyApprover::Api(a) => a.decide(request).await,
            AnyApprover::SmartContract(a) => a.decide(request).await,
            AnyApprover::Human(a) => a.decide(request).await,
        }
    }
}

impl Approver for AnyApprover {
    fn mode(&self) -> ApprovalMode {
        match self {
            AnyApprover::AlwaysApprove(_) => ApprovalMode::AlwaysApprove,
            AnyApprover::Api(_) => ApprovalMode::Api,
            AnyApprover::SmartContract(_) => ApprovalMode::SmartContract,
            AnyApprover::Human(_) => ApprovalMode::Human,
        }
    }

    fn decide<'a>(&'a self, request: &'a ApprovalRequest) -> DecisionFuture<'a> {
        Box::pin(AnyApprover::decide(self, request))
    }
}
