//! Failed sign-ins, counted per peer address and in total over fixed one-minute windows, so
//! that guessing the admin password or an API key through the dashboard is slow from one
//! address and from many.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The length of one counting window.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Failed sign-ins one peer may make in a window.
pub(crate) const PER_PEER: u32 = 5;
/// Failed sign-ins all peers together may make in a window.
pub(crate) const GLOBAL: u32 = 100;
/// Peers remembered at most; past it, only the global count protects (it is reached first).
const MAX_PEERS: usize = 10_000;

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

impl Window {
    fn current(&mut self, now: Instant) -> &mut Self {
        if now.duration_since(self.start) >= WINDOW {
            *self = Window { start: now, failures: 0 };
        }
        self
    }

    fn retry_after(&self, now: Instant) -> Duration {
        WINDOW.saturating_sub(now.duration_since(self.start))
    }
}

/// Who is refused for a while.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// This peer failed too often.
    Peer(Duration),
    /// Everyone together failed too often.
    Global(Duration),
}

/// The failure counts. One short lock per sign-in attempt; never held across an await.
pub(crate) struct Throttle {
    state: Mutex<(HashMap<IpAddr, Window>, Window)>,
}

impl Throttle {
    pub(crate) fn new() -> Self {
        Self { state: Mutex::new((HashMap::new(), Window { start: Instant::now(), failures: 0 })) }
    }

    /// Whether `peer` may try to sign in now.
    pub(crate) fn check(&self, peer: IpAddr, now: Instant) -> Result<(), Refusal> {
        let mut state = self.state.lock();
        let (peers, global) = &mut *state;
        let global = global.current(now);
        if global.failures >= GLOBAL {
            return Err(Refusal::Global(global.retry_after(now)));
        }
        match peers.get_mut(&bucket(peer)).map(|w| *w.current(now)) {
            Some(w) if w.failures >= PER_PEER => Err(Refusal::Peer(w.retry_after(now))),
            _ => Ok(()),
        }
    }

    /// Counts a failed sign-in of `peer`.
    pub(crate) fn failed(&self, peer: IpAddr, now: Instant) {
        let mut state = self.state.lock();
        let (peers, global) = &mut *state;
        global.current(now).failures += 1;
        if peers.len() >= MAX_PEERS {
            peers.retain(|_, w| now.duration_since(w.start) < WINDOW);
        }
        if peers.len() < MAX_PEERS || peers.contains_key(&bucket(peer)) {
            peers.entry(bucket(peer)).or_insert(Window { start: now, failures: 0 }).current(now).failures += 1;
        }
    }
}

/// The unit one peer is counted by: its IPv4 address, or its IPv6 /64 (one host's usual share).
fn bucket(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_refused_after_its_failures_until_the_window_ends() {
        let throttle = Throttle::new();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let now = Instant::now();
        for _ in 0..PER_PEER {
            assert_eq!(throttle.check(a, now), Ok(()));
            throttle.failed(a, now);
        }
        assert!(matches!(throttle.check(a, now), Err(Refusal::Peer(d)) if d <= WINDOW));
        assert_eq!(throttle.check(b, now), Ok(()));
        assert_eq!(throttle.check(a, now + WINDOW), Ok(()));
    }

    #[test]
    fn ipv6_peers_are_counted_by_their_64() {
        let throttle = Throttle::new();
        let now = Instant::now();
        for i in 0..PER_PEER {
            throttle.failed(format!("2001:db8::{i}").parse().unwrap(), now);
        }
        assert!(throttle.check("2001:db8::ffff".parse().unwrap(), now).is_err());
        assert_eq!(throttle.check("2001:db8:0:1::1".parse().unwrap(), now), Ok(()));
    }
}
