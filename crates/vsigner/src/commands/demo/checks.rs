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
    /// The chain code of its child keys, if it has them.
    pub(super) chain_code: Option<[u8; 32]>,
    /// As the coordinator reports it.
    pub(super) threshold: u16,
    pub(super) signers: Vec<String>,
    /// Each signer's weight (the shares it holds), in signer order.
    pub(super) weights: Vec<u32>,
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
        chain_code: vault["chainCode"]
            .as_str()
            .and_then(|c| hex::decode(c).ok())
            .and_then(|c| c.try_into().ok()),
        threshold: vault["threshold"]
            .as_u64()
            .and_then(|t| u16::try_from(t).ok())
            .unwrap_or_default(),
        signers: vault["signers"]
            .as_array()
            .map(|s| s.iter().map(|d| text(&d["deviceId"]).to_owned()).collect())
            .unwrap_or_default(),
        weights: vault["signers"]
            .as_array()
            .map(|s| {
                s.iter()
                    .map(|d| {
                        d["weight"]
                            .as_u64()
                            .and_then(|w| u32::try_from(w).ok())
                            .unwrap_or(1)
                    })
                    .collect()
            })
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

/// The committee of a signature: exactly the vault's threshold of shares, each party run by
/// a signer of the vault, none more often than its weight.
pub(super) fn check_committee(vault: &VaultState, op: &Value, problems: &mut Vec<String>) -> bool {
    let members = committee(op);
    let within_weight = vault.signers.iter().zip(&vault.weights).all(|(d, w)| {
        members.iter().filter(|m| *m == d).count() <= usize::try_from(*w).unwrap_or(usize::MAX)
    });
    let ok = members.len() == usize::from(vault.threshold)
        && members.iter().all(|m| vault.signers.contains(m))
        && within_weight;
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
        derivation_path: None,
        signer_names: Vec::new(),
        latency_ms: ms(took),
        operation: id,
        verified,
    })
}

/// How a message is signed: by the vault key, a child key (ed25519), or the Taproot output
/// key (bip340).
#[derive(Clone, Copy)]
pub(super) enum SignedBy<'a> {
    VaultKey,
    Child(&'a [u32]),
    Taproot,
}

/// A signature of `message` on ed25519 (by the vault key or a child key), P-256 (over its
/// SHA-256) or bip340 (by the vault key or its Taproot output key).
pub(super) fn check_message(
    vault: &VaultState,
    message: &[u8],
    by: SignedBy<'_>,
    op: &Value,
    took: Duration,
    problems: &mut Vec<String>,
) -> anyhow::Result<SignatureOut> {
    let (sig, recid) = signature_fields(op)?;
    let id = text(&op["id"]).to_owned();
    let committee_ok = check_committee(vault, op, problems);
    let taproot = matches!(by, SignedBy::Taproot);
    let output_key = if taproot {
        vault.taproot_output_key.clone()
    } else {
        None
    };
    let path = match by {
        SignedBy::Child(path) => Some(path),
        _ => None,
    };
    let checked = match (vault.curve, &output_key, path) {
        ("ed25519", _, Some(path)) => match vault.chain_code {
            Some(cc) => verify::ed25519_child(&vault.public_key, &cc, path)
                .and_then(|child| verify::ed25519(&child, message, &sig)),
            None => Err("the vault reports no chain code".to_owned()),
        },
        ("ed25519", _, None) => verify::ed25519(&vault.public_key, message, &sig),
        ("secp256r1", _, None) => {
            let digest: [u8; 32] = sha2::Sha256::digest(message).into();
            verify::p256(&vault.public_key, &digest, &sig, recid.unwrap_or(u8::MAX))
        }
        ("bip340", None, None) if !taproot => verify::bip340(&vault.public_key, message, &sig),
        ("bip340", Some(q), None) => verify::bip340(q, message, &sig),
        (curve, _, _) => Err(format!(
            "no such {curve} message check (or no Taproot output key)"
        )),
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
        derivation_path: path.map(|p| {
            let parts: Vec<String> = p.iter().map(u32::to_string).collect();
            format!("m/{}", parts.join("/"))
        }),
        signers: committee(op),
        signer_names: Vec::new(),
        latency_ms: ms(took),
        operation: id,
        verified,
    })
}
