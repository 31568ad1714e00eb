//! `vsigner bench e2e`: see [`e2e`].
//!
//! `vsigner bench protocols`: median time of each protocol for 2-of-3 and 3-of-5, next to the
//! same protocol run on the bare libraries, so the engine's overhead is measured in the same
//! run.
//!
//! All parties run in this process on one thread (`round_based::sim`), so a figure is the
//! sum of every party's CPU time, without network latency.

mod e2e;
mod scale;
mod soak;
mod stages;

use std::time::Instant;

use anyhow::{bail, Context};
use clap::Subcommand;
use rand_core::OsRng;
use serde::Serialize;
use vsigner_tss::ecdsa::{AuxInfoOptions, HashAlgorithm, KeyShare, Message, Preimage, Secp256k1, Secp256r1};
use vsigner_tss::reshare::Role;
use vsigner_tss::schnorr::{Bip340, Ed25519, SchnorrScheme, TaprootTweak};
use vsigner_tss::simulation::{bare, local};
use vsigner_tss::{ExecutionContext, ExecutionId, ProtocolTag};

#[derive(Subcommand)]
pub(crate) enum BenchCommand {
    /// Median milliseconds per protocol for 2-of-3 and 3-of-5 (all parties in one process).
    Protocols {
        /// Print one JSON document instead of a table.
        #[arg(long)]
        json: bool,
        /// Runs per measured operation (aux-info excepted).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Runs of aux-info generation (tens of seconds each); 0 skips it and signs with the
        /// committed aux-info fixtures instead.
        #[arg(long, default_value_t = 1)]
        aux_runs: usize,
        /// Prime pool file for aux-info (default: the public test pool built into vsigner).
        #[arg(long)]
        primes: Option<std::path::PathBuf>,
    },
    /// End-to-end latency (p50/p95) of signature requests through the whole system in one
    /// process (ECDSA with and without presignatures, EdDSA), next to the bare protocol cost.
    E2e(e2e::E2eArgs),
    /// Many signature requests (10,000 by default) through the whole system, optionally on a
    /// PostgreSQL coordinator; then every request is accounted for from the coordinator's
    /// records and the devices' logs (none lost, duplicated, or a presignature reused).
    Soak(soak::SoakArgs),
    /// Many vaults, or a large committee, in one signer instance: key generation, signing and
    /// resharing of every vault, with times and memory.
    Scale(scale::ScaleArgs),
    /// Keystore put/get throughput for a typical ECDSA key share (~1 KB) on a local
    /// directory (durable writes: fsync of file and directory).
    Keystore {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
        /// Records to write and read.
        #[arg(long, default_value_t = 500)]
        records: usize,
        /// Directory to benchmark in (default: a new temp directory, removed afterwards).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

pub(crate) fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Protocols {
            json,
            runs,
            aux_runs,
            primes,
        } => protocols(json, runs, aux_runs, primes),
        BenchCommand::Keystore { json, records, dir } => keystore(json, records, dir),
        BenchCommand::E2e(args) => e2e::run(args),
        BenchCommand::Soak(args) => soak::run(args),
        BenchCommand::Scale(args) => scale::run(args),
    }
}

/// Where a benchmark's whole system runs: the options `bench soak` and `bench scale` share.
// No `Debug`: `--broker` and `--database` may carry a password.
#[derive(clap::Args)]
pub(crate) struct SystemArgs {
    /// The coordinator's database, `postgres://…` or `sqlite://…` (default: a new SQLite
    /// file, removed afterwards). A new organisation is made in it; its records stay there.
    #[arg(long, env = "VSIGNER_BENCH_DATABASE")]
    database: Option<String>,
    /// An MQTT broker (`mqtt://host:port`, e.g. Mosquitto) instead of the embedded one.
    #[arg(long)]
    broker: Option<String>,
    /// Prime pool file for the devices' aux-info (default: the public test pool; missing
    /// sets are generated).
    #[arg(long)]
    primes: Option<std::path::PathBuf>,
}

