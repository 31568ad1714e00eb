//! An OTLP/HTTP traces receiver (axum + `opentelemetry-proto` messages) in the test process.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

pub(crate) type Spans = Arc<Mutex<Vec<String>>>;

async fn traces(State(spans): State<Spans>, body: Bytes) -> &'static str {
    let req = ExportTraceServiceRequest::decode(body).expect("a protobuf ExportTraceServiceRequest");
    let mut spans = spans.lock().unwrap();
    for rs in req.resource_spans {
        for ss in rs.scope_spans {
            spans.extend(ss.spans.into_iter().map(|s| s.name));
        }
    }
    ""
}

/// Starts the receiver; spans go to `<addr>/v1/traces`.
pub(crate) async fn receiver() -> (SocketAddr, Spans) {
    let spans = Spans::default();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/logs", post(|| async { "" }))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, spans)
}

/// Names of the spans received so far.
pub(crate) fn span_names(spans: &Spans) -> Vec<String> {
    spans.lock().unwrap().clone()
}
