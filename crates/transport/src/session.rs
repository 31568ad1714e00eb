//! A protocol run over the transport, as a `round_based` party.
//!
//! [`crate::Link::open_sessions`] registers the run with the device's inbox and returns a
//! [`Session`] for each party the device runs in it (one, or `w` for a device of weight
//! `w`); [`Session::into_party`] turns it into the `MpcParty<WireMessage, _>` that every
//! protocol of `vsigner-tss` runs on, unchanged. Outgoing messages are sealed into envelopes
//! (broadcast: signed once, the same bytes to the inbox of each device that runs another
//! party; p2p: encrypted to the recipient's device) and published with QoS 1. Incoming messages arrive checked
//! by the inbox. If nothing arrives for `idle_timeout` the incoming stream fails, so a run
//! whose peer or broker is gone ends with [`TransportError::Timeout`] instead of hanging.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Sink, Stream};
use round_based::{Incoming, MessageDestination, MpcParty, Outgoing};
use rumqttc::QoS;
use vsigner_tss::{ExecutionId, WireMessage};

use crate::envelope::{self, EnvelopeHeader, Recipient};
use crate::error::{Rejection, TransportError};
use crate::identity::{DeviceId, DevicePublicKeys};
use crate::inbox::{lock, Delivery, RunRecord};
use crate::mqtt::LinkInner;

/// Default time a run waits for the next message before failing.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// What a run needs to know about itself. Every participant must build the same spec.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    /// The run's execution id (see `vsigner_tss::ExecutionId::derive`).
    pub execution_id: ExecutionId,
    /// The device of each party, in party-index order, with the public keys the
    /// coordinator registered. A device of weight `w` runs `w` parties and appears `w` times.
    pub participants: Vec<(DeviceId, DevicePublicKeys)>,
    /// How long to wait for the next message before failing the run. Must exceed the
    /// longest computation between two rounds (aux-info rounds take tens of seconds).
    pub idle_timeout: Duration,
}

/// What was refused during a run, readable while and after it runs.
#[derive(Debug, Clone)]
pub struct SessionReport {
    record: RunRecord,
}

impl SessionReport {
    /// Envelopes refused for this run, in order (the first `InboxLimits::rejections_per_run`).
    pub fn rejections(&self) -> Vec<Rejection> {
        lock(&self.record.rejections).clone()
    }

    /// How many envelopes were refused for this run in all.
    pub fn rejected_count(&self) -> u64 {
        self.record.rejected.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The device whose correctly signed envelope was bad by its own fault, if any: the run
    /// was aborted because of it.
    pub fn culprit(&self) -> Option<DeviceId> {
        lock(&self.record.culprit).clone()
    }
}

/// Closes the run in the inbox when every session of this device's parties in it (or its
/// incoming half) is dropped, so that later envelopes for it are recognised as late or
/// replayed.
pub(crate) struct RunGuard {
    link: Arc<LinkInner>,
    eid: ExecutionId,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        lock(&self.link.inbox).close(&self.eid);
    }
}

impl RunGuard {
    pub(crate) fn new(link: Arc<LinkInner>, eid: ExecutionId) -> Arc<Self> {
        Arc::new(RunGuard { link, eid })
    }
}

/// One party of a run on this device.
pub struct Session {
    guard: Arc<RunGuard>,
    link: Arc<LinkInner>,
    eid: ExecutionId,
    me: u16,
    participants: Arc<[(DeviceId, DevicePublicKeys)]>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Delivery>,
    record: RunRecord,
    idle_timeout: Duration,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("execution_id", &self.eid)
            .field("me", &self.me)
            .field("participants", &self.participants.len())
            .finish()
    }
}

/// The party type protocols run on.
pub type SessionParty = MpcParty<WireMessage, (SessionIncoming, SessionOutgoing)>;

impl Session {
    pub(crate) fn new(
        guard: Arc<RunGuard>,
        spec: &SessionSpec,
        me: u16,
        participants: Arc<[(DeviceId, DevicePublicKeys)]>,
        rx: tokio::sync::mpsc::UnboundedReceiver<Delivery>,
        record: RunRecord,
    ) -> Self {
        Session {
            link: guard.link.clone(),
            guard,
            eid: spec.execution_id,
            me,
            participants,
            rx,
            record,
            idle_timeout: spec.idle_timeout,
        }
    }

    /// This session's party index in the run.
    pub fn party_index(&self) -> u16 {
        self.me
    }

    /// A handle on what the run refuses, to read after the run.
    pub fn report(&self) -> SessionReport {
        SessionReport {
            record: self.record.clone(),
        }
    }

    /// The `round_based` party to run a protocol on.
    pub fn into_party(self) -> SessionParty {
        MpcParty::connected(self.into_delivery())
    }

