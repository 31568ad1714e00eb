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

mod verify;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use rand_core::RngCore;
use serde::Serialize;
use serde_json::{json, Value};
use sha3::{Digest as _, Keccak256};
use vsigner_tss::primes::PrimeSet;

use crate::operator::text;
use crate::system::approver::REJECT_MARKER;
use crate::system::primes::{prime_sets, PrimeSource, PrimesUsed, PUBLIC_PRIMES_WARNING};
use crate::system::{LocalSystem, SignerSettings};

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
}

// ---- the JSON document (DESIGN.md §4), plus steps, primes and problems ----

#[derive(Serialize)]
struct Report {
    #[serde(flatten)]
    outcome: Outcome,
    primes: PrimesUsed,
    steps: Vec<StepOut>,
    warnings: Vec<String>,
}

/// What the system did: the DESIGN §4 fields, and every check that failed.
#[derive(Serialize, Default)]
struct Outcome {
    vaults: Vec<VaultOut>,
    signatures: Vec<SignatureOut>,
    reshares: Vec<ReshareOut>,
    rejected: Vec<RejectedOut>,
    /// The demo exits 0 only when this is empty.
    problems: Vec<String>,
}

#[derive(Serialize)]
struct VaultOut {
    id: String,
    curve: String,
    threshold: u16,
    devices: usize,
    public_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    keygen_ms: f64,
}

#[derive(Serialize)]
struct SignatureOut {
    vault: String,
    curve: String,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_transaction: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    signature: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_id: Option<u8>,
    signers: Vec<String>,
    signer_names: Vec<String>,
    latency_ms: f64,
    operation: String,
    verified: bool,
}

#[derive(Serialize)]
struct Shape {
    threshold: u16,
    devices: usize,
}

#[derive(Serialize)]
struct ReshareOut {
    vault: String,
    from: Shape,
    to: Shape,
    public_key: String,
    public_key_unchanged: bool,
    joined: Vec<String>,
    operation: String,
    latency_ms: f64,
}

#[derive(Serialize)]
struct RejectedOut {
    vault: String,
    operation: String,
    reason: String,
}

#[derive(Serialize)]
struct StepOut {
    step: String,
    seconds: f64,
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
    let result = runtime.block_on(demo(&args, sets, &mut steps));
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

fn committee(op: &Value) -> Vec<String> {
    op["committee"]
        .as_array()
        .map(|c| c.iter().map(|m| text(&m["deviceId"]).to_owned()).collect())
        .unwrap_or_default()
}

fn random_32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut b);
    b
}

struct VaultState {
    id: String,
    curve: &'static str,
    public_key: Vec<u8>,
    address: Option<String>,
    /// As the coordinator reports it.
    threshold: u16,
    signers: Vec<String>,
}

fn vault_state(vault: &Value, curve: &'static str) -> anyhow::Result<VaultState> {
    Ok(VaultState {
        id: text(&vault["id"]).to_owned(),
        curve,
        public_key: hex::decode(text(&vault["publicKey"]))
            .with_context(|| format!("vault {} has no public key", text(&vault["id"])))?,
        address: vault["ethereumAddress"].as_str().map(str::to_owned),
        threshold: vault["threshold"]
            .as_u64()
            .and_then(|t| u16::try_from(t).ok())
            .unwrap_or_default(),
        signers: vault["signers"]
            .as_array()
            .map(|s| s.iter().map(|d| text(&d["deviceId"]).to_owned()).collect())
            .unwrap_or_default(),
    })
}

fn signature_fields(op: &Value) -> anyhow::Result<(Vec<u8>, Option<u8>)> {
    let sig = hex::decode(text(&op["result"]["signature"]))
        .with_context(|| format!("operation {} has no signature", text(&op["id"])))?;
    let recid = op["result"]["recoveryId"]
        .as_u64()
        .and_then(|r| u8::try_from(r).ok());
    Ok((sig, recid))
}

