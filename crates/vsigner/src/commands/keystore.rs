//! `vsigner keystore inspect`: what a keystore holds, without unlocking it.
//! `vsigner keystore rekey`: a new passphrase or key file for a signer's keystore, without
//! rewriting its records.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use serde::Serialize;
use vsigner_signer::config::KeystoreSealing;
use zeroize::Zeroizing;

/// Where `keystore rekey` reads the new passphrase when it is not prompted for.
pub(crate) const NEW_PASSPHRASE_ENV: &str = "VSIGNER_NEW_KEYSTORE_PASSPHRASE";

#[derive(Subcommand)]
pub(crate) enum KeystoreCommand {
    /// List the records of a keystore (kinds, devices, vaults, generations, sizes). Reads
    /// only names and sizes: needs no passphrase and never shows a secret.
    Inspect {
        /// Keystore location: a directory, file://, memory://, s3://bucket/prefix or
        /// az://container/prefix.
        #[arg(long, env = "STORAGE_BUCKET_URL")]
        storage: String,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Seal a signer's keystore under a new passphrase or key file. Opens it with the
    /// sealing its configuration names (proving the current secret), then replaces only the
    /// wrapping of its data key, atomically: the records are not rewritten, and a crash leaves
    /// the old sealing or the new one. Update the configuration (`KeystorePassphrase` or
    /// `KeystoreKeyFile`, `KeystoreSealing`) before the signer's next start; a running signer
    /// keeps working.
    Rekey {
        /// The signer's configuration file (its keystore and current sealing).
        #[arg(long, env = "VSIGNER_CONFIG_FILE")]
        config: PathBuf,
        /// The new sealing: `passphrase` (read from VSIGNER_NEW_KEYSTORE_PASSPHRASE, or
        /// asked twice on the terminal; never a command-line argument) or `keyfile`.
        #[arg(long, value_parser = ["passphrase", "keyfile"])]
        to: String,
        /// With `--to keyfile`: the new key file (created with 32 random bytes if missing).
        #[arg(long, required_if_eq("to", "keyfile"))]
        key_file: Option<PathBuf>,
    },
}

#[derive(Serialize)]
struct Row {
    kind: &'static str,
    device: String,
    vault: Option<String>,
    generation: Option<u64>,
    name: Option<String>,
    size: u64,
}

pub(crate) fn run(cmd: KeystoreCommand) -> anyhow::Result<()> {
    match cmd {
        KeystoreCommand::Rekey { config, to, key_file } => rekey(&config, &to, key_file),
        KeystoreCommand::Inspect { storage, json } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (provider, records) = runtime.block_on(vsigner_keystore::store::inspect(&storage))?;
            let rows: Vec<Row> = records
                .into_iter()
                .map(|r| Row {
                    kind: r.id.kind().as_str(),
                    device: r.id.device().to_owned(),
                    vault: r.id.vault().map(str::to_owned),
                    generation: r.id.generation(),
                    name: r.id.name().map(str::to_owned),
                    size: r.size,
                })
                .collect();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "provider": provider, "records": rows })
                    )?
                );
            } else {
                println!(
                    "keystore {storage} (sealed by the {provider} provider), {} records",
                    rows.len()
                );
                println!(
                    "{:<20} {:<24} {:<24} {:>10} {:>8}",
                    "kind", "device", "vault", "gen/name", "bytes"
                );
                for r in rows {
                    let which = r
                        .generation
                        .map(|g| format!("g{g}"))
                        .or(r.name)
                        .unwrap_or_default();
                    println!(
                        "{:<20} {:<24} {:<24} {:>10} {:>8}",
                        r.kind,
                        r.device,
                        r.vault.unwrap_or_else(|| "-".into()),
                        which,
                        r.size
                    );
                }
            }
            Ok(())
        }
    }
}

fn rekey(config: &std::path::Path, to: &str, key_file: Option<PathBuf>) -> anyhow::Result<()> {
    let config = vsigner_signer::SignerConfig::load(Some(config), std::env::vars())
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    let new = match (to, key_file) {
        ("passphrase", None) => KeystoreSealing::Passphrase(new_passphrase()?),
        ("passphrase", Some(_)) => bail!("--key-file goes with --to keyfile"),
        (_, Some(path)) => KeystoreSealing::KeyFile(path),
        (_, None) => bail!("--to keyfile needs --key-file PATH"),
    };
    let same = match (&config.keystore_sealing, &new) {
        (KeystoreSealing::Passphrase(a), KeystoreSealing::Passphrase(b)) => a.as_str() == b.as_str(),
        (KeystoreSealing::KeyFile(a), KeystoreSealing::KeyFile(b)) => a == b,
        _ => false,
    };
    if same {
        bail!("the new sealing is the one the configuration already names: nothing to do");
    }
    let location = vsigner_signer::config::shown_storage(&config.storage_bucket_url);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let current = vsigner_signer::daemon::sealing_provider(&config.keystore_sealing)?;
        let mut keystore =
            vsigner_keystore::Keystore::open_existing(&config.storage_bucket_url, current.as_ref())
                .await
                .with_context(|| {
                    format!("cannot open the keystore {location} with its configured sealing")
                })?;
        let provider = vsigner_signer::daemon::sealing_provider(&new)?;
        keystore
            .rekey(provider.as_ref())
            .await
            .with_context(|| format!("cannot rekey the keystore {location}"))?;
        anyhow::Ok(())
    })?;
    println!(
        "the keystore {location} is now sealed by the {} provider; its records are unchanged",
        new.as_str()
    );
    match new {
        KeystoreSealing::Passphrase(_) => println!(
            "set KeystoreSealing = \"passphrase\" and the new KeystorePassphrase (VSIGNER_KeystorePassphrase) before the signer's next start"
        ),
        KeystoreSealing::KeyFile(path) => println!(
            "set KeystoreSealing = \"keyfile\" and KeystoreKeyFile = {:?} (and remove KeystorePassphrase) before the signer's next start; keep a copy of the key file",
            path.display().to_string()
        ),
        KeystoreSealing::Sgx => {}
    }
    Ok(())
}

/// The new passphrase: from [`NEW_PASSPHRASE_ENV`], or asked twice on the terminal.
fn new_passphrase() -> anyhow::Result<Zeroizing<String>> {
    super::passphrase::new_passphrase(NEW_PASSPHRASE_ENV, "new keystore passphrase: ")
}
