//! A client of the coordinator's API (`APIBaseURL`): OAuth2 client credentials at
//! `/oauth/token`, GraphQL at `/graphql` (schema: `crates/coordinator/schema.graphql`).
//!
//! The access token is fetched on first use, kept until shortly before it expires, and
//! fetched again once when the coordinator answers `UNAUTHENTICATED`. Errors carry the
//! GraphQL `extensions.code` so callers can tell "already done" from "failed". The client
//! secret and the token never appear in an error or a log.
//!
//! # Layout
//! - this file: the client, its token, GraphQL execution, errors.
//! - [`calls`]: the queries and mutations a device (and the operator CLI) makes.
//! - [`types`]: what the coordinator answers (devices, vaults, operations), as read here.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use url::Url;
use zeroize::Zeroizing;

pub mod calls;
pub mod types;

pub use calls::{ActingDevice, LoggedStatement};
pub use types::*;

/// Time allowed for one HTTP request to the coordinator.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A token is renewed this long before the coordinator said it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(30);

/// A failed call to the coordinator.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The coordinator could not be reached or answered garbage.
    #[error("coordinator unreachable: {0}")]
    Unreachable(String),
    /// The client credentials were refused.
    #[error("the coordinator refused the client credentials (AuthClientId/AuthClientSecret): {0}")]
    Credentials(String),
    /// The coordinator refused the request with a stable code.
    #[error("coordinator refused ({code}): {message}")]
    Refused {
        /// `extensions.code`, e.g. `INVALID_STATE`.
        code: String,
        /// The coordinator's message.
        message: String,
    },
}

impl ApiError {
    /// The coordinator's error code, if it refused the request.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether retrying later may help (network trouble, overload).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Unreachable(_) => true,
            ApiError::Refused { code, .. } => matches!(code.as_str(), "TOO_MANY_REQUESTS" | "INTERNAL"),
            ApiError::Credentials(_) => false,
        }
    }
}

struct Token {
    value: Zeroizing<String>,
    renew_at: Instant,
}

/// A coordinator client authenticated as one API client.
pub struct CoordinatorClient {
    shown: String,
    http: reqwest::Client,
    graphql: Url,
    token_url: Url,
    client_id: String,
    client_secret: Zeroizing<String>,
    token: Mutex<Option<Token>>,
}

