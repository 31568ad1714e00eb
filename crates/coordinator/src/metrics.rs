//! Prometheus metrics of the coordinator: every metric it records, as functions, so that call
//! sites never repeat a name or a label. Recording is a no-op until a recorder is installed:
//! `vsigner coordinator --metrics-listen ADDR` installs one and serves `GET /metrics` there.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `vsigner_coordinator_operations_created_total` | counter | `kind` | operations created (Keygen, Reshare, Sign, Presign) |
//! | `vsigner_coordinator_operations_ended_total` | counter | `kind`, `state` (Completed, Failed, Rejected, Expired) | operations that reached a final state |
//! | `vsigner_coordinator_time_to_quorum_seconds` | histogram | `kind` | creation → Ready (quorum reached, committee chosen) |
//! | `vsigner_coordinator_time_to_result_seconds` | histogram | `kind` | creation → Completed (result verified) |
//! | `vsigner_coordinator_votes_total` | counter | `choice` (approve, reject, abstain) | votes accepted |
//! | `vsigner_coordinator_notify_failures_total` | counter | | MQTT hints that could not be queued (devices still poll) |
//! | `vsigner_coordinator_broker_connected` | gauge | | 1 while the MQTT broker is connected, else 0 |
//! | `vsigner_coordinator_db_transaction_seconds` | histogram | `what` (create, act, expire) | one locked transaction, from `BEGIN` to `COMMIT` |
//! | `vsigner_coordinator_token_refusals_total` | counter | `reason` (invalid_client, unsupported_grant_type, too_many_requests) | `POST /oauth/token` requests refused |
//! | `vsigner_coordinator_api_clients_changed_total` | counter | `change` (created, rotated, revoked) | API client credential changes |
//!
//! Labels are bounded: every label takes values from an enum. Counted after the transaction
//! commits, so a transition rolled back is never counted.

use std::time::{Duration, Instant};

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};

use crate::domain::{Millis, Operation, OperationKind, OperationState, VoteChoice};

/// `vsigner_coordinator_operations_created_total{kind}`.
pub const OPERATIONS_CREATED_TOTAL: &str = "vsigner_coordinator_operations_created_total";
/// `vsigner_coordinator_operations_ended_total{kind,state}`.
pub const OPERATIONS_ENDED_TOTAL: &str = "vsigner_coordinator_operations_ended_total";
/// `vsigner_coordinator_time_to_quorum_seconds{kind}`.
pub const TIME_TO_QUORUM_SECONDS: &str = "vsigner_coordinator_time_to_quorum_seconds";
/// `vsigner_coordinator_time_to_result_seconds{kind}`.
pub const TIME_TO_RESULT_SECONDS: &str = "vsigner_coordinator_time_to_result_seconds";
/// `vsigner_coordinator_votes_total{choice}`.
pub const VOTES_TOTAL: &str = "vsigner_coordinator_votes_total";
/// `vsigner_coordinator_notify_failures_total`.
pub const NOTIFY_FAILURES_TOTAL: &str = "vsigner_coordinator_notify_failures_total";
/// `vsigner_coordinator_broker_connected`.
pub const BROKER_CONNECTED: &str = "vsigner_coordinator_broker_connected";
/// `vsigner_coordinator_db_transaction_seconds{what}`.
pub const DB_TRANSACTION_SECONDS: &str = "vsigner_coordinator_db_transaction_seconds";
/// `vsigner_coordinator_token_refusals_total{reason}`.
pub const TOKEN_REFUSALS_TOTAL: &str = "vsigner_coordinator_token_refusals_total";
/// `vsigner_coordinator_api_clients_changed_total{change}`.
pub const API_CLIENTS_CHANGED_TOTAL: &str = "vsigner_coordinator_api_clients_changed_total";

/// Every metric name.
pub const ALL: &[&str] = &[
    OPERATIONS_CREATED_TOTAL,
    OPERATIONS_ENDED_TOTAL,
    TIME_TO_QUORUM_SECONDS,
    TIME_TO_RESULT_SECONDS,
    VOTES_TOTAL,
    NOTIFY_FAILURES_TOTAL,
    BROKER_CONNECTED,
    DB_TRANSACTION_SECONDS,
    TOKEN_REFUSALS_TOTAL,
    API_CLIENTS_CHANGED_TOTAL,
];

/// Buckets of the operation latencies, in seconds: from a presigned signature (tens of ms)
/// to a signature waiting for a person's approval (hours).
const OPERATION_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 86_400.0,
];
/// Buckets of database transactions, in seconds.
const DB_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The histogram buckets the exporter must use for this module's histograms (without them
/// the Prometheus exporter renders summaries).
pub const HISTOGRAM_BUCKETS: &[(&str, &[f64])] = &[
    (TIME_TO_QUORUM_SECONDS, OPERATION_BUCKETS),
    (TIME_TO_RESULT_SECONDS, OPERATION_BUCKETS),
    (DB_TRANSACTION_SECONDS, DB_BUCKETS),
];