async fn demo(args: &DemoArgs, sets: Vec<PrimeSet>, steps: &mut Steps) -> anyhow::Result<Outcome> {
    let (n, t) = (args.devices, args.threshold);
    let nu = usize::from(n);
    let mut problems = Vec::new();
    let mut system = steps
        .run(
            "coordinator (temporary SQLite), embedded MQTT broker and approval webhook started",
            LocalSystem::start(SignerSettings {
                broker: args.broker.clone(),
                ..SignerSettings::default()
            }),
        )
        .await?;
    eprintln!("    files in {}", system.dir().display());
    let mut sets: Vec<Option<PrimeSet>> = sets.into_iter().map(Some).collect();
    let mut take = |i: usize| sets.get_mut(i).and_then(Option::take);
    let mut keygen_and_reshare_sets = Vec::new();
    for i in 0..nu {
        keygen_and_reshare_sets.push([take(i), take(nu + i)].into_iter().flatten().collect::<Vec<_>>());
    }
    let newcomer_sets: Vec<PrimeSet> = take(2 * nu).into_iter().collect();
    steps
        .run(
            format!("{n} virtual signers started, each its own daemon and keystore"),
            async {
                for (i, primes) in keygen_and_reshare_sets.iter().enumerate() {
                    system.add_signer(&format!("device-{}", i + 1), primes).await?;
                }
                Ok(())
            },
        )
        .await?;
    let ids: Vec<String> = system.signers.iter().map(|s| s.device_id.clone()).collect();

    // ---- vaults ----
    let ((secp_vault, secp_took), (ed_vault, ed_took)) = steps
        .run(
            format!("secp256k1 and ed25519 {t}-of-{n} vaults created (distributed key generation; ECDSA aux-info)"),
            async {
                tokio::try_join!(
                    system.create_vault("demo secp256k1", "secp256k1", t),
                    system.create_vault("demo ed25519", "ed25519", t),
                )
            },
        )
        .await?;
    let secp = vault_state(&secp_vault, "secp256k1")?;
    let ed = vault_state(&ed_vault, "ed25519")?;
    for v in [&secp, &ed] {
        if v.threshold != t || v.signers != ids {
            problems.push(format!(
                "the coordinator holds the {} vault as {}-of-{} with other devices, not the requested {t}-of-{n}",
                v.curve,
                v.threshold,
                v.signers.len()
            ));
        }
    }
    match (
        &secp.address,
        k256::ecdsa::VerifyingKey::from_sec1_bytes(&secp.public_key),
    ) {
        (Some(a), Ok(k)) if verify::eth_address(&k) == *a => {}
        _ => problems.push("the secp256k1 vault's address is not the one of its public key".to_owned()),
    }
    let vaults = vec![
        VaultOut {
            id: secp.id.clone(),
            curve: secp.curve.to_owned(),
            threshold: secp.threshold,
            devices: secp.signers.len(),
            public_key: hex::encode(&secp.public_key),
            address: secp.address.clone(),
            keygen_ms: ms(secp_took),
        },
        VaultOut {
            id: ed.id.clone(),
            curve: ed.curve.to_owned(),
            threshold: ed.threshold,
            devices: ed.signers.len(),
            public_key: hex::encode(&ed.public_key),
            address: None,
            keygen_ms: ms(ed_took),
        },
    ];

    // ---- signatures ----
    let mut signatures = Vec::new();
    let digest = random_32();
    let (op, took) = steps
        .run(
            "secp256k1: a 32-byte digest signed",
            system.sign(
                json!({"vaultId": secp.id, "digest": hex::encode(digest)}),
                "digest signature",
            ),
        )
        .await?;
    signatures.push(check_digest(&secp, &digest, &op, took, &mut problems)?);

    let tx = verify::demo_transaction(0);
    let unsigned = verify::unsigned_bytes(&tx);
    let (op, took) = steps
        .run(
            "secp256k1: an EIP-1559 transaction signed (0.01 ETH to 0x…dEaD, not broadcast)",
            system.sign(
                json!({"vaultId": secp.id, "ethTx": format!("0x{}", hex::encode(&unsigned))}),
                "transaction signature",
            ),
        )
        .await?;
    let tx_digest: [u8; 32] = Keccak256::digest(&unsigned).into();
    let mut out = check_digest(&secp, &tx_digest, &op, took, &mut problems)?;
    out.kind = "eth_tx";
    out.digest = None;
    let raw_signed = text(&op["result"]["rawTransaction"]).to_owned();
    let (sig, recid) = signature_fields(&op)?;
    let raw_bytes = hex::decode(raw_signed.trim_start_matches("0x")).unwrap_or_default();
    if let Err(e) = verify::eth_transaction(
        &tx,
        &raw_bytes,
        &sig,
        recid.unwrap_or(u8::MAX),
        secp.address.as_deref().unwrap_or_default(),
    ) {
        out.verified = false;
        problems.push(format!("eth_tx {}: {e}", out.operation));
    }
    out.raw_transaction = Some(raw_signed);
    signatures.push(out);

    let message = format!("vsigner demo: signed by a {t}-of-{n} ed25519 vault").into_bytes();
    let (op, took) = steps
        .run(
            "ed25519: a message signed",
            system.sign(
                json!({"vaultId": ed.id, "message": hex::encode(&message)}),
                "message signature",
            ),
        )
        .await?;
    signatures.push(check_ed25519(&ed, &message, &op, took, &mut problems)?);

    // ---- a request the approver rejects ----
    let refused = format!("{REJECT_MARKER}: a request the approval webhook refuses").into_bytes();
    let rejected_op = steps
        .run("ed25519: a request the approver rejects is not signed", async {
            let op = system
                .operator
                .request_signature(json!({"vaultId": ed.id, "message": hex::encode(&refused)}))
                .await?;
            let op = system
                .operator
                .wait_final(
                    text(&op["id"]),
                    Duration::from_secs(120),
                    Duration::from_millis(20),
                    |_, _| {},
                )
                .await?;
            if op["state"] != "Rejected" {
                bail!(
                    "operation {} ended {}, not Rejected",
                    text(&op["id"]),
                    text(&op["state"])
                );
            }
            if !op["result"]["signature"].is_null() {
                bail!("the rejected operation {} carries a signature", text(&op["id"]));
            }
            Ok(op)
        })
        .await?;
    let rejected = vec![RejectedOut {
        vault: ed.id.clone(),
        operation: text(&rejected_op["id"]).to_owned(),
        reason: rejected_op["rejectionReason"]
            .as_str()
            .unwrap_or("rejected by the approver")
            .to_owned(),
    }];

    // ---- a new device; reshare; a committee with the new device signs ----
    let newcomer_name = format!("device-{}", nu + 1);
    let newcomer = steps
        .run(
            format!("a new virtual signer {newcomer_name} started"),
            system.add_signer(&newcomer_name, &newcomer_sets),
        )
        .await?;
    let mut new_set = ids.clone();
    new_set.push(newcomer.clone());
    let reshare_op = steps
        .run(
            format!(
                "secp256k1 vault reshared to {}-of-{} with {newcomer_name} (same key; new shares and aux-info)",
                t + 1,
                n + 1
            ),
            async {
                let start = Instant::now();
                let op = system.operator.request_reshare(&secp.id, t + 1, &new_set).await?;
                let op = system
                    .completed(&op, "reshare", Duration::from_secs(600), Duration::from_millis(20))
                    .await?;
                Ok((op, start.elapsed()))
            },
        )
        .await?;
    let after = system.operator.vault(&secp.id).await?;
    let key_after = hex::decode(text(&after["publicKey"])).unwrap_or_default();
    let unchanged = key_after == secp.public_key;
    if !unchanged {
        problems.push("the reshare changed the vault's public key".to_owned());
    }
    let reshared = vault_state(&after, "secp256k1")?;
    if reshared.threshold != t + 1 || reshared.signers != new_set {
        problems.push(format!(
            "after the reshare the vault is {}-of-{} with other devices, not {}-of-{} with {newcomer_name}",
            reshared.threshold,
            reshared.signers.len(),
            t + 1,
            n + 1
        ));
    }
    if after["keyGeneration"].as_u64() != secp_vault["keyGeneration"].as_u64().map(|g| g + 1) {
        problems.push("the reshare did not start a new key generation".to_owned());
    }
    let reshares = vec![ReshareOut {
        vault: secp.id.clone(),
        from: Shape {
            threshold: secp.threshold,
            devices: secp.signers.len(),
        },
        to: Shape {
            threshold: reshared.threshold,
            devices: reshared.signers.len(),
        },
        public_key: hex::encode(&key_after),
        public_key_unchanged: unchanged,
        joined: vec![newcomer.clone()],
        operation: text(&reshare_op.0["id"]).to_owned(),
        latency_ms: ms(reshare_op.1),
    }];

    // The coordinator takes the first approvers as the committee: the first old devices
    // abstain, so that exactly the others and the newcomer approve.
    let abstaining: Vec<String> = ids.iter().take(nu - usize::from(t)).cloned().collect();
    system.approver.abstain_on_signatures(&abstaining);
    let digest = random_32();
    let abstainers = abstaining
        .iter()
        .map(|d| system.device_name(d).to_owned())
        .collect::<Vec<_>>()
        .join(", ");
    let (op, took) = steps
        .run(
            format!(
                "secp256k1: a digest signed by {} devices including {newcomer_name}{}",
                t + 1,
                if abstainers.is_empty() {
                    String::new()
                } else {
                    format!(" ({abstainers} abstained)")
                }
            ),
            system.sign(
                json!({"vaultId": secp.id, "digest": hex::encode(digest)}),
                "signature after the reshare",
            ),
        )
        .await?;
    system.approver.abstain_on_signatures(&[]);
    let out = check_digest(&reshared, &digest, &op, took, &mut problems)?;
    if !out.signers.contains(&newcomer) {
        problems.push(format!(
            "the signature after the reshare was made by {:?}, not {} devices including {newcomer}",
            out.signers,
            t + 1
        ));
    }
    signatures.push(out);

    for s in &mut signatures {
        s.signer_names = s
            .signers
            .iter()
            .map(|d| system.device_name(d).to_owned())
            .collect();
    }
    let refused_requests = system.approver.refused_requests();
    if !refused_requests.is_empty() {
        problems.push(format!(
            "the approval webhook refused {} unauthenticated request(s): {}",
            refused_requests.len(),
            refused_requests.join("; ")
        ));
    }
    // The webhook's own record agrees with the coordinator's.
    let decisions = system.approver.decisions();
    let rejected_id = text(&rejected_op["id"]);
    if !decisions
        .iter()
        .any(|d| d.operation == rejected_id && d.status == "rejected")
    {
        problems.push(format!(
            "the webhook never rejected {rejected_id}, yet it was Rejected"
        ));
    }
    let after_id = &signatures.last().map(|s| s.operation.clone()).unwrap_or_default();
    for d in decisions.iter().filter(|d| &d.operation == after_id) {
        if (d.status == "abstain") != abstaining.contains(&d.device) {
            problems.push(format!("device {} answered {} on {after_id}", d.device, d.status));
        }
    }
    steps
        .run("signers stopped", async {
            system.shutdown().await;
            Ok(())
        })
        .await?;
    Ok(Outcome {
        vaults,
        signatures,
        reshares,
        rejected,
        problems,
    })
}

