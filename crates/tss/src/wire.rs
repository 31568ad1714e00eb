//! What a transport carries between parties, and the checks every incoming message passes.
//!
//! Protocols exchange typed messages; on the wire each one is a [`WireMessage`]: the
//! [`ExecutionId`] of the run, the round number and the CBOR-encoded payload. Before a
//! protocol sees an incoming message, [`connect`] checks, in order, that
//! 1. the sender is a participant of the run and not the receiver itself,
//! 2. the execution id is this run's,
//! 3. the round exists in this protocol and the message is of that round's kind
//!    (broadcast or p2p),
//! 4. the sender has not already sent a message of that round,
//! 5. the payload decodes as a message of this protocol and agrees with the header's round.
//!
//! The first failed check aborts the run with [`Error::Misbehaviour`] naming the sender. The
//! transport is still responsible for authenticating senders and encrypting p2p messages;
//! these checks make a confused or malicious peer fail loudly instead of stalling the run.

use std::collections::HashSet;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::{Sink, Stream};
use round_based::{
    Delivery, Incoming, MessageDestination, MessageType, Mpc, MpcParty, Outgoing, ProtocolMessage,
};
use serde::{de::DeserializeOwned, Serialize};
use zeroize::Zeroize;

use crate::error::error_chain;
use crate::{Error, ExecutionId, Fault, PartyIndex};

/// Version byte of the [`WireMessage`] encoding.
pub const WIRE_VERSION: u8 = 1;
/// Largest payload accepted, far above the largest CGGMP24 message for n ≤ 16.
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;
const HEADER_LEN: usize = 1 + 32 + 2;

/// One protocol message as a transport carries it.
///
/// p2p payloads may contain secret shares: the payload is zeroized on drop and never shown
/// by `Debug`; the transport must encrypt p2p messages end to end.
#[derive(Clone, PartialEq, Eq)]
pub struct WireMessage {
    /// The run this message belongs to.
    pub execution_id: ExecutionId,
    /// The protocol round (as numbered by the protocol's message enum, from 0).
    pub round: u16,
    /// The CBOR-encoded protocol message.
    pub payload: Vec<u8>,
}

impl Drop for WireMessage {
    fn drop(&mut self) {
        self.payload.zeroize();
    }
}

impl std::fmt::Debug for WireMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireMessage")
            .field("execution_id", &self.execution_id)
            .field("round", &self.round)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl ProtocolMessage for WireMessage {
    fn round(&self) -> u16 {
        self.round
    }
}

impl WireMessage {
    /// Encodes as `version ‖ execution id ‖ round (u16 BE) ‖ payload`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        out.push(WIRE_VERSION);
        out.extend_from_slice(self.execution_id.as_bytes());
        out.extend_from_slice(&self.round.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Decodes bytes made by [`WireMessage::to_bytes`]; never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let format = |reason: &str| Error::Format {
            what: "wire message",
            reason: reason.into(),
        };
        let (header, payload) = bytes
            .split_at_checked(HEADER_LEN)
            .ok_or_else(|| format("shorter than its header"))?;
        let (version, rest) = header.split_first().ok_or_else(|| format("empty"))?;
        if *version != WIRE_VERSION {
            return Err(format(&format!("unknown version {version}")));
        }
        let (eid, round) = rest
            .split_at_checked(32)
            .ok_or_else(|| format("truncated header"))?;
        let eid: [u8; 32] = eid.try_into().map_err(|_| format("truncated execution id"))?;
        let round: [u8; 2] = round.try_into().map_err(|_| format("truncated round"))?;
        if payload.len() > MAX_PAYLOAD {
            return Err(format("payload too large"));
        }
        Ok(WireMessage {
            execution_id: ExecutionId::from_bytes(eid),
            round: u16::from_be_bytes(round),
            payload: payload.to_vec(),
        })
    }
}

/// A byte string that CBOR encodes compactly (one byte-string item, not an array of
/// integers) and that is wiped on drop: message and storage fields that carry another
/// library's own encoding, possibly of a secret.
#[derive(Clone, PartialEq, Eq, Default)]
pub(crate) struct Bytes(pub(crate) Vec<u8>);

impl Drop for Bytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

/// Encodes a value as CBOR.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Decodes a CBOR value; never panics on bad input.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    ciborium::from_reader(bytes).map_err(|e| e.to_string())
}

