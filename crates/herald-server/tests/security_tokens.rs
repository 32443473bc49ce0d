//! Attacks on subscriber tokens, each a real request against a real hub (or the real binary for
//! start-up checks): key confusion, `alg: none`, key-choosing headers, cross-app tokens, channel
//! escalation through prefixes, time claims, issuer and audience, shared keys and key material
//! in start-up errors.

mod common;

use std::process::Stdio;

use base64::Engine;
use common::*;
use herald::config::{AppConfig, Config};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const RSA_PRIVATE: &str = include_str!("fixtures/rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("fixtures/rsa-public.pem");
const EC_PRIVATE: &str = include_str!("fixtures/ec-private.pem");
const EC_PUBLIC: &str = include_str!("fixtures/ec-public.pem");
const HR_SECRET: &str = "hr-jwt-secret-0123456789";

fn b64(value: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

fn signed(header: Header, key: &EncodingKey, claims: Value) -> String {
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn claims(user: &str) -> Value {
    json!({"sub": user, "exp": now_secs() + 600, "channels": ["*"]})
}

/// Opens `/events?{query}` expecting a refusal; returns (status, problem type slug).
async fn refused(base: &str, query: &str) -> (u16, String) {
    let r = client().get(format!("{base}/events?{query}")).send().await.unwrap();
    let status = r.status().as_u16();
    assert_eq!(r.headers()["content-type"], "application/problem+json", "status {status} for {query}");
    let problem: Value = r.json().await.unwrap();
    assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()), "{problem}");
    (status, problem["type"].as_str().unwrap().rsplit(':').next().unwrap().to_string())
}

/// A hub whose default app verifies RS256 and whose app `ec` verifies ES256.
fn public_key_apps() -> Config {
    let mut config = config();
    config.app.jwt_secret = None;
    config.app.jwt_public_key = Some(RSA_PUBLIC.into());
    config.apps = vec![AppConfig { id: "ec".into(), jwt_public_key: Some(EC_PUBLIC.into()), ..AppConfig::default() }];
    config
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let hub = TestHub::start(public_key_apps()).await;
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    // The genuine tokens pass, so the refusals below are about the forgery.
    let good = signed(Header::new(Algorithm::RS256), &rsa, claims("u"));
    Sse::connect(&hub.base, &format!("access_token={good}")).await;
    let good = signed(Header::new(Algorithm::ES256), &ec, claims("u"));
    Sse::connect(&hub.base, &format!("app=ec&access_token={good}")).await;
    for (app, public) in [("default", RSA_PUBLIC), ("ec", EC_PUBLIC)] {
        // The public key as the HMAC secret, as text and without its final newline.
        for secret in [public, public.trim_end()] {
            for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                let forged = signed(Header::new(alg), &EncodingKey::from_secret(secret.as_bytes()), claims("admin"));
                let answer = refused(&hub.base, &format!("app={app}&access_token={forged}")).await;
                assert_eq!(answer, (401, "token-algorithm-refused".into()), "{app} {alg:?}");
            }
        }
    }
    // The other family's genuine signature does not pass either.
    let es = signed(Header::new(Algorithm::ES256), &ec, claims("admin"));
    assert_eq!(refused(&hub.base, &format!("access_token={es}")).await, (401, "token-algorithm-refused".into()));
    assert_eq!(metric(&hub.base, "connects_total").await, 2);
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn alg_none_is_refused_in_every_spelling() {
    let hub = TestHub::start(config()).await;
    let body = b64(&claims("admin"));
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(&json!({"alg": alg, "typ": "JWT"}));
        for signature in ["", "c2lnbmF0dXJl"] {
            let query = format!("access_token={header}.{body}.{signature}");
            assert_eq!(refused(&hub.base, &query).await, (401, "token-algorithm-refused".into()), "{alg}");
        }
    }
    // HS256 announced, but no signature.
    let header = b64(&json!({"alg": "HS256", "typ": "JWT"}));
    assert_eq!(refused(&hub.base, &format!("access_token={header}.{body}.")).await.0, 401);
    assert_eq!(metric(&hub.base, "connects_total").await, 0);
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn kid_jku_and_x5u_headers_do_not_choose_the_key() {
    // Where a hub that followed `jku`/`x5u` would fetch keys from; nothing may ever connect.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_url = format!("http://{}/keys.json", trap.local_addr().unwrap());
    let hub = TestHub::start(two_apps()).await;
    let header = |kid: &str| Header {
        kid: Some(kid.into()),
        jku: Some(trap_url.clone()),
        x5u: Some(trap_url.clone()),
        ..Header::new(Algorithm::HS256)
    };
    let attacker = EncodingKey::from_secret(b"attacker-secret-0123456789");
    for kid in ["hr", "attacker", "../../../../dev/null", "' OR 1=1 --"] {
        let forged = signed(header(kid), &attacker, claims("admin"));
        assert_eq!(refused(&hub.base, &format!("access_token={forged}")).await, (401, "token-bad-signature".into()));
        // A `kid` naming another app does not make that app's key verify.
        let other_app = signed(header(kid), &EncodingKey::from_secret(HR_SECRET.as_bytes()), claims("admin"));
        assert_eq!(refused(&hub.base, &format!("access_token={other_app}")).await.0, 401, "{kid}");
    }
    // The app's own key still verifies whatever the headers say.
    let genuine = signed(header("anything"), &EncodingKey::from_secret(JWT_SECRET.as_bytes()), claims("u1"));
    let (_, connected) = Sse::connect(&hub.base, &format!("access_token={genuine}")).await;
    assert_eq!(connected["user"], "u1");
    assert_eq!(trap.accept().map_err(|e| e.kind()).unwrap_err(), std::io::ErrorKind::WouldBlock, "a key was fetched");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_token_of_one_app_is_refused_by_another() {
    let hub = TestHub::start(two_apps()).await;
    let default_token = token("42", json!({}));
    let hr_token = token_with(HR_SECRET, claims("42"));
    assert_eq!(
        refused(&hub.base, &format!("app=hr&access_token={default_token}")).await,
        (401, "token-bad-signature".into())
    );
    assert_eq!(refused(&hub.base, &format!("access_token={hr_token}")).await, (401, "token-bad-signature".into()));
    // Naming the app by header is the same as by query.
    let r = client()
        .get(hub.url(&format!("/events?access_token={default_token}")))
        .header("x-herald-app", "hr")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Each token works on its own app.
    Sse::connect(&hub.base, &format!("access_token={default_token}")).await;
    Sse::connect(&hub.base, &format!("app=hr&access_token={hr_token}")).await;
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn channel_claims_do_not_escalate_through_prefixes() {
    let hub = TestHub::start(config()).await;
    let orders = token("42", json!({"channels": ["orders.*", "news"]}));
    for allowed in ["orders.1", "orders.", "orders.a.b", "news"] {
        Sse::connect(&hub.base, &format!("access_token={orders}&channel={allowed}")).await;
    }
    for forbidden in ["orders", "ordersX", "orders-secret", "Orders.1", "news.1", "newsroom", "orders%00.1"] {
        let answer = refused(&hub.base, &format!("access_token={orders}&channel={forbidden}")).await;
        assert_eq!(answer, (403, "channel-forbidden".into()), "{forbidden}");
    }
    // A requested name cannot be a pattern itself.
    for pattern in ["orders.*", "*"] {
        assert_eq!(refused(&hub.base, &format!("access_token={orders}&channel={pattern}")).await.0, 400, "{pattern}");
    }
    // An empty list, an empty entry and a pattern that is not a suffix allow nothing.
    for claim in [json!([]), json!([""]), json!(["orders.*.x"]), json!(["*orders"])] {
        let jwt = token("42", json!({ "channels": claim }));
        for channel in ["orders.1", "x", "orders.1.x"] {
            let answer = refused(&hub.base, &format!("access_token={jwt}&channel={channel}")).await;
            assert_eq!(answer.0, 403, "{claim} {channel}");
        }
    }
    // A `channels` claim that is not a list is malformed, not read as everything.
    let jwt = token("42", json!({"channels": "*"}));
    assert_eq!(refused(&hub.base, &format!("access_token={jwt}&channel=x")).await, (401, "token-malformed".into()));
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn nbf_is_checked_with_the_same_leeway_as_exp() {
    let hub = TestHub::start(config()).await;
    let early = token("42", json!({"nbf": now_secs() + 120}));
    assert_eq!(refused(&hub.base, &format!("access_token={early}")).await, (401, "token-not-yet-valid".into()));
    // A clock a little behind the issuer's is tolerated, as it is for `exp`.
    let skewed = token("42", json!({"nbf": now_secs() + 2}));
    Sse::connect(&hub.base, &format!("access_token={skewed}")).await;
    let past = token("42", json!({"nbf": now_secs() - 60}));
    Sse::connect(&hub.base, &format!("access_token={past}")).await;
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_token_without_exp_is_refused_unless_the_app_waives_it() {
    let mut config = two_apps();
    config.apps[0].require_exp = false;
    let hub = TestHub::start(config).await;
    let forever = token_with(JWT_SECRET, json!({"sub": "42", "channels": ["*"]}));
    let (status, kind) = refused(&hub.base, &format!("access_token={forever}")).await;
    assert_eq!((status, kind.as_str()), (401, "token-missing-expiry"));
    let forever_hr = token_with(HR_SECRET, json!({"sub": "42"}));
    Sse::connect(&hub.base, &format!("app=hr&access_token={forever_hr}")).await;
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn herald_require_exp_false_waives_exp_for_the_default_app() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = Process::start(&temp_db(&dir), &[("HERALD_REQUIRE_EXP", "false")]).await;
    let forever = token_with(JWT_SECRET, json!({"sub": "42"}));
    let (_, connected) = Sse::connect(&process.base, &format!("access_token={forever}")).await;
    assert_eq!(connected["user"], "42");
    process.kill9().await;
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let mut config = two_apps();
    config.app.jwt_issuer = Some("https://login.example".into());
    config.app.jwt_audience = Some("herald".into());
    let hub = TestHub::start(config).await;
    let with = |extra: Value| token("42", extra);
    for (what, jwt, expected) in [
        ("no iss", with(json!({"aud": "herald"})), "token-issuer-refused"),
        ("wrong iss", with(json!({"iss": "https://evil.example", "aud": "herald"})), "token-issuer-refused"),
        ("iss of another type", with(json!({"iss": 7, "aud": "herald"})), "token-issuer-refused"),
        ("no aud", with(json!({"iss": "https://login.example"})), "token-audience-refused"),
        ("wrong aud", with(json!({"iss": "https://login.example", "aud": "billing"})), "token-audience-refused"),
        ("wrong auds", with(json!({"iss": "https://login.example", "aud": ["a", "b"]})), "token-audience-refused"),
    ] {
        assert_eq!(refused(&hub.base, &format!("access_token={jwt}")).await, (401, expected.into()), "{what}");
    }
    for aud in [json!("herald"), json!(["billing", "herald"])] {
        let jwt = with(json!({"iss": "https://login.example", "aud": aud}));
        Sse::connect(&hub.base, &format!("access_token={jwt}")).await;
    }
    // An app without `jwt_issuer` does not look at `iss`; one without `jwt_audience` refuses a
    // token addressed to someone else.
    Sse::connect(
        &hub.base,
        &format!(
            "app=hr&access_token={}",
            token_with(HR_SECRET, json!({"sub": "1", "exp": now_secs() + 60, "iss": "x"}))
        ),
    )
    .await;
    let elsewhere = token_with(HR_SECRET, json!({"sub": "1", "exp": now_secs() + 60, "aud": "billing"}));
    let answer = refused(&hub.base, &format!("app=hr&access_token={elsewhere}")).await;
    assert_eq!(answer, (401, "token-audience-refused".into()));
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_exp_near_the_end_of_time_keeps_the_stream_open() {
    let mut config = config();
    config.heartbeat_secs = 1;
    let hub = TestHub::start(config).await;
    let mut streams = Vec::new();
    for (user, exp) in [("max", u64::MAX), ("half", 1u64 << 63), ("ms-overflow", u64::MAX / 1000 + 1)] {
        let jwt = token(user, json!({ "exp": exp }));
        let (sse, _) = Sse::connect(&hub.base, &format!("access_token={jwt}&ping=1")).await;
        streams.push((user, sse));
    }
    for (user, sse) in &mut streams {
        // A ping comes from the same tick that closes expired streams: the check has run.
        sse.until("herald.ping").await;
        publish(&hub.base, json!({"to": {"users": [user]}, "event": "HI", "data": *user})).await;
        assert_eq!(sse.next_message().await.data, *user);
    }
    assert_eq!(metric(&hub.base, "expired_tokens_total").await, 0);
    hub.shutdown().await.unwrap();
}

/// Runs `herald serve --config <toml>` (plus `env`), expecting it to refuse to start; a binary
/// still running after [`WAIT`] fails the test (and is killed).
async fn refused_to_start(toml: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, toml).unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    command.arg("serve").arg("--config").arg(&path).env_clear().env("HERALD_STORE", "memory");
    command.env("HERALD_LISTEN", format!("127.0.0.1:{}", free_port()));
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command.spawn().unwrap();
    let output = tokio::time::timeout(WAIT, child.wait_with_output()).await.expect("herald started").unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn two_apps_sharing_a_jwt_key_exit_2_naming_both() {
    let (code, stderr) = refused_to_start(
        "[app]\njwt_secret = \"one-secret-for-two-apps-0123\"\n\n\
         [[apps]]\nid = \"hr\"\njwt_secret = \"own-secret-0123456789abc\"\n\n\
         [[apps]]\nid = \"crm\"\njwt_secret = \"one-secret-for-two-apps-0123\"\n",
        &[],
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("`apps[1].jwt_secret`") && stderr.contains("`default`") && stderr.contains("`crm`"),
        "{stderr}"
    );
    assert!(!stderr.contains("one-secret-for-two-apps"), "the secret is echoed: {stderr}");
    // One public key, given once as a file and once as text, is one key.
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ec.pem");
    std::fs::write(&pem, EC_PUBLIC).unwrap();
    let (code, stderr) = refused_to_start(
        &format!(
            "[app]\njwt_public_key = {:?}\n\n[[apps]]\nid = \"hr\"\njwt_public_key = '''\n{EC_PUBLIC}'''\n",
            pem.display().to_string()
        ),
        &[],
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("`apps[0].jwt_public_key`") && stderr.contains("`default`") && stderr.contains("`hr`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_bad_jwt_public_key_is_named_but_never_echoed() {
    for value in [
        // PEM-shaped garbage.
        "-----BEGIN PUBLIC KEY-----\nKEYMATERIALKEYMATERIAL\n-----END PUBLIC KEY-----\n",
        // A private key pasted without its armour: read as a path, and must not be printed.
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCKEYMATERIALKEYMATERIAL",
        // A private key where the public one belongs.
        EC_PRIVATE,
    ] {
        let (code, stderr) = refused_to_start("", &[("HERALD_JWT_PUBLIC_KEY", value)]).await;
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains("`app.jwt_public_key`"), "{stderr}");
        assert!(!stderr.contains("KEYMATERIAL"), "key material in the error: {stderr}");
        assert!(!stderr.contains(EC_PRIVATE.lines().nth(1).unwrap()), "key material in the error: {stderr}");
    }
}
