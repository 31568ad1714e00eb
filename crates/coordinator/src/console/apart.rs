//! The console served apart from the coordinator (`vsigner console`), so that the page
//! people approve on is not the coordinator's to change.
//!
//! A passkey shows nothing of what it signs: people approve what the page shows them, and
//! the page signs. A page served by the coordinator could show one request and sign
//! another, so a device refuses a `HumanApprovalOrigin` that is the coordinator's own
//! (docs/approvals.md). Served here, by a process the organisation runs, the page's code
//! comes from this binary only; the coordinator gives it data, never code:
//!
//! - The page's files (`/console/`, its scripts, the vendored noble libraries) are this
//!   binary's own copies.
//! - The API paths the page calls (`/graphql`, `/console/session`, `/console/events`,
//!   `/console/password`, `/console/passkeys…`) are forwarded to the coordinator with the browser's cookie,
//!   CSRF token and `Origin` (the origin a passkey is registered for is this one). Their
//!   answers are data: each goes back with `Content-Security-Policy: sandbox` and
//!   `nosniff`, so that even HTML from the coordinator, opened in a tab, runs nothing on
//!   this origin.
//! - Nothing else is forwarded.
//!
//! The coordinator still decides everything it decides for its own console (sessions,
//! roles, CSRF); what a device accepts is still checked by the device.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// The largest request body forwarded (a GraphQL query or a passkey credential).
const MAX_BODY: usize = 256 * 1024;

/// Where the coordinator is, how to reach it, and who may call through this console.
#[derive(Clone)]
pub struct Upstream {
    /// The coordinator's base URL (`https://coordinator.example:8080`).
    pub base: url::Url,
    client: reqwest::Client,
    /// The page is served over HTTPS: the browser keeps the session as a `__Host-` cookie
    /// marked `Secure`.
    secure: bool,
    /// The `Host` values the page is opened at; API calls naming another host are refused
    /// (a DNS-rebinding page must not use this console to reach the coordinator).
    hosts: Vec<String>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("base", &self.base.as_str())
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

/// Whether `host` (a URL's host) is this machine.
fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

impl Upstream {
    /// The coordinator at `base`, over HTTPS trusting only `ca` when given (else the
    /// system's roots); plain HTTP only on this machine. `secure`: this console is served
    /// over HTTPS. `hosts`: the `Host` values (`name:port`) the page is opened at.
    pub fn new(
        base: url::Url,
        ca: Option<Vec<reqwest::Certificate>>,
        secure: bool,
        hosts: Vec<String>,
    ) -> crate::Result<Self> {
        let Some(host) = base.host() else {
            return Err(crate::Error::invalid_input(format!(
                "--coordinator {base}: give the coordinator's http(s)://host:port"
            )));
        };
        match base.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            "http" => {
                return Err(crate::Error::invalid_input(format!(
                    "--coordinator {base}: plain HTTP only to this machine (sessions and passwords would cross the network in clear); serve the coordinator over HTTPS"
                )))
            }
            _ => {
                return Err(crate::Error::invalid_input(format!(
                    "--coordinator {base}: give the coordinator's http(s)://host:port"
                )))
            }
        }
        if hosts.is_empty() {
            return Err(crate::Error::invalid_input(
                "the console needs the host names it is opened at",
            ));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Between reads: the event stream sends a keep-alive every 15 s.
            .read_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = ca {
            builder = builder.tls_certs_only(ca);
        }
        let client = builder
            .build()
            .map_err(|e| crate::Error::internal("console http client", e))?;
        Ok(Self {
            base,
            client,
            secure,
            hosts: hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
        })
    }

    /// The session cookie's name in the browser.
    fn browser_cookie(&self) -> &'static str {
        if self.secure {
            super::SECURE_COOKIE
        } else {
            super::PLAIN_COOKIE
        }
    }

