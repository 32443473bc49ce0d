//! The lean path for `GET /events` (and Mercure's `GET /.well-known/mercure`) over HTTP/1.1,
//! plain or over TLS.
//!
//! An idle stream is most of what a push hub holds, so its cost decides how many fit on a box.
//! Through hyper, each one keeps a read buffer of 8 to 16 KiB and a write buffer for its whole
//! life. Here the request head is read into a small buffer that is dropped once parsed, and the
//! stream keeps only its transport (the socket, or the socket and its TLS session), its queue and
//! a small task of its own: the response is written raw (no chunked framing, delimited by the
//! connection's close), each wakeup writing everything queued in one call. Any other request —
//! and HTTP/2, HTTP/1.0 — goes to hyper with the bytes already read replayed first.

use std::io;
use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use std::pin::Pin;
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::rewind::Rewind;
use crate::http::{cors, mercure_stream, no_body, stream_head, subscriber, Problem};
use crate::hub::{Hub, StreamBody};

const PREFIX: &[u8] = b"GET /events";

/// Which lean path a request head asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Events,
    Mercure,
    Publish,
}

/// The request lines served here, and the path serving each.
const LEAN: [(&[u8], Kind); 3] =
    [(PREFIX, Kind::Events), (b"GET /.well-known/mercure", Kind::Mercure), (b"POST /api/publish", Kind::Publish)];
/// A head larger than this is left to hyper, which answers it properly.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// What the first request of a connection turned out to be.
pub(super) enum Accepted<T> {
    /// A subscribed stream, ready to run in a task of its own.
    Stream(Stream<T>),
    /// A connection that opened with a publish, its head read (`server::publish`).
    Publish(T, BytesMut),
    /// Anything else: hyper's, with the bytes read so far.
    Other(Rewind<T>),
    /// Answered (a refused subscription) or closed.
    Done,
}

/// Reads the first request head; subscribes it if it is a `GET /events`.
pub(super) async fn accept<T>(stream: T, hub: &Hub, remote: SocketAddr) -> io::Result<Accepted<T>>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + hub.config().head_timeout();
    let (socket, parts, kind) = match read_head(stream, remote, deadline).await? {
        Read::Events(socket, parts, kind) => (socket, parts, kind),
        Read::Publish(socket, buf) => return Ok(Accepted::Publish(socket, buf)),
        Read::Other(rewound) => return Ok(Accepted::Other(rewound)),
        Read::Closed => return Ok(Accepted::Done),
    };
    if kind == Kind::Mercure {
        // The same answer as the hyper path's (`http::mercure`), CORS added here as its layer would.
        let origin = parts.headers.get(http::header::ORIGIN).cloned();
        return match mercure_stream(hub, &parts, None).await {
            Ok((app, body, head)) => {
                let mut head = head;
                head.headers_mut().extend(cors::mercure_headers(hub, &app, origin.as_ref()));
                Ok(Accepted::Stream(Stream { socket, body, head: serialize_head(&head) }))
            }
            Err((app, problem)) => {
                let mut response = problem.into_response();
                response.headers_mut().extend(cors::mercure_headers(hub, &app, origin.as_ref()));
                write_problem(socket, response).await.map(|()| Accepted::Done)
            }
        };
    }
    let origin = parts.headers.get(http::header::ORIGIN).cloned();
    let (app, request) = subscriber(&parts, hub);
    let body_refused = no_body(&parts);
    drop(parts);
    // A refusal carries the same CORS headers as the hyper path's, so the page can read why.
    let refusal = |problem: Problem| {
        let mut response = problem.into_response();
        response.headers_mut().extend(cors::headers(hub, Some(&app), origin.as_ref()));
        response
    };
    if let Err(problem) = body_refused {
        return write_problem(socket, refusal(problem)).await.map(|()| Accepted::Done);
    }
    // No kill switch: a direct stream learns of its own overflow from its queue.
    match hub.subscribe(&app, request, None).await {
        Ok(body) => {
            let head = serialize_head(&stream_head(hub, &app, origin.as_ref()));
            Ok(Accepted::Stream(Stream { socket, body, head }))
        }
        Err(error) => write_problem(socket, refusal(Problem::from(error))).await.map(|()| Accepted::Done),
    }
}

/// An HTTP/1.1 head for `response`: its status and headers, and `connection: close`, since
/// the body that follows is delimited by the close.
fn serialize_head<B>(response: &http::Response<B>) -> Vec<u8> {
    let status = response.status();
    let mut head = format!("HTTP/1.1 {} {}\r\n", status.as_u16(), status.canonical_reason().unwrap_or("")).into_bytes();
    for (name, value) in response.headers() {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    head
}

enum Read<T> {
    Events(T, Box<http::request::Parts>, Kind),
    Publish(T, BytesMut),
    Other(Rewind<T>),
    Closed,
}

/// Reads until the request head is complete, or until it is clear this is not a stream. The
/// whole head must arrive by `deadline`, however it is split: a client trickling one byte at a
/// time does not hold the socket past it. Later requests on a kept-alive connection get the
/// same deadline from hyper's `header_read_timeout`.
async fn read_head<T: AsyncRead + Unpin>(
    mut stream: T,
    remote: SocketAddr,
    deadline: tokio::time::Instant,
) -> io::Result<Read<T>> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request head timed out"))??;
        if read == 0 {
            return Ok(Read::Closed);
        }
        let kind = match kind_of(&buf) {
            Some(Some(kind)) => kind,
            // The whole head is read here too, so that the deadline covers it, then replayed.
            Some(None) if head_is_partial(&buf) && buf.len() < MAX_HEAD => continue,
            Some(None) => return Ok(Read::Other(Rewind::new(buf.freeze(), stream))),
            None => continue,
        };
        if kind == Kind::Publish {
            match head_is_partial(&buf) && buf.len() < MAX_HEAD {
                true => continue,
                false => return Ok(Read::Publish(stream, buf)),
            }
        }
        match parse_head(&buf, remote) {
            Head::Complete(parts) => return Ok(Read::Events(stream, parts, kind)),
            Head::Partial if buf.len() < MAX_HEAD => continue,
            Head::Partial | Head::Unsupported => return Ok(Read::Other(Rewind::new(buf.freeze(), stream))),
        }
    }
}

