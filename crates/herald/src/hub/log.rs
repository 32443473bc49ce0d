//! The app's sequence and its recent history, in memory.
//!
//! Assigning a sequence number and appending to history happen under one lock, so history is
//! always in sequence order: a connection that reads it up to the head and then takes live
//! messages above the head can neither miss nor double a message at the seam.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::id::EventId;
use crate::message::{Identity, Message};
use crate::store::HistoryLimits;

/// Where a (re)connecting client continues from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resume {
    /// Continue after this sequence.
    From(u64),
    /// The client's id cannot be resumed from; it must refetch its state. Continue at the head.
    Reset { head: u64, reason: &'static str },
}

pub(crate) struct Log {
    pub(crate) epoch: String,
    /// The last sequence in history: delivered, and visible to readers.
    pub(crate) head: u64,
    /// The last sequence given to a message (a single node's own sequencer). Above `head` while
    /// durable messages wait for their commit; see `held`.
    pub(crate) assigned: u64,
    /// Every message after this sequence is still in `entries`.
    floor: u64,
    entries: VecDeque<Arc<Message>>,
    /// What `entries` weigh, against `limits.max_bytes`.
    bytes: usize,
    limits: HistoryLimits,
    /// Publishers' own ids (Mercure) in `entries`, each to the earliest message bearing it, so
    /// that a client resumes from a custom id as from a generated one.
    custom: HashMap<String, u64>,
}

/// What a message in history costs: its payload and its encoded frame.
fn weight(m: &Message) -> usize {
    m.data.len() + m.frame.len()
}

impl Log {
    pub(crate) fn new(epoch: String, head: u64, floor: u64, entries: Vec<Arc<Message>>, limits: HistoryLimits) -> Self {
        let bytes = entries.iter().map(|m| weight(m)).sum();
        let mut custom = HashMap::new();
        for m in &entries {
            if let Some(id) = m.custom_id() {
                custom.entry(id.to_owned()).or_insert(m.seq);
            }
        }
        let mut log = Self { epoch, head, assigned: head, floor, entries: entries.into(), bytes, limits, custom };
        log.bound();
        log
    }

    /// Drops the oldest messages while history is over its count or its bytes.
    fn bound(&mut self) {
        while self.entries.len() > self.limits.max_len || self.bytes > self.limits.max_bytes {
            self.pop_front();
        }
    }

    /// Appends the next message; its sequence must be above `head` (a cluster node that could
    /// not catch up after losing Redis skips ahead; see [`Log::restart`]).
    pub(crate) fn append(&mut self, message: Arc<Message>) {
        debug_assert!(message.seq > self.head);
        self.head = message.seq;
        self.assigned = self.assigned.max(message.seq);
        self.bytes += weight(&message);
        if let Some(id) = message.custom_id() {
            self.custom.entry(id.to_owned()).or_insert(message.seq);
        }
        self.entries.push_back(message);
        self.bound();
    }

    /// Forgets everything and continues at `head` of `epoch`: positions from before cannot be
    /// resumed from. Used when a cluster's shared history was lost or outran this node.
    pub(crate) fn restart(&mut self, epoch: String, head: u64) {
        self.epoch = epoch;
        self.head = head;
        self.assigned = head;
        self.floor = head;
        self.entries.clear();
        self.custom.clear();
        self.bytes = 0;
    }

    /// Drops messages older than the age bound.
    pub(crate) fn trim(&mut self, now_ms: u64) {
        let oldest = now_ms.saturating_sub(self.limits.max_age_ms);
        while self.entries.front().is_some_and(|m| m.time_ms < oldest) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(m) = self.entries.pop_front() {
            self.bytes -= weight(&m);
            self.floor = m.seq;
            if let Some(id) = m.custom_id() {
                if self.custom.get(id) == Some(&m.seq) {
                    // A later message may reuse the id: it becomes the earliest.
                    match self.entries.iter().find(|e| e.custom_id() == Some(id)) {
                        Some(next) => self.custom.insert(id.to_owned(), next.seq),
                        None => self.custom.remove(id),
                    };
                }
            }
        }
    }

    /// Decides where a client that last saw `last_event_id` continues.
    pub(crate) fn resume(&self, last_event_id: Option<&str>) -> Resume {
        let Some(raw) = last_event_id.filter(|s| !s.is_empty()) else { return Resume::From(self.head) };
        let reset = |reason| Resume::Reset { head: self.head, reason };
        if let Some(&seq) = self.custom.get(raw) {
            return Resume::From(seq);
        }
        match EventId::parse(raw) {
            None => reset("the last event id is malformed"),
            Some(id) if id.epoch != self.epoch => {
                reset("the last event id belongs to a history this hub no longer has")
            }
            Some(id) if id.seq > self.head => reset("the last event id is ahead of this hub's history"),
            Some(id) if id.seq < self.floor => reset("the last event id is older than the retained history"),
            Some(id) => Resume::From(id.seq),
        }
    }