    /// The `Cookie` header for the coordinator: the browser's session cookie alone (never
    /// the browser's other cookies), renamed as the coordinator names it; none when the
    /// browser sent two (one was planted) or only the other name.
    fn cookie_for_upstream(&self, headers: &axum::http::HeaderMap) -> Option<String> {
        let sessions: Vec<(String, String)> = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .filter(|(k, _)| *k == super::SECURE_COOKIE || *k == super::PLAIN_COOKIE)
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect();
        match sessions.as_slice() {
            [(name, value)] if name == self.browser_cookie() => {
                // The `__Host-` name: a coordinator that needs it (HTTPS, or listening off
                // loopback) takes only it, and one that does not takes either.
                Some(format!("{}={value}", super::SECURE_COOKIE))
            }
            _ => None,
        }
    }

    /// The browser's `Set-Cookie` for the coordinator's: only the session cookie, rebuilt
    /// with this console's name and attributes (no `Domain`, `Path=/`, `HttpOnly`,
    /// `SameSite=Strict`, `Secure` over HTTPS), keeping only its value and lifetime.
    fn cookie_for_browser(&self, set_cookie: &str) -> Option<HeaderValue> {
        let mut parts = set_cookie.split(';');
        let (name, value) = parts.next()?.trim().split_once('=')?;
        if name != super::SECURE_COOKIE && name != super::PLAIN_COOKIE {
            return None;
        }
        let max_age = parts
            .filter_map(|a| a.trim().split_once('='))
            .find(|(k, _)| k.eq_ignore_ascii_case("max-age"))
            .and_then(|(_, v)| v.trim().parse::<i64>().ok())?;
        let value = value.trim();
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
        {
            return None;
        }
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}",
            self.browser_cookie()
        ))
        .ok()
    }
}

/// The console's page and the forwarded API paths.
pub fn routes(upstream: Upstream) -> axum::Router {
    use axum::routing::{get, post};
    super::page_routes().merge(
        axum::Router::new()
            .route("/graphql", post(forward))
            .route("/console/session", get(forward).post(forward).delete(forward))
            .route("/console/events", get(forward))
            .route("/console/password", post(forward))
            .route("/console/passkeys/options", post(forward))
            .route("/console/passkeys", post(forward))
            .with_state(upstream),
    )
}

/// The request headers the coordinator needs from the browser (the session cookie is
/// handled apart).
const FORWARDED_REQUEST: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::ORIGIN,
    header::ACCEPT,
    HeaderName::from_static(super::CSRF_HEADER),
];

/// What the coordinator may answer the page: data, never anything a browser would run or
/// style with.
fn is_data(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "application/json" | "application/graphql-response+json" | "text/event-stream"
    )
}

fn refused(status: StatusCode, why: &'static str) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], why).into_response()
}

