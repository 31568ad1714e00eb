//! HTTP services of vsigner over TLS, and clients that trust a configured CA.
//!
//! The coordinator (GraphQL, OAuth2 tokens) and the signer's API carry bearer tokens and
//! client secrets: off loopback they must be served over TLS. This crate is the one place
//! that knows how:
//! - [`ServerTls::from_pem_files`]: a certificate chain and its private key from PEM files
//!   (what `openssl`, `certbot` or an internal CA write), with errors that name the file.
//! - [`serve`]: an axum router on a listener, over TLS (rustls, ring; HTTP/1.1) when given a
//!   [`ServerTls`], else plain HTTP; both stop gracefully on the shutdown future: no new
//!   connection is accepted, requests in flight finish (for at most [`GRACE`]).
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
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight may run on after shutdown is asked.
pub const GRACE: Duration = Duration::from_secs(10);

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
/// then lets requests in flight finish for at most [`GRACE`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let Some(tls) = tls else {
        return axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let acceptor = TlsAcceptor::from(tls.config);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
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
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(GRACE) => {
            tracing::warn!("requests still in flight after the grace period were cut");
        }
    }
    Ok(())
}
