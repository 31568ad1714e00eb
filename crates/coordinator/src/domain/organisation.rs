//! Organisations, their API clients and roles, and the authenticated caller.

use serde::{Deserialize, Serialize};

use super::{ClientId, Millis, OrgId};
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

/// An API client's credentials as stored: the current secret's hash, the previous one while
/// it overlaps a rotation, and whether the client is revoked. No `Debug`: it holds hashes.
#[derive(Clone)]
pub struct ClientCredentials {
    /// The client.
    pub client: ApiClient,
    /// Argon2id hash of the current secret.
    pub secret_hash: String,
    /// Hash of the previous secret and until when it is still accepted.
    pub previous: Option<(String, Millis)>,
    /// Creation time.
    pub created_at: Millis,
    /// Last rotation.
    pub rotated_at: Option<Millis>,
    /// Revocation time: every secret and token of the client is refused from then on.
    pub revoked_at: Option<Millis>,
}

impl ClientCredentials {
    /// The secret hashes a token request may match at `now`: the current one, and the
    /// previous one while its overlap lasts. None once revoked.
    pub fn accepted_hashes(&self, now: Millis) -> Vec<&str> {
        if self.revoked_at.is_some() {
            return Vec::new();
        }
        let mut hashes = vec![self.secret_hash.as_str()];
        if let Some((hash, until)) = &self.previous {
            if now < *until {
                hashes.push(hash);
            }
        }
        hashes
    }
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
