//! Envelopes of runs not open here yet: kept only when a device this one knows signed them,
//! at most `InboxLimits::early_max_per_sender` per sender (the
//! sender's own oldest goes first) and a total, where the sender holding the most gives
//! way; expired after a while. No one can push another device's envelopes out by sending
//! many of its own.

use std::time::Instant;

use super::*;

impl Inbox {
    pub(super) fn buffer(
        &mut self,
        eid: ExecutionId,
        sender: DeviceId,
        sender_party: u16,
        seq: u32,
        bytes: Vec<u8>,
        now: Instant,
    ) {
        let len = bytes.len();
        if len > self.limits.early_max_bytes || self.limits.early_max_envelopes == 0 {
            return self.reject_orphan(Rejection::Unclaimed {
                claimed_sender: sender,
                why: "larger than the buffer for runs not started yet",
            });
        }
        // A sender's own oldest envelope makes room for its next one.
        if self.early.iter().filter(|b| b.sender == sender).count() >= self.limits.early_max_per_sender {
            self.drop_oldest_of(
                &sender,
                "its sender has too many envelopes waiting for runs not started here",
            );
        }
        // When the whole buffer is full, the sender holding the most gives way.
        while self.early.len() >= self.limits.early_max_envelopes
            || self.early_bytes + len > self.limits.early_max_bytes
        {
            let Some(largest) = self.largest_holder(&sender) else {
                break;
            };
            if !self.drop_oldest_of(&largest, "the buffer for runs not started yet is full") {
                break;
            }
        }
        self.early_bytes += len;
        self.early.push_back(Buffered {
            execution_id: eid,
            sender,
            sender_party,
            seq,
            bytes,
            at: now,
        });
    }

    /// The sender with the most envelopes buffered (`newcomer`, about to add one, counts
    /// one more).
    pub(super) fn largest_holder(&self, newcomer: &DeviceId) -> Option<DeviceId> {
        let mut counts: HashMap<&DeviceId, usize> = HashMap::new();
        for b in &self.early {
            *counts.entry(&b.sender).or_default() += 1;
        }
        *counts.entry(newcomer).or_default() += 1;
        counts
            .into_iter()
            .filter(|(d, _)| self.early.iter().any(|b| &b.sender == *d))
            .max_by_key(|(_, n)| *n)
            .map(|(d, _)| d.clone())
    }

    /// Drops `sender`'s oldest buffered envelope; false when it has none.
    pub(super) fn drop_oldest_of(&mut self, sender: &DeviceId, why: &'static str) -> bool {
        let Some(i) = self.early.iter().position(|b| &b.sender == sender) else {
            return false;
        };
        let Some(oldest) = self.early.remove(i) else {
            return false;
        };
        self.early_bytes -= oldest.bytes.len();
        self.reject_orphan(Rejection::Unclaimed {
            claimed_sender: oldest.sender,
            why,
        });
        true
    }

    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(oldest) = self.early.front() {
            if now.duration_since(oldest.at) < self.limits.early_ttl {
                break;
            }
            let sender = oldest.sender.clone();
            self.drop_oldest_of(&sender, "it expired before its run started here");
        }
    }
}
