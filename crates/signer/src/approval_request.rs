//! From a coordinator operation to the request the approver sees, and the checks a device
//! makes before it signs anything.
//!
//! The approver decides on an [`ApprovalRequest`] built here from the operation as the
//! coordinator described it when the vote was asked. When the operation is Ready, the
//! device builds the request again from the Ready operation and runs the protocol only if
//! it is *equal* to the one approved: a coordinator that changed the payload, the path, the
//! signer set or a threshold after the vote gets no signature.
//!
//! The digest an ECDSA committee signs is computed here from the approved payload
//! (`digest` as is, keccak256 of an EIP-1559 transaction, the EIP-191 hash of a message on
//! secp256k1 and its SHA-256 on P-256); the coordinator's `signingDigest` is only compared
//! with it, never used.

use sha2::Sha256;
use sha3::{Digest, Keccak256};
use vsigner_approval::{
    ApprovalRequest, Curve, EthTransaction, Operation as Requested, SignPayload, Signer, Taproot, Vault,
};

use crate::coordinator_api::{Device, Operation, VaultSigner};

/// Why an operation cannot be turned into a request (the device rejects it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidOperation(pub String);

fn invalid(msg: impl Into<String>) -> InvalidOperation {
    InvalidOperation(msg.into())
}

/// The scheme of an operation's vault.
pub fn curve(op: &Operation) -> Result<Curve, InvalidOperation> {
    Curve::from_name(&op.curve).ok_or_else(|| invalid(format!("unsupported curve {:?}", op.curve)))
}

/// The Taproot tweak a sign operation asks for, if any (bip340 vaults only).
fn taproot(op: &Operation, curve: Curve) -> Result<Option<Taproot>, InvalidOperation> {
    let Some(t) = op.sign.as_ref().and_then(|s| s.taproot.as_ref()) else {
        return Ok(None);
    };
    if curve != Curve::Bip340 {
        return Err(invalid(format!(
            "a Taproot tweak applies to bip340 vaults only, not {curve}"
        )));
    }
    let merkle_root = t
        .merkle_root
        .as_deref()
        .map(|r| {
            decode_hex("taproot merkleRoot", r)?
                .try_into()
                .map_err(|_| invalid("the Taproot Merkle root is not 32 bytes"))
        })
        .transpose()?;
    // The output key from the vault key as the coordinator gives it; the run checks that
    // key against the device's own share before anything is signed.
    let output_key = match op.vault.public_key.as_deref() {
        Some(key) => {
            let key = decode_hex("vault publicKey", key)?;
            let tweak = vsigner_tss::schnorr::TaprootTweak { merkle_root };
            Some(
                tweak
                    .output_key(&key)
                    .map_err(|e| invalid(format!("Taproot output key: {e}")))?,
            )
        }
        None => None,
    };
    Ok(Some(Taproot {
        merkle_root,
        output_key,
    }))
}