    /// The incoming stream and outgoing sink of the run, for callers that exchange
    /// [`WireMessage`]s themselves.
    pub fn into_delivery(self) -> (SessionIncoming, SessionOutgoing) {
        let incoming = SessionIncoming {
            _guard: self.guard,
            rx: self.rx,
            idle_timeout: self.idle_timeout,
            deadline: None,
            timed_out: false,
        };
        let outgoing = SessionOutgoing {
            link: self.link,
            eid: self.eid,
            me: self.me,
            participants: self.participants,
            seq: 0,
            round_span: None,
        };
        (incoming, outgoing)
    }
}

/// Incoming half of a session: checked messages, or an error when the run must stop.
pub struct SessionIncoming {
    _guard: Arc<RunGuard>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Delivery>,
    idle_timeout: Duration,
    /// Started at the first poll (so that building the party needs no runtime).
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    timed_out: bool,
}

impl Stream for SessionIncoming {
    type Item = Result<Incoming<WireMessage>, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.timed_out {
            return Poll::Ready(None);
        }
        let idle = this.idle_timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(Delivery::Message(msg))) => {
                deadline.as_mut().reset(tokio::time::Instant::now() + idle);
                Poll::Ready(Some(Ok(msg)))
            }
            Poll::Ready(Some(Delivery::Fault(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(Some(Err(TransportError::LinkClosed))),
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.timed_out = true;
                    Poll::Ready(Some(Err(TransportError::Timeout(this.idle_timeout))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// Outgoing half of a session: seals and publishes.
pub struct SessionOutgoing {
    link: Arc<LinkInner>,
    eid: ExecutionId,
    me: u16,
    participants: Arc<[(DeviceId, DevicePublicKeys)]>,
    seq: u32,
    /// The span of the round this party is in: opened when it sends the first message of
    /// a round, closed when it sends the first message of the next one (or the session
    /// ends), so that a trace shows how long each round took, waiting included.
    round_span: Option<(u16, tracing::Span)>,
}

impl SessionOutgoing {
    fn send(&mut self, item: Outgoing<WireMessage>) -> Result<(), TransportError> {
        if self.round_span.as_ref().map(|(r, _)| *r) != Some(item.msg.round) {
            self.round_span = Some((
                item.msg.round,
                tracing::info_span!("round", round = item.msg.round, execution_id = %self.eid),
            ));
        }
        // Peers would drop an envelope above the limit without blaming anyone, and the run
        // would stall: refuse it here (headers and encryption add well under 1 KiB).
        let (size, limit) = (item.msg.payload.len() + 1024, self.link.max_envelope);
        if size > limit {
            return Err(TransportError::MessageTooLarge { size, limit });
        }
        let seq = self.seq;
        self.seq = self
            .seq
            .checked_add(1)
            .ok_or(TransportError::InvalidSession("too many messages".into()))?;
        let me = self.link.identity.device_id().clone();
        let round = item.msg.round;
        match item.recipient {
            MessageDestination::AllParties => {
                let header = EnvelopeHeader {
                    execution_id: self.eid,
                    round,
                    seq,
                    sender: me,
                    sender_party: self.me,
                    recipient: Recipient::Broadcast,
                };
                let bytes = envelope::seal(
                    &self.link.identity,
                    &header,
                    &item.msg.payload,
                    None,
                    &mut rand_core::OsRng,
                )?;
                let bytes = bytes::Bytes::from(bytes);
                // Once to each device that runs another party (this one too, when it runs
                // several): its inbox hands the envelope to each of its parties.
                let mut sent: Vec<&DeviceId> = Vec::new();
                for (i, (device, _)) in self.participants.iter().enumerate() {
                    if i != usize::from(self.me) && !sent.contains(&device) {
                        self.link.publish(device, bytes.clone())?;
                        sent.push(device);
                    }
                }
            }
            MessageDestination::OneParty(j) => {
                let (device, keys) = self.participants.get(usize::from(j)).ok_or_else(|| {
                    TransportError::InvalidSession(format!("party {j} is not a participant"))
                })?;
                if j == self.me {
                    return Err(TransportError::InvalidSession(
                        "a party cannot message itself".into(),
                    ));
                }
                let header = EnvelopeHeader {
                    execution_id: self.eid,
                    round,
                    seq,
                    sender: me,
                    sender_party: self.me,
                    recipient: Recipient::Party {
                        device: device.clone(),
                        index: j,
                    },
                };
                let bytes = envelope::seal(
                    &self.link.identity,
                    &header,
                    &item.msg.payload,
                    Some(keys),
                    &mut rand_core::OsRng,
                )?;
                self.link.publish(device, bytes::Bytes::from(bytes))?;
            }
        }
        Ok(())
    }
}

impl Sink<Outgoing<WireMessage>> for SessionOutgoing {
    type Error = TransportError;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, item: Outgoing<WireMessage>) -> Result<(), Self::Error> {
        self.send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
}

// Keep QoS in one place: every envelope is published at least once.
pub(crate) const ENVELOPE_QOS: QoS = QoS::AtLeastOnce;