    /// Messages after `position` that `who` would have received, in order.
    pub(crate) fn after(&self, position: u64, who: &Identity) -> Vec<Arc<Message>> {
        let start = self.entries.partition_point(|m| m.seq <= position);
        self.entries.range(start..).filter(|m| m.targets.matches(who)).cloned().collect()
    }

    /// The last `n` messages that `who` would have received, oldest first.
    pub(crate) fn latest(&self, n: usize, who: &Identity) -> Vec<Arc<Message>> {
        let mut latest: Vec<_> =
            self.entries.iter().rev().filter(|m| m.targets.matches(who)).take(n).cloned().collect();
        latest.reverse();
        latest
    }

    /// Every message in history matching `keep`, in order, after `position`.
    pub(crate) fn after_where(&self, position: u64, keep: impl Fn(&Message) -> bool) -> Vec<Arc<Message>> {
        let start = self.entries.partition_point(|m| m.seq <= position);
        self.entries.range(start..).filter(|m| keep(m)).cloned().collect()
    }

    /// The oldest position a client can resume from.
    pub(crate) fn floor(&self) -> u64 {
        self.floor
    }

    /// The id clients saw for position `seq`: its message's own (a custom one included) while
    /// it is in history.
    pub(crate) fn wire_id_of(&self, seq: u64) -> String {
        let at = self.entries.partition_point(|m| m.seq < seq);
        match self.entries.get(at).filter(|m| m.seq == seq) {
            Some(m) => m.id.clone(),
            None => self.id_of(seq),
        }
    }

    /// The id of a position, for `id:` lines that are not a message's own.
    pub(crate) fn id_of(&self, seq: u64) -> String {
        crate::id::format(&self.epoch, seq, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Targets;

    fn log(max_len: usize) -> Log {
        Log::new("ep".into(), 0, 0, Vec::new(), HistoryLimits { max_len, max_age_ms: 60_000, max_bytes: usize::MAX })
    }

    fn push(log: &mut Log, user: &str, time_ms: u64) {
        let to = Targets { users: vec![user.into()], ..Targets::default() };
        let seq = log.head + 1;
        log.append(Arc::new(Message::new("ep", seq, time_ms, to, None, "x".into(), false)));
    }

    #[test]
    fn replays_only_what_matches_after_the_position() {
        let mut log = log(10);
        for user in ["a", "b", "a", "a"] {
            push(&mut log, user, 1);
        }
        let a = Identity { user: Some("a".into()), ..Identity::default() };
        let seqs: Vec<u64> = log.after(1, &a).iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [3, 4]);
    }

    #[test]
    fn resets_on_unknown_stale_or_malformed_ids() {
        let mut log = log(2);
        for _ in 0..4 {
            push(&mut log, "a", 1);
        }
        assert_eq!(log.resume(None), Resume::From(4));
        assert_eq!(log.resume(Some("ep-2")), Resume::From(2));
        assert_eq!(log.resume(Some("ep-3-d")), Resume::From(3));
        for bad in ["ep-1", "other-3", "ep-9", "nonsense"] {
            assert!(matches!(log.resume(Some(bad)), Resume::Reset { head: 4, .. }), "{bad}");
        }
        log.trim(120_000);
        assert!(matches!(log.resume(Some("ep-3")), Resume::Reset { .. }));
        assert_eq!(log.resume(Some("ep-4")), Resume::From(4));
    }

    #[test]
    fn history_is_bounded_by_bytes_too() {
        let mut log = Log::new(
            "ep".into(),
            0,
            0,
            Vec::new(),
            HistoryLimits { max_len: 100, max_age_ms: 60_000, max_bytes: 1000 },
        );
        for _ in 0..10 {
            let to = Targets::default();
            let seq = log.head + 1;
            log.append(Arc::new(Message::new("ep", seq, 1, to, None, "x".repeat(200), false)));
        }
        assert!(log.bytes <= 1000, "{} bytes kept", log.bytes);
        assert_eq!(log.entries.len(), 1000 / (200 + log.entries[0].frame.len()));
        assert!(matches!(log.resume(Some("ep-1")), Resume::Reset { .. }), "what was dropped cannot be resumed from");
        assert_eq!(log.resume(Some("ep-9")), Resume::From(9));
    }
}