/// The echo of a broadcast round: `SHA-256(domain ‖ eid ‖ (len ‖ CBOR(item))*)` over the
/// round's messages in party order, as this party received them. Parties broadcast their
/// echo and compare: equal echoes mean everyone saw the same broadcast.
pub(crate) fn echo_hash<T: Serialize>(
    domain: &[u8],
    eid: &ExecutionId,
    items: &[T],
) -> Result<[u8; 32], Error> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(domain);
    h.update(eid.as_bytes());
    for item in items {
        let bytes = encode(item).map_err(Error::Protocol)?;
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize().into())
}

/// Error of the checked delivery; the protocol libraries see it as an I/O error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliveryError {
    #[error("transport: {0}")]
    Transport(String),
    #[error("party {party} misbehaved: {fault}")]
    Rejected { party: PartyIndex, fault: Fault },
    #[error("cannot encode outgoing message: {0}")]
    Encode(String),
}

/// Where the checked delivery records the first misbehaviour it saw, so that the run's error
/// names the party even when the library only reports "i/o error".
#[derive(Clone, Default)]
pub(crate) struct FaultCell(Arc<Mutex<Option<DeliveryFailure>>>);

#[derive(Clone)]
enum DeliveryFailure {
    Misbehaviour(PartyIndex, Fault),
    Transport(String),
}

impl FaultCell {
    fn record(&self, failure: DeliveryFailure) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(failure);
    }

    /// Turns a failed run into an [`Error`]: a recorded misbehaviour wins over the library's
    /// own (less precise) description.
    pub(crate) fn explain(&self, library_error: Error) -> Error {
        let slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match slot.clone() {
            Some(DeliveryFailure::Misbehaviour(party, fault)) => Error::Misbehaviour { party, fault },
            Some(DeliveryFailure::Transport(reason)) => Error::Transport(reason),
            None => library_error,
        }
    }

    /// Records a misbehaviour found by the protocol code itself (e.g. an echo mismatch).
    pub(crate) fn blame(&self, party: PartyIndex, fault: Fault) -> Error {
        self.record(DeliveryFailure::Misbehaviour(party, fault.clone()));
        Error::Misbehaviour { party, fault }
    }
}

/// Parameters of the run a delivery is checked against.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunParams {
    pub eid: ExecutionId,
    pub me: PartyIndex,
    pub n: u16,
    /// Kind of message of each round of the protocol's message enum (rounds are
    /// `0..kinds.len()`, numbered in the enum's variant order).
    pub kinds: &'static [MessageType],
}

/// Shorthands for round tables.
pub(crate) const B: MessageType = MessageType::Broadcast;
pub(crate) const P: MessageType = MessageType::P2P;

/// The typed party a protocol library runs on, over a party of [`WireMessage`]s.
pub(crate) type CheckedParty<M, P> = MpcParty<
    M,
    (
        CheckedIncoming<<<P as Mpc>::Delivery as Delivery<WireMessage>>::Receive, M>,
        CheckedOutgoing<<<P as Mpc>::Delivery as Delivery<WireMessage>>::Send, M>,
    ),
    <P as Mpc>::Runtime,
>;

/// Wraps a party of [`WireMessage`]s into a party of the protocol's typed messages `M`,
/// applying the checks listed in the module documentation.
pub(crate) fn connect<M, P>(party: P, params: RunParams) -> (CheckedParty<M, P>, FaultCell)
where
    P: Mpc<ProtocolMessage = WireMessage>,
    M: ProtocolMessage + Serialize + DeserializeOwned,
{
    let MpcParty {
        delivery, runtime, ..
    } = party.into_party();
    let (incoming, outgoing) = delivery.split();
    let faults = FaultCell::default();
    let incoming = CheckedIncoming {
        inner: incoming,
        params,
        seen: HashSet::new(),
        faults: faults.clone(),
        _msg: PhantomData,
    };
    let outgoing = CheckedOutgoing {
        inner: outgoing,
        params,
        _msg: PhantomData,
    };
    (
        MpcParty::connected((incoming, outgoing)).set_runtime(runtime),
        faults,
    )
}

/// Incoming half of the checked delivery.
pub(crate) struct CheckedIncoming<S, M> {
    inner: S,
    params: RunParams,
    seen: HashSet<(PartyIndex, u16)>,
    faults: FaultCell,
    _msg: PhantomData<fn() -> M>,
}

