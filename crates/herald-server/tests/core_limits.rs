//! Limits and problem documents over real HTTP: refused publishes change nothing, per-user
//! connection limits, and a client that stops reading is dropped while a healthy one keeps
//! receiving everything.

mod common;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `request` and checks the answer is a problem document with `status`; returns it.
async fn problem(request: reqwest::RequestBuilder, status: u16, what: &str) -> Value {
    let r = request.send().await.unwrap();
    assert_eq!(r.status().as_u16(), status, "{what}");
    assert_eq!(
        r.headers().get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/problem+json"),
        "{what}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], status, "{what}: {body}");
    assert!(body["type"].as_str().unwrap().starts_with("urn:herald:problem:"), "{what}: {body}");
    assert!(!body["detail"].as_str().unwrap().is_empty(), "{what}: {body}");
    body
}

fn post(hub: &TestHub, path: &str) -> reqwest::RequestBuilder {
    client().post(hub.url(path)).bearer_auth(API_KEY)
}

#[tokio::test]
async fn invalid_publishes_are_problems_and_change_nothing() {
    let mut config = config();
    config.app.limits.max_payload_bytes = 1024;
    config.app.limits.max_batch = 3;
    let hub = TestHub::start(config).await;
    let (mut sse, _) = Sse::connect(&hub.base, &format!("access_token={}", token("42", json!({})))).await;
    let to = json!({"users": ["42"]});
    let json_cases = [
        ("unknown field", json!({"to": to, "data": "x", "priority": "high"})),
        ("unknown target field", json!({"to": {"users": ["42"], "groups": ["g"]}, "data": "x"})),
        ("no data", json!({"to": to})),
        ("no to", json!({"data": "x"})),
        ("empty targets", json!({"to": {}, "data": "x"})),
        ("empty lists", json!({"to": {"users": [], "channels": []}, "data": "x"})),
        ("all false", json!({"to": {"all": false}, "data": "x"})),
        ("empty user id", json!({"to": {"users": [""]}, "data": "x"})),
        ("event with a line break", json!({"to": to, "event": "A\nB", "data": "x"})),
        ("event with a CR", json!({"to": to, "event": "A\rB", "data": "x"})),
        ("empty event", json!({"to": to, "event": "", "data": "x"})),
        ("reserved event", json!({"to": to, "event": "herald.connected", "data": "x"})),
        ("long event", json!({"to": to, "event": "E".repeat(129), "data": "x"})),
        ("ttl without durable", json!({"to": to, "data": "x", "ttl": 60})),
        ("wrong type", json!({"to": {"users": "42"}, "data": "x"})),
    ];
    for (what, body) in &json_cases {
        let p = problem(post(&hub, "/api/publish").json(body), 400, what).await;
        assert_eq!(p["type"], "urn:herald:problem:invalid-request", "{what}");
    }
    let raw_cases: [(&str, Vec<u8>); 3] = [
        ("invalid UTF-8", b"{\"to\": {\"users\": [\"42\"]}, \"data\": \"\xff\xfe\"}".to_vec()),
        ("not JSON", b"to=42&data=x".to_vec()),
        ("empty body", Vec::new()),
    ];
    for (what, body) in raw_cases {
        problem(post(&hub, "/api/publish").header("content-type", "application/json").body(body), 400, what).await;
    }
    let p = problem(
        post(&hub, "/api/publish").json(&json!({"to": to, "data": "x".repeat(1025)})),
        413,
        "payload over the limit",
    )
    .await;
    assert_eq!(p["type"], "urn:herald:problem:payload-too-large");
    // A body far over any limit is refused before it is parsed.
    problem(
        post(&hub, "/api/publish").header("content-type", "application/json").body(vec![b' '; 2 * 1024 * 1024]),
        413,
        "huge body",
    )
    .await;

    // A batch with one bad item sends nothing, and says which item.
    let batch = json!([{"to": to, "event": "OK", "data": 1}, {"to": to, "event": "BAD\nNAME", "data": 2}, {"to": to, "data": 3}]);
    let p = problem(post(&hub, "/api/publish/batch").json(&batch), 400, "batch with a bad item").await;
    assert!(p["detail"].as_str().unwrap().contains("item 1"), "{p}");
    let too_many: Vec<Value> = (0..4).map(|n| json!({"to": to, "data": n})).collect();
    problem(post(&hub, "/api/publish/batch").json(&too_many), 400, "batch over max_batch").await;
    // An oversized item refuses the whole batch with the item's own status, naming it and the limit.
    let p = problem(
        post(&hub, "/api/publish/batch").json(&json!([{"to": to, "data": 0}, {"to": to, "data": "y".repeat(2000)}])),
        413,
        "batch item too large",
    )
    .await;
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("item 1") && detail.contains("max_payload_bytes"), "{p}");
    problem(post(&hub, "/api/publish/batch").json(&json!({"to": to, "data": 1})), 400, "batch that is not an array")
        .await;

    assert_eq!(metric_with(&hub.base, "publishes_total", r#"outcome="ok""#).await, 0, "nothing was published");
    let (status, body) = publish(&hub.base, json!({"to": to, "event": "FIRST", "data": "x".repeat(1024)})).await;
    assert_eq!(status, 200, "exactly at the limit is fine: {body}");
    assert_eq!(sse.next_message().await.event, "FIRST", "no refused publish reached the stream");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_paths_methods_and_queries_are_problems() {
    let hub = TestHub::start(config()).await;
    problem(client().get(hub.url("/nope")), 404, "unknown path").await;
    problem(client().get(hub.url("/api/publish")).bearer_auth(API_KEY), 405, "wrong method").await;
    problem(client().get(hub.url("/api/connections?limit=0")).bearer_auth(API_KEY), 400, "limit 0").await;
    problem(client().get(hub.url("/api/connections?limit=abc")).bearer_auth(API_KEY), 400, "limit not a number").await;
    problem(client().get(hub.url("/api/users/42/messages?state=some")).bearer_auth(API_KEY), 400, "bad state").await;
    let jwt = token("42", json!({}));
    problem(client().get(hub.url(&format!("/events?app=nope&access_token={jwt}"))), 404, "unknown app").await;
    problem(client().get(hub.url(&format!("/events?access_token={jwt}&channel="))), 400, "empty channel").await;
    problem(client().get(hub.url(&format!("/poll?access_token={jwt}&timeout=61"))), 400, "poll timeout").await;
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn connection_and_channel_limits_are_429_and_400() {
    let mut config = config();
    config.app.limits.max_connections_per_user = 2;
    config.app.limits.max_channels = 2;
    let hub = TestHub::start(config).await;
    let mut feed = Sse::presence(&hub.base, API_KEY).await;
    let jwt = token("42", json!({}));
    let (first, _) = Sse::connect(&hub.base, &format!("access_token={jwt}")).await;
    let (_second, _) = Sse::connect(&hub.base, &format!("access_token={jwt}")).await;
    let p = problem(client().get(hub.url(&format!("/events?access_token={jwt}"))), 429, "third stream").await;
    assert_eq!(p["type"], "urn:herald:problem:too-many-connections");
    // Another user is not limited by 42's streams.
    let (_other, _) = Sse::connect(&hub.base, &format!("access_token={}", token("43", json!({})))).await;
    // Closing one frees a place.
    for _ in 0..3 {
        assert_eq!(feed.next().await.event, "connect");
    }
    drop(first);
    assert_eq!(feed.next().await.event, "disconnect");
    let (_third, _) = Sse::connect(&hub.base, &format!("access_token={jwt}")).await;
    let p = problem(
        client()
            .get(hub.url(&format!("/events?access_token={}&channel=a&channel=b&channel=c", token("44", json!({}))))),
        400,
        "channels",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("max_channels"), "{p}");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stalled_reader_is_dropped_while_a_healthy_one_gets_everything() {
    let mut config = config();
    config.app.limits.queue_bytes = 256 * 1024;
    let hub = TestHub::start(config).await;
    let mut feed = Sse::presence(&hub.base, API_KEY).await;

    // The stalled client: sends its request and never reads a byte.
    let mut stalled = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    let request = format!(
        "GET /events?access_token={} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        token("stalled", json!({})),
        hub.addr
    );
    stalled.write_all(request.as_bytes()).await.unwrap();
    let connect = feed.next().await;
    let stalled_info: Value = serde_json::from_str(&connect.data).unwrap();
    assert_eq!((connect.event.as_str(), stalled_info["user"].as_str()), ("connect", Some("stalled")));

    let (mut healthy, _) = Sse::connect(&hub.base, &format!("access_token={}", token("healthy", json!({})))).await;
    assert_eq!(feed.next().await.event, "connect");
    let reader = tokio::spawn(async move {
        let mut ids = Vec::new();
        loop {
            let event = healthy.next_message().await;
            if event.event == "DONE" {
                return (ids, healthy);
            }
            assert_eq!(event.data.len(), 32 * 1024);
            ids.push(event.id);
        }
    });

    let payload = "x".repeat(32 * 1024);
    let mut published = Vec::new();
    let mut after_drop = None;
    // Kernel buffers hold a few MB; at most 64 MB are sent before giving up.
    for n in 0..2000 {
        let (status, body) = publish(&hub.base, json!({"to": {"all": true}, "event": "BULK", "data": payload})).await;
        assert_eq!(status, 200, "{body}");
        published.push(body["id"].as_str().unwrap().to_string());
        if after_drop.is_none() && n % 10 == 9 && metric(&hub.base, "slow_client_drops_total").await > 0 {
            after_drop = Some(n);
        }
        if after_drop.is_some_and(|d| n >= d + 20) {
            break;
        }
    }
    assert!(after_drop.is_some(), "the stalled reader was never dropped");
    assert_eq!(metric(&hub.base, "slow_client_drops_total").await, 1, "only the stalled reader is dropped");
    publish(&hub.base, json!({"to": {"all": true}, "event": "DONE", "data": "done"})).await;
    let (received, _healthy) = tokio::time::timeout(WAIT * 3, reader).await.expect("healthy reader timed out").unwrap();
    assert_eq!(received, published, "the healthy reader got every message, in order");

    // The stalled connection is gone from presence and the listing...
    let disconnect = feed.next().await;
    assert_eq!(disconnect.event, "disconnect");
    assert_eq!(serde_json::from_str::<Value>(&disconnect.data).unwrap()["id"], stalled_info["id"]);
    let (_, listed) = api_get(&hub.base, "/api/connections").await;
    let users: Vec<&str> =
        listed["connections"].as_array().unwrap().iter().map(|c| c["user"].as_str().unwrap()).collect();
    assert_eq!(users, ["healthy"]);
    // ...and its transport was closed: reading what the kernel buffered ends.
    let drained = tokio::time::timeout(WAIT, async {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the stalled client's socket was not closed");
    hub.shutdown().await.unwrap();
}
