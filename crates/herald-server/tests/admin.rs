//! The admin dashboard's security rules, over real HTTP: off when nobody can sign in, throttled
//! sign-ins, the session cookie's flags, CSRF and Origin checks on every change, and a session
//! signed in with an app's key that sees nothing of another app.

mod common;

use std::net::IpAddr;
use std::process::Command;

use common::*;
use serde_json::{json, Value};

const PASSWORD: &str = "admin-password-0123456789";
const HR_KEY: &str = "hr-api-key-0123456789";

fn with_password(mut config: herald::config::Config) -> herald::config::Config {
    config.admin_password = Some(PASSWORD.into());
    config
}

/// A client whose requests come from `ip` (any 127.0.0.0/8 address reaches the hub).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(ip.parse::<IpAddr>().unwrap()).build().unwrap()
}

/// The answer to a sign-in: status, `Set-Cookie`, body.
async fn sign_in_from(client: &reqwest::Client, hub: &TestHub, password: &str) -> (u16, Option<String>, Value) {
    let r = client
        .post(hub.url("/admin/api/session"))
        .header("origin", &hub.base)
        .json(&json!({ "password": password }))
        .send()
        .await
        .unwrap();
    let cookie = r.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), cookie, r.json().await.unwrap_or(Value::Null))
}

/// A signed-in session: its cookie (`name=value`) and CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

async fn sign_in(hub: &TestHub, password: &str) -> Session {
    let (status, cookie, body) = sign_in_from(&client(), hub, password).await;
    assert_eq!(status, 200, "{body}");
    let cookie = cookie.unwrap().split(';').next().unwrap().to_string();
    Session { cookie, csrf: body["csrf"].as_str().unwrap().to_string() }
}

