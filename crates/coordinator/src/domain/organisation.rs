//! Organisations, their API clients and roles, and the authenticated caller.

use serde::{Deserialize, Serialize};

use super::{ClientId, OrgId};
use crate::error::{Error, ErrorCode, Result};

str_enum!(/// API client role.
    Role, ErrorCode::InvalidInput, "role" {
    /// Creates vaults, requests operations, reads.
    Operator => "operator",
    /// Registers devices and acts as the devices it registered.
    Signer => "signer",
});

/// An organisation.
#[derive(Debug, Clone)]
pub struct Organisation {
    /// Id.
    pub id: OrgId,
    /// Name.
    pub name: String,
}

/// An API client. The secret is never stored, only its Argon2id hash (in the store).
#[derive(Debug, Clone)]
pub struct ApiClient {
    /// `AuthClientId`.
    pub id: ClientId,
    /// Organisation.
    pub org_id: OrgId,
    /// Role.
    pub role: Role,
}

/// Who is calling: an authenticated API client.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Client id.
    pub client_id: ClientId,
    /// Organisation the token is scoped to.
    pub org_id: OrgId,
    /// Role.
    pub role: Role,
}
