//! `vsigner bench scale`: many vaults, or a large committee, through the whole system (the
//! demo's, see [`crate::system`]) with every device in one signer instance by default (one
//! `vsigner run` controlling them all).
//!
//! Phases, each with `--in-flight` operations at a time: the first ECDSA key generation
//! (which also makes every device's aux-info), the other key generations, one signature in
//! every vault, a reshare to the same devices and threshold (new shares of the same key) of
//! every Schnorr vault and of the first `--ecdsa-reshares` ECDSA ones (each takes a fresh prime
//! set per device), and one more signature in every reshared vault with the new shares.
//! After the reshare every vault must still have its public key, at a newer key generation,
//! and every signature (before and after) verifies here under the key of the vault's
//! creation. Each phase reports its wall time, per-operation p50/p95 and this process's peak
//! memory so far; the keystores' size on disk is reported at the end.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::{json, Value};

use super::e2e::{percentile, round};
use crate::commands::demo::verify;
use crate::operator::text;
use crate::system::primes::{prime_sets, PrimesUsed, PUBLIC_PRIMES_WARNING};
use crate::system::{LocalSystem, SystemSettings};
use vsigner_tss::primes::PrimeSet;

/// `vsigner bench scale` options.
// No `Debug`: `--broker` and `--database` may carry a password.
#[derive(clap::Args)]
pub(crate) struct ScaleArgs {
    /// Print one JSON document instead of a table.
    #[arg(long)]
    json: bool,
    /// Vaults to create, sign with and reshare.
    #[arg(long, default_value_t = 100)]
    vaults: usize,
    /// Devices in every vault.
    #[arg(long, default_value_t = 3)]
    devices: u16,
    /// Signatures needed.
    #[arg(long, default_value_t = 2)]
    threshold: u16,
    /// Schemes of the vaults, taken in turn (`secp256k1`, `secp256r1`, `ed25519`, `bip340`).
    #[arg(long, value_delimiter = ',', default_value = "secp256k1,ed25519")]
    curves: Vec<String>,
    /// ECDSA vaults to reshare (the first ones): each ECDSA reshare makes fresh aux-info and
    /// takes one new prime set per device (from `--primes`, else the public test pool, else
    /// generated: minutes each). Every Schnorr vault is reshared.
    #[arg(long, default_value_t = 3)]
    ecdsa_reshares: usize,
    /// Signer instances the devices are spread over (1: one `vsigner run` controls them all).
    #[arg(long, default_value_t = 1)]
    instances: u16,
    /// Operations kept in flight in each phase.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Where the system runs.
    #[command(flatten)]
    system: super::SystemArgs,
}

/// One phase of the run.
#[derive(Serialize)]
struct Phase {
    phase: &'static str,
    operations: usize,
    seconds: f64,
    p50_ms: f64,
    p95_ms: f64,
    max_ms: f64,
    /// This process's peak resident memory after the phase, MiB.
    peak_rss_mib: f64,
}

#[derive(Serialize)]
struct Report {
    cores: usize,
    vaults: usize,
    threshold: u16,
    devices: u16,
    instances: u16,
    /// ECDSA vaults reshared (every Schnorr vault is).
    ecdsa_reshares: usize,
    curves: Vec<String>,
    in_flight: usize,
    primes: PrimesUsed,
    phases: Vec<Phase>,
    seconds: f64,
    /// The devices' keystores on disk at the end, KiB.
    keystores_kib: f64,
}

const CURVES: [&str; 4] = ["secp256k1", "secp256r1", "ed25519", "bip340"];

pub(crate) fn run(args: ScaleArgs) -> anyhow::Result<()> {
    let (n, t) = (args.devices, args.threshold);
    if !(2..=10).contains(&n) || !(2..=n).contains(&t) {
        bail!("--devices must be 2 to 10 and --threshold 2 to --devices (got {t}-of-{n})");
    }
    if args.vaults == 0 || args.in_flight == 0 {
        bail!("--vaults and --in-flight must be at least 1");
    }
    if !(1..=n).contains(&args.instances) {
        bail!("--instances must be 1 to --devices ({n})");
    }
    if let Some(c) = args.curves.iter().find(|c| !CURVES.contains(&c.as_str())) {
        bail!("--curves: unknown scheme {c:?} (expected {})", CURVES.join(", "));
    }
    crate::harden();
    let _logs = vsigner_signer::telemetry::init_stderr(crate::commands::demo::QUIET_LOGS)?;
    let source = args.system.prime_source();
    let ecdsa_vaults = (0..args.vaults)
        .filter(|k| args.curves[k % args.curves.len()].starts_with("secp"))
        .count();
    // One set per device for the first ECDSA keygen, one more for each ECDSA reshare.
    let rounds = if ecdsa_vaults > 0 {
        1 + args.ecdsa_reshares.min(ecdsa_vaults)
    } else {
        1
    };
    let (sets, primes) = prime_sets(&source, usize::from(n) * rounds)?;
    if primes.public {
        eprintln!("note: {PUBLIC_PRIMES_WARNING}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vsigner-bench")
        .build()?;
    let report = runtime.block_on(scale(&args, sets, primes));
    runtime.shutdown_timeout(Duration::from_secs(5));
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} vaults ({}), {}-of-{} in {} signer instance(s), {} in flight, {} cores",
            report.vaults,
            report.curves.join(", "),
            report.threshold,
            report.devices,
            report.instances,
            report.in_flight,
            report.cores
        );
        println!(
            "{:<28} {:>6} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "phase", "ops", "wall s", "p50 ms", "p95 ms", "max ms", "peak MiB"
        );
        for p in &report.phases {
            println!(
                "{:<28} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.0}",
                p.phase, p.operations, p.seconds, p.p50_ms, p.p95_ms, p.max_ms, p.peak_rss_mib
            );
        }
        println!(
            "total {:.1} s; keystores on disk {:.0} KiB",
            report.seconds, report.keystores_kib
        );
    }
    Ok(())
}

