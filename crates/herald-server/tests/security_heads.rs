//! Attacks on request heads and framing: slowloris on both serving paths, requests pipelined or
//! smuggled behind a stream, and `Content-Length` with `Transfer-Encoding`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `head` one byte at a time, a byte every `pace`, and returns how many bytes went out
/// before the server closed the connection (or answered); `None` if the whole head was sent.
async fn trickle(addr: SocketAddr, head: &str, pace: Duration) -> Option<usize> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 256];
    for (sent, byte) in head.bytes().enumerate() {
        if stream.write_all(&[byte]).await.is_err() {
            return Some(sent);
        }
        // The attacker's pace, not synchronisation: the server acts between two bytes.
        tokio::select! {
            _ = stream.read(&mut buf) => return Some(sent + 1),
            () = tokio::time::sleep(pace) => {}
        }
    }
    None
}

#[tokio::test]
async fn a_request_head_must_arrive_whole_within_the_deadline_on_both_paths() {
    let mut config = config();
    config.head_timeout_secs = 1;
    let hub = TestHub::start(config).await;
    let pace = Duration::from_millis(150);
    // ~60 bytes at 150 ms each is 9 s: far past a 1 s deadline, however it is split.
    let stream = format!("GET /events?access_token={} HTTP/1.1\r\nHost: x\r\n\r\n", token("a", json!({})));
    let publish =
        "POST /api/publish HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    for (path, head) in [("the stream fast path", stream.as_str()), ("hyper", publish)] {
        let sent = trickle(hub.addr, head, pace).await;
        assert!(sent.is_some_and(|n| n < head.len()), "{path}: the server waited for the whole trickled head");
    }
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn requests_pipelined_or_smuggled_behind_a_stream_are_not_served() {
    let hub = TestHub::start(config()).await;
    let alice = token("alice", json!({}));
    // A kick pipelined behind the stream's head: the stream's connection serves the stream only.
    let kick =
        format!("DELETE /api/users/alice/connections HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\r\n");
    let head = format!("GET /events?access_token={alice} HTTP/1.1\r\nHost: x\r\n\r\n{kick}");
    let mut stream = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("herald.connected") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf)).await.expect("no herald.connected").unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let (status, sent) = publish(&hub.base, json!({"to": {"users": ["alice"]}, "event": "after", "data": "x"})).await;
    assert_eq!(status, 200, "{sent}");
    while !String::from_utf8_lossy(&seen).contains("event: after") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf)).await.expect("the stream was kicked").unwrap();
        assert!(n > 0, "the pipelined kick closed the stream: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert_eq!(String::from_utf8_lossy(&seen).matches("HTTP/1.1 ").count(), 1, "a second response was served");

    // A stream request that announces a body is refused, so its body is never taken for a request.
    for framing in ["Content-Length: 75\r\n", "Transfer-Encoding: chunked\r\n"] {
        let smuggled = format!("GET /events?access_token={alice} HTTP/1.1\r\nHost: x\r\n{framing}\r\n{kick}");
        let answer = raw_exchange(hub.addr, smuggled.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{framing}: {answer}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    }
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_not_a_way_to_smuggle_a_second_request() {
    let hub = TestHub::start(config()).await;
    let body = r#"{"to":{"all":true},"data":"a"}"#;
    let smuggled = format!("GET /api/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\r\n");
    let request = format!(
        "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n{smuggled}",
        body.len(),
        body.len()
    );
    let answer = raw_exchange(hub.addr, request.as_bytes()).await;
    assert!(answer.matches("HTTP/1.1 ").count() <= 1, "two responses on one smuggling request: {answer}");
    assert!(!answer.contains("\"users\""), "the smuggled request was served: {answer}");
    hub.shutdown().await.unwrap();
}
