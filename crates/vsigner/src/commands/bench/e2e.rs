//! `vsigner bench e2e`: latency of signature requests through the whole system (operator →
//! coordinator → MQTT notification → approval webhook → votes → protocol over MQTT →
//! verified result), next to the bare protocol cost measured by `bench protocols` in the
//! same run.
//!
//! The system is the demo's ([`crate::system`]): one process, every device its own daemon
//! and keystore, all parties sharing this machine's cores. Every signing committee is the
//! first T devices (the others' approver abstains), so the ECDSA figures with and without
//! presignatures are for the same committee, and the presignature pool (kept by the vault's
//! first signer) is for that committee. Each presignature request is made when the pool is
//! full again, so that no background presigning runs while a signature is measured.
//!
//! With `--throughput`, EdDSA requests are kept in flight (a closed loop), then ECDSA message
//! signatures are sent at 80 % of the presign CPU bound (an open loop) while the keeper
//! presigns; the bound comes from the bare protocols, measured first.
//!
//! Vault creation is timed on the same devices once they hold aux-info (made by the first
//! ECDSA keygen): from `createVault` to the coordinator's completed keygen. After each new
//! ECDSA vault its presignature pool is filled before the next one is created.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand_core::OsRng;
use serde::Serialize;
use serde_json::{json, Value};
use sha3::{Digest as _, Keccak256};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::Layer as _;
use vsigner_tss::ecdsa::{AuxInfoOptions, KeyShare, Secp256k1, Secp256r1};
use vsigner_tss::primes::PrimeSet;
use vsigner_tss::simulation::local;
use vsigner_tss::ProtocolTag;

use super::stages::{self, StageRecorder, StageReport, Stages};
use super::{bip340_signing, ecdsa_signing, ed25519_signing, eid, p256_signing, Measurement};
use crate::operator::text;
use crate::system::primes::{prime_sets, PrimeSource, PrimesUsed, PUBLIC_PRIMES_WARNING};
use crate::system::{LocalSystem, SystemSettings};

/// `vsigner bench e2e` options.
// No `Debug`: `--broker` may carry a password.
#[derive(clap::Args)]
pub(crate) struct E2eArgs {
    /// Print one JSON document instead of a table.
    #[arg(long)]
    json: bool,
    /// Signatures measured per kind (and vault creations per scheme, at most 10).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Virtual devices.
    #[arg(long, default_value_t = 3)]
    devices: u16,
    /// Signatures needed.
    #[arg(long, default_value_t = 2)]
    threshold: u16,
    /// An MQTT broker (`mqtt://host:port`, e.g. Mosquitto) instead of the embedded one.
    #[arg(long)]
    broker: Option<String>,
    /// Prime pool file for the devices' aux-info (default: the public test pool; missing
    /// sets are generated).
    #[arg(long)]
    primes: Option<std::path::PathBuf>,
    /// Also time each stage of every signature (notification, approval, vote, quorum,
    /// start, each protocol round, submission) from the daemons' spans.
    #[arg(long)]
    trace: bool,
    /// Also measure throughput: keep this many EdDSA signature requests in flight against
    /// one vault and report sustained signatures per second; then ECDSA message signatures
    /// at 80 % of the presign CPU bound, presignatures made meanwhile.
    #[arg(long, value_name = "IN_FLIGHT")]
    throughput: Option<usize>,
    /// Requests of the throughput measurement.
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// With `--throughput`: ECDSA message signatures of the presigned throughput measurement,
    /// sent at 80 % of the presign CPU bound measured by `bench protocols` in the same run.
    #[arg(long, default_value_t = 40)]
    presigned_requests: usize,
}

/// Presignatures the vault's keeper holds ready.
const PRESIGNATURE_POOL: u32 = 2;
/// With `--throughput`: deep enough to carry the paced presigned measurement over the
/// keeper's check interval.
const PRESIGNATURE_POOL_FOR_THROUGHPUT: u32 = 8;
/// The presigned throughput measurement offers this share of the presign CPU bound.
const PRESIGNED_PACE: f64 = 0.8;

