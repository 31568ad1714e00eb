//! The inbox of one device: demultiplexes incoming envelopes to the runs they belong to.
//!
//! One MQTT inbox topic per device carries the traffic of every run the device takes part
//! in. For each envelope the inbox decides, by its execution id:
//! - a run open on this device → full checks ([`crate::envelope::accept`]); accepted ones are
//!   de-duplicated by `(sending party, seq)` and handed to the party they are for (a
//!   broadcast to each of this device's parties but the sender: a device of weight `w` runs
//!   `w` parties of one run); faults proven to be the signer's abort the run with the device
//!   named; anything else is dropped and reported;
//! - a run that already ended here → dropped and reported as late or replayed;
//! - an unknown run → buffered, because peers may start a run, and send their first round,
//!   before this device has opened it; opening the run drains its buffer through the same
//!   checks. Nothing unauthenticated is buffered: an envelope is kept only when its sender
//!   is a device this one knows (its verified record, [`Inbox::learn`]) and the signature
//!   verifies under that device's key; anything else is dropped as it arrives. What is kept
//!   is bounded per sender (the sender's own oldest envelope goes first) and in all
//!   (the sender holding the most gives way), and expires: no one can push out another
//!   device's envelopes by sending many of its own.
//!
//! Reported rejections go to the run's [`crate::session::SessionReport`] (or to the link's
//! list when no run is known) and to the log, with the claimed sender named.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use round_based::{Incoming, MessageType};
use tokio::sync::mpsc;
use vsigner_tss::{ExecutionId, WireMessage};

use crate::envelope::{self, Expectation, Recipient};
use crate::error::{Rejection, TransportError};
use crate::identity::{DeviceId, DeviceIdentity, DevicePublicKeys};

mod early;

/// Bounds of the inbox.
#[derive(Debug, Clone)]
pub struct InboxLimits {
    /// Largest envelope accepted.
    pub max_envelope: usize,
    /// Largest MQTT packet the client accepts. Above `max_envelope`, so that a larger
    /// envelope is refused (and reported) by the inbox instead of breaking the connection;
    /// a packet above this limit drops the connection (MQTT 3.1.1 cannot refuse one
    /// message), so set the broker's own limit at or below it.
    pub max_packet: usize,
    /// Most envelopes buffered for runs not started yet.
    pub early_max_envelopes: usize,
    /// Most bytes buffered for runs not started yet.
    pub early_max_bytes: usize,
    /// Most envelopes buffered from one sender for runs not started yet.
    pub early_max_per_sender: usize,
    /// How long an envelope for a run not started yet is kept.
    pub early_ttl: Duration,
    /// How many ended runs are remembered (to recognise late and replayed envelopes).
    pub finished_memory: usize,
    /// Rejections kept per run (later ones are only counted).
    pub rejections_per_run: usize,
}

/// Round numbers at or above this are refused: no vsigner protocol has more than a handful of
/// rounds, and bounding them bounds what one signed participant can make a device hold
/// (one message per sender and round).
pub const MAX_ROUNDS: u16 = 32;

impl Default for InboxLimits {
    fn default() -> Self {
        InboxLimits {
            max_envelope: envelope::DEFAULT_MAX_ENVELOPE,
            max_packet: 4 * envelope::DEFAULT_MAX_ENVELOPE,
            early_max_envelopes: 4096,
            early_max_bytes: 64 * 1024 * 1024,
            early_max_per_sender: 256,
            early_ttl: Duration::from_secs(120),
            finished_memory: 4096,
            rejections_per_run: 256,
        }
    }
}

/// What the inbox hands to a run.
#[derive(Debug)]
pub(crate) enum Delivery {
    Message(Incoming<WireMessage>),
    Fault(TransportError),
}

/// Shared record of what was refused for one run.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunRecord {
    pub(crate) rejections: Arc<Mutex<Vec<Rejection>>>,
    pub(crate) rejected: Arc<std::sync::atomic::AtomicU64>,
    pub(crate) culprit: Arc<Mutex<Option<DeviceId>>>,
}

impl RunRecord {
    fn reject(&self, eid: &ExecutionId, rejection: Rejection, keep: usize) {
        tracing::warn!(execution = %hex::encode(&eid.as_bytes()[..8]), %rejection, "envelope rejected");
        self.rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut kept = lock(&self.rejections);
        if kept.len() < keep {
            kept.push(rejection);
        }
    }
}

