//! `vsigner console`: the web console served apart from the coordinator, by a process the
//! organisation runs, so that the page people approve on is not the coordinator's to
//! change (`vsigner_coordinator::console::apart`). Devices whose people approve on it set
//! `HumanApprovalOrigin` to its origin.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use vsigner_coordinator::console::apart::{self, Upstream};

#[derive(Args)]
pub(crate) struct ConsoleArgs {
    /// The coordinator's base URL (its GraphQL and console sessions are reached there).
    #[arg(long, env = "VSIGNER_CONSOLE_COORDINATOR")]
    coordinator: url::Url,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8090", env = "VSIGNER_CONSOLE_LISTEN")]
    listen: SocketAddr,
    /// The origin people open the console at (`https://console.example`), which devices
    /// take as `HumanApprovalOrigin`; required off loopback. Calls naming another host are
    /// refused. Default on loopback: `http://localhost:PORT`.
    #[arg(long, env = "VSIGNER_CONSOLE_ORIGIN")]
    origin: Option<url::Url>,
    /// PEM certificate chain to serve HTTPS with (with --tls-key). Browsers offer passkeys
    /// only over HTTPS, or on http://localhost.
    #[arg(long, env = "VSIGNER_CONSOLE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "VSIGNER_CONSOLE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA bundle the coordinator's HTTPS certificate must chain to (default: the
    /// system's roots).
    #[arg(long, env = "VSIGNER_CONSOLE_COORDINATOR_CA")]
    coordinator_ca: Option<PathBuf>,
}

pub(crate) fn run(args: ConsoleArgs) -> anyhow::Result<()> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(vsigner_https::ServerTls::from_pem_files(cert, key)?),
        _ => None,
    };
    let ca = args
        .coordinator_ca
        .as_deref()
        .map(vsigner_https::ca_certificates)
        .transpose()?;
    if args.origin.is_none() && !args.listen.ip().is_loopback() {
        anyhow::bail!(
            "--listen {} is off loopback: give --origin, the address people open the console at (https://console.example)",
            args.listen
        );
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let _logs = vsigner_signer::telemetry::init_stderr("info")?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
        let addr = listener.local_addr()?;
        vsigner_https::warn_if_plain(addr, tls.as_ref(), "the console", "give --tls-cert and --tls-key");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (origin, hosts) = match &args.origin {
            Some(origin) => {
                let host = origin
                    .host_str()
                    .with_context(|| format!("--origin {origin}: give scheme://host[:port]"))?;
                let hosts = match origin.port() {
                    Some(port) => vec![format!("{host}:{port}")],
                    None => vec![host.to_owned()],
                };
                (origin.origin().ascii_serialization(), hosts)
            }
            None => {
                // Browsers offer passkeys over plain HTTP only on localhost, and leave a
                // scheme's default port out of the origin and the Host header.
                let default_port = if tls.is_some() { 443 } else { 80 };
                let port = match addr.port() {
                    p if p == default_port => String::new(),
                    p => format!(":{p}"),
                };
                let hosts = ["localhost", "127.0.0.1", "[::1]"]
                    .iter()
                    .map(|h| format!("{h}{port}"))
                    .collect();
                (format!("{scheme}://localhost{port}"), hosts)
            }
        };
        // Behind a proxy that ends TLS, an https origin still means a Secure cookie.
        let secure = tls.is_some() || args.origin.as_ref().is_some_and(|o| o.scheme() == "https");
        let upstream = Upstream::new(args.coordinator.clone(), ca, secure, hosts)?;
        eprintln!(
            "vsigner console: serving {origin}/console/ (listening on {addr}) for the coordinator at {}; devices whose people approve here take HumanApprovalOrigin = {origin}; Ctrl-C or SIGTERM stops it",
            args.coordinator
        );
        let shutdown = async {
            let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        };
        vsigner_https::serve(listener, apart::routes(upstream), tls, shutdown).await?;
        eprintln!("vsigner console: stopped");
        Ok(())
    })
}
