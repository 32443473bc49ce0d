//! Mercure across a cluster and a restart: two `herald` processes on one `redis-server` the test
//! starts for itself, and a single SQLite node restarted on its file.

mod common;

use common::*;
use serde_json::json;

const PUBLISHER_KEY: &str = "mercure-publisher-key-0123456789";

fn mercure_env() -> Vec<(&'static str, &'static str)> {
    vec![("HERALD_MERCURE_PUBLISHER_JWT_KEY", PUBLISHER_KEY), ("HERALD_MERCURE_ANONYMOUS", "true")]
}

fn publisher() -> String {
    token_with(PUBLISHER_KEY, json!({"mercure": {"publish": ["*"], "subscribe": ["*"]}}))
}

async fn mercure_publish(base: &str, form: &[(&str, &str)]) -> String {
    let r =
        client().post(format!("{base}/.well-known/mercure")).bearer_auth(publisher()).form(form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

async fn mercure_open(base: &str, query: &str, bearer: Option<&str>, last_event_id: Option<&str>) -> Sse {
    let mut request = client().get(format!("{base}/.well-known/mercure?{query}"));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let sse = Sse::from_request(request).await;
    assert_eq!(sse.status, 200);
    sse
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_and_mercure_updates_cross_nodes_both_ways() {
    let redis = Redis::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let mut env = mercure_env();
    env.push(("HERALD_REDIS_URL", url.as_str()));
    let a = Process::start(&dir.path().join("a.db"), &env).await;
    let b = Process::start(&dir.path().join("b.db"), &env).await;

    let topic = "https://example.com/books/1";
    let pattern = "match_urlpattern=https%3A%2F%2Fexample.com%2Fbooks%2F%3Aid";
    let mut mercure_on_b = mercure_open(&b.base, pattern, Some(&publisher()), None).await;
    let mut anonymous_on_b = mercure_open(&b.base, pattern, None, None).await;
    let (mut native_on_b, _) =
        Sse::connect(&b.base, &format!("channel={}&access_token={}", "%2Fnews", token("n", json!({})))).await;
    let mut mercure_on_a = mercure_open(&a.base, "topic=%2Fnews", Some(&publisher()), None).await;

    // A Mercure update published on A, private with a custom id, reaches B's authorised subscriber
    // with that id; the anonymous one gets only the public update after it.
    let id =
        mercure_publish(&a.base, &[("topic", topic), ("private", "on"), ("id", "urn:book-1"), ("data", "p")]).await;
    assert_eq!(id, "urn:book-1");
    mercure_publish(&a.base, &[("topic", topic), ("data", "public")]).await;
    let event = mercure_on_b.next_message().await;
    assert_eq!((event.id.as_str(), event.data.as_str()), ("urn:book-1", "p"));
    assert_eq!(mercure_on_b.next_message().await.data, "public");
    assert_eq!(anonymous_on_b.next_message().await.data, "public");

    // A native publish on B reaches the Mercure subscriber on A; a Mercure publish on A reaches
    // the native subscriber on B.
    let (status, body) = publish(&b.base, json!({"to": {"channels": ["/news"]}, "data": "native"})).await;
    assert_eq!(status, 200, "{body}");
    let event = mercure_on_a.next_message().await;
    assert_eq!((event.id.as_str(), event.data.as_str()), (body["id"].as_str().unwrap(), "native"));
    assert_eq!(native_on_b.next_message().await.data, "native");
    mercure_publish(&a.base, &[("topic", "/news"), ("data", "from mercure")]).await;
    assert_eq!(native_on_b.next_message().await.data, "from mercure");

    // The custom id resumes on the other node, from the shared history.
    let mut resumed = mercure_open(&b.base, pattern, Some(&publisher()), Some("urn:book-1")).await;
    assert_eq!(resumed.headers["mercure-last-event-id"], "urn:book-1");
    assert_eq!(resumed.next_message().await.data, "public");

    // Presence on A lists B's Mercure subscribers.
    eventually("A lists B's Mercure subscribers", || async {
        let (_, connections) = api_get(&a.base, "/api/connections").await;
        connections.to_string().matches("\"subscriber\"").count() >= 3
    })
    .await;
}

#[tokio::test]
async fn custom_ids_resume_after_a_restart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = temp_db(&dir);
    let mut first = Process::start(&db, &mercure_env()).await;
    mercure_publish(&first.base, &[("topic", "t"), ("id", "urn:one"), ("data", "1")]).await;
    mercure_publish(&first.base, &[("topic", "t"), ("id", "urn:two"), ("private", "on"), ("data", "2")]).await;
    mercure_publish(&first.base, &[("topic", "t"), ("data", "3")]).await;
    // History is written in the background; a durable publish answers once it and everything
    // before it are committed, so after it a `kill -9` loses nothing.
    let (status, _) = publish(&first.base, json!({"to": {"users": ["x"]}, "data": "sync", "durable": true})).await;
    assert_eq!(status, 200);
    first.kill9().await;
    let second = Process::start(&db, &mercure_env()).await;
    let mut sse = mercure_open(&second.base, "topic=t", Some(&publisher()), Some("urn:one")).await;
    assert_eq!(sse.headers["last-event-id"], "urn:one");
    let two = sse.next_message().await;
    assert_eq!((two.id.as_str(), two.data.as_str()), ("urn:two", "2"));
    assert_eq!(sse.next_message().await.data, "3");
}