/// What `--throughput` measures.
struct ThroughputPlan {
    /// EdDSA requests kept in flight.
    in_flight: usize,
    /// EdDSA requests.
    requests: usize,
    /// ECDSA message signatures, sent at `presigned_rate` a second.
    presigned_requests: usize,
    presigned_rate: f64,
}

/// The daemons poll this often (their presignature keeper checks every 5 polls, at most twice a
/// second).
const POLL_SECONDS: f64 = 0.25;

#[derive(Serialize)]
struct Latency {
    operation: &'static str,
    threshold: u16,
    devices: u16,
    runs: usize,
    p50_ms: f64,
    p95_ms: f64,
    min_ms: f64,
    max_ms: f64,
    /// The `bench protocols` operation it is compared with.
    protocol: &'static str,
    /// Its median (all parties on one thread: the sum of their CPU time).
    protocol_median_ms: f64,
    /// `p50_ms / protocol_median_ms`.
    ratio: f64,
}

/// Sustained signing of one kind with many requests in flight.
#[derive(Serialize)]
struct Throughput {
    operation: &'static str,
    requests: usize,
    /// Requests kept in flight (a closed loop).
    #[serde(skip_serializing_if = "Option::is_none")]
    in_flight: Option<usize>,
    /// Requests sent per second whatever the system does (an open loop).
    #[serde(skip_serializing_if = "Option::is_none")]
    offered_per_second: Option<f64>,
    /// Completed signatures per second of wall time, first request to last result.
    signatures_per_second: f64,
    p50_ms: f64,
    p95_ms: f64,
    /// ECDSA: the signatures that used a presignature (the others ran the full protocol:
    /// the pool was empty when they came).
    #[serde(skip_serializing_if = "Option::is_none")]
    with_presignature: Option<usize>,
    /// ECDSA: what the cores can presign and sign per second, from `bench protocols` in the
    /// same run: cores × 1000 / (`ecdsa_presign` + `ecdsa_sign_online` median ms, every
    /// party's CPU time added up).
    #[serde(skip_serializing_if = "Option::is_none")]
    presign_bound_per_second: Option<f64>,
    /// `signatures_per_second / presign_bound_per_second`.
    #[serde(skip_serializing_if = "Option::is_none")]
    of_bound: Option<f64>,
    /// CPU time this process used over the measurement (every thread: coordinator,
    /// daemons, webhook, operator and, unless `--broker`, the broker), per completed
    /// signature (`None` where `/proc` does not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_ms_per_signature: Option<f64>,
    /// What the cores could sign per second at that CPU cost: cores × 1000 /
    /// `cpu_ms_per_signature`.
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_bound_per_second: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    cores: usize,
    broker: String,
    note: &'static str,
    primes: PrimesUsed,
    end_to_end: Vec<Latency>,
    protocols: Vec<Measurement>,
    /// With `--throughput`: sustained signatures per second.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    throughput: Vec<Throughput>,
    /// With `--trace`: the p50/p95 of each stage, per kind of signature.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stages: Vec<StageReport>,
}

/// Nearest-rank percentile of sorted samples.
pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(super) fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