fn signers(set: &[VaultSigner], directory: &[Device]) -> Result<Vec<Signer>, InvalidOperation> {
    let mut out = Vec::with_capacity(set.len());
    for (position, s) in set.iter().enumerate() {
        if usize::from(s.index) != position {
            return Err(invalid(format!(
                "signer {} has index {} at position {position}",
                s.device_id, s.index
            )));
        }
        if out.iter().any(|o: &Signer| o.id == s.device_id) {
            return Err(invalid(format!("signer {} appears twice", s.device_id)));
        }
        let device = directory.iter().find(|d| d.id == s.device_id).ok_or_else(|| {
            invalid(format!(
                "signer {} is not a device of the organisation",
                s.device_id
            ))
        })?;
        out.push(Signer {
            id: s.device_id.clone(),
            name: device.name.clone(),
            weight: s.weight,
            identity_public_key_hex: device.identity_signing_key.clone(),
            record_hash_hex: device
                .record
                .as_deref()
                .and_then(|r| vsigner_records::SignedDeviceRecord::from_hex(r).ok())
                .map(|r| hex::encode(r.hash()))
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

fn decode_hex(what: &str, s: &str) -> Result<Vec<u8>, InvalidOperation> {
    hex::decode(s.strip_prefix("0x").unwrap_or(s)).map_err(|_| invalid(format!("{what} is not hex")))
}

/// The sign payload of a sign operation.
pub fn sign_payload(op: &Operation) -> Result<SignPayload, InvalidOperation> {
    let sign = op
        .sign
        .as_ref()
        .ok_or_else(|| invalid("sign operation without sign details"))?;
    let bytes = decode_hex("payload", &sign.payload)?;
    Ok(match sign.payload_kind.as_str() {
        "digest" => SignPayload::Digest(
            bytes
                .try_into()
                .map_err(|_| invalid("a digest payload must be 32 bytes"))?,
        ),
        "eth_tx" if curve(op)? != Curve::Secp256k1 => {
            return Err(invalid(format!(
                "an Ethereum transaction is signed by secp256k1 vaults only, not {}",
                op.curve
            )))
        }
        "eth_tx" => SignPayload::EthereumTransaction(
            EthTransaction::decode(&bytes).map_err(|e| invalid(format!("eth_tx payload: {e}")))?,
        ),
        "message" => SignPayload::Message(bytes),
        other => return Err(invalid(format!("unknown payload kind {other:?}"))),
    })
}

/// The request the approver decides on. `directory` is the organisation's devices (names
/// and identity keys of the signers).
pub fn build(op: &Operation, directory: &[Device]) -> Result<ApprovalRequest, InvalidOperation> {
    let curve = curve(op)?;
    let (threshold, set, operation) = match op.kind.as_str() {
        "Keygen" => {
            let k = op
                .keygen
                .as_ref()
                .ok_or_else(|| invalid("keygen without details"))?;
            (
                k.threshold,
                signers(&k.signers, directory)?,
                Requested::CreateVault,
            )
        }
        "Reshare" => {
            let r = op
                .reshare
                .as_ref()
                .ok_or_else(|| invalid("reshare without details"))?;
            (
                r.old_threshold,
                signers(&r.old_signers, directory)?,
                Requested::Reshare {
                    new_threshold: u32::from(r.new_threshold),
                    new_signers: signers(&r.new_signers, directory)?,
                },
            )
        }
        "Sign" => {
            let s = op.sign.as_ref().ok_or_else(|| invalid("sign without details"))?;
            (
                op.vault.threshold,
                signers(&op.vault.signers, directory)?,
                Requested::Sign {
                    payload: sign_payload(op)?,
                    derivation_path: s.derivation_path.clone(),
                    taproot: taproot(op, curve)?,
                },
            )
        }
        other => return Err(invalid(format!("unknown operation kind {other:?}"))),
    };
    Ok(ApprovalRequest {
        operation_id: op.id.clone(),
        organisation_id: op.organisation_id.clone(),
        vault: Vault {
            id: op.vault_id.clone(),
            name: op.vault.name.clone(),
            curve,
            threshold: u32::from(threshold),
            signers: set,
            public_key: match operation {
                Requested::CreateVault => None,
                _ => op.vault.public_key.clone(),
            },
            key_generation: match op.kind.as_str() {
                "Keygen" => 0,
                "Reshare" => op.reshare.as_ref().map_or(0, |r| r.old_key_generation),
                _ => op
                    .sign
                    .as_ref()
                    .map_or(op.vault.key_generation, |s| s.key_generation),
            },
        },
        expires_at: op.expires_at.clone(),
        operation,
    })
}

/// Every device an operation involves: the signer set, and for a reshare the new one too.
pub fn device_ids(op: &Operation) -> Vec<&str> {
    let mut ids: Vec<&str> = op.vault.signers.iter().map(|s| s.device_id.as_str()).collect();
    let more = op.keygen.iter().flat_map(|k| &k.signers).chain(
        op.reshare
            .iter()
            .flat_map(|r| r.old_signers.iter().chain(&r.new_signers)),
    );
    for s in more {
        if !ids.contains(&s.device_id.as_str()) {
            ids.push(&s.device_id);
        }
    }
    ids
}

/// Checks that every committee member's identity keys are the ones registered for that
/// device in the organisation's directory.
pub fn check_committee_keys(op: &Operation, directory: &[Device]) -> Result<(), String> {
    for m in &op.committee {
        let registered = directory.iter().find(|d| d.id == m.device_id);
        match registered {
            Some(d)
                if d.identity_signing_key == m.identity_signing_key
                    && d.identity_encryption_key == m.identity_encryption_key => {}
            _ => {
                return Err(format!(
                    "the identity keys given for committee member {} are not the ones registered for it",
                    m.device_id
                ))
            }
        }
    }
    Ok(())
}

/// What the committee signs: a 32-byte digest (the ECDSA curves, and the `digest` and
/// `eth_tx` kinds on the Schnorr schemes) or the message itself (a `message` on ed25519 or
/// bip340).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningInput {
    /// Signed as a prehash (ECDSA) or as 32 message bytes (Ed25519).
    Digest([u8; 32]),
    /// Ed25519 message bytes.
    Message(Vec<u8>),
}

impl SigningInput {
    /// The bytes an Ed25519 committee signs.
    pub fn bytes(&self) -> &[u8] {
        match self {
            SigningInput::Digest(d) => d,
            SigningInput::Message(m) => m,
        }
    }
}

/// An EIP-191 personal message as it is hashed: `"\x19Ethereum Signed Message:\n" ‖ len ‖
/// message`.
pub fn eip191_prefixed(message: &[u8]) -> Vec<u8> {
    let mut data = format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
    data.extend_from_slice(message);
    data
}

/// The EIP-191 hash of a personal message.
pub fn eip191_hash(message: &[u8]) -> [u8; 32] {
    Keccak256::digest(eip191_prefixed(message)).into()
}

/// Computes what to sign from the approved payload, and checks that the coordinator's
/// `signingDigest` says the same.
pub fn signing_input(op: &Operation, payload: &SignPayload) -> Result<SigningInput, InvalidOperation> {
    let curve = curve(op)?;
    let input = match (curve, payload) {
        (_, SignPayload::Digest(d)) => SigningInput::Digest(*d),
        // Only secp256k1 gets here: `sign_payload` refuses a transaction for any other vault.
        (_, SignPayload::EthereumTransaction(tx)) => SigningInput::Digest(Keccak256::digest(tx.raw()).into()),
        (Curve::Secp256k1, SignPayload::Message(m)) => SigningInput::Digest(eip191_hash(m)),
        (Curve::Secp256r1, SignPayload::Message(m)) => SigningInput::Digest(Sha256::digest(m).into()),
        (Curve::Ed25519 | Curve::Bip340, SignPayload::Message(m)) => SigningInput::Message(m.clone()),
    };
    let claimed = op.sign.as_ref().and_then(|s| s.signing_digest.as_deref());
    match (&input, claimed) {
        (SigningInput::Digest(d), Some(c)) if decode_hex("signingDigest", c)? == d.as_slice() => Ok(input),
        (SigningInput::Message(_), None) => Ok(input),
        _ => Err(invalid(
            "the coordinator's signingDigest does not match the approved payload",
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn directory() -> Vec<Device> {
        ["a", "b", "c"]
            .iter()
            .map(|n| {
                serde_json::from_value(json!({
                    "id": format!("dev-{n}"), "organisationId": "org", "name": n, "kind": "virtual",
                    "identitySigningKey": format!("{n}{n}"), "identityEncryptionKey": "ee", "status": "Active"
                }))
                .unwrap()
            })
            .collect()
    }

    fn sign_op(curve: &str, kind: &str, payload: &[u8], digest: Option<[u8; 32]>) -> Operation {
        let signers = json!([{"deviceId": "dev-a", "weight": 1, "index": 0},
                             {"deviceId": "dev-b", "weight": 1, "index": 1},
                             {"deviceId": "dev-c", "weight": 1, "index": 2}]);
        serde_json::from_value(json!({
            "id": "op-1", "organisationId": "org", "kind": "Sign", "state": "AwaitingApproval",
            "vaultId": "v-1", "curve": curve, "nonce": "00".repeat(32),
            "createdAt": "2026-11-25T10:00:00.000Z", "updatedAt": "2026-11-25T10:00:00.000Z",
            "expiresAt": "2026-11-25T11:00:00.000Z",
            "vault": {"id": "v-1", "organisationId": "org", "name": "treasury", "curve": curve, "threshold": 2,
                      "signers": signers, "publicKey": null, "chainCode": null, "keyGeneration": 0,
                      "keySetHash": null, "status": "Active", "ethereumAddress": null},
            "committee": [], "submittedDeviceIds": [],
            "sign": {"payloadKind": kind, "payload": hex::encode(payload),
                     "signingDigest": digest.map(hex::encode), "derivationPath": null, "chainId": null, "keyGeneration": 0},
            "keygen": null, "reshare": null, "result": null, "failure": null, "rejectionReason": null, "startedBy": null
        }))
        .unwrap()
    }

    #[test]
    fn a_request_is_built_from_the_operation_and_changes_with_it() {
        let op = sign_op("secp256k1", "digest", &[7; 32], Some([7; 32]));
        let request = build(&op, &directory()).unwrap();
        assert_eq!(request.vault.signers.len(), 3);
        assert_eq!(request.vault.signers[1].name, "b");
        assert_eq!(request.vault.signers[1].identity_public_key_hex, "bb");
        assert!(matches!(
            &request.operation,
            Requested::Sign { payload: SignPayload::Digest(d), .. } if d == &[7; 32]
        ));
        // The same operation gives the same request; any change of content gives another.
        assert_eq!(build(&op, &directory()).unwrap(), request);
        let mut changed = op.clone();
        changed.sign.as_mut().unwrap().payload = hex::encode([8; 32]);
        assert_ne!(build(&changed, &directory()).unwrap(), request);
        let mut changed = op.clone();
        changed.sign.as_mut().unwrap().derivation_path = Some("m/0/1".into());
        assert_ne!(build(&changed, &directory()).unwrap(), request);
        let mut changed = op.clone();
        changed.vault.threshold = 3;
        assert_ne!(build(&changed, &directory()).unwrap(), request);
        let mut changed = op.clone();
        changed.vault.signers.swap(0, 1);
        assert!(build(&changed, &directory()).is_err(), "indices out of order");
        let mut changed = op;
        changed.vault.signers[2].device_id = "dev-x".into();
        assert!(build(&changed, &directory()).is_err(), "unknown device");
    }

    #[test]
    fn the_signing_digest_is_computed_locally_and_must_match() {
        let message = b"hello";
        let expected = eip191_hash(message);
        // EIP-191 test vector: personal_sign("hello").
        assert_eq!(
            hex::encode(expected),
            "50b2c43fd39106bafbba0da34fc430e1f91e3c96ea2acee2bc34119f92b37750"
        );
        let op = sign_op("secp256k1", "message", message, Some(expected));
        let payload = sign_payload(&op).unwrap();
        assert_eq!(
            signing_input(&op, &payload).unwrap(),
            SigningInput::Digest(expected)
        );
        // A coordinator that names another digest is refused.
        let op = sign_op("secp256k1", "message", message, Some([1; 32]));
        assert!(signing_input(&op, &sign_payload(&op).unwrap()).is_err());
        let op = sign_op("secp256k1", "message", message, None);
        assert!(signing_input(&op, &sign_payload(&op).unwrap()).is_err());
        // Ed25519 messages are signed as they are; a digest claimed for them is refused.
        let op = sign_op("ed25519", "message", message, None);
        assert_eq!(
            signing_input(&op, &sign_payload(&op).unwrap()).unwrap(),
            SigningInput::Message(message.to_vec())
        );
        let op = sign_op("ed25519", "message", message, Some([1; 32]));
        assert!(signing_input(&op, &sign_payload(&op).unwrap()).is_err());
        // Malformed payloads.
        assert!(sign_payload(&sign_op("secp256k1", "digest", &[1; 31], None)).is_err());
        assert!(sign_payload(&sign_op("secp256k1", "eth_tx", &[2, 1], None)).is_err());
        assert!(sign_payload(&sign_op("secp256k1", "blob", &[1], None)).is_err());
        // P-256 messages are signed over their SHA-256; bip340 messages as they are.
        let op = sign_op(
            "secp256r1",
            "message",
            message,
            Some(Sha256::digest(message).into()),
        );
        assert_eq!(
            signing_input(&op, &sign_payload(&op).unwrap()).unwrap(),
            SigningInput::Digest(Sha256::digest(message).into())
        );
        let op = sign_op("bip340", "message", message, None);
        assert_eq!(
            signing_input(&op, &sign_payload(&op).unwrap()).unwrap(),
            SigningInput::Message(message.to_vec())
        );
        // A Taproot signature: the approver is shown the output key (BIP-86's first
        // vector: internal key cc8a…c115, output key a608…684c).
        let mut op = sign_op("bip340", "digest", &[7; 32], Some([7; 32]));
        op.vault.public_key = Some("cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115".into());
        op.sign.as_mut().unwrap().taproot =
            Some(crate::coordinator_api::TaprootDetails { merkle_root: None });
        let shown = taproot(&op, Curve::Bip340).unwrap().unwrap();
        assert_eq!(
            hex::encode(shown.output_key.unwrap()),
            "a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c"
        );
        // An Ethereum transaction is for secp256k1 only: a coordinator that asks another
        // scheme to sign one gets no request for the approver and no signature.
        let tx = hex::decode(
            "02e80180843b9aca00850df847580082520894000000000000000000000000000000000000dead8080c0",
        )
        .unwrap();
        assert!(sign_payload(&sign_op("secp256k1", "eth_tx", &tx, None)).is_ok());
        for curve in ["secp256r1", "ed25519", "bip340"] {
            let err = sign_payload(&sign_op(curve, "eth_tx", &tx, None)).unwrap_err();
            assert!(err.0.contains("secp256k1 vaults only"), "{curve}: {err}");
        }
    }

    #[test]
    fn committee_keys_must_be_the_registered_ones() {
        let mut op = sign_op("secp256k1", "digest", &[7; 32], Some([7; 32]));
        let member = |id: &str, key: &str| -> crate::coordinator_api::CommitteeMember {
            serde_json::from_value(json!({"deviceId": id, "name": id, "identitySigningKey": key,
                "identityEncryptionKey": "ee", "index": 0, "oldIndex": 0, "newIndex": null}))
            .unwrap()
        };
        op.committee = vec![member("dev-a", "aa"), member("dev-b", "bb")];
        check_committee_keys(&op, &directory()).unwrap();
        op.committee[1] = member("dev-b", "ff");
        assert!(check_committee_keys(&op, &directory()).is_err());
        op.committee[1] = member("dev-z", "zz");
        assert!(check_committee_keys(&op, &directory()).is_err());
    }
}
