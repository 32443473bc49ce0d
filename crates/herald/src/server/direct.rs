//! The lean path for `GET /events` over plain HTTP/1.1.
//!
//! An idle stream is most of what a push hub holds, so its cost decides how many fit on a box.
//! Through hyper, each one keeps an 8 KiB read buffer and a write buffer for its whole life.
//! Here the request head is read into a small buffer that is dropped once parsed, and the
//! stream keeps only its socket, its queue and this task: the response is written raw (no
//! chunked framing, delimited by the connection's close), each wakeup writing everything
//! queued in one call. Any other request — and HTTP/2, TLS, HTTP/1.0 — goes to hyper with the
//! bytes already read replayed first.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use bytes::BytesMut;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::rewind::Rewind;
use crate::http::{cors_allows, subscriber, Problem};
use crate::hub::{Hub, StreamBody};

const PREFIX: &[u8] = b"GET /events";
/// A head larger than this is left to hyper, which answers it properly.
const MAX_HEAD: usize = 16 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the connection here if it is a `GET /events`; otherwise returns it, with what was
/// read, for hyper.
pub(super) async fn events_or_rewind(
    mut stream: TcpStream,
    hub: &Hub,
    remote: SocketAddr,
    kill: &CancellationToken,
) -> io::Result<Option<Rewind<TcpStream>>> {
    let mut buf = BytesMut::with_capacity(1024);
    let parts = loop {
        let read = tokio::time::timeout(HEAD_TIMEOUT, stream.read_buf(&mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request head timed out"))??;
        if read == 0 {
            return Ok(None);
        }
        match is_events(&buf) {
            None => continue,
            Some(false) => return Ok(Some(Rewind::new(buf.freeze(), stream))),
            Some(true) => {}
        }
        match parse_head(&buf, remote) {
            Head::Complete(parts) => break parts,
            Head::Partial if buf.len() < MAX_HEAD => continue,
            Head::Partial | Head::Unsupported => return Ok(Some(Rewind::new(buf.freeze(), stream))),
        }
    };
    drop(buf);
    let origin = parts.headers.get(http::header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_owned);
    let cors = origin.filter(|o| cors_allows(hub, o)).map_or(String::new(), |o| {
        format!("access-control-allow-origin: {o}\r\naccess-control-allow-credentials: true\r\nvary: origin\r\n")
    });
    let (app, request) = subscriber(&parts, hub);
    drop(parts);
    match hub.subscribe(&app, request, Some(kill.clone())).await {
        Ok(body) => stream_events(stream, body, &cors).await,
        Err(error) => write_problem(stream, Problem::from(error), &cors).await,
    }
    .map(|()| None)
}

/// Whether the request line is `GET /events` (`None`: not enough bytes yet to tell).
fn is_events(buf: &[u8]) -> Option<bool> {
    let seen = buf.len().min(PREFIX.len());
    if buf[..seen] != PREFIX[..seen] {
        return Some(false);
    }
    buf.get(PREFIX.len()).map(|b| matches!(b, b' ' | b'?'))
}

enum Head {
    Complete(Box<http::request::Parts>),
    Partial,
    Unsupported,
}

fn parse_head(buf: &[u8], remote: SocketAddr) -> Head {
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

/// Writes the stream until it ends or the client goes away. Between writes the task waits on
/// its queue and on the socket becoming readable, which is how a client's close is noticed
/// without a heartbeat.
async fn stream_events(mut stream: TcpStream, body: StreamBody, cors: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nx-accel-buffering: no\r\n\
         connection: close\r\n{cors}\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let mut body = std::pin::pin!(body);
    loop {
        tokio::select! {
            frame = body.frame() => match frame.map(|f| f.map(|f| f.into_data())) {
                Some(Ok(Ok(data))) => stream.write_all(&data).await?,
                _ => return stream.shutdown().await,
            },
            readable = stream.readable() => {
                readable?;
                match stream.try_read(&mut [0u8; 64]) {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

async fn write_problem(mut stream: TcpStream, problem: Problem, cors: &str) -> io::Result<()> {
    let response = problem.into_response();
    let status = response.status();
    let auth = response.headers().get(http::header::WWW_AUTHENTICATE).is_some();
    let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n{}{cors}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        if auth { "www-authenticate: Bearer\r\n" } else { "" },
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}