struct ActiveRun {
    participants: Arc<[(DeviceId, DevicePublicKeys)]>,
    /// This device's parties in the run, each with the channel to its session.
    local: Vec<(u16, mpsc::UnboundedSender<Delivery>)>,
    /// The indices of `local`.
    my_parties: Vec<u16>,
    /// `(sending party, seq)` of every envelope delivered: a repeat is a re-delivery or a
    /// replay.
    seen: HashSet<(u16, u32)>,
    /// `(sending party, round, receiving party)` of every envelope delivered (a broadcast's
    /// receiving party is [`BROADCAST`]): a second one is equivocation.
    rounds: HashSet<(u16, u16, u16)>,
    next_id: u64,
    record: RunRecord,
}

/// The receiving party of a broadcast in [`ActiveRun::rounds`].
const BROADCAST: u16 = u16::MAX;

impl ActiveRun {
    /// Hands a fault to every party of this device in the run.
    fn fail(&self, error: impl Fn() -> TransportError) {
        for (_, tx) in &self.local {
            // A closed receiver means that party's run is ending; nothing to do.
            let _ = tx.send(Delivery::Fault(error()));
        }
    }
}

/// The channels of one device's parties in a run, in party order.
pub(crate) type PartyReceivers = Vec<(u16, mpsc::UnboundedReceiver<Delivery>)>;

/// An envelope of a run not open yet, whose signature verified under its sender's key.
struct Buffered {
    execution_id: ExecutionId,
    sender: DeviceId,
    sender_party: u16,
    seq: u32,
    bytes: Vec<u8>,
    at: Instant,
}

/// Counters, read by metrics and tests.
#[derive(Debug, Default)]
pub struct InboxStats {
    /// Envelopes handed to runs.
    pub delivered: u64,
    /// Envelopes dropped as re-deliveries of one already delivered.
    pub duplicates: u64,
    /// Envelopes refused (all reasons).
    pub rejected: u64,
    /// Envelopes currently buffered for runs not started yet.
    pub buffered: usize,
}

pub(crate) struct Inbox {
    me: Arc<DeviceIdentity>,
    limits: InboxLimits,
    active: HashMap<ExecutionId, ActiveRun>,
    finished: HashSet<ExecutionId>,
    finished_order: VecDeque<ExecutionId>,
    /// The devices whose envelopes may be buffered before their run opens here.
    known: HashMap<DeviceId, DevicePublicKeys>,
    /// Envelopes of runs not open yet, in arrival order.
    early: VecDeque<Buffered>,
    early_bytes: usize,
    orphan_rejections: VecDeque<Rejection>,
    stats: InboxStats,
}

