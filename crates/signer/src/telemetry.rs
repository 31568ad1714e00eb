//! Logs and traces: `tracing` with JSON (or text) logs on stdout, filtered by `RUST_LOG`
//! (default `info`); spans exported as chosen by `TraceSpanExporter`; logs also sent to an
//! OTLP collector when `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` is set.
//!
//! | `TraceSpanExporter` | spans go to |
//! |---|---|
//! | `none` | nowhere (logs only) |
//! | `stdout` | the log stream: one line when each span closes, with its fields and timing |
//! | `OTLP-NO-TLS` / `OTLP-TLS` | an OTLP/HTTP (protobuf) collector at `OTELExporterOTLPEndpoint`, `…/v1/traces`, batched, resource `service.name=vsigner` |
//!
//! The OTLP exporters use the async reqwest client on the tokio runtime that called
//! [`init`] (the SDK's batch processors export from their own threads and hand each request
//! to that runtime). So [`init`] must run inside a tokio runtime when a collector is
//! configured, and [`TelemetryGuard::shutdown`], which blocks until the last batch is sent,
//! must not run on the only thread of a current-thread runtime: use
//! [`TelemetryGuard::shutdown_async`] from async code.
//!
//! Events of the exporters' own stack (`opentelemetry*`, `reqwest`, `hyper*`, `h2`) are never
//! sent to the collector, so that exporting cannot feed itself.

use std::fmt;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_otlp::{LogExporter, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Dispatch;
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layer, Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Registry;
use url::Url;

use crate::config::{shown_url, LogFormat, TraceSpanExporter};

/// The `service.name` of every span and log record.
pub const SERVICE_NAME: &str = "vsigner";
/// Filter used when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info";
/// Time allowed for one export request to the collector.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`init`] needs (see [`crate::SignerConfig::telemetry_config`]). `Debug` shows the
/// endpoints without user info or query (collectors' access keys often sit there).
#[derive(Clone)]
pub struct TelemetryConfig {
    /// Log format on stdout.
    pub log_format: LogFormat,
    /// Where spans go.
    pub trace_span_exporter: TraceSpanExporter,
    /// Full OTLP/HTTP traces URL (ends with `/v1/traces`); required by the OTLP exporters.
    pub otlp_traces_endpoint: Option<Url>,
    /// Full OTLP/HTTP logs URL, when logs also go to a collector.
    pub otlp_logs_endpoint: Option<Url>,
    /// Filter directives (`tracing_subscriber::EnvFilter` syntax). `None`: `RUST_LOG`, or
    /// [`DEFAULT_FILTER`] when it is unset.
    pub filter: Option<String>,
}

impl fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field("log_format", &self.log_format)
            .field("trace_span_exporter", &self.trace_span_exporter)
            .field(
                "otlp_traces_endpoint",
                &self.otlp_traces_endpoint.as_ref().map(shown_url),
            )
            .field(
                "otlp_logs_endpoint",
                &self.otlp_logs_endpoint.as_ref().map(shown_url),
            )
            .field("filter", &self.filter)
            .finish()
    }
}

/// Telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// `RUST_LOG` (or the configured filter) is not a valid filter.
    #[error("RUST_LOG: not a valid filter: {0}")]
    Filter(String),
    /// An exporter could not be built.
    #[error("{key}: cannot build the OTLP exporter: {reason}")]
    Exporter {
        /// The configuration key of the endpoint.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// A collector is configured but there is no tokio runtime to send with.
    #[error("telemetry with an OTLP collector must be initialised inside a tokio runtime")]
    NoRuntime,
    /// A global subscriber is set already.
    #[error("a global tracing subscriber is already set")]
    AlreadySet,
    /// Flushing or shutting down an exporter failed (spans or logs may be lost).
    #[error("telemetry shutdown: {0}")]
    Shutdown(String),
}

/// Owns the exporters; [`shutdown`](Self::shutdown) flushes them. Dropping it shuts them down
/// too (ignoring errors).
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
    logger_provider: Option<SdkLoggerProvider>,
}

