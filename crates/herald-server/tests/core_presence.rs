//! Presence over real HTTP: the `GET /api/presence` feed, listings, kicks, and signed webhooks
//! received by a test HTTP server.

mod common;

use common::*;
use serde_json::{json, Value};
use tokio::sync::mpsc;

fn data(event: &eventsource_stream::Event) -> Value {
    serde_json::from_str(&event.data).unwrap()
}

#[tokio::test]
async fn the_presence_feed_reports_connects_and_disconnects() {
    let hub = TestHub::start(config()).await;
    let mut feed = Sse::presence(&hub.base, API_KEY).await;
    let jwt = token("42", json!({"tenant": "acme", "sid": "laptop", "channels": ["news"]}));
    let stream = client()
        .get(hub.url(&format!("/events?access_token={jwt}&channel=news&client_id=tab-9")))
        .header("user-agent", "core-presence-test")
        .send()
        .await
        .unwrap();
    let connect = feed.next().await;
    assert_eq!(connect.event, "connect");
    let conn = data(&connect);
    assert_eq!(conn["user"], "42");
    assert_eq!(conn["tenant"], "acme");
    assert_eq!(conn["session"], "laptop");
    assert_eq!(conn["channels"], json!(["news"]));
    assert_eq!(conn["client_id"], "tab-9");
    assert_eq!(conn["user_agent"], "core-presence-test");
    assert!(conn["remote_addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{conn}");
    assert!(conn["connected_at"].as_str().unwrap().ends_with('Z'), "{conn}");
    let (_, user) = api_get(&hub.base, "/api/users/42").await;
    assert_eq!(user["online"], true);
    assert_eq!(user["connections"][0]["id"], conn["id"]);
    let (_, users) = api_get(&hub.base, "/api/users").await;
    assert_eq!(users["users"], json!([{"id": "42", "connections": 1}]));

    drop(stream);
    let disconnect = feed.next().await;
    assert_eq!(disconnect.event, "disconnect");
    assert_eq!(data(&disconnect)["id"], conn["id"]);
    let (_, user) = api_get(&hub.base, "/api/users/42").await;
    assert_eq!(user["online"], false, "{user}");
    let (_, users) = api_get(&hub.base, "/api/users").await;
    assert_eq!(users["users"], json!([]));
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn listings_filter_and_page() {
    let hub = TestHub::start(config()).await;
    let mut streams = Vec::new();
    for (user, tenant, channel) in [("a", "t1", "x"), ("b", "t1", "y"), ("c", "t2", "x"), ("a", "t1", "y")] {
        let (sse, _) = Sse::connect(
            &hub.base,
            &format!("access_token={}&channel={channel}", token(user, json!({"tenant": tenant}))),
        )
        .await;
        streams.push(sse);
    }
    let users_of = |v: &Value| -> Vec<String> {
        v["connections"].as_array().unwrap().iter().map(|c| c["user"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(users_of(&api_get(&hub.base, "/api/connections?tenant=t1").await.1), ["a", "b", "a"]);
    assert_eq!(users_of(&api_get(&hub.base, "/api/connections?channel=x").await.1), ["a", "c"]);
    assert_eq!(users_of(&api_get(&hub.base, "/api/connections?user=a&channel=y").await.1), ["a"]);
    let (_, users) = api_get(&hub.base, "/api/users").await;
    assert_eq!(
        users["users"],
        json!([{"id": "a", "connections": 2}, {"id": "b", "connections": 1}, {"id": "c", "connections": 1}])
    );
    // Paging walks every connection once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/connections?limit=3&cursor={c}"),
            None => "/api/connections?limit=3".into(),
        };
        let (status, page) = api_get(&hub.base, &path).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(page["connections"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
    seen.dedup();
    assert_eq!(seen.len(), 4);
    let (_, page) = api_get(&hub.base, "/api/users?limit=2").await;
    assert_eq!(page["users"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_cursor"], "b");
    let (_, page) = api_get(&hub.base, "/api/users?limit=2&cursor=b").await;
    assert_eq!(page["users"], json!([{"id": "c", "connections": 1}]));
    assert_eq!(page["next_cursor"], Value::Null);
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn kicking_a_user_ends_its_streams_with_the_reason() {
    let hub = TestHub::start(config()).await;
    let mut feed = Sse::presence(&hub.base, API_KEY).await;
    let (mut tab1, _) = Sse::connect(&hub.base, &format!("access_token={}", token("42", json!({})))).await;
    let (mut tab2, _) = Sse::connect(&hub.base, &format!("access_token={}", token("42", json!({})))).await;
    let (mut other, _) = Sse::connect(&hub.base, &format!("access_token={}", token("43", json!({})))).await;
    for _ in 0..3 {
        assert_eq!(feed.next().await.event, "connect");
    }
    let r = client()
        .delete(hub.url("/api/users/42/connections?reason=logged%20out"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"kicked": 2}));
    for tab in [&mut tab1, &mut tab2] {
        let kicked = tab.until("herald.kicked").await;
        assert_eq!(data(&kicked), json!({"reason": "logged out"}));
        tab.ended().await;
    }
    let mut gone = Vec::new();
    for _ in 0..2 {
        let event = feed.next().await;
        assert_eq!(event.event, "disconnect");
        gone.push(data(&event)["user"].as_str().unwrap().to_string());
    }
    assert_eq!(gone, ["42", "42"]);
    let (_, user) = api_get(&hub.base, "/api/users/42").await;
    assert_eq!(user["online"], false);
    assert_eq!(metric(&hub.base, "kicks_total").await, 2);
    // User 43 still receives.
    publish(&hub.base, json!({"to": {"all": true}, "data": "still"})).await;
    assert_eq!(other.next_message().await.data, "still");
    // Kicking nobody is not an error.
    let r = client().delete(hub.url("/api/users/42/connections")).bearer_auth(API_KEY).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"kicked": 0}));
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn kicking_one_connection_leaves_the_others() {
    let hub = TestHub::start(config()).await;
    let mut feed = Sse::presence(&hub.base, API_KEY).await;
    let (mut doomed, doomed_info) = Sse::connect(&hub.base, &format!("access_token={}", token("42", json!({})))).await;
    let (mut kept, _) = Sse::connect(&hub.base, &format!("access_token={}", token("42", json!({})))).await;
    let id = doomed_info["connection_id"].as_str().unwrap();
    feed.next().await;
    feed.next().await;
    // Without a reason the stream just ends, with no herald.kicked.
    let r = client().delete(hub.url(&format!("/api/connections/{id}"))).bearer_auth(API_KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"kicked": 1}));
    while let Some(event) = doomed.try_next(WAIT).await {
        assert_ne!(event.event, "herald.kicked", "no reason, no kicked event");
    }
    let event = feed.next().await;
    assert_eq!((event.event.as_str(), data(&event)["id"].as_str()), ("disconnect", Some(id)));
    // Gone: a second kick is a 404 problem.
    let r = client().delete(hub.url(&format!("/api/connections/{id}"))).bearer_auth(API_KEY).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    for bad in ["nonsense", "zz-zz"] {
        let r = client().delete(hub.url(&format!("/api/connections/{bad}"))).bearer_auth(API_KEY).send().await.unwrap();
        assert_eq!(r.status(), 404, "{bad}");
    }
    publish(&hub.base, json!({"to": {"users": ["42"]}, "data": "kept"})).await;
    assert_eq!(kept.next_message().await.data, "kept");
    hub.shutdown().await.unwrap();
}

/// A webhook receiver on 127.0.0.1:0 that hands every request's signature and body to the test.
async fn webhook_receiver() -> (String, mpsc::UnboundedReceiver<(Option<String>, String, Vec<u8>)>) {
    use axum::routing::post;
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let signature = headers.get("x-herald-signature").map(|v| v.to_str().unwrap().to_string());
                let content_type =
                    headers.get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
                let _ = tx.send((signature, content_type, body.to_vec()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

fn verify(secret: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex_sig) = signature.strip_prefix("sha256=") else { return false };
    let Ok(raw) = hex::decode(hex_sig) else { return false };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, body, &raw).is_ok()
}

#[tokio::test]
async fn webhooks_are_signed_and_tell_connects_and_disconnects() {
    const SECRET: &str = "webhook-secret-0123456789";
    let (url, mut hooks) = webhook_receiver().await;
    let mut config = config();
    config.app.webhook_url = Some(url);
    config.app.webhook_secret = Some(SECRET.into());
    let hub = TestHub::start(config).await;
    let (sse, connected) =
        Sse::connect(&hub.base, &format!("access_token={}", token("42", json!({"tenant": "acme"})))).await;

    let (signature, content_type, body) =
        tokio::time::timeout(WAIT, hooks.recv()).await.expect("no webhook arrived").unwrap();
    let signature = signature.expect("X-Herald-Signature missing");
    assert!(verify(SECRET, &body, &signature), "bad signature {signature}");
    assert!(!verify("another-secret", &body, &signature), "the check must be able to fail");
    assert_eq!(content_type, "application/json");
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["type"], "connect", "{event}");
    assert_eq!(event["app"], "default");
    assert_eq!(event["connection"]["id"], connected["connection_id"]);
    assert_eq!(event["connection"]["tenant"], "acme");

    drop(sse);
    let (signature, _, body) = tokio::time::timeout(WAIT, hooks.recv()).await.expect("no webhook arrived").unwrap();
    assert!(verify(SECRET, &body, &signature.unwrap()));
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["type"], "disconnect", "{event}");
    assert_eq!(event["connection"]["id"], connected["connection_id"]);
    assert_eq!(metric(&hub.base, "webhook_failures_total").await, 0);
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn presence_is_per_app() {
    let hub = TestHub::start(two_apps()).await;
    let mut hr_feed = Sse::presence(&hub.base, "hr-api-key-0123456789").await;
    let mut default_feed = Sse::presence(&hub.base, API_KEY).await;
    let (_default_stream, _) = Sse::connect(&hub.base, &format!("access_token={}", token("d", json!({})))).await;
    let hr_jwt = token_with("hr-jwt-secret-0123456789", json!({"sub": "h", "exp": now_secs() + 600}));
    let (_hr_stream, _) = Sse::connect(&hub.base, &format!("app=hr&access_token={hr_jwt}")).await;
    assert_eq!(data(&default_feed.next().await)["user"], "d");
    // hr's feed sees hr's connection first: the default app's never reached it.
    assert_eq!(data(&hr_feed.next().await)["user"], "h");
    // And the default feed's next event is the default app's next connection, not hr's.
    let (_default_stream2, _) = Sse::connect(&hub.base, &format!("access_token={}", token("d2", json!({})))).await;
    assert_eq!(data(&default_feed.next().await)["user"], "d2", "hr's connection must not appear in the default feed");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_count_the_tasks_streams_hold_and_release() {
    let hub = TestHub::start(config()).await;
    let before = metric(&hub.base, "runtime_tasks").await;
    let mut streams = Vec::new();
    for user in ["t1", "t2", "t3"] {
        streams.push(Sse::connect(&hub.base, &format!("access_token={}", token(user, json!({})))).await.0);
    }
    let open = metric(&hub.base, "runtime_tasks").await;
    assert!(open >= before + 3, "three open streams, tasks {before} -> {open}");
    drop(streams);
    eventually("the closed streams' tasks end", || async { metric(&hub.base, "runtime_tasks").await <= before }).await;
}

/// Every page of `GET /api/users?limit=4`, walked with its cursors: (id, connections) in order.
async fn all_online(base: &str) -> Vec<(String, u64)> {
    let (mut all, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let path = cursor.as_ref().map_or("/api/users?limit=4".into(), |c| format!("/api/users?limit=4&cursor={c}"));
        let (status, page) = api_get(base, &path).await;
        assert_eq!(status, 200, "{page}");
        let users = page["users"].as_array().unwrap();
        assert!(users.len() <= 4, "{page}");
        all.extend(users.iter().map(|u| (u["id"].as_str().unwrap().to_string(), u["connections"].as_u64().unwrap())));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return all,
        }
    }
}

#[tokio::test]
async fn user_pages_list_every_online_user_once_in_order_as_they_come_and_go() {
    let hub = TestHub::start(config()).await;
    let mut streams = std::collections::HashMap::new();
    // Users land in different shards of the registry; u03 and u17 hold two streams each.
    for user in (0..25).map(|i| format!("u{i:02}")).chain(["u03".into(), "u17".into()]) {
        let (sse, _) = Sse::connect(&hub.base, &format!("access_token={}", token(&user, json!({})))).await;
        streams.entry(user).or_insert_with(Vec::new).push(sse);
    }
    let expected: Vec<(String, u64)> =
        (0..25).map(|i| (format!("u{i:02}"), if i == 3 || i == 17 { 2 } else { 1 })).collect();
    assert_eq!(all_online(&hub.base).await, expected);

    // u08 leaves, u17 closes one of its two streams.
    streams.remove("u08");
    streams.get_mut("u17").unwrap().pop();
    let expected: Vec<(String, u64)> =
        (0..25).filter(|&i| i != 8).map(|i| (format!("u{i:02}"), if i == 3 { 2 } else { 1 })).collect();
    eventually("u08 is gone and u17 has one stream", || async { all_online(&hub.base).await == expected }).await;
    let (_, first) = api_get(&hub.base, "/api/users?limit=2&cursor=u07").await;
    assert_eq!(first["users"], json!([{"id": "u09", "connections": 1}, {"id": "u10", "connections": 1}]));
    assert_eq!(first["next_cursor"], "u10");
}
