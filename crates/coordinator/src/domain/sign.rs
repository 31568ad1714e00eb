//! What a signature adds to the lifecycle: the payload (a digest, an EIP-1559
//! transaction or a message) and the digest a committee signs, and the check of a submitted
//! signature against the vault key (at its derivation path) before it is accepted.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{
    AuditEvent, Curve, DeviceId, Error, ErrorCode, Millis, Operation, OperationDetails, OperationResult,
    OperationState, Outcome, Result, Vault,
};
use crate::crypto;

/// What to sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "hex", rename_all = "snake_case")]
pub enum SignPayload {
    /// A 32-byte digest, signed as given.
    Digest(#[serde(with = "hex::serde")] [u8; 32]),
    /// An unsigned EIP-1559 transaction `0x02 ‖ rlp(…)`; digest keccak256(bytes).
    EthTx(#[serde(with = "hex::serde")] Vec<u8>),
    /// Message bytes: EIP-191 personal-message hash on secp256k1, SHA-256 on P-256, signed
    /// as they are on ed25519 and bip340.
    Message(#[serde(with = "hex::serde")] Vec<u8>),
}

/// A BIP-341 key-path tweak asked for with a BIP-340 signature: the committee signs for the
/// vault's Taproot output key `Q = P + int(hash_TapTweak(x(P) ‖ merkle_root))·G`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaprootTweak {
    /// The script tree's Merkle root (64 lowercase hex), `None` for an output without one.
    pub merkle_root_hex: Option<String>,
}

impl TaprootTweak {
    /// A tweak from client input (`taprootMerkleRoot` hex, if any), for a bip340 vault only.
    pub fn parse(curve: Curve, taproot: bool, merkle_root: Option<&str>) -> Result<Option<Self>> {
        if !taproot && merkle_root.is_none() {
            return Ok(None);
        }
        if curve != Curve::Bip340 {
            return Err(Error::new(
                ErrorCode::InvalidPayload,
                format!(
                    "a Taproot tweak applies to bip340 vaults only, not {}",
                    curve.as_str()
                ),
            ));
        }
        let merkle_root_hex = merkle_root
            .map(|r| crypto::decode_hex_array::<32>("taprootMerkleRoot", r, ErrorCode::InvalidPayload))
            .transpose()?
            .map(hex::encode);
        Ok(Some(TaprootTweak { merkle_root_hex }))
    }

    /// The Merkle root's bytes.
    pub fn merkle_root(&self) -> Result<Option<[u8; 32]>> {
        self.merkle_root_hex
            .as_deref()
            .map(|r| crypto::decode_hex_array::<32>("taprootMerkleRoot", r, ErrorCode::InvalidPayload))
            .transpose()
    }
}

impl SignPayload {
    /// `digest`, `eth_tx` or `message`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Digest(_) => "digest",
            Self::EthTx(_) => "eth_tx",
            Self::Message(_) => "message",
        }
    }
    /// The payload bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Digest(d) => d,
            Self::EthTx(b) | Self::Message(b) => b,
        }
    }
}

/// Builds the sign payload from client input: exactly one of digest, ethTx, message.
pub fn parse_sign_payload(
    curve: Curve,
    digest: Option<&str>,
    eth_tx: Option<&str>,
    message: Option<&str>,
) -> Result<SignPayload> {
    let payload = match (digest, eth_tx, message) {
        (Some(d), None, None) => SignPayload::Digest(crypto::decode_hex_array::<32>(
            "digest",
            d,
            ErrorCode::InvalidDigest,
        )?),
        (None, Some(t), None) => {
            let bytes = crypto::decode_hex("ethTx", t)
                .map_err(|e| Error::new(ErrorCode::InvalidPayload, e.message().to_owned()))?;
            SignPayload::EthTx(bytes)
        }
        (None, None, Some(m)) => {
            let bytes = crypto::decode_hex("message", m)
                .map_err(|e| Error::new(ErrorCode::InvalidPayload, e.message().to_owned()))?;
            if bytes.is_empty() || bytes.len() > 64 * 1024 {
                return Err(Error::new(
                    ErrorCode::InvalidPayload,
                    "message must be 1 byte to 64 KiB",
                ));
            }
            SignPayload::Message(bytes)
        }
        _ => {
            return Err(Error::new(
                ErrorCode::InvalidPayload,
                "give exactly one of digest, ethTx, message",
            ))
        }
    };
    if let SignPayload::EthTx(bytes) = &payload {
        if curve != Curve::Secp256k1 {
            return Err(Error::new(
                ErrorCode::InvalidPayload,
                "ethTx needs a secp256k1 vault",
            ));
        }
        crypto::decode_unsigned_eip1559(bytes)?;
    }
    Ok(payload)
}

