//! HTTP services of vsigner over TLS, and clients that trust a configured CA.
//!
//! The coordinator (GraphQL, OAuth2 tokens) and the signer's API carry bearer tokens and
//! client secrets: off loopback they must be served over TLS. This crate is the one place
//! that knows how:
//! - [`ServerTls::from_pem_files`]: a certificate chain and its private key from PEM files
//!   (what `openssl`, `certbot` or an internal CA write), with errors that name the file.
//! - [`serve`]: an axum router on a listener, over TLS (rustls, ring; HTTP/1.1) when given a
//!   [`ServerTls`], else plain HTTP, with bounds on connections and on slow clients; both
//!   stop gracefully on the shutdown future: no new connection is accepted, requests in
//!   flight finish (for at most [`GRACE`], then they are cut).
//! - [`warn_if_plain`]: the warning a plain-HTTP listener off loopback deserves.
//! - [`ca_certificates`]: a CA bundle from a PEM file, for `reqwest` clients that trust
//!   only it (`ClientBuilder::tls_certs_only`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight may run on after shutdown is asked.
pub const GRACE: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers, or, on a kept-alive connection,
/// to start its next request.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; more wait in the listener's backlog.
pub const MAX_CONNECTIONS: usize = 1024;

/// A TLS file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read or holds no PEM item of the kind needed.
    #[error("{}: {what}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// The certificate and key do not make a server configuration (e.g. they do not match).
    #[error("the TLS certificate {} and key {} do not go together: {reason}", cert.display(), key.display())]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        reason: String,
    },
}

fn file_error(path: &Path, what: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        what: what.into(),
    }
}

/// A server's TLS configuration: its certificate chain and private key.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads `cert` (PEM: the server certificate first, then any intermediates) and `key`
    /// (PEM: PKCS#8, PKCS#1 or SEC1). The key never appears in an error.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| file_error(cert, format!("cannot read a PEM certificate chain: {e}")))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error(cert, format!("not a PEM certificate chain: {e}")))?;
        if chain.is_empty() {
            return Err(file_error(cert, "holds no CERTIFICATE block"));
        }
        let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            file_error(
                key,
                format!(
                    "not a PEM private key (PKCS#8, PKCS#1 or SEC1): {}",
                    key_error(&e)
                ),
            )
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private_key))
            .map_err(|e| TlsError::Config {
                cert: cert.to_owned(),
                key: key.to_owned(),
                reason: e.to_string(),
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

/// The PEM error without any of the file's content.
fn key_error(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY block".to_owned(),
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        _ => "malformed PEM".to_owned(),
    }
}

/// Reads a CA bundle (PEM, one or more certificates) for clients that trust only it.
pub fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| file_error(path, format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "holds no CERTIFICATE block"));
    }
    Ok(certs)
}

/// Logs a warning when `addr` is served without TLS off loopback: what crosses the network
/// (bearer tokens, client secrets) is readable by anyone on the path.
pub fn warn_if_plain(addr: SocketAddr, tls: Option<&ServerTls>, what: &str, fix: &str) {
    if tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "{what} is served over plain HTTP on a non-loopback address: tokens and secrets cross the network in clear; {fix}"
        );
    }
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown` completes,
/// then lets requests in flight finish for at most [`GRACE`] and cuts the rest.
///
/// Bounded against slow or idle clients: at most [`MAX_CONNECTIONS`] connections at once
/// (more wait in the listener's backlog), a TLS handshake within [`HANDSHAKE_TIMEOUT`], each
/// request's headers (and, on a kept-alive connection, the next request) within
/// [`HEADER_READ_TIMEOUT`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, router, tls, Limits::default(), shutdown).await
}

/// The bounds [`serve`] keeps connections within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time for a TLS handshake.
    pub handshake_timeout: Duration,
    /// Time for a request's headers, or for the next request on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// Time requests in flight may run on after shutdown is asked.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            header_read_timeout: HEADER_READ_TIMEOUT,
            grace: GRACE,
        }
    }
}

/// [`serve`] within other `limits`.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    tls: Option<ServerTls>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = tls.map(|tls| TlsAcceptor::from(tls.config));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let _permit = permit;
            let headers = limits.header_read_timeout;
            let Some(acceptor) = acceptor else {
                return serve_connection(TokioIo::new(tcp), service, watcher, peer, headers).await;
            };
            match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    serve_connection(TokioIo::new(stream), service, watcher, peer, headers).await
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.grace) => {
            tracing::warn!("requests still in flight after the grace period are cut");
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One HTTP/1.1 connection, watched for graceful shutdown.
async fn serve_connection<S>(
    io: TokioIo<S>,
    service: TowerToHyperService<Router>,
    watcher: Watcher,
    peer: SocketAddr,
    header_read_timeout: Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(io, service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}
