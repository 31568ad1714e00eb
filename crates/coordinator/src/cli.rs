//! Command-line entry points for `vsigner coordinator` (wired into the binary).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::broadcast::Broadcaster;
use crate::domain::ExpiryPolicy;
use crate::notify::Notifier;
use crate::server::RunningCoordinator;
use crate::service::{Clock, InitOutput, Service, Settings};
use crate::store::Store;

/// `vsigner coordinator [--listen ADDR --database URL …] | coordinator init …`
#[derive(clap::Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CoordinatorArgs {
    /// `init`; without a subcommand the coordinator serves.
    #[command(subcommand)]
    pub command: Option<CoordinatorCommand>,
    /// Server options.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Coordinator subcommands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum CoordinatorCommand {
    /// Create an organisation with an operator and a signer API client; prints the
    /// client ids and secrets once.
    Init(InitArgs),
}

/// A `CHAIN_ID=URL` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvmRpc {
    /// Chain id.
    pub chain_id: u64,
    /// JSON-RPC URL.
    pub url: String,
}

fn parse_evm_rpc(s: &str) -> Result<EvmRpc, String> {
    let (id, url) = s
        .split_once('=')
        .ok_or("expected CHAIN_ID=URL, e.g. 1=http://127.0.0.1:8545")?;
    let chain_id = id
        .trim()
        .parse()
        .map_err(|_| format!("chain id {id:?} is not a number"))?;
    let url = url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err("the RPC URL must start with http:// or https://".to_owned());
    }
    Ok(EvmRpc {
        chain_id,
        url: url.to_owned(),
    })
}

/// Server options.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "VSIGNER_COORDINATOR_LISTEN")]
    pub listen: SocketAddr,
    /// PEM certificate chain to serve HTTPS with (with --tls-key); without them the
    /// coordinator speaks plain HTTP, which it warns about off loopback.
    #[arg(long, env = "VSIGNER_COORDINATOR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "VSIGNER_COORDINATOR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Database URL: `sqlite://PATH?mode=rwc` or `postgres://…`.
    #[arg(
        long,
        default_value = "sqlite://coordinator.db?mode=rwc",
        env = "VSIGNER_COORDINATOR_DATABASE"
    )]
    pub database: String,
    /// MQTT broker for notifications: `mqtt://`, `mqtts://`, `ws://` or `wss://`
    /// `[user:pass@]host[:port][/path]`.
    #[arg(long, env = "VSIGNER_COORDINATOR_MQTT")]
    pub mqtt: Option<String>,
    /// PEM file of the CA that signed the broker's certificate (`mqtts://`, `wss://`);
    /// without it the platform's roots are used.
    #[arg(long, env = "VSIGNER_COORDINATOR_MQTT_CA_CERT")]
    pub mqtt_ca_cert: Option<std::path::PathBuf>,
    /// EVM JSON-RPC endpoint per chain id for broadcasting (`CHAIN_ID=URL`, repeatable).
    #[arg(long = "evm-rpc", value_parser = parse_evm_rpc)]
    pub evm_rpc: Vec<EvmRpc>,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 900)]
    pub token_ttl_secs: u64,
    /// How long an API client's previous secret stays accepted after a rotation, in
    /// seconds (at most 30 days), unless the rotation gives its own overlap.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(0..=2_592_000))]
    pub client_secret_overlap_secs: u64,
    /// Keygen expiry in seconds.
    #[arg(long, default_value_t = 600)]
    pub keygen_expiry_secs: u64,
    /// Reshare expiry in seconds.
    #[arg(long, default_value_t = 600)]
    pub reshare_expiry_secs: u64,
    /// Sign expiry in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub sign_expiry_secs: u64,
    /// Expiry sweep period in seconds.
    #[arg(long, default_value_t = 10)]
    pub sweep_interval_secs: u64,
    /// How often a `waitForOperation` request reads its operation again, in milliseconds,
    /// for changes committed by other coordinator processes sharing the database (this
    /// process's own commits answer it at once) and for expiry.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub wait_recheck_ms: u64,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (a separate listener, so that the
    /// API's port need not expose them); none by default.
    #[arg(long, env = "VSIGNER_COORDINATOR_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "VSIGNER_COORDINATOR_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// OTLP/HTTP collector for spans, the full URL (`…/v1/traces`); none by default.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    pub otlp_traces_endpoint: Option<url::Url>,
    /// OTLP/HTTP collector for logs, the full URL (`…/v1/logs`); none by default.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")]
    pub otlp_logs_endpoint: Option<url::Url>,
}

/// The coordinator's log format.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event.
    Json,
}