/// Which lean path the request line asks for (`Some(None)`: none; `None`: not enough bytes
/// yet to tell).
pub(crate) fn kind_of(buf: &[u8]) -> Option<Option<Kind>> {
    let mut undecided = false;
    for (prefix, kind) in LEAN {
        match is_prefixed(buf, prefix) {
            Some(true) => return Some(Some(kind)),
            Some(false) => {}
            None => undecided = true,
        }
    }
    (!undecided).then_some(None)
}

/// Whether the request line is `prefix` followed by the end of the path or a query.
fn is_prefixed(buf: &[u8], prefix: &[u8]) -> Option<bool> {
    let seen = buf.len().min(prefix.len());
    if buf[..seen] != prefix[..seen] {
        return Some(false);
    }
    buf.get(prefix.len()).map(|b| matches!(b, b' ' | b'?'))
}

/// Whether `buf` is the start of a request head that is not complete yet (a malformed one is
/// left for hyper to answer).
pub(crate) fn head_is_partial(buf: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    matches!(httparse::Request::new(&mut headers).parse(buf), Ok(httparse::Status::Partial))
}

pub(crate) enum Head {
    Complete(Box<http::request::Parts>),
    Partial,
    Unsupported,
}

pub(crate) fn parse_head(buf: &[u8], remote: SocketAddr) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(_)) if request.version == Some(1) => {}
        Ok(httparse::Status::Partial) => return Head::Partial,
        _ => return Head::Unsupported,
    }
    let mut builder = http::Request::get(request.path.unwrap_or("/")).version(http::Version::HTTP_11);
    for header in request.headers.iter() {
        builder = builder.header(header.name, header.value);
    }
    match builder.body(()) {
        Ok(request) => {
            let (mut parts, ()) = request.into_parts();
            parts.extensions.insert(ConnectInfo(remote));
            Head::Complete(Box::new(parts))
        }
        Err(_) => Head::Unsupported,
    }
}

/// A subscribed stream: the socket, the queue, and the response head still to write. This is
/// all an idle stream holds, so it runs as a task of its own, apart from the larger future that
/// read and subscribed it.
pub(super) struct Stream<T> {
    socket: T,
    body: StreamBody,
    head: Vec<u8>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Stream<T> {
    /// Writes the stream until it ends, its client goes away, or its queue overflows. Between
    /// writes the task waits on its queue and on the socket becoming readable, which is how a
    /// client's close is noticed without a heartbeat. Every wakeup writes all that is queued.
    ///
    /// The stream is moved into the future once and borrowed from there: an `async fn` taking
    /// `self` by value keeps a second copy of it in the task (rustc moves the argument into a
    /// local), and destructuring it a third.
    #[allow(clippy::manual_async_fn)]
    pub(super) fn run(mut self) -> impl std::future::Future<Output = ()> {
        async move {
            if let Err(error) = self.write().await {
                tracing::debug!(%error, "Stream ended with an error.");
            }
        }
    }

    /// One hand-written poll loop rather than nested `select!`s: the state that lives as long as
    /// the stream is just the socket, the queue handle and the bytes being written.
    async fn write(&mut self) -> io::Result<()> {
        let Self { socket, body, head } = self;
        // The connect frames are already queued: they go out with the head in one write.
        if let Some(Ok(Ok(data))) = body.frame().await.map(|f| f.map(|f| f.into_data())) {
            head.extend_from_slice(&data);
        }
        let mut pending = Bytes::from(std::mem::take(head));
        let ended = std::future::poll_fn(|cx| loop {
            if !pending.is_empty() {
                match Pin::new(&mut *socket).poll_write(cx, &pending) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) if n == pending.len() => pending = Bytes::new(), // release the buffer
                    Poll::Ready(Ok(n)) => pending.advance(n),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    // A client that stopped reading blocks the write; its overflow ends it.
                    Poll::Pending => return body.poll_aborted(cx).map(|()| Ok(false)),
                }
                continue;
            }
            // TLS may keep records the socket did not take (a no-op for a plain socket).
            match Pin::new(&mut *socket).poll_flush(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return body.poll_aborted(cx).map(|()| Ok(false)),
            }
            match body.poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    pending = bytes;
                    continue;
                }
                Poll::Ready(Some(Err(_))) => return Poll::Ready(Ok(false)),
                Poll::Ready(None) => return Poll::Ready(Ok(true)),
                Poll::Pending => {}
            }
            // Nothing to write: notice a client that closed its side (what it sends is ignored).
            let mut scratch = [0u8; 64];
            let mut scratch = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *socket).poll_read(cx, &mut scratch) {
                Poll::Ready(Ok(())) if scratch.filled().is_empty() => return Poll::Ready(Ok(false)),
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        })
        .await?;
        if ended {
            socket.shutdown().await?;
        }
        Ok(())
    }
}

async fn write_problem<T: AsyncWrite + Unpin>(mut stream: T, response: Response) -> io::Result<()> {
    let (mut head, body) = response.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    head.headers.insert(http::header::CONTENT_LENGTH, body.len().into());
    stream.write_all(&serialize_head(&http::Response::from_parts(head, ()))).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}
