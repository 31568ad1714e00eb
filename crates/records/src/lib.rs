//! What a device says about itself and its actions, signed with its Ed25519 identity key,
//! so that nobody who relays it (the coordinator, the broker) can change it, and anyone
//! holding the device's public key can check it, online or offline.
//!
//! # Layout
//! - [`DeviceRecord`]: a device's own record of its keys, the analogue of io.finnet's
//!   `clientRecord`: organisation, device id, Ed25519 signing key, X25519 encryption key
//!   and a revision, signed by the signing key. It ties the encryption key to the signing
//!   key: a coordinator that lists another encryption key for a device cannot make a record
//!   for it.
//! - [`Statement`]: what a device does on an operation (a vote, a start, a failure report,
//!   a result), signed by the device; the coordinator refuses an action whose statement
//!   does not verify under the acting device's key, and keeps the signature in the audit
//!   log.
//!
//! This crate does no I/O. Every encoding is length-prefixed and domain-separated, so no
//! two different contents have the same signed bytes.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Why a record or a statement is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes are not a device record.
    #[error("malformed device record: {0}")]
    Malformed(&'static str),
    /// A key is not a valid public key.
    #[error("invalid {0} key")]
    InvalidKey(&'static str),
    /// The signature does not verify under the signing key.
    #[error("the signature does not verify")]
    BadSignature,
}

const RECORD_MAGIC: &[u8; 4] = b"VSDR";
const RECORD_VERSION: u8 = 1;
const RECORD_DOMAIN: &[u8] = b"vsigner/device-record/v1\0";
const STATEMENT_DOMAIN: &[u8] = b"vsigner/device-statement/v1\0";
/// Longest organisation or device id in a record.
pub const MAX_ID_LEN: usize = 255;

fn put(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

/// A device's record of its own keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The organisation the device belongs to.
    pub organisation_id: String,
    /// The device's id at the coordinator.
    pub device_id: String,
    /// Ed25519 public key: signs envelopes, requests, statements and this record.
    pub signing_key: [u8; 32],
    /// X25519 public key: what peers encrypt to.
    pub encryption_key: [u8; 32],
    /// Starts at 1; a newer record (a rotated encryption key) has a higher revision.
    pub revision: u64,
}

/// A [`DeviceRecord`] with its signature by the record's own signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDeviceRecord {
    /// The record.
    pub record: DeviceRecord,
    /// Ed25519 signature over [`DeviceRecord::signed_bytes`].
    pub signature: [u8; 64],
}

impl DeviceRecord {
    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = RECORD_DOMAIN.to_vec();
        put(&mut out, self.organisation_id.as_bytes());
        put(&mut out, self.device_id.as_bytes());
        out.extend_from_slice(&self.signing_key);
        out.extend_from_slice(&self.encryption_key);
        out.extend_from_slice(&self.revision.to_be_bytes());
        out
    }

    /// Signs the record with the device's identity key (whose public half must be
    /// `signing_key`, or the record will not verify).
    pub fn sign(self, key: &SigningKey) -> SignedDeviceRecord {
        let signature = key.sign(&self.signed_bytes()).to_bytes();
        SignedDeviceRecord {
            record: self,
            signature,
        }
    }
}

impl SignedDeviceRecord {
    /// Checks the signature under the record's own signing key (strict Ed25519).
    pub fn verify(&self) -> Result<(), RecordError> {
        let key = VerifyingKey::from_bytes(&self.record.signing_key)
            .map_err(|_| RecordError::InvalidKey("signing"))?;
        key.verify_strict(
            &self.record.signed_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| RecordError::BadSignature)
    }

