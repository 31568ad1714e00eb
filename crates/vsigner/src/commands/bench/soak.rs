//! `vsigner bench soak`: many signature requests through the whole system (the demo's, see
//! [`crate::system`]), optionally on a PostgreSQL coordinator, then an account of every one
//! of them from two independent sources:
//!
//! - **the coordinator's records**, read back page by page: every accepted request is one
//!   completed operation whose signature verifies here (with the curve libraries, over the
//!   message as sent: EIP-191 for ECDSA), no operation exists that was not requested, no
//!   message was signed twice, and no presignature is named by two signatures;
//! - **the devices' own logs** (their spans and `presignature` events, collected by
//!   [`StageRecorder`]): no device ran an operation's protocol twice, and no device took a
//!   presignature twice.
//!
//! Most requests are EdDSA; every `--ecdsa-every`th is an ECDSA message signature, which takes
//! a presignature when the pool has one (the daemons keep [`PRESIGNATURE_POOL`] per vault)
//! and runs the full protocol otherwise. The command fails when a request was refused, lost,
//! duplicated, or a presignature reused, or when the records and the logs disagree.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::{json, Value};
use sha3::{Digest as _, Keccak256};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::Layer as _;

use super::e2e::{percentile, presignature_pool_of, round};
use super::stages::StageRecorder;
use crate::commands::demo::verify;
use crate::operator::text;
use crate::system::primes::{prime_sets, PrimesUsed, PUBLIC_PRIMES_WARNING};
use crate::system::{LocalSystem, SystemSettings};

/// `vsigner bench soak` options.
// No `Debug`: `--broker` and `--database` may carry a password.
#[derive(clap::Args)]
pub(crate) struct SoakArgs {
    /// Print one JSON document instead of a summary.
    #[arg(long)]
    json: bool,
    /// Signature requests.
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Requests kept in flight.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Every Nth request is an ECDSA (secp256k1) message signature, with a presignature when
    /// one is ready; the others are EdDSA. 0: EdDSA only.
    #[arg(long, default_value_t = 50)]
    ecdsa_every: usize,
    /// Where the system runs.
    #[command(flatten)]
    system: super::SystemArgs,
}

/// Presignatures each ECDSA vault's keeper holds ready.
const PRESIGNATURE_POOL: u32 = 4;
const DEVICES: u16 = 3;
const THRESHOLD: u16 = 2;

/// What became of one request.
struct Outcome {
    ecdsa: bool,
    message: String,
    /// The operation, when the coordinator accepted the request.
    id: Option<String>,
    /// The final operation, or why it was not seen final.
    end: anyhow::Result<Value>,
    ms: f64,
}

/// Latencies of one kind of request.
#[derive(Serialize)]
struct KindReport {
    operation: &'static str,
    requests: usize,
    p50_ms: f64,
    p95_ms: f64,
    max_ms: f64,
}

/// The account of every request.
#[derive(Serialize, Default)]
struct Account {
    /// Requests the coordinator accepted.
    accepted: usize,
    /// Refused by the coordinator (never an operation).
    refused: usize,
    /// Completed, with a signature that verifies over the message sent.
    signed: usize,
    /// Accepted but not completed with a valid signature (failed, expired, missing from the
    /// records, still open, or a signature that does not verify).
    lost: usize,
    /// Operations in the records that were not requested, messages signed more than once, and
    /// protocol runs a device made twice.
    duplicated: usize,
    /// Signatures that used a presignature.
    presignatures_used: usize,
    /// Presignatures named by two signatures in the records or taken twice by a device.
    presignatures_reused: usize,
    /// Presignatures the devices' logs show taken (device, presignature).
    presignatures_taken_by_devices: usize,
    /// Where the records and the devices' logs disagree: a signature fewer devices ran than
    /// the threshold, or presigned signatures whose parts the devices did not take.
    unaccounted: usize,
    /// The first few problems, in words.
    problems: Vec<String>,
}

