//! `vsigner audit export|verify`: an auditor's check of the coordinator's audit log that
//! does not trust the coordinator.
//!
//! Every device action (a vote, a failure report, a result) reaches the log with the
//! device's own Ed25519 signature over what it did (`device_statement` entries,
//! `vsigner-records`' `Statement`), and every device's signed record of its keys is kept
//! beside it. `verify` checks, with nothing but the devices' public keys:
//! - each device record verifies under the key it names and names its device;
//! - each `device_statement` verifies under its device's signing key, for the operation
//!   it is filed under;
//! - each device action the log records (vote, failure reported by a device, keygen,
//!   reshare and presign results, accepted or refused signature) has a verified statement
//!   of that device for that operation. An action the coordinator wrote without one is
//!   reported.
//!
//! `export` writes the log and the devices as one JSON document, so that the check can run
//! offline (`verify --from FILE`), on another machine, at any later time.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::{json, Value};
use vsigner_records::{SignedDeviceRecord, Statement, StatementKind};

use super::client::{operator, runtime, Connection};
use crate::operator::text;

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Write the organisation's audit log and devices (keys and signed records) as one JSON
    /// document on stdout, for an offline `verify --from`.
    Export,
    /// Check every device signature in the audit log (from the coordinator, or from a file
    /// written by `export`); fails unless all of them verify.
    Verify {
        /// An export to check instead of asking the coordinator.
        #[arg(long)]
        from: Option<PathBuf>,
    },
}

/// Runs `vsigner audit …`.
pub(crate) fn run(conn: Connection, cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Export => {
            let export = fetch(&conn)?;
            println!("{}", serde_json::to_string_pretty(&export)?);
            Ok(())
        }
        AuditCommand::Verify { from } => {
            let export = match from {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    serde_json::from_str(&text).with_context(|| {
                        format!("{} is not an export of `vsigner audit export`", path.display())
                    })?
                }
                None => fetch(&conn)?,
            };
            let report = verify(&export)?;
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{} device statements and {} device records verified; {} device actions each signed by their device",
                    report["statements"], report["records"], report["actions"]
                );
                for p in report["problems"].as_array().into_iter().flatten() {
                    println!("  PROBLEM: {}", text(p));
                }
            }
            let problems = report["problems"].as_array().map_or(0, Vec::len);
            if problems > 0 {
                bail!("the audit log has {problems} entries the devices' signatures do not support");
            }
            Ok(())
        }
    }
}

fn fetch(conn: &Connection) -> anyhow::Result<Value> {
    let o = operator(conn)?;
    runtime()?.block_on(async {
        let data = o
            .query(
                "{ me { organisationId } devices { id name identitySigningKey identityEncryptionKey record } \
                 auditLog { seq entityKind entityId at actor event detail } }",
            )
            .await?;
        Ok(json!({
            "organisationId": data["me"]["organisationId"],
            "devices": data["devices"],
            "auditLog": data["auditLog"],
        }))
    })
}

/// The kind of statement a device action logged as `event` must have.
fn statement_of(event: &str) -> Option<StatementKind> {
    Some(match event {
        "vote" => StatementKind::Vote,
        "failure" => StatementKind::Failure,
        "keygen_result" => StatementKind::KeygenResult,
        "reshare_result" => StatementKind::ReshareResult,
        "presign_result" => StatementKind::PresignResult,
        "signature_accepted" | "signature_refused" => StatementKind::Signature,
        _ => return None,
    })
}

/// Checks an export; returns `{statements, records, actions, problems}`.
pub(crate) fn verify(export: &Value) -> anyhow::Result<Value> {
    let org = export["organisationId"]
        .as_str()
        .context("the export has no organisationId")?;
    let mut problems: Vec<String> = Vec::new();
    let mut keys: std::collections::HashMap<&str, [u8; 32]> = Default::default();
    let mut records = 0;
    for d in export["devices"]
        .as_array()
        .context("the export has no devices")?
    {
        let id = text(&d["id"]);
        let Some(key) = hex::decode(text(&d["identitySigningKey"]))
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
        else {
            problems.push(format!("device {id}: its signing key is not 32 bytes of hex"));
            continue;
        };
        keys.insert(id, key);
        if let Some(record) = d["record"].as_str() {
            match SignedDeviceRecord::from_hex(record).and_then(|r| r.verify().map(|()| r)) {
                Ok(r)
                    if r.record.device_id == id
                        && r.record.signing_key == key
                        && r.record.organisation_id == org =>
                {
                    records += 1
                }
                Ok(_) => problems.push(format!(
                    "device {id}: its record names another device, organisation or key"
                )),
                Err(e) => problems.push(format!("device {id}: its record does not verify ({e})")),
            }
        }
    }
    let log = export["auditLog"]
        .as_array()
        .context("the export has no auditLog")?;
    // (device, operation, kind) of every verified statement.
    let mut signed: std::collections::HashSet<(String, String, &'static str)> = Default::default();
    let mut statements = 0;
    for e in log.iter().filter(|e| e["event"] == "device_statement") {
        let (device, op, seq) = (text(&e["actor"]), text(&e["entityId"]), &e["seq"]);
        let detail: Value = serde_json::from_str(text(&e["detail"])).unwrap_or(Value::Null);
        let Some(kind) = StatementKind::parse(text(&detail["kind"])) else {
            problems.push(format!("entry {seq}: a device statement of unknown kind"));
            continue;
        };
        let content: Vec<&str> = detail["content"]
            .as_array()
            .map(|c| c.iter().map(text).collect())
            .unwrap_or_default();
        let statement = Statement {
            organisation_id: org,
            operation_id: op,
            device_id: device,
            kind,
            content,
        };
        let Some(key) = keys.get(device) else {
            problems.push(format!(
                "entry {seq}: a statement of device {device}, which the export does not list"
            ));
            continue;
        };
        match statement.verify(key, text(&detail["signature"])) {
            Ok(()) => {
                statements += 1;
                signed.insert((device.to_owned(), op.to_owned(), kind.as_str()));
            }
            Err(_) => problems.push(format!(
                "entry {seq}: the {} statement of device {device} on {op} is not signed by the device",
                kind.as_str()
            )),
        }
    }
    let mut actions = 0;
    for e in log {
        let (Some(kind), Some(device)) = (statement_of(text(&e["event"])), e["actor"].as_str()) else {
            continue;
        };
        if !keys.contains_key(device) {
            continue; // an action of the coordinator itself (a client), not of a device
        }
        let op = text(&e["entityId"]);
        if signed.contains(&(device.to_owned(), op.to_owned(), kind.as_str())) {
            actions += 1;
        } else {
            problems.push(format!(
                "entry {}: {} of device {device} on {op} has no statement signed by the device",
                e["seq"],
                text(&e["event"])
            ));
        }
    }
    Ok(json!({"statements": statements, "records": records, "actions": actions, "problems": problems}))
}
