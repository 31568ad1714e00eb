//! The demo's own checks of what the coordinator reports: the vault's state, the
//! committee of each signature, and each signature verified with libraries that are not
//! the coordinator's ([`verify`](super::verify)).

use std::time::Duration;

use anyhow::Context;
use rand_core::RngCore;
use serde_json::Value;
use sha2::Digest as _;

use super::report::SignatureOut;
use super::{ms, verify};
use crate::operator::text;

pub(super) fn committee(op: &Value) -> Vec<String> {
    op["committee"]
        .as_array()
        .map(|c| c.iter().map(|m| text(&m["deviceId"]).to_owned()).collect())
        .unwrap_or_default()
}

pub(super) fn random_32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut b);
    b
}

pub(super) struct VaultState {
    pub(super) id: String,
    pub(super) curve: &'static str,
    pub(super) public_key: Vec<u8>,
    /// The Ethereum address (secp256k1) or the Taproot address (bip340).
    pub(super) address: Option<String>,
    /// bip340: the Taproot output key, as the coordinator reports it.
    pub(super) taproot_output_key: Option<Vec<u8>>,
    /// As the coordinator reports it.
    pub(super) threshold: u16,
    pub(super) signers: Vec<String>,
}

pub(super) fn vault_state(vault: &Value, curve: &'static str) -> anyhow::Result<VaultState> {
    Ok(VaultState {
        id: text(&vault["id"]).to_owned(),
        curve,
        public_key: hex::decode(text(&vault["publicKey"]))
            .with_context(|| format!("vault {} has no public key", text(&vault["id"])))?,
        address: vault["ethereumAddress"]
            .as_str()
            .or(vault["taprootAddress"].as_str())
            .map(str::to_owned),
        taproot_output_key: vault["taprootOutputKey"]
            .as_str()
            .and_then(|q| hex::decode(q).ok()),
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

pub(super) fn signature_fields(op: &Value) -> anyhow::Result<(Vec<u8>, Option<u8>)> {
    let sig = hex::decode(text(&op["result"]["signature"]))
        .with_context(|| format!("operation {} has no signature", text(&op["id"])))?;
    let recid = op["result"]["recoveryId"]
        .as_u64()
        .and_then(|r| u8::try_from(r).ok());
    Ok((sig, recid))
}

/// The committee of a signature: exactly the vault's threshold of its own signers.
pub(super) fn check_committee(vault: &VaultState, op: &Value, problems: &mut Vec<String>) -> bool {
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
pub(super) fn check_digest(
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
        taproot_output_key: None,
        signer_names: Vec::new(),
        latency_ms: ms(took),
        operation: id,
        verified,
    })
}

/// A signature of `message` on ed25519, P-256 (over its SHA-256) or bip340 (with `taproot`,
/// under the vault's Taproot output key).
pub(super) fn check_message(
    vault: &VaultState,
    message: &[u8],
    taproot: bool,
    op: &Value,
    took: Duration,
    problems: &mut Vec<String>,
) -> anyhow::Result<SignatureOut> {
    let (sig, recid) = signature_fields(op)?;
    let id = text(&op["id"]).to_owned();
    let committee_ok = check_committee(vault, op, problems);
    let output_key = if taproot {
        vault.taproot_output_key.clone()
    } else {
        None
    };
    let checked = match (vault.curve, &output_key) {
        ("ed25519", _) => verify::ed25519(&vault.public_key, message, &sig),
        ("secp256r1", _) => {
            let digest: [u8; 32] = sha2::Sha256::digest(message).into();
            verify::p256(&vault.public_key, &digest, &sig, recid.unwrap_or(u8::MAX))
        }
        ("bip340", None) if !taproot => verify::bip340(&vault.public_key, message, &sig),
        ("bip340", Some(q)) => verify::bip340(q, message, &sig),
        (curve, _) => Err(format!("no {curve} message check (or no Taproot output key)")),
    };
    let verified = match checked {
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
        recovery_id: recid,
        taproot_output_key: output_key.map(hex::encode),
        signers: committee(op),
        signer_names: Vec::new(),
        latency_ms: ms(took),
        operation: id,
        verified,
    })
}