impl Default for ServeArgs {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert: None,
            tls_key: None,
            database: "sqlite://coordinator.db?mode=rwc".to_owned(),
            mqtt: None,
            mqtt_ca_cert: None,
            evm_rpc: Vec::new(),
            token_ttl_secs: 900,
            client_secret_overlap_secs: 3600,
            keygen_expiry_secs: 600,
            reshare_expiry_secs: 600,
            sign_expiry_secs: 86_400,
            sweep_interval_secs: 10,
            wait_recheck_ms: 1000,
            metrics_listen: None,
            log_format: LogFormat::Text,
            otlp_traces_endpoint: None,
            otlp_logs_endpoint: None,
        }
    }
}

/// `coordinator init` options.
#[derive(clap::Args, Debug, Clone)]
pub struct InitArgs {
    /// Database URL: `sqlite://PATH?mode=rwc` or `postgres://…`.
    #[arg(
        long,
        default_value = "sqlite://coordinator.db?mode=rwc",
        env = "VSIGNER_COORDINATOR_DATABASE"
    )]
    pub database: String,
    /// Organisation name.
    #[arg(long)]
    pub org: String,
}

fn ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Runs `vsigner coordinator …`: `init`, or serve until SIGTERM or SIGINT (Ctrl-C), then
/// shut down gracefully (exit status 0).
pub async fn run(args: CoordinatorArgs) -> anyhow::Result<()> {
    match args.command {
        Some(CoordinatorCommand::Init(init_args)) => {
            let out = init(&init_args).await?;
            println!("organisation:            {}", out.org_id);
            println!("operator client id:      {}", out.operator_client_id);
            println!("operator client secret:  {}", out.operator_client_secret.expose());
            println!("signer client id:        {}", out.signer_client_id);
            println!("signer client secret:    {}", out.signer_client_secret.expose());
            println!("(the secrets are shown only now; only their Argon2id hashes are stored)");
            Ok(())
        }
        None => {
            let scheme = if args.serve.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            let mut running = start(args.serve, Clock::default()).await?;
            eprintln!("coordinator listening on {scheme}://{}/graphql", running.addr());
            tokio::select! {
                r = running.wait() => r,
                signal = stop_signal() => {
                    tracing::info!(signal = signal?, "shutting down");
                    running.shutdown().await
                }
            }
        }
    }
}

/// Waits for SIGTERM (a service manager's stop) or SIGINT (Ctrl-C); returns its name.
async fn stop_signal() -> anyhow::Result<&'static str> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT").map_err(Into::into),
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok("Ctrl-C")
    }
}

/// Creates an organisation with an operator and a signer API client.
pub async fn init(args: &InitArgs) -> anyhow::Result<InitOutput> {
    let store = Store::connect(&args.database).await?;
    let service = Service::new(
        store.clone(),
        Clock::default(),
        Settings::default(),
        None,
        Broadcaster::default(),
    );
    let out = service
        .init_org(&args.org)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    store.close().await;
    Ok(out)
}

/// Opens the database, connects MQTT, binds `args.listen` and starts serving.
pub async fn start(args: ServeArgs, clock: Clock) -> anyhow::Result<RunningCoordinator> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            vsigner_https::ServerTls::from_pem_files(cert, key)
                .map_err(|e| anyhow::anyhow!("--tls-cert / --tls-key: {e}"))?,
        ),
        (None, None) => None,
        _ => anyhow::bail!("give both --tls-cert and --tls-key, or neither"),
    };
    let store = Store::connect(&args.database).await?;
    let notifier = args
        .mqtt
        .as_deref()
        .map(|url| Notifier::connect(url, args.mqtt_ca_cert.as_deref()))
        .transpose()?;
    let broadcaster = Broadcaster::new(args.evm_rpc.iter().map(|r| (r.chain_id, r.url.clone())));
    let settings = Settings {
        expiry: ExpiryPolicy {
            keygen_ms: ms(args.keygen_expiry_secs),
            reshare_ms: ms(args.reshare_expiry_secs),
            sign_ms: ms(args.sign_expiry_secs),
        },
        token_ttl_ms: ms(args.token_ttl_secs),
        client_secret_overlap_ms: ms(args.client_secret_overlap_secs),
        wait_recheck: Duration::from_millis(args.wait_recheck_ms),
        ..Settings::default()
    };
    let service = Arc::new(Service::new(store, clock, settings, notifier, broadcaster));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    Ok(RunningCoordinator::spawn(
        service,
        listener,
        Duration::from_secs(args.sweep_interval_secs.max(1)),
        tls,
    )?)
}
