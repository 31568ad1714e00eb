//! The operator's command-line client of the coordinator: `vsigner vault …`, `vsigner op …`,
//! `vsigner device list`. Each talks GraphQL to `--coordinator` with an API client's
//! credentials (flags or `VSIGNER_CLIENT_ID` / `VSIGNER_CLIENT_SECRET`; the secret is never
//! printed) and prints a short human summary, or with `--json` the coordinator's objects as
//! one JSON document on stdout.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use vsigner_signer::coordinator_api::CoordinatorClient;

use crate::operator::{text as s, Operator};
use zeroize::Zeroizing;

/// How to reach the coordinator, shared by every client command.
#[derive(Args, Clone)]
pub(crate) struct Connection {
    /// Coordinator base URL.
    #[arg(
        long,
        env = "VSIGNER_COORDINATOR_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    coordinator: String,
    /// API client id (an operator client for vault and op commands).
    #[arg(long, env = "VSIGNER_CLIENT_ID", global = true)]
    client_id: Option<String>,
    /// API client secret (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "VSIGNER_CLIENT_SECRET", hide_env_values = true, global = true)]
    client_secret: Option<String>,
    /// PEM file of the CA that signed the coordinator's certificate (`https://`); when
    /// given, only it is trusted. Without it the platform's roots are.
    #[arg(long, env = "VSIGNER_CA_CERT", global = true)]
    ca_cert: Option<std::path::PathBuf>,
    /// Print one JSON document instead of a summary.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Subcommand)]
pub(crate) enum VaultCommand {
    /// Create a vault: its keygen operation starts; the devices vote and generate the key.
    Create {
        /// Vault name.
        #[arg(long)]
        name: String,
        /// The scheme: `secp256k1` (ECDSA), `secp256r1` (ECDSA on P-256), `ed25519`
        /// (EdDSA) or `bip340` (Schnorr on secp256k1, Taproot).
        #[arg(long, value_parser = ["secp256k1", "secp256r1", "ed25519", "bip340"])]
        curve: String,
        /// Signatures needed.
        #[arg(long)]
        threshold: u16,
        /// Device ids, comma-separated, in share-index order; `id:w` gives a device weight
        /// `w` (it holds `w` shares; the threshold counts shares).
        #[arg(long, value_delimiter = ',', required = true)]
        signers: Vec<String>,
        /// Wait until the operation ends (and fail unless it completed).
        #[arg(long)]
        wait: bool,
    },
    /// List the organisation's vaults.
    List,
    /// Show one vault.
    Show {
        /// Vault id.
        id: String,
    },
    /// Request a signature: exactly one of --digest, --eth-tx, --message, --text.
    Sign {
        /// Vault id.
        id: String,
        /// A 32-byte digest (hex).
        #[arg(long, group = "payload")]
        digest: Option<String>,
        /// An unsigned EIP-1559 transaction `0x02…` (hex).
        #[arg(long, group = "payload")]
        eth_tx: Option<String>,
        /// Message bytes (hex): EIP-191 hash on secp256k1, SHA-256 on secp256r1, signed as
        /// they are on ed25519 and bip340.
        #[arg(long, group = "payload")]
        message: Option<String>,
        /// Message text (UTF-8), as --message.
        #[arg(long, group = "payload")]
        text: Option<String>,
        /// Non-hardened path of a child key, e.g. `m/0/1` (secp256k1, secp256r1, ed25519).
        #[arg(long)]
        path: Option<String>,
        /// bip340: sign for the vault's Taproot output key (its `taprootOutputKey`).
        #[arg(long)]
        taproot: bool,
        /// bip340: the Taproot script tree's Merkle root (hex); implies --taproot.
        #[arg(long)]
        taproot_merkle_root: Option<String>,
        /// Wait until the operation ends (and fail unless it completed).
        #[arg(long)]
        wait: bool,
    },
    /// Request a reshare to a new signer set and threshold (same public key).
    Reshare {
        /// Vault id.
        id: String,
        /// New threshold.
        #[arg(long)]
        threshold: u16,
        /// New device ids, comma-separated, in share-index order; `id:w` gives a device
        /// weight `w`.
        #[arg(long, value_delimiter = ',', required = true)]
        signers: Vec<String>,
        /// Wait until the operation ends (and fail unless it completed).
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum OpCommand {
    /// Show one operation.
    Show {
        /// Operation id.
        id: String,
    },
    /// Wait until an operation ends; fails unless it completed.
    Wait {
        /// Operation id.
        id: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
}

#[derive(Subcommand)]
pub(crate) enum DeviceCommand {
    /// List the organisation's devices.
    List,
}

pub(crate) fn operator(c: &Connection) -> anyhow::Result<Operator> {
    let id = c
        .client_id
        .as_deref()
        .context("give the API client id with --client-id or VSIGNER_CLIENT_ID")?;
    let secret = c
        .client_secret
        .clone()
        .context("give the API client secret with VSIGNER_CLIENT_SECRET (or --client-secret)")?;
    let url: url::Url = c
        .coordinator
        .parse()
        .with_context(|| format!("--coordinator {:?} is not a URL", c.coordinator))?;
    if url.scheme() == "http" && !vsigner_signer::config::is_loopback(&url) {
        eprintln!(
            "warning: {} is plain HTTP off loopback: the client secret and tokens cross the network in clear; use https://",
            c.coordinator
        );
    }
    let ca = match &c.ca_cert {
        Some(path) => vsigner_https::ca_certificates(path).context("--ca-cert")?,
        None => Vec::new(),
    };
    Ok(Operator::new(CoordinatorClient::trusting(
        &url,
        id,
        Zeroizing::new(secret),
        &ca,
    )?))
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub(crate) fn print(
    c: &Connection,
    value: &Value,
    human: impl FnOnce(&Value) -> String,
) -> anyhow::Result<()> {
    if c.json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", human(value));
    }
    Ok(())
}

fn vault_line(v: &Value) -> String {
    let signers: Vec<String> = v["signers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| match x["weight"].as_u64() {
                    Some(w) if w > 1 => format!("{} (weight {w})", s(&x["deviceId"])),
                    _ => s(&x["deviceId"]).to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    let shares: u64 = v["signers"]
        .as_array()
        .map(|a| a.iter().map(|x| x["weight"].as_u64().unwrap_or(1)).sum())
        .unwrap_or_default();
    let mut line = format!(
        "{}  {}  {}  {}-of-{}  {}  generation {}",
        s(&v["id"]),
        s(&v["name"]),
        s(&v["curve"]),
        v["threshold"],
        shares,
        s(&v["status"]),
        v["keyGeneration"]
    );
    if let Some(pk) = v["publicKey"].as_str() {
        line.push_str(&format!("\n  public key {pk}"));
    }
    if let Some(addr) = v["ethereumAddress"].as_str() {
        line.push_str(&format!("\n  address    {addr}"));
    }
    if let Some(q) = v["taprootOutputKey"].as_str() {
        line.push_str(&format!(
            "\n  taproot    {q}\n  address    {}",
            s(&v["taprootAddress"])
        ));
    }
    line.push_str(&format!("\n  signers    {}", signers.join(", ")));
    line
}

fn op_summary(op: &Value) -> String {
    let mut out = format!(
        "{}  {}  {}  vault {}",
        s(&op["id"]),
        s(&op["kind"]),
        s(&op["state"]),
        s(&op["vaultId"])
    );
    if op["state"] == "AwaitingApproval" {
        out.push_str(&format!(
            "  approvals {}/{}",
            op["approvedWeight"], op["requiredWeight"]
        ));
    }
    let r = &op["result"];
    for (label, key) in [
        ("public key", "publicKey"),
        ("signature", "signature"),
        ("raw tx", "rawTransaction"),
        ("tx hash", "txHash"),
        ("broadcast error", "broadcastError"),
    ] {
        if let Some(v) = r[key].as_str() {
            out.push_str(&format!("\n  {label:<12}{v}"));
        }
    }
    if let Some(rid) = r["recoveryId"].as_i64() {
        out.push_str(&format!("\n  {:<12}{rid}", "recovery id"));
    }
    if let Some(reason) = op["failure"]["reason"].as_str() {
        out.push_str(&format!("\n  failure     {reason}"));
        if let Some(c) = op["failure"]["culpritDeviceIds"]
            .as_array()
            .filter(|c| !c.is_empty())
        {
            let c: Vec<&str> = c.iter().map(s).collect();
            out.push_str(&format!("\n  culprits    {}", c.join(", ")));
        }
    }
    if let Some(reason) = op["rejectionReason"].as_str() {
        out.push_str(&format!("\n  rejected    {reason}"));
    }
    out
}

/// Prints `op` (after waiting when asked); fails unless a waited-for operation completed.
async fn finish(conn: &Connection, o: &Operator, op: Value, wait: bool) -> anyhow::Result<()> {
    let op = if wait {
        wait_for(conn, o, s(&op["id"]), Duration::from_secs(600)).await?
    } else {
        op
    };
    print(conn, &op, op_summary)?;
    if wait && op["state"] != "Completed" {
        bail!("operation {} ended {}", s(&op["id"]), s(&op["state"]));
    }
    Ok(())
}

/// Waits for `id` to end, showing each state change on stderr unless `--json`.
async fn wait_for(conn: &Connection, o: &Operator, id: &str, timeout: Duration) -> anyhow::Result<Value> {
    o.wait_final_showing(id, timeout, |state, elapsed| {
        if !conn.json {
            eprintln!("{id}: {state} ({:.1} s)", elapsed.as_secs_f64());
        }
    })
    .await
}

pub(crate) fn vault(conn: Connection, cmd: VaultCommand) -> anyhow::Result<()> {
    let o = operator(&conn)?;
    runtime()?.block_on(async {
        match cmd {
            VaultCommand::Create {
                name,
                curve,
                threshold,
                signers,
                wait,
            } => {
                let op = o.create_vault(&name, &curve, threshold, &signers).await?;
                finish(&conn, &o, op, wait).await
            }
            VaultCommand::List => {
                let vaults = o.vaults().await?;
                print(&conn, &vaults, |v| {
                    let lines: Vec<String> = v
                        .as_array()
                        .map(|a| a.iter().map(vault_line).collect())
                        .unwrap_or_default();
                    if lines.is_empty() {
                        "no vaults".to_owned()
                    } else {
                        lines.join("\n")
                    }
                })
            }
            VaultCommand::Show { id } => print(&conn, &o.vault(&id).await?, vault_line),
            VaultCommand::Sign {
                id,
                digest,
                eth_tx,
                message,
                text,
                path,
                taproot,
                taproot_merkle_root,
                wait,
            } => {
                let mut input = json!({"vaultId": id});
                match (digest, eth_tx, message, text) {
                    (Some(d), None, None, None) => input["digest"] = json!(d),
                    (None, Some(t), None, None) => input["ethTx"] = json!(t),
                    (None, None, Some(m), None) => input["message"] = json!(m),
                    (None, None, None, Some(t)) => input["message"] = json!(hex::encode(t.as_bytes())),
                    _ => bail!("give exactly one of --digest, --eth-tx, --message, --text"),
                }
                if let Some(p) = path {
                    input["derivationPath"] = json!(p);
                }
                if taproot {
                    input["taproot"] = json!(true);
                }
                if let Some(root) = taproot_merkle_root {
                    input["taprootMerkleRoot"] = json!(root);
                }
                let op = o.request_signature(input).await?;
                finish(&conn, &o, op, wait).await
            }
            VaultCommand::Reshare {
                id,
                threshold,
                signers,
                wait,
            } => {
                let op = o.request_reshare(&id, threshold, &signers).await?;
                finish(&conn, &o, op, wait).await
            }
        }
    })
}

pub(crate) fn op(conn: Connection, cmd: OpCommand) -> anyhow::Result<()> {
    let o = operator(&conn)?;
    runtime()?.block_on(async {
        match cmd {
            OpCommand::Show { id } => print(&conn, &o.operation(&id).await?, op_summary),
            OpCommand::Wait { id, timeout } => {
                let op = wait_for(&conn, &o, &id, Duration::from_secs(timeout)).await?;
                print(&conn, &op, op_summary)?;
                if op["state"] != "Completed" {
                    bail!("operation {id} ended {}", s(&op["state"]));
                }
                Ok(())
            }
        }
    })
}

pub(crate) fn device(conn: Connection, cmd: DeviceCommand) -> anyhow::Result<()> {
    let o = operator(&conn)?;
    runtime()?.block_on(async {
        match cmd {
            DeviceCommand::List => {
                let devices = o.devices().await?;
                print(&conn, &devices, |v| {
                    let lines: Vec<String> = v
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|d| {
                                    format!(
                                        "{}  {}  {}  {}",
                                        s(&d["id"]),
                                        s(&d["name"]),
                                        s(&d["kind"]),
                                        s(&d["status"])
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    if lines.is_empty() {
                        "no devices".to_owned()
                    } else {
                        lines.join("\n")
                    }
                })
            }
        }
    })
}
