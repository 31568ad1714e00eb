//! HTTP server (axum): `POST /graphql`, `POST /oauth/token`, `GET /healthz`, `GET /readyz`,
//! and the web console under `/console/` ([`crate::console`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use tracing::Instrument as _;

use crate::graphql::{build_schema, AuthState, CoordinatorSchema};
use crate::metrics::{self, TokenRefusal};
use crate::service::Service;

#[derive(Clone)]
struct App {
    service: Arc<Service>,
    schema: CoordinatorSchema,
    /// The console's cookie is `Secure` (`__Host-`): only that name is read.
    secure_cookies: bool,
}

/// The router for a service (console cookies for plain HTTP).
pub fn router(service: Arc<Service>) -> Router {
    router_for(service, false)
}

/// The router for a service; `secure`: the coordinator serves HTTPS (the console's session
/// cookie is then `Secure`).
pub fn router_for(service: Arc<Service>, secure: bool) -> Router {
    let schema = build_schema(Some(service.clone()));
    Router::new()
        .route("/graphql", post(graphql))
        .route("/oauth/token", post(token))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(App {
            service: service.clone(),
            schema,
            secure_cookies: secure,
        })
        .merge(crate::console::routes(crate::console::ConsoleState {
            service,
            secure,
            streams: Default::default(),
            registrations: Default::default(),
        }))
}

/// `GET /readyz`: 200 `ready` when the database answers and the broker (if configured) is
/// connected; 503 with the reasons, one per line, otherwise.
async fn readyz(State(app): State<App>) -> Response {
    let problems = app.service.not_ready().await;
    if problems.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", problems.join("\n")),
        )
            .into_response()
    }
}

async fn graphql(
    State(app): State<App>,
    headers: HeaderMap,
    Json(req): Json<async_graphql::Request>,
) -> Response {
    let span = tracing::info_span!(
        "graphql",
        operation = req.operation_name.as_deref().unwrap_or("-")
    );
    graphql_request(app, headers, req).instrument(span).await
}

async fn graphql_request(app: App, headers: HeaderMap, req: async_graphql::Request) -> Response {
    let console = match crate::console::session_token(&headers, app.secure_cookies) {
        Some(token) if headers.get(header::AUTHORIZATION).is_none() => Some(
            console_principal(&app, &token, &headers, &req)
                .await
                .map(|p| AuthState(Ok(p))),
        ),
        _ => None,
    };
    let auth = match console {
        Some(Ok(auth)) => auth,
        // Refused before it runs: the session, its CSRF token or the role.
        Some(Err(e)) => {
            let mut err = async_graphql::ServerError::new(e.message(), None);
            err.extensions = Some({
                let mut ext = async_graphql::ErrorExtensionValues::default();
                ext.set("code", e.code().as_str());
                ext
            });
            return (
                [(header::CACHE_CONTROL, "no-store")],
                Json(async_graphql::Response::from_errors(vec![err])),
            )
                .into_response();
        }
        None => bearer(&app, &headers).await,
    };
    let mut resp = app.schema.execute(req.data(auth)).await;
    // Parse/validation/limit errors from async-graphql carry no code: give them one.
    for e in &mut resp.errors {
        let ext = e.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", "BAD_REQUEST");
        }
    }
    // Answers may carry a new client secret or console password.
    ([(header::CACHE_CONTROL, "no-store")], Json(resp)).into_response()
}

/// A console session's principal, once its CSRF token and its role allow the request.
async fn console_principal(
    app: &App,
    token: &str,
    headers: &HeaderMap,
    req: &async_graphql::Request,
) -> Result<crate::domain::Principal, crate::Error> {
    let csrf = crate::console::csrf_header(headers)
        .ok_or_else(|| crate::Error::new(crate::ErrorCode::Forbidden, "missing X-CSRF-Token"))?;
    let (principal, role, _) = app.service.console_session(token, Some(csrf)).await?;
    role.permits(&req.query, req.operation_name.as_deref())?;
    Ok(principal)
}

async fn bearer(app: &App, headers: &HeaderMap) -> AuthState {
    match headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        Some(v) => match v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            Some(token) => AuthState(app.service.authenticate(token.trim()).await),
            None => AuthState(Err(crate::Error::new(
                crate::ErrorCode::Unauthenticated,
                "Authorization must be `Bearer <token>`",
            ))),
        },
        None => AuthState(Err(crate::Error::new(
            crate::ErrorCode::Unauthenticated,
            "missing bearer token; get one from POST /oauth/token",
        ))),
    }
}

/// OAuth2 token request (form). No `Debug`: it carries the client secret.
#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn token(State(app): State<App>, headers: HeaderMap, Form(form): Form<TokenForm>) -> Response {
    if form.grant_type.as_deref() != Some("client_credentials") {
        metrics::token_refused(TokenRefusal::UnsupportedGrantType);
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        );
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())));
    let (id, secret) = match (basic, form.client_id, form.client_secret) {
        (Some(pair), _, _) => pair,
        (None, Some(id), Some(secret)) => (id, secret),
        _ => {
            metrics::token_refused(TokenRefusal::InvalidClient);
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "give client_id and client_secret (form or HTTP Basic)",
            );
        }
    };
    match app.service.issue_token(&id, &secret).await {
        Ok((token, ttl)) => {
            let body = serde_json::json!({"access_token": token.expose(), "token_type": "Bearer", "expires_in": ttl});
            ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
        }
        Err(e) if e.code() == crate::ErrorCode::Unauthenticated => {
            metrics::token_refused(TokenRefusal::InvalidClient);
            oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", e.message())
        }
        Err(e) if e.code() == crate::ErrorCode::TooManyRequests => {
            metrics::token_refused(TokenRefusal::TooManyRequests);
            let mut resp = oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                e.message(),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            resp
        }
        Err(e) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.message()),
    }
}

/// A running coordinator (HTTP server + expiry sweeper).
pub struct RunningCoordinator {
    addr: SocketAddr,
    service: Arc<Service>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    sweeper: tokio::task::JoinHandle<()>,
}

impl RunningCoordinator {
    /// Serves `service` on `listener` (over TLS when `tls` is given), sweeping expired
    /// operations every `sweep_every`.
    pub fn spawn(
        service: Arc<Service>,
        listener: tokio::net::TcpListener,
        sweep_every: Duration,
        tls: Option<vsigner_https::ServerTls>,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        vsigner_https::warn_if_plain(
            addr,
            tls.as_ref(),
            "the coordinator",
            "give --tls-cert and --tls-key",
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // Behind a TLS proxy the browser speaks HTTPS: off loopback the session cookie is
        // always Secure (a plain-HTTP console off loopback then cannot sign in, as it should).
        let app = router_for(service.clone(), tls.is_some() || !addr.ip().is_loopback());
        let server = tokio::spawn(vsigner_https::serve(listener, app, tls, async move {
            let _ = rx.await;
        }));
        let svc = service.clone();
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(sweep_every);
            loop {
                tick.tick().await;
                if let Err(e) = svc.sweep_expired(None).await {
                    tracing::warn!(error = %e, "expiry sweep failed");
                }
            }
        });
        Ok(Self {
            addr,
            service,
            shutdown: Some(tx),
            server,
            sweeper,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service (tests use its clock).
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Waits until the server stops (it stops only on error or [`Self::shutdown`]).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.server).await??;
        Ok(())
    }

    /// Stops serving and closes the database pool.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.sweeper.abort();
        (&mut self.server).await??;
        self.service.store().close().await;
        Ok(())
    }
}