const ORPHAN_MEMORY: usize = 256;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inbox {
    pub(crate) fn new(me: Arc<DeviceIdentity>, limits: InboxLimits) -> Self {
        Inbox {
            me,
            limits,
            active: HashMap::new(),
            finished: HashSet::new(),
            finished_order: VecDeque::new(),
            known: HashMap::new(),
            early: VecDeque::new(),
            early_bytes: 0,
            orphan_rejections: VecDeque::new(),
            stats: InboxStats::default(),
        }
    }

    pub(crate) fn stats(&self) -> InboxStats {
        InboxStats {
            buffered: self.early.len(),
            ..self.stats
        }
    }

    /// Rejections that could not be attached to an open run (most recent last).
    pub(crate) fn orphan_rejections(&self) -> Vec<Rejection> {
        self.orphan_rejections.iter().cloned().collect()
    }

    fn reject_orphan(&mut self, rejection: Rejection) {
        self.stats.rejected += 1;
        tracing::warn!(%rejection, "envelope rejected");
        if self.orphan_rejections.len() == ORPHAN_MEMORY {
            self.orphan_rejections.pop_front();
        }
        self.orphan_rejections.push_back(rejection);
    }

    /// Lets envelopes from `peers` (devices whose records this device verified) be
    /// buffered before their run opens here.
    pub(crate) fn learn(&mut self, peers: impl IntoIterator<Item = (DeviceId, DevicePublicKeys)>) {
        self.known.extend(peers);
    }

    /// Routes one envelope received on this device's inbox topic.
    pub(crate) fn route(&mut self, bytes: &[u8], now: Instant) {
        self.expire(now);
        let parsed = match envelope::parse(bytes, self.limits.max_envelope) {
            Ok(p) => p,
            Err(rejection) => return self.reject_orphan(rejection),
        };
        let eid = parsed.header.execution_id;
        let sender = parsed.header.sender.clone();
        if self.active.contains_key(&eid) {
            return self.deliver(eid, parsed);
        }
        if self.finished.contains(&eid) {
            return self.reject_orphan(Rejection::FinishedExecution {
                claimed_sender: sender,
            });
        }
        // A run not open here: kept only if a known device signed it for this device.
        let Some(keys) = self.known.get(&sender) else {
            return self.reject_orphan(Rejection::UnknownSender {
                claimed_sender: sender,
            });
        };
        if let Err(rejection) = parsed.verify(&keys.signing) {
            return self.reject_orphan(rejection);
        }
        if let Recipient::Party { device: to, .. } = &parsed.header.recipient {
            if to != self.me.device_id() {
                return self.reject_orphan(Rejection::WrongRecipient {
                    claimed_sender: sender,
                    recipient: to.clone(),
                });
            }
        }
        let (seq, sender_party) = (parsed.header.seq, parsed.header.sender_party);
        if self.early.iter().any(|b| {
            b.execution_id == eid && b.sender == sender && b.sender_party == sender_party && b.seq == seq
        }) {
            self.stats.duplicates += 1;
            return;
        }
        self.buffer(eid, sender, sender_party, seq, bytes.to_vec(), now);
    }

    fn deliver(&mut self, eid: ExecutionId, parsed: envelope::ParsedEnvelope<'_>) {
        let keep = self.limits.rejections_per_run;
        let Some(run) = self.active.get_mut(&eid) else {
            return;
        };
        // A repeat of an authenticated (sender party, seq) is dropped before any cryptography: the
        // set only holds envelopes that verified, so nothing forged can shadow a real one.
        let header = &parsed.header;
        let sender_is_party = run
            .participants
            .get(usize::from(header.sender_party))
            .is_some_and(|(d, _)| d == &header.sender);
        if sender_is_party && run.seen.contains(&(header.sender_party, header.seq)) {
            self.stats.duplicates += 1;
            return;
        }
        let expect = Expectation {
            me: &self.me,
            execution_id: &eid,
            participants: &run.participants,
            my_parties: &run.my_parties,
            max_envelope: self.limits.max_envelope,
        };
        let checked = envelope::accept(parsed, &expect).and_then(|opened| {
            let sender = &opened.header.sender;
            if opened.header.round >= MAX_ROUNDS {
                return Err(Rejection::ImpossibleRound {
                    claimed_sender: sender.clone(),
                    round: opened.header.round,
                });
            }
            if run.rounds.contains(&round_key(&opened)) {
                return Err(Rejection::Equivocation {
                    claimed_sender: sender.clone(),
                    round: opened.header.round,
                });
            }
            Ok(opened)
        });
        match checked {
            Ok(opened) => {
                run.seen.insert((opened.sender_index, opened.header.seq));
                run.rounds.insert(round_key(&opened));
                let (msg_type, to) = match opened.header.recipient {
                    Recipient::Broadcast => (MessageType::Broadcast, None),
                    Recipient::Party { index, .. } => (MessageType::P2P, Some(index)),
                };
                self.stats.delivered += 1;
                for (party, tx) in &run.local {
                    let wanted = match to {
                        Some(to) => *party == to,
                        None => *party != opened.sender_index,
                    };
                    if !wanted {
                        continue;
                    }
                    let incoming = Incoming {
                        id: run.next_id,
                        sender: opened.sender_index,
                        msg_type,
                        msg: WireMessage {
                            execution_id: eid,
                            round: opened.header.round,
                            payload: opened.payload.to_vec(),
                        },
                    };
                    run.next_id += 1;
                    // A closed receiver means that party's run is ending; nothing to do.
                    let _ = tx.send(Delivery::Message(incoming));
                }
            }
            Err(rejection) if rejection.is_attributable() => {
                self.stats.rejected += 1;
                let device = rejection.claimed_sender().cloned();
                run.record.reject(&eid, rejection.clone(), keep);
                if let Some(device) = device {
                    lock(&run.record.culprit).get_or_insert(device.clone());
                    run.fail(|| TransportError::Misbehaviour {
                        device: device.clone(),
                        rejection: rejection.clone(),
                    });
                }
            }
            Err(rejection) => {
                self.stats.rejected += 1;
                run.record.reject(&eid, rejection, keep);
            }
        }
    }

    /// Opens a run of this device's parties `my_parties`: from now on its envelopes are
    /// checked and delivered, each to the party it is for. Envelopes buffered for it are
    /// processed first, in arrival order.
    pub(crate) fn open(
        &mut self,
        eid: ExecutionId,
        participants: Arc<[(DeviceId, DevicePublicKeys)]>,
        my_parties: &[u16],
        now: Instant,
    ) -> Result<(PartyReceivers, RunRecord), TransportError> {
        if self.active.contains_key(&eid) || self.finished.contains(&eid) {
            return Err(TransportError::ExecutionInUse);
        }
        let (local, receivers): (Vec<_>, Vec<_>) = my_parties
            .iter()
            .map(|p| {
                let (tx, rx) = mpsc::unbounded_channel();
                ((*p, tx), (*p, rx))
            })
            .unzip();
        let record = RunRecord::default();
        self.active.insert(
            eid,
            ActiveRun {
                participants,
                local,
                my_parties: my_parties.to_vec(),
                seen: HashSet::new(),
                rounds: HashSet::new(),
                next_id: 0,
                record: record.clone(),
            },
        );
        self.expire(now);
        let (mine, others): (VecDeque<Buffered>, VecDeque<Buffered>) = std::mem::take(&mut self.early)
            .into_iter()
            .partition(|b| b.execution_id == eid);
        self.early = others;
        for buffered in mine {
            self.early_bytes -= buffered.bytes.len();
            if let Ok(parsed) = envelope::parse(&buffered.bytes, self.limits.max_envelope) {
                self.deliver(eid, parsed);
            }
        }
        Ok((receivers, record))
    }

    /// Ends a run: later envelopes for it are reported as late or replayed.
    pub(crate) fn close(&mut self, eid: &ExecutionId) {
        if self.active.remove(eid).is_none() {
            return;
        }
        if self.finished_order.len() >= self.limits.finished_memory {
            if let Some(old) = self.finished_order.pop_front() {
                self.finished.remove(&old);
            }
        }
        self.finished.insert(*eid);
        self.finished_order.push_back(*eid);
    }

    /// Fails every open run with `error()` (the link is closing, or the broker lost the
    /// session and with it messages in flight).
    pub(crate) fn fail_all(&mut self, error: impl Fn() -> TransportError) {
        for run in self.active.values() {
            run.fail(&error);
        }
    }

    /// Number of runs open now.
    pub(crate) fn open_runs(&self) -> usize {
        self.active.len()
    }
}

