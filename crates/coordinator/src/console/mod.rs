//! The web console, served by the coordinator under `/console/`: the page and its script
//! (embedded in the binary: a fresh clone serves it with no build step) and the session
//! endpoints.
//!
//! - `POST /console/session` `{"organisationId", "name", "password"}`: signs in; sets the
//!   session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` and the `__Host-` prefix when the
//!   coordinator serves HTTPS) and answers `{"user", "csrfToken"}`.
//! - `GET /console/session`: who is signed in, and the CSRF token again (a reloaded page).
//! - `DELETE /console/session`: signs out (CSRF token required).
//! - `POST /console/password` `{"current", "new"}`: changes one's own password (CSRF token
//!   required); the person's other sessions end.
//! - `GET /console/events`: server-sent events, one `operation` event
//!   (`{"id", "state"}`) per committed change of an operation of the user's organisation;
//!   only a hint to read it again. The stream ends with the session.
//! - `POST /graphql` with the cookie and `X-CSRF-Token`: the API as the user's role allows
//!   ([`ConsoleRole::permits`](crate::domain::console::ConsoleRole::permits)).
//!
//! The CSRF token is derived from the session token (SHA-256 with a tag), so the server
//! can give it again without storing it; a page of another site can neither send the
//! `SameSite=Strict` cookie nor read the token.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorCode};
use crate::service::Service;

pub mod apart;

/// The cookie's name over HTTPS (`__Host-`: the browser keeps it to this host, path `/`,
/// secure only).
pub const SECURE_COOKIE: &str = "__Host-vsigner-session";
/// The cookie's name over plain HTTP (loopback development and the demo).
pub const PLAIN_COOKIE: &str = "vsigner-session";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const ETH_JS: &str = include_str!("assets/eth.js");
const VERIFY_JS: &str = include_str!("assets/verify.js");
const PASSKEYS_JS: &str = include_str!("assets/passkeys.js");
const AUDIT_JS: &str = include_str!("assets/audit.js");

macro_rules! vendored {
    ($path:literal) => {
        ($path, include_str!(concat!("assets/vendor/", $path)))
    };
}

/// The audited noble libraries the page checks signatures with (`@noble/curves` and
/// `@noble/hashes` 2.4.0, MIT), byte for byte as npm publishes them: only the modules the
/// page's imports reach. `assets/vendor/README.md` says how to refresh them; a test
/// compares them with the published packages.
pub const VENDORED: &[(&str, &str)] = &[
    vendored!("noble-curves/abstract/curve.js"),
    vendored!("noble-curves/abstract/der.js"),
    vendored!("noble-curves/abstract/edwards.js"),
    vendored!("noble-curves/abstract/fft.js"),
    vendored!("noble-curves/abstract/frost.js"),
    vendored!("noble-curves/abstract/hash-to-curve.js"),
    vendored!("noble-curves/abstract/modular.js"),
    vendored!("noble-curves/abstract/montgomery.js"),
    vendored!("noble-curves/abstract/oprf.js"),
    vendored!("noble-curves/abstract/weierstrass.js"),
    vendored!("noble-curves/ed25519.js"),
    vendored!("noble-curves/nist.js"),
    vendored!("noble-curves/secp256k1.js"),
    vendored!("noble-curves/utils.js"),
    vendored!("noble-hashes/_md.js"),
    vendored!("noble-hashes/_u64.js"),
    vendored!("noble-hashes/hmac.js"),
    vendored!("noble-hashes/sha2.js"),
    vendored!("noble-hashes/sha3.js"),
    vendored!("noble-hashes/utils.js"),
];

/// The page's one inline script: the import map that resolves `@noble/hashes/` (a bare
/// name inside `@noble/curves`) to the vendored copy (empty if index.html lost it; a test
/// guards that).
fn import_map() -> &'static str {
    INDEX_HTML
        .split_once(IMPORT_MAP_TAG)
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map(|(map, _)| map)
        .unwrap_or_default()
}

const IMPORT_MAP_TAG: &str = "<script type=\"importmap\">";