#[derive(Serialize)]
struct Report {
    cores: usize,
    broker: String,
    database: String,
    primes: PrimesUsed,
    requests: usize,
    in_flight: usize,
    seconds: f64,
    signatures_per_second: f64,
    kinds: Vec<KindReport>,
    account: Account,
    /// Peak resident memory of this process (coordinator, broker and all daemons), MiB.
    peak_rss_mib: f64,
}

pub(crate) fn run(args: SoakArgs) -> anyhow::Result<()> {
    if args.requests == 0 || args.in_flight == 0 {
        bail!("--requests and --in-flight must be at least 1");
    }
    crate::harden();
    let recorder = StageRecorder::default();
    // The daemons' spans and their `presignature` events; nothing else is kept.
    let observer = recorder.clone().with_filter(filter_fn(|m| {
        m.target().starts_with("vsigner")
            && *m.level() <= tracing::Level::INFO
            && (m.is_span() || m.fields().field("presignature").is_some())
    }));
    vsigner_signer::telemetry::init_stderr_observed(crate::commands::demo::QUIET_LOGS, Box::new(observer))?;
    let source = args.system.prime_source();
    let (sets, primes) = prime_sets(&source, usize::from(DEVICES))?;
    if primes.public {
        eprintln!("note: {PUBLIC_PRIMES_WARNING}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vsigner-bench")
        .build()?;
    let report = runtime.block_on(soak(&args, sets, primes, &recorder));
    runtime.shutdown_timeout(Duration::from_secs(5));
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    let a = &report.account;
    if a.refused + a.lost + a.duplicated + a.presignatures_reused + a.unaccounted > 0 {
        bail!(
            "the soak found {} refused, {} lost, {} duplicated, {} reused presignatures, {} unaccounted: {}",
            a.refused,
            a.lost,
            a.duplicated,
            a.presignatures_reused,
            a.unaccounted,
            a.problems.join("; ")
        );
    }
    Ok(())
}

async fn soak(
    args: &SoakArgs,
    sets: Vec<vsigner_tss::primes::PrimeSet>,
    primes: PrimesUsed,
    recorder: &StageRecorder,
) -> anyhow::Result<Report> {
    let say = |s: String| {
        if !args.json {
            eprintln!("{s}");
        }
    };
    let mut system = LocalSystem::start(SystemSettings {
        broker: args.system.broker.clone(),
        coordinator_database: args.system.database.clone(),
        presignature_pool_target: PRESIGNATURE_POOL,
        poll_interval_seconds: Some(0.25),
        allow_public_test_primes: primes.public,
    })
    .await?;
    for (i, set) in sets.into_iter().enumerate() {
        system.add_signer(&format!("device-{}", i + 1), &[set]).await?;
    }
    // Signing committees are the first devices, those the presignatures are made for (the
    // others abstain on signatures), so that an ECDSA request takes one when the pool has it.
    let ids: Vec<String> = system.signers.iter().map(|s| s.device_id.clone()).collect();
    system
        .approver
        .abstain_on_signatures(&ids[usize::from(THRESHOLD)..]);
    say(format!(
        "creating a {THRESHOLD}-of-{DEVICES} EdDSA vault and ECDSA vault …"
    ));
    let ((ed, _), (secp, _)) = tokio::try_join!(
        system.create_vault("soak ed25519", "ed25519", THRESHOLD),
        system.create_vault("soak secp256k1", "secp256k1", THRESHOLD),
    )?;
    if args.ecdsa_every > 0 {
        presignature_pool_of(&system, text(&secp["id"]), PRESIGNATURE_POOL).await?;
    }
    recorder.clear();
    // Messages of this run only (the database may hold earlier runs).
    let run_tag = {
        let mut tag = [0u8; 4];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut tag);
        hex::encode(tag)
    };
    let done = AtomicUsize::new(0);
    say(format!(
        "{} signature requests, {} in flight{} …",
        args.requests,
        args.in_flight,
        if args.ecdsa_every > 0 {
            format!(", every {}th ECDSA", args.ecdsa_every)
        } else {
            String::new()
        }
    ));
    let start = Instant::now();
    let ledger = RunLedger::default();
    let (system_ref, done_ref, ledger_ref) = (&system, &done, &ledger);
    let (ed_id, secp_id) = (text(&ed["id"]), text(&secp["id"]));
    let outcomes: Vec<Outcome> = futures::stream::iter(0..args.requests)
        .map(|r| {
            let ecdsa = args.ecdsa_every > 0 && (r + 1) % args.ecdsa_every == 0;
            let message = format!("soak {run_tag} {r}");
            let vault = if ecdsa { secp_id } else { ed_id };
            async move {
                let sent = Instant::now();
                let input = json!({"vaultId": vault, "message": hex::encode(&message)});
                let (id, end) = match system_ref.operator.request_signature(input).await {
                    Err(e) => (None, Err(e)),
                    Ok(op) => {
                        let id = text(&op["id"]).to_owned();
                        let end = system_ref
                            .operator
                            .wait_final(&id, Duration::from_secs(600))
                            .await;
                        (Some(id), end)
                    }
                };
                if let Some(id) = &id {
                    ledger_ref.ended(id, recorder);
                }
                let n = done_ref.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 1000 == 0 {
                    eprintln!(
                        "  {n} of {} in {:.0} s",
                        args.requests,
                        start.elapsed().as_secs_f64()
                    );
                }
                Outcome {
                    ecdsa,
                    message,
                    id,
                    end,
                    ms: sent.elapsed().as_secs_f64() * 1e3,
                }
            }
        })
        .buffer_unordered(args.in_flight)
        .collect()
        .await;
    let seconds = start.elapsed().as_secs_f64();
    // The devices close their spans just after their submissions.
    tokio::time::sleep(LEDGER_DELAY).await;
    let runs = ledger.drain(recorder, None);
    say("reading back the coordinator's records …".to_owned());
    let account = account(&system, &ed, &secp, &outcomes, runs, recorder).await?;
    let kinds = [("eddsa_sign", false), ("ecdsa_sign_message", true)]
        .into_iter()
        .filter_map(|(operation, ecdsa)| {
            let mut ms: Vec<f64> = outcomes
                .iter()
                .filter(|o| o.ecdsa == ecdsa)
                .map(|o| o.ms)
                .collect();
            ms.sort_by(f64::total_cmp);
            (!ms.is_empty()).then(|| KindReport {
                operation,
                requests: ms.len(),
                p50_ms: round(percentile(&ms, 50.0)),
                p95_ms: round(percentile(&ms, 95.0)),
                max_ms: round(ms.last().copied().unwrap_or(f64::NAN)),
            })
        })
        .collect();
    system.shutdown().await;
    Ok(Report {
        cores: num_cpus::get(),
        broker: shown(args.system.broker.as_deref(), "embedded (rumqttd)"),
        database: shown(args.system.database.as_deref(), "SQLite (temporary file)"),
        primes,
        requests: args.requests,
        in_flight: args.in_flight,
        seconds: round(seconds),
        signatures_per_second: round(account.signed as f64 / seconds),
        kinds,
        account,
        peak_rss_mib: super::peak_rss_mib(),
    })
}

