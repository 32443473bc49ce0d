//! Delivery over real HTTP and a real SSE parser: the stream's opening, every target kind and
//! their combinations, de-duplication, isolation between users, tenants and apps, batches,
//! payload encoding and heartbeats.

mod common;

use common::*;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// A subscriber with a name the test uses to say who should receive what.
struct Sub {
    name: &'static str,
    sse: Sse,
}

async fn sub(base: &str, name: &'static str, user: &str, claims: Value, channels: &[&str]) -> Sub {
    let mut query = format!("access_token={}", token(user, claims));
    for c in channels {
        query.push_str(&format!("&channel={c}"));
    }
    let (sse, _) = Sse::connect(base, &query).await;
    Sub { name, sse }
}

/// Publishes `to` with a unique event name, then a sentinel to everyone. Each subscriber in
/// `expected` must receive the message exactly once before the sentinel; every other one must
/// receive the sentinel first (events arrive in id order, so this proves non-delivery).
async fn check_delivery(base: &str, subs: &mut [Sub], to: Value, expected: &[&str], tag: &str) {
    let (status, body) = publish(base, json!({"to": to, "event": tag, "data": tag})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["delivered"], expected.len(), "delivered count for {to}");
    let id = body["id"].as_str().unwrap().to_string();
    let (status, sentinel) = publish(base, json!({"to": {"all": true}, "event": "SENTINEL", "data": tag})).await;
    assert_eq!(status, 200, "{sentinel}");
    for s in subs.iter_mut() {
        if expected.contains(&s.name) {
            let got = s.sse.next_message().await;
            assert_eq!(
                (got.event.as_str(), got.data.as_str(), got.id.as_str()),
                (tag, tag, id.as_str()),
                "{} for {to}",
                s.name
            );
        }
        let got = s.sse.next_message().await;
        assert_eq!(
            (got.event.as_str(), got.data.as_str()),
            ("SENTINEL", tag),
            "{} must not get {to} (or got it twice)",
            s.name
        );
    }
}

async fn three_subscribers(base: &str) -> Vec<Sub> {
    vec![
        sub(base, "a", "alice", json!({"tenant": "t1", "sid": "s-a"}), &["c1", "shared"]).await,
        sub(base, "b", "bob", json!({"tenant": "t2", "sid": "s-b"}), &["c2", "shared"]).await,
        sub(base, "c", "carol", json!({"tenant": "t1", "sid": "s-c"}), &[]).await,
    ]
}