pub(crate) fn run(args: E2eArgs) -> anyhow::Result<()> {
    let (n, t) = (args.devices, args.threshold);
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.throughput == Some(0) || args.requests == 0 || args.presigned_requests == 0 {
        bail!("--throughput, --requests and --presigned-requests must be at least 1");
    }
    if !(2..=10).contains(&n) || !(2..=n).contains(&t) {
        bail!("--devices must be 2 to 10 and --threshold 2 to --devices (got {t}-of-{n})");
    }
    crate::harden();
    let recorder = args.trace.then(StageRecorder::default);
    let _logs = match &recorder {
        Some(recorder) => {
            // Only the daemons' spans: the recorder needs no events and no dependency's spans.
            let observer = recorder.clone().with_filter(filter_fn(|m| {
                m.is_span() && m.target().starts_with("vsigner") && *m.level() <= tracing::Level::INFO
            }));
            vsigner_signer::telemetry::init_stderr_observed(
                crate::commands::demo::QUIET_LOGS,
                Box::new(observer),
            )?;
            None
        }
        None => Some(vsigner_signer::telemetry::init_stderr(
            crate::commands::demo::QUIET_LOGS,
        )?),
    };
    let source = args
        .primes
        .clone()
        .map_or(PrimeSource::PublicTestPool, PrimeSource::File);
    // One set per daemon, one per party of the bare aux-info.
    let (mut sets, primes) = prime_sets(&source, 2 * usize::from(n))?;
    if primes.public {
        eprintln!("note: {PUBLIC_PRIMES_WARNING}");
    }
    let bare_sets = sets.split_off(usize::from(n));
    if !args.json {
        eprintln!("measuring the bare protocols (all parties on one thread, before the system runs) …");
    }
    let aux = local::ecdsa_aux_info(
        eid(ProtocolTag::EcdsaAuxInfo, n, 0),
        bare_sets,
        AuxInfoOptions {
            precompute_multiexp: false,
        },
        || OsRng,
    )?;
    let cores = local::ecdsa_keygen::<Secp256k1, _>(eid(ProtocolTag::EcdsaKeygen, n, 0), n, t, || OsRng)?;
    let shares: Vec<KeyShare<Secp256k1>> = local::ecdsa_key_shares(cores, aux.clone())?;
    let cores = local::ecdsa_keygen::<Secp256r1, _>(eid(ProtocolTag::EcdsaKeygen, n, 1), n, t, || OsRng)?;
    let p256_shares: Vec<KeyShare<Secp256r1>> = local::ecdsa_key_shares(cores, aux)?;
    let runs = args.runs.min(10);
    let mut protocols = ecdsa_signing(&shares, t, runs)?;
    protocols.push(p256_signing(&p256_shares, t, runs)?);
    protocols.push(ed25519_signing(n, t, runs)?);
    protocols.push(bip340_signing(n, t, runs)?);
    protocols.push(super::ecdsa_keygen_cost(n, t, runs)?);
    protocols.push(super::ed25519_keygen_cost(n, t, runs)?);
    let median_of = |op: &str| {
        protocols
            .iter()
            .find(|m| m.operation == op)
            .map(|m| m.median_ms)
            .context("missing protocol measurement")
    };
    let presign_bound =
        num_cpus::get() as f64 * 1e3 / (median_of("ecdsa_presign")? + median_of("ecdsa_sign_online")?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vsigner-bench")
        .build()?;
    let broker = args.broker.clone();
    let samples = runtime.block_on(through_the_system(
        n,
        t,
        args.runs,
        sets,
        primes.public,
        broker,
        args.json,
        recorder,
        args.throughput.map(|in_flight| ThroughputPlan {
            in_flight,
            requests: args.requests,
            presigned_requests: args.presigned_requests,
            presigned_rate: PRESIGNED_PACE * presign_bound,
        }),
    ));
    runtime.shutdown_timeout(Duration::from_secs(5));
    let (samples, mut throughput) = samples?;

    for t in throughput.iter_mut().filter(|t| t.with_presignature.is_some()) {
        t.presign_bound_per_second = Some((presign_bound * 100.0).round() / 100.0);
        t.of_bound = Some((t.signatures_per_second / presign_bound * 100.0).round() / 100.0);
    }
    let mut end_to_end = Vec::new();
    let mut stages = Vec::new();
    for Kind {
        operation,
        protocol,
        mut ms,
        traced,
        calls,
    } in samples
    {
        // Stages are of signatures (vault creations are timed whole).
        if args.trace && operation.contains("sign") {
            stages.push(StageReport::new(operation, &traced, &calls));
        }
        ms.sort_by(f64::total_cmp);
        let base = median_of(protocol)?;
        let p50 = percentile(&ms, 50.0);
        end_to_end.push(Latency {
            operation,
            threshold: t,
            devices: n,
            runs: ms.len(),
            p50_ms: round(p50),
            p95_ms: round(percentile(&ms, 95.0)),
            min_ms: round(ms.first().copied().unwrap_or(f64::NAN)),
            max_ms: round(ms.last().copied().unwrap_or(f64::NAN)),
            protocol,
            protocol_median_ms: (base * 100.0).round() / 100.0,
            ratio: (p50 / base * 10.0).round() / 10.0,
        });
    }
    let report = Report {
        cores: num_cpus::get(),
        // Without user info: a broker URL may carry a password.
        broker: match &args.broker {
            Some(b) => url::Url::parse(b).map_or_else(|_| "(given with --broker)".to_owned(), |u| {
                vsigner_signer::config::shown_url(&u)
            }),
            None => "embedded (rumqttd)".to_owned(),
        },
        note: "end to end: from the operator's request to the coordinator's verified result, seen through waitForOperation, every party a daemon in this process; protocol: all parties on one thread, no network",
        primes,
        end_to_end,
        protocols,
        throughput,
        stages,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
        for t in &report.throughput {
            let load = match (t.in_flight, t.offered_per_second) {
                (Some(n), _) => format!("{n} in flight"),
                (None, Some(rate)) => format!("offered at {rate:.2}/s"),
                (None, None) => String::new(),
            };
            println!(
                "\nthroughput {}: {:.1} signatures/s ({} requests, {load}; p50 {:.1} ms, p95 {:.1} ms)",
                t.operation, t.signatures_per_second, t.requests, t.p50_ms, t.p95_ms
            );
            if let (Some(cpu), Some(bound)) = (t.cpu_ms_per_signature, t.cpu_bound_per_second) {
                println!(
                    "  {cpu:.1} ms of CPU per signature in this process ({:.0} % of {} cores busy): at that cost the cores sign at most {bound:.0}/s",
                    t.signatures_per_second * cpu / 10.0 / report.cores as f64,
                    report.cores
                );
            }
            if let (Some(used), Some(bound), Some(of)) =
                (t.with_presignature, t.presign_bound_per_second, t.of_bound)
            {
                println!(
                    "  {used} of {} with a presignature; presign CPU bound {bound:.2} signatures/s on {} cores: {:.0} % of it",
                    t.requests,
                    report.cores,
                    of * 100.0
                );
            }
        }
        stages::print_table(&report.stages);
    }
    Ok(())
}

/// The measurements of one kind of signature.
struct Kind {
    operation: &'static str,
    /// The `bench protocols` operation it is compared with.
    protocol: &'static str,
    ms: Vec<f64>,
    /// With `--trace`: the stages of each signature.
    traced: Vec<Stages>,
    /// With `--trace`: the devices' coordinator calls meanwhile, by call.
    calls: HashMap<String, Vec<Duration>>,
}

impl Kind {
    fn new(operation: &'static str, protocol: &'static str) -> Kind {
        Kind {
            operation,
            protocol,
            ms: Vec::new(),
            traced: Vec::new(),
            calls: HashMap::new(),
        }
    }

    /// Requests one signature and records its latency (and stages): the completed operation.
    async fn measure(
        &mut self,
        system: &LocalSystem,
        recorder: Option<&StageRecorder>,
        input: Value,
        what: &str,
    ) -> anyhow::Result<Value> {
        if let Some(r) = recorder {
            // Spans of other work (keygens, presignatures) are not measured.
            r.clear();
        }
        let (op, timing) = system.sign_timed(input, what).await?;
        self.ms.push((timing.seen - timing.sent).as_secs_f64() * 1e3);
        if let Some(r) = recorder {
            // The devices close their spans just after the submission, which the operator may
            // see first: give them a moment (more on a loaded machine).
            let waited = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                match Stages::of(r, text(&op["id"]), timing.sent, timing.answered, timing.seen) {
                    Some(stages) => {
                        self.traced.push(stages);
                        break;
                    }
                    None if waited.elapsed() < Duration::from_secs(2) => {}
                    None => {
                        eprintln!(
                            "note: {what} {}: incomplete spans, not in the stage table",
                            text(&op["id"])
                        );
                        break;
                    }
                }
            }
            for (call, d) in r.take_calls() {
                self.calls.entry(call).or_default().extend(d);
            }
        }
        Ok(op)
    }
}

