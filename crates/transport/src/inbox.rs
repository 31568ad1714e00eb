//! The inbox of one device: demultiplexes incoming envelopes to the runs they belong to.
//!
//! One MQTT inbox topic per device carries the traffic of every run the device takes part
//! in. For each envelope the inbox decides, by its execution id:
//! - a run open on this device → full checks ([`crate::envelope::accept`]); accepted ones are
//!   de-duplicated by `(sender, seq)` and handed to the run; faults proven to be the signer's
//!   abort the run with the device named; anything else is dropped and reported;
//! - a run that already ended here → dropped and reported as late or replayed;
//! - an unknown run → buffered (bounded in count and bytes, expiring), because peers may
//!   start a run, and send their first round, before this device has opened it. Opening
//!   the run drains its buffer through the same checks.
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
    /// How long an envelope for a run not started yet is kept.
    pub early_ttl: Duration,
    /// How many ended runs are remembered (to recognise late and replayed envelopes).
    pub finished_memory: usize,
}

impl Default for InboxLimits {
    fn default() -> Self {
        InboxLimits {
            max_envelope: envelope::DEFAULT_MAX_ENVELOPE,
            max_packet: 4 * envelope::DEFAULT_MAX_ENVELOPE,
            early_max_envelopes: 4096,
            early_max_bytes: 64 * 1024 * 1024,
            early_ttl: Duration::from_secs(120),
            finished_memory: 4096,
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
    pub(crate) culprit: Arc<Mutex<Option<DeviceId>>>,
}

impl RunRecord {
    fn reject(&self, eid: &ExecutionId, rejection: Rejection) {
        tracing::warn!(execution = %hex::encode(&eid.as_bytes()[..8]), %rejection, "envelope rejected");
        lock(&self.rejections).push(rejection);
    }
}

struct ActiveRun {
    participants: Arc<[(DeviceId, DevicePublicKeys)]>,
    seen: HashSet<(u16, u32)>,
    next_id: u64,
    tx: mpsc::UnboundedSender<Delivery>,
    record: RunRecord,
}

struct Buffered {
    bytes: Vec<u8>,
    sender: DeviceId,
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
    early: HashMap<ExecutionId, VecDeque<Buffered>>,
    early_order: VecDeque<(ExecutionId, Instant)>,
    early_count: usize,
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
            early: HashMap::new(),
            early_order: VecDeque::new(),
            early_count: 0,
            early_bytes: 0,
            orphan_rejections: VecDeque::new(),
            stats: InboxStats::default(),
        }
    }

    pub(crate) fn stats(&self) -> InboxStats {
        InboxStats {
            buffered: self.early_count,
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
        self.buffer(eid, bytes.to_vec(), sender, now);
    }

    fn deliver(&mut self, eid: ExecutionId, parsed: envelope::ParsedEnvelope<'_>) {
        let Some(run) = self.active.get_mut(&eid) else {
            return;
        };
        let expect = Expectation {
            me: &self.me,
            execution_id: &eid,
            participants: &run.participants,
            max_envelope: self.limits.max_envelope,
        };
        match envelope::accept(parsed, &expect) {
            Ok(opened) => {
                if !run.seen.insert((opened.sender_index, opened.header.seq)) {
                    self.stats.duplicates += 1;
                    return;
                }
                let msg_type = match opened.header.recipient {
                    Recipient::Broadcast => MessageType::Broadcast,
                    Recipient::Device(_) => MessageType::P2P,
                };
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
                self.stats.delivered += 1;
                // A closed receiver means the run is ending; nothing to do.
                let _ = run.tx.send(Delivery::Message(incoming));
            }
            Err(rejection) if rejection.is_attributable() => {
                self.stats.rejected += 1;
                let device = rejection.claimed_sender().cloned();
                run.record.reject(&eid, rejection.clone());
                if let Some(device) = device {
                    lock(&run.record.culprit).get_or_insert(device.clone());
                    let _ = run.tx.send(Delivery::Fault(TransportError::Misbehaviour {
                        device,
                        rejection,
                    }));
                }
            }
            Err(rejection) => {
                self.stats.rejected += 1;
                run.record.reject(&eid, rejection);
            }
        }
    }

    fn buffer(&mut self, eid: ExecutionId, bytes: Vec<u8>, sender: DeviceId, now: Instant) {
        let len = bytes.len();
        while self.early_count >= self.limits.early_max_envelopes
            || self.early_bytes + len > self.limits.early_max_bytes
        {
            if !self.drop_oldest_early("the buffer for runs not started yet is full") {
                break;
            }
        }
        if self.early_bytes + len > self.limits.early_max_bytes {
            return self.reject_orphan(Rejection::Unclaimed {
                claimed_sender: sender,
                why: "larger than the buffer for runs not started yet",
            });
        }
        self.early_count += 1;
        self.early_bytes += len;
        self.early_order.push_back((eid, now));
        self.early
            .entry(eid)
            .or_default()
            .push_back(Buffered { bytes, sender });
    }

    /// Drops the oldest buffered envelope; false when the buffer is empty.
    fn drop_oldest_early(&mut self, why: &'static str) -> bool {
        while let Some((eid, _)) = self.early_order.pop_front() {
            let Some(queue) = self.early.get_mut(&eid) else {
                continue;
            };
            let Some(oldest) = queue.pop_front() else { continue };
            if queue.is_empty() {
                self.early.remove(&eid);
            }
            self.early_count -= 1;
            self.early_bytes -= oldest.bytes.len();
            self.reject_orphan(Rejection::Unclaimed {
                claimed_sender: oldest.sender,
                why,
            });
            return true;
        }
        false
    }

    fn expire(&mut self, now: Instant) {
        while let Some((_, at)) = self.early_order.front() {
            if now.duration_since(*at) < self.limits.early_ttl {
                break;
            }
            self.drop_oldest_early("it expired before its run started here");
        }
    }

    /// Opens a run: from now on its envelopes are checked and delivered. Envelopes buffered
    /// for it are processed first, in arrival order.
    pub(crate) fn open(
        &mut self,
        eid: ExecutionId,
        participants: Arc<[(DeviceId, DevicePublicKeys)]>,
        now: Instant,
    ) -> Result<(mpsc::UnboundedReceiver<Delivery>, RunRecord), TransportError> {
        if self.active.contains_key(&eid) || self.finished.contains(&eid) {
            return Err(TransportError::ExecutionInUse);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let record = RunRecord::default();
        self.active.insert(
            eid,
            ActiveRun {
                participants,
                seen: HashSet::new(),
                next_id: 0,
                tx,
                record: record.clone(),
            },
        );
        self.expire(now);
        if let Some(queue) = self.early.remove(&eid) {
            for buffered in queue {
                self.early_count -= 1;
                self.early_bytes -= buffered.bytes.len();
                if let Ok(parsed) = envelope::parse(&buffered.bytes, self.limits.max_envelope) {
                    self.deliver(eid, parsed);
                }
            }
            self.early_order.retain(|(e, _)| *e != eid);
        }
        Ok((rx, record))
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

    /// Fails every open run (the link is closing).
    pub(crate) fn fail_all(&mut self) {
        for run in self.active.values() {
            let _ = run.tx.send(Delivery::Fault(TransportError::LinkClosed));
        }
    }
}
