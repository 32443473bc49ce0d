//! Hand-written attacker connections: a socket bound to a chosen loopback source address (so
//! that each attack family has addresses of its own), a request written as raw bytes, and the
//! status of the answer.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::http::parse_head;

/// Longest wait for the head of an answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers counted by status code, or by what went wrong instead (`error`).
pub type Statuses = BTreeMap<String, u64>;

pub fn count(statuses: &mut Statuses, outcome: &Result<u16, String>) {
    let key = match outcome {
        Ok(status) => status.to_string(),
        Err(_) => "error".to_string(),
    };
    *statuses.entry(key).or_default() += 1;
}

/// Source address `n` of attack family `family`: 127.<family>.x.y, away from the healthy
/// fleet's 127.0.0.x.
pub fn source(family: u8, n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, family, (n / 250 % 250) as u8, (n % 250) as u8 + 1))
}

/// Connects from `source`; `rcvbuf` shrinks the receive buffer (set before connecting, so that
/// the window the server sees is small too).
pub async fn connect(server: SocketAddr, source: IpAddr, rcvbuf: Option<u32>) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket.bind(SocketAddr::new(source, 0)).map_err(|e| format!("bind {source}: {e}"))?;
    if let Some(bytes) = rcvbuf {
        socket.set_recv_buffer_size(bytes).map_err(|e| format!("SO_RCVBUF: {e}"))?;
    }
    let stream = socket.connect(server).await.map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Writes `request` and reads until the answer's head is complete; returns its status.
pub async fn exchange(stream: &mut TcpStream, request: &[u8]) -> Result<u16, String> {
    stream.write_all(request).await.map_err(|e| format!("write: {e}"))?;
    read_status(stream).await
}

/// Reads an answer's head from `stream`; its status. A server that has not answered within
/// [`ANSWER_TIMEOUT`] counts as an error.
async fn read_status(stream: &mut TcpStream) -> Result<u16, String> {
    tokio::time::timeout(ANSWER_TIMEOUT, read_head(stream)).await.map_err(|_| "no answer".to_string())?
}

async fn read_head(stream: &mut TcpStream) -> Result<u16, String> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if stream.read_buf(&mut buf).await.map_err(|e| format!("read: {e}"))? == 0 {
            return Err("closed before an answer".into());
        }
        if let Some((head, _)) = parse_head(&buf)? {
            return Ok(head.status);
        }
        if buf.len() > 16 * 1024 {
            return Err("answer head too large".into());
        }
    }
}

/// Connects from `source`, sends `request`, and returns the status of the answer.
pub async fn one_shot(server: SocketAddr, source: IpAddr, request: &[u8]) -> Result<u16, String> {
    let mut stream = connect(server, source, None).await?;
    exchange(&mut stream, request).await
}

/// A subscription request for `path`, as a browser's EventSource sends it.
pub fn get(server: SocketAddr, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nAccept: text/event-stream\r\n\r\n").into_bytes()
}

/// A POST of `body` to `path`, authorized with `key`.
pub fn post(server: SocketAddr, path: &str, key: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {server}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_stay_off_the_fleet_addresses() {
        assert_eq!(source(10, 0).to_string(), "127.10.0.1");
        assert_eq!(source(10, 250).to_string(), "127.10.1.1");
        assert_eq!(source(13, 63).to_string(), "127.13.0.64");
    }

    #[test]
    fn post_announces_its_body() {
        let server: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let text = String::from_utf8(post(server, "/api/publish", "k", b"{}")).unwrap();
        assert!(text.starts_with("POST /api/publish HTTP/1.1\r\n"));
        assert!(text.contains("Authorization: Bearer k\r\n"));
        assert!(text.ends_with("Content-Length: 2\r\n\r\n{}"));
    }

    #[test]
    fn outcomes_counted_by_status() {
        let mut s = Statuses::new();
        count(&mut s, &Ok(401));
        count(&mut s, &Ok(401));
        count(&mut s, &Err("x".into()));
        assert_eq!(s.get("401"), Some(&2));
        assert_eq!(s.get("error"), Some(&1));
    }
}
