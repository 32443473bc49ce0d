//! `POST /api/publish` on the wire: one kept-alive HTTP/1.1 connection carrying many publishes,
//! pipelined ones, split ones, refused ones and other requests in between. The server answers
//! publishes on a lean path of its own (`server::publish`) and everything else through hyper,
//! so these pin down that a client cannot tell the two apart.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer read off a kept-alive connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A raw HTTP/1.1 client on one connection, reading answers delimited by `content-length`.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    async fn open(hub: &TestHub) -> Wire {
        Wire { stream: TcpStream::connect(hub.addr).await.unwrap(), buf: Vec::new() }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads the next whole answer, within [`WAIT`].
    async fn answer(&mut self) -> Answer {
        tokio::time::timeout(WAIT, self.read_answer()).await.expect("no answer in time")
    }

    async fn read_answer(&mut self) -> Answer {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
                let mut lines = head.split("\r\n");
                let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
                let headers: Vec<(String, String)> = lines
                    .map(|l| l.split_once(':').unwrap())
                    .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map(|(_, v)| v.parse().unwrap())
                    .expect("every answer has a content-length");
                if self.buf.len() >= end + 4 + length {
                    let body = serde_json::from_slice(&self.buf[end + 4..end + 4 + length]).unwrap_or(Value::Null);
                    self.buf.drain(..end + 4 + length);
                    return Answer { status, headers, body };
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "the connection closed before a whole answer; have {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whether the server closes the connection (reads to the end) within [`WAIT`].
    async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        tokio::time::timeout(WAIT, self.stream.read_to_end(&mut rest)).await.is_ok_and(|r| r.is_ok())
    }
}

