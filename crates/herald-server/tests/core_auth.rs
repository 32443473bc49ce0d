//! Subscriber and publisher authentication over real HTTP: every refusal is a problem document
//! with its own type, tokens are accepted from the header, the cookie and the query, channel
//! permissions (exact and `prefix*`), RS256 apps, and a stream closed when its token expires.

mod common;

use base64::Engine;
use common::*;
use herald::config::AppConfig;
use serde_json::{json, Value};

/// A test-only RSA key pair. The public key's base64 happens to contain `EC` and not `RSA`,
/// which once made the hub mistake it for an EC key.
const RSA_PRIVATE: &str = include_str!("fixtures/rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("fixtures/rsa-public.pem");

fn rs256(claims: Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key).unwrap()
}

fn b64(value: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Opens `/events` with `query` and returns (status, problem document); checks the content type.
async fn refused(base: &str, query: &str) -> (u16, Value) {
    let r = client().get(format!("{base}/events?{query}")).send().await.unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    assert_eq!(content_type, "application/problem+json", "status {status} for {query}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], status, "{body}");
    assert!(body["title"].is_string() && body["detail"].is_string(), "{body}");
    (status, body)
}

fn kind(problem: &Value) -> &str {
    problem["type"].as_str().unwrap().rsplit(':').next().unwrap()
}

#[tokio::test]
async fn each_bad_token_is_refused_with_its_reason() {
    let hub = TestHub::start(config()).await;
    let exp = now_secs() + 600;
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("no token", String::new(), 401, "token-missing"),
        (
            "bad signature",
            token_with("another-secret-0123456789", json!({"sub": "42", "exp": exp})),
            401,
            "token-bad-signature",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&json!({"sub": "42", "exp": exp, "channels": ["*"]}))
            ),
            401,
            "token-algorithm-refused",
        ),
        (
            "alg None with a signature",
            format!("{}.{}.c2ln", b64(&json!({"alg": "None"})), b64(&json!({"sub": "42", "exp": exp}))),
            401,
            "token-algorithm-refused",
        ),
        ("expired", token_with(JWT_SECRET, json!({"sub": "42", "exp": now_secs() - 120})), 401, "token-expired"),
        ("missing sub", token_with(JWT_SECRET, json!({"exp": exp, "channels": ["*"]})), 401, "token-missing-subject"),
        ("empty sub", token_with(JWT_SECRET, json!({"sub": "", "exp": exp})), 401, "token-missing-subject"),
        ("RS256 token for an HS256 app", rs256(json!({"sub": "42", "exp": exp})), 401, "token-algorithm-refused"),
        ("garbage", "not.a.jwt".into(), 401, "token-malformed"),
        (
            "tampered claims",
            {
                let good = token("42", json!({}));
                let parts: Vec<&str> = good.split('.').collect();
                format!("{}.{}.{}", parts[0], b64(&json!({"sub": "admin", "exp": exp, "channels": ["*"]})), parts[2])
            },
            401,
            "token-bad-signature",
        ),
    ];
    for (what, jwt, status, expected) in cases {
        let query = if jwt.is_empty() { String::new() } else { format!("access_token={jwt}") };
        let (got, problem) = refused(&hub.base, &query).await;
        assert_eq!((got, kind(&problem)), (status, expected), "{what}: {problem}");
    }
    // None of them got a connection.
    let (_, listed) = api_get(&hub.base, "/api/connections").await;
    assert_eq!(listed["connections"], json!([]));
    assert_eq!(metric(&hub.base, "connects_total").await, 0);
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn tokens_are_accepted_from_header_cookie_and_query() {
    let mut config = config();
    config.app.cookie_name = "sess_jwt".into();
    let hub = TestHub::start(config).await;
    let by_header =
        Sse::from_request(client().get(hub.url("/events")).bearer_auth(token("from-header", json!({})))).await;
    let by_cookie = Sse::from_request(
        client()
            .get(hub.url("/events"))
            .header("cookie", format!("theme=dark; sess_jwt={}; other=1", token("from-cookie", json!({})))),
    )
    .await;
    let by_query = Sse::open(&hub.base, &format!("access_token={}", token("from-query", json!({}))), None).await;
    for (mut sse, user) in [(by_header, "from-header"), (by_cookie, "from-cookie"), (by_query, "from-query")] {
        assert_eq!(sse.status, 200, "{user}");
        let connected: Value = serde_json::from_str(&sse.next().await.data).unwrap();
        assert_eq!(connected["user"], user);
    }
    // The default cookie name is not read when the app names another.
    let wrong_cookie = client()
        .get(hub.url("/events"))
        .header("cookie", format!("herald_token={}", token("x", json!({}))))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_cookie.status(), 401);
    // The header wins over the query: a bad header token is refused even with a good query one.
    let r = client()
        .get(hub.url(&format!("/events?access_token={}", token("q", json!({})))))
        .bearer_auth(token_with("another-secret-0123456789", json!({"sub": "h"})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn channels_are_allowed_exactly_or_by_prefix() {
    let hub = TestHub::start(config()).await;
    let jwt = token("42", json!({"channels": ["orders.*", "news"]}));
    for allowed in ["orders.7", "orders.", "news"] {
        let (mut sse, _) = Sse::connect(&hub.base, &format!("access_token={jwt}&channel={allowed}")).await;
        let (status, body) =
            publish(&hub.base, json!({"to": {"channels": [allowed]}, "event": "CH", "data": allowed})).await;
        assert_eq!((status, body["delivered"].as_u64()), (200, Some(1)), "{allowed}: {body}");
        assert_eq!(sse.next_message().await.data, allowed);
    }
    for forbidden in ["newsroom", "order", "orders", "ORDERS.1", "new"] {
        let (status, problem) = refused(&hub.base, &format!("access_token={jwt}&channel={forbidden}")).await;
        assert_eq!((status, kind(&problem)), (403, "channel-forbidden"), "{forbidden}");
        assert!(problem["detail"].as_str().unwrap().contains(forbidden), "{problem}");
    }
    // One forbidden channel among allowed ones refuses the whole stream.
    let (status, _) = refused(&hub.base, &format!("access_token={jwt}&channel=news&channel=secret")).await;
    assert_eq!(status, 403);
    // No channels claim: no channel at all, but the user's own stream is fine.
    let bare = token_with(JWT_SECRET, json!({"sub": "7", "exp": now_secs() + 600}));
    assert_eq!(refused(&hub.base, &format!("access_token={bare}&channel=news")).await.0, 403);
    Sse::connect(&hub.base, &format!("access_token={bare}")).await;
    // `*` allows everything; a `*` in a requested channel name is refused.
    let all = token("8", json!({"channels": ["*"]}));
    Sse::connect(&hub.base, &format!("access_token={all}&channel=anything.at.all")).await;
    assert_eq!(refused(&hub.base, &format!("access_token={all}&channel=orders.*")).await.0, 400);
    hub.shutdown().await.unwrap();
}

fn rs256_config() -> herald::config::Config {
    let mut config = config();
    config.app =
        AppConfig { api_key: Some(API_KEY.into()), jwt_public_key: Some(RSA_PUBLIC.into()), ..AppConfig::default() };
    config
}

#[tokio::test]
async fn an_rs256_app_accepts_its_tokens_and_refuses_key_confusion() {
    let hub = TestHub::start(rs256_config()).await;
    let exp = now_secs() + 600;
    let (mut sse, connected) =
        Sse::connect(&hub.base, &format!("access_token={}", rs256(json!({"sub": "rsa-user", "exp": exp})))).await;
    assert_eq!(connected["user"], "rsa-user");
    publish(&hub.base, json!({"to": {"users": ["rsa-user"]}, "data": "hi"})).await;
    assert_eq!(sse.next_message().await.data, "hi");
    // HS256 signed with the public key as the secret: the classic key-confusion forgery.
    let forged = token_with(RSA_PUBLIC, json!({"sub": "rsa-user", "exp": exp}));
    let (status, problem) = refused(&hub.base, &format!("access_token={forged}")).await;
    assert_eq!((status, kind(&problem)), (401, "token-algorithm-refused"));
    let expired = rs256(json!({"sub": "rsa-user", "exp": now_secs() - 120}));
    assert_eq!(kind(&refused(&hub.base, &format!("access_token={expired}")).await.1), "token-expired");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_expiring_token_closes_its_stream() {
    let mut config = config();
    config.heartbeat_secs = 1;
    let hub = TestHub::start(config).await;
    let short = token_with(JWT_SECRET, json!({"sub": "42", "exp": now_secs() + 2}));
    let (mut expiring, connected) = Sse::connect(&hub.base, &format!("access_token={short}")).await;
    let (mut lasting, _) = Sse::connect(&hub.base, &format!("access_token={}", token("42", json!({})))).await;
    expiring.ended().await;
    assert_eq!(metric(&hub.base, "expired_tokens_total").await, 1);
    let (_, user) = api_get(&hub.base, "/api/users/42").await;
    let ids: Vec<&str> = user["connections"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "{user}");
    assert_ne!(ids[0], connected["connection_id"].as_str().unwrap());
    // The other stream of the same user is untouched.
    publish(&hub.base, json!({"to": {"users": ["42"]}, "data": "still here"})).await;
    assert_eq!(lasting.next_message().await.data, "still here");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_backend_api_needs_the_api_key() {
    let hub = TestHub::start(config()).await;
    let body = json!({"to": {"all": true}, "data": "x"});
    for (what, request) in [
        ("no key", client().post(hub.url("/api/publish")).json(&body)),
        ("wrong key", client().post(hub.url("/api/publish")).bearer_auth("wrong-key-0123456789").json(&body)),
        ("a user token", client().post(hub.url("/api/publish")).bearer_auth(token("42", json!({}))).json(&body)),
        ("basic auth", client().post(hub.url("/api/publish")).basic_auth("user", Some(API_KEY)).json(&body)),
        ("listing without key", client().get(hub.url("/api/connections"))),
        ("presence without key", client().get(hub.url("/api/presence"))),
        ("kick without key", client().delete(hub.url("/api/users/42/connections"))),
    ] {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 401, "{what}");
        assert_eq!(r.headers()["content-type"], "application/problem+json", "{what}");
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["status"], 401, "{what}");
    }
    assert_eq!(metric(&hub.base, "publishes_total").await, 0);
    hub.shutdown().await.unwrap();
}