#[allow(clippy::too_many_arguments)]
async fn through_the_system(
    n: u16,
    t: u16,
    runs: usize,
    sets: Vec<PrimeSet>,
    public_primes: bool,
    broker: Option<String>,
    quiet: bool,
    recorder: Option<StageRecorder>,
    throughput: Option<ThroughputPlan>,
) -> anyhow::Result<(Vec<Kind>, Vec<Throughput>)> {
    let say = |s: String| {
        if !quiet {
            eprintln!("{s}");
        }
    };
    let recorder = recorder.as_ref();
    let pool = if throughput.is_some() {
        PRESIGNATURE_POOL_FOR_THROUGHPUT
    } else {
        PRESIGNATURE_POOL
    };
    let mut system = LocalSystem::start(SystemSettings {
        broker,
        presignature_pool_target: pool,
        poll_interval_seconds: Some(POLL_SECONDS),
        allow_public_test_primes: public_primes,
        ..SystemSettings::default()
    })
    .await?;
    for (i, set) in sets.into_iter().enumerate() {
        system.add_signer(&format!("device-{}", i + 1), &[set]).await?;
    }
    let ids: Vec<String> = system.signers.iter().map(|s| s.device_id.clone()).collect();
    system.approver.abstain_on_signatures(&ids[usize::from(t)..]);
    say(format!("creating a {t}-of-{n} vault of each scheme …"));
    let ((secp, _), (ed, _), (bip, _)) = tokio::try_join!(
        system.create_vault("bench secp256k1", "secp256k1", t),
        system.create_vault("bench ed25519", "ed25519", t),
        system.create_vault("bench bip340", "bip340", t),
    )?;
    // After the secp256k1 keygen: the same devices reuse its aux-info.
    let (p256, _) = system.create_vault("bench secp256r1", "secp256r1", t).await?;
    let (secp, ed) = (text(&secp["id"]).to_owned(), text(&ed["id"]).to_owned());
    let (p256, bip) = (text(&p256["id"]).to_owned(), text(&bip["id"]).to_owned());
    presignature_pool_of(&system, &secp, pool).await?;

    let mut full = Kind::new("ecdsa_sign_e2e", "ecdsa_sign_full");
    say(format!("{runs} ECDSA signatures without presignature …"));
    for r in 0..runs {
        let digest = Keccak256::digest(format!("bench {r}").as_bytes());
        let input = json!({"vaultId": secp, "digest": hex::encode(digest)});
        let op = full.measure(&system, recorder, input, "ECDSA signature").await?;
        if !op["sign"]["presignatureId"].is_null() {
            bail!("a digest signature used a presignature");
        }
    }
    let mut p256_full = Kind::new("ecdsa_p256_sign_e2e", "ecdsa_p256_sign_full");
    say(format!("{runs} P-256 ECDSA signatures …"));
    for r in 0..runs {
        let digest = Keccak256::digest(format!("bench {r}").as_bytes());
        let input = json!({"vaultId": p256, "digest": hex::encode(digest)});
        p256_full
            .measure(&system, recorder, input, "P-256 signature")
            .await?;
    }
    let mut eddsa = Kind::new("eddsa_sign_e2e", "frost_ed25519_sign");
    say(format!("{runs} EdDSA signatures …"));
    for r in 0..runs {
        let input = json!({"vaultId": ed, "message": hex::encode(format!("bench {r}"))});
        eddsa.measure(&system, recorder, input, "EdDSA signature").await?;
    }
    let mut taproot = Kind::new("bip340_taproot_sign_e2e", "frost_bip340_sign");
    say(format!("{runs} BIP-340 Taproot signatures …"));
    for r in 0..runs {
        let sighash = Keccak256::digest(format!("bench {r}").as_bytes());
        let input = json!({"vaultId": bip, "digest": hex::encode(sighash), "taproot": true});
        taproot
            .measure(&system, recorder, input, "BIP-340 signature")
            .await?;
    }
    let mut presigned = Kind::new("ecdsa_sign_with_presignature_e2e", "ecdsa_sign_online");
    say(format!(
        "{runs} ECDSA signatures with a presignature (each when the pool is full) …"
    ));
    for r in 0..runs {
        presignature_pool_of(&system, &secp, pool).await?;
        let input = json!({"vaultId": secp, "message": hex::encode(format!("bench {r}"))});
        let op = presigned
            .measure(&system, recorder, input, "ECDSA signature")
            .await?;
        if op["sign"]["presignatureId"].is_null() {
            bail!("a message signature with a full presignature pool did not use a presignature");
        }
    }
    let mut sustained = Vec::new();
    if let Some(ThroughputPlan {
        in_flight,
        requests,
        presigned_requests,
        presigned_rate,
    }) = throughput
    {
        if let Some(r) = recorder {
            r.clear();
        }
        say(format!("{requests} EdDSA signatures, {in_flight} in flight …"));
        sustained.push(
            sustain(
                &system,
                "eddsa_sign",
                in_flight,
                requests,
                |r| json!({"vaultId": ed, "message": hex::encode(format!("throughput {r}"))}),
            )
            .await?,
        );
        // ECDSA message signatures offered at a share of what the cores can presign, from a
        // full pool, the keeper presigning meanwhile (an open loop: requests come at that pace
        // whatever the system does); one that finds the pool empty runs the full protocol.
        presignature_pool_of(&system, &secp, pool).await?;
        say(format!(
            "{presigned_requests} ECDSA message signatures at {presigned_rate:.2}/s, presignatures made meanwhile …"
        ));
        sustained.push(
            paced(
                &system,
                "ecdsa_sign_presigned",
                presigned_rate,
                presigned_requests,
                |r| json!({"vaultId": secp, "message": hex::encode(format!("presigned throughput {r}"))}),
            )
            .await?,
        );
    }
    // Vault creation on devices that already hold aux-info (from the first ECDSA keygen),
    // last: the new vaults' presignature keepers then run during no other measurement.
    let keygens = runs.min(10);
    let mut ecdsa_keygen = Kind::new("ecdsa_keygen_e2e", "ecdsa_keygen");
    say(format!("{keygens} ECDSA (secp256k1) vault creations …"));
    for r in 0..keygens {
        let (vault, took) = system
            .create_vault(&format!("bench keygen secp256k1 {r}"), "secp256k1", t)
            .await?;
        ecdsa_keygen.ms.push(took.as_secs_f64() * 1e3);
        // The new vault's presignatures are made now, not during the next measurement.
        presignature_pool_of(&system, text(&vault["id"]), pool).await?;
    }
    let mut eddsa_keygen = Kind::new("eddsa_keygen_e2e", "frost_ed25519_keygen");
    say(format!("{keygens} EdDSA vault creations …"));
    for r in 0..keygens {
        let (_, took) = system
            .create_vault(&format!("bench keygen ed25519 {r}"), "ed25519", t)
            .await?;
        eddsa_keygen.ms.push(took.as_secs_f64() * 1e3);
    }
    system.shutdown().await;
    Ok((
        vec![
            full,
            presigned,
            p256_full,
            eddsa,
            taproot,
            ecdsa_keygen,
            eddsa_keygen,
        ],
        sustained,
    ))
}

