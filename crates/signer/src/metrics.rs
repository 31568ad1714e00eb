//! Prometheus metrics: every metric the daemon records, as functions, so that call sites never
//! repeat a name or a label; and the `/metrics` endpoint on `PrometheusPort`.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `vsigner_operations_total` | counter | `kind` (keygen, reshare, sign), `outcome` (succeeded, failed, rejected, expired) | operations this instance took part in, by how they ended |
//! | `vsigner_protocol_duration_seconds` | histogram | `protocol` (see [`Protocol`]) | wall time of one protocol run, from the first message to the result |
//! | `vsigner_prime_pool_sets` | gauge | | safe-prime sets ready for aux-info |
//! | `vsigner_presignature_pool` | gauge | `vault` | presignatures ready for a vault's committee |
//! | `vsigner_approval_latency_seconds` | histogram | `mode` (AlwaysApprove, API, SmartContract, Human), `vote` (approve, reject, abstain, failed) | time to get a decision from the approver; `failed`: no trustworthy answer (fail-closed reject) |
//! | `vsigner_mqtt_reconnects_total` | counter | `device` | reconnections of a device's MQTT link |
//! | `vsigner_devices` | gauge | | virtual devices run by this instance |
//!
//! Labels are bounded: `kind`, `outcome`, `protocol`, `mode` and `vote` take values from enums;
//! `vault` and `device` are ids (never names, never secrets), as many as the instance has.
//!
//! [`install`] sets the process-wide recorder once; [`serve`] answers `GET /metrics`.

use std::future::Future;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use vsigner_approval::Decision;

/// `vsigner_operations_total{kind,outcome}`.
pub const OPERATIONS_TOTAL: &str = "vsigner_operations_total";
/// `vsigner_protocol_duration_seconds{protocol}`.
pub const PROTOCOL_DURATION_SECONDS: &str = "vsigner_protocol_duration_seconds";
/// `vsigner_prime_pool_sets`.
pub const PRIME_POOL_SETS: &str = "vsigner_prime_pool_sets";
/// `vsigner_presignature_pool{vault}`.
pub const PRESIGNATURE_POOL: &str = "vsigner_presignature_pool";
/// `vsigner_approval_latency_seconds{mode,vote}`.
pub const APPROVAL_LATENCY_SECONDS: &str = "vsigner_approval_latency_seconds";
/// `vsigner_mqtt_reconnects_total{device}`.
pub const MQTT_RECONNECTS_TOTAL: &str = "vsigner_mqtt_reconnects_total";
/// Counter: approvals asked again because the approver gave no trustworthy answer
/// (unreachable, timed out, 5xx, an unsigned or malformed reply): no vote was cast.
pub const APPROVAL_RETRIES_TOTAL: &str = "vsigner_approval_retries_total";
/// `vsigner_devices`.
pub const DEVICES: &str = "vsigner_devices";

/// Every metric name.
pub const ALL: &[&str] = &[
    OPERATIONS_TOTAL,
    PROTOCOL_DURATION_SECONDS,
    PRIME_POOL_SETS,
    PRESIGNATURE_POOL,
    APPROVAL_LATENCY_SECONDS,
    MQTT_RECONNECTS_TOTAL,
    APPROVAL_RETRIES_TOTAL,
    DEVICES,
];

/// Histogram buckets of protocol durations, in seconds: from an online signature (< 1 ms) to
/// aux-info of a large committee (minutes).
const PROTOCOL_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Histogram buckets of approval latency, in seconds.
const APPROVAL_BUCKETS: &[f64] = &[0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Kind of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationKind {
    /// Vault creation.
    Keygen,
    /// Reshare or refresh.
    Reshare,
    /// Signature.
    Sign,
    /// ECDSA presignature (background pool).
    Presign,
}

impl OperationKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Keygen => "keygen",
            OperationKind::Reshare => "reshare",
            OperationKind::Sign => "sign",
            OperationKind::Presign => "presign",
        }
    }
}

/// How an operation ended for this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The protocol ran and the result was submitted.
    Succeeded,
    /// The protocol or the submission failed.
    Failed,
    /// This instance's approver did not approve it.
    Rejected,
    /// It expired before it could run.
    Expired,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Rejected => "rejected",
            Outcome::Expired => "expired",
        }
    }
}

/// A protocol whose duration is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Safe-prime generation for one set (background pool).
    SafePrimes,
    /// CGGMP24 key generation.
    EcdsaKeygen,
    /// CGGMP24 aux-info.
    EcdsaAuxInfo,
    /// CGGMP24 presignature (background pool).
    EcdsaPresign,
    /// CGGMP24 signing (full, or online from a presignature).
    EcdsaSign,
    /// ECDSA reshare.
    EcdsaReshare,
    /// FROST distributed key generation.
    FrostKeygen,
    /// FROST signing.
    FrostSign,
    /// FROST reshare.
    FrostReshare,
}

impl Protocol {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::SafePrimes => "safe_primes",
            Protocol::EcdsaKeygen => "ecdsa_keygen",
            Protocol::EcdsaAuxInfo => "ecdsa_aux_info",
            Protocol::EcdsaPresign => "ecdsa_presign",
            Protocol::EcdsaSign => "ecdsa_sign",
            Protocol::EcdsaReshare => "ecdsa_reshare",
            Protocol::FrostKeygen => "frost_keygen",
            Protocol::FrostSign => "frost_sign",
            Protocol::FrostReshare => "frost_reshare",
        }
    }
}

