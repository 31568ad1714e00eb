//! The coordinator's error type: every error carries a stable machine-readable code
//! (surfaced to GraphQL clients as `extensions.code`) and a clear message.
//!
//! Messages never contain secrets (client secrets, tokens).

/// Stable error codes. The string form ([`ErrorCode::as_str`]) is part of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No or an invalid/expired bearer token.
    Unauthenticated,
    /// Authenticated, but the role or the device ownership does not allow this.
    Forbidden,
    /// The object does not exist in the caller's organisation.
    NotFound,
    /// Threshold 0, above the signer set, or otherwise unusable.
    InvalidThreshold,
    /// Curve other than `secp256k1` or `ed25519`.
    UnknownCurve,
    /// A digest that is not exactly 32 bytes.
    InvalidDigest,
    /// A malformed or unsupported sign payload (eth_tx, message, several payloads…).
    InvalidPayload,
    /// A derivation path that is malformed, hardened or not supported for the curve.
    InvalidDerivationPath,
    /// A malformed identity key, public key, chain code, hex string, name…
    InvalidInput,
    /// A device weight other than 1.
    UnsupportedWeight,
    /// The device has already voted on this operation.
    AlreadyVoted,
    /// The device may not vote on this operation.
    NotAVoter,
    /// The device is not in the operation's committee.
    NotInCommittee,
    /// The operation or vault is not in a state that allows this.
    InvalidState,
    /// A signature result that does not verify.
    SignatureInvalid,
    /// A keygen or reshare result that is invalid or disagrees.
    ResultMismatch,
    /// The device has already submitted a result for this operation.
    AlreadySubmitted,
    /// The same idempotency key was used with a different input.
    IdempotencyConflict,
    /// The operation has expired.
    Expired,
    /// Too many concurrent requests of this kind (e.g. token requests); retry later.
    TooManyRequests,
    /// A unique key (e.g. a device identity key) is already registered.
    DuplicateKey,
    /// A device action not signed by the acting device's own identity key, or signed over
    /// something else.
    DeviceSignatureInvalid,
    /// A device record that does not verify, names another device or keys, or goes back
    /// in revision.
    DeviceRecordInvalid,
    /// Storage or another internal failure (details logged, not returned).
    Internal,
}

impl ErrorCode {
    /// The stable string form, e.g. `"INVALID_THRESHOLD"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::InvalidThreshold => "INVALID_THRESHOLD",
            Self::UnknownCurve => "UNKNOWN_CURVE",
            Self::InvalidDigest => "INVALID_DIGEST",
            Self::InvalidPayload => "INVALID_PAYLOAD",
            Self::InvalidDerivationPath => "INVALID_DERIVATION_PATH",
            Self::InvalidInput => "INVALID_INPUT",
            Self::UnsupportedWeight => "UNSUPPORTED_WEIGHT",
            Self::AlreadyVoted => "ALREADY_VOTED",
            Self::NotAVoter => "NOT_A_VOTER",
            Self::NotInCommittee => "NOT_IN_COMMITTEE",
            Self::InvalidState => "INVALID_STATE",
            Self::SignatureInvalid => "SIGNATURE_INVALID",
            Self::ResultMismatch => "RESULT_MISMATCH",
            Self::AlreadySubmitted => "ALREADY_SUBMITTED",
            Self::IdempotencyConflict => "IDEMPOTENCY_CONFLICT",
            Self::Expired => "EXPIRED",
            Self::TooManyRequests => "TOO_MANY_REQUESTS",
            Self::DuplicateKey => "DUPLICATE_KEY",
            Self::DeviceSignatureInvalid => "DEVICE_SIGNATURE_INVALID",
            Self::DeviceRecordInvalid => "DEVICE_RECORD_INVALID",
            Self::Internal => "INTERNAL",
        }
    }
}

/// A coordinator error: a code and a human message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    code: ErrorCode,
    message: String,
}

impl Error {
    /// A new error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The human message.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(context, error = %err, "internal error");
        Self::new(
            ErrorCode::Internal,
            format!("internal error ({context}); see the coordinator log"),
        )
    }

    /// `NOT_FOUND` for `what` `id` in the caller's organisation.
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            ErrorCode::NotFound,
            format!("{what} {id} not found in this organisation"),
        )
    }

    pub(crate) fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidState, message)
    }

    pub(crate) fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        Self::internal("database", err)
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