impl fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("traces", &self.tracer_provider.is_some())
            .field("logs", &self.logger_provider.is_some())
            .finish()
    }
}

impl TelemetryGuard {
    /// Flushes pending spans and log records and shuts the exporters down. Blocks until
    /// done: do not call it on the only thread of a current-thread tokio runtime.
    pub fn shutdown(mut self) -> Result<(), TelemetryError> {
        self.shutdown_inner()
    }

    /// [`shutdown`](Self::shutdown) on a blocking thread, for async code.
    pub async fn shutdown_async(self) -> Result<(), TelemetryError> {
        tokio::task::spawn_blocking(move || self.shutdown())
            .await
            .map_err(|e| TelemetryError::Shutdown(e.to_string()))?
    }

    fn shutdown_inner(&mut self) -> Result<(), TelemetryError> {
        let mut errors = Vec::new();
        if let Some(p) = self.tracer_provider.take() {
            if let Err(e) = p.force_flush() {
                errors.push(format!("traces flush: {e}"));
            }
            if let Err(e) = p.shutdown() {
                errors.push(format!("traces: {e}"));
            }
        }
        if let Some(p) = self.logger_provider.take() {
            if let Err(e) = p.force_flush() {
                errors.push(format!("logs flush: {e}"));
            }
            if let Err(e) = p.shutdown() {
                errors.push(format!("logs: {e}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(TelemetryError::Shutdown(errors.join("; ")))
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.shutdown_inner();
    }
}

/// An `opentelemetry_http::HttpClient` that sends with the async reqwest client on a tokio
/// runtime, whatever thread calls it (the SDK's batch processors call from their own threads,
/// outside any runtime).
#[derive(Debug, Clone)]
struct RuntimeHttpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for RuntimeHttpClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { opentelemetry_http::HttpClient::send_bytes(&client, request).await })
            .await?
    }
}

fn resource() -> Resource {
    Resource::builder()
        .with_service_name(SERVICE_NAME)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

fn http_client(runtime: &Option<tokio::runtime::Handle>) -> Result<RuntimeHttpClient, TelemetryError> {
    let runtime = runtime.clone().ok_or(TelemetryError::NoRuntime)?;
    // TLS is rustls with ring (the workspace's one provider); one installed earlier stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Exporter {
            key: crate::config::keys::OTLP_ENDPOINT,
            reason: e.to_string(),
        })?;
    Ok(RuntimeHttpClient { client, runtime })
}

/// True for events and spans of the exporters' own stack, never sent to the collector.
fn is_export_stack(target: &str) -> bool {
    ["opentelemetry", "reqwest", "hyper", "h2", "tower", "rustls"]
        .iter()
        .any(|p| target.starts_with(p))
}

type Filtered = Layered<EnvFilter, Registry>;
type BoxedLayer = Box<dyn Layer<Filtered> + Send + Sync>;

fn filter(config: &TelemetryConfig) -> Result<EnvFilter, TelemetryError> {
    let directives = match &config.filter {
        Some(f) => f.clone(),
        None => std::env::var("RUST_LOG")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_FILTER.to_owned()),
    };
    EnvFilter::try_new(&directives).map_err(|e| TelemetryError::Filter(e.to_string()))
}

