//! Human approvals (a device with `ApprovalMode = Human`): the request such a device shows
//! to people, and their passkey answers.
//!
//! The coordinator keeps and relays them; it checks sizes, shapes and who may post, never
//! the cryptography: each device verifies the answers itself against the passkeys in its
//! own configuration and the request bytes it built itself (docs/approvals.md). What is
//! stored here approves nothing by itself.

use serde::{Deserialize, Serialize};

use super::{ClientId, DeviceId, Millis, OperationId};
use crate::error::{Error, ErrorCode, Result};

/// Largest request a device may post (the JSON a webhook would receive).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest assertion accepted (a WebAuthn assertion is well under 4 KiB).
pub const MAX_ASSERTION_BYTES: usize = 16 * 1024;
/// Most passkeys a device names (its file's limit).
pub const MAX_PASSKEYS: usize = 64;

str_enum!(/// What a person answered.
    Verdict, ErrorCode::InvalidInput, "verdict" {
    /// Go ahead.
    Approve => "approve",
    /// Do not.
    Reject => "reject",
});

/// What a human-approved device asks people about one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanApprovalRequest {
    /// The operation.
    pub operation_id: OperationId,
    /// The device asking.
    pub device_id: DeviceId,
    /// The exact request bytes (UTF-8 JSON) that answers sign.
    pub request: String,
    /// The passkeys (credential ids, base64url) whose answers the device reads.
    pub credential_ids: Vec<String>,
    /// When the device posted it.
    pub posted_at: Millis,
    /// The answers so far, oldest first.
    pub answers: Vec<HumanAnswer>,
}

/// One person's answer, as given: unverified here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanAnswer {
    /// Order among the answers to this request.
    pub seq: i64,
    /// The verdict the answer claims.
    pub verdict: Verdict,
    /// The passkey's credential id (base64url), from the assertion.
    pub credential_id: String,
    /// The WebAuthn assertion, as JSON (`PublicKeyCredential.toJSON()`).
    pub assertion: String,
    /// The API client that delivered it.
    pub answered_by: ClientId,
    /// When it was delivered.
    pub at: Millis,
}

/// Checks a request a device posts: UTF-8 JSON object naming this operation, within size.
pub fn check_request(operation: &OperationId, request: &str) -> Result<()> {
    if request.len() > MAX_REQUEST_BYTES {
        return Err(Error::invalid_input(format!(
            "the request is {} bytes; at most {MAX_REQUEST_BYTES}",
            request.len()
        )));
    }
    let value: serde_json::Value = serde_json::from_str(request)
        .map_err(|e| Error::invalid_input(format!("the request is not JSON: {e}")))?;
    // The approval request's JSON names its operation as "id" (docs/approvals.md).
    let named = value.get("id").and_then(|v| v.as_str());
    if named != Some(operation.as_str()) {
        return Err(Error::invalid_input(format!(
            "the request names operation {named:?}, not {operation}"
        )));
    }
    Ok(())
}

/// Checks the passkeys a device names: 1 to [`MAX_PASSKEYS`] distinct base64url ids.
pub fn check_credential_ids(ids: &[String]) -> Result<()> {
    if ids.is_empty() || ids.len() > MAX_PASSKEYS {
        return Err(Error::invalid_input(format!(
            "name 1 to {MAX_PASSKEYS} passkeys (credential ids), not {}",
            ids.len()
        )));
    }
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    if distinct.len() != ids.len() || !ids.iter().all(|id| is_base64url(id)) {
        return Err(Error::invalid_input(
            "credential ids must be distinct base64url strings",
        ));
    }
    Ok(())
}

fn is_base64url(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 1366
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Reads the credential id (base64url `rawId`, else `id`) of an assertion, after checking
/// its size and that it is JSON.
pub fn credential_id_of(assertion: &str) -> Result<String> {
    if assertion.len() > MAX_ASSERTION_BYTES {
        return Err(Error::invalid_input(format!(
            "the assertion is {} bytes; at most {MAX_ASSERTION_BYTES}",
            assertion.len()
        )));
    }
    #[derive(Deserialize, Serialize)]
    struct Shape {
        #[serde(rename = "rawId")]
        raw_id: Option<String>,
        id: Option<String>,
    }
    let shape: Shape = serde_json::from_str(assertion).map_err(|e| {
        Error::invalid_input(format!("the assertion is not a WebAuthn credential's JSON: {e}"))
    })?;
    let id = shape.raw_id.or(shape.id).unwrap_or_default();
    if !is_base64url(&id) {
        return Err(Error::invalid_input("the assertion has no base64url rawId"));
    }
    Ok(id)
}
