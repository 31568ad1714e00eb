//! `vsigner`: the command-line entry point of the MPC Virtual Signer.
//!
//! # Layout
//! - `demo`: the whole system in one process, every operation checked.
//! - `run`: the Virtual Signer daemon.
//! - `vault`, `op`, `device`: the operator's client of the coordinator.
//! - `primes`: generate safe-prime pools for aux-info generation, import them into a signer.
//! - `bench`: measure the protocols (`bench protocols`).
//! - `keystore`: inspect a keystore (`keystore inspect`).
//! - `broker`: the embedded MQTT broker.
//! - `coordinator`: the coordinator (GraphQL backend) and `coordinator init`.
//! - `dev`: developer tools (test fixtures).

mod commands;
mod operator;
mod system;
mod test_primes;

use clap::{Parser, Subcommand};

/// vsigner: an open, self-hostable MPC Virtual Signer.
#[derive(Parser)]
#[command(name = "vsigner", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole system in one process (coordinator, MQTT broker, approval webhook,
    /// virtual signers) through keygen, signatures, a rejection and a reshare, checking every
    /// result.
    Demo(commands::demo::DemoArgs),
    /// Run the Virtual Signer daemon (its virtual devices vote on and sign the coordinator's
    /// operations) until SIGTERM.
    Run {
        /// Configuration file (JSON or TOML); each key can be overridden by VSIGNER_<Key>.
        #[arg(long, env = "VSIGNER_CONFIG_FILE")]
        config: Option<std::path::PathBuf>,
    },
    /// Vaults (operator client of the coordinator): create, list, show, sign, reshare.
    Vault {
        #[command(flatten)]
        connection: commands::client::Connection,
        #[command(subcommand)]
        command: commands::client::VaultCommand,
    },
    /// Operations (operator client of the coordinator): show, wait.
    Op {
        #[command(flatten)]
        connection: commands::client::Connection,
        #[command(subcommand)]
        command: commands::client::OpCommand,
    },
    /// Devices of the organisation (client of the coordinator).
    Device {
        #[command(flatten)]
        connection: commands::client::Connection,
        #[command(subcommand)]
        command: commands::client::DeviceCommand,
    },
    /// API clients of the organisation (operator client of the coordinator): create, list,
    /// rotate a secret, revoke.
    Client {
        #[command(flatten)]
        connection: commands::client::Connection,
        #[command(subcommand)]
        command: commands::api_clients::ClientCommand,
    },
    /// The audit log, checked without trusting the coordinator: every device action must
    /// carry its device's signature (`export`, `verify [--from FILE]`).
    Audit {
        #[command(flatten)]
        connection: commands::client::Connection,
        #[command(subcommand)]
        command: commands::audit::AuditCommand,
    },
    /// Rebuild a vault's key offline from its devices' disaster-recovery (`.dr`) files and the
    /// operator's ML-KEM-768 private key; `recover keygen` makes that key pair.
    Recover(commands::recover::RecoverArgs),
    /// Generate safe primes for ECDSA aux-info (slow: ~35 s of one core per prime).
    #[command(subcommand)]
    Primes(commands::primes::PrimesCommand),
    /// Inspect a keystore (never shows secrets).
    #[command(subcommand)]
    Keystore(commands::keystore::KeystoreCommand),
    /// Run the embedded MQTT broker (for one machine and tests; production uses any MQTT
    /// broker, e.g. Mosquitto).
    Broker(commands::broker::BrokerArgs),
    /// Run the coordinator (GraphQL backend of organisations, devices, vaults, operations),
    /// or `coordinator init` to create an organisation and its API clients.
    Coordinator(Box<vsigner_coordinator::CoordinatorArgs>),
    /// Serve the web console apart from the coordinator, so that the page people approve
    /// on is the organisation's own (the coordinator gives it data, never code).
    Console(commands::console::ConsoleArgs),
    /// Measure performance.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// Developer tools: regenerate the committed test fixtures.
    #[command(subcommand)]
    Dev(commands::dev::DevCommand),
}

fn main() -> std::process::ExitCode {
    // Before any big integer exists: GMP wipes every block it frees.
    vsigner_memory::wipe_gmp_on_free();
    // Every TLS connection of the process (HTTP clients, MQTT, object stores) is rustls with
    // ring: one provider for the whole process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    // Commands that hold secrets in memory (prime sets). `keystore inspect` reads only names.
    if matches!(cli.command, Command::Primes(_)) {
        harden();
    }
    let result = match cli.command {
        Command::Demo(args) => commands::demo::run(args),
        Command::Vault { connection, command } => commands::client::vault(connection, command),
        Command::Op { connection, command } => commands::client::op(connection, command),
        Command::Device { connection, command } => commands::client::device(connection, command),
        Command::Client { connection, command } => commands::api_clients::run(connection, command),
        Command::Audit { connection, command } => commands::audit::run(connection, command),
        Command::Run { config } => vsigner_signer::run::run(config.as_deref()).map_err(anyhow::Error::from),
        Command::Primes(cmd) => commands::primes::run(cmd),
        Command::Bench(cmd) => commands::bench::run(cmd),
        Command::Broker(args) => commands::broker::run(args),
        Command::Coordinator(args) => commands::coordinator::run(*args),
        Command::Console(args) => commands::console::run(args),
        Command::Keystore(cmd) => commands::keystore::run(cmd),
        Command::Recover(args) => commands::recover::run(args),
        Command::Dev(cmd) => commands::dev::run(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Disables core dumps and locks memory where allowed; warns (on stderr) about what the
/// system refused. Run before handling secrets.
pub(crate) fn harden() {
    let hardening = vsigner_memory::harden_process();
    for refused in [hardening.core_dumps_disabled, hardening.memory_locked]
        .into_iter()
        .filter_map(Result::err)
    {
        eprintln!("warning: {refused}");
    }
}
