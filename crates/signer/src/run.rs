//! `vsigner run --config FILE`: load and check the configuration, harden the process, set
//! up telemetry and metrics, start the daemon and its HTTP API, and run until SIGTERM or
//! SIGINT; then shut down gracefully (running protocols finish or are reported failed,
//! spans are flushed).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::SignerConfig;
use crate::daemon::Daemon;
use crate::{api, metrics, telemetry};

/// Why `vsigner run` stopped with an error: one line for stderr, never a secret.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RunError(String);

fn fail(what: &str, e: impl std::fmt::Display) -> RunError {
    RunError(format!("{what}: {e}"))
}

/// Loads the configuration (`file`, then the environment) and runs the daemon until a
/// termination signal. Blocks.
pub fn run(file: Option<&Path>) -> Result<(), RunError> {
    let config =
        SignerConfig::load(file, std::env::vars()).map_err(|e| RunError(format!("configuration: {e}")))?;
    let hardening = vsigner_memory::harden_process();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vsigner")
        .build()
        .map_err(|e| fail("cannot start the async runtime", e))?;
    let result = runtime.block_on(async move {
        let guard = telemetry::init(&config.telemetry_config()).map_err(|e| fail("telemetry", e))?;
        for refused in [&hardening.core_dumps_disabled, &hardening.memory_locked]
            .into_iter()
            .filter_map(|r| r.as_ref().err())
        {
            tracing::warn!("process hardening: {refused}");
        }
        for warning in config.warnings() {
            tracing::warn!("{warning}");
        }
        tracing::info!(config = %config.summary(), version = env!("CARGO_PKG_VERSION"), "vsigner starting");
        let result = serve(config).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "vsigner stopped on an error");
        }
        if let Err(e) = guard.shutdown_async().await {
            eprintln!("warning: {e}");
        }
        result
    });
    // Protocol threads of abandoned runs must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}

async fn bind(port: u16, what: &str) -> Result<tokio::net::TcpListener, RunError> {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| fail(&format!("cannot listen on {addr} ({what})"), e))
}

async fn serve(config: SignerConfig) -> Result<(), RunError> {
    let handle = metrics::install().map_err(|e| fail("metrics", e))?;
    // Bind first: a port in use is a configuration error, reported before any device starts.
    let api_listener = bind(config.port, "Port").await?;
    let metrics_listener = bind(config.prometheus_port, "PrometheusPort").await?;
    let daemon = Daemon::start(config.clone())
        .await
        .map_err(|e| fail("start", e))?;
    let stop = CancellationToken::new();
    let router = api::router(&config, Arc::new(daemon.clone()), Arc::new(daemon.clone()));
    tracing::info!(
        api = %api_listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        metrics = %metrics_listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        devices = ?daemon.device_list().await.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        "vsigner running"
    );
    let tls = config.api_tls.as_ref().map(|t| t.server.clone());
    let api_task = tokio::spawn(api::serve(
        api_listener,
        router,
        tls,
        stop.clone().cancelled_owned(),
    ));
    let metrics_task = tokio::spawn(metrics::serve(
        metrics_listener,
        handle,
        stop.clone().cancelled_owned(),
    ));
    wait_for_signal().await;
    daemon.shutdown().await;
    stop.cancel();
    for task in [api_task, metrics_task] {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server"),
            Err(e) => tracing::warn!(error = %e, "HTTP server task"),
        }
    }
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