/// A URL without its user information (it may carry a password).
fn shown(url: Option<&str>, default: &str) -> String {
    match url {
        Some(u) => url::Url::parse(u).map_or_else(
            |_| "(given)".to_owned(),
            |u| vsigner_signer::config::shown_url(&u),
        ),
        None => default.to_owned(),
    }
}

/// EIP-191's hash of a personal message (what an ECDSA `message` request signs).
pub(super) fn eip191(message: &[u8]) -> [u8; 32] {
    let mut h = Keccak256::new();
    h.update(format!("\x19Ethereum Signed Message:\n{}", message.len()));
    h.update(message);
    h.finalize().into()
}

/// How long after an operation ended its devices' spans are read (the devices close them just
/// after their submissions; the operation completes with the first).
const LEDGER_DELAY: Duration = Duration::from_secs(2);

/// The devices' protocol runs of the ended operations, read from the recorder while the soak
/// goes on, so that it does not hold every operation's spans at once.
#[derive(Default)]
struct RunLedger {
    ended: std::sync::Mutex<LedgerState>,
}

/// How often each device ran each operation's protocol, by operation.
type Runs = HashMap<String, HashMap<String, usize>>;

/// The operations whose runs are still to be read (and when they ended), and the runs read.
#[derive(Default)]
struct LedgerState {
    pending: std::collections::VecDeque<(String, Instant)>,
    runs: Runs,
}

