//! `vsigner client create|list|rotate|revoke`: the organisation's API clients (OAuth2 client
//! credentials), managed by an operator client. A new secret is printed once (the coordinator
//! keeps only its hash); after `rotate` the old secret still works for the overlap, after
//! `revoke` nothing of the client does. Every change is in the audit log.

use clap::Subcommand;
use serde_json::Value;

use super::client::{operator, print, runtime, Connection};
use crate::operator::text as s;

#[derive(Subcommand)]
pub(crate) enum ClientCommand {
    /// Create an API client; prints its id and secret (shown only now).
    Create {
        /// `operator` (vaults, signatures, clients) or `signer` (one per `vsigner run`).
        #[arg(long, value_parser = ["operator", "signer"])]
        role: String,
    },
    /// List the organisation's API clients (revoked ones too).
    List,
    /// Give a client a new secret (printed once); the old one keeps working for the overlap.
    Rotate {
        /// Client id.
        id: String,
        /// Seconds the old secret stays accepted (default: the coordinator's
        /// `--client-secret-overlap-secs`, one hour unless set).
        #[arg(long)]
        overlap_secs: Option<u32>,
    },
    /// Revoke a client: its secrets and access tokens are refused from now on.
    Revoke {
        /// Client id.
        id: String,
    },
}

pub(crate) fn run(conn: Connection, cmd: ClientCommand) -> anyhow::Result<()> {
    let o = operator(&conn)?;
    runtime()?.block_on(async {
        match cmd {
            ClientCommand::Create { role } => {
                let created = o.create_api_client(&role).await?;
                print(&conn, &created, credentials)
            }
            ClientCommand::List => {
                let clients = o.api_clients().await?;
                print(&conn, &clients, |v| {
                    let lines: Vec<String> = v.as_array().into_iter().flatten().map(client_line).collect();
                    lines.join("\n")
                })
            }
            ClientCommand::Rotate { id, overlap_secs } => {
                let rotated = o.rotate_api_client_secret(&id, overlap_secs).await?;
                print(&conn, &rotated, credentials)
            }
            ClientCommand::Revoke { id } => {
                let revoked = o.revoke_api_client(&id).await?;
                print(&conn, &revoked, client_line)
            }
        }
    })
}

fn credentials(v: &Value) -> String {
    format!(
        "client id:      {}\nrole:           {}\nclient secret:  {}\n(the secret is shown only now; only its Argon2id hash is stored)",
        s(&v["clientId"]),
        s(&v["role"]),
        s(&v["clientSecret"])
    )
}

fn client_line(v: &Value) -> String {
    let mut line = format!(
        "{}  {}  created {}",
        s(&v["clientId"]),
        s(&v["role"]),
        s(&v["createdAt"])
    );
    if let Some(at) = v["rotatedAt"].as_str() {
        line.push_str(&format!("  rotated {at}"));
    }
    if let Some(until) = v["previousSecretValidUntil"].as_str() {
        line.push_str(&format!("  (old secret accepted until {until})"));
    }
    if let Some(at) = v["revokedAt"].as_str() {
        line.push_str(&format!("  REVOKED {at}"));
    }
    line
}
