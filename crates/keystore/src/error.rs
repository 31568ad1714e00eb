//! Keystore errors: each says what failed and what to do, never a secret.

/// Why a keystore operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// The sealing provider's key does not unwrap the data key.
    #[error("cannot unlock the keystore with the {provider} provider: wrong passphrase or key, or the keystore was sealed by another provider or enclave")]
    WrongKey {
        /// Name of the provider that was tried.
        provider: String,
    },
    /// A record failed authentication.
    #[error("record {path} is corrupted: it was modified, truncated, or moved from another name ({reason}); it was not used and nothing was overwritten")]
    Tampered {
        /// The record's storage path.
        path: String,
        /// What check failed.
        reason: &'static str,
    },
    /// A record that must be written once already exists.
    #[error("record {path} already exists and is never overwritten")]
    AlreadyExists {
        /// The record's storage path.
        path: String,
    },
    /// A rule of the share lifecycle would be broken.
    #[error("{0}")]
    Lifecycle(String),
    /// A name or argument is not acceptable.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// There is no keystore at this location yet.
    #[error("no keystore at {location}: its keystore.json is missing (a keystore is created when the signer first opens it)")]
    NotFound {
        /// The location.
        location: String,
    },
    /// The keystore header is malformed or of an unknown version.
    #[error("keystore header {path}: {reason}")]
    Header {
        /// Where the header is.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The sealing provider cannot be used here.
    #[error("{provider} sealing provider: {reason}")]
    Provider {
        /// The provider.
        provider: &'static str,
        /// Why.
        reason: String,
    },
    /// The storage backend failed.
    #[error("storage {location}: {reason}")]
    Storage {
        /// The path or URL involved.
        location: String,
        /// The backend's description of the failure.
        reason: String,
    },
}

impl KeystoreError {
    pub(crate) fn storage(location: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        KeystoreError::Storage {
            location: location.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        KeystoreError::Invalid {
            what,
            reason: reason.into(),
        }
    }
}