impl RunLedger {
    /// Operation `id` ended now; reads the runs of those that ended [`LEDGER_DELAY`] ago.
    fn ended(&self, id: &str, recorder: &StageRecorder) {
        let now = Instant::now();
        {
            let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
            ended.pending.push_back((id.to_owned(), now));
        }
        self.drain(recorder, Some(now));
    }

    /// Reads the runs of the operations that ended [`LEDGER_DELAY`] before `now` (all with
    /// `None`); returns everything read so far.
    fn drain(&self, recorder: &StageRecorder, now: Option<Instant>) -> Runs {
        let mut guard = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        let LedgerState { pending, runs } = &mut *guard;
        while let Some((_, at)) = pending.front() {
            if now.is_some_and(|now| now.saturating_duration_since(*at) < LEDGER_DELAY) {
                break;
            }
            let Some((id, _)) = pending.pop_front() else { break };
            runs.insert(id.clone(), recorder.runs_by_device(&id));
        }
        // The coordinator calls are not needed here.
        drop(recorder.take_calls());
        if now.is_none() {
            return std::mem::take(runs);
        }
        HashMap::new()
    }
}

/// What the devices' own logs say.
#[derive(Default)]
struct DeviceLogs {
    /// How often each device ran each operation's protocol, by operation.
    runs: Runs,
    /// How often each device took each presignature, by (device, presignature).
    taken: HashMap<(String, String), u32>,
}

/// Accounts for every request from the coordinator's records and the devices' logs.
async fn account(
    system: &LocalSystem,
    ed: &Value,
    secp: &Value,
    outcomes: &[Outcome],
    runs: Runs,
    recorder: &StageRecorder,
) -> anyhow::Result<Account> {
    // The records: every sign operation of both vaults (vaults of this run only).
    let mut signs = Vec::new();
    for vault in [ed, secp] {
        signs.extend(
            system
                .operator
                .all_operations_of(text(&vault["id"]), "Sign")
                .await?,
        );
    }
    let presigns = system
        .operator
        .all_operations_of(text(&secp["id"]), "Presign")
        .await?;
    // Runs recorded after their operation's spans were read (a late second run).
    let mut runs = runs;
    for id in outcomes.iter().filter_map(|o| o.id.as_deref()) {
        for (device, n) in recorder.runs_by_device(id) {
            *runs.entry(id.to_owned()).or_default().entry(device).or_default() += n;
        }
    }
    let logs = DeviceLogs {
        runs,
        taken: recorder.presignatures_taken(),
    };
    let key =
        |vault: &Value| hex::decode(text(&vault["publicKey"])).context("a vault's public key is not hex");
    Ok(reckon(
        (&key(ed)?, &key(secp)?),
        &signs,
        &presigns,
        outcomes,
        &logs,
    ))
}

fn problem(a: &mut Account, p: String) {
    if a.problems.len() < 10 {
        a.problems.push(p);
    }
}

