//! Graceful shutdown over real HTTP: it returns within the grace period, open streams get the
//! `retry:` hint and end, and the presence feed ends too.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Reads a raw stream to its end and returns its text; fails after [`WAIT`].
async fn read_to_end(mut response: reqwest::Response) -> String {
    let mut text = String::new();
    loop {
        match tokio::time::timeout(WAIT, response.chunk()).await.expect("the stream did not end") {
            Ok(Some(chunk)) => text.push_str(std::str::from_utf8(&chunk).unwrap()),
            Ok(None) | Err(_) => return text,
        }
    }
}

#[tokio::test]
async fn shutdown_ends_every_stream_with_a_retry_hint_within_the_grace_period() {
    let mut config = config();
    config.retry_ms = 1234;
    config.shutdown_grace_secs = 5;
    let hub = TestHub::start(config).await;
    let mut raws = Vec::new();
    for user in ["a", "b"] {
        let mut r =
            client().get(hub.url(&format!("/events?access_token={}", token(user, json!({}))))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        // Wait until the stream is established (its first bytes arrived).
        let first = tokio::time::timeout(WAIT, r.chunk()).await.unwrap().unwrap().unwrap();
        raws.push((String::from_utf8(first.to_vec()).unwrap(), r));
    }
    let (mut sse, _) = Sse::connect(&hub.base, &format!("access_token={}", token("c", json!({})))).await;
    let mut feed = Sse::presence(&hub.base, API_KEY).await;
    publish(&hub.base, json!({"to": {"users": ["c"]}, "event": "BEFORE", "data": "x"})).await;
    assert_eq!(sse.next_message().await.event, "BEFORE");

    let started = Instant::now();
    let base = hub.base.clone();
    hub.shutdown().await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}, over the grace period");

    for (first, r) in raws {
        let text = first + &read_to_end(r).await;
        assert!(text.starts_with("retry: 1234\n\n"), "{text:?}");
        assert!(text.ends_with("\n\nretry: 1234\n\n"), "the stream must end with the retry hint: {text:?}");
        assert_eq!(text.matches("retry:").count(), 2, "{text:?}");
    }
    sse.ended().await;
    feed.ended().await;
    // The listener is closed: nothing new is accepted.
    assert!(client().get(format!("{base}/healthz")).send().await.is_err(), "the server still accepts after shutdown");
}

#[tokio::test]
async fn shutdown_with_a_stalled_client_still_returns_within_the_grace_period() {
    use tokio::io::AsyncWriteExt;
    let mut config = config();
    config.shutdown_grace_secs = 2;
    config.app.limits.queue_bytes = 16 * 1024 * 1024;
    config.app.limits.max_payload_bytes = 1024 * 1024;
    let hub = TestHub::start(config).await;
    let mut feed = Sse::presence(&hub.base, API_KEY).await;
    let mut stalled = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    let request = format!("GET /events?access_token={} HTTP/1.1\r\nHost: x\r\n\r\n", token("stalled", json!({})));
    stalled.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(feed.next().await.event, "connect");
    // More than the kernel buffers hold, so the server cannot finish writing to this client.
    let payload = "x".repeat(1024 * 1024);
    for _ in 0..14 {
        let (status, body) = publish(&hub.base, json!({"to": {"users": ["stalled"]}, "data": payload})).await;
        assert_eq!((status, body["delivered"].as_u64()), (200, Some(1)), "{body}");
    }
    let started = Instant::now();
    hub.shutdown().await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "shutdown took {took:?} with a 2 s grace period");
    drop(stalled);
}