/// Counts an operation that ended.
pub fn operation_finished(kind: OperationKind, outcome: Outcome) {
    counter!(OPERATIONS_TOTAL, "kind" => kind.as_str(), "outcome" => outcome.as_str()).increment(1);
}

/// Records the duration of one protocol run.
pub fn protocol_duration(protocol: Protocol, duration: Duration) {
    histogram!(PROTOCOL_DURATION_SECONDS, "protocol" => protocol.as_str()).record(duration.as_secs_f64());
}

/// Sets the number of safe-prime sets ready.
pub fn prime_pool_sets(ready: usize) {
    gauge!(PRIME_POOL_SETS).set(ready as f64);
}

/// Sets the number of presignatures ready for `vault` (its id).
pub fn presignature_pool(vault: &str, ready: usize) {
    gauge!(PRESIGNATURE_POOL, "vault" => vault.to_owned()).set(ready as f64);
}

/// Records how long the approver took to reach `decision`.
pub fn approval_latency(decision: &Decision, duration: Duration) {
    let vote = if decision.failed {
        "failed"
    } else {
        decision.vote.as_str()
    };
    histogram!(APPROVAL_LATENCY_SECONDS, "mode" => decision.mode.as_str(), "vote" => vote)
        .record(duration.as_secs_f64());
}

/// Counts an approval that will be asked again (no trustworthy answer, no vote).
pub fn approval_retry(decision: &Decision) {
    counter!(APPROVAL_RETRIES_TOTAL, "mode" => decision.mode.as_str()).increment(1);
}

/// Counts a reconnection of `device`'s (its id) MQTT link.
pub fn mqtt_reconnect(device: &str) {
    counter!(MQTT_RECONNECTS_TOTAL, "device" => device.to_owned()).increment(1);
}

/// Sets the number of virtual devices.
pub fn devices(count: usize) {
    gauge!(DEVICES).set(count as f64);
}

/// The metrics recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct MetricsError(String);

/// The daemon's histograms and their buckets.
const HISTOGRAM_BUCKETS: &[(&str, &[f64])] = &[
    (PROTOCOL_DURATION_SECONDS, PROTOCOL_BUCKETS),
    (APPROVAL_LATENCY_SECONDS, APPROVAL_BUCKETS),
];

fn builder(histograms: &[(&str, &[f64])]) -> Result<PrometheusBuilder, MetricsError> {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in histograms {
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
            .map_err(|e| MetricsError(e.to_string()))?;
    }
    Ok(builder)
}

/// Describes every metric (HELP lines) on the current recorder.
pub fn describe() {
    describe_counter!(
        OPERATIONS_TOTAL,
        "Operations this instance took part in, by kind and outcome"
    );
    describe_histogram!(
        PROTOCOL_DURATION_SECONDS,
        Unit::Seconds,
        "Wall time of one protocol run"
    );
    describe_gauge!(PRIME_POOL_SETS, "Safe-prime sets ready for aux-info");
    describe_gauge!(PRESIGNATURE_POOL, "Presignatures ready, by vault");
    describe_histogram!(
        APPROVAL_LATENCY_SECONDS,
        Unit::Seconds,
        "Time to get the approver's decision"
    );
    describe_counter!(MQTT_RECONNECTS_TOTAL, "Reconnections of a device's MQTT link");
    describe_counter!(
        APPROVAL_RETRIES_TOTAL,
        "Approvals asked again because the approver gave no trustworthy answer (no vote cast)"
    );
    describe_gauge!(DEVICES, "Virtual devices run by this instance");
}

/// Installs the Prometheus recorder as the process-wide recorder (once per process) and
/// describes the metrics. Serve the returned handle with [`serve`].
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    let handle = install_exporter(HISTOGRAM_BUCKETS)?;
    describe();
    Ok(handle)
}

/// Installs a Prometheus recorder as the process-wide recorder (once per process) that
/// renders `histograms` with their buckets (other histograms render as summaries); for a
/// service with metrics of its own (`vsigner coordinator`). Serve the handle with [`serve`].
pub fn install_exporter(histograms: &[(&str, &[f64])]) -> Result<PrometheusHandle, MetricsError> {
    builder(histograms)?
        .install_recorder()
        .map_err(|e| MetricsError(e.to_string()))
}

/// A recorder that is not installed, and its handle, for tests and embedding
/// (`metrics::with_local_recorder`).
pub fn recorder() -> Result<(metrics_exporter_prometheus::PrometheusRecorder, PrometheusHandle), MetricsError>
{
    let recorder = builder(HISTOGRAM_BUCKETS)?.build_recorder();
    let handle = recorder.handle();
    Ok((recorder, handle))
}

/// The `/metrics` router for `handle`.
pub fn router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
            }
        }),
    )
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes, running the recorder's
/// upkeep (draining histogram samples) every five seconds.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep = {
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        })
    };
    // Plain HTTP (scrapers rarely speak TLS to a metrics port), with the connection bounds
    // of every vsigner listener.
    let result = vsigner_https::serve(listener, router(handle), None, shutdown).await;
    upkeep.abort();
    result
}
