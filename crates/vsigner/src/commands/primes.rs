//! `vsigner primes generate`: fill a prime-pool file, with a progress bar.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use vsigner_tss::primes::{PrimePool, PrimePoolFile, PRIMES_PER_SET, PRIME_BITS};

#[derive(Subcommand)]
pub(crate) enum PrimesCommand {
    /// Generate prime sets (4 safe primes each, one set per device per aux-info run) into a
    /// JSON pool file. Sets already in FILE are kept; generation resumes until --sets.
    Generate {
        /// Number of prime sets the file should hold.
        #[arg(long, default_value_t = 1)]
        sets: usize,
        /// Pool file to write (created, or extended if it exists).
        #[arg(long)]
        out: PathBuf,
        /// Worker threads (default: all cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Free-text note stored in the file.
        #[arg(long, default_value = "")]
        note: String,
        /// No progress bar (for logs).
        #[arg(long)]
        quiet: bool,
    },
    /// Move prime sets from a pool file into a signer's keystore (its aux-info stock), so
    /// that a new instance need not generate them. Each set is imported once: import a
    /// file into one instance only, never into two (a set becomes a device's Paillier key).
    Import {
        /// The signer configuration (the keystore settings are used).
        #[arg(long)]
        config: PathBuf,
        /// Pool file made by `vsigner primes generate`.
        #[arg(long)]
        from: PathBuf,
        /// Sets of the file to skip (to give different slices of one file to instances).
        #[arg(long, default_value_t = 0)]
        skip: usize,
        /// Sets to import (default: all after --skip).
        #[arg(long)]
        count: Option<usize>,
    },
}

pub(crate) fn run(cmd: PrimesCommand) -> anyhow::Result<()> {
    match cmd {
        PrimesCommand::Generate {
            sets,
            out,
            workers,
            note,
            quiet,
        } => generate(sets, out, workers, note, quiet),
        PrimesCommand::Import {
            config,
            from,
            skip,
            count,
        } => import(&config, &from, skip, count),
    }
}

fn import(
    config: &std::path::Path,
    from: &std::path::Path,
    skip: usize,
    count: Option<usize>,
) -> anyhow::Result<()> {
    let config = vsigner_signer::SignerConfig::load(Some(config), std::env::vars())
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    let pool = read_pool(from)?;
    if !pool.note.is_empty() {
        eprintln!("note of {}: {}", from.display(), pool.note);
    }
    let sets: Vec<_> = pool
        .into_sets()
        .with_context(|| format!("{} is not a valid prime pool", from.display()))?
        .into_iter()
        .skip(skip)
        .take(count.unwrap_or(usize::MAX))
        .collect();
    if sets.is_empty() {
        bail!(
            "no prime set to import from {} (after --skip {skip})",
            from.display()
        );
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let keystore = vsigner_signer::daemon::open_keystore(&config).await?;
        let stock = vsigner_signer::prime_stock::PrimeStock::open(std::sync::Arc::new(keystore)).await?;
        for set in &sets {
            stock.put(set).await?;
        }
        println!(
            "imported {} prime set(s); the stock holds {}",
            sets.len(),
            stock.ready()
        );
        anyhow::Ok(())
    })
}

/// A progress bar (stderr) counting `total` safe primes, ticking while a prime is found.
pub(crate) fn prime_progress_bar(total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "  {spinner} [{elapsed_precise}] {bar:40} {pos}/{len} safe primes (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(250));
    bar
}

/// Reads a pool file.
pub(crate) fn read_pool(path: &std::path::Path) -> anyhow::Result<PrimePoolFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read prime pool {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a vsigner prime pool file", path.display()))
}

fn generate(
    sets: usize,
    out: PathBuf,
    workers: Option<usize>,
    note: String,
    quiet: bool,
) -> anyhow::Result<()> {
    if sets == 0 {
        bail!("--sets must be at least 1");
    }
    let existing = if out.exists() {
        read_pool(&out)?.into_sets()?
    } else {
        Vec::new()
    };
    let note = if note.is_empty() && !existing.is_empty() {
        read_pool(&out)?.note
    } else {
        note
    };
    let pool = PrimePool::with_sets(existing);
    let start_ready = pool.progress().sets_ready;
    let workers = workers.unwrap_or_else(num_cpus::get).max(1);
    let total = sets.saturating_sub(start_ready) * PRIMES_PER_SET;
    eprintln!(
        "generating {total} safe primes of {PRIME_BITS} bits on {workers} threads ({start_ready} of {sets} sets already in {})",
        out.display()
    );
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        prime_progress_bar(total)
    };
    let started = Instant::now();
    let stop = AtomicBool::new(false);
    let out_ref = &out;
    let note_ref = &note;
    let pool_ref = &pool;
    let save_error = std::sync::Mutex::new(None);
    pool.fill(sets, workers, || rand_core::OsRng, &stop, &|progress| {
        bar.inc(1);
        // Save after every completed set so that an interrupted run keeps its work.
        if progress.loose_primes == 0 {
            if let Err(e) = save(
                out_ref,
                &PrimePoolFile::new(&pool_ref.snapshot(), note_ref.clone()),
            ) {
                *save_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        }
    });
    bar.finish_and_clear();
    if let Some(e) = save_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    save(&out, &PrimePoolFile::new(&pool.snapshot(), note))?;
    eprintln!(
        "wrote {} prime sets to {} in {:.1} s",
        pool.progress().sets_ready,
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes atomically: temp file, fsync, rename.
fn save(path: &std::path::Path, file: &PrimePoolFile) -> anyhow::Result<()> {
    use std::io::Write;
    let json = serde_json::to_string_pretty(file)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(json.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