/// Signs `requests` times with `in_flight` requests outstanding at any moment.
async fn sustain(
    system: &LocalSystem,
    operation: &'static str,
    in_flight: usize,
    requests: usize,
    input: impl Fn(usize) -> Value,
) -> anyhow::Result<Throughput> {
    use futures::StreamExt as _;
    // Each request waits for its operation with `waitForOperation` (the coordinator answers
    // when it changes): no polling takes the coordinator's time from the work measured.
    let start = Instant::now();
    let cpu = process_cpu();
    let done: Vec<(f64, bool)> =
        futures::stream::iter((0..requests).map(|r| signed(system, operation, input(r))))
            .buffer_unordered(in_flight)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
    Ok(throughput_of(
        operation,
        Some(in_flight),
        None,
        done,
        start.elapsed(),
        cpu,
    ))
}

/// Sends `requests` signature requests at `rate` a second whatever the system does (an open
/// loop), each waited for.
async fn paced(
    system: &LocalSystem,
    operation: &'static str,
    rate: f64,
    requests: usize,
    input: impl Fn(usize) -> Value,
) -> anyhow::Result<Throughput> {
    let start = Instant::now();
    let cpu = process_cpu();
    let sent = (0..requests).map(|r| {
        let input = input(r);
        let at = start + Duration::from_secs_f64(r as f64 / rate);
        async move {
            tokio::time::sleep_until(at.into()).await;
            signed(system, operation, input).await
        }
    });
    let done = futures::future::join_all(sent)
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    Ok(throughput_of(
        operation,
        None,
        Some(rate),
        done,
        start.elapsed(),
        cpu,
    ))
}