fn publish_request(key: &str, body: &str, extra: &str) -> Vec<u8> {
    format!(
        "POST /api/publish HTTP/1.1\r\nhost: herald\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn to_user(data: &str) -> String {
    json!({"to": {"users": ["42"]}, "data": data}).to_string()
}

#[tokio::test]
async fn many_publishes_share_one_connection_in_order() {
    let hub = TestHub::start(config()).await;
    let (mut sse, _) = Sse::connect(&hub.base, &format!("access_token={}", token("42", json!({})))).await;
    let mut wire = Wire::open(&hub).await;

    let first = publish_request(API_KEY, &to_user("one"), "");
    wire.send(&first).await;
    let answer = wire.answer().await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert!(answer.header("date").is_some(), "an origin server with a clock sends Date: {answer:?}");
    assert_eq!(answer.body["delivered"], 1, "{answer:?}");
    assert!(answer.body["id"].is_string(), "{answer:?}");

    // Two requests in one write (pipelined): two answers, in order.
    let mut two = publish_request(API_KEY, &to_user("two"), "");
    two.extend(publish_request(API_KEY, &to_user("three"), ""));
    wire.send(&two).await;
    let (a, b) = (wire.answer().await, wire.answer().await);
    assert_eq!((a.status, b.status), (200, 200), "{a:?} {b:?}");
    assert_ne!(a.body["id"], b.body["id"]);

    // A request split mid-head and mid-body still makes one publish.
    let four = publish_request(API_KEY, &to_user("four"), "");
    for part in [&four[..10], &four[10..four.len() - 5], &four[four.len() - 5..]] {
        wire.send(part).await;
        tokio::task::yield_now().await;
    }
    assert_eq!(wire.answer().await.status, 200);

    for data in ["one", "two", "three", "four"] {
        assert_eq!(sse.next_message().await.data, data);
    }
}

#[tokio::test]
async fn refusals_are_problems_and_the_connection_stays_usable() {
    let mut config = config();
    config.app.limits.max_payload_bytes = 64;
    let hub = TestHub::start(config).await;
    let (mut sse, _) = Sse::connect(&hub.base, &format!("access_token={}", token("42", json!({})))).await;
    let mut wire = Wire::open(&hub).await;
    // A connection that proved a key is still refused another one.
    wire.send(&publish_request(API_KEY, &to_user("before"), "")).await;
    assert_eq!(wire.answer().await.status, 200);

    let cases: [(Vec<u8>, u16, &str); 5] = [
        (publish_request("wrong-key-0123456789", &to_user("x"), ""), 401, "api-key-invalid"),
        (b"POST /api/publish HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\n\r\n{}".to_vec(), 401, "api-key-missing"),
        (publish_request(API_KEY, "{\"to\":", ""), 400, "invalid"),
        (
            publish_request(API_KEY, &json!({"to": {"users": ["42"]}, "data": "x", "extra": 1}).to_string(), ""),
            400,
            "invalid",
        ),
        (publish_request(API_KEY, &to_user(&"y".repeat(100)), ""), 413, "payload-too-large"),
    ];
    for (request, status, kind) in cases {
        wire.send(&request).await;
        let answer = wire.answer().await;
        assert_eq!(answer.status, status, "{answer:?}");
        assert_eq!(answer.header("content-type"), Some("application/problem+json"), "{answer:?}");
        assert!(answer.body["type"].as_str().unwrap().contains(kind), "{answer:?}");
        assert!(!answer.body["detail"].as_str().unwrap().is_empty(), "{answer:?}");
    }

    // Another endpoint on the same connection, then a publish again.
    wire.send(b"GET /healthz HTTP/1.1\r\nhost: h\r\n\r\n").await;
    assert_eq!(wire.answer().await.status, 200);
    wire.send(&publish_request(API_KEY, &to_user("after"), "")).await;
    assert_eq!(wire.answer().await.status, 200);
    // Only the accepted publishes reached the subscriber.
    assert_eq!(sse.next_message().await.data, "before");
    assert_eq!(sse.next_message().await.data, "after");
}

#[tokio::test]
async fn connection_close_and_unusual_bodies() {
    let hub = TestHub::start(config()).await;
    let (mut sse, _) = Sse::connect(&hub.base, &format!("access_token={}", token("42", json!({})))).await;

    // A chunked body is a publish like any other.
    let mut wire = Wire::open(&hub).await;
    let body = to_user("chunked");
    wire.send(
        format!(
            "POST /api/publish HTTP/1.1\r\nhost: h\r\nauthorization: Bearer {API_KEY}\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(wire.answer().await.status, 200);
    assert_eq!(sse.next_message().await.data, "chunked");

    // `Expect: 100-continue` is honoured.
    let mut wire = Wire::open(&hub).await;
    let body = to_user("expect");
    wire.send(
        format!(
            "POST /api/publish HTTP/1.1\r\nhost: h\r\nauthorization: Bearer {API_KEY}\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    let mut interim = [0u8; 25];
    tokio::time::timeout(WAIT, wire.stream.read_exact(&mut interim)).await.unwrap().unwrap();
    assert!(interim.starts_with(b"HTTP/1.1 100 Continue\r\n"), "{:?}", String::from_utf8_lossy(&interim));
    wire.send(body.as_bytes()).await;
    assert_eq!(wire.answer().await.status, 200);
    assert_eq!(sse.next_message().await.data, "expect");

    // `Connection: close` is answered, then the server closes.
    let mut wire = Wire::open(&hub).await;
    wire.send(&publish_request(API_KEY, &to_user("last"), "connection: close\r\n")).await;
    let answer = wire.answer().await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(wire.closed().await, "the server kept the connection open after `Connection: close`");
    assert_eq!(sse.next_message().await.data, "last");
}

#[tokio::test]
async fn a_trickled_body_times_out_and_publishes_nothing() {
    let mut config = config();
    config.body_timeout_secs = 1;
    let hub = TestHub::start(config).await;
    let (mut sse, _) = Sse::connect(&hub.base, &format!("access_token={}", token("42", json!({})))).await;
    let mut wire = Wire::open(&hub).await;
    let request = publish_request(API_KEY, &to_user("never"), "");
    wire.send(&request[..request.len() - 3]).await;
    let answer = wire.answer().await;
    assert_eq!(answer.status, 408, "{answer:?}");
    assert_eq!(answer.body["type"], "urn:herald:problem:body-timeout", "{answer:?}");
    assert!(sse.try_next(Duration::from_millis(200)).await.is_none_or(|e| e.event != "message"));
}

#[tokio::test]
async fn open_publish_connections_end_at_shutdown() {
    let hub = TestHub::start(config()).await;
    let mut wire = Wire::open(&hub).await;
    wire.send(&publish_request(API_KEY, &json!({"to": {"all": true}, "data": "x"}).to_string(), "")).await;
    assert_eq!(wire.answer().await.status, 200);
    // An idle kept-alive connection does not hold the shutdown up to its grace period.
    let stopping = tokio::spawn(hub.shutdown());
    assert!(wire.closed().await, "the idle connection stayed open through shutdown");
    stopping.await.unwrap().unwrap();
}
