//! Bodies and bounds: a body that never arrives, an anonymous client's body, and batches
//! bounded while they are parsed.

mod common;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// POSTs `body` as written (not re-encoded) as JSON with the API key.
async fn post_text(hub: &TestHub, path: &str, body: &'static str) -> reqwest::Response {
    let request = client().post(hub.url(path)).bearer_auth(API_KEY).header("content-type", "application/json");
    request.body(body).send().await.unwrap()
}

#[tokio::test]
async fn a_body_announced_larger_than_sent_is_answered_408_at_the_deadline() {
    let mut config = config();
    config.body_timeout_secs = 1;
    let hub = TestHub::start(config).await;
    let mut stream = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"to\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") || !String::from_utf8_lossy(&answer).contains('}') {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf)).await.expect("no answer to a stalled body").unwrap();
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("urn:herald:problem:body-timeout") && answer.contains("body_timeout_secs"), "{answer}");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn ack_refuses_an_anonymous_client_before_reading_its_body() {
    // No body deadline will come to the rescue: only checking the token first answers this.
    let mut config = config();
    config.body_timeout_secs = 3600;
    let hub = TestHub::start(config).await;
    for auth in ["", "Authorization: Bearer not-a-token\r\n"] {
        let mut stream = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
        let head = format!(
            "POST /ack HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 300000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buf = [0u8; 2048];
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf)).await.expect("/ack waited for the body").unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 401"), "{auth:?}: {answer}");
    }
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_batch_is_refused_at_the_first_item_past_the_limit_and_nothing_is_sent() {
    let mut config = config();
    config.app.limits.max_batch = 3;
    let hub = TestHub::start(config).await;
    let (mut alice, _) = Sse::connect(&hub.base, &format!("access_token={}", token("alice", json!({})))).await;
    let item = json!({"to": {"users": ["alice"]}, "data": {"n": 1}});
    let (status, _, problem) =
        api_post(&hub.base, API_KEY, "/api/publish/batch", &json!([item, item, item, item])).await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("limits.max_batch"), "{problem}");
    // A body with anything after the array is not one JSON document (found by fuzzing).
    for trailing in ["[]garbage", "[],", "[] {}", "[]\n\n\u{0}"] {
        assert_eq!(post_text(&hub, "/api/publish/batch", trailing).await.status(), 400, "{trailing:?}");
    }
    // Three fit, and they are the first alice sees.
    let (status, _, answers) = api_post(
        &hub.base,
        API_KEY,
        "/api/publish/batch",
        &serde_json::Value::Array(vec![item.clone(), item.clone(), item]),
    )
    .await;
    assert_eq!(status, 200, "{answers}");
    assert_eq!(answers.as_array().unwrap().len(), 3);
    assert_eq!(alice.next_message().await.id, answers[0]["id"].as_str().unwrap(), "the refused batch was sent");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_publish_is_a_json_object_not_an_array_of_its_fields() {
    let hub = TestHub::start(config()).await;
    // serde would take a struct from an array of its fields in order (found by fuzzing).
    for body in [json!([{"users": ["a"]}, null, "x"]), json!({"to": [["a"]], "data": "x"})] {
        let (status, problem) = publish(&hub.base, body.clone()).await;
        assert_eq!(status, 400, "{body}: {problem}");
    }
    let (status, _, problem) =
        api_post(&hub.base, API_KEY, "/api/publish/batch", &json!([[{"users": ["a"]}, null, "x"]])).await;
    assert_eq!(status, 400, "{problem}");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn publish_data_is_sent_compact_in_the_order_it_was_written() {
    let hub = TestHub::start(config()).await;
    let (mut alice, _) = Sse::connect(&hub.base, &format!("access_token={}", token("alice", json!({})))).await;
    let body = r#"{"to": {"users": ["alice"]}, "data": { "z" : [1, 2.50, "a b\" c"],
        "a": {"k": null} }}"#;
    assert_eq!(post_text(&hub, "/api/publish", body).await.status(), 200);
    assert_eq!(alice.next_message().await.data, r#"{"z":[1,2.50,"a b\" c"],"a":{"k":null}}"#);
    hub.shutdown().await.unwrap();
}