/// Runs `op(0..count)` with `in_flight` at a time: the phase's timings and the results, in
/// order.
async fn phase<F, Fut>(
    name: &'static str,
    in_flight: usize,
    count: usize,
    op: F,
) -> anyhow::Result<(Phase, Vec<Value>)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Value>>,
{
    let start = Instant::now();
    let mut results: Vec<(usize, f64, Value)> = futures::stream::iter((0..count).map(|k| {
        let fut = op(k);
        async move {
            let began = Instant::now();
            let v = fut.await?;
            anyhow::Ok((k, began.elapsed().as_secs_f64() * 1e3, v))
        }
    }))
    .buffer_unordered(in_flight)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<anyhow::Result<_>>()
    .with_context(|| format!("phase {name}"))?;
    let seconds = start.elapsed().as_secs_f64();
    results.sort_by_key(|(k, _, _)| *k);
    let mut ms: Vec<f64> = results.iter().map(|(_, ms, _)| *ms).collect();
    ms.sort_by(f64::total_cmp);
    Ok((
        Phase {
            phase: name,
            operations: count,
            seconds: round(seconds),
            p50_ms: round(percentile(&ms, 50.0)),
            p95_ms: round(percentile(&ms, 95.0)),
            max_ms: round(ms.last().copied().unwrap_or(f64::NAN)),
            peak_rss_mib: super::peak_rss_mib(),
        },
        results.into_iter().map(|(_, _, v)| v).collect(),
    ))
}

async fn scale(
    args: &ScaleArgs,
    sets: Vec<vsigner_tss::primes::PrimeSet>,
    primes: PrimesUsed,
) -> anyhow::Result<Report> {
    let (n, t) = (args.devices, args.threshold);
    let started = Instant::now();
    let mut system = LocalSystem::start(SystemSettings {
        broker: args.system.broker.clone(),
        coordinator_database: args.system.database.clone(),
        // No background presigning: every phase measures only its own operations.
        presignature_pool_target: 0,
        poll_interval_seconds: Some(0.25),
        allow_public_test_primes: primes.public,
    })
    .await?;
    // Device k goes to instance k mod K: every instance gets n/K devices, or one more.
    let instances = usize::from(args.instances);
    let mut groups: Vec<(Vec<String>, Vec<PrimeSet>)> = vec![(Vec::new(), Vec::new()); instances];
    for k in 0..usize::from(n) {
        groups[k % instances].0.push(format!("device-{}", k + 1));
    }
    // Set j goes to device j mod n.
    for (j, set) in sets.into_iter().enumerate() {
        groups[(j % usize::from(n)) % instances].1.push(set);
    }
    for (names, sets) in &groups {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        system.add_daemon(&names, sets).await?;
    }
    let phases = run_phases(args, &system).await;
    let keystores_kib = dir_bytes(system.dir()) as f64 / 1024.0;
    system.shutdown().await;
    Ok(Report {
        cores: num_cpus::get(),
        vaults: args.vaults,
        threshold: t,
        devices: n,
        instances: args.instances,
        ecdsa_reshares: args.ecdsa_reshares.min(
            (0..args.vaults)
                .filter(|k| args.curves[k % args.curves.len()].starts_with("secp"))
                .count(),
        ),
        curves: args.curves.clone(),
        in_flight: args.in_flight,
        primes,
        phases: phases?,
        seconds: round(started.elapsed().as_secs_f64()),
        keystores_kib: round(keystores_kib),
    })
}