    /// The record as stored and exchanged: `"VSDR" ‖ version ‖ u8 len ‖ organisation ‖
    /// u8 len ‖ device ‖ signing key (32) ‖ encryption key (32) ‖ revision (u64) ‖
    /// signature (64)`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let r = &self.record;
        let mut out =
            Vec::with_capacity(4 + 1 + 2 + r.organisation_id.len() + r.device_id.len() + 32 + 32 + 8 + 64);
        out.extend_from_slice(RECORD_MAGIC);
        out.push(RECORD_VERSION);
        out.push(r.organisation_id.len() as u8);
        out.extend_from_slice(r.organisation_id.as_bytes());
        out.push(r.device_id.len() as u8);
        out.extend_from_slice(r.device_id.as_bytes());
        out.extend_from_slice(&r.signing_key);
        out.extend_from_slice(&r.encryption_key);
        out.extend_from_slice(&r.revision.to_be_bytes());
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses [`Self::to_bytes`] (the signature is not checked: see [`Self::verify`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut rest = bytes
            .strip_prefix(RECORD_MAGIC.as_slice())
            .ok_or(RecordError::Malformed("not a device record"))?;
        let mut take = |n: usize| -> Result<&[u8], RecordError> {
            let (head, tail) = rest
                .split_at_checked(n)
                .ok_or(RecordError::Malformed("truncated"))?;
            rest = tail;
            Ok(head)
        };
        if take(1)? != [RECORD_VERSION] {
            return Err(RecordError::Malformed("unknown version"));
        }
        let mut text = |what: &'static str| -> Result<String, RecordError> {
            let len = usize::from(*take(1)?.first().ok_or(RecordError::Malformed("truncated"))?);
            let s = std::str::from_utf8(take(len)?).map_err(|_| RecordError::Malformed(what))?;
            if s.is_empty() {
                return Err(RecordError::Malformed(what));
            }
            Ok(s.to_owned())
        };
        let organisation_id = text("organisation id")?;
        let device_id = text("device id")?;
        let array = |b: &[u8]| -> Result<[u8; 32], RecordError> {
            b.try_into().map_err(|_| RecordError::Malformed("truncated"))
        };
        let signing_key = array(take(32)?)?;
        let encryption_key = array(take(32)?)?;
        let revision = u64::from_be_bytes(
            take(8)?
                .try_into()
                .map_err(|_| RecordError::Malformed("truncated"))?,
        );
        let signature: [u8; 64] = take(64)?
            .try_into()
            .map_err(|_| RecordError::Malformed("truncated"))?;
        if !rest.is_empty() {
            return Err(RecordError::Malformed("trailing bytes"));
        }
        Ok(SignedDeviceRecord {
            record: DeviceRecord {
                organisation_id,
                device_id,
                signing_key,
                encryption_key,
                revision,
            },
            signature,
        })
    }

    /// Lowercase hex of [`Self::to_bytes`] (as the coordinator's GraphQL API carries it).
    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    /// Parses [`Self::to_hex`].
    pub fn from_hex(s: &str) -> Result<Self, RecordError> {
        Self::from_bytes(&hex::decode(s).map_err(|_| RecordError::Malformed("not hex"))?)
    }

    /// SHA-256 of [`Self::to_bytes`]: what an approver pins to recognise the record.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.to_bytes()).into()
    }
}

/// What a device says it did on an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    /// A vote; content: the choice (`approve`, `reject`, `abstain`).
    Vote,
    /// The device started the protocol; no content.
    Start,
    /// The protocol failed; content: the reason, then each culprit's device id.
    Failure,
    /// A keygen result; content: public key, chain code (or empty), key-set hash (hex).
    KeygenResult,
    /// A reshare result; content: public key, key-set hash (hex).
    ReshareResult,
    /// A presignature result; content: the fingerprint (hex).
    PresignResult,
    /// A signature; content: the signature (hex), the recovery id (or empty).
    Signature,
    /// The device no longer holds its unconsumed presignatures (they lived in the memory of
    /// a process that ended); content: why. Made about the device itself: the statement's
    /// operation id is the device id.
    DiscardPresignatures,
}

impl StatementKind {
    /// The stable name, as signed and as the audit log writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Vote => "vote",
            StatementKind::Start => "start",
            StatementKind::Failure => "failure",
            StatementKind::KeygenResult => "keygen_result",
            StatementKind::ReshareResult => "reshare_result",
            StatementKind::PresignResult => "presign_result",
            StatementKind::Signature => "signature",
            StatementKind::DiscardPresignatures => "discard_presignatures",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            StatementKind::Vote,
            StatementKind::Start,
            StatementKind::Failure,
            StatementKind::KeygenResult,
            StatementKind::ReshareResult,
            StatementKind::PresignResult,
            StatementKind::Signature,
            StatementKind::DiscardPresignatures,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A device's signed statement about an operation: who, which operation, what, and the
/// content, exactly as sent to the coordinator (the strings are signed as they are, so the
/// coordinator checks what it received and an auditor what it stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement<'a> {
    /// Organisation.
    pub organisation_id: &'a str,
    /// Operation.
    pub operation_id: &'a str,
    /// The device making the statement.
    pub device_id: &'a str,
    /// What it is.
    pub kind: StatementKind,
    /// The fields of the kind, in order (see [`StatementKind`]).
    pub content: Vec<&'a str>,
}