/// The committee of a signature: exactly the vault's threshold of its own signers.
fn check_committee(vault: &VaultState, op: &Value, problems: &mut Vec<String>) -> bool {
    let members = committee(op);
    let ok =
        members.len() == usize::from(vault.threshold) && members.iter().all(|m| vault.signers.contains(m));
    if !ok {
        problems.push(format!(
            "{}: signed by {members:?}, not {} of the vault's signers",
            text(&op["id"]),
            vault.threshold
        ));
    }
    ok
}

/// A secp256k1 signature of `digest` (the coordinator's signing digest must be the same).
fn check_digest(
    vault: &VaultState,
    digest: &[u8; 32],
    op: &Value,
    took: Duration,
    problems: &mut Vec<String>,
) -> anyhow::Result<SignatureOut> {
    let (sig, recid) = signature_fields(op)?;
    let id = text(&op["id"]).to_owned();
    let mut verified = check_committee(vault, op, problems);
    if op["sign"]["signingDigest"].as_str() != Some(hex::encode(digest).as_str()) {
        verified = false;
        problems.push(format!(
            "{id}: the coordinator's signing digest is not the requested digest"
        ));
    }
    if let Err(e) = verify::secp256k1(&vault.public_key, digest, &sig, recid.unwrap_or(u8::MAX)) {
        verified = false;
        problems.push(format!("{id}: {e}"));
    }
    Ok(SignatureOut {
        vault: vault.id.clone(),
        curve: vault.curve.to_owned(),
        kind: "digest",
        digest: Some(hex::encode(digest)),
        raw_transaction: None,
        message: None,
        signature: hex::encode(&sig),
        recovery_id: recid,
        signers: committee(op),
        signer_names: Vec::new(),
        latency_ms: ms(took),
        operation: id,
        verified,
    })
}

