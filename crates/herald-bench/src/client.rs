//! One light SSE subscriber: over plain HTTP/1.1 a TcpStream, a hand-written request, a 2 KiB
//! read buffer and the incremental parsers; over TLS or HTTP/2 (see `transport`) the same parsers
//! behind rustls or the h2 crate. Thousands of these run on one thread of a worker process.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::{watch, OnceCell, Semaphore};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::http::{parse_head, Chunked};
use crate::sse::{Event, Parser};
use crate::stats::{histogram_pairs, new_histogram, Seen, Tally};
use crate::targets::Target;
use crate::transport::{Transport, TransportArgs};

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

/// An HTTP/2 connection that several subscribers share, opened by the first of them.
type H2Conn = Rc<OnceCell<h2::client::SendRequest<Bytes>>>;

/// State of all clients of one worker (one thread, hence `Rc`/`RefCell`).
pub struct Shared {
    pub target: Target,
    transport: Transport,
    streams_per_conn: u32,
    tls: Option<TlsConnector>,
    /// HTTP/2 connections by server and group of `streams_per_conn` subscribers.
    h2: RefCell<HashMap<(SocketAddr, u32), H2Conn>>,
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
    pub fn new(target: Target, transport: &TransportArgs, connect_concurrency: usize) -> Result<Self, String> {
        Ok(Shared {
            target,
            transport: transport.transport,
            streams_per_conn: transport.streams_per_conn.max(1),
            tls: transport.connector()?,
            h2: RefCell::new(HashMap::new()),
            gate: Semaphore::new(connect_concurrency),
            failed: Cell::new(0),
            open_streams: Cell::new(0),
            first_error: RefCell::new(None),
            connected: RefCell::new(Vec::new()),
            tally: RefCell::new(Tally::default()),
            latency: RefCell::new(new_histogram()),
        })
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

/// Plain TCP or TLS, read and written alike.
trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

/// Where the body of an open stream comes from.
enum Source {
    /// HTTP/1.1; `early` says that `buf` holds body bytes that came with the head.
    H1 { io: Box<dyn Io>, buf: Vec<u8>, early: bool },
    /// One HTTP/2 stream; `chunk` keeps the last DATA frame's bytes while they are parsed.
    H2 { body: h2::RecvStream, chunk: Bytes },
}

impl Source {
    /// The next bytes of the body; `None` at its end or on an error. Cancel-safe.
    async fn next(&mut self) -> Option<&[u8]> {
        match self {
            Source::H1 { io, buf, early } => {
                if std::mem::take(early) && !buf.is_empty() {
                    return Some(buf);
                }
                buf.resize(READ_BUF, 0);
                match io.read(buf).await {
                    Ok(0) | Err(_) => None,
                    Ok(n) => Some(&buf[..n]),
                }
            }
            Source::H2 { body, chunk } => {
                *chunk = body.data().await?.ok()?;
                // Reading is consuming: give the window back so the server may send more.
                body.flow_control().release_capacity(chunk.len()).ok()?;
                Some(chunk)
            }
        }
    }
}

/// A stream whose 200 head has been read.
struct Opened {
    source: Source,
    chunked: bool,
}

/// Opens subscriber `index`'s stream over the worker's transport.
async fn open(shared: &Shared, index: u32, generation: u32, path: &str, last_id: &str) -> Result<Opened, String> {
    let _permit = shared.gate.acquire().await.map_err(|e| e.to_string())?;
    let server = shared.target.subscriber_addr(index);
    if shared.transport.is_h2() {
        let group = index / shared.streams_per_conn;
        let conn = shared.h2.borrow_mut().entry((server, group)).or_default().clone();
        let sender = conn.get_or_try_init(|| connect_h2(shared, server, index, generation)).await?;
        let scheme = if shared.transport.is_tls() { "https" } else { "http" };
        return open_h2(sender.clone(), &format!("{scheme}://{server}{path}"), last_id).await;
    }
    let io = connect(shared, server, index, generation).await?;
    let request = shared.target.subscribe_request(server, path, last_id);
    open_h1(io, &request).await
}

/// A TCP connection from subscriber `index`'s source address, wrapped in TLS when the transport
/// says so.
async fn connect(shared: &Shared, server: SocketAddr, index: u32, generation: u32) -> Result<Box<dyn Io>, String> {
    let socket = if server.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() };
    let socket = socket.map_err(|e| format!("socket: {e}"))?;
    let source = source_addr(server, index, generation);
    socket.bind(source).map_err(|e| format!("bind {source}: {e}"))?;
    let stream = socket.connect(server).await.map_err(|e| format!("connect: {e}"))?;
    let Some(tls) = &shared.tls else { return Ok(Box::new(stream)) };
    let tls = tls.connect(ServerName::IpAddress(server.ip().into()), stream).await;
    let tls = tls.map_err(|e| format!("TLS: {e}"))?;
    let alpn = tls.get_ref().1.alpn_protocol();
    let wanted: &[u8] = if shared.transport.is_h2() { b"h2" } else { b"http/1.1" };
    if alpn != Some(wanted) {
        let chose = String::from_utf8_lossy(alpn.unwrap_or(b"nothing"));
        return Err(format!("ALPN chose {chose}, not {}", String::from_utf8_lossy(wanted)));
    }
    Ok(Box::new(tls))
}

/// Sends the request and waits for a 200 head.
async fn open_h1(mut io: Box<dyn Io>, request: &[u8]) -> Result<Opened, String> {
    io.write_all(request).await.map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(READ_BUF);
    loop {
        let n = io.read_buf(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before the response head".into());
        }
        if let Some((head, len)) = parse_head(&buf)? {
            if head.status != 200 {
                let body = String::from_utf8_lossy(&buf[len..]);
                return Err(format!("status {}: {}", head.status, body.trim()));
            }
            buf.drain(..len);
            return Ok(Opened { source: Source::H1 { io, buf, early: true }, chunked: head.chunked });
        }
        if buf.len() >= READ_BUF {
            return Err("response head too large".into());
        }
    }
}

/// Opens the HTTP/2 connection a group of subscribers shares; its driver runs as a task of its
/// own until the connection ends.
async fn connect_h2(
    shared: &Shared,
    server: SocketAddr,
    index: u32,
    generation: u32,
) -> Result<h2::client::SendRequest<Bytes>, String> {
    let io = connect(shared, server, index, generation).await?;
    let (sender, conn) = h2::client::handshake(io).await.map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Opens one stream on a shared HTTP/2 connection and waits for a 200 response.
async fn open_h2(sender: h2::client::SendRequest<Bytes>, uri: &str, last_id: &str) -> Result<Opened, String> {
    let mut sender = sender.ready().await.map_err(|e| format!("HTTP/2: {e}"))?;
    let mut request = http::Request::get(uri).header("accept", "text/event-stream");
    if !last_id.is_empty() {
        request = request.header("last-event-id", last_id);
    }
    let request = request.body(()).map_err(|e| e.to_string())?;
    let (response, _) = sender.send_request(request, true).map_err(|e| format!("HTTP/2 request: {e}"))?;
    let response = response.await.map_err(|e| format!("HTTP/2 response: {e}"))?;
    let status = response.status();
    let mut body = response.into_body();
    if status != http::StatusCode::OK {
        let text = match body.data().await {
            Some(Ok(b)) => String::from_utf8_lossy(&b).trim().to_string(),
            _ => String::new(),
        };
        return Err(format!("status {}: {text}", status.as_u16()));
    }
    Ok(Opened { source: Source::H2 { body, chunk: Bytes::new() }, chunked: false })
}

async fn read(
    shared: &Shared,
    opened: Opened,
    seen: &mut Seen,
    last_id: &mut String,
    phase: &mut watch::Receiver<Phase>,
) -> Ended {
    let Opened { mut source, chunked } = opened;
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
    let mut ended = None;
    while ended.is_none() {
        tokio::select! {
            r = source.next() => {
                ended = match r.map(|bytes| feed(bytes, &mut parser)) {
                    Some(Ok(false)) => None,
                    _ => Some(Ended::Broken),
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