impl<S, M> CheckedIncoming<S, M>
where
    M: ProtocolMessage + DeserializeOwned,
{
    fn check(&mut self, incoming: Incoming<WireMessage>) -> Result<Incoming<M>, (PartyIndex, Fault)> {
        let RunParams { eid, me, n, kinds } = self.params;
        let sender = incoming.sender;
        let wire = &incoming.msg;
        if sender >= n {
            return Err((sender, Fault::NotAParticipant { n }));
        }
        if sender == me {
            return Err((sender, Fault::Impersonation));
        }
        if wire.execution_id != eid {
            return Err((sender, Fault::WrongExecution));
        }
        let Some(expected) = kinds.get(usize::from(wire.round)) else {
            return Err((sender, Fault::OutOfRound { round: wire.round }));
        };
        if *expected != incoming.msg_type {
            let broadcast = incoming.msg_type == MessageType::Broadcast;
            return Err((
                sender,
                Fault::WrongKind {
                    round: wire.round,
                    broadcast,
                },
            ));
        }
        let key = (sender, wire.round);
        if !self.seen.insert(key) {
            return Err((sender, Fault::Duplicate { round: wire.round }));
        }
        let msg: M = decode(&wire.payload).map_err(|e| (sender, Fault::Garbled(e)))?;
        if msg.round() != wire.round {
            return Err((sender, Fault::OutOfRound { round: wire.round }));
        }
        Ok(Incoming {
            id: incoming.id,
            sender,
            msg_type: incoming.msg_type,
            msg,
        })
    }
}

impl<S, E, M> Stream for CheckedIncoming<S, M>
where
    S: Stream<Item = Result<Incoming<WireMessage>, E>> + Unpin,
    E: std::error::Error + 'static,
    M: ProtocolMessage + DeserializeOwned,
{
    type Item = Result<Incoming<M>, DeliveryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => {
                let reason = error_chain(&e);
                this.faults.record(DeliveryFailure::Transport(reason.clone()));
                Poll::Ready(Some(Err(DeliveryError::Transport(reason))))
            }
            Poll::Ready(Some(Ok(incoming))) => match this.check(incoming) {
                Ok(msg) => Poll::Ready(Some(Ok(msg))),
                Err((party, fault)) => {
                    this.faults
                        .record(DeliveryFailure::Misbehaviour(party, fault.clone()));
                    Poll::Ready(Some(Err(DeliveryError::Rejected { party, fault })))
                }
            },
        }
    }
}

/// Outgoing half of the checked delivery: encodes typed messages into [`WireMessage`]s.
pub(crate) struct CheckedOutgoing<S, M> {
    inner: S,
    params: RunParams,
    _msg: PhantomData<fn(M)>,
}

impl<S, E, M> Sink<Outgoing<M>> for CheckedOutgoing<S, M>
where
    S: Sink<Outgoing<WireMessage>, Error = E> + Unpin,
    E: std::error::Error + 'static,
    M: ProtocolMessage + Serialize,
{
    type Error = DeliveryError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_ready(cx).map_err(transport_error)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Outgoing<M>) -> Result<(), Self::Error> {
        let payload = encode(&item.msg).map_err(DeliveryError::Encode)?;
        let wire = WireMessage {
            execution_id: self.params.eid,
            round: item.msg.round(),
            payload,
        };
        let recipient: MessageDestination = item.recipient;
        Pin::new(&mut self.inner)
            .start_send(Outgoing { recipient, msg: wire })
            .map_err(transport_error)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_flush(cx).map_err(transport_error)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_close(cx).map_err(transport_error)
    }
}

fn transport_error<E: std::error::Error + 'static>(e: E) -> DeliveryError {
    DeliveryError::Transport(error_chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip_and_truncation() {
        let msg = WireMessage {
            execution_id: ExecutionId::from_bytes([7; 32]),
            round: 3,
            payload: vec![1, 2, 3],
        };
        let bytes = msg.to_bytes();
        assert_eq!(WireMessage::from_bytes(&bytes).unwrap(), msg);
        for cut in 0..HEADER_LEN {
            assert!(WireMessage::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_version = bytes.clone();
        bad_version[0] = 9;
        assert!(WireMessage::from_bytes(&bad_version).is_err());
    }

    #[test]
    fn debug_hides_payload() {
        let msg = WireMessage {
            execution_id: ExecutionId::from_bytes([0; 32]),
            round: 0,
            payload: b"secret-share-bytes".to_vec(),
        };
        let shown = format!("{msg:?}");
        assert!(
            !shown.contains("secret") && shown.contains("payload_len: 18"),
            "{shown}"
        );
    }
}
