//! CORS against hostile origins, on both stream paths: plain HTTP/1.1 `GET /events` (the direct
//! fast path) and HTTP/2 (hyper). An origin is allowed only by the app the request addresses,
//! `*` never comes with credentials, `/api/*` allows no browser, and both paths send one head.

mod common;

use common::*;
use herald::config::{AppConfig, Config};
use reqwest::header::HeaderMap;
use serde_json::json;

const A: &str = "https://a.example";
const B: &str = "https://b.example";
const EVIL: &str = "https://evil.example";
const OPEN_SECRET: &str = "open-jwt-secret-0123456789";

/// `default` allows origin A, `hr` origin B, and `open` any origin.
fn cors_apps() -> Config {
    let mut config = two_apps();
    config.app.cors_origins = vec![A.into()];
    config.apps[0].cors_origins = vec![B.into()];
    config.apps.push(AppConfig {
        id: "open".into(),
        jwt_secret: Some(OPEN_SECRET.into()),
        cors_origins: vec!["*".into()],
        ..AppConfig::default()
    });
    config
}

/// A valid token of `app`.
fn token_of(app: &str) -> String {
    let secret = match app {
        "hr" => "hr-jwt-secret-0123456789",
        "open" => OPEN_SECRET,
        _ => JWT_SECRET,
    };
    token_with(secret, json!({"sub": "u", "exp": now_secs() + 600, "channels": ["*"]}))
}

/// The two stream paths: HTTP/1.1 (direct for `GET /events`) and HTTP/2 (hyper).
fn paths() -> [(&'static str, reqwest::Client); 2] {
    [("http/1.1", client()), ("h2", reqwest::Client::builder().http2_prior_knowledge().build().unwrap())]
}

/// The head of `GET /events?{query}` sent from `origin` (dropping the body, whatever it is).
async fn events_head(client: &reqwest::Client, base: &str, query: &str, origin: &str) -> (u16, HeaderMap) {
    let r = client.get(format!("{base}/events?{query}")).header("origin", origin).send().await.unwrap();
    (r.status().as_u16(), r.headers().clone())
}

/// A preflight of `method` to `path` from `origin`.
async fn preflight(base: &str, path: &str, origin: &str, method: &str) -> (u16, HeaderMap) {
    let r = client()
        .request(reqwest::Method::OPTIONS, format!("{base}{path}"))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "authorization, x-herald-app")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.headers().clone())
}

fn no_cors(headers: &HeaderMap, what: &str) {
    let cors: Vec<_> = headers.keys().filter(|k| k.as_str().starts_with("access-control-")).collect();
    assert!(cors.is_empty(), "{what}: CORS headers {cors:?} in {headers:?}");
}

fn reflected_with_credentials(headers: &HeaderMap, origin: &str, what: &str) {
    assert_eq!(headers.get("access-control-allow-origin").map(|v| v.to_str().unwrap()), Some(origin), "{what}");
    assert_eq!(headers["access-control-allow-credentials"], "true", "{what}");
    assert!(headers.get_all("vary").iter().any(|v| v.to_str().unwrap().to_lowercase().contains("origin")), "{what}");
}

