//! One approval, one signature: a device runs an operation's protocol at most once. As it
//! starts one it writes a durable mark (a keystore `operation-run` record), and it never
//! starts an operation that has a mark, whatever the coordinator lists and whatever the
//! approver says when asked again (a stateless approver approves the same payload twice;
//! the approval request carries the operation id so that an approver can refuse a repeat
//! too). The mark is durable before the first protocol message that depends on a share
//! (`startOperation`, sent once a run lasts, never holds it back; FROST signing sends its
//! nonce commitments meanwhile and holds its signature share back: [`RunMark`]): a crash
//! before it leaves at most fresh nonce commitments, which are never used, so nothing was
//! signed; a crash after it leaves a mark that refuses the operation after the restart (the
//! device reports it failed; it can be requested again), as a crash during the run always
//! did.
//!
//! [`RunMark`]: crate::protocol::RunMark
//!
//! Marks are never pruned (a few hundred bytes per operation; pruning by a date would trust
//! the coordinator's clock or reopen old operations). A device also refuses any operation
//! past its expiry ([`expired`]). A restored older copy of the keystore can bring back a
//! device without a mark (docs/keystore.md): an approver that remembers operation ids
//! closes that gap.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vsigner_keystore::{Keystore, RecordId};

use crate::coordinator_api::Operation;

#[derive(Serialize, Deserialize)]
struct Mark {
    kind: String,
    expires_at: String,
    started_at: String,
}

/// Whether `op` is past its expiry by this machine's clock.
pub(super) fn expired(op: &Operation) -> bool {
    DateTime::parse_from_rfc3339(&op.expires_at).is_ok_and(|t| t.with_timezone(&Utc) <= Utc::now())
}

/// Whether `device` has a mark for operation `op` (unreadable storage counts as marked:
/// better refuse than run twice).
pub(super) async fn ran(keystore: &Keystore, device: &str, op: &str) -> bool {
    let Ok(id) = RecordId::operation_run(device, op) else {
        return true;
    };
    !matches!(keystore.get(&id).await, Ok(None))
}

/// Marks that `device` runs `op`; `Err` if it already did (or the mark cannot be written:
/// then it must not run either).
pub(super) async fn mark(keystore: &Keystore, device: &str, op: &Operation) -> Result<(), String> {
    let id = RecordId::operation_run(device, &op.id).map_err(|e| e.to_string())?;
    match keystore.get(&id).await {
        Ok(None) => {}
        Ok(Some(_)) => {
            return Err(format!(
                "device {device} already ran operation {}; it never runs an operation twice",
                op.id
            ))
        }
        Err(e) => return Err(format!("keystore: {e}")),
    }
    let mark = Mark {
        kind: op.kind.clone(),
        expires_at: op.expires_at.clone(),
        started_at: Utc::now().to_rfc3339(),
    };
    let bytes = serde_json::to_vec(&mark).map_err(|e| e.to_string())?;
    keystore
        .put(&id, &bytes)
        .await
        .map_err(|e| format!("cannot mark operation {} as run (so it is not run): {e}", op.id))
}
