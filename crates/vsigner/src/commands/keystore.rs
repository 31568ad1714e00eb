//! `vsigner keystore inspect`: what a keystore holds, without unlocking it.

use clap::Subcommand;
use serde::Serialize;

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
