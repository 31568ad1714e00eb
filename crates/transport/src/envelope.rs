//! Envelopes: the signed, and for point-to-point messages encrypted, unit the broker carries.
//!
//! # Format (version 2, integers big endian)
//! ```text
//! "VSEN" | version=2 | kind (0 broadcast, 1 p2p) | execution id (32) | round (u16) | seq (u32)
//!        | sender party (u16) | recipient party (u16, 0xFFFF for broadcast)
//!        | sender len (u8) | sender id | recipient len (u8, 0 for broadcast) | recipient id
//!        | [p2p only: HPKE encapsulated key (32)]
//!        | body len (u32) | body | Ed25519 signature (64)
//! ```
//! - **Parties**: a run's participants are parties, in party order; a device of weight `w`
//!   runs `w` of them, so one device may appear at several indices. The header names the
//!   sending party and, for p2p, the receiving one; the receiver checks that the sending
//!   party is the signing device's ([`accept`]). A device sends to its own other parties
//!   through the broker like to anyone else (a p2p body encrypted to its own key).
//! - The **signature** is the sender's Ed25519 signature (strict verification) over
//!   `"vsigner/envelope/v2\0" ‖ every byte before the signature`: the broker cannot alter,
//!   re-address, re-number or re-attribute an envelope without breaking it.
//! - A **p2p body** is HPKE (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//!   ChaCha20-Poly1305) ciphertext to the recipient's registered X25519 key, with the header
//!   up to the recipient id as associated data and `"vsigner/envelope/v2/p2p"` as info. A
//!   fresh encapsulated key per envelope.
//! - A **broadcast body** is the protocol's public message in clear (commitments, public
//!   shares): it is signed once and the same bytes go to every participant's inbox.
//! - `seq` numbers a sending party's envelopes within one run: a re-delivery (MQTT QoS 1 may
//!   deliver twice, and the broker may replay) repeats a `(sender party, seq)` already seen
//!   and is dropped.
//!
//! Decoding never panics and checks the size limit before anything else.

use ed25519_dalek::{Signature, VerifyingKey};
use hpke::{aead::ChaCha20Poly1305, kdf::HkdfSha256, Deserializable, OpModeR, OpModeS, Serializable};
use rand_core::{CryptoRng, RngCore};
use vsigner_tss::ExecutionId;
use zeroize::Zeroizing;

use crate::error::{Rejection, TransportError};
use crate::identity::{DeviceId, DeviceIdentity, DevicePublicKeys, Kem};

const MAGIC: &[u8; 4] = b"VSEN";
/// Version of the envelope format.
pub const ENVELOPE_VERSION: u8 = 2;
const SIGNATURE_DOMAIN: &[u8] = b"vsigner/envelope/v2\0";
const HPKE_INFO: &[u8] = b"vsigner/envelope/v2/p2p";
const BROADCAST_PARTY: u16 = u16::MAX;
const ENCAPPED_LEN: usize = 32;
const SIGNATURE_LEN: usize = 64;

/// Default largest envelope accepted (8 MiB), far above the largest CGGMP24 aux-info message
/// for the committee sizes vsigner runs.
pub const DEFAULT_MAX_ENVELOPE: usize = 8 * 1024 * 1024;

/// Who an envelope is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// Every other party (the same signed bytes go to each of their devices' inboxes).
    Broadcast,
    /// One party, run by `device`; the body is encrypted to the device's key.
    Party {
        /// The device that runs the party.
        device: DeviceId,
        /// The party's index in the run.
        index: u16,
    },
}

/// The authenticated header of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// The protocol run.
    pub execution_id: ExecutionId,
    /// The protocol round.
    pub round: u16,
    /// The sending party's envelope counter within this run.
    pub seq: u32,
    /// The sending device.
    pub sender: DeviceId,
    /// The sending party's index in the run (one of the sending device's).
    pub sender_party: u16,
    /// Broadcast or one party.
    pub recipient: Recipient,
}