impl Session {
    async fn get(&self, hub: &TestHub, path: &str) -> (u16, Value) {
        let r = client().get(hub.url(path)).header("cookie", &self.cookie).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// A change as the dashboard's page sends it: same origin, with the CSRF token.
    async fn post(&self, hub: &TestHub, path: &str, body: Value) -> (u16, Value) {
        let r = client()
            .post(hub.url(path))
            .header("cookie", &self.cookie)
            .header("origin", &hub.base)
            .header("x-herald-csrf", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

fn problem_type(body: &Value) -> &str {
    body["type"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn without_a_password_or_any_api_key_the_dashboard_does_not_exist() {
    let mut keyless = config();
    keyless.app.api_key = None;
    let hub = TestHub::start(keyless).await;
    for path in ["/admin", "/admin/admin.js", "/admin/api/session", "/admin/api/overview"] {
        let r = client().get(hub.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    let r = client()
        .post(hub.url("/admin/api/session"))
        .header("origin", &hub.base)
        .json(&json!({ "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // An app's API key alone is enough to turn it on, for that app.
    let hub = TestHub::start(config()).await;
    let page = client().get(hub.url("/admin")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let slash = client().get(hub.url("/admin/")).send().await.unwrap();
    assert_eq!((slash.status().as_u16(), slash.url().path()), (200, "/admin"), "redirected to the page");
    let session = sign_in(&hub, API_KEY).await;
    assert_eq!(session.get(&hub, "/admin/api/session").await.1["scope"], "app");
}

#[tokio::test]
async fn the_session_cookie_is_httponly_strict_and_dies_with_sign_out() {
    let mut config = with_password(config());
    config.app.cors_origins = vec!["*".into()];
    let hub = TestHub::start(config).await;
    let (status, cookie, body) = sign_in_from(&client(), &hub, PASSWORD).await;
    assert_eq!(status, 200);
    assert_eq!(body["scope"], "admin");
    let cookie = cookie.unwrap();
    let id = cookie.split(';').next().unwrap().strip_prefix("herald_admin=").unwrap();
    assert_eq!(id.len(), 64, "a 256-bit random id: {cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age="] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP cannot keep a Secure cookie: {cookie}");

    // Behind a TLS-terminating proxy the page's origin is https: the cookie is Secure.
    let r = client()
        .post(hub.url("/admin/api/session"))
        .header("origin", format!("https://{}", hub.addr))
        .header("host", hub.addr.to_string())
        .json(&json!({ "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("; Secure"));

    // Every answer forbids framing and caching, and the dashboard gets no CORS from any app.
    let r = client()
        .get(hub.url("/admin/api/session"))
        .header("cookie", format!("herald_admin={id}"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let session = Session { cookie: format!("herald_admin={id}"), csrf: body["csrf"].as_str().unwrap().into() };
    let r = client()
        .delete(hub.url("/admin/api/session"))
        .header("cookie", &session.cookie)
        .header("origin", &hub.base)
        .header("x-herald-csrf", &session.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let (status, body) = session.get(&hub, "/admin/api/overview").await;
    assert_eq!((status, problem_type(&body)), (401, "urn:herald:problem:admin-session-missing"));
    let (status, _) =
        Session { cookie: "herald_admin=forged".into(), csrf: String::new() }.get(&hub, "/admin/api/overview").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_cookie_is_secure_when_the_hub_serves_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-subj", "/CN=localhost", "-days", "1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("`openssl` is needed for this test: run scripts/test, or `apt-get install openssl`");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let mut config = with_password(config());
    config.tls_cert = Some(cert.clone());
    config.tls_key = Some(key);
    let hub = TestHub::start(config).await;
    let (url, origin) = (hub.url("/admin/api/session"), hub.base.clone());
    let headers = tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-D", "-", "--cacert"])
            .arg(&cert)
            .args(["-H", &format!("Origin: {origin}"), "-H", "Content-Type: application/json"])
            .args(["--data", &json!({ "password": PASSWORD }).to_string(), &url])
            .output()
            .expect("`curl` is needed for this test: run scripts/test, or `apt-get install curl`");
        assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    })
    .await
    .unwrap();
    let cookie = headers.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).expect(&headers);
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("; Secure"),
        "{cookie}"
    );
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_address() {
    let hub = TestHub::start(with_password(config())).await;
    let attacker = client_from("127.0.0.1");
    for _ in 0..5 {
        let (status, cookie, body) = sign_in_from(&attacker, &hub, "wrong-password-guess").await;
        assert_eq!((status, problem_type(&body)), (401, "urn:herald:problem:sign-in-failed"));
        assert!(cookie.is_none());
    }
    let r = attacker
        .post(hub.url("/admin/api/session"))
        .header("origin", &hub.base)
        .json(&json!({ "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "even the right password waits out the window");
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(problem_type(&body), "urn:herald:problem:sign-in-throttled");
    assert!(body["detail"].as_str().unwrap().contains("from this address"), "{body}");

    // Another address is not held back by this one.
    let (status, _, _) = sign_in_from(&client_from("127.0.0.2"), &hub, PASSWORD).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_in_total() {
    let hub = TestHub::start(with_password(config())).await;
    // 100 failures spread over 20 addresses, 5 each: none is over its own limit.
    for i in 0..20 {
        let from = client_from(&format!("127.0.1.{}", i + 1));
        for _ in 0..5 {
            assert_eq!(sign_in_from(&from, &hub, "distributed-guess").await.0, 401);
        }
    }
    let (status, cookie, body) = sign_in_from(&client_from("127.0.2.1"), &hub, PASSWORD).await;
    assert_eq!((status, problem_type(&body)), (429, "urn:herald:problem:sign-in-throttled"));
    assert!(body["detail"].as_str().unwrap().contains("to this hub"), "{body}");
    assert!(cookie.is_none());
}

#[tokio::test]
async fn changes_need_the_csrf_token_and_the_dashboards_origin() {
    let hub = TestHub::start(with_password(config())).await;
    let session = sign_in(&hub, PASSWORD).await;
    let (_victim, data) = Sse::connect(&hub.base, &format!("access_token={}", token("victim", json!({})))).await;
    let conn = data["connection_id"].as_str().unwrap().to_string();
    let publishes = metric(&hub.base, "publishes_total").await;
    let publish = json!({ "to": { "all": true }, "data": "forged" });
    let kick = format!("/admin/api/apps/default/connections/{conn}/kick");

    let send = |path: &str, origin: Option<&str>, csrf: Option<&str>, body: &Value| {
        let mut r = client().post(hub.url(path)).header("cookie", &session.cookie).json(body);
        if let Some(origin) = origin {
            r = r.header("origin", origin);
        }
        if let Some(csrf) = csrf {
            r = r.header("x-herald-csrf", csrf);
        }
        r.send()
    };
    let wrong = "0".repeat(session.csrf.len());
    let cases = [
        (Some(hub.base.as_str()), None, "csrf-token-invalid"),
        (Some(hub.base.as_str()), Some(wrong.as_str()), "csrf-token-invalid"),
        (Some("https://evil.example"), Some(session.csrf.as_str()), "cross-origin-refused"),
        (None, Some(session.csrf.as_str()), "cross-origin-refused"),
    ];
    for (origin, csrf, kind) in cases {
        for (path, body) in [("/admin/api/apps/default/publish", &publish), (kick.as_str(), &json!({}))] {
            let r = send(path, origin, csrf, body).await.unwrap();
            assert_eq!(r.status(), 403, "{path} {origin:?} {csrf:?}");
            assert_eq!(r.headers()["content-type"], "application/problem+json");
            let body: Value = r.json().await.unwrap();
            assert_eq!(problem_type(&body), format!("urn:herald:problem:{kind}"), "{body}");
        }
    }
    // Nothing happened: no message, the connection is still open.
    assert_eq!(metric(&hub.base, "publishes_total").await, publishes);
    assert_eq!(api_get(&hub.base, "/api/users/victim").await.1["connections"].as_array().unwrap().len(), 1);

    // A sign-in from another site's page is refused too (login CSRF).
    let r = client()
        .post(hub.url("/admin/api/session"))
        .header("origin", "https://evil.example")
        .json(&json!({ "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());

    // The page's own request goes through.
    let (status, body) = session.post(&hub, "/admin/api/apps/default/publish", publish).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["delivered"], 1);
    let (status, body) = session.post(&hub, &kick, json!({ "reason": "bye" })).await;
    assert_eq!((status, body), (200, json!({ "kicked": 1 })));
}

#[tokio::test]
async fn an_app_key_sees_only_its_app_and_the_password_sees_all() {
    let hub = TestHub::start(with_password(two_apps())).await;
    let (_sse, _) = Sse::connect(&hub.base, &format!("access_token={}&channel=payroll", token("ceo", json!({})))).await;
    let hr = sign_in(&hub, HR_KEY).await;
    let (_, me) = hr.get(&hub, "/admin/api/session").await;
    assert_eq!((me["scope"].clone(), me["apps"].clone()), (json!("app"), json!(["hr"])));

    for path in [
        "/admin/api/apps/default/users",
        "/admin/api/apps/default/channels",
        "/admin/api/apps/default/channels/payroll/history",
        "/admin/api/apps/default/channels/payroll/live",
        "/admin/api/apps/default/users/ceo/messages",
        "/admin/api/overview?app=default",
        "/admin/api/stream?app=default",
        "/admin/api/apps/nonexistent/users",
    ] {
        let (status, body) = hr.get(&hub, path).await;
        assert_eq!((status, problem_type(&body)), (404, "urn:herald:problem:not-found"), "{path}");
    }
    for (path, body) in [
        ("/admin/api/apps/default/publish", json!({ "to": { "all": true }, "data": "x" })),
        ("/admin/api/apps/default/users/ceo/kick", json!({})),
        ("/admin/api/apps/default/users/ceo/ack", json!({ "ids": [] })),
    ] {
        assert_eq!(hr.post(&hub, path, body).await.0, 404, "{path}");
    }
    assert_eq!(api_get(&hub.base, "/api/users/ceo").await.1["connections"].as_array().unwrap().len(), 1);

    // Its own app answers; the overview without `app=` is that app's alone.
    let (status, users) = hr.get(&hub, "/admin/api/apps/hr/users").await;
    assert_eq!((status, users["total"].clone()), (200, json!(0)));
    let (_, overview) = hr.get(&hub, "/admin/api/overview").await;
    assert_eq!(overview["apps"], json!([{ "id": "hr", "connections": 0, "users": 0 }]));
    assert_eq!(overview["nodes"][0]["connections"], 0);
    assert!(
        overview["nodes"][0]["deliveries_per_sec"].is_null() && overview["nodes"][0]["slow_client_drops"].is_null()
    );

    // The admin password sees both apps, and the user.
    let admin = sign_in(&hub, PASSWORD).await;
    assert_eq!(admin.get(&hub, "/admin/api/session").await.1["apps"], json!(["default", "hr"]));
    let (_, users) = admin.get(&hub, "/admin/api/apps/default/users?q=CE").await;
    assert_eq!(users["users"][0]["id"], "ceo");
    assert_eq!(users["users"][0]["connections"][0]["channels"], json!(["payroll"]));
    let (_, channels) = admin.get(&hub, "/admin/api/apps/default/channels").await;
    assert_eq!(channels["channels"], json!([{ "name": "payroll", "subscribers": 1, "users": 1 }]));
    let (_, overview) = admin.get(&hub, "/admin/api/overview").await;
    assert_eq!(
        (overview["nodes"][0]["connections"].clone(), overview["nodes"][0]["users"].clone()),
        (json!(1), json!(1))
    );
}

#[tokio::test]
async fn every_admin_error_is_a_problem_document() {
    let hub = TestHub::start(with_password(config())).await;
    let session = sign_in(&hub, PASSWORD).await;
    for (status, body) in [
        session.get(&hub, "/admin/api/apps/default/users?limit=0").await,
        session.get(&hub, "/admin/api/apps/default/users/u/messages?state=maybe").await,
        session.post(&hub, "/admin/api/apps/default/publish", json!({ "to": {}, "data": "x" })).await,
        session.post(&hub, "/admin/api/apps/default/publish", json!({ "to": { "all": true } })).await,
        session.post(&hub, "/admin/api/apps/default/connections/nope-1/kick", json!({})).await,
        session.post(&hub, "/admin/api/apps/default/users/u/kick", json!({ "why": "unknown field" })).await,
        session.get(&hub, "/admin/api/nothing-here").await,
    ] {
        assert!((400..500).contains(&status), "{status} {body}");
        assert!(body["type"].as_str().unwrap().starts_with("urn:herald:problem:"), "{body}");
        assert!(!body["detail"].as_str().unwrap().is_empty(), "{body}");
    }
    let r = client().post(hub.url("/admin/api/session")).header("origin", &hub.base).body("{").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_the_overview_lists_the_other_nodes_and_kicks_reach_them() {
    let mut redis = Redis::start().await;
    let url = redis.url();
    let clustered = || {
        let mut config = with_password(config());
        config.redis_url = Some(url.clone());
        config
    };
    let (a, b) = (TestHub::start(clustered()).await, TestHub::start(clustered()).await);
    let (mut on_b, data) = Sse::connect(&b.base, &format!("access_token={}", token("bea", json!({})))).await;
    let conn = data["connection_id"].as_str().unwrap().to_string();
    let node_b = conn.rsplit_once('-').unwrap().0.to_string();

    let session = sign_in(&a, PASSWORD).await;
    // Presence reaches Redis on its own schedule: wait for B's connection to show.
    let deadline = tokio::time::Instant::now() + WAIT;
    let overview = loop {
        let (_, overview) = session.get(&a, "/admin/api/overview").await;
        if overview["nodes"].as_array().is_some_and(|n| n.len() == 2) {
            break overview;
        }
        assert!(tokio::time::Instant::now() < deadline, "node b never showed in a's overview: {overview}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let (this, other) = (&overview["nodes"][0], &overview["nodes"][1]);
    assert_eq!((this["this_node"].clone(), this["connections"].clone()), (json!(true), json!(0)));
    assert_eq!((this["store"]["kind"].clone(), this["store"]["healthy"].clone()), (json!("redis"), json!(true)));
    assert_eq!(overview["cluster"], true);
    assert_eq!(
        (other["id"].as_str(), other["this_node"].clone(), other["connections"].clone(), other["users"].clone()),
        (Some(node_b.as_str()), json!(false), json!(1), json!(1))
    );

    // A's dashboard lists and kicks a connection that B holds.
    let (_, users) = session.get(&a, "/admin/api/apps/default/users").await;
    assert_eq!(users["users"][0]["connections"][0]["id"], conn.as_str());
    let (status, body) = session.post(&a, "/admin/api/apps/default/users/bea/kick", json!({ "reason": "moved" })).await;
    assert_eq!((status, body), (200, json!({ "kicked": 1 })));
    assert_eq!(on_b.until("herald.kicked").await.data, r#"{"reason":"moved"}"#);
    on_b.ended().await;

    // With Redis gone, the overview still shows this node, its store down, and says why.
    redis.stop().await;
    let (status, overview) = session.get(&a, "/admin/api/overview").await;
    assert_eq!(status, 200, "{overview}");
    assert_eq!(overview["nodes"][0]["store"]["healthy"], false, "{overview}");
    assert!(overview["presence_error"].is_string(), "{overview}");
}