/// The phases (see the module documentation) on the running `system`.
async fn run_phases(args: &ScaleArgs, system: &LocalSystem) -> anyhow::Result<Vec<Phase>> {
    let say = |s: String| {
        if !args.json {
            eprintln!("{s}");
        }
    };
    let (n, t) = (args.devices, args.threshold);
    let ids: Vec<String> = system.signers.iter().map(|s| s.device_id.clone()).collect();
    let curve_of = |k: usize| args.curves[k % args.curves.len()].as_str();
    let mut phases = Vec::new();
    let mut vaults: Vec<Value> = Vec::new();
    // Creates vault number k.
    let create = |k: usize| async move {
        Ok(system
            .create_vault(&format!("scale {k}"), curve_of(k), t)
            .await?
            .0)
    };

    // The first ECDSA keygen makes every device's aux-info (minutes for large committees).
    let first_ecdsa = (0..args.vaults).find(|k| curve_of(*k).starts_with("secp"));
    if let Some(k) = first_ecdsa {
        say(format!(
            "first ECDSA key generation of {t}-of-{n} (with every device's aux-info) …"
        ));
        let (p, v) = phase("first ECDSA keygen + aux-info", 1, 1, |_| create(k)).await?;
        phases.push(p);
        vaults.extend(v);
    }
    let rest: Vec<usize> = (0..args.vaults).filter(|k| Some(*k) != first_ecdsa).collect();
    say(format!("{} key generations …", rest.len()));
    let (p, v) = phase("keygen", args.in_flight, rest.len(), |i| create(rest[i])).await?;
    phases.push(p);
    vaults.extend(v);

    let sign = |tag: &'static str, vaults: &[Value]| {
        let vaults = vaults.to_vec();
        move |i: usize| {
            let vault = vaults[i].clone();
            async move {
                let message = format!("scale {tag} {i}");
                let input = json!({"vaultId": text(&vault["id"]), "message": hex::encode(&message)});
                let op = system.operator.request_signature(input).await?;
                let op = system
                    .completed(&op, "signature", Duration::from_secs(600))
                    .await?;
                // Checked here too, under the key the vault had at its creation.
                check_signature(&vault, message.as_bytes(), &op)
                    .map_err(|e| anyhow::anyhow!("vault {}: {e}", text(&vault["id"])))?;
                Ok(op)
            }
        }
    };
    say(format!("{} signatures …", vaults.len()));
    let (p, _) = phase("sign", args.in_flight, vaults.len(), sign("before", &vaults)).await?;
    phases.push(p);

    // Every Schnorr vault and the first `--ecdsa-reshares` ECDSA ones.
    let mut ecdsa_left = args.ecdsa_reshares;
    let to_reshare: Vec<Value> = vaults
        .iter()
        .filter(|v| {
            if !text(&v["curve"]).starts_with("secp") {
                return true;
            }
            let take = ecdsa_left > 0;
            ecdsa_left = ecdsa_left.saturating_sub(1);
            take
        })
        .cloned()
        .collect();
    say(format!(
        "{} reshares (same devices, {t}-of-{n}) …",
        to_reshare.len()
    ));
    let (p, reshared) = phase("reshare", args.in_flight, to_reshare.len(), |i| {
        let (vault, ids) = (text(&to_reshare[i]["id"]).to_owned(), &ids);
        async move {
            let op = system.operator.request_reshare(&vault, t, ids).await?;
            system.completed(&op, "reshare", Duration::from_secs(900)).await?;
            system.operator.vault(&vault).await
        }
    })
    .await?;
    phases.push(p);
    for (before, after) in to_reshare.iter().zip(&reshared) {
        if before["publicKey"] != after["publicKey"] {
            bail!(
                "vault {} changed its public key in a reshare",
                text(&before["id"])
            );
        }
        if after["keyGeneration"].as_u64() <= before["keyGeneration"].as_u64() {
            bail!(
                "vault {} kept its key generation through a reshare",
                text(&before["id"])
            );
        }
    }
    say(format!("{} signatures with the new shares …", to_reshare.len()));
    let (p, _) = phase(
        "sign after reshare",
        args.in_flight,
        to_reshare.len(),
        sign("after", &to_reshare),
    )
    .await?;
    phases.push(p);

    Ok(phases)
}

/// Checks the signature of completed operation `op` over `message` under `vault`'s public
/// key, with the curve libraries (a `message` is signed over its EIP-191 hash on secp256k1,
/// its SHA-256 on P-256, as is on the Schnorr schemes).
fn check_signature(vault: &Value, message: &[u8], op: &Value) -> Result<(), String> {
    use sha2::Digest as _;
    let key = hex::decode(text(&vault["publicKey"])).map_err(|_| "the vault key is not hex".to_owned())?;
    let sig =
        hex::decode(text(&op["result"]["signature"])).map_err(|_| "the signature is not hex".to_owned())?;
    let recovery = op["result"]["recoveryId"]
        .as_u64()
        .and_then(|r| u8::try_from(r).ok())
        .unwrap_or(u8::MAX);
    match text(&vault["curve"]) {
        "secp256k1" => verify::secp256k1(&key, &super::soak::eip191(message), &sig, recovery),
        "secp256r1" => verify::p256(&key, &sha2::Sha256::digest(message).into(), &sig, recovery),
        "ed25519" => verify::ed25519(&key, message, &sig),
        "bip340" => verify::bip340(&key, message, &sig),
        other => Err(format!("no check for scheme {other}")),
    }
}

/// Bytes of the files under `dir` (the keystores; the coordinator's SQLite file excepted).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) if e.file_name().to_string_lossy().starts_with("coordinator.db") => 0,
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}