/// The console's Content-Security-Policy: only its own files run, and of inline scripts
/// only the import map, by its hash.
fn content_security_policy() -> &'static HeaderValue {
    static CSP: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(import_map()));
        HeaderValue::from_str(&format!(
            "default-src 'self'; script-src 'self' 'sha256-{hash}'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        ))
        .unwrap_or(HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ))
    })
}

/// The CSRF token of a session token.
pub fn csrf_of(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"vsigner console csrf\0");
    h.update(token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
}

/// The session token in a request's cookies, if any. With `secure` only the `__Host-`
/// cookie counts (a plain one could be planted by a sibling domain or over http); a
/// request with more than one session cookie has none (one of them was planted).
pub fn session_token(headers: &HeaderMap, secure: bool) -> Option<String> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(|(k, _)| *k == SECURE_COOKIE || *k == PLAIN_COOKIE)
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()));
    let (name, value) = found.next()?;
    if found.next().is_some() || (secure && name != SECURE_COOKIE) {
        return None;
    }
    Some(value)
}

/// The CSRF header's value, if any.
pub fn csrf_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok())
}

fn cookie(secure: bool, value: &str, max_age_s: i64) -> HeaderValue {
    let text = if secure {
        format!("{SECURE_COOKIE}={value}; Path=/; Max-Age={max_age_s}; HttpOnly; Secure; SameSite=Strict")
    } else {
        format!("{PLAIN_COOKIE}={value}; Path=/; Max-Age={max_age_s}; HttpOnly; SameSite=Strict")
    };
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
}

/// What the console's routes need.
#[derive(Clone)]
pub struct ConsoleState {
    /// The service.
    pub service: std::sync::Arc<Service>,
    /// Whether the cookie is `Secure` (the coordinator serves HTTPS, or listens off
    /// loopback, where a proxy speaks HTTPS for it).
    pub secure: bool,
    /// Open event streams, in all and per session.
    pub streams: std::sync::Arc<Streams>,
    /// Passkey registrations under way, one per person.
    pub registrations: std::sync::Arc<Registrations>,
}

/// A registration under way is forgotten after this long.
pub const REGISTRATION_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// Most registrations under way at once (one per session).
pub const MAX_REGISTRATIONS: usize = 1024;

/// Passkey registrations under way: the webauthn-rs-core state of each person's one
/// ceremony (keyed by user id), with the origin it was started for. In memory: a registration finishes on the
/// process that began it (a restart means starting again).
#[derive(Default)]
pub struct Registrations {
    open: std::sync::Mutex<
        std::collections::HashMap<
            String,
            (
                webauthn_rs_core::proto::RegistrationState,
                url::Url,
                std::time::Instant,
            ),
        >,
    >,
}

/// Most event streams open at once, in all (each holds a connection).
pub const MAX_STREAMS: usize = 256;
/// Most event streams one session holds (a few tabs).
pub const MAX_STREAMS_PER_SESSION: usize = 4;
/// How often an open stream checks that its session still stands (sign-out, revocation).
pub const STREAM_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// The open event streams, counted per session token hash.
#[derive(Default)]
pub struct Streams {
    open: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// One open stream; closes its count when dropped.
struct StreamSlot {
    streams: std::sync::Arc<Streams>,
    session: String,
}

impl Streams {
    fn open(self: &std::sync::Arc<Self>, session: String) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = open.values().sum();
        let mine = open.get(&session).copied().unwrap_or(0);
        if total >= MAX_STREAMS || mine >= MAX_STREAMS_PER_SESSION {
            return None;
        }
        *open.entry(session.clone()).or_insert(0) += 1;
        Some(StreamSlot {
            streams: self.clone(),
            session,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.session) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.session);
            }
        }
    }
}

/// The console's routes: its page and the session endpoints.
pub fn routes(state: ConsoleState) -> axum::Router {
    use axum::routing::get;
    page_routes().merge(
        axum::Router::new()
            .route(
                "/console/session",
                get(current_session).post(sign_in).delete(sign_out),
            )
            .route("/console/events", get(events))
            .route("/console/password", axum::routing::post(change_password))
            .route("/console/passkeys/options", axum::routing::post(passkey_options))
            .route("/console/passkeys", axum::routing::post(passkey_register))
            .with_state(state),
    )
}

