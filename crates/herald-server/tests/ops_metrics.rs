//! `/metrics` and `/readyz` on a live server: the exposition passes `promtool check metrics`
//! after real traffic and shows per-app series and histograms; two hubs in one process count
//! apart; `/readyz` follows the store and Redis.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use herald::config::{Config, StoreKind};
use serde_json::json;

async fn exposition(base: &str) -> (String, String) {
    let r = client().get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    (content_type, r.text().await.unwrap())
}

/// The value of the series written exactly as `series` (name and labels in exposition order).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .parse()
        .unwrap()
}

/// Runs `promtool check metrics` on `text`; panics with its findings, or if it is missing.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `promtool` ({e}): `apt-get install prometheus`, or run scripts/test, which installs it")
        });
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let findings = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && findings.trim().is_empty(), "promtool check metrics: {findings}\n{text}");
}

#[tokio::test]
async fn the_exposition_after_real_traffic_passes_promtool_with_per_app_series_and_histograms() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = two_apps();
    config.store = StoreKind::Sqlite;
    config.store_path = temp_db(&dir);
    let hub = TestHub::start(config).await;
    let base = hub.base.as_str();

    let (mut sse, _) = Sse::connect(base, &format!("access_token={}", token("ann", json!({})))).await;
    let (status, first) = publish(base, json!({"to": {"users": ["ann"]}, "data": "one"})).await;
    assert_eq!(status, 200, "{first}");
    sse.next_message().await;
    let (status, _) = publish(base, json!({"to": {"channels": ["news"]}, "data": "two"})).await;
    assert_eq!(status, 200);
    let (status, _) = publish(base, json!({"to": {"users": ["ann"]}, "data": "kept", "durable": true})).await;
    assert_eq!(status, 200);
    sse.next_message().await;
    let (status, _) = publish(base, json!({"to": {"users": ["ann"]}, "event": "herald.x", "data": "no"})).await;
    assert_eq!(status, 400, "a reserved event name is refused");
    // A resume from a known id, and one from an id the hub cannot resume.
    let query = format!("access_token={}", token("bob", json!({})));
    let resumed = Sse::open(base, &query, Some(first["id"].as_str().unwrap())).await;
    let reset = Sse::open(base, &query, Some("nope-1")).await;
    let kicked = client().delete(format!("{base}/api/users/bob/connections")).bearer_auth(API_KEY).send().await;
    assert_eq!(kicked.unwrap().status(), 200);
    drop((resumed, reset));

    let (content_type, text) = exposition(base).await;
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let d = r#"app="default""#;
    assert_eq!(value(&text, &format!(r#"herald_publishes_total{{{d},outcome="ok",target="users"}}"#)), 2.0);
    assert_eq!(value(&text, &format!(r#"herald_publishes_total{{{d},outcome="ok",target="channels"}}"#)), 1.0);
    assert_eq!(value(&text, &format!(r#"herald_publishes_total{{{d},outcome="invalid",target="users"}}"#)), 1.0);
    assert_eq!(value(&text, &format!("herald_deliveries_total{{{d}}}")), 2.0);
    assert_eq!(value(&text, &format!("herald_durable_commits_total{{{d}}}")), 1.0);
    assert_eq!(value(&text, &format!("herald_inbox_messages{{{d}}}")), 1.0, "ann has not acknowledged");
    assert_eq!(value(&text, &format!("herald_connections{{{d}}}")), 1.0);
    assert_eq!(value(&text, &format!("herald_users_online{{{d}}}")), 1.0);
    assert_eq!(value(&text, &format!("herald_resumes_total{{{d}}}")), 1.0);
    assert_eq!(value(&text, &format!("herald_resets_total{{{d}}}")), 1.0);
    assert_eq!(value(&text, &format!("herald_kicks_total{{{d}}}")), 2.0);
    assert!(value(&text, &format!("herald_bytes_written_total{{{d}}}")) > 0.0);
    assert_eq!(
        value(&text, &format!("herald_publish_duration_seconds_count{{{d}}}")),
        3.0,
        "refused ones are not timed"
    );
    assert_eq!(value(&text, &format!("herald_store_commit_seconds_count{{{d}}}")), 1.0);
    assert!(value(&text, &format!("herald_publish_to_write_seconds_count{{{d}}}")) >= 2.0);
    assert!(text.contains(&format!(r#"herald_publish_duration_seconds_bucket{{{d},le="0.001"}}"#)));
    // The other app has its own series, untouched.
    assert_eq!(value(&text, r#"herald_publishes_total{app="hr",outcome="ok",target="users"}"#), 0.0);
    assert_eq!(value(&text, r#"herald_connections{app="hr"}"#), 0.0);
    promtool_check(&text);

    // The in-process snapshot a dashboard reads agrees.
    let snapshot = hub.hub.metrics_snapshot();
    let default = snapshot.iter().find(|s| s.app == "default").unwrap();
    assert_eq!((default.publishes, default.publishes_ok, default.deliveries, default.connections), (4, 3, 2, 1));
    drop(sse);
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn two_hubs_in_one_process_count_apart() {
    let (one, two) = (TestHub::start(config()).await, TestHub::start(config()).await);
    let (status, _) = publish(&one.base, json!({"to": {"all": true}, "data": "x"})).await;
    assert_eq!(status, 200);
    assert_eq!(metric(&one.base, "publishes_total").await, 1);
    assert_eq!(metric(&two.base, "publishes_total").await, 0);
}

#[tokio::test]
async fn readyz_answers_200_when_the_store_answers() {
    let hub = TestHub::start(config()).await;
    let r = client().get(hub.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["status"], "ready");
}

/// A node whose Redis user may not subscribe to the bus channels works on keys but hears
/// nothing: it is not ready until it is let in and subscribes.
#[tokio::test]
async fn readyz_waits_until_the_node_hears_the_cluster_bus() {
    let redis = Redis::start().await;
    let created = redis.command("ACL SETUSER herald on >bus-test ~* resetchannels +@all").await;
    assert_eq!(created.as_deref(), Some("+OK\r\n"));
    let url = format!("redis://herald:bus-test@127.0.0.1:{}", redis.port);
    let hub = TestHub::start(Config { redis_url: Some(url), ..config() }).await;
    let ready = || async { client().get(hub.url("/readyz")).send().await.unwrap() };
    let r = ready().await;
    assert_eq!(r.status(), 503);
    let problem: serde_json::Value = r.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("bus"), "{problem}");
    // The store answers meanwhile: only the bus is missing.
    let (status, _) = api_get(&hub.base, "/api/users/ann/unread").await;
    assert_eq!(status, 200);

    assert_eq!(redis.command("ACL SETUSER herald allchannels").await.as_deref(), Some("+OK\r\n"));
    eventually("/readyz is 200 once the node subscribed", || async { ready().await.status() == 200 }).await;
}

#[tokio::test]
async fn readyz_follows_redis_and_says_what_is_not_ready() {
    let mut redis = Redis::start().await;
    let config = Config { redis_url: Some(redis.url()), ..config() };
    let hub = TestHub::start(config).await;
    let ready = || async { client().get(hub.url("/readyz")).send().await.unwrap() };
    eventually("/readyz is 200 once the node hears the bus", || async { ready().await.status() == 200 }).await;
    let (mut sse, _) = Sse::connect(&hub.base, &format!("access_token={}", token("ann", json!({})))).await;
    // Ready means subscribed: the first publish comes back over the bus, which times its lag
    // (`herald_bus_lag_seconds`), rather than through a catch-up.
    let lag = r#"herald_bus_lag_seconds_count{app="default"}"#;
    let (status, _) = publish(&hub.base, json!({"to": {"users": ["ann"]}, "data": "via redis"})).await;
    assert_eq!(status, 200);
    sse.next_message().await;
    let over_bus = value(&exposition(&hub.base).await.1, lag);
    assert_eq!(over_bus, 1.0, "the publish came back over the bus");

    redis.stop().await;
    let (status, _) = publish(&hub.base, json!({"to": {"users": ["ann"]}, "data": "lost"})).await;
    assert_eq!(status, 503, "Redis is down");
    // The cluster's series, after a publish through Redis and one that failed.
    let (_, text) = exposition(&hub.base).await;
    let d = r#"app="default""#;
    assert!(value(&text, &format!(r#"herald_redis_duration_seconds_count{{{d},op="publish"}}"#)) >= 2.0);
    assert!(value(&text, &format!(r#"herald_redis_errors_total{{{d},op="publish"}}"#)) >= 1.0);
    assert!(value(&text, lag) >= over_bus, "the bus lag series lost counts");
    assert_eq!(value(&text, &format!(r#"herald_publishes_total{{{d},outcome="failed",target="users"}}"#)), 1.0);
    promtool_check(&text);
    let r = ready().await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["type"], "urn:herald:problem:not-ready");
    assert!(problem["detail"].as_str().unwrap().contains("store"), "{problem}");
    // /healthz is liveness only: the process is up.
    assert_eq!(client().get(hub.url("/healthz")).send().await.unwrap().status(), 200);

    redis.restart().await;
    eventually("/readyz is 200 again once Redis is back", || async { ready().await.status() == 200 }).await;
}
