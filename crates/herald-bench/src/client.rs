//! One light SSE subscriber: a plain TcpStream, a hand-written request, a 2 KiB read buffer and
//! the incremental parsers. Thousands of these run on one thread of a worker process.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::http::{parse_head, Chunked};
use crate::sse::{Event, Parser};
use crate::stats::{histogram_pairs, new_histogram, Seen, Tally};
use crate::targets::Target;

const READ_BUF: usize = 2048;
/// Source addresses each carry this many clients, far below the ~28k ephemeral ports of one.
const CLIENTS_PER_SOURCE: u32 = 1000;
/// Each reconnect generation moves to fresh source addresses, away from TIME_WAIT ports.
const SOURCES_PER_GENERATION: u32 = 20;

/// What the worker wants its clients to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Be connected; the number changes when everyone must reconnect.
    Online(u32),
    Offline,
}

/// The payload every bench message carries in `data`.
#[derive(Deserialize)]
struct Msg {
    t: u64,
    n: u64,
}

/// State of all clients of one worker (one thread, hence `Rc`/`RefCell`).
pub struct Shared {
    pub target: Target,
    pub gate: Semaphore,
    pub failed: Cell<u32>,
    /// Streams open right now, so that going offline can wait until all are closed.
    pub open_streams: Cell<u32>,
    pub first_error: RefCell<Option<String>>,
    /// Clients connected, by generation.
    pub connected: RefCell<Vec<u32>>,
    tally: RefCell<Tally>,
    latency: RefCell<Histogram<u64>>,
}

impl Shared {
    pub fn new(target: Target, connect_concurrency: usize) -> Self {
        Shared {
            target,
            gate: Semaphore::new(connect_concurrency),
            failed: Cell::new(0),
            open_streams: Cell::new(0),
            first_error: RefCell::new(None),
            connected: RefCell::new(Vec::new()),
            tally: RefCell::new(Tally::default()),
            latency: RefCell::new(new_histogram()),
        }
    }

    pub fn connected_in(&self, generation: u32) -> u32 {
        self.connected.borrow().get(generation as usize).copied().unwrap_or(0)
    }

    pub fn broken(&self) -> u32 {
        self.tally.borrow().broken as u32
    }

    pub fn tally(&self) -> Tally {
        let mut t = self.tally.borrow().clone();
        t.latency = histogram_pairs(&self.latency.borrow());
        t
    }

    fn fail(&self, error: String) {
        self.failed.set(self.failed.get() + 1);
        self.first_error.borrow_mut().get_or_insert(error);
    }

    fn on_connected(&self, generation: u32) {
        let mut c = self.connected.borrow_mut();
        if c.len() <= generation as usize {
            c.resize(generation as usize + 1, 0);
        }
        c[generation as usize] += 1;
    }

    /// `resumed_from` is the Last-Event-ID this stream was opened with, for the duplicate note.
    fn on_message(&self, e: &Event<'_>, resumed_from: &str, seen: &mut Seen) {
        let data = e.data;
        let Ok(msg) = serde_json::from_str::<Msg>(data) else {
            return; // hub control events such as herald.connected
        };
        let now = crate::clock::unix_nanos();
        self.latency.borrow_mut().saturating_record(now.saturating_sub(msg.t).max(1000) / 1000);
        let mut t = self.tally.borrow_mut();
        t.received += 1;
        if seen.first_time(msg.n) {
            t.unique += 1;
        } else {
            t.duplicates += 1;
            t.first_duplicate.get_or_insert_with(|| {
                format!("n={} again as id {} on a stream opened with Last-Event-ID {:?}", msg.n, e.id, resumed_from)
            });
        }
        if t.first_ns == 0 {
            t.first_ns = now;
        }
        t.last_ns = now;
    }
}

enum Ended {
    /// The worker changed phase: reconnect or wait.
    Asked,
    /// The stream ended or failed after it had started.
    Broken,
}