async fn forward(State(upstream): State<Upstream>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    if !host.is_some_and(|h| upstream.hosts.contains(&h)) {
        return refused(
            StatusCode::MISDIRECTED_REQUEST,
            "this console is not served under that host name",
        );
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return refused(StatusCode::PAYLOAD_TOO_LARGE, "request too large");
    };
    let mut url = upstream.base.clone();
    url.set_path(parts.uri.path());
    url.set_query(parts.uri.query());
    let method = match parts.method {
        Method::GET => reqwest::Method::GET,
        Method::POST => reqwest::Method::POST,
        Method::DELETE => reqwest::Method::DELETE,
        _ => return StatusCode::METHOD_NOT_ALLOWED.into_response(),
    };
    let mut outgoing = upstream.client.request(method, url).body(body);
    for name in &FORWARDED_REQUEST {
        for value in parts.headers.get_all(name) {
            outgoing = outgoing.header(name.as_str(), value.as_bytes());
        }
    }
    if let Some(cookie) = upstream.cookie_for_upstream(&parts.headers) {
        outgoing = outgoing.header(header::COOKIE.as_str(), cookie);
    }
    let answer = match outgoing.send().await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!(error = %e, "the coordinator did not answer the console");
            return refused(StatusCode::BAD_GATEWAY, "the coordinator did not answer");
        }
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = Response::builder().status(status);
    match answer
        .headers()
        .get(header::CONTENT_TYPE.as_str())
        .map(|v| v.to_str().unwrap_or_default())
    {
        Some(kind) if is_data(kind) => response = response.header(header::CONTENT_TYPE, kind),
        Some(_) => {
            tracing::warn!("the coordinator answered the console with something else than data");
            return refused(
                StatusCode::BAD_GATEWAY,
                "the coordinator answered with something else than data",
            );
        }
        None => response = response.header(header::CONTENT_TYPE, "application/octet-stream"),
    }
    if let Some(cache) = answer.headers().get(header::CACHE_CONTROL.as_str()) {
        response = response.header(header::CACHE_CONTROL, cache.as_bytes());
    }
    for set in answer.headers().get_all(header::SET_COOKIE.as_str()) {
        if let Some(cookie) = set.to_str().ok().and_then(|s| upstream.cookie_for_browser(s)) {
            response = response.header(header::SET_COOKIE, cookie);
        }
    }
    response
        .header(header::CONTENT_SECURITY_POLICY, "sandbox; default-src 'none'")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        // The event stream flows through as it comes.
        .body(Body::from_stream(answer.bytes_stream()))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(base: &str, secure: bool) -> Upstream {
        Upstream::new(base.parse().unwrap(), None, secure, vec!["localhost:8090".into()]).unwrap()
    }

    #[test]
    fn only_the_session_cookie_crosses_renamed() {
        let u = upstream("http://127.0.0.1:8080", true);
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("sso=secret; __Host-vsigner-session=tok"),
        );
        assert_eq!(
            u.cookie_for_upstream(&headers).as_deref(),
            Some("__Host-vsigner-session=tok")
        );
        // A second session cookie (planted by a sibling) or the plain name: none.
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("vsigner-session=planted; __Host-vsigner-session=tok"),
        );
        assert_eq!(u.cookie_for_upstream(&headers), None);
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("vsigner-session=planted"),
        );
        assert_eq!(u.cookie_for_upstream(&headers), None);

        let set = u
            .cookie_for_browser("vsigner-session=tok; Path=/; Max-Age=43200; HttpOnly; SameSite=Strict")
            .unwrap();
        assert_eq!(
            set.to_str().unwrap(),
            "__Host-vsigner-session=tok; Path=/; Max-Age=43200; HttpOnly; SameSite=Strict; Secure"
        );
        // Other cookies, or a session cookie with an odd value, never reach the browser.
        assert!(u
            .cookie_for_browser("tracker=1; Domain=example.com; Max-Age=9")
            .is_none());
        assert!(u.cookie_for_browser("vsigner-session=a b; Max-Age=9").is_none());
        // Over plain HTTP the browser keeps the plain name; a sign-out's empty cookie passes.
        let plain = upstream("http://127.0.0.1:8080", false);
        let out = plain
            .cookie_for_browser("__Host-vsigner-session=; Path=/; Max-Age=0; HttpOnly; Secure")
            .unwrap();
        assert_eq!(
            out.to_str().unwrap(),
            "vsigner-session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
        );
    }

    #[test]
    fn plain_http_only_to_this_machine() {
        let hosts = || vec!["localhost:8090".to_owned()];
        assert!(Upstream::new("http://localhost:8080".parse().unwrap(), None, false, hosts()).is_ok());
        assert!(Upstream::new("http://[::1]:8080".parse().unwrap(), None, false, hosts()).is_ok());
        let remote = Upstream::new(
            "http://coordinator.example:8080".parse().unwrap(),
            None,
            false,
            hosts(),
        );
        assert!(remote.unwrap_err().to_string().contains("HTTPS"));
        assert!(Upstream::new("ftp://x".parse().unwrap(), None, false, hosts()).is_err());
    }

    #[test]
    fn only_data_comes_back() {
        assert!(is_data("application/json"));
        assert!(is_data("text/event-stream; charset=utf-8"));
        assert!(!is_data("text/html"));
        assert!(!is_data("text/javascript"));
        assert!(!is_data("text/css"));
    }
}