/// Seals `payload` into an envelope signed by `identity`. For a p2p envelope,
/// `recipient_keys` must be the recipient's registered public keys.
pub fn seal<R: RngCore + CryptoRng>(
    identity: &DeviceIdentity,
    header: &EnvelopeHeader,
    payload: &[u8],
    recipient_keys: Option<&DevicePublicKeys>,
    rng: &mut R,
) -> Result<Vec<u8>, TransportError> {
    if &header.sender != identity.device_id() {
        return Err(TransportError::InvalidSession(
            "an envelope's sender must be the sealing device".into(),
        ));
    }
    let mut out = Vec::with_capacity(payload.len() + 256);
    out.extend_from_slice(MAGIC);
    out.push(ENVELOPE_VERSION);
    out.push(match header.recipient {
        Recipient::Broadcast => 0,
        Recipient::Party { .. } => 1,
    });
    out.extend_from_slice(header.execution_id.as_bytes());
    out.extend_from_slice(&header.round.to_be_bytes());
    out.extend_from_slice(&header.seq.to_be_bytes());
    let recipient_party = match &header.recipient {
        Recipient::Broadcast => BROADCAST_PARTY,
        Recipient::Party { index, .. } => *index,
    };
    if header.sender_party == BROADCAST_PARTY || recipient_party == header.sender_party {
        return Err(TransportError::InvalidSession(format!(
            "party {} cannot send to party {recipient_party}",
            header.sender_party
        )));
    }
    out.extend_from_slice(&header.sender_party.to_be_bytes());
    out.extend_from_slice(&recipient_party.to_be_bytes());
    push_id(&mut out, Some(&header.sender));
    match &header.recipient {
        Recipient::Broadcast => {
            push_id(&mut out, None);
            push_body(&mut out, payload)?;
        }
        Recipient::Party { device: to, .. } => {
            push_id(&mut out, Some(to));
            let keys = recipient_keys.ok_or_else(|| {
                TransportError::InvalidSession("a p2p envelope needs the recipient's public keys".into())
            })?;
            let pk = keys.hpke_key()?;
            let aad = out.clone();
            let (encapped, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem, _>(
                &OpModeS::Base,
                &pk,
                HPKE_INFO,
                payload,
                &aad,
                rng,
            )
            .map_err(|e| TransportError::InvalidKey {
                what: "recipient encryption key",
                reason: e.to_string(),
            })?;
            out.extend_from_slice(&encapped.to_bytes());
            push_body(&mut out, &ciphertext)?;
        }
    }
    let signature = identity.sign(&signing_input(&out));
    out.extend_from_slice(&signature.to_bytes());
    Ok(out)
}

fn push_id(out: &mut Vec<u8>, id: Option<&DeviceId>) {
    let bytes = id.map(|d| d.as_str().as_bytes()).unwrap_or_default();
    out.push(bytes.len() as u8); // DeviceId is at most 64 bytes
    out.extend_from_slice(bytes);
}

fn push_body(out: &mut Vec<u8>, body: &[u8]) -> Result<(), TransportError> {
    let len = u32::try_from(body.len())
        .map_err(|_| TransportError::InvalidSession("message too large for an envelope".into()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Ok(())
}

fn signing_input(signed: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(SIGNATURE_DOMAIN.len() + signed.len());
    input.extend_from_slice(SIGNATURE_DOMAIN);
    input.extend_from_slice(signed);
    input
}

/// An envelope whose structure has been decoded but whose signature is not yet checked.
#[derive(Debug)]
pub struct ParsedEnvelope<'a> {
    /// The header, as claimed by the bytes (authenticated once [`ParsedEnvelope::verify`] passes).
    pub header: EnvelopeHeader,
    aad_len: usize,
    encapped: Option<&'a [u8]>,
    body: &'a [u8],
    signed: &'a [u8],
    signature: Signature,
}

/// A small cursor that never panics.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Rejection> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| Rejection::Malformed(format!("truncated {what}")))?;
        let out = self.bytes.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(out)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Rejection> {
        let slice = self.take(N, what)?;
        slice
            .try_into()
            .map_err(|_| Rejection::Malformed(format!("truncated {what}")))
    }
    fn byte(&mut self, what: &str) -> Result<u8, Rejection> {
        Ok(self.array::<1>(what)?[0])
    }
    fn id(&mut self, what: &str) -> Result<Option<DeviceId>, Rejection> {
        let len = self.byte(what)?;
        if len == 0 {
            return Ok(None);
        }
        let raw = self.take(usize::from(len), what)?;
        let text =
            std::str::from_utf8(raw).map_err(|_| Rejection::Malformed(format!("{what} is not UTF-8")))?;
        DeviceId::new(text)
            .map(Some)
            .map_err(|_| Rejection::Malformed(format!("invalid {what}")))
    }
}

/// Decodes the structure of `bytes` (no cryptography yet), refusing anything above `limit`.
pub fn parse(bytes: &[u8], limit: usize) -> Result<ParsedEnvelope<'_>, Rejection> {
    if bytes.len() > limit {
        return Err(Rejection::Oversized {
            size: bytes.len(),
            limit,
        });
    }
    let mut r = Reader { bytes, pos: 0 };
    if r.take(4, "magic")? != MAGIC {
        return Err(Rejection::Malformed("not a vsigner envelope".into()));
    }
    let version = r.byte("version")?;
    if version != ENVELOPE_VERSION {
        return Err(Rejection::Malformed(format!(
            "unknown envelope version {version}"
        )));
    }
    let kind = r.byte("kind")?;
    let execution_id = ExecutionId::from_bytes(r.array::<32>("execution id")?);
    let round = u16::from_be_bytes(r.array::<2>("round")?);
    let seq = u32::from_be_bytes(r.array::<4>("sequence number")?);
    let sender_party = u16::from_be_bytes(r.array::<2>("sender party")?);
    let recipient_party = u16::from_be_bytes(r.array::<2>("recipient party")?);
    let sender = r
        .id("sender")?
        .ok_or_else(|| Rejection::Malformed("no sender".into()))?;
    let recipient = r.id("recipient")?;
    let aad_len = r.pos;
    let (recipient, encapped) = match (kind, recipient, recipient_party) {
        (0, None, BROADCAST_PARTY) => (Recipient::Broadcast, None),
        (1, Some(to), index) if index != BROADCAST_PARTY => (
            Recipient::Party { device: to, index },
            Some(r.take(ENCAPPED_LEN, "encapsulated key")?),
        ),
        (0 | 1, _, _) => return Err(Rejection::Malformed("kind and recipient disagree".into())),
        (other, _, _) => return Err(Rejection::Malformed(format!("unknown kind {other}"))),
    };
    if sender_party == BROADCAST_PARTY || sender_party == recipient_party {
        return Err(Rejection::Malformed(format!(
            "party {sender_party} cannot send to party {recipient_party}"
        )));
    }
    let body_len = u32::from_be_bytes(r.array::<4>("body length")?);
    let body = r.take(body_len as usize, "body")?;
    let signed_len = r.pos;
    let signature = Signature::from_bytes(&r.array::<SIGNATURE_LEN>("signature")?);
    if r.pos != bytes.len() {
        return Err(Rejection::Malformed("trailing bytes".into()));
    }
    Ok(ParsedEnvelope {
        header: EnvelopeHeader {
            execution_id,
            round,
            seq,
            sender,
            sender_party,
            recipient,
        },
        aad_len,
        encapped,
        body,
        signed: bytes.get(..signed_len).unwrap_or_default(),
        signature,
    })
}