/// What one message per round means: one broadcast per sending party, or one p2p message
/// per sending and receiving party.
fn round_key(opened: &envelope::OpenedEnvelope) -> (u16, u16, u16) {
    let to = match opened.header.recipient {
        Recipient::Broadcast => BROADCAST,
        Recipient::Party { index, .. } => index,
    };
    (opened.sender_index, opened.header.round, to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{seal, EnvelopeHeader};
    use rand_core::OsRng;

    struct World {
        devices: Vec<Arc<DeviceIdentity>>,
        participants: Arc<[(DeviceId, DevicePublicKeys)]>,
    }

    fn world() -> World {
        let devices: Vec<_> = ["in-a", "in-b", "in-c"]
            .iter()
            .map(|n| Arc::new(DeviceIdentity::generate(DeviceId::new(*n).unwrap(), &mut OsRng)))
            .collect();
        let participants = devices
            .iter()
            .map(|d| (d.device_id().clone(), d.public_keys().clone()))
            .collect::<Vec<_>>()
            .into();
        World {
            devices,
            participants,
        }
    }

    fn envelope(from: &DeviceIdentity, eid: u8, round: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let header = EnvelopeHeader {
            execution_id: ExecutionId::from_bytes([eid; 32]),
            round,
            seq,
            sender: from.device_id().clone(),
            sender_party: party_of(from),
            recipient: Recipient::Broadcast,
        };
        seal(from, &header, body, None, &mut OsRng).unwrap()
    }

    /// The world's devices run parties 0, 1, 2 by name.
    fn party_of(d: &DeviceIdentity) -> u16 {
        match d.device_id().as_str() {
            "in-a" => 0,
            "in-b" => 1,
            _ => 2,
        }
    }

    /// Opens a run in which A runs party 0, with A's one receiver.
    fn open(
        inbox: &mut Inbox,
        n: u8,
        participants: Arc<[(DeviceId, DevicePublicKeys)]>,
        now: Instant,
    ) -> Result<(mpsc::UnboundedReceiver<Delivery>, RunRecord), TransportError> {
        let (mut receivers, record) = inbox.open(eid(n), participants, &[0], now)?;
        Ok((receivers.remove(0).1, record))
    }

    fn eid(n: u8) -> ExecutionId {
        ExecutionId::from_bytes([n; 32])
    }

    /// A's inbox, knowing B and C (as after A checked their records).
    fn inbox(w: &World, limits: InboxLimits) -> Inbox {
        let mut inbox = Inbox::new(w.devices[0].clone(), limits);
        inbox.learn(w.participants.iter().cloned());
        inbox
    }

    #[test]
    fn early_envelopes_expire_and_are_reported() {
        let w = world();
        let mut inbox = inbox(&w, InboxLimits::default());
        let t0 = Instant::now();
        inbox.route(&envelope(&w.devices[1], 1, 0, 0, b"x"), t0);
        assert_eq!(inbox.stats().buffered, 1);
        inbox.route(b"garbage", t0 + inbox.limits.early_ttl + Duration::from_secs(1));
        assert_eq!(inbox.stats().buffered, 0);
        assert!(inbox.orphan_rejections().iter().any(
            |r| matches!(r, Rejection::Unclaimed { claimed_sender, why } if claimed_sender == w.devices[1].device_id() && why.contains("expired"))
        ));
    }

    #[test]
    fn the_early_buffer_is_bounded_in_count_and_bytes() {
        let w = world();
        let limits = InboxLimits {
            early_max_envelopes: 2,
            early_max_bytes: 1000,
            ..InboxLimits::default()
        };
        let mut inbox = inbox(&w, limits);
        let now = Instant::now();
        for i in 0..3 {
            inbox.route(&envelope(&w.devices[1], 10 + i, 0, 0, b"x"), now);
        }
        assert_eq!(inbox.stats().buffered, 2);
        assert_eq!(inbox.orphan_rejections().len(), 1, "the oldest was dropped");
        // Too large for the buffer on its own: refused without evicting the others.
        inbox.route(&envelope(&w.devices[1], 20, 0, 0, &[0u8; 2000]), now);
        assert_eq!(inbox.stats().buffered, 2);
        assert_eq!(
            inbox.early_bytes,
            inbox.early.iter().map(|b| b.bytes.len()).sum::<usize>()
        );
        // Opening a run drains exactly its own envelopes.
        let (mut rx, _) = open(&mut inbox, 12, w.participants.clone(), now).unwrap();
        assert!(matches!(rx.try_recv(), Ok(Delivery::Message(_))));
        assert_eq!(inbox.stats().buffered, 1);
        assert_eq!(inbox.early.len(), 1);
    }

    #[test]
    fn ended_runs_are_remembered_and_cannot_be_reopened() {
        let w = world();
        let limits = InboxLimits {
            finished_memory: 1,
            ..InboxLimits::default()
        };
        let mut inbox = inbox(&w, limits);
        let now = Instant::now();
        let _run = open(&mut inbox, 1, w.participants.clone(), now).unwrap();
        assert!(matches!(
            open(&mut inbox, 1, w.participants.clone(), now),
            Err(TransportError::ExecutionInUse)
        ));
        inbox.close(&eid(1));
        assert!(matches!(
            open(&mut inbox, 1, w.participants.clone(), now),
            Err(TransportError::ExecutionInUse)
        ));
        inbox.route(&envelope(&w.devices[1], 1, 0, 0, b"x"), now);
        assert!(matches!(
            inbox.orphan_rejections().last(),
            Some(Rejection::FinishedExecution { .. })
        ));
        // Only `finished_memory` ended runs are remembered.
        let _run = open(&mut inbox, 2, w.participants.clone(), now).unwrap();
        inbox.close(&eid(2));
        inbox.route(&envelope(&w.devices[1], 1, 0, 1, b"x"), now);
        assert_eq!(inbox.stats().buffered, 1);
    }

    #[test]
    fn duplicates_are_dropped_and_equivocation_or_impossible_rounds_blamed() {
        let w = world();
        let mut inbox = inbox(&w, InboxLimits::default());
        let now = Instant::now();
        let (mut rx, record) = open(&mut inbox, 1, w.participants.clone(), now).unwrap();
        let first = envelope(&w.devices[1], 1, 0, 0, b"commitment");
        inbox.route(&first, now);
        inbox.route(&first, now);
        assert_eq!(inbox.stats().duplicates, 1);
        assert!(matches!(rx.try_recv(), Ok(Delivery::Message(m)) if m.sender == 1));
        assert!(rx.try_recv().is_err(), "the re-delivery is not handed on");
        // B signs a different message for the same round.
        inbox.route(&envelope(&w.devices[1], 1, 0, 1, b"other commitment"), now);
        match rx.try_recv() {
            Ok(Delivery::Fault(TransportError::Misbehaviour { device, rejection })) => {
                assert_eq!(&device, w.devices[1].device_id());
                assert!(matches!(rejection, Rejection::Equivocation { round: 0, .. }));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(lock(&record.culprit).as_ref(), Some(w.devices[1].device_id()));
        // C signs a round no protocol has.
        inbox.route(&envelope(&w.devices[2], 1, MAX_ROUNDS, 0, b"x"), now);
        assert!(matches!(
            rx.try_recv(),
            Ok(Delivery::Fault(TransportError::Misbehaviour {
                rejection: Rejection::ImpossibleRound { .. },
                ..
            }))
        ));
    }

    #[test]
    fn a_device_running_two_parties_gets_each_its_own_messages() {
        let w = world();
        let mut inbox = inbox(&w, InboxLimits::default());
        let now = Instant::now();
        // Parties [A, A, B]: A runs parties 0 and 1.
        let (a, b) = (&w.devices[0], &w.devices[1]);
        let participants: Arc<[(DeviceId, DevicePublicKeys)]> = [a, a, b]
            .iter()
            .map(|d| (d.device_id().clone(), d.public_keys().clone()))
            .collect::<Vec<_>>()
            .into();
        let (mut receivers, record) = inbox.open(eid(1), participants, &[0, 1], now).unwrap();
        let (mut rx1, mut rx0) = (receivers.pop().unwrap().1, receivers.pop().unwrap().1);
        let seal_as = |from: &DeviceIdentity, party: u16, seq: u32, to: Option<(&DeviceIdentity, u16)>| {
            let header = EnvelopeHeader {
                execution_id: eid(1),
                round: 0,
                seq,
                sender: from.device_id().clone(),
                sender_party: party,
                recipient: match to {
                    Some((d, index)) => Recipient::Party {
                        device: d.device_id().clone(),
                        index,
                    },
                    None => Recipient::Broadcast,
                },
            };
            seal(from, &header, b"m", to.map(|(d, _)| d.public_keys()), &mut OsRng).unwrap()
        };
        // B's broadcast reaches both of A's parties; its p2p message to party 1 only party 1.
        inbox.route(&seal_as(b, 2, 0, None), now);
        inbox.route(&seal_as(b, 2, 1, Some((a, 1))), now);
        assert!(
            matches!(rx0.try_recv(), Ok(Delivery::Message(m)) if m.sender == 2 && m.msg_type == MessageType::Broadcast)
        );
        assert!(rx0.try_recv().is_err());
        assert!(
            matches!(rx1.try_recv(), Ok(Delivery::Message(m)) if m.sender == 2 && m.msg_type == MessageType::Broadcast)
        );
        assert!(
            matches!(rx1.try_recv(), Ok(Delivery::Message(m)) if m.sender == 2 && m.msg_type == MessageType::P2P)
        );
        // A's party 0 broadcasts (its own envelope back from the broker): party 1 gets it,
        // party 0 does not.
        inbox.route(&seal_as(a, 0, 0, None), now);
        assert!(matches!(rx1.try_recv(), Ok(Delivery::Message(m)) if m.sender == 0));
        assert!(rx0.try_recv().is_err());
        // B cannot speak for A's parties, nor send to a party A does not run.
        inbox.route(&seal_as(b, 0, 5, None), now);
        inbox.route(&seal_as(b, 2, 6, Some((a, 5))), now);
        assert!(rx0.try_recv().is_err() && rx1.try_recv().is_err());
        let refused = lock(&record.rejections).clone();
        assert!(
            matches!(refused[0], Rejection::NotAParticipant { .. }),
            "{refused:?}"
        );
        assert!(
            matches!(refused[1], Rejection::WrongRecipient { .. }),
            "{refused:?}"
        );
        // A p2p message per receiving party is not equivocation; a second broadcast is.
        inbox.route(&seal_as(b, 2, 7, Some((a, 0))), now);
        assert!(matches!(rx0.try_recv(), Ok(Delivery::Message(m)) if m.msg_type == MessageType::P2P));
        inbox.route(&seal_as(b, 2, 8, None), now);
        for rx in [&mut rx0, &mut rx1] {
            assert!(matches!(
                rx.try_recv(),
                Ok(Delivery::Fault(TransportError::Misbehaviour {
                    rejection: Rejection::Equivocation { .. },
                    ..
                }))
            ));
        }
    }

    #[test]
    fn rejections_kept_per_run_are_bounded() {
        let w = world();
        let limits = InboxLimits {
            rejections_per_run: 3,
            ..InboxLimits::default()
        };
        let mut inbox = inbox(&w, limits);
        let now = Instant::now();
        let (_rx, record) = open(&mut inbox, 1, w.participants.clone(), now).unwrap();
        let forger = DeviceIdentity::generate(w.devices[1].device_id().clone(), &mut OsRng);
        for seq in 0..10 {
            inbox.route(&envelope(&forger, 1, 0, seq, b"x"), now);
        }
        assert_eq!(lock(&record.rejections).len(), 3);
        assert_eq!(record.rejected.load(std::sync::atomic::Ordering::Relaxed), 10);
    }

    #[test]
    fn only_signed_envelopes_of_known_devices_wait_and_no_sender_pushes_out_another() {
        let w = world();
        let limits = InboxLimits {
            early_max_envelopes: 8,
            early_max_per_sender: 4,
            ..InboxLimits::default()
        };
        let mut inbox = inbox(&w, limits);
        let now = Instant::now();
        // B's first message of a run A has not opened.
        let first = envelope(&w.devices[1], 1, 0, 0, b"B's first message");
        inbox.route(&first, now);
        inbox.route(&first, now);
        assert_eq!((inbox.stats().buffered, inbox.stats().duplicates), (1, 1));
        // A stranger, a forger in B's name, a message for another device: never buffered.
        let stranger = DeviceIdentity::generate(DeviceId::new("stranger").unwrap(), &mut OsRng);
        let forger = DeviceIdentity::generate(w.devices[1].device_id().clone(), &mut OsRng);
        for i in 0..100u32 {
            inbox.route(&envelope(&stranger, 2, 0, i, b"flood"), now);
            inbox.route(&envelope(&forger, 2, 0, i, b"flood"), now);
        }
        let to_c = seal(
            &w.devices[1],
            &EnvelopeHeader {
                execution_id: eid(3),
                round: 0,
                seq: 0,
                sender: w.devices[1].device_id().clone(),
                sender_party: 1,
                recipient: Recipient::Party {
                    device: w.devices[2].device_id().clone(),
                    index: 2,
                },
            },
            b"for C",
            Some(w.devices[2].public_keys()),
            &mut OsRng,
        )
        .unwrap();
        inbox.route(&to_c, now);
        assert_eq!(inbox.stats().buffered, 1);
        let refused = inbox.orphan_rejections();
        assert!(refused
            .iter()
            .any(|r| matches!(r, Rejection::UnknownSender { .. })));
        assert!(refused
            .iter()
            .any(|r| matches!(r, Rejection::BadSignature { .. })));
        assert!(refused
            .iter()
            .any(|r| matches!(r, Rejection::WrongRecipient { .. })));
        // C, a known device, sends many: only its own oldest give way, never B's message.
        for i in 0..20u32 {
            inbox.route(&envelope(&w.devices[2], 10 + i as u8, 0, i, b"C"), now);
        }
        assert_eq!(inbox.stats().buffered, 5, "B's one and C's last four");
        let (mut rx, _) = open(&mut inbox, 1, w.participants.clone(), now).unwrap();
        assert!(
            matches!(rx.try_recv(), Ok(Delivery::Message(m)) if m.sender == 1 && m.msg.payload == b"B's first message")
        );
    }
}
