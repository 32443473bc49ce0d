//! HTTP/2 with prior knowledge against the cleartext server: streams, publishes and many
//! streams multiplexed on one connection.

mod common;

use common::*;
use serde_json::json;

fn h2() -> reqwest::Client {
    reqwest::Client::builder().http2_prior_knowledge().build().unwrap()
}

#[tokio::test]
async fn streams_and_publishes_work_over_cleartext_http2() {
    let hub = TestHub::start(config()).await;
    let client = h2();
    let health = client.get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(health.version(), reqwest::Version::HTTP_2);
    // Several streams of different users on the one HTTP/2 connection.
    let mut streams = Vec::new();
    for n in 0..5 {
        let mut sse =
            Sse::open_with(&client, &hub.base, &format!("access_token={}", token(&format!("u{n}"), json!({}))), None)
                .await;
        assert_eq!(sse.status, 200);
        assert_eq!(sse.headers["cache-control"], "no-cache");
        assert_eq!(sse.next().await.event, "herald.connected");
        streams.push(sse);
    }
    let (_, listed) = api_get(&hub.base, "/api/connections").await;
    let addrs: Vec<&str> =
        listed["connections"].as_array().unwrap().iter().map(|c| c["remote_addr"].as_str().unwrap()).collect();
    assert_eq!(addrs.len(), 5);
    assert!(addrs.iter().all(|a| *a == addrs[0]), "all five streams share one connection: {addrs:?}");
    let r = client
        .post(hub.url("/api/publish"))
        .bearer_auth(API_KEY)
        .json(&json!({"to": {"users": ["u3"]}, "event": "H2", "data": "over h2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let event = streams[3].next_message().await;
    assert_eq!((event.event.as_str(), event.data.as_str()), ("H2", "over h2"));
    let r = client
        .post(hub.url("/api/publish"))
        .bearer_auth(API_KEY)
        .json(&json!({"to": {"all": true}, "event": "ALL", "data": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["delivered"], 5);
    for sse in &mut streams {
        assert_eq!(sse.next_message().await.event, "ALL");
    }
    // Closing one HTTP/2 stream (not the connection) unregisters just that one.
    let mut feed = Sse::presence(&hub.base, API_KEY).await;
    drop(streams.remove(0));
    let gone = feed.next().await;
    assert_eq!(gone.event, "disconnect");
    assert!(gone.data.contains("\"u0\""), "{}", gone.data);
    // Problem documents come over HTTP/2 too.
    let r = client.get(hub.url("/events")).send().await.unwrap();
    assert_eq!((r.version(), r.status().as_u16()), (reqwest::Version::HTTP_2, 401));
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_ends_http2_streams() {
    let hub = TestHub::start(config()).await;
    let client = h2();
    let mut sse = Sse::open_with(&client, &hub.base, &format!("access_token={}", token("42", json!({}))), None).await;
    assert_eq!(sse.next().await.event, "herald.connected");
    hub.shutdown().await.unwrap();
    sse.ended().await;
}
