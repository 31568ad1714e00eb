//! The demo's report: the JSON document of DESIGN §4 (plus steps, primes, warnings and
//! problems), and the summary printed without `--json`.

use serde::Serialize;

use crate::system::primes::PrimesUsed;

#[derive(Serialize)]
pub(super) struct Report {
    #[serde(flatten)]
    pub(super) outcome: Outcome,
    pub(super) primes: PrimesUsed,
    pub(super) steps: Vec<StepOut>,
    pub(super) warnings: Vec<String>,
}

/// What the system did: the DESIGN §4 fields, and every check that failed.
#[derive(Serialize, Default)]
pub(super) struct Outcome {
    pub(super) vaults: Vec<VaultOut>,
    pub(super) signatures: Vec<SignatureOut>,
    pub(super) reshares: Vec<ReshareOut>,
    pub(super) rejected: Vec<RejectedOut>,
    /// The demo exits 0 only when this is empty.
    pub(super) problems: Vec<String>,
}

#[derive(Serialize)]
pub(super) struct VaultOut {
    pub(super) id: String,
    pub(super) curve: String,
    /// Shares needed (a device of weight `w` holds `w`).
    pub(super) threshold: u16,
    pub(super) devices: usize,
    /// The devices, in share-index order.
    pub(super) signers: Vec<String>,
    /// Each device's weight, in share-index order.
    pub(super) weights: Vec<u32>,
    pub(super) public_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) address: Option<String>,
    /// The chain code of the vault's child keys (secp256k1, secp256r1, ed25519).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) chain_code: Option<String>,
    /// bip340: the BIP-341 Taproot output key of the vault key (no script tree).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) taproot_output_key: Option<String>,
    pub(super) keygen_ms: f64,
}

#[derive(Serialize)]
pub(super) struct SignatureOut {
    pub(super) vault: String,
    pub(super) curve: String,
    pub(super) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) raw_transaction: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) message: Option<String>,
    pub(super) signature: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) recovery_id: Option<u8>,
    /// The child key's path, when the signature is by a child key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) derivation_path: Option<String>,
    /// bip340: the Taproot output key the signature is for (absent: the vault key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) taproot_output_key: Option<String>,
    /// The committee's parties: the device of each share used (a device of weight `w`
    /// may appear up to `w` times).
    pub(super) signers: Vec<String>,
    pub(super) signer_names: Vec<String>,
    pub(super) latency_ms: f64,
    pub(super) operation: String,
    pub(super) verified: bool,
}

#[derive(Serialize)]
pub(super) struct Shape {
    pub(super) threshold: u16,
    pub(super) devices: usize,
}

#[derive(Serialize)]
pub(super) struct ReshareOut {
    pub(super) vault: String,
    pub(super) from: Shape,
    pub(super) to: Shape,
    pub(super) public_key: String,
    pub(super) public_key_unchanged: bool,
    pub(super) joined: Vec<String>,
    pub(super) operation: String,
    pub(super) latency_ms: f64,
}

#[derive(Serialize)]
pub(super) struct RejectedOut {
    pub(super) vault: String,
    pub(super) operation: String,
    pub(super) reason: String,
}

#[derive(Serialize)]
pub(super) struct StepOut {
    pub(super) step: String,
    pub(super) seconds: f64,
}

fn short(s: &str) -> String {
    if s.len() > 20 {
        format!("{}…{}", &s[..10], &s[s.len() - 8..])
    } else {
        s.to_owned()
    }
}

pub(super) fn print_summary(report: &Report, n: u16, t: u16) {
    let ok = |b: bool| if b { "verified" } else { "NOT VERIFIED" };
    println!();
    println!("vsigner demo: {n} virtual devices, {t}-of-{n} vaults");
    println!();
    println!("Vaults");
    for v in &report.outcome.vaults {
        let shares: u32 = v.weights.iter().sum();
        let shape = if v.weights.iter().any(|w| *w > 1) {
            format!(
                "{}-of-{} shares, weights {}",
                v.threshold,
                shares,
                v.weights.iter().map(u32::to_string).collect::<Vec<_>>().join("/")
            )
        } else {
            format!("{}-of-{}", v.threshold, v.devices)
        };
        println!(
            "  {:<9} {shape}  {}  key {}{}  (created in {:.1} s)",
            v.curve,
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
            _ => {
                let hex_message = s.message.as_deref().unwrap_or_default();
                let bytes = hex::decode(hex_message).unwrap_or_default();
                match String::from_utf8(bytes) {
                    Ok(text) if !text.chars().any(char::is_control) => format!("message {text:?}"),
                    _ => format!("message 0x{}", short(hex_message)),
                }
            }
        };
        let what = match (&s.taproot_output_key, &s.derivation_path) {
            (Some(q), _) => format!("{what} for Taproot output key {}", short(q)),
            (None, Some(path)) => format!("{what} at child key {path}"),
            (None, None) => what,
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