impl Statement<'_> {
    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = STATEMENT_DOMAIN.to_vec();
        put(&mut out, self.organisation_id.as_bytes());
        put(&mut out, self.operation_id.as_bytes());
        put(&mut out, self.device_id.as_bytes());
        put(&mut out, self.kind.as_str().as_bytes());
        out.extend_from_slice(&(self.content.len() as u32).to_be_bytes());
        for field in &self.content {
            put(&mut out, field.as_bytes());
        }
        out
    }

    /// The device's signature (hex, as the coordinator's API carries it).
    pub fn sign(&self, key: &SigningKey) -> String {
        hex::encode(key.sign(&self.signed_bytes()).to_bytes())
    }

    /// Checks `signature_hex` under the device's signing key.
    pub fn verify(&self, signing_key: &[u8; 32], signature_hex: &str) -> Result<(), RecordError> {
        let key = VerifyingKey::from_bytes(signing_key).map_err(|_| RecordError::InvalidKey("signing"))?;
        let signature: [u8; 64] = hex::decode(signature_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(RecordError::BadSignature)?;
        key.verify_strict(&self.signed_bytes(), &Signature::from_bytes(&signature))
            .map_err(|_| RecordError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn key() -> SigningKey {
        SigningKey::generate(&mut rand_core::OsRng)
    }

    fn record(k: &SigningKey) -> DeviceRecord {
        DeviceRecord {
            organisation_id: "org_1".into(),
            device_id: "dev_1".into(),
            signing_key: k.verifying_key().to_bytes(),
            encryption_key: [7; 32],
            revision: 1,
        }
    }

    #[test]
    fn a_record_verifies_round_trips_and_any_change_breaks_it() {
        let k = key();
        let signed = record(&k).sign(&k);
        signed.verify().unwrap();
        let parsed = SignedDeviceRecord::from_hex(&signed.to_hex()).unwrap();
        assert_eq!(parsed, signed);
        assert_eq!(parsed.hash(), signed.hash());
        // Another encryption key, id, organisation or revision: the signature fails.
        let mut swapped = signed.clone();
        swapped.record.encryption_key = [8; 32];
        assert_eq!(swapped.verify(), Err(RecordError::BadSignature));
        let mut other = signed.clone();
        other.record.device_id = "dev_2".into();
        assert_eq!(other.verify(), Err(RecordError::BadSignature));
        let mut other = signed.clone();
        other.record.organisation_id = "org_2".into();
        assert_eq!(other.verify(), Err(RecordError::BadSignature));
        let mut other = signed.clone();
        other.record.revision = 2;
        assert_eq!(other.verify(), Err(RecordError::BadSignature));
        // Signed by another key than the one it names.
        let forged = record(&k).sign(&key());
        assert_eq!(forged.verify(), Err(RecordError::BadSignature));
        // Every flipped byte of the encoding is refused (malformed or not verifying).
        let bytes = signed.to_bytes();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            let refused = SignedDeviceRecord::from_bytes(&b).and_then(|r| r.verify());
            assert!(refused.is_err(), "byte {i}");
        }
        for cut in [0, 4, 5, 20, bytes.len() - 1] {
            assert!(SignedDeviceRecord::from_bytes(&bytes[..cut]).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(SignedDeviceRecord::from_bytes(&long).is_err());
    }

    #[test]
    fn statements_bind_every_field() {
        let k = key();
        let public = k.verifying_key().to_bytes();
        let s = Statement {
            organisation_id: "org_1",
            operation_id: "op_1",
            device_id: "dev_1",
            kind: StatementKind::Failure,
            content: vec!["it failed", "dev_2"],
        };
        let sig = s.sign(&k);
        s.verify(&public, &sig).unwrap();
        let variants = [
            Statement {
                operation_id: "op_2",
                ..s.clone()
            },
            Statement {
                device_id: "dev_2",
                ..s.clone()
            },
            Statement {
                organisation_id: "org_2",
                ..s.clone()
            },
            Statement {
                kind: StatementKind::Vote,
                ..s.clone()
            },
            Statement {
                content: vec!["it failed"],
                ..s.clone()
            },
            Statement {
                content: vec!["it faile", "ddev_2"],
                ..s.clone()
            },
        ];
        for v in variants {
            assert_eq!(v.verify(&public, &sig), Err(RecordError::BadSignature), "{v:?}");
        }
        assert!(s.verify(&key().verifying_key().to_bytes(), &sig).is_err());
        assert!(s.verify(&public, "zz").is_err());
        assert_eq!(
            StatementKind::parse("keygen_result"),
            Some(StatementKind::KeygenResult)
        );
        assert_eq!(StatementKind::parse("nope"), None);
    }
}