#[tokio::test]
async fn the_stream_opens_with_headers_retry_and_herald_connected() {
    let hub = TestHub::start(config()).await;
    let mut raw = client()
        .get(hub.url(&format!("/events?client_id=tab-1&access_token={}", token("42", json!({})))))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    let header = |name: &str| raw.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(header("content-type").starts_with("text/event-stream"), "{}", header("content-type"));
    assert_eq!(header("cache-control"), "no-cache");
    assert_eq!(header("x-accel-buffering"), "no");
    let mut text = String::new();
    while !text.contains("\n\nid: ") || !text.ends_with("\n\n") {
        let chunk = tokio::time::timeout(WAIT, raw.chunk()).await.unwrap().unwrap().expect("stream ended");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.starts_with("retry: 2000\n\n"), "the stream must start with the retry hint: {text:?}");
    let (_, connected) = text.split_once("\n\n").unwrap();
    let mut parsed =
        futures_util::stream::iter([Ok::<_, std::convert::Infallible>(connected.to_string())]).eventsource();
    let event = parsed.next().await.unwrap().unwrap();
    assert_eq!(event.event, "herald.connected");
    let data: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data["user"], "42");
    assert_eq!(data["position"], event.id.as_str(), "the id is the position the stream continues from");
    let connection_id = data["connection_id"].as_str().unwrap();
    let (status, listed) = api_get(&hub.base, "/api/connections").await;
    assert_eq!(status, 200);
    let conns = listed["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 1, "{listed}");
    assert_eq!(conns[0]["id"], connection_id);
    assert_eq!(conns[0]["user"], "42");
    assert_eq!(conns[0]["client_id"], "tab-1");
    drop(raw);
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn each_target_kind_reaches_exactly_its_connections() {
    let hub = TestHub::start(config()).await;
    let mut subs = three_subscribers(&hub.base).await;
    check_delivery(&hub.base, &mut subs, json!({"users": ["alice"]}), &["a"], "USERS").await;
    check_delivery(&hub.base, &mut subs, json!({"users": ["bob", "nobody"]}), &["b"], "USERS2").await;
    check_delivery(&hub.base, &mut subs, json!({"sessions": ["s-c"]}), &["c"], "SESSIONS").await;
    check_delivery(&hub.base, &mut subs, json!({"tenants": ["t1"]}), &["a", "c"], "TENANTS").await;
    check_delivery(&hub.base, &mut subs, json!({"tenants": ["t2"]}), &["b"], "TENANTS2").await;
    check_delivery(&hub.base, &mut subs, json!({"channels": ["c2"]}), &["b"], "CHANNELS").await;
    check_delivery(&hub.base, &mut subs, json!({"channels": ["shared"]}), &["a", "b"], "CHANNELS2").await;
    check_delivery(&hub.base, &mut subs, json!({"all": true}), &["a", "b", "c"], "ALL").await;
    check_delivery(
        &hub.base,
        &mut subs,
        json!({"users": ["nobody"], "tenants": ["t9"], "channels": ["c9"]}),
        &[],
        "NOBODY",
    )
    .await;
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn combined_targets_deliver_once_per_connection() {
    let hub = TestHub::start(config()).await;
    let mut subs = three_subscribers(&hub.base).await;
    // alice matches by user, session, tenant and two channels: she still gets it once.
    check_delivery(
        &hub.base,
        &mut subs,
        json!({"users": ["alice", "alice"], "sessions": ["s-a"], "tenants": ["t1"], "channels": ["c1", "shared"]}),
        &["a", "b", "c"],
        "EVERYTHING",
    )
    .await;
    check_delivery(&hub.base, &mut subs, json!({"users": ["bob"], "sessions": ["s-c"]}), &["b", "c"], "MIXED").await;
    check_delivery(
        &hub.base,
        &mut subs,
        json!({"all": true, "users": ["alice"], "channels": ["shared"]}),
        &["a", "b", "c"],
        "ALL_AND",
    )
    .await;
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_connection_of_a_user_receives_and_other_users_do_not() {
    let hub = TestHub::start(config()).await;
    let mut subs = vec![
        sub(&hub.base, "tab1", "42", json!({"sid": "laptop"}), &[]).await,
        sub(&hub.base, "tab2", "42", json!({"sid": "laptop"}), &[]).await,
        sub(&hub.base, "phone", "42", json!({"sid": "phone"}), &[]).await,
        sub(&hub.base, "other", "420", json!({"sid": "laptop2"}), &[]).await,
    ];
    check_delivery(&hub.base, &mut subs, json!({"users": ["42"]}), &["tab1", "tab2", "phone"], "USER").await;
    check_delivery(&hub.base, &mut subs, json!({"sessions": ["laptop"]}), &["tab1", "tab2"], "SESSION").await;
    check_delivery(&hub.base, &mut subs, json!({"users": ["4"]}), &[], "PREFIX_IS_NOT_A_MATCH").await;
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn payloads_arrive_as_published() {
    let hub = TestHub::start(config()).await;
    let (mut sse, _) = Sse::connect(&hub.base, &format!("access_token={}", token("42", json!({})))).await;
    let cases = [
        (json!("plain text"), "plain text"),
        (json!("two\nlines\r\nand a CR\rend"), "two\nlines\nand a CR\nend"),
        (json!(" leading space"), " leading space"),
        (json!(""), ""),
        (json!({"a": [1, 2], "b": "x y"}), "{\"a\":[1,2],\"b\":\"x y\"}"),
        (json!(42), "42"),
        (json!("ünïcødé ✓"), "ünïcødé ✓"),
    ];
    for (data, expected) in cases {
        let (status, body) = publish(&hub.base, json!({"to": {"users": ["42"]}, "data": data})).await;
        assert_eq!(status, 200, "{body}");
        let got = sse.next_message().await;
        assert_eq!(got.event, "message", "no event name means EventSource's `message`");
        assert_eq!(got.data, expected);
        assert_eq!(got.id, body["id"].as_str().unwrap());
    }
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_batch_is_delivered_in_order_with_increasing_ids() {
    let hub = TestHub::start(config()).await;
    let (mut sse, _) =
        Sse::connect(&hub.base, &format!("access_token={}&channel=news", token("42", json!({"tenant": "t"})))).await;
    let batch = json!([
        {"to": {"users": ["42"]}, "event": "ONE", "data": 1},
        {"to": {"users": ["someone-else"]}, "event": "SKIPPED", "data": 2},
        {"to": {"channels": ["news"]}, "event": "TWO", "data": 3},
        {"to": {"tenants": ["t"]}, "event": "THREE", "data": 4},
    ]);
    let (status, _, answers) = api_post(&hub.base, API_KEY, "/api/publish/batch", &batch).await;
    assert_eq!(status, 200, "{answers}");
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 4);
    let delivered: Vec<u64> = answers.iter().map(|a| a["delivered"].as_u64().unwrap()).collect();
    assert_eq!(delivered, [1, 0, 1, 1]);
    let seqs: Vec<u64> =
        answers.iter().map(|a| a["id"].as_str().unwrap().rsplit('-').next().unwrap().parse().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "ids must increase by one: {seqs:?}");
    for (name, answer) in [("ONE", &answers[0]), ("TWO", &answers[2]), ("THREE", &answers[3])] {
        let got = sse.next_message().await;
        assert_eq!((got.event.as_str(), got.id.as_str()), (name, answer["id"].as_str().unwrap()));
    }
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn apps_are_isolated_by_keys_tokens_and_delivery() {
    let hub = TestHub::start(two_apps()).await;
    let hr_token = |user: &str| {
        token_with("hr-jwt-secret-0123456789", json!({"sub": user, "exp": now_secs() + 600, "channels": ["*"]}))
    };
    // The same user id in both apps.
    let (mut default_42, _) =
        Sse::connect(&hub.base, &format!("access_token={}&channel=news", token("42", json!({})))).await;
    let (mut hr_42, hr_connected) =
        Sse::connect(&hub.base, &format!("app=hr&access_token={}&channel=news", hr_token("42"))).await;
    // A token of one app does not open a stream in the other.
    assert_eq!(
        Sse::open(&hub.base, &format!("app=hr&access_token={}", token("42", json!({}))), None).await.status,
        401
    );
    assert_eq!(Sse::open(&hub.base, &format!("access_token={}", hr_token("42")), None).await.status, 401);
    // The X-Herald-App header picks the app too.
    let by_header =
        Sse::from_request(client().get(hub.url("/events")).header("x-herald-app", "hr").bearer_auth(hr_token("7")))
            .await;
    assert_eq!(by_header.status, 200);

    for (key, to) in [
        ("hr-api-key-0123456789", json!({"users": ["42"]})),
        ("hr-api-key-0123456789", json!({"all": true})),
        ("hr-api-key-0123456789", json!({"channels": ["news"]})),
    ] {
        let (status, _, body) =
            api_post(&hub.base, key, "/api/publish", &json!({"to": to, "event": "HR", "data": "x"})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(hr_42.next_message().await.event, "HR");
    }
    let (status, body) = publish(&hub.base, json!({"to": {"users": ["42"]}, "event": "DEFAULT", "data": "x"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["delivered"], 1, "only the default app's connection");
    // The default app's stream sees its own message first: none of hr's three reached it.
    assert_eq!(default_42.next_message().await.event, "DEFAULT");
    // hr's stream does not see the default app's message: its next one is hr's.
    api_post(
        &hub.base,
        "hr-api-key-0123456789",
        "/api/publish",
        &json!({"to": {"users": ["42"]}, "event": "HR_AGAIN", "data": "x"}),
    )
    .await;
    assert_eq!(hr_42.next_message().await.event, "HR_AGAIN");

    // Each key lists only its own app's connections.
    let (_, hr_listed) = {
        let r = client().get(hub.url("/api/connections")).bearer_auth("hr-api-key-0123456789").send().await.unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    let hr_ids: Vec<&str> =
        hr_listed["connections"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(hr_ids.len(), 2, "{hr_listed}");
    assert!(hr_ids.contains(&hr_connected["connection_id"].as_str().unwrap()));
    let (_, default_listed) = api_get(&hub.base, "/api/connections").await;
    assert_eq!(default_listed["connections"].as_array().unwrap().len(), 1, "{default_listed}");
    // And cannot kick the other app's connections.
    let r = client()
        .delete(hub.url(&format!("/api/connections/{}", hr_connected["connection_id"].as_str().unwrap())))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    drop(by_header);
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn heartbeats_are_comments_or_ping_events() {
    let mut config = config();
    config.heartbeat_secs = 1;
    let hub = TestHub::start(config).await;
    let (mut pinged, connected) =
        Sse::connect(&hub.base, &format!("ping=1&access_token={}", token("42", json!({})))).await;
    let ping = pinged.until("herald.ping").await;
    assert_eq!(ping.data, "{}");
    assert_eq!(ping.id, connected["position"].as_str().unwrap(), "pings carry no id of their own");
    assert_eq!(pinged.next().await.event, "herald.ping", "pings keep coming on an idle stream");

    let mut raw =
        client().get(hub.url(&format!("/events?access_token={}", token("43", json!({}))))).send().await.unwrap();
    let mut text = String::new();
    while !text.contains("\n: hb\n\n") {
        let chunk =
            tokio::time::timeout(WAIT, raw.chunk()).await.expect("no heartbeat").unwrap().expect("stream ended");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(!text.contains("herald.ping"), "without ping=1 heartbeats are comments only");
    drop(raw);
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_resumes_after_its_last_event_id() {
    let hub = TestHub::start(config()).await;
    let (mut sse, _) = Sse::connect(&hub.base, &format!("access_token={}", token("42", json!({})))).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let (_, body) = publish(&hub.base, json!({"to": {"users": ["42"]}, "event": "N", "data": n})).await;
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(sse.next_message().await.id, ids[0]);
    drop(sse);
    let mut resumed = Sse::open(&hub.base, &format!("access_token={}", token("42", json!({}))), Some(&ids[0])).await;
    assert_eq!(resumed.next().await.event, "herald.connected");
    for (n, id) in ids.iter().enumerate().skip(1) {
        let got = resumed.next_message().await;
        assert_eq!((got.id.as_str(), got.data.as_str()), (id.as_str(), n.to_string().as_str()));
    }
    hub.shutdown().await.unwrap();
}
