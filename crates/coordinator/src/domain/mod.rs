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
//!
//! # Layout
//! - ids (below): newtype ids of every entity, and the stable string enums.
//! - [`organisation`]: organisations, API clients and their roles, the caller ([`Principal`]).
//! - [`device`]: devices and their identity keys.
//! - [`vault`]: vaults, signer sets with weights and thresholds.
//! - [`scheme`]: what a vault's curve decides: its public-key form, its chain code, how a
//!   signature is verified.
//! - [`operation`]: the operation, its details per kind, and the lifecycle every kind
//!   shares: states, expiry, start, failure, disagreeing results.
//! - [`outcome`]: what a transition produces for the service to store (audit events, a
//!   vault change, a vote, a refusal).
//! - [`votes`]: voters, votes, quorum and the committee.
//! - What each kind adds: [`keygen`], [`sign`] (payloads, digests, verified signatures),
//!   [`reshare`], [`presign`] (ECDSA presignatures and their use by one signature).

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

/// A name as a client gave it, trimmed and checked.
pub(crate) fn check_name(what: &str, name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(Error::invalid_input(format!(
            "{what} must be 1-200 characters without control characters"
        )));
    }
    Ok(name.to_owned())
}

pub mod console;
pub mod device;
pub mod human_approval;
pub mod keygen;
pub mod operation;
pub mod organisation;
pub mod outcome;
pub mod presign;
pub mod reshare;
pub mod scheme;
pub mod sign;
pub mod vault;
pub mod votes;

pub use device::*;
pub use operation::*;
pub use organisation::*;
pub use outcome::*;
pub use sign::*;
pub use vault::*;
pub use votes::*;

#[cfg(test)]
mod tests;
