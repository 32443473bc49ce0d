//! The lean path for `POST /api/publish` over kept-alive HTTP/1.1 (plain or TLS).
//!
//! A notification to one user is one HTTP call, and most of what that call costs through hyper
//! and the router is machinery around a few hundred bytes: a body channel, a service stack, a
//! header map. Here a connection that opens with a publish is served by a loop of its own: the
//! head is parsed in place, the whole body read into the connection's buffer, and the answer
//! built by the same handler code (`http::publish_raw`) and written in one call. Whatever is
//! not a plain publish (another path, a chunked body, `Expect`, an upgrade, a body over the
//! limit) goes to hyper with the bytes read so far, for the rest of the connection.

use std::io;
use std::time::SystemTime;

use axum::response::{IntoResponse, Response};
use bytes::{Buf, BytesMut};
use http_body_util::BodyExt;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::direct::MAX_HEAD;
use super::rewind::Rewind;
use crate::http::deadline::BodyTimeout;
use crate::http::{api_app, publish_raw, timeout_problem};
use crate::hub::Hub;

/// A publish head, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Head {
    /// Bytes of the head, blank line included.
    pub(crate) len: usize,
    pub(crate) body_len: usize,
    /// The bearer credential of its `Authorization`, if any.
    pub(crate) key: Option<String>,
    /// The client asked to close after this answer.
    pub(crate) close: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    Publish(Head),
    Partial,
    /// Anything else, for hyper.
    Other,
}

/// Serves publishes until the client closes, asks to close, or sends what only hyper serves:
/// then the connection is returned with everything read so far.
pub(super) async fn serve<T>(mut socket: T, mut buf: BytesMut, hub: &Hub) -> io::Result<Option<Rewind<T>>>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let limit = crate::http::body_limit(hub);
    // The last key this connection proved, and its app: a backend sends the same key every
    // time, and this spares each publish the key's digest. Compared in constant time all the same.
    let mut proven: Option<(String, String)> = None;
    loop {
        if buf.is_empty() {
            // Idle between requests: the shutdown closes the connection here, never mid-answer.
            tokio::select! {
                read = socket.read_buf(&mut buf) => if read? == 0 { return Ok(None) },
                () = hub.shutting_down() => return Ok(None),
            }
        }
        let head_deadline = Instant::now() + hub.config().head_timeout();
        let head = loop {
            match parse(&buf, limit) {
                Parsed::Publish(head) => break head,
                Parsed::Other => return Ok(Some(Rewind::new(buf.freeze(), socket))),
                Parsed::Partial => {
                    let read = tokio::time::timeout_at(head_deadline, socket.read_buf(&mut buf))
                        .await
                        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request head timed out"))??;
                    if read == 0 {
                        return Ok(None);
                    }
                }
            }
        };
        let whole = head.len + head.body_len;
        let key = head.key.as_deref();
        let known = proven
            .as_ref()
            .is_some_and(|(proven, _)| key.is_some_and(|k| bool::from(proven.as_bytes().ct_eq(k.as_bytes()))));
        if !known {
            match api_app(hub, key) {
                Ok(app) => proven = key.map(|k| (k.to_owned(), app)),
                // Refused before the body is read: a client without a valid key never has one
                // buffered. A body already here is skipped and the connection kept.
                Err(refusal) => {
                    let complete = buf.len() >= whole;
                    socket.write_all(&serialize(refusal.into_response(), head.close || !complete).await).await?;
                    if head.close || !complete {
                        return Ok(None);
                    }
                    buf.advance(whole);
                    continue;
                }
            }
        }
        let body_deadline = Instant::now() + hub.config().body_timeout();
        while buf.len() < whole {
            buf.reserve(whole - buf.len());
            match tokio::time::timeout_at(body_deadline, socket.read_buf(&mut buf)).await {
                Ok(Ok(0)) => return Ok(None),
                Ok(read) => read.map(drop)?,
                Err(_) => {
                    let answer = timeout_problem(&BodyTimeout(hub.config().body_timeout_secs));
                    socket.write_all(&serialize(answer.into_response(), true).await).await?;
                    return Ok(None);
                }
            }
        }
        let app = &proven.as_ref().expect("a proven key").1;
        let answer = publish_raw(hub, app, &buf[head.len..whole]).await;
        buf.advance(whole);
        socket.write_all(&serialize(answer, head.close).await).await?;
        if head.close {
            socket.shutdown().await?;
            return Ok(None);
        }
    }
}

