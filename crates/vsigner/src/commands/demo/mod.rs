//! `vsigner demo`: the whole system in one process (see [`crate::system`]), driven through
//! every kind of operation, with each result checked (see [`verify`]):
//!
//! 1. safe-prime sets for the devices' Paillier keys: from the public test pool by default
//!    (said loudly), a pool file (`--primes`) or generated (`--fresh-primes`);
//! 2. coordinator, broker, approval webhook, then N signer daemons, one device each;
//! 3. a secp256k1 and an ed25519 T-of-N vault, created concurrently;
//! 4. signatures: a 32-byte digest and an EIP-1559 transaction (secp256k1), a message
//!    (ed25519); a request the webhook rejects is not signed;
//! 5. a new device joins: the secp256k1 vault is reshared to (T+1)-of-(N+1) with the same key,
//!    and a committee including the new device signs.
//!
//! Prints a summary, or with `--json` one JSON document (DESIGN.md §4) on stdout; progress
//! and logs go to stderr. Fails unless every signature verified and every step behaved as
//! stated.

mod checks;
mod report;
mod reshare;
mod script;
pub(crate) mod verify;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};

use crate::system::primes::{prime_sets, PrimeSource, PUBLIC_PRIMES_WARNING};
use report::{print_summary, Outcome, Report, StepOut};
use script::demo;

/// Log filter unless `RUST_LOG` says otherwise: warnings and errors of vsigner's parts. The
/// embedded broker (rumqttd) logs ordinary disconnections as errors, so it is silenced.
pub(crate) const QUIET_LOGS: &str = "warn,rumqttd=off";

/// Largest `--devices`: each device runs its own daemon and Paillier key generation.
const MAX_DEVICES: u16 = 10;

/// `vsigner demo` options.
// No `Debug`: `--broker` may carry a password.
#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// Print one JSON document on stdout instead of a summary (progress and logs stay on
    /// stderr).
    #[arg(long)]
    json: bool,
    /// Virtual devices (2 to 10); the reshare adds one more.
    #[arg(long, default_value_t = 3)]
    devices: u16,
    /// Signatures needed (2 to --devices); the reshare raises it by one.
    #[arg(long, default_value_t = 2)]
    threshold: u16,
    /// Generate real safe primes for the devices' Paillier keys instead of taking the public
    /// test pool (4 primes per device and per aux-info run: minutes of every core).
    #[arg(long, conflicts_with = "primes")]
    fresh_primes: bool,
    /// An MQTT broker (`mqtt://host:port`, e.g. Mosquitto) instead of the embedded one.
    #[arg(long)]
    broker: Option<String>,
    /// Take prime sets from a pool file made by `vsigner primes generate` (missing sets are
    /// generated).
    #[arg(long)]
    primes: Option<PathBuf>,
    /// When the demo is done, leave the system running with the web console open, and a
    /// console user (an admin) to sign in with, until Ctrl-C (or SIGTERM).
    #[arg(long)]
    console: bool,
}

/// Times the demo's steps and shows them on stderr (a spinner while running when stderr is
/// a terminal, then one line each).
#[derive(Default)]
struct Steps {
    done: Vec<StepOut>,
}

impl Steps {
    async fn run<T>(
        &mut self,
        what: impl Into<String>,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        let what = what.into();
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("  {spinner} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(what.clone());
        bar.enable_steady_tick(Duration::from_millis(120));
        let start = Instant::now();
        let result = work.await;
        bar.finish_and_clear();
        self.record(&what, start.elapsed(), result.as_ref().err());
        result
    }

    fn record(&mut self, what: &str, took: Duration, error: Option<&anyhow::Error>) {
        let seconds = (took.as_secs_f64() * 100.0).round() / 100.0;
        match error {
            None => eprintln!("  ✓ {what} ({seconds:.2} s)"),
            Some(e) => eprintln!("  ✗ {what}: {e:#}"),
        }
        self.done.push(StepOut {
            step: what.to_owned(),
            seconds,
        });
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Runs the demo.
pub(crate) fn run(args: DemoArgs) -> anyhow::Result<()> {
    let (n, t) = (args.devices, args.threshold);
    if !(2..=MAX_DEVICES).contains(&n) {
        bail!("--devices must be between 2 and {MAX_DEVICES} (got {n})");
    }
    if !(2..=n).contains(&t) {
        bail!("--threshold must be between 2 and --devices ({n}); got {t}");
    }
    crate::harden();
    let _logs = vsigner_signer::telemetry::init_stderr(QUIET_LOGS)?;
    eprintln!(
        "vsigner demo: {n} virtual devices, {t}-of-{n} vaults, then a reshare to {}-of-{}",
        t + 1,
        n + 1
    );
    let mut steps = Steps::default();
    // Each device takes one set for the keygen's aux-info; every member of the reshared set
    // takes one for the new aux-info.
    let needed = 2 * usize::from(n) + 1;
    let started = Instant::now();
    let source = match (&args.primes, args.fresh_primes) {
        (Some(path), _) => PrimeSource::File(path.clone()),
        (None, true) => PrimeSource::Fresh,
        (None, false) => PrimeSource::PublicTestPool,
    };
    let (sets, primes) = prime_sets(&source, needed)?;
    steps.record(
        &format!(
            "prime sets ready ({} from {}, {} generated)",
            primes.sets - primes.generated,
            primes.source,
            primes.generated
        ),
        started.elapsed(),
        None,
    );
    let mut warnings = Vec::new();
    if primes.public {
        eprintln!("\n  WARNING: {PUBLIC_PRIMES_WARNING}\n");
        warnings.push(PUBLIC_PRIMES_WARNING.to_owned());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vsigner-demo")
        .build()?;
    let result = runtime.block_on(demo(&args, sets, primes.public, &mut steps));
    runtime.shutdown_timeout(Duration::from_secs(5));
    // A step that failed still gives one document on stdout: what ran, and why it stopped.
    let (outcome, stopped) = match result {
        Ok(outcome) => (outcome, None),
        Err(e) => (
            Outcome {
                problems: vec![format!("{e:#}")],
                ..Outcome::default()
            },
            Some(e),
        ),
    };
    let report = Report {
        outcome,
        primes,
        steps: steps.done,
        warnings,
    };
    if let Some(e) = stopped {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        return Err(e);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report, n, t);
    }
    if !report.outcome.problems.is_empty() {
        bail!(
            "the demo found {} problem(s): {}",
            report.outcome.problems.len(),
            report.outcome.problems.join("; ")
        );
    }
    Ok(())
}