#[tokio::test]
async fn an_origin_of_another_app_gets_no_cors() {
    let hub = TestHub::start(cors_apps()).await;
    for (path, client) in paths() {
        // B is hr's origin: a stream of the default app from B is not readable by B's pages.
        let (status, headers) =
            events_head(&client, &hub.base, &format!("access_token={}", token_of("default")), B).await;
        assert_eq!(status, 200, "{path}");
        no_cors(&headers, &format!("{path}: default stream from B"));
        let query = format!("app=hr&access_token={}", token_of("hr"));
        let (status, headers) = events_head(&client, &hub.base, &query, A).await;
        assert_eq!(status, 200, "{path}");
        no_cors(&headers, &format!("{path}: hr stream from A"));
        // Refusals too.
        let (status, headers) = events_head(&client, &hub.base, "app=hr", A).await;
        assert_eq!(status, 401, "{path}");
        no_cors(&headers, &format!("{path}: hr refusal from A"));
        let (_, headers) = events_head(&client, &hub.base, "", EVIL).await;
        no_cors(&headers, &format!("{path}: refusal from an unlisted origin"));
    }
    // Preflights name their app in the query.
    for (path, origin) in [("/events", B), ("/poll", B), ("/ack", B), ("/events?app=hr", A), ("/ack?app=hr", A)] {
        let (_, headers) = preflight(&hub.base, path, origin, "POST").await;
        no_cors(&headers, &format!("preflight {path} from {origin}"));
    }
    // Simple requests name it by header as well.
    let r = client()
        .get(hub.url("/poll?timeout=0"))
        .header("origin", A)
        .header("x-herald-app", "hr")
        .bearer_auth(token_of("hr"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    no_cors(r.headers(), "hr poll from A");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_listed_origin_of_the_addressed_app_is_reflected_with_credentials() {
    let hub = TestHub::start(cors_apps()).await;
    for (path, client) in paths() {
        let query = format!("access_token={}", token_of("default"));
        let (status, headers) = events_head(&client, &hub.base, &query, A).await;
        assert_eq!(status, 200, "{path}");
        reflected_with_credentials(&headers, A, &format!("{path}: default stream from A"));
        let query = format!("app=hr&access_token={}", token_of("hr"));
        let (_, headers) = events_head(&client, &hub.base, &query, B).await;
        reflected_with_credentials(&headers, B, &format!("{path}: hr stream from B"));
        // A refusal is readable by the page, so it can tell why.
        let (status, headers) = events_head(&client, &hub.base, "app=hr", B).await;
        assert_eq!(status, 401, "{path}");
        reflected_with_credentials(&headers, B, &format!("{path}: hr refusal from B"));
    }
    for (path, origin) in [("/events", A), ("/ack", A), ("/poll?app=hr", B), ("/send/x?app=hr", B)] {
        let (status, headers) = preflight(&hub.base, path, origin, "POST").await;
        assert_eq!(status, 204, "{path}");
        reflected_with_credentials(&headers, origin, &format!("preflight {path}"));
        let methods = headers["access-control-allow-methods"].to_str().unwrap();
        assert!(methods.contains("GET") && methods.contains("POST"), "{methods}");
        let allowed = headers["access-control-allow-headers"].to_str().unwrap();
        for header in ["authorization", "x-herald-app", "last-event-id", "idempotency-key"] {
            assert!(allowed.contains(header), "{header} not in {allowed}");
        }
    }
    let r = client()
        .get(hub.url("/poll?timeout=0"))
        .header("origin", B)
        .header("x-herald-app", "hr")
        .bearer_auth(token_of("hr"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    reflected_with_credentials(r.headers(), B, "hr poll from B, app by header");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_wildcard_allows_any_origin_but_never_with_credentials() {
    let hub = TestHub::start(cors_apps()).await;
    let wildcard = |headers: &HeaderMap, what: &str| {
        assert_eq!(headers.get("access-control-allow-origin").map(|v| v.to_str().unwrap()), Some("*"), "{what}");
        assert!(headers.get("access-control-allow-credentials").is_none(), "{what}: credentials with *");
    };
    for (path, client) in paths() {
        let query = format!("app=open&access_token={}", token_of("open"));
        let (status, headers) = events_head(&client, &hub.base, &query, EVIL).await;
        assert_eq!(status, 200, "{path}");
        wildcard(&headers, &format!("{path}: stream"));
        let (status, headers) = events_head(&client, &hub.base, "app=open", EVIL).await;
        assert_eq!(status, 401, "{path}");
        wildcard(&headers, &format!("{path}: refusal"));
    }
    let (status, headers) = preflight(&hub.base, "/events?app=open", EVIL, "GET").await;
    assert_eq!(status, 204);
    wildcard(&headers, "preflight");
    // `*` in one app opens no other app.
    let (_, headers) = preflight(&hub.base, "/events", EVIL, "GET").await;
    no_cors(&headers, "preflight of the default app");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_backend_api_allows_no_browser() {
    let hub = TestHub::start(cors_apps()).await;
    let r = client()
        .post(hub.url("/api/publish"))
        .header("origin", A)
        .bearer_auth(API_KEY)
        .json(&json!({"to": {"all": true}, "data": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    no_cors(r.headers(), "publish from A");
    for origin in [A, EVIL] {
        let (_, headers) = preflight(&hub.base, "/api/publish", origin, "POST").await;
        no_cors(&headers, &format!("preflight of /api from {origin}"));
        let (_, headers) = preflight(&hub.base, "/api/publish?app=open", origin, "POST").await;
        no_cors(&headers, &format!("preflight of /api?app=open from {origin}"));
    }
    hub.shutdown().await.unwrap();
}

/// The head without what the transport adds on its own.
fn comparable(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "date" | "connection" | "content-length" | "transfer-encoding"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    pairs.sort();
    pairs
}

#[tokio::test]
async fn both_stream_paths_send_the_same_head() {
    let hub = TestHub::start(cors_apps()).await;
    let [(_, h1), (_, h2)] = paths();
    for (query, origin) in [
        (format!("access_token={}", token_of("default")), A),
        (format!("access_token={}", token_of("default")), B),
        (format!("app=open&access_token={}", token_of("open")), EVIL),
        ("app=hr".to_string(), B),
        (String::new(), A),
    ] {
        let (direct_status, direct) = events_head(&h1, &hub.base, &query, origin).await;
        let (hyper_status, hyper) = events_head(&h2, &hub.base, &query, origin).await;
        // Only the direct path closes the connection after a stream: it did answer this one.
        assert_eq!(direct["connection"], "close", "{query}");
        assert_eq!(direct_status, hyper_status, "{query} from {origin}");
        assert_eq!(comparable(&direct), comparable(&hyper), "{query} from {origin}");
    }
    hub.shutdown().await.unwrap();
}
