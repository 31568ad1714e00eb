//! Telemetry against an in-process OTLP/HTTP receiver (axum + the `opentelemetry-proto`
//! messages): spans with their names, attributes and parent/child relation, and log records.
//! Each test builds its own subscriber (`telemetry::build`) and uses it with `with_default`, so
//! no global state is shared between tests.

// Tests may unwrap (see clippy.toml); helpers outside #[test] fns too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use url::Url;
use vsigner_signer::config::{LogFormat, TraceSpanExporter};
use vsigner_signer::telemetry::{self, TelemetryConfig};

#[derive(Default)]
struct Received {
    /// (resource attributes, span)
    spans: Vec<(Vec<KeyValue>, Span)>,
    logs: Vec<(Vec<KeyValue>, LogRecord)>,
    requests: usize,
}

type Shared = Arc<Mutex<Received>>;

async fn traces(State(r): State<Shared>, body: Bytes) -> &'static str {
    let req = ExportTraceServiceRequest::decode(body).expect("a protobuf ExportTraceServiceRequest");
    let mut r = r.lock().unwrap();
    r.requests += 1;
    for rs in req.resource_spans {
        let attrs = rs.resource.map(|res| res.attributes).unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                r.spans.push((attrs.clone(), span));
            }
        }
    }
    ""
}

async fn logs(State(r): State<Shared>, body: Bytes) -> &'static str {
    let req = ExportLogsServiceRequest::decode(body).expect("a protobuf ExportLogsServiceRequest");
    let mut r = r.lock().unwrap();
    r.requests += 1;
    for rl in req.resource_logs {
        let attrs = rl.resource.map(|res| res.attributes).unwrap_or_default();
        for sl in rl.scope_logs {
            for rec in sl.log_records {
                r.logs.push((attrs.clone(), rec));
            }
        }
    }
    ""
}

async fn receiver() -> (SocketAddr, Shared) {
    let shared = Shared::default();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/logs", post(logs))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, shared)
}

/// A writer capturing the log stream.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string(s: &str) -> AnyValue {
    AnyValue::StringValue(s.to_owned())
}

fn config(exporter: TraceSpanExporter, addr: Option<SocketAddr>, logs: bool) -> TelemetryConfig {
    TelemetryConfig {
        log_format: LogFormat::Json,
        trace_span_exporter: exporter,
        otlp_traces_endpoint: addr.map(|a| Url::parse(&format!("http://{a}/v1/traces")).unwrap()),
        otlp_logs_endpoint: addr
            .filter(|_| logs)
            .map(|a| Url::parse(&format!("http://{a}/v1/logs")).unwrap()),
        filter: Some("info".into()),
    }
}