impl ParsedEnvelope<'_> {
    /// Checks the signature under the claimed sender's registered key.
    pub fn verify(&self, sender_key: &VerifyingKey) -> Result<(), Rejection> {
        sender_key
            .verify_strict(&signing_input(self.signed), &self.signature)
            .map_err(|_| Rejection::BadSignature {
                claimed_sender: self.header.sender.clone(),
            })
    }

    /// The payload: decrypted with `me`'s key for a p2p envelope addressed to `me`, as is for a
    /// broadcast. Call only after [`ParsedEnvelope::verify`]: a p2p envelope that then fails
    /// to decrypt is the signer's fault ([`Rejection::Undecryptable`]).
    pub fn payload(&self, me: &DeviceIdentity) -> Result<Zeroizing<Vec<u8>>, Rejection> {
        match (&self.header.recipient, self.encapped) {
            (Recipient::Broadcast, _) => Ok(Zeroizing::new(self.body.to_vec())),
            (Recipient::Party { device: to, .. }, Some(encapped)) => {
                if to != me.device_id() {
                    return Err(Rejection::WrongRecipient {
                        claimed_sender: self.header.sender.clone(),
                        recipient: to.clone(),
                    });
                }
                let undecryptable = || Rejection::Undecryptable {
                    claimed_sender: self.header.sender.clone(),
                };
                let encapped =
                    <Kem as hpke::Kem>::EncappedKey::from_bytes(encapped).map_err(|_| undecryptable())?;
                let aad = self.signed.get(..self.aad_len).unwrap_or_default();
                hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
                    &OpModeR::Base,
                    me.hpke_secret(),
                    &encapped,
                    HPKE_INFO,
                    self.body,
                    aad,
                )
                .map(Zeroizing::new)
                .map_err(|_| undecryptable())
            }
            (Recipient::Party { .. }, None) => Err(Rejection::Malformed("p2p envelope without key".into())),
        }
    }
}