/// Requests one signature and waits for it: its latency in ms, and whether it used a
/// presignature.
async fn signed(system: &LocalSystem, operation: &str, input: Value) -> anyhow::Result<(f64, bool)> {
    let sent = Instant::now();
    let op = system.operator.request_signature(input).await?;
    let op = system.completed(&op, operation, Duration::from_secs(600)).await?;
    let presigned = !op["sign"]["presignatureId"].is_null();
    Ok((sent.elapsed().as_secs_f64() * 1e3, presigned))
}

/// The throughput of `done` (each request's latency and whether it used a presignature)
/// over `wall`, from the first request to the last result; `cpu_at_start` is
/// [`process_cpu`] when the first request was sent.
fn throughput_of(
    operation: &'static str,
    in_flight: Option<usize>,
    offered: Option<f64>,
    done: Vec<(f64, bool)>,
    wall: Duration,
    cpu_at_start: Option<Duration>,
) -> Throughput {
    let requests = done.len();
    let cpu_ms_per_signature = cpu_at_start
        .zip(process_cpu())
        .map(|(start, end)| end.saturating_sub(start).as_secs_f64() * 1e3 / requests as f64)
        .filter(|ms| *ms > 0.0);
    let presigned = done.iter().filter(|(_, p)| *p).count();
    let mut latencies: Vec<f64> = done.into_iter().map(|(ms, _)| ms).collect();
    latencies.sort_by(f64::total_cmp);
    Throughput {
        operation,
        requests,
        in_flight,
        offered_per_second: offered.map(|r| (r * 100.0).round() / 100.0),
        signatures_per_second: round(requests as f64 / wall.as_secs_f64()),
        p50_ms: round(percentile(&latencies, 50.0)),
        p95_ms: round(percentile(&latencies, 95.0)),
        // Set for ECDSA; the bound is added by the caller.
        with_presignature: operation.starts_with("ecdsa").then_some(presigned),
        presign_bound_per_second: None,
        of_bound: None,
        cpu_ms_per_signature: cpu_ms_per_signature.map(round),
        cpu_bound_per_second: cpu_ms_per_signature.map(|ms| round(num_cpus::get() as f64 * 1e3 / ms)),
    }
}

