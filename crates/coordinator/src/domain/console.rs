//! The web console's people: users of an organisation with a role, and what each role may
//! ask of the GraphQL API.
//!
//! A console user's requests run as an operator principal (their user id in place of a
//! client id), after [`ConsoleRole::permits`] has checked the request: viewers only read,
//! approvers read and answer as people (`answerAsPerson`), operators read and make every
//! operator request but manage no users, admins do everything an operator client does.

use serde::{Deserialize, Serialize};

use super::{ClientId, Millis, OrgId};
use crate::error::{Error, ErrorCode, Result};

str_enum!(/// What a console user may do.
    ConsoleRole, ErrorCode::InvalidInput, "console role" {
    /// Read everything (vaults, devices, operations, the audit log).
    Viewer => "viewer",
    /// Read, and answer human approvals with a passkey.
    Approver => "approver",
    /// Read, and create vaults, request signatures and reshares.
    Operator => "operator",
    /// An operator who also manages console users.
    Admin => "admin",
});

/// Mutations an approver may send.
const APPROVER_MUTATIONS: &[&str] = &["answerAsPerson"];
/// Mutations an operator may send (an allow-list: a mutation added later is an admin's
/// until someone decides otherwise).
const OPERATOR_MUTATIONS: &[&str] = &[
    "answerAsPerson",
    "createVault",
    "requestSignature",
    "requestPresignatures",
    "requestReshare",
];

impl ConsoleRole {
    /// Whether this role may send the GraphQL request `query` (the operation
    /// `operation_name`, or all of them). Reading is always allowed; each mutation field
    /// must be allowed to the role. Fragments in a mutation are refused (the fields they
    /// hold would escape the check).
    pub fn permits(self, query: &str, operation_name: Option<&str>) -> Result<()> {
        use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
        let doc = async_graphql::parser::parse_query(query)
            .map_err(|e| Error::new(ErrorCode::InvalidInput, format!("cannot parse the request: {e}")))?;
        let operations: Vec<_> = match &doc.operations {
            DocumentOperations::Single(op) => vec![&op.node],
            DocumentOperations::Multiple(ops) => ops
                .iter()
                .filter(|(name, _)| operation_name.is_none_or(|n| n == name.as_str()))
                .map(|(_, op)| &op.node)
                .collect(),
        };
        for op in operations {
            match op.ty {
                OperationType::Query => continue,
                OperationType::Subscription => return Err(forbidden(self, "subscriptions")),
                OperationType::Mutation => {}
            }
            for item in &op.selection_set.node.items {
                let Selection::Field(field) = &item.node else {
                    return Err(forbidden(self, "fragments in a mutation"));
                };
                let name = field.node.name.node.as_str();
                let allowed = match self {
                    ConsoleRole::Viewer => false,
                    ConsoleRole::Approver => APPROVER_MUTATIONS.contains(&name),
                    ConsoleRole::Operator => OPERATOR_MUTATIONS.contains(&name),
                    ConsoleRole::Admin => true,
                };
                if !allowed {
                    return Err(forbidden(self, name));
                }
            }
        }
        Ok(())
    }
}

fn forbidden(role: ConsoleRole, what: &str) -> Error {
    Error::new(
        ErrorCode::Forbidden,
        format!("a console {} may not send {what}", role.as_str()),
    )
}

/// A console user (no password: only its hash is stored, in the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleUser {
    /// `usr_…`, used as the principal's client id in the audit log.
    pub id: ClientId,
    /// Organisation.
    pub org_id: OrgId,
    /// Sign-in name, unique in the organisation.
    pub name: String,
    /// Role.
    pub role: ConsoleRole,
    /// Created.
    pub created_at: Millis,
    /// When an admin revoked it (it can no longer sign in; its sessions ended).
    pub revoked_at: Option<Millis>,
}

/// A passkey a console user registered: the entry for a device's passkeys file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsolePasskey {
    /// Credential id, base64url.
    pub credential_id: String,
    /// Whose.
    pub user: ConsoleUser,
    /// webauthn-rs's serialised `Passkey` (`{"cred": …}`): public material only.
    pub passkey: String,
    /// Registered.
    pub created_at: Millis,
}

impl ConsolePasskey {
    /// The entry of a device's `HumanApprovalPasskeysFile`: `{"name", "passkey"}`. The name
    /// is the person's with the start of the credential id, so that two passkeys of one
    /// person never make a file the device refuses for a repeated name.
    pub fn file_entry(&self) -> serde_json::Value {
        let passkey: serde_json::Value = serde_json::from_str(&self.passkey).unwrap_or_default();
        let short: String = self.credential_id.chars().take(8).collect();
        serde_json::json!({"name": format!("{} ({short})", self.user.name), "passkey": passkey})
    }
}

/// A console session, as the cookie's token finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// Whose.
    pub user: ConsoleUser,
    /// Until when it is valid.
    pub expires_at: Millis,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_permit_their_mutations_only() {
        let read = "query { vaults { id } }";
        let answer = "mutation { answerAsPerson(operationId: \"o\", deviceId: \"d\", verdict: \"approve\", assertion: \"{}\") { seq } }";
        let create = "mutation($i: CreateVaultInput!) { createVault(input: $i) { id } }";
        let user = "mutation { createConsoleUser(name: \"x\", role: \"admin\") { password } }";
        let aliased = "mutation { a: createConsoleUser(name: \"x\", role: \"admin\") { password } }";
        let fragment = "mutation { ...F } fragment F on Mutation { createVault(input: {}) { id } }";
        let inline = "mutation { ... on Mutation { createVault(input: {}) { id } } }";
        let skipped = "mutation { createApiClient(role: \"operator\") @skip(if: true) { clientId } }";
        use ConsoleRole::*;
        for (role, ok) in [
            (Viewer, [true, false, false, false, false]),
            (Approver, [true, true, false, false, false]),
            (Operator, [true, true, true, false, false]),
            (Admin, [true, true, true, true, true]),
        ] {
            for (q, expect) in [read, answer, create, user, aliased].iter().zip(ok) {
                assert_eq!(role.permits(q, None).is_ok(), expect, "{role:?} {q}");
            }
            assert!(role.permits(fragment, None).is_err(), "{role:?} fragment");
            assert!(role.permits(inline, None).is_err(), "{role:?} inline fragment");
            assert_eq!(
                role.permits(skipped, None).is_ok(),
                role == Admin,
                "{role:?} @skip"
            );
        }
        // With several operations, the one named runs; unnamed, all are checked.
        let two = "query Q { vaults { id } } mutation M { createVault(input: {}) { id } }";
        assert!(Viewer.permits(two, Some("Q")).is_ok());
        assert!(Viewer.permits(two, Some("M")).is_err());
        assert!(Viewer.permits(two, None).is_err());
    }
}
