//! The vsigner coordinator: the backend the Virtual Signer devices talk to.
//!
//! # Layout
//! - [`domain`] — the model and the operation state machine (pure; no HTTP, no SQL).
//! - [`crypto`] — key/payload parsing, signing digests, HD derivation, signature checks.
//! - [`auth`] — client secrets (Argon2id) and access tokens.
//! - [`error`] — errors with stable codes.

pub mod auth;
pub mod crypto;
pub mod domain;
pub mod error;

pub use error::{Error, ErrorCode, Result};
