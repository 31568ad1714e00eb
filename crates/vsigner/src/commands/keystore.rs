//! `vsigner keystore inspect`: what a keystore holds, without unlocking it.
//! `vsigner keystore rekey`: a new passphrase or key file for a signer's keystore, without
//! rewriting its records.
//! `vsigner keystore export` / `import`: a signer's records in one encrypted, authenticated
//! backup (`vsigner_keystore::backup`), under a passphrase or to a recipient's ML-KEM-768
//! key, restored into a new keystore.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use serde::Serialize;
use vsigner_keystore::SealingProvider;
use vsigner_signer::config::KeystoreSealing;
use zeroize::Zeroizing;

/// Where `keystore rekey` reads the new passphrase when it is not prompted for.
pub(crate) const NEW_PASSPHRASE_ENV: &str = "VSIGNER_NEW_KEYSTORE_PASSPHRASE";
/// Where `keystore export` and `import` read the backup's passphrase when it is not
/// prompted for.
pub(crate) const BACKUP_PASSPHRASE_ENV: &str = "VSIGNER_BACKUP_PASSPHRASE";

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
    /// Write a backup of a signer's keystore: its devices' identities, confirmed (and
    /// pending) shares, aux-info, pinned peers and run marks, in one encrypted and
    /// authenticated file, for moving the signer to new hardware, another sealing, or out of
    /// an enclave into another. Stop the signer first, and do not start it again once the
    /// backup is restored elsewhere: one device runs in one place. Never holds presignatures
    /// or superseded shares. Under a passphrase (VSIGNER_BACKUP_PASSPHRASE, or asked twice)
    /// or, with --recipient, to an ML-KEM-768 public key.
    Export {
        /// The signer's configuration file (its keystore and sealing).
        #[arg(long, env = "VSIGNER_CONFIG_FILE")]
        config: PathBuf,
        /// The backup file to write (refused if it exists; mode 0600).
        #[arg(long = "to")]
        to: PathBuf,
        /// Encrypt to this ML-KEM-768 public key (PEM, as `vsigner recover keygen` or
        /// OpenSSL writes it) instead of a passphrase.
        #[arg(long)]
        recipient: Option<PathBuf>,
    },
    /// Restore a backup made by `keystore export` into the keystore a configuration names,
    /// which must be new (no record): the configuration's sealing protects it from then on.
    Import {
        /// The configuration of the signer that takes the records.
        #[arg(long, env = "VSIGNER_CONFIG_FILE")]
        config: PathBuf,
        /// The backup file.
        #[arg(long = "from")]
        from: PathBuf,
        /// For a backup made with --recipient: the ML-KEM-768 private key (PEM PKCS#8).
        #[arg(long)]
        private_key: Option<PathBuf>,
        /// The SHA-256 that `export` printed: the backup is refused unless it is that file
        /// (a backup is not signed: anyone could encrypt one to a recipient's public key).
        #[arg(long)]
        expect_sha256: Option<String>,
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
        KeystoreCommand::Export {
            config,
            to,
            recipient,
        } => export(&config, &to, recipient.as_deref()),
        KeystoreCommand::Import {
            config,
            from,
            private_key,
            expect_sha256,
        } => import(&config, &from, private_key.as_deref(), expect_sha256.as_deref()),
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

/// The signer's configuration and a runtime for the keystore.
fn configured(config: &Path) -> anyhow::Result<(vsigner_signer::SignerConfig, tokio::runtime::Runtime)> {
    let config = vsigner_signer::SignerConfig::load(Some(config), std::env::vars())
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok((config, runtime))
}

fn export(config: &Path, to: &Path, recipient: Option<&Path>) -> anyhow::Result<()> {
    if to.exists() {
        bail!("{} exists: export never replaces a file", to.display());
    }
    let (config, runtime) = configured(config)?;
    let provider: Box<dyn SealingProvider> = match recipient {
        Some(path) => {
            let pem =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let key =
                vsigner_recovery::DrPublicKey::from_pem(&pem).with_context(|| path.display().to_string())?;
            if config
                .disaster_recovery
                .as_ref()
                .is_some_and(|dr| dr.public_key == key)
            {
                bail!(
                    "{} is this signer's DisasterRecoveryPublicKey: a backup goes to another key (its private key opens the backup on the new machine, and the disaster-recovery private key must stay offline)",
                    path.display()
                );
            }
            Box::new(super::recipient::Recipient::to(key))
        }
        None => Box::new(vsigner_keystore::Passphrase::new(
            super::passphrase::new_passphrase(BACKUP_PASSPHRASE_ENV, "backup passphrase: ")?.as_str(),
        )),
    };
    let location = vsigner_signer::config::shown_storage(&config.storage_bucket_url);
    let _lock = vsigner_signer::daemon::lock_keystore(&config, false)?;
    let (bytes, summary) = runtime.block_on(async {
        let sealing = vsigner_signer::daemon::sealing_provider(&config.keystore_sealing)?;
        let keystore =
            vsigner_keystore::Keystore::open_existing(&config.storage_bucket_url, sealing.as_ref())
                .await
                .with_context(|| {
                    format!("cannot open the keystore {location} with its configured sealing")
                })?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        keystore
            .export(provider.as_ref(), &now)
            .await
            .with_context(|| format!("cannot export the keystore {location}"))
    })?;
    super::recover::write_new(to, &bytes)?;
    use sha2::Digest as _;
    println!(
        "wrote {}: {} records ({} devices, {} key shares) of the keystore {location}, sealed by the {} provider (sha256 {})",
        to.display(),
        summary.records,
        summary.devices,
        summary.key_shares,
        provider.name(),
        hex::encode(sha2::Sha256::digest(&bytes[..]))
    );
    println!("give that sha256 to `keystore import --expect-sha256` on the new machine");
    println!(
        "do not start this signer again once the backup is restored elsewhere: a device runs in one place"
    );
    Ok(())
}

fn import(
    config: &Path,
    from: &Path,
    private_key: Option<&Path>,
    expect_sha256: Option<&str>,
) -> anyhow::Result<()> {
    let bytes =
        Zeroizing::new(std::fs::read(from).with_context(|| format!("cannot read {}", from.display()))?);
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(&bytes[..]));
    let sealed_by =
        vsigner_keystore::backup::provider_of(&bytes).with_context(|| from.display().to_string())?;
    if sealed_by == super::recipient::NAME && expect_sha256.is_none() {
        // Anyone can encrypt a backup to a public key: only the digest says it is yours.
        bail!(
            "{} is encrypted to a public key, which anyone can do: give the sha256 that export printed with --expect-sha256 (this file's is {digest})",
            from.display()
        );
    }
    match expect_sha256 {
        Some(expected) if !expected.trim().eq_ignore_ascii_case(&digest) => bail!(
            "{} has sha256 {digest}: it is not the backup whose sha256 export printed ({})",
            from.display(),
            expected.trim()
        ),
        Some(_) => {}
        None => eprintln!(
            "note: a backup is not signed; compare its sha256 {digest} with the one export printed (or give --expect-sha256)"
        ),
    }
    let provider: Box<dyn SealingProvider> = match (sealed_by.as_str(), private_key) {
        (super::recipient::NAME, Some(path)) => {
            let pem = Zeroizing::new(
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
            );
            Box::new(super::recipient::Recipient::from(
                vsigner_recovery::DrPrivateKey::from_pem(&pem).with_context(|| path.display().to_string())?,
            ))
        }
        (super::recipient::NAME, None) => {
            bail!(
                "{} is encrypted to a recipient's key: give its private key with --private-key",
                from.display()
            )
        }
        ("passphrase", None) => Box::new(vsigner_keystore::Passphrase::new(
            super::passphrase::passphrase(BACKUP_PASSPHRASE_ENV, "backup passphrase: ")?.as_str(),
        )),
        ("passphrase", Some(_)) => bail!(
            "{} is under a passphrase, not a recipient's key: leave out --private-key",
            from.display()
        ),
        (other, _) => bail!(
            "{} is sealed by the {other:?} provider, which import does not open",
            from.display()
        ),
    };
    let records = vsigner_keystore::backup::open(&bytes, provider.as_ref())
        .with_context(|| from.display().to_string())?;
    let (config, runtime) = configured(config)?;
    let location = vsigner_signer::config::shown_storage(&config.storage_bucket_url);
    let _lock = vsigner_signer::daemon::lock_keystore(&config, true)?;
    let summary = runtime.block_on(async {
        let sealing = vsigner_signer::daemon::sealing_provider(&config.keystore_sealing)?;
        let keystore = vsigner_keystore::Keystore::open(&config.storage_bucket_url, sealing.as_ref())
            .await
            .with_context(|| format!("cannot open the keystore {location} with its configured sealing"))?;
        keystore
            .import(&records)
            .await
            .with_context(|| format!("cannot restore into the keystore {location}"))
    })?;
    println!(
        "restored {} records ({} devices, {} key shares) into the keystore {location}, sealed by the {} provider",
        summary.records,
        summary.devices,
        summary.key_shares,
        config.keystore_sealing.as_str()
    );
    Ok(())
}