/// Parses the head at the start of `buf`, if it is a publish this path serves.
pub(crate) fn parse(buf: &[u8], limit: usize) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Parsed::Partial,
        _ => return Parsed::Other,
    };
    let path = request.path.unwrap_or("");
    let route = path.split_once('?').map_or(path, |(route, _)| route);
    if request.method != Some("POST") || route != "/api/publish" || request.version != Some(1) {
        return Parsed::Other;
    }
    let (mut body_len, mut key, mut close) = (None, None, false);
    for header in request.headers.iter() {
        // By length first: most headers are none of these, and are passed over in one compare.
        let is = |name: &str| header.name.len() == name.len() && header.name.eq_ignore_ascii_case(name);
        if is("content-length") {
            let digits = std::str::from_utf8(header.value).ok().filter(|v| v.bytes().all(|b| b.is_ascii_digit()));
            match (body_len, digits.and_then(|v| v.parse::<usize>().ok())) {
                (None, Some(n)) if n <= limit => body_len = Some(n),
                // Repeated, malformed or over the limit: hyper answers these.
                _ => return Parsed::Other,
            }
        } else if is("transfer-encoding") || is("expect") || is("upgrade") {
            return Parsed::Other;
        } else if is("connection") {
            close |= header.value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if is("authorization") && key.is_none() {
            // As `HeaderValue::to_str` reads it: visible ASCII only, else no credential.
            let value = header.value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
            key = Some(std::str::from_utf8(header.value).ok().filter(|_| value).and_then(crate::http::bearer_of));
        }
    }
    // Without `Content-Length` (or `Transfer-Encoding`) a request has no body.
    let body_len = body_len.unwrap_or(0);
    Parsed::Publish(Head { len, body_len, key: key.flatten().map(str::to_owned), close })
}

/// The answer on the wire: status line, the handler's headers, `content-length` and `date`
/// as hyper would add them, and the body, in one buffer.
async fn serialize(response: Response, close: bool) -> Vec<u8> {
    let (parts, body) = response.into_parts();
    // The handler's bodies are whole already; collecting them does not wait.
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let status = parts.status;
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\ndate: ", body.len()).as_bytes());
    date(|date| out.extend_from_slice(date));
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&body);
    out
}

/// The `Date` value of this second, formatted once a second per thread, as hyper does.
fn date(write: impl FnOnce(&[u8])) {
    thread_local! {
        static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, date)| {
        if *at != second {
            *at = second;
            *date = httpdate::fmt_http_date(now);
        }
        write(date.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(key: Option<&str>, body_len: usize, close: bool, len: usize) -> Parsed {
        Parsed::Publish(Head { len, body_len, key: key.map(str::to_owned), close })
    }

    #[test]
    fn parses_only_what_it_serves() {
        let plain = b"POST /api/publish HTTP/1.1\r\nAuthorization: Bearer k1\r\nContent-Length: 12\r\n\r\n";
        assert_eq!(parse(plain, 100), head(Some("k1"), 12, false, plain.len()));
        let close = b"POST /api/publish?x=1 HTTP/1.1\r\nconnection: keep-alive, Close\r\n\r\n";
        assert_eq!(parse(close, 100), head(None, 0, true, close.len()));
        assert_eq!(parse(b"POST /api/publish HTTP/1.1\r\nAuthorization: Bearer", 100), Parsed::Partial);
        for other in [
            &b"POST /api/publish/batch HTTP/1.1\r\n\r\n"[..],
            b"GET /api/publish HTTP/1.1\r\n\r\n",
            b"POST /api/publish HTTP/1.0\r\n\r\n",
            b"POST /api/publish HTTP/1.1\r\ncontent-length: 101\r\n\r\n",
            b"POST /api/publish HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n",
            b"POST /api/publish HTTP/1.1\r\ncontent-length: +1\r\n\r\n",
            b"POST /api/publish HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            b"POST /api/publish HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\n",
            b"POST /api/publish HTTP/1.1\r\nupgrade: h2c\r\n\r\n",
            b"POST /api/publish HTTP/1.1\r\nbad header\r\n\r\n",
        ] {
            assert_eq!(parse(other, 100), Parsed::Other, "{}", String::from_utf8_lossy(other));
        }
        // A credential that is not visible ASCII is no credential, as through hyper.
        let odd = b"POST /api/publish HTTP/1.1\r\nauthorization: Bearer k\xe9\r\n\r\n";
        assert_eq!(parse(odd, 100), head(None, 0, false, odd.len()));
    }
}