/// The account of `outcomes` against the sign and presign records and the devices' logs;
/// `keys` are the EdDSA and the ECDSA vault's public keys.
fn reckon(
    (ed_key, secp_key): (&[u8], &[u8]),
    signs: &[Value],
    presigns: &[Value],
    outcomes: &[Outcome],
    logs: &DeviceLogs,
) -> Account {
    let mut a = Account::default();
    let mut records: HashMap<&str, &Value> = HashMap::new();
    let mut messages: HashMap<&str, usize> = HashMap::new();
    for op in signs {
        *messages.entry(text(&op["sign"]["payload"])).or_default() += 1;
        if records.insert(text(&op["id"]), op).is_some() {
            a.duplicated += 1;
            problem(&mut a, format!("operation {} is listed twice", text(&op["id"])));
        }
    }
    let requested: HashSet<&str> = outcomes.iter().filter_map(|o| o.id.as_deref()).collect();
    for id in records.keys().filter(|id| !requested.contains(*id)) {
        a.duplicated += 1;
        problem(
            &mut a,
            format!("operation {id} is in the records but was never requested"),
        );
    }
    for (payload, n) in messages.iter().filter(|(_, n)| **n > 1) {
        a.duplicated += n - 1;
        problem(&mut a, format!("message {payload} has {n} operations"));
    }
    let mut signed_with: Vec<&str> = Vec::new();
    for o in outcomes {
        let Some(id) = o.id.as_deref() else {
            a.refused += 1;
            if let Err(e) = &o.end {
                problem(&mut a, format!("request refused: {e:#}"));
            }
            continue;
        };
        a.accepted += 1;
        let Some(op) = records.get(id) else {
            a.lost += 1;
            problem(&mut a, format!("operation {id} is missing from the records"));
            continue;
        };
        if op["state"] != "Completed" {
            a.lost += 1;
            let why = match &o.end {
                Err(e) => format!("{e:#}"),
                Ok(end) => format!("{} {}", text(&end["state"]), end["failure"]["reason"]),
            };
            problem(&mut a, format!("operation {id} is {}: {why}", text(&op["state"])));
            continue;
        }
        let signature = hex::decode(text(&op["result"]["signature"])).unwrap_or_default();
        let checked = if o.ecdsa {
            let recovery = op["result"]["recoveryId"]
                .as_u64()
                .and_then(|r| u8::try_from(r).ok())
                .unwrap_or(u8::MAX);
            verify::secp256k1(secp_key, &eip191(o.message.as_bytes()), &signature, recovery)
        } else {
            verify::ed25519(ed_key, o.message.as_bytes(), &signature)
        };
        if let Err(e) = checked {
            a.lost += 1;
            problem(&mut a, format!("operation {id}: {e}"));
            continue;
        }
        if op["sign"]["payload"] != hex::encode(&o.message) {
            a.lost += 1;
            problem(&mut a, format!("operation {id} signed another message"));
            continue;
        }
        a.signed += 1;
        if let Some(p) = op["sign"]["presignatureId"].as_str() {
            a.presignatures_used += 1;
            signed_with.push(p);
        }
        // The devices' logs: each ran the protocol at most once, and a quorum ran it.
        let runs = logs.runs.get(id).cloned().unwrap_or_default();
        for (device, n) in runs.iter().filter(|(_, n)| **n > 1) {
            a.duplicated += n - 1;
            problem(&mut a, format!("device {device} ran operation {id} {n} times"));
        }
        if runs.len() < usize::from(THRESHOLD) {
            a.unaccounted += 1;
            problem(
                &mut a,
                format!("the devices' logs show {} runs of operation {id}", runs.len()),
            );
        }
    }
    // Presignatures: each named by one sign record (whatever its state), recorded as consumed
    // by it, and taken once by each device of a quorum.
    let mut named: HashMap<&str, Vec<&str>> = HashMap::new();
    for op in signs {
        if let Some(p) = op["sign"]["presignatureId"].as_str() {
            named.entry(p).or_default().push(text(&op["id"]));
        }
    }
    for (p, by) in named.iter().filter(|(_, by)| by.len() > 1) {
        a.presignatures_reused += by.len() - 1;
        problem(&mut a, format!("presignature {p} is named by {}", by.join(", ")));
    }
    let mut consumed: HashMap<&str, &str> = HashMap::new();
    for op in presigns {
        let id = text(&op["id"]);
        if let Some(by) = op["presign"]["consumedBy"].as_str() {
            consumed.insert(id, by);
            match records.get(by) {
                None => {
                    a.unaccounted += 1;
                    problem(
                        &mut a,
                        format!("presignature {id} is consumed by {by}, which is not in the records"),
                    );
                }
                Some(s) if s["sign"]["presignatureId"] != id => {
                    a.presignatures_reused += 1;
                    problem(
                        &mut a,
                        format!("presignature {id} is consumed by {by}, which names another"),
                    );
                }
                Some(_) => {}
            }
        }
    }
    for (p, by) in &named {
        if !consumed.get(p).is_some_and(|c| by.contains(c)) {
            a.unaccounted += 1;
            problem(
                &mut a,
                format!(
                    "presignature {p} is not recorded as consumed by {}",
                    by.join(", ")
                ),
            );
        }
    }
    let mut takers: HashMap<&str, usize> = HashMap::new();
    for ((device, p), n) in &logs.taken {
        a.presignatures_taken_by_devices += 1;
        *takers.entry(p.as_str()).or_default() += 1;
        if *n > 1 {
            a.presignatures_reused += 1;
            problem(&mut a, format!("device {device} took presignature {p} {n} times"));
        }
    }
    for p in signed_with {
        let n = takers.get(p).copied().unwrap_or(0);
        if n < usize::from(THRESHOLD) {
            a.unaccounted += 1;
            problem(
                &mut a,
                format!("the devices' logs show presignature {p} taken by {n} devices, not {THRESHOLD}"),
            );
        }
    }
    a
}

