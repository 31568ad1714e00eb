//! `vsigner broker`: the embedded MQTT broker (rumqttd) for single-machine use and tests.

use std::net::SocketAddr;

use clap::Args;
use zeroize::Zeroizing;

#[derive(Args)]
pub(crate) struct BrokerArgs {
    /// Address to listen on (MQTT 3.1.1). Pick the port: the broker cannot report one chosen
    /// by the system.
    #[arg(long, default_value = "127.0.0.1:1883")]
    listen: SocketAddr,
    /// Largest message accepted, in bytes (devices must use the same or a smaller envelope
    /// limit).
    #[arg(long, default_value_t = vsigner_transport::envelope::DEFAULT_MAX_ENVELOPE + 4096)]
    max_payload: usize,
    /// Require this user name; the password is read from VSIGNER_BROKER_PASSWORD (never from
    /// the command line, where other users could read it).
    #[arg(long)]
    username: Option<String>,
}

pub(crate) fn run(args: BrokerArgs) -> anyhow::Result<()> {
    let credentials = match args.username {
        Some(user) => {
            let password = std::env::var("VSIGNER_BROKER_PASSWORD").map_err(|_| {
                anyhow::anyhow!(
                    "--username needs the password in the environment variable VSIGNER_BROKER_PASSWORD"
                )
            })?;
            Some((user, Zeroizing::new(password)))
        }
        None => None,
    };
    let config = vsigner_transport::broker::BrokerConfig {
        listen: args.listen,
        max_payload: args.max_payload,
        credentials,
    };
    vsigner_transport::broker::start(&config)?;
    eprintln!(
        "vsigner broker: listening on mqtt://{} ({}); Ctrl-C or SIGTERM stops it",
        args.listen,
        if config.credentials.is_some() {
            "user and password required"
        } else {
            "anonymous"
        }
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        eprintln!("vsigner broker: stopping");
        Ok::<_, anyhow::Error>(())
    })
}
