//! `AlwaysApprove`: approves everything. For development only.

use crate::config::ApprovalMode;
use crate::decision::{Decision, Vote};
use crate::request::ApprovalRequest;

/// Approves every request, with a warning each time.
#[derive(Debug)]
pub struct AlwaysApprove(());

impl AlwaysApprove {
    /// Logs a warning: nothing will be checked.
    pub fn new() -> Self {
        tracing::warn!(
            "ApprovalMode is AlwaysApprove: every keygen, reshare and sign request will be approved \
             without any check; use it for development only"
        );
        Self(())
    }

    /// Approves, logging a warning that names the operation.
    pub fn decide(&self, request: &ApprovalRequest) -> Decision {
        tracing::warn!(
            operation = %request.operation_id,
            kind = request.typename(),
            vault = %request.vault.id,
            "approved without any check (ApprovalMode is AlwaysApprove)"
        );
        Decision::answered(ApprovalMode::AlwaysApprove, Vote::Approve, "")
    }
}

impl Default for AlwaysApprove {
    fn default() -> Self {
        Self::new()
    }
}