/// The 32 bytes an ECDSA committee signs, or `None` for a Schnorr scheme's `message`
/// payload (signed as is): a digest as given; keccak256 of an EIP-1559 transaction; for a
/// message, its EIP-191 hash on secp256k1 and its SHA-256 on P-256 (the usual prehash of
/// each curve).
pub fn signing_digest(curve: Curve, payload: &SignPayload) -> Option<[u8; 32]> {
    match (curve, payload) {
        (_, SignPayload::Digest(d)) => Some(*d),
        (_, SignPayload::EthTx(b)) => Some(crypto::keccak256(b)),
        (Curve::Secp256k1, SignPayload::Message(m)) => Some(crypto::eip191_hash(m)),
        (Curve::Secp256r1, SignPayload::Message(m)) => Some(Sha256::digest(m).into()),
        (Curve::Ed25519 | Curve::Bip340, SignPayload::Message(_)) => None,
    }
}

/// The bytes the signature is verified over: the digest on the ECDSA curves (prehash), the
/// message itself (or the 32 digest bytes) on the Schnorr schemes.
fn verification_message(curve: Curve, payload: &SignPayload) -> Vec<u8> {
    match signing_digest(curve, payload) {
        Some(d) => d.to_vec(),
        None => payload.bytes().to_vec(),
    }
}

impl Operation {
    /// The signing digest (sign operations on secp256k1, or digest/eth_tx payloads).
    pub fn signing_digest(&self) -> Option<[u8; 32]> {
        match &self.details {
            OperationDetails::Sign { payload, .. } => signing_digest(self.curve, payload),
            _ => None,
        }
    }

    /// A signature from a committee member, verified before acceptance. A signature
    /// that does not verify fails the operation, naming the device, and is refused.
    pub fn submit_signature(
        &mut self,
        vault: &Vault,
        device: &DeviceId,
        signature_hex: &str,
        recovery_id: Option<i64>,
        now: Millis,
    ) -> Result<Outcome> {
        let OperationDetails::Sign {
            payload,
            derivation_path,
            taproot,
            key_generation,
            ..
        } = &self.details
        else {
            return Err(Error::invalid_state(format!(
                "operation {} is not a sign operation",
                self.id
            )));
        };
        let (payload, derivation_path, taproot, key_generation) = (
            payload.clone(),
            derivation_path.clone(),
            taproot.clone(),
            *key_generation,
        );
        self.check_running_member(device, now)?;
        if vault.key_generation != key_generation {
            return Err(Error::invalid_state(format!(
                "the vault was reshared (key generation {} → {}) since this operation was created",
                key_generation, vault.key_generation
            )));
        }
        // Malformed input is refused before any state change (the operation stays).
        let recovery = self.curve.recovery_id(recovery_id)?;
        let signature = crypto::decode_hex("signature", signature_hex)?;
        let message = verification_message(self.curve, &payload);
        let verdict = self.curve.verify(
            vault,
            derivation_path.as_deref(),
            taproot.as_ref(),
            &message,
            &signature,
            recovery,
        )?;
        let mut out = Outcome::default();
        self.mark_started(device, now, &mut out);
        if let Err(why) = verdict {
            out.events.push(AuditEvent::new(
                "signature_refused",
                Some(device),
                serde_json::json!({"reason": why, "signature": signature_hex}),
            ));
            self.fail(
                format!("device {device} submitted a signature that was refused: {why}"),
                vec![device.clone()],
                None,
                now,
                &mut out,
            );
            out.refusal = Some(Error::new(
                ErrorCode::SignatureInvalid,
                format!(
                    "signature refused ({why}); operation {} failed, device {device} named",
                    self.id
                ),
            ));
            return Ok(out);
        }
        let mut result = OperationResult {
            signature: Some(hex::encode(&signature)),
            recovery_id: recovery,
            submitted_by: Some(device.clone()),
            ..OperationResult::default()
        };
        if let SignPayload::EthTx(bytes) = &payload {
            let tx = crypto::decode_unsigned_eip1559(bytes)?;
            let sig: [u8; 64] = signature
                .as_slice()
                .try_into()
                .map_err(|e| Error::internal("signature", e))?;
            let raw = crypto::assemble_signed_eip1559(&tx, &sig, recovery.unwrap_or(0));
            result.raw_transaction = Some(format!("0x{}", hex::encode(raw)));
        }
        out.events.push(AuditEvent::new(
            "signature_accepted",
            Some(device),
            serde_json::json!({}),
        ));
        self.result = Some(result);
        self.set_state(OperationState::Completed, now, &mut out, "signature verified");
        Ok(out)
    }

    /// The chain id of an eth_tx payload.
    pub fn eth_chain_id(&self) -> Option<u64> {
        match &self.details {
            OperationDetails::Sign {
                payload: SignPayload::EthTx(bytes),
                ..
            } => crypto::decode_unsigned_eip1559(bytes).ok().map(|tx| tx.chain_id),
            _ => None,
        }
    }
}