/// Emits a root span with a child and an event inside the child.
fn emit() {
    let root = tracing::info_span!("sign_request", operation_id = "op-1", vault_id = "vault-9");
    let _root = root.enter();
    let child = tracing::info_span!("mpc_round", round = 2i64, protocol = "ecdsa_sign");
    let _child = child.enter();
    tracing::info!(device = "dev-1", "round finished");
    // Below the filter: must not arrive anywhere.
    tracing::debug!("debug detail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_logs_reach_the_otlp_receiver() {
    let (addr, received) = receiver().await;
    let capture = Capture::default();
    let (dispatch, guard) = telemetry::build(
        &config(TraceSpanExporter::OtlpNoTls, Some(addr), true),
        capture.clone(),
    )
    .unwrap();
    tracing::dispatcher::with_default(&dispatch, emit);
    guard.shutdown_async().await.unwrap();

    let r = received.lock().unwrap();
    assert!(
        r.requests >= 2,
        "expected trace and log requests, got {}",
        r.requests
    );
    let find = |name: &str| {
        r.spans.iter().find(|(_, s)| s.name == name).unwrap_or_else(|| {
            panic!(
                "no span {name}: {:?}",
                r.spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
            )
        })
    };
    let (resource, root) = find("sign_request");
    let (_, child) = find("mpc_round");
    assert_eq!(r.spans.len(), 2, "exactly the two spans");
    assert_eq!(attr(resource, "service.name"), Some(&string("vsigner")));
    assert_eq!(attr(&root.attributes, "operation_id"), Some(&string("op-1")));
    assert_eq!(attr(&root.attributes, "vault_id"), Some(&string("vault-9")));
    assert_eq!(attr(&child.attributes, "round"), Some(&AnyValue::IntValue(2)));
    assert_eq!(attr(&child.attributes, "protocol"), Some(&string("ecdsa_sign")));
    assert_eq!(child.trace_id, root.trace_id, "same trace");
    assert_eq!(
        child.parent_span_id, root.span_id,
        "mpc_round is a child of sign_request"
    );
    assert!(root.parent_span_id.is_empty(), "sign_request is a root span");
    assert_eq!(root.trace_id.len(), 16);
    // The event is attached to the child span.
    assert!(
        child.events.iter().any(|e| e.name == "round finished"),
        "{:?}",
        child.events
    );

    // The log record, with its attributes, and nothing below the filter.
    assert_eq!(r.logs.len(), 1, "{:?}", r.logs);
    let (resource, rec) = &r.logs[0];
    assert_eq!(attr(resource, "service.name"), Some(&string("vsigner")));
    assert_eq!(
        rec.body.as_ref().and_then(|b| b.value.as_ref()),
        Some(&string("round finished"))
    );
    assert_eq!(attr(&rec.attributes, "device"), Some(&string("dev-1")));
    assert_eq!(rec.severity_text, "INFO");

    // The same line went to the log stream as JSON, with its spans.
    let text = capture.text();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["fields"]["message"], "round finished");
    assert_eq!(lines[0]["fields"]["device"], "dev-1");
    assert_eq!(lines[0]["span"]["name"], "mpc_round");
    assert_eq!(lines[0]["spans"][0]["operation_id"], "op-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_export_without_the_logs_endpoint() {
    let (addr, received) = receiver().await;
    let (dispatch, guard) = telemetry::build(
        &config(TraceSpanExporter::OtlpNoTls, Some(addr), false),
        Capture::default(),
    )
    .unwrap();
    tracing::dispatcher::with_default(&dispatch, emit);
    guard.shutdown_async().await.unwrap();
    let r = received.lock().unwrap();
    assert_eq!(r.spans.len(), 2);
    assert!(r.logs.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_exporter_writes_span_lines_and_none_exports_nothing() {
    let (addr, received) = receiver().await;
    let capture = Capture::default();
    let mut cfg = config(TraceSpanExporter::Stdout, None, false);
    cfg.log_format = LogFormat::Text;
    let (dispatch, guard) = telemetry::build(&cfg, capture.clone()).unwrap();
    tracing::dispatcher::with_default(&dispatch, emit);
    guard.shutdown_async().await.unwrap();
    let text = capture.text();
    assert!(text.contains("round finished"), "{text}");
    assert!(
        text.lines().filter(|l| l.contains("close")).count() >= 2,
        "span close lines: {text}"
    );
    assert!(!text.contains("debug detail"));

    let capture = Capture::default();
    let (dispatch, guard) =
        telemetry::build(&config(TraceSpanExporter::None, None, false), capture.clone()).unwrap();
    tracing::dispatcher::with_default(&dispatch, emit);
    guard.shutdown_async().await.unwrap();
    assert!(!capture.text().contains("close"), "{}", capture.text());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = addr;
    assert_eq!(received.lock().unwrap().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_does_not_block_the_signer() {
    // A port nobody listens on: spans are dropped after the export fails, shutdown returns.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (dispatch, guard) = telemetry::build(
        &config(TraceSpanExporter::OtlpNoTls, Some(addr), true),
        Capture::default(),
    )
    .unwrap();
    tracing::dispatcher::with_default(&dispatch, emit);
    let started = std::time::Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(30), guard.shutdown_async())
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(25));
}

#[test]
fn otlp_needs_a_runtime_and_a_valid_filter() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let err = telemetry::build(
        &config(TraceSpanExporter::OtlpNoTls, Some(addr), false),
        Capture::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
    let mut cfg = config(TraceSpanExporter::None, None, false);
    cfg.filter = Some("info,[[[".into());
    let err = telemetry::build(&cfg, Capture::default()).unwrap_err();
    assert!(
        err.to_string().starts_with("RUST_LOG: not a valid filter"),
        "{err}"
    );
}
