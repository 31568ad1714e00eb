//! Errors: bad configuration (naming the config key) and malformed requests.
//!
//! An approver never returns an error for a failed vote: every failure is a
//! [`Decision`](crate::Decision) that is not an approval, with the reason.

/// A configuration value was missing or invalid. The message names the configuration key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key that the chosen `ApprovalMode` needs is not set.
    #[error("{key} must be set when ApprovalMode is {mode}")]
    Missing {
        /// The configuration key.
        key: &'static str,
        /// The approval mode that needs it.
        mode: &'static str,
    },
    /// A key has a value that cannot be used.
    #[error("{key} is invalid: {reason}")]
    Invalid {
        /// The configuration key.
        key: &'static str,
        /// What is wrong (never contains a secret).
        reason: String,
    },
}

impl ConfigError {
    /// The configuration key at fault.
    pub fn key(&self) -> &'static str {
        match self {
            ConfigError::Missing { key, .. } | ConfigError::Invalid { key, .. } => key,
        }
    }
}

/// An approval request could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The raw Ethereum transaction is not a canonical EIP-1559 signing payload.
    #[error("not an EIP-1559 unsigned transaction: {0}")]
    EthTransaction(String),
}