/// The page's files, embedded in this binary (the coordinator's console, and the one
/// served apart, [`apart`]).
fn page_routes() -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        .route(
            "/console/",
            get(|| async { page(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/console/app.js",
            get(|| async { page(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/app.css",
            get(|| async { page(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/console/eth.js",
            get(|| async { page(ETH_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/verify.js",
            get(|| async { page(VERIFY_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/passkeys.js",
            get(|| async { page(PASSKEYS_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/audit.js",
            get(|| async { page(AUDIT_JS, "text/javascript; charset=utf-8") }),
        )
        .route("/console/vendor/{*path}", get(vendored))
}

/// One vendored module, by its path under `/console/vendor/`.
async fn vendored(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    match VENDORED.iter().find(|(p, _)| *p == path) {
        Some((_, body)) => page(body, "text/javascript; charset=utf-8"),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::CONTENT_SECURITY_POLICY, content_security_policy().clone()),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
        body,
    )
        .into_response()
}

fn error(e: &Error) -> Response {
    let status = match e.code() {
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::InvalidInput => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({"error": e.code().as_str(), "message": e.message()})),
    )
        .into_response()
}

/// Sign-in request. No `Debug`: it carries the password.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignIn {
    organisation_id: String,
    name: String,
    password: String,
}

fn user_json(user: &crate::domain::console::ConsoleUser) -> serde_json::Value {
    serde_json::json!({
        "id": user.id,
        "name": user.name,
        "role": user.role.as_str(),
        "organisationId": user.org_id,
    })
}

async fn sign_in(State(state): State<ConsoleState>, Json(req): Json<SignIn>) -> Response {
    match state
        .service
        .sign_in(req.organisation_id.trim(), req.name.trim(), &req.password)
        .await
    {
        Ok(session) => {
            let csrf = csrf_of(session.token.expose());
            let ttl = crate::service::console::SESSION_TTL_MS / 1000;
            (
                [
                    (
                        header::SET_COOKIE,
                        cookie(state.secure, session.token.expose(), ttl),
                    ),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                Json(serde_json::json!({"user": user_json(&session.user), "csrfToken": csrf})),
            )
                .into_response()
        }
        Err(e) => error(&e),
    }
}

/// A password change. No `Debug`: it carries passwords.
#[derive(Deserialize)]
struct PasswordChange {
    current: String,
    new: String,
}

/// `POST /console/password` `{"current", "new"}`: the signed-in person changes their own
/// password (CSRF token required); their other sessions end.
async fn change_password(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Json(req): Json<PasswordChange>,
) -> Response {
    let changed = async {
        let session = changing_session(&state, &headers).await?;
        let token = session_token(&headers, state.secure)
            .ok_or_else(|| Error::new(ErrorCode::Unauthenticated, "not signed in"))?;
        state
            .service
            .change_console_password(&session.user, &token, &req.current, &req.new)
            .await
    };
    match changed.await {
        Ok(()) => (StatusCode::NO_CONTENT, [(header::CACHE_CONTROL, "no-store")]).into_response(),
        Err(e) => error(&e),
    }
}

async fn current_session(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    let Some(token) = session_token(&headers, state.secure) else {
        return error(&Error::new(ErrorCode::Unauthenticated, "not signed in"));
    };
    match state.service.console_session(&token, None).await {
        Ok((_, _, session)) => (
            [(header::CACHE_CONTROL, "no-store")],
            Json(serde_json::json!({"user": user_json(&session.user), "csrfToken": csrf_of(&token)})),
        )
            .into_response(),
        Err(e) => error(&e),
    }
}

async fn sign_out(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    let Some(token) = session_token(&headers, state.secure) else {
        return error(&Error::new(ErrorCode::Unauthenticated, "not signed in"));
    };
    let Some(csrf) = csrf_header(&headers) else {
        return error(&Error::new(ErrorCode::Forbidden, "missing X-CSRF-Token"));
    };
    if let Err(e) = state.service.console_session(&token, Some(csrf)).await {
        return error(&e);
    }
    match state.service.sign_out(&token).await {
        Ok(()) => (
            StatusCode::NO_CONTENT,
            [(header::SET_COOKIE, cookie(state.secure, "", 0))],
        )
            .into_response(),
        Err(e) => error(&e),
    }
}

async fn events(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt as _;
    use tokio::sync::broadcast::error::RecvError;

    let Some(token) = session_token(&headers, state.secure) else {
        return error(&Error::new(ErrorCode::Unauthenticated, "not signed in"));
    };
    // A read: the SameSite=Strict cookie is enough (an EventSource sends no header).
    let (principal, _, session) = match state.service.console_session(&token, None).await {
        Ok(s) => s,
        Err(e) => return error(&e),
    };
    let Some(slot) = state.streams.open(crate::auth::token_hash(&token)) else {
        return error(&Error::new(
            ErrorCode::TooManyRequests,
            "too many live views open; close a tab",
        ));
    };
    let org = principal.org_id;
    let left = session.expires_at - state.service.clock().now();
    // The stream ends with the session: at its expiry, or when a check finds it gone
    // (signed out, user revoked).
    let service = state.service.clone();
    let ends = async move {
        let expiry = tokio::time::sleep(std::time::Duration::from_millis(u64::try_from(left).unwrap_or(0)));
        let gone = async {
            loop {
                tokio::time::sleep(STREAM_RECHECK).await;
                if service.console_session(&token, None).await.is_err() {
                    break;
                }
            }
        };
        tokio::select! {
            () = expiry => {}
            () = gone => {}
        }
        drop(slot);
    };
    let rx = state.service.operation_events();
    let stream = futures::stream::unfold(rx, move |mut rx| {
        let org = org.clone();
        async move {
            loop {
                let event = match rx.recv().await {
                    Ok(ev) if ev.org_id == org => Event::default().event("operation").data(
                        serde_json::json!({"id": ev.operation_id, "state": ev.state.as_str()}).to_string(),
                    ),
                    Ok(_) => continue,
                    // Too slow a reader missed some: it reads everything again.
                    Err(RecvError::Lagged(_)) => Event::default().event("lagged").data("{}"),
                    Err(RecvError::Closed) => return None,
                };
                return Some((Ok::<_, std::convert::Infallible>(event), rx));
            }
        }
    })
    .take_until(ends);
    (
        [(header::CACHE_CONTROL, "no-store")],
        Sse::new(stream).keep_alive(KeepAlive::default()),
    )
        .into_response()
}

/// The session of a request that changes something: the cookie and its CSRF token.
async fn changing_session(
    state: &ConsoleState,
    headers: &HeaderMap,
) -> Result<crate::domain::console::ConsoleSession, Error> {
    let token = session_token(headers, state.secure)
        .ok_or_else(|| Error::new(ErrorCode::Unauthenticated, "not signed in"))?;
    let csrf =
        csrf_header(headers).ok_or_else(|| Error::new(ErrorCode::Forbidden, "missing X-CSRF-Token"))?;
    let (_, _, session) = state.service.console_session(&token, Some(csrf)).await?;
    Ok(session)
}

/// Only people who may answer (approvers, operators, admins) register passkeys: a viewer's
/// key in a device's file would give a viewer a vote.
fn may_register(user: &crate::domain::console::ConsoleUser) -> Result<(), Error> {
    if user.role == crate::domain::console::ConsoleRole::Viewer {
        return Err(Error::new(
            ErrorCode::Forbidden,
            "a console viewer registers no passkey: only people who may answer do",
        ));
    }
    Ok(())
}

/// The page's origin (the browser's `Origin` header): the relying party a passkey is
/// registered for, as the devices will check it (`HumanApprovalOrigin`).
fn page_origin(headers: &HeaderMap) -> Result<url::Url, Error> {
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(|o| url::Url::parse(o).ok())
        .filter(|u| u.host_str().is_some())
        .ok_or_else(|| Error::invalid_input("the request has no Origin: register from the console page"))
}

fn webauthn_for(origin: &url::Url) -> webauthn_rs_core::WebauthnCore {
    webauthn_rs_core::WebauthnCore::new_unsafe_experts_only(
        "vsigner",
        origin.host_str().unwrap_or_default(),
        vec![origin.clone()],
        REGISTRATION_TTL,
        Some(false),
        Some(false),
    )
}

/// `POST /console/passkeys/options`: starts registering a passkey for the signed-in person
/// (user verification required): the options for `navigator.credentials.create`.
async fn passkey_options(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    let started = async {
        let session = changing_session(&state, &headers).await?;
        let user = &session.user;
        may_register(user)?;
        let origin = page_origin(&headers)?;
        let core = webauthn_for(&origin);
        // The person's passkeys already registered: the authenticator makes no second one.
        let mine: Vec<_> = state
            .service
            .console_passkeys_of(user)
            .await?
            .into_iter()
            .filter_map(|p| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p.credential_id)
                    .ok()
            })
            .collect();
        let builder = core
            .new_challenge_register_builder(user.id.as_str().as_bytes(), &user.name, &user.name)
            .map_err(|e| Error::invalid_input(format!("cannot start a registration: {e}")))?
            .user_verification_policy(webauthn_rs_core::proto::UserVerificationPolicy::Required)
            .exclude_credentials(Some(mine));
        let (options, registration) = core
            .generate_challenge_register(builder)
            .map_err(|e| Error::internal("webauthn", e))?;
        // One registration under way per person, whatever their sessions.
        let mut open = state.registrations.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, (_, _, at)| at.elapsed() < REGISTRATION_TTL);
        let key = user.id.to_string();
        if open.len() >= MAX_REGISTRATIONS && !open.contains_key(&key) {
            return Err(Error::new(
                ErrorCode::TooManyRequests,
                "too many registrations under way; retry shortly",
            ));
        }
        open.insert(key, (registration, origin, std::time::Instant::now()));
        Ok::<_, Error>(options)
    };
    match started.await {
        Ok(options) => ([(header::CACHE_CONTROL, "no-store")], Json(options)).into_response(),
        Err(e) => error(&e),
    }
}

/// `POST /console/passkeys`: finishes the registration with the browser's credential
/// (`PublicKeyCredential.toJSON()`); answers with the entry of a device's passkeys file.
async fn passkey_register(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Json(credential): Json<webauthn_rs_core::proto::RegisterPublicKeyCredential>,
) -> Response {
    let finished = async {
        let session = changing_session(&state, &headers).await?;
        may_register(&session.user)?;
        let origin = page_origin(&headers)?;
        let (registration, started_for, at) = state
            .registrations
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(session.user.id.as_str())
            .ok_or_else(|| Error::invalid_input("no registration under way: start again"))?;
        if started_for != origin || at.elapsed() >= REGISTRATION_TTL {
            return Err(Error::invalid_input(
                "the registration expired or came from another page: start again",
            ));
        }
        let credential = webauthn_for(&origin)
            .register_credential(&credential, &registration, None)
            .map_err(|e| Error::invalid_input(format!("the passkey was not registered: {e}")))?;
        let credential_id =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(credential.cred_id.as_slice());
        // One public key under two credential ids would count one person twice on a device
        // (which refuses such a file): refused here already.
        let key = serde_json::to_string(&credential.cred).unwrap_or_default();
        let known = state.service.console_passkeys_of(&session.user).await?;
        if known.iter().any(|p| {
            serde_json::from_str::<serde_json::Value>(&p.passkey)
                .ok()
                .and_then(|v| serde_json::to_string(&v["cred"]["cred"]).ok())
                .is_some_and(|k| k == key)
        }) {
            return Err(Error::new(
                ErrorCode::DuplicateKey,
                "this passkey's key is already registered",
            ));
        }
        let passkey = serde_json::json!({ "cred": credential }).to_string();
        state
            .service
            .add_console_passkey(&session.user, credential_id, passkey)
            .await
    };
    match finished.await {
        Ok(registered) => (
            [(header::CACHE_CONTROL, "no-store")],
            Json(serde_json::json!({
                "credentialId": registered.credential_id,
                "fileEntry": registered.file_entry(),
            })),
        )
            .into_response(),
        Err(e) => error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_admits_the_pages_import_map_and_nothing_else_inline() {
        let map = import_map();
        assert!(
            map.contains("@noble/hashes/"),
            "index.html has its import map: {map:?}"
        );
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(map));
        let csp = content_security_policy().to_str().unwrap();
        assert!(
            csp.contains(&format!("script-src 'self' 'sha256-{hash}'")),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
    }
}