/// A verified envelope's content.
#[derive(Debug)]
pub struct OpenedEnvelope {
    /// The authenticated header.
    pub header: EnvelopeHeader,
    /// The sending party's index (`header.sender_party`, checked to be the sender's).
    pub sender_index: u16,
    /// The protocol payload (zeroized on drop).
    pub payload: Zeroizing<Vec<u8>>,
}

/// Everything an envelope is checked against: the receiving device and the run.
pub struct Expectation<'a> {
    /// The receiving device.
    pub me: &'a DeviceIdentity,
    /// The run.
    pub execution_id: &'a ExecutionId,
    /// The run's parties in party order: the device that runs each, with its registered
    /// keys (a device of weight `w` appears `w` times).
    pub participants: &'a [(DeviceId, DevicePublicKeys)],
    /// The parties the receiving device runs in this run.
    pub my_parties: &'a [u16],
    /// Size limit.
    pub max_envelope: usize,
}

/// Decodes and checks one envelope for a run, in order: size, structure, participant (the
/// sending party is the signing device's), signature, execution id, recipient (a party this
/// device runs, other than the sender), decryption. Never panics.
pub fn open(bytes: &[u8], expect: &Expectation<'_>) -> Result<OpenedEnvelope, Rejection> {
    accept(parse(bytes, expect.max_envelope)?, expect)
}

/// The checks of [`open`] after parsing: participant, signature, execution id, recipient,
/// decryption.
pub fn accept(parsed: ParsedEnvelope<'_>, expect: &Expectation<'_>) -> Result<OpenedEnvelope, Rejection> {
    let sender = &parsed.header.sender;
    let index = parsed.header.sender_party;
    let keys = match expect.participants.get(usize::from(index)) {
        Some((id, keys)) if id == sender => keys,
        _ => {
            return Err(Rejection::NotAParticipant {
                claimed_sender: sender.clone(),
            })
        }
    };
    parsed.verify(&keys.signing)?;
    if &parsed.header.execution_id != expect.execution_id {
        return Err(Rejection::WrongExecution {
            claimed_sender: sender.clone(),
        });
    }
    let me = expect.me.device_id();
    let for_me = match &parsed.header.recipient {
        // Every party of this device but the sender: none is a broker echo of our own.
        Recipient::Broadcast => expect.my_parties.iter().any(|p| *p != index),
        Recipient::Party { device, index: to } => {
            device == me
                && expect.my_parties.contains(to)
                && expect.participants.get(usize::from(*to)).map(|(d, _)| d) == Some(me)
        }
    };
    if !for_me {
        return Err(Rejection::WrongRecipient {
            claimed_sender: sender.clone(),
            recipient: match &parsed.header.recipient {
                Recipient::Party { device, .. } => device.clone(),
                Recipient::Broadcast => me.clone(),
            },
        });
    }
    let payload = parsed.payload(expect.me)?;
    Ok(OpenedEnvelope {
        header: parsed.header,
        sender_index: index,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn device(name: &str) -> DeviceIdentity {
        DeviceIdentity::generate(DeviceId::new(name).unwrap(), &mut OsRng)
    }

    #[test]
    fn p2p_round_trip_and_every_truncation_fails() {
        let (a, b) = (device("a"), device("b"));
        let eid = ExecutionId::from_bytes([3; 32]);
        let header = EnvelopeHeader {
            execution_id: eid,
            round: 2,
            seq: 7,
            sender: a.device_id().clone(),
            sender_party: 0,
            recipient: Recipient::Party {
                device: b.device_id().clone(),
                index: 1,
            },
        };
        let bytes = seal(&a, &header, b"secret share", Some(b.public_keys()), &mut OsRng).unwrap();
        let participants = vec![
            (a.device_id().clone(), a.public_keys().clone()),
            (b.device_id().clone(), b.public_keys().clone()),
        ];
        let expect = Expectation {
            me: &b,
            execution_id: &eid,
            participants: &participants,
            my_parties: &[1],
            max_envelope: 1 << 20,
        };
        let opened = open(&bytes, &expect).unwrap();
        assert_eq!(opened.header, header);
        assert_eq!(opened.sender_index, 0);
        assert_eq!(&opened.payload[..], b"secret share");
        assert!(
            !bytes.windows(12).any(|w| w == b"secret share"),
            "p2p payload in clear"
        );
        for cut in 0..bytes.len() {
            assert!(open(&bytes[..cut], &expect).is_err(), "cut {cut}");
        }
        // Every single flipped bit is caught.
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(open(&bad, &expect).is_err(), "flip at {i}");
        }
    }
}