fn check_ed25519(
    vault: &VaultState,
    message: &[u8],
    op: &Value,
    took: Duration,
    problems: &mut Vec<String>,
) -> anyhow::Result<SignatureOut> {
    let (sig, _) = signature_fields(op)?;
    let id = text(&op["id"]).to_owned();
    let committee_ok = check_committee(vault, op, problems);
    let verified = match verify::ed25519(&vault.public_key, message, &sig) {
        Ok(()) => committee_ok,
        Err(e) => {
            problems.push(format!("{id}: {e}"));
            false
        }
    };
    Ok(SignatureOut {
        vault: vault.id.clone(),
        curve: vault.curve.to_owned(),
        kind: "message",
        digest: None,
        raw_transaction: None,
        message: Some(hex::encode(message)),
        signature: hex::encode(&sig),
        recovery_id: None,
        signers: committee(op),
        signer_names: Vec::new(),
        latency_ms: ms(took),
        operation: id,
        verified,
    })
}

fn short(s: &str) -> String {
    if s.len() > 20 {
        format!("{}…{}", &s[..10], &s[s.len() - 8..])
    } else {
        s.to_owned()
    }
}

fn print_summary(report: &Report, n: u16, t: u16) {
    let ok = |b: bool| if b { "verified" } else { "NOT VERIFIED" };
    println!();
    println!("vsigner demo: {n} virtual devices, {t}-of-{n} vaults");
    println!();
    println!("Vaults");
    for v in &report.outcome.vaults {
        println!(
            "  {:<9} {}-of-{}  {}  key {}{}  (created in {:.1} s)",
            v.curve,
            v.threshold,
            v.devices,
            v.id,
            short(&v.public_key),
            v.address
                .as_deref()
                .map(|a| format!("  address {a}"))
                .unwrap_or_default(),
            v.keygen_ms / 1000.0
        );
    }
    println!();
    println!("Signatures");
    for s in &report.outcome.signatures {
        let what = match s.kind {
            "digest" => format!("digest {}", short(s.digest.as_deref().unwrap_or_default())),
            "eth_tx" => format!("tx {}", short(s.raw_transaction.as_deref().unwrap_or_default())),
            _ => format!(
                "message {:?}",
                String::from_utf8_lossy(
                    &hex::decode(s.message.as_deref().unwrap_or_default()).unwrap_or_default()
                )
            ),
        };
        println!(
            "  {:<9} {what}\n            by {} in {:.1} ms: {}",
            s.curve,
            s.signer_names.join(", "),
            s.latency_ms,
            ok(s.verified)
        );
    }
    println!();
    println!("Rejected (not signed)");
    for r in &report.outcome.rejected {
        println!("  {}  {}", r.operation, r.reason);
    }
    println!();
    println!("Reshares");
    for r in &report.outcome.reshares {
        println!(
            "  {}  {}-of-{} -> {}-of-{} in {:.1} s: public key {}",
            r.vault,
            r.from.threshold,
            r.from.devices,
            r.to.threshold,
            r.to.devices,
            r.latency_ms / 1000.0,
            if r.public_key_unchanged {
                "unchanged"
            } else {
                "CHANGED"
            }
        );
    }
    println!();
    if report.outcome.problems.is_empty() {
        println!("Every signature verified and every step behaved as stated.");
    } else {
        println!("PROBLEMS:");
        for p in &report.outcome.problems {
            println!("  - {p}");
        }
    }
    for w in &report.warnings {
        println!("\nWARNING: {w}");
    }
}