impl std::fmt::Debug for CoordinatorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorClient")
            .field("graphql", &crate::config::shown_url(&self.graphql))
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl CoordinatorClient {
    /// A client of the coordinator at `base` (e.g. `http://127.0.0.1:8080`) that trusts the
    /// platform's CA roots for HTTPS.
    pub fn new(base: &Url, client_id: &str, client_secret: Zeroizing<String>) -> Result<Self, ApiError> {
        Self::trusting(base, client_id, client_secret, &[])
    }

    /// [`Self::new`], trusting only `ca` for HTTPS when it is not empty (a private CA's
    /// certificates, from [`vsigner_https::ca_certificates`] or the `APICACert` PEM). Plain
    /// HTTP off loopback is warned about by the caller (the daemon's configuration warnings,
    /// the CLI).
    pub fn trusting(
        base: &Url,
        client_id: &str,
        client_secret: Zeroizing<String>,
        ca: &[reqwest::Certificate],
    ) -> Result<Self, ApiError> {
        let join = |path: &str| {
            let mut u = base.clone();
            let prefix = u.path().trim_end_matches('/').to_owned();
            u.set_path(&format!("{prefix}{path}"));
            u.set_query(None);
            u
        };
        // TLS is rustls with ring (the workspace's one provider); one installed earlier stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if !ca.is_empty() {
            builder = builder.tls_certs_only(ca.iter().cloned());
        }
        let http = builder
            .build()
            .map_err(|e| ApiError::Unreachable(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            shown: crate::config::shown_url(base),
            http,
            graphql: join("/graphql"),
            token_url: join("/oauth/token"),
            client_id: client_id.to_owned(),
            client_secret,
            token: Mutex::new(None),
        })
    }

    /// GraphQL at `url` (`GraphQLService`) instead of the base URL's `/graphql`.
    pub fn graphql_at(mut self, url: Option<Url>) -> Self {
        if let Some(url) = url {
            self.graphql = url;
        }
        self
    }

    fn unreachable(&self, e: reqwest::Error) -> ApiError {
        // The whole cause chain ("… tcp connect error: Connection refused"), without the URL
        // (ours carry no credentials, but a query could).
        let e = e.without_url();
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        ApiError::Unreachable(format!("{} ({text})", self.shown))
    }

    async fn token(&self, force: bool) -> Result<Zeroizing<String>, ApiError> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            if !force && Instant::now() < t.renew_at {
                return Ok(t.value.clone());
            }
        }
        #[derive(Deserialize)]
        struct TokenReply {
            access_token: String,
            expires_in: u64,
        }
        let resp = self
            .http
            .post(self.token_url.clone())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.as_str()),
            ])
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::BAD_REQUEST {
            let reason = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error_description"].as_str().map(str::to_owned))
                .unwrap_or_else(|| status.to_string());
            return Err(ApiError::Credentials(reason));
        }
        if !status.is_success() {
            return Err(ApiError::Unreachable(format!("/oauth/token answered {status}")));
        }
        let body = Zeroizing::new(body.to_vec());
        let reply: TokenReply = serde_json::from_slice(&body)
            .map_err(|_| ApiError::Unreachable("/oauth/token reply is not the expected JSON".into()))?;
        let ttl = Duration::from_secs(reply.expires_in).saturating_sub(TOKEN_MARGIN);
        let value = Zeroizing::new(reply.access_token);
        *guard = Some(Token {
            value: value.clone(),
            renew_at: Instant::now() + ttl,
        });
        Ok(value)
    }

    /// Runs a GraphQL document and returns its `data`.
    pub async fn execute(&self, query: &str, variables: Value) -> Result<Value, ApiError> {
        let span = tracing::info_span!("coordinator_call", call = call_name(query));
        tracing::Instrument::instrument(self.execute_once(query, variables), span).await
    }

    async fn execute_once(&self, query: &str, variables: Value) -> Result<Value, ApiError> {
        let body = json!({"query": query, "variables": variables});
        let mut renewed = false;
        loop {
            let token = self.token(renewed).await?;
            let resp = self
                .http
                .post(self.graphql.clone())
                .bearer_auth(token.as_str())
                .json(&body)
                .send()
                .await
                .map_err(|e| self.unreachable(e))?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|e| self.unreachable(e))?;
            let mut reply: Value = serde_json::from_slice(&bytes).map_err(|_| {
                ApiError::Unreachable(format!("/graphql answered {status} with a body that is not JSON"))
            })?;
            if let Some(first) = reply["errors"].as_array().and_then(|e| e.first()) {
                let code = first["extensions"]["code"]
                    .as_str()
                    .unwrap_or("UNKNOWN")
                    .to_owned();
                let message = first["message"].as_str().unwrap_or_default().to_owned();
                if code == "UNAUTHENTICATED" && !renewed {
                    renewed = true;
                    continue;
                }
                return Err(ApiError::Refused { code, message });
            }
            if !status.is_success() {
                return Err(ApiError::Unreachable(format!("/graphql answered {status}")));
            }
            return Ok(reply["data"].take());
        }
    }

    /// Runs a GraphQL document and decodes `data.<field>`.
    pub async fn field<T: DeserializeOwned>(
        &self,
        query: &str,
        variables: Value,
        field: &str,
    ) -> Result<T, ApiError> {
        let mut data = self.execute(query, variables).await?;
        serde_json::from_value(data[field].take()).map_err(|e| {
            ApiError::Unreachable(format!("unexpected `{field}` in the coordinator's reply: {e}"))
        })
    }
}

/// The first field a GraphQL document asks for (`vote` of `mutation($o: ID!) { vote(…) {…} }`),
/// which names a call in traces.
fn call_name(query: &str) -> &str {
    let rest = query.split_once('{').map_or(query, |(_, r)| r).trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    &rest[..end]
}