impl SystemArgs {
    fn prime_source(&self) -> crate::system::primes::PrimeSource {
        use crate::system::primes::PrimeSource;
        self.primes
            .clone()
            .map_or(PrimeSource::PublicTestPool, PrimeSource::File)
    }
}

/// Peak resident memory of this process, MiB (`VmHWM`; NaN where `/proc` does not say).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| (kib / 1024.0 * 10.0).round() / 10.0)
}

fn keystore(json: bool, records: usize, dir: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    use vsigner_keystore::{Keystore, Passphrase, RecordId};
    if records == 0 {
        bail!("--records must be at least 1");
    }
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("vsigner-bench-keystore-{}", std::process::id()))
    });
    if dir.join("keystore.json").exists() {
        bail!(
            "{} already holds a keystore; benchmark in an empty directory",
            dir.display()
        );
    }
    let core = &local::ecdsa_keygen::<Secp256k1, _>(eid(ProtocolTag::EcdsaKeygen, 3, 0), 3, 2, || OsRng)?[0];
    let share = core.to_bytes()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (put_s, get_s) = runtime.block_on(async {
        let ks = Keystore::open(
            dir.to_str().context("directory is not UTF-8")?,
            &Passphrase::new("bench"),
        )
        .await?;
        let ids: Vec<RecordId> = (0..records)
            .map(|g| RecordId::key_share("bench-device", "bench-vault", g as u64))
            .collect::<Result<_, _>>()?;
        let start = Instant::now();
        for id in &ids {
            ks.put(id, &share).await?;
        }
        let put_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        for id in &ids {
            ks.get(id).await?.context("record vanished")?;
        }
        Ok::<_, anyhow::Error>((put_s, start.elapsed().as_secs_f64()))
    })?;
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    let (put_rate, get_rate) = (records as f64 / put_s, records as f64 / get_s);
    if json {
        let report = serde_json::json!({
            "backend": "local directory",
            "record_bytes": share.len(),
            "records": records,
            "put_per_second": put_rate,
            "get_per_second": get_rate,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "keystore on a local directory, {} B key share: put {put_rate:.0}/s (durable), get {get_rate:.0}/s ({records} records)",
            share.len()
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct Measurement {
    operation: &'static str,
    threshold: u16,
    devices: u16,
    runs: usize,
    median_ms: f64,
    /// Same operation on the bare libraries (no vsigner message layer), if comparable.
    bare_median_ms: Option<f64>,
    /// `(median_ms - bare_median_ms) / bare_median_ms`, in percent.
    overhead_percent: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    cores: usize,
    note: &'static str,
    results: Vec<Measurement>,
}

fn eid(tag: ProtocolTag, n: u16, run: usize) -> ExecutionId {
    let devices: Vec<String> = (0..n).map(|i| format!("bench-device-{i}")).collect();
    let ids: Vec<&str> = devices.iter().map(String::as_str).collect();
    ExecutionId::derive(&ExecutionContext {
        protocol: tag,
        operation_id: "bench",
        vault_id: "bench",
        participants: &ids,
        nonce: &run.to_be_bytes(),
    })
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len().is_multiple_of(2) && mid > 0 {
        (samples[mid - 1] + samples[mid]) / 2.0
    } else {
        samples.get(mid).copied().unwrap_or(f64::NAN)
    }
}

fn time_ms<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(f64, T)> {
    let start = Instant::now();
    let out = f()?;
    Ok((start.elapsed().as_secs_f64() * 1e3, out))
}

/// Shortest time a sample should cover: sub-millisecond operations are repeated within a
/// sample (and the mean taken) so that timer and scheduling noise do not dominate.
const MIN_SAMPLE_MS: f64 = 50.0;

/// Measures `engine` and `bare` alternately `runs` times (after one warm-up run each).
fn compare(
    operation: &'static str,
    (t, n): (u16, u16),
    runs: usize,
    batching: bool,
    mut engine: impl FnMut(usize) -> anyhow::Result<()>,
    mut bare: Option<&mut dyn FnMut(usize) -> anyhow::Result<()>>,
) -> anyhow::Result<Measurement> {
    let warm = time_ms(|| engine(usize::MAX))?.0;
    if let Some(bare) = bare.as_deref_mut() {
        time_ms(|| bare(usize::MAX))?;
    }
    let batch = if batching {
        ((MIN_SAMPLE_MS / warm.max(1e-3)).ceil() as usize).clamp(1, 10_000)
    } else {
        1
    };
    let sample = |f: &mut dyn FnMut(usize) -> anyhow::Result<()>, r: usize| -> anyhow::Result<f64> {
        let (ms, ()) = time_ms(|| (0..batch).try_for_each(|k| f(r * batch + k)))?;
        Ok(ms / batch as f64)
    };
    let (mut e, mut b) = (Vec::new(), Vec::new());
    for r in 0..runs {
        e.push(sample(&mut engine, r)?);
        if let Some(bare) = bare.as_deref_mut() {
            b.push(sample(bare, r)?);
        }
    }
    let median_ms = median(e);
    let bare_median_ms = (!b.is_empty()).then(|| median(b));
    Ok(Measurement {
        operation,
        threshold: t,
        devices: n,
        runs: runs * batch,
        median_ms,
        bare_median_ms,
        overhead_percent: bare_median_ms.map(|b| (median_ms - b) / b * 100.0),
    })
}

/// Median ECDSA (secp256k1) key generation of `t`-of-`n` (engine and bare libraries).
fn ecdsa_keygen_cost(n: u16, t: u16, runs: usize) -> anyhow::Result<Measurement> {
    compare(
        "ecdsa_keygen",
        (t, n),
        runs,
        true,
        |r| {
            Ok(
                local::ecdsa_keygen::<Secp256k1, _>(eid(ProtocolTag::EcdsaKeygen, n, r), n, t, || OsRng)
                    .map(|_| ())?,
            )
        },
        Some(&mut |r| {
            Ok(bare::ecdsa_keygen::<Secp256k1, _>(
                eid(ProtocolTag::EcdsaKeygen, n, r),
                n,
                t,
                || OsRng,
            )?)
        }),
    )
}

/// Median FROST Ed25519 key generation of `t`-of-`n` (engine and bare libraries).
fn ed25519_keygen_cost(n: u16, t: u16, runs: usize) -> anyhow::Result<Measurement> {
    compare(
        "frost_ed25519_keygen",
        (t, n),
        runs,
        true,
        |r| {
            Ok(
                local::schnorr_keygen::<Ed25519, _>(eid(ProtocolTag::SchnorrKeygen, n, r), n, t, || OsRng)
                    .map(|_| ())?,
            )
        },
        Some(&mut |_| Ok(bare::schnorr_keygen::<Ed25519, _>(n, t, &mut OsRng)?)),
    )
}

/// Full signing, presigning and signing with a presignature by the first `t` holders of
/// `shares` (engine and, where comparable, bare libraries).
fn ecdsa_signing(shares: &[KeyShare<Secp256k1>], t: u16, runs: usize) -> anyhow::Result<Vec<Measurement>> {
    let n = u16::try_from(shares.len())?;
    let mut results = Vec::new();
    let signers: Vec<u16> = (0..t).collect();
    let digest = [7u8; 32];

    let m = compare(
        "ecdsa_sign_full",
        (t, n),
        runs,
        true,
        |r| {
            local::ecdsa_sign(
                eid(ProtocolTag::EcdsaSign, t, r),
                shares,
                &signers,
                &Message::Digest(digest),
                None,
                || OsRng,
            )?;
            Ok(())
        },
        Some(&mut |r| {
            Ok(bare::ecdsa_sign(
                eid(ProtocolTag::EcdsaSign, t, r),
                shares,
                &signers,
                digest,
                || OsRng,
            )?)
        }),
    )?;
    results.push(m);

    let mut presignatures = Vec::new();
    let m = compare(
        "ecdsa_presign",
        (t, n),
        runs,
        true,
        |r| {
            presignatures.push(local::ecdsa_presign(
                eid(ProtocolTag::EcdsaPresign, t, r),
                shares,
                &signers,
                || OsRng,
            )?);
            Ok(())
        },
        Some(&mut |r| {
            Ok(bare::ecdsa_presign(
                eid(ProtocolTag::EcdsaPresign, t, r),
                shares,
                &signers,
                || OsRng,
            )?)
        }),
    )?;
    results.push(m);

    let message = Preimage {
        hash: HashAlgorithm::Sha256,
        data: b"bench payment".to_vec(),
    };
    let mut presignatures = presignatures.into_iter();
    let m = compare(
        "ecdsa_sign_online",
        (t, n),
        runs,
        false,
        |r| {
            let p = presignatures.next().context("one presignature per run")?;
            local::ecdsa_sign_with_presignatures(eid(ProtocolTag::EcdsaSign, t, r), p, &message)?;
            Ok(())
        },
        None,
    )?;
    results.push(m);
    Ok(results)
}

/// Full ECDSA signing on P-256 by the first `t` of `shares` (engine only: the bare
/// comparison is secp256k1's).
fn p256_signing(shares: &[KeyShare<Secp256r1>], t: u16, runs: usize) -> anyhow::Result<Measurement> {
    let n = u16::try_from(shares.len())?;
    let signers: Vec<u16> = (0..t).collect();
    compare(
        "ecdsa_p256_sign_full",
        (t, n),
        runs,
        true,
        |r| {
            local::ecdsa_sign(
                eid(ProtocolTag::EcdsaSign, t, r),
                shares,
                &signers,
                &Message::Digest([7u8; 32]),
                None,
                || OsRng,
            )?;
            Ok(())
        },
        None,
    )
}

/// FROST signing by `t` of `n` with the ciphersuite `C` (BIP-340: for the Taproot output
/// key), engine and bare libraries (the bare run signs for the untweaked key).
fn frost_signing<C: SchnorrScheme>(
    operation: &'static str,
    n: u16,
    t: u16,
    runs: usize,
    taproot: Option<&TaprootTweak>,
) -> anyhow::Result<Measurement> {
    let signers: Vec<u16> = (0..t).collect();
    let frost = local::schnorr_keygen::<C, _>(eid(ProtocolTag::SchnorrKeygen, n, 0), n, t, || OsRng)?;
    let message = [0x5a; 32];
    compare(
        operation,
        (t, n),
        runs,
        true,
        |r| {
            local::schnorr_sign(
                eid(ProtocolTag::SchnorrSign, t, r),
                &frost,
                &signers,
                &message,
                taproot,
                || OsRng,
            )?;
            Ok(())
        },
        Some(&mut |_| Ok(bare::schnorr_sign(&frost, &signers, &message, &mut OsRng)?)),
    )
}

/// FROST Ed25519 signing by `t` of `n`.
fn ed25519_signing(n: u16, t: u16, runs: usize) -> anyhow::Result<Measurement> {
    frost_signing::<Ed25519>("frost_ed25519_sign", n, t, runs, None)
}

/// FROST BIP-340 signing by `t` of `n`, for the Taproot output key.
fn bip340_signing(n: u16, t: u16, runs: usize) -> anyhow::Result<Measurement> {
    frost_signing::<Bip340>(
        "frost_bip340_sign",
        n,
        t,
        runs,
        Some(&TaprootTweak { merkle_root: None }),
    )
}

fn protocols(
    json: bool,
    runs: usize,
    aux_runs: usize,
    primes: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let sets = match &primes {
        Some(path) => super::primes::read_pool(path)?.into_sets()?,
        None => crate::test_primes::public_test_prime_sets()?,
    };
    let mut results = Vec::new();
    let progress = |m: &Measurement| {
        if !json {
            eprintln!(
                "  measured {} {}-of-{}: {:.2} ms",
                m.operation, m.threshold, m.devices, m.median_ms
            );
        }
    };
    for (t, n) in [(2u16, 3u16), (3, 5)] {
        if sets.len() < usize::from(n) {
            bail!(
                "aux-info for {n} devices needs {n} prime sets, the pool has {}",
                sets.len()
            );
        }
        // Aux-info (also provides the aux-info for the signing benchmarks).
        let mut aux = None;
        let mut aux_samples = Vec::new();
        for r in 0..aux_runs {
            let (ms, out) = time_ms(|| {
                Ok(local::ecdsa_aux_info(
                    eid(ProtocolTag::EcdsaAuxInfo, n, r),
                    sets[..usize::from(n)].to_vec(),
                    AuxInfoOptions {
                        precompute_multiexp: false,
                    },
                    || OsRng,
                )?)
            })?;
            aux_samples.push(ms);
            aux = Some(out);
        }
        if aux_runs > 0 {
            let m = Measurement {
                operation: "ecdsa_aux_info",
                threshold: t,
                devices: n,
                runs: aux_runs,
                median_ms: median(aux_samples),
                bare_median_ms: None,
                overhead_percent: None,
            };
            progress(&m);
            results.push(m);
        }
        let aux = match aux {
            Some(aux) => aux,
            None => {
                let mut set = Vec::new();
                for i in 0..n {
                    let path = format!("test-data/aux-info/n{n}/party-{i}.vsgn");
                    let bytes = std::fs::read(&path).with_context(|| format!("--aux-runs 0 needs {path}"))?;
                    set.push(vsigner_tss::ecdsa::AuxInfo::from_bytes(&bytes)?);
                }
                set
            }
        };

        let m = ecdsa_keygen_cost(n, t, runs)?;
        progress(&m);
        results.push(m);

        let cores = local::ecdsa_keygen::<Secp256k1, _>(eid(ProtocolTag::EcdsaKeygen, n, 0), n, t, || OsRng)?;
        let shares: Vec<KeyShare<Secp256k1>> = local::ecdsa_key_shares(cores, aux)?;
        for m in ecdsa_signing(&shares, t, runs)? {
            progress(&m);
            results.push(m);
        }

        let m = ed25519_keygen_cost(n, t, runs)?;
        progress(&m);
        results.push(m);

        let m = ed25519_signing(n, t, runs)?;
        progress(&m);
        results.push(m);
    }
    // Reshare 3-of-5 -> 4-of-6 (ECDSA core shares; the new set's aux-info not included):
    // three old holders deal and stay, two stay without dealing, one newcomer.
    let old = local::ecdsa_keygen::<Secp256k1, _>(eid(ProtocolTag::EcdsaKeygen, 5, 0), 5, 3, || OsRng)?;
    let roles: Vec<Role> = (0..6u16)
        .map(|k| Role {
            old_index: (k < 3).then_some(k),
            new_index: Some(k),
        })
        .collect();
    let m = compare(
        "ecdsa_reshare_3of5_to_4of6",
        (3, 5),
        runs,
        true,
        |r| {
            local::ecdsa_reshare(eid(ProtocolTag::Reshare, 6, r), &old, &roles, 4, || OsRng)?;
            Ok(())
        },
        None,
    )?;
    progress(&m);
    results.push(m);

    let report = Report {
        cores: num_cpus::get(),
        note: "all parties in one process, one thread: each figure is the sum of every party's CPU time; aux-info from the public test primes",
        results,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(report: &Report) {
    println!(
        "{:<22} {:>6} {:>12} {:>12} {:>10}",
        "operation", "t-of-n", "median ms", "bare ms", "overhead"
    );
    for m in &report.results {
        let bare = m.bare_median_ms.map_or("-".into(), |b| format!("{b:.2}"));
        let over = m.overhead_percent.map_or("-".into(), |o| format!("{o:+.1}%"));
        println!(
            "{:<22} {:>6} {:>12.2} {:>12} {:>10}",
            m.operation,
            format!("{}-of-{}", m.threshold, m.devices),
            m.median_ms,
            bare,
            over
        );
    }
    println!("({} cores; {})", report.cores, report.note);
}
