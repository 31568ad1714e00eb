//! The outcome of asking an approver: [`Vote`] and [`Decision`].

use crate::config::ApprovalMode;

/// A device's vote on an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vote {
    /// Approve the operation.
    Approve,
    /// Reject the operation.
    Reject,
    /// Neither: leave it to the other devices.
    Abstain,
}

impl Vote {
    /// `approve`, `reject` or `abstain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Vote::Approve => "approve",
            Vote::Reject => "reject",
            Vote::Abstain => "abstain",
        }
    }
}

impl std::fmt::Display for Vote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the approver decided, and why.
///
/// When the approver could not be asked or its answer could not be trusted (timeout,
/// connection failure, non-2xx, malformed or badly signed reply, wrong nonce, RPC error,
/// unknown contract result) the decision is **not an approval**: `vote` is
/// [`Vote::Reject`], `failed` is true and `reason` says exactly what went wrong. When the
/// approver was only unavailable (unreachable, timed out, HTTP 5xx or 429, an RPC node that
/// cannot be reached) `retry` is true too: asking again later may get an answer, and the
/// daemon then casts no vote and asks again until the operation expires. Everything else
/// (a bad signature or nonce, a 4xx, a malformed reply, a revert, a refused node or
/// contract) is final: the daemon votes reject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The vote to cast.
    pub vote: Vote,
    /// Why, for anything other than a clean approval (empty for a clean approval).
    pub reason: String,
    /// The mode that decided.
    pub mode: ApprovalMode,
    /// True when no trustworthy answer was obtained (the vote is then a fail-closed reject).
    pub failed: bool,
    /// True when the approver was unavailable and may answer if asked again (`failed` too).
    pub retry: bool,
}

impl Decision {
    /// A trustworthy answer from the approver.
    pub fn answered(mode: ApprovalMode, vote: Vote, reason: impl Into<String>) -> Self {
        Self {
            vote,
            reason: reason.into(),
            mode,
            failed: false,
            retry: false,
        }
    }

    /// No trustworthy answer: fail closed, for good.
    pub fn failure(mode: ApprovalMode, reason: impl Into<String>) -> Self {
        Self {
            vote: Vote::Reject,
            reason: reason.into(),
            mode,
            failed: true,
            retry: false,
        }
    }

    /// The approver was unavailable: fail closed now, ask again later.
    pub fn unavailable(mode: ApprovalMode, reason: impl Into<String>) -> Self {
        Self {
            retry: true,
            ..Self::failure(mode, reason)
        }
    }

    /// True only for a trustworthy approval.
    pub fn is_approval(&self) -> bool {
        self.vote == Vote::Approve && !self.failed
    }
}
