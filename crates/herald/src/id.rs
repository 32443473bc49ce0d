//! Event ids: `<epoch>-<seq>`, with `-d` appended for durable messages.
//!
//! One sequence per app gives one position that covers every address a connection listens to
//! (user, session, tenant, channels, broadcast), so a single `Last-Event-ID` is enough to resume.
//! The epoch names the history the sequence belongs to: when history is lost (a memory store
//! restarted, a flushed Redis), ids of the old epoch are recognisably stale and the client is
//! told to reset instead of silently missing messages.

use std::fmt;

/// A parsed event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId<'a> {
    /// The history this id belongs to.
    pub epoch: &'a str,
    /// Position in the app's sequence.
    pub seq: u64,
    /// Whether the message was stored per user until acknowledged.
    pub durable: bool,
}

impl<'a> EventId<'a> {
    /// Parses `<epoch>-<seq>` or `<epoch>-<seq>-d`; `None` when malformed.
    pub fn parse(s: &'a str) -> Option<Self> {
        let (rest, durable) = match s.strip_suffix("-d") {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        let (epoch, seq) = rest.rsplit_once('-')?;
        if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        if seq.is_empty() || seq.len() > 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self { epoch, seq: seq.parse().ok()?, durable })
    }
}

impl fmt::Display for EventId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.epoch, self.seq)?;
        if self.durable {
            f.write_str("-d")?;
        }
        Ok(())
    }
}

/// Formats the id of message `seq` of `epoch`.
pub fn format(epoch: &str, seq: u64, durable: bool) -> String {
    EventId { epoch, seq, durable }.to_string()
}

/// A fresh random lowercase alphanumeric token, used for epochs and node ids.
pub fn random_token(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for (epoch, seq, durable) in [("abc123", 0, false), ("x", u64::MAX, true)] {
            let s = format(epoch, seq, durable);
            assert_eq!(EventId::parse(&s), Some(EventId { epoch, seq, durable }));
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", "abc", "-1", "abc-", "abc-x", "a b-1", "abc--1", "abc-1-e", "abc-123456789012345678901"] {
            assert_eq!(EventId::parse(bad), None, "{bad:?}");
        }
    }
}