/// CPU time this process has used so far, every thread, user and system (`None` where
/// `/proc/self/stat` does not say).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_of_stat(&stat)
}

/// `utime + stime` of a `/proc/PID/stat` line. They are its 14th and 15th fields, counted
/// in USER_HZ ticks, which Linux fixes at 100 a second for `/proc`. The command name (the
/// 2nd field, in parentheses) may hold spaces and parentheses, so fields are counted after
/// its last `)`.
fn cpu_of_stat(stat: &str) -> Option<Duration> {
    const TICKS_PER_SECOND: u64 = 100;
    let mut after_name = stat.get(stat.rfind(')')? + 1..)?.split_ascii_whitespace();
    // The 3rd field (the state) is the first after the name: utime is 11 further on.
    let utime: u64 = after_name.nth(11)?.parse().ok()?;
    let stime: u64 = after_name.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / TICKS_PER_SECOND))
}

/// Waits until the vault's keeper holds `pool` presignatures and none is being made.
pub(super) async fn presignature_pool_of(system: &LocalSystem, vault: &str, pool: u32) -> anyhow::Result<()> {
    let start = Instant::now();
    let generation = system.operator.vault(vault).await?["keyGeneration"].clone();
    loop {
        // One query per check: every presign operation of the vault, sorted by state here.
        let ops = system.operator.operations_of(vault, "Presign").await?;
        let ops = ops.as_array().map(Vec::as_slice).unwrap_or_default();
        let available = ops
            .iter()
            .filter(|o| {
                o["state"] == "Completed"
                    && o["presign"]["keyGeneration"] == generation
                    && o["presign"]["consumedBy"].is_null()
            })
            .count();
        let busy = ops
            .iter()
            .filter(|o| o["state"] == "Ready" || o["state"] == "InProgress")
            .count();
        if available >= pool as usize && busy == 0 {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(180) {
            bail!("the presignature pool did not fill in 180 s ({available} ready, {busy} being made)");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn print_table(report: &Report) {
    println!(
        "{:<34} {:>7} {:>9} {:>9} {:>22} {:>11} {:>7}",
        "end to end", "t-of-n", "p50 ms", "p95 ms", "protocol (bench)", "median ms", "ratio"
    );
    for l in &report.end_to_end {
        println!(
            "{:<34} {:>7} {:>9.1} {:>9.1} {:>22} {:>11.2} {:>6.1}x",
            l.operation,
            format!("{}-of-{}", l.threshold, l.devices),
            l.p50_ms,
            l.p95_ms,
            l.protocol,
            l.protocol_median_ms,
            l.ratio
        );
    }
    println!(
        "({} runs each on {} cores, broker {}; {})",
        report.end_to_end.first().map_or(0, |l| l.runs),
        report.cores,
        report.broker,
        report.note
    );
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{cpu_of_stat, process_cpu};

    #[test]
    fn cpu_time_is_read_after_a_command_name_with_spaces_and_parentheses() {
        // pid, (comm), state, ppid, pgrp, session, tty, tpgid, flags, minflt, cminflt,
        // majflt, cmajflt, utime (250 ticks), stime (37 ticks), cutime, cstime, …
        let stat = "1234 (vsigner (bench) 1) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 37 9 9 20 0 5 0";
        assert_eq!(cpu_of_stat(stat), Some(Duration::from_millis(2870)));
        assert_eq!(
            cpu_of_stat("1234 (vsigner) S 1 2"),
            None,
            "a cut line says nothing"
        );
        assert_eq!(cpu_of_stat("garbage"), None);
    }

    #[test]
    fn this_process_cpu_time_grows_while_it_computes() {
        let before = process_cpu().expect("Linux's /proc/self/stat");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut x = 0u64;
        loop {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
            if process_cpu().expect("still readable") >= before + Duration::from_millis(50) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "50 ms of computing never showed in /proc/self/stat"
            );
        }
    }
}
