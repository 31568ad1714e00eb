//! `telemetry::init` sets the process-wide subscriber once (own test binary: global state).

// Tests may unwrap (see clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vsigner_signer::config::{LogFormat, TraceSpanExporter};
use vsigner_signer::telemetry::{self, TelemetryConfig, TelemetryError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_once_then_refused() {
    let config = TelemetryConfig {
        log_format: LogFormat::Json,
        trace_span_exporter: TraceSpanExporter::Stdout,
        otlp_traces_endpoint: None,
        otlp_logs_endpoint: Some(url::Url::parse("http://127.0.0.1:9/v1/logs?api-key=k3y").unwrap()),
        filter: Some("info".into()),
    };
    assert!(
        !format!("{config:?}").contains("k3y"),
        "query shown by Debug: {config:?}"
    );
    let guard = telemetry::init(&config).unwrap();
    assert!(tracing::dispatcher::has_been_set());
    tracing::info!("telemetry initialised");
    let again = telemetry::init(&config).unwrap_err();
    assert!(matches!(again, TelemetryError::AlreadySet), "{again}");
    guard.shutdown_async().await.ok();
}