/// Builds the subscriber (as a [`Dispatch`]) and its exporters without installing anything
/// globally: logs are written to `writer`. For tests, use it with
/// `tracing::dispatcher::with_default`; the daemon uses [`init`].
pub fn build<W>(config: &TelemetryConfig, writer: W) -> Result<(Dispatch, TelemetryGuard), TelemetryError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let runtime = tokio::runtime::Handle::try_current().ok();
    let mut layers: Vec<BoxedLayer> = Vec::new();
    let span_events = if config.trace_span_exporter == TraceSpanExporter::Stdout {
        FmtSpan::CLOSE
    } else {
        FmtSpan::NONE
    };
    layers.push(match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_span_events(span_events)
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_span_events(span_events)
            .with_writer(writer)
            .boxed(),
    });

    let mut guard = TelemetryGuard {
        tracer_provider: None,
        logger_provider: None,
    };
    if config.trace_span_exporter.is_otlp() {
        let key = crate::config::keys::OTLP_ENDPOINT;
        let endpoint = config
            .otlp_traces_endpoint
            .as_ref()
            .ok_or_else(|| TelemetryError::Exporter {
                key,
                reason: "no endpoint configured".into(),
            })?;
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(endpoint.as_str())
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(http_client(&runtime)?)
            .build()
            .map_err(|e| TelemetryError::Exporter {
                key,
                reason: e.to_string(),
            })?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource())
            .build();
        let tracer = provider.tracer(SERVICE_NAME);
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(filter_fn(|m| !is_export_stack(m.target())))
                .boxed(),
        );
        guard.tracer_provider = Some(provider);
    }
    if let Some(endpoint) = &config.otlp_logs_endpoint {
        let key = crate::config::keys::OTLP_LOGS_ENDPOINT;
        let exporter = LogExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(endpoint.as_str())
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(http_client(&runtime)?)
            .build()
            .map_err(|e| TelemetryError::Exporter {
                key,
                reason: e.to_string(),
            })?;
        let provider = SdkLoggerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource())
            .build();
        layers.push(
            OpenTelemetryTracingBridge::new(&provider)
                .with_filter(filter_fn(|m| !is_export_stack(m.target())))
                .boxed(),
        );
        guard.logger_provider = Some(provider);
    }
    let subscriber = Registry::default().with(filter(config)?).with(layers);
    Ok((Dispatch::new(subscriber), guard))
}

/// Sets up logging and tracing for the process (once): logs to stdout, spans and logs to the
/// configured exporters. Keep the guard and call [`TelemetryGuard::shutdown`] (or
/// [`TelemetryGuard::shutdown_async`]) before exiting so that the last spans are sent.
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    init_on(config, std::io::stdout)
}

/// [`init`] with the logs written to `writer` (`std::io::stderr` for `vsigner coordinator`,
/// whose stdout is reserved for what a command prints).
pub fn init_on<W>(config: &TelemetryConfig, writer: W) -> Result<TelemetryGuard, TelemetryError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let (dispatch, guard) = build(config, writer)?;
    if let Some(p) = &guard.tracer_provider {
        opentelemetry::global::set_tracer_provider(p.clone());
    }
    dispatch.try_init().map_err(|_| TelemetryError::AlreadySet)?;
    Ok(guard)
}

/// [`init_stderr`] plus `observer`, a layer that sees every span and event its own filter
/// lets through whatever the log filter keeps (the log filter applies to the logs only).
/// `vsigner bench e2e --trace` times each stage of an operation this way.
pub fn init_stderr_observed(
    default_filter: &str,
    observer: Box<dyn Layer<Registry> + Send + Sync>,
) -> Result<(), TelemetryError> {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| default_filter.to_owned());
    let logs = EnvFilter::try_new(&directives).map_err(|e| TelemetryError::Filter(e.to_string()))?;
    Registry::default()
        .with(observer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::io::stderr)
                .with_filter(logs),
        )
        .try_init()
        .map_err(|_| TelemetryError::AlreadySet)
}

/// Sets up text logs on stderr only, filtered by `RUST_LOG` or else `default_filter`, for
/// commands whose stdout is their output (`vsigner demo`, `vsigner bench e2e`). No spans are
/// exported.
pub fn init_stderr(default_filter: &str) -> Result<TelemetryGuard, TelemetryError> {
    let config = TelemetryConfig {
        log_format: LogFormat::Text,
        trace_span_exporter: TraceSpanExporter::None,
        otlp_traces_endpoint: None,
        otlp_logs_endpoint: None,
        filter: Some(
            std::env::var("RUST_LOG")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| default_filter.to_owned()),
        ),
    };
    init_on(&config, std::io::stderr)
}