/// Runs subscriber `index` until the phase channel closes or its stream breaks.
pub async fn run(shared: Rc<Shared>, index: u32, path: String, mut phase: watch::Receiver<Phase>) {
    let mut seen = Seen::default();
    let mut last_id = String::new();
    loop {
        let current = *phase.borrow_and_update();
        let ended = match current {
            Phase::Offline => {
                if phase.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Phase::Online(generation) => {
                let stream = match open(&shared, index, generation, &path, &last_id).await {
                    Ok(s) => s,
                    Err(e) => return shared.fail(e),
                };
                shared.on_connected(generation);
                shared.open_streams.set(shared.open_streams.get() + 1);
                let ended = read(&shared, stream, &mut seen, &mut last_id, &mut phase).await;
                shared.open_streams.set(shared.open_streams.get() - 1);
                ended
            }
        };
        if let Ended::Broken = ended {
            shared.tally.borrow_mut().broken += 1;
            return;
        }
    }
}

fn source_addr(server: SocketAddr, index: u32, generation: u32) -> SocketAddr {
    let ip = match server.ip() {
        IpAddr::V4(_) => {
            let slot = (index / CLIENTS_PER_SOURCE + generation * SOURCES_PER_GENERATION) % 250;
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + slot as u8))
        }
        v6 => v6,
    };
    SocketAddr::new(ip, 0)
}

/// A stream whose 200 head has been read.
struct Opened {
    stream: TcpStream,
    chunked: bool,
    /// Body bytes that arrived with the head.
    buf: Vec<u8>,
}

/// Connects, sends the request and waits for a 200 head.
async fn open(shared: &Shared, index: u32, generation: u32, path: &str, last_id: &str) -> Result<Opened, String> {
    let _permit = shared.gate.acquire().await.map_err(|e| e.to_string())?;
    let server = shared.target.subscriber_addr(index);
    let socket = if server.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() };
    let socket = socket.map_err(|e| format!("socket: {e}"))?;
    let source = source_addr(server, index, generation);
    socket.bind(source).map_err(|e| format!("bind {source}: {e}"))?;
    let mut stream = socket.connect(server).await.map_err(|e| format!("connect: {e}"))?;
    let request = shared.target.subscribe_request(server, path, last_id);
    stream.write_all(&request).await.map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(READ_BUF);
    loop {
        let n = stream.read_buf(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before the response head".into());
        }
        if let Some((head, len)) = parse_head(&buf)? {
            if head.status != 200 {
                let body = String::from_utf8_lossy(&buf[len..]);
                return Err(format!("status {}: {}", head.status, body.trim()));
            }
            buf.drain(..len);
            return Ok(Opened { stream, chunked: head.chunked, buf });
        }
        if buf.len() >= READ_BUF {
            return Err("response head too large".into());
        }
    }
}

async fn read(
    shared: &Shared,
    opened: Opened,
    seen: &mut Seen,
    last_id: &mut String,
    phase: &mut watch::Receiver<Phase>,
) -> Ended {
    let Opened { mut stream, chunked, mut buf } = opened;
    let mut chunked = chunked.then(Chunked::default);
    let mut parser = Parser::default();
    let resumed_from = last_id.clone();
    let mut on_event = |e: Event<'_>| shared.on_message(&e, &resumed_from, seen);
    let mut feed = |bytes: &[u8], parser: &mut Parser| -> Result<bool, String> {
        match chunked.as_mut() {
            Some(c) => c.decode(bytes, &mut |b| parser.feed(b, &mut on_event)),
            None => {
                parser.feed(bytes, &mut on_event);
                Ok(false)
            }
        }
    };
    let mut ended = match feed(&buf, &mut parser) {
        Ok(false) => None,
        _ => Some(Ended::Broken),
    };
    buf.resize(READ_BUF, 0);
    while ended.is_none() {
        tokio::select! {
            r = stream.read(&mut buf) => {
                ended = match r {
                    Ok(0) | Err(_) => Some(Ended::Broken),
                    Ok(n) => match feed(&buf[..n], &mut parser) {
                        Ok(false) => None,
                        _ => Some(Ended::Broken),
                    },
                };
            }
            _ = phase.changed() => ended = Some(Ended::Asked),
        }
    }
    if !parser.last_id().is_empty() {
        last_id.clear();
        last_id.push_str(parser.last_id());
    }
    ended.unwrap_or(Ended::Broken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_spread_and_move_per_generation() {
        let server: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(source_addr(server, 0, 0).ip().to_string(), "127.0.0.2");
        assert_eq!(source_addr(server, 18_999, 0).ip().to_string(), "127.0.0.20");
        assert_eq!(source_addr(server, 0, 1).ip().to_string(), "127.0.0.22");
        assert_eq!(source_addr(server, 0, 1).port(), 0);
    }
}