fn print_summary(r: &Report) {
    let a = &r.account;
    println!(
        "{} requests, {} in flight, in {:.1} s: {:.1} signatures/s (broker {}, coordinator on {}, {} cores)",
        r.requests, r.in_flight, r.seconds, r.signatures_per_second, r.broker, r.database, r.cores
    );
    for k in &r.kinds {
        println!(
            "  {:<20} {:>6} requests  p50 {:>7.1} ms  p95 {:>7.1} ms  max {:>8.1} ms",
            k.operation, k.requests, k.p50_ms, k.p95_ms, k.max_ms
        );
    }
    println!(
        "accepted {}, refused {}, signed and verified {}, lost {}, duplicated {}, unaccounted {}",
        a.accepted, a.refused, a.signed, a.lost, a.duplicated, a.unaccounted
    );
    println!(
        "presignatures used {}, reused {} (device parts taken: {}); peak memory {:.0} MiB",
        a.presignatures_used, a.presignatures_reused, a.presignatures_taken_by_devices, r.peak_rss_mib
    );
    for p in &a.problems {
        println!("  problem: {p}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer as _;

    struct Run {
        ed: ed25519_dalek::SigningKey,
        secp: k256::ecdsa::SigningKey,
        signs: Vec<Value>,
        outcomes: Vec<Outcome>,
        logs: DeviceLogs,
    }

    impl Run {
        fn new() -> Run {
            Run {
                ed: ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
                secp: k256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap(),
                signs: Vec::new(),
                outcomes: Vec::new(),
                logs: DeviceLogs::default(),
            }
        }

        /// A request the devices signed (two of them ran it), with `presignature` if given.
        fn signed(&mut self, id: &str, message: &str, presignature: Option<&str>) {
            let (signature, recovery) = match presignature {
                None => (self.ed.sign(message.as_bytes()).to_bytes().to_vec(), 0),
                Some(p) => {
                    let (sig, recid) = self
                        .secp
                        .sign_prehash_recoverable(&eip191(message.as_bytes()))
                        .unwrap();
                    for device in ["d1", "d2"] {
                        self.logs.taken.insert((device.into(), p.into()), 1);
                    }
                    (sig.to_bytes().to_vec(), recid.to_byte())
                }
            };
            let op = json!({"id": id, "state": "Completed",
                "sign": {"payload": hex::encode(message), "presignatureId": presignature},
                "result": {"signature": hex::encode(signature), "recoveryId": recovery}});
            self.signs.push(op.clone());
            self.outcomes.push(Outcome {
                ecdsa: presignature.is_some(),
                message: message.into(),
                id: Some(id.into()),
                end: Ok(op),
                ms: 1.0,
            });
            self.logs
                .runs
                .insert(id.into(), HashMap::from([("d1".into(), 1), ("d2".into(), 1)]));
        }

        fn account(&self, presigns: &[Value]) -> Account {
            let ed = self.ed.verifying_key().to_bytes();
            let secp = self.secp.verifying_key().to_sec1_bytes();
            reckon((&ed, &secp), &self.signs, presigns, &self.outcomes, &self.logs)
        }
    }

    #[test]
    fn a_clean_run_is_all_signed() {
        let mut run = Run::new();
        run.signed("op1", "m1", None);
        run.signed("op2", "m2", Some("pre1"));
        let a = run.account(&[json!({"id": "pre1", "presign": {"consumedBy": "op2"}})]);
        assert_eq!(
            (a.accepted, a.signed, a.lost, a.duplicated),
            (2, 2, 0, 0),
            "{:?}",
            a.problems
        );
        assert_eq!(
            (a.presignatures_used, a.presignatures_reused, a.unaccounted),
            (1, 0, 0)
        );
    }

    #[test]
    fn lost_requests_are_counted() {
        let mut run = Run::new();
        run.signed("op1", "m1", None);
        run.signed("op2", "m2", None);
        run.signed("op3", "m3", None);
        run.signs[0]["result"]["signature"] = json!(hex::encode([1u8; 64]));
        run.signs[1]["state"] = json!("Failed");
        run.signs.remove(2);
        let a = run.account(&[]);
        assert_eq!((a.signed, a.lost), (0, 3), "{:?}", a.problems);
    }

    #[test]
    fn duplicates_are_counted() {
        let mut run = Run::new();
        run.signed("op1", "m1", None);
        // An operation nobody requested, for a message already signed.
        let mut extra = run.signs[0].clone();
        extra["id"] = json!("op9");
        run.signs.push(extra);
        // A device that ran an operation twice.
        run.logs.runs.get_mut("op1").unwrap().insert("d1".into(), 2);
        let a = run.account(&[]);
        assert_eq!(a.duplicated, 3, "{:?}", a.problems);
    }

    #[test]
    fn reused_presignatures_are_counted() {
        let mut run = Run::new();
        run.signed("op1", "m1", Some("pre1"));
        run.signed("op2", "m2", Some("pre1"));
        run.logs.taken.insert(("d1".into(), "pre1".into()), 2);
        let a = run.account(&[json!({"id": "pre1", "presign": {"consumedBy": "op1"}})]);
        // Named by two signatures, and taken twice by d1.
        assert_eq!(a.presignatures_reused, 2, "{:?}", a.problems);
        assert_eq!(a.signed, 2);
    }

    #[test]
    fn records_and_logs_must_agree() {
        let mut run = Run::new();
        run.signed("op1", "m1", Some("pre1"));
        run.logs.taken.clear();
        run.logs.runs.get_mut("op1").unwrap().remove("d2");
        let a = run.account(&[]);
        // Runs of one device only; presignature parts taken by none; not recorded consumed.
        assert_eq!(a.unaccounted, 3, "{:?}", a.problems);
    }
}
