//! A hostile coordinator for attack tests: an HTTP proxy in front of the real coordinator
//! that forwards every request and lets a test rewrite what the coordinator answers (a
//! committee with swapped keys, a different device list for some devices, an operation
//! listed again…). Each daemon can be given its own proxy, so that the coordinator tells
//! different devices different things. The coordinator behind it stays real: only what
//! reaches the devices is a lie.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// Rewrites one GraphQL answer: given the request (`{"query", "variables"}`) and the
/// coordinator's answer, changes the answer in place.
pub(crate) type Lie = Arc<dyn Fn(&Value, &mut Value) + Send + Sync>;

/// Rewrites one GraphQL request (`{"query", "variables"}`) before the coordinator sees it.
pub(crate) type Twist = Arc<dyn Fn(&mut Value) + Send + Sync>;

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    lie: Arc<Mutex<Option<Lie>>>,
    twist: Arc<Mutex<Option<Twist>>>,
}

/// A lying coordinator at `url`, in front of the real one.
pub(crate) struct HostileCoordinator {
    pub(crate) url: String,
    lie: Arc<Mutex<Option<Lie>>>,
    twist: Arc<Mutex<Option<Twist>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HostileCoordinator {
    /// Starts a proxy to `upstream` (the real coordinator's base URL) that tells the truth
    /// until [`Self::lie`] is called.
    pub(crate) async fn start(upstream: &str) -> HostileCoordinator {
        let lie: Arc<Mutex<Option<Lie>>> = Arc::default();
        let twist: Arc<Mutex<Option<Twist>>> = Arc::default();
        let state = Proxy {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: super::http_client(),
            lie: lie.clone(),
            twist: twist.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        HostileCoordinator {
            url,
            lie,
            twist,
            task,
        }
    }

    /// From now on, every GraphQL answer goes through `lie`.
    pub(crate) fn lie(&self, lie: impl Fn(&Value, &mut Value) + Send + Sync + 'static) {
        *self.lie.lock().unwrap() = Some(Arc::new(lie));
    }

    /// From now on, every GraphQL request goes through `twist` before the coordinator sees
    /// it (and the answer through the lie, if any).
    pub(crate) fn twist(&self, twist: impl Fn(&mut Value) + Send + Sync + 'static) {
        *self.twist.lock().unwrap() = Some(Arc::new(twist));
    }

    /// Tells the truth again.
    pub(crate) fn honest(&self) {
        *self.lie.lock().unwrap() = None;
        *self.twist.lock().unwrap() = None;
    }
}

impl Drop for HostileCoordinator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Applies `f` to every object of `value` (depth first).
pub(crate) fn each_object(value: &mut Value, f: &mut dyn FnMut(&mut serde_json::Map<String, Value>)) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| each_object(v, f)),
        Value::Object(map) => {
            map.values_mut().for_each(|v| each_object(v, f));
            f(map);
        }
        _ => {}
    }
}

/// Replaces every occurrence of `from` by `to` in the strings of `value` (hex keys and
/// records included).
pub(crate) fn replace_in_strings(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::String(s) if s.contains(from) => *s = s.replace(from, to),
        Value::Array(items) => items.iter_mut().for_each(|v| replace_in_strings(v, from, to)),
        Value::Object(map) => map.values_mut().for_each(|v| replace_in_strings(v, from, to)),
        _ => {}
    }
}

async fn forward(
    State(proxy): State<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let twist = proxy.twist.lock().unwrap().clone();
    let body = match (twist, uri.path() == "/graphql") {
        (Some(twist), true) => match serde_json::from_slice::<Value>(&body) {
            Ok(mut asked) => {
                twist(&mut asked);
                Bytes::from(serde_json::to_vec(&asked).unwrap())
            }
            Err(_) => body,
        },
        _ => body,
    };
    let mut request = proxy.http.request(method, format!("{}{path}", proxy.upstream));
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let answer = match request.body(body.clone()).send().await {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = answer.status();
    let content_type = answer.headers().get("content-type").cloned();
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut bytes = bytes.to_vec();
    if uri.path() == "/graphql" {
        if let Ok(asked) = serde_json::from_slice::<Value>(&body) {
            let lie = proxy.lie.lock().unwrap().clone();
            if let (Some(lie), Ok(mut answered)) = (lie, serde_json::from_slice::<Value>(&bytes)) {
                lie(&asked, &mut answered);
                bytes = serde_json::to_vec(&answered).unwrap();
            }
        }
    }
    let mut response = (status, bytes).into_response();
    if let Some(ct) = content_type {
        response.headers_mut().insert("content-type", ct);
    }
    response
}
