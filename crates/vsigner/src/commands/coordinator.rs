//! `vsigner coordinator`: the coordinator with its logs on stderr (text or JSON, filtered by
//! `RUST_LOG`, `info` by default), spans and logs to OTLP collectors when configured, and
//! Prometheus metrics on `--metrics-listen`, so that broker trouble, refused requests, what
//! operations do and its shutdown are seen.

use anyhow::Context;
use vsigner_coordinator::{CoordinatorCommand, LogFormat, ServeArgs};
use vsigner_signer::config::{LogFormat as SignerLogFormat, TraceSpanExporter};
use vsigner_signer::telemetry::{self, TelemetryConfig};

/// Runs `vsigner coordinator …` (serve or `init`) on a multi-threaded runtime.
pub(crate) fn run(args: vsigner_coordinator::CoordinatorArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        if let Some(CoordinatorCommand::Init(_)) = &args.command {
            let _logs = telemetry::init_stderr("info")?;
            return vsigner_coordinator::run(args).await;
        }
        // Inside the runtime: the OTLP exporters send with it.
        let logs = telemetry::init_on(&telemetry_config(&args.serve), std::io::stderr)?;
        let metrics = match args.serve.metrics_listen {
            Some(addr) => Some(serve_metrics(addr).await?),
            None => None,
        };
        let result = vsigner_coordinator::run(args).await;
        if let Some(task) = metrics {
            task.abort();
        }
        if let Err(e) = logs.shutdown_async().await {
            eprintln!("warning: {e}");
        }
        result
    })
}

fn telemetry_config(serve: &ServeArgs) -> TelemetryConfig {
    let trace_span_exporter = match &serve.otlp_traces_endpoint {
        None => TraceSpanExporter::None,
        Some(url) if url.scheme() == "https" => TraceSpanExporter::OtlpTls,
        Some(_) => TraceSpanExporter::OtlpNoTls,
    };
    TelemetryConfig {
        log_format: match serve.log_format {
            LogFormat::Text => SignerLogFormat::Text,
            LogFormat::Json => SignerLogFormat::Json,
        },
        trace_span_exporter,
        otlp_traces_endpoint: serve.otlp_traces_endpoint.clone(),
        otlp_logs_endpoint: serve.otlp_logs_endpoint.clone(),
        filter: None,
    }
}

/// Installs the metrics recorder and serves `GET /metrics` on `addr` until aborted.
async fn serve_metrics(addr: std::net::SocketAddr) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use vsigner_coordinator::metrics;
    let handle = vsigner_signer::metrics::install_exporter(metrics::HISTOGRAM_BUCKETS)?;
    metrics::describe();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics-listen {addr}: cannot listen"))?;
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = vsigner_signer::metrics::serve(listener, handle, std::future::pending()).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    }))
}
