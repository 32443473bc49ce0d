//! Wall-clock time as unix nanoseconds: the publisher and the subscribers run in different
//! processes, so latency is measured against the shared system clock.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

pub fn unix_secs() -> u64 {
    unix_nanos() / 1_000_000_000
}
