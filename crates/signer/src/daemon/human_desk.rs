//! The coordinator as the place where a human-approved device (`ApprovalMode = Human`)
//! shows people its request and reads their answers. The answers are only relayed: the
//! device's [`HumanApprover`](vsigner_approval::HumanApprover) checks each against the
//! passkeys in its configuration and the request it built itself.

use std::sync::Weak;

use vsigner_approval::human::{DeskFuture, HumanAnswer, HumanDesk, Verdict};

use super::Inner;

/// One device's desk at the coordinator.
pub(super) struct CoordinatorDesk {
    /// The daemon (weak: the desk lives inside the daemon's devices).
    pub(super) inner: Weak<Inner>,
    pub(super) device: String,
}

impl std::fmt::Debug for CoordinatorDesk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorDesk")
            .field("device", &self.device)
            .finish()
    }
}

impl HumanDesk for CoordinatorDesk {
    fn post<'a>(
        &'a self,
        operation_id: &'a str,
        request: &'a [u8],
        passkeys: &'a [String],
    ) -> DeskFuture<'a, ()> {
        Box::pin(async move {
            let inner = self.inner.upgrade().ok_or("the daemon is stopping")?;
            let request = std::str::from_utf8(request).map_err(|e| e.to_string())?;
            inner
                .coordinator
                .post_human_approval_request(operation_id, &self.device, request, passkeys)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    fn answers<'a>(&'a self, operation_id: &'a str) -> DeskFuture<'a, Vec<HumanAnswer>> {
        Box::pin(async move {
            let inner = self.inner.upgrade().ok_or("the daemon is stopping")?;
            let answers = inner
                .coordinator
                .human_answers(operation_id, &self.device)
                .await
                .map_err(|e| e.to_string())?;
            // An answer whose verdict is neither is dropped here; it could approve nothing.
            // The approver reads at most MAX_ANSWERS of them.
            Ok(answers
                .into_iter()
                .take(vsigner_approval::human::MAX_ANSWERS)
                .filter_map(|a| {
                    let verdict = match a.verdict.as_str() {
                        "approve" => Verdict::Approve,
                        "reject" => Verdict::Reject,
                        _ => return None,
                    };
                    Some(HumanAnswer {
                        verdict,
                        assertion: a.assertion,
                    })
                })
                .collect())
        })
    }
}