/// A refused token request, by OAuth2 error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Unknown client, wrong or expired secret, revoked client, no credentials.
    InvalidClient,
    /// `grant_type` other than `client_credentials`.
    UnsupportedGrantType,
    /// Too many secret verifications at once.
    TooManyRequests,
}

impl TokenRefusal {
    fn as_str(self) -> &'static str {
        match self {
            Self::InvalidClient => "invalid_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::TooManyRequests => "too_many_requests",
        }
    }
}

/// A change to an API client's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientChange {
    /// A new client.
    Created,
    /// A new secret (the old one kept for the overlap).
    Rotated,
    /// Revoked: its secrets and tokens refused.
    Revoked,
}

impl ClientChange {
    fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Rotated => "rotated",
            Self::Revoked => "revoked",
        }
    }
}

/// A locked transaction (`what`: create, act, expire), timed from its start.
pub(crate) struct TransactionTimer {
    what: &'static str,
    started: Instant,
}

impl TransactionTimer {
    /// Starts timing.
    pub(crate) fn start(what: &'static str) -> Self {
        Self {
            what,
            started: Instant::now(),
        }
    }

    /// The transaction committed.
    pub(crate) fn committed(self) {
        histogram!(DB_TRANSACTION_SECONDS, "what" => self.what).record(self.started.elapsed().as_secs_f64());
    }
}

fn seconds_since(created_at: Millis, now: Millis) -> f64 {
    Duration::from_millis(u64::try_from(now.saturating_sub(created_at)).unwrap_or(0)).as_secs_f64()
}

/// An operation was created.
pub(crate) fn operation_created(kind: OperationKind) {
    counter!(OPERATIONS_CREATED_TOTAL, "kind" => kind.as_str()).increment(1);
}

/// An operation moved from `before` to its current state at `now` (committed).
pub(crate) fn operation_changed(op: &Operation, before: OperationState, now: Millis) {
    if op.state == before {
        return;
    }
    let kind = op.kind().as_str();
    if op.state == OperationState::Ready && before == OperationState::AwaitingApproval {
        histogram!(TIME_TO_QUORUM_SECONDS, "kind" => kind).record(seconds_since(op.created_at, now));
    }
    if op.state.is_final() {
        operation_ended(op, now);
    }
}

/// An operation reached its final state at `now` (committed).
pub(crate) fn operation_ended(op: &Operation, now: Millis) {
    let kind = op.kind().as_str();
    counter!(OPERATIONS_ENDED_TOTAL, "kind" => kind, "state" => op.state.as_str()).increment(1);
    if op.state == OperationState::Completed {
        histogram!(TIME_TO_RESULT_SECONDS, "kind" => kind).record(seconds_since(op.created_at, now));
    }
}

/// A vote was accepted (committed).
pub(crate) fn vote(choice: VoteChoice) {
    counter!(VOTES_TOTAL, "choice" => choice.as_str()).increment(1);
}

/// An MQTT hint could not be queued.
pub(crate) fn notify_failed() {
    counter!(NOTIFY_FAILURES_TOTAL).increment(1);
}

/// The MQTT broker connected (`true`) or was lost.
pub(crate) fn broker_connected(up: bool) {
    gauge!(BROKER_CONNECTED).set(if up { 1.0 } else { 0.0 });
}

/// A token request was refused.
pub(crate) fn token_refused(reason: TokenRefusal) {
    counter!(TOKEN_REFUSALS_TOTAL, "reason" => reason.as_str()).increment(1);
}

/// An API client's credentials changed.
pub(crate) fn api_client_changed(change: ClientChange) {
    counter!(API_CLIENTS_CHANGED_TOTAL, "change" => change.as_str()).increment(1);
}

/// Registers every metric's help text with the installed recorder.
pub fn describe() {
    describe_counter!(OPERATIONS_CREATED_TOTAL, "Operations created, by kind");
    describe_counter!(
        OPERATIONS_ENDED_TOTAL,
        "Operations that reached a final state, by kind and state"
    );
    describe_histogram!(
        TIME_TO_QUORUM_SECONDS,
        Unit::Seconds,
        "Time from an operation's creation to its quorum (Ready)"
    );
    describe_histogram!(
        TIME_TO_RESULT_SECONDS,
        Unit::Seconds,
        "Time from an operation's creation to its verified result (Completed)"
    );
    describe_counter!(VOTES_TOTAL, "Device votes accepted, by choice");
    describe_counter!(
        NOTIFY_FAILURES_TOTAL,
        "MQTT hints that could not be queued (devices still poll)"
    );
    describe_gauge!(BROKER_CONNECTED, "1 while the MQTT broker is connected, else 0");
    describe_histogram!(
        DB_TRANSACTION_SECONDS,
        Unit::Seconds,
        "One locked database transaction, from BEGIN to COMMIT"
    );
    describe_counter!(TOKEN_REFUSALS_TOTAL, "Token requests refused, by OAuth2 error");
    describe_counter!(API_CLIENTS_CHANGED_TOTAL, "API client credential changes");
}
