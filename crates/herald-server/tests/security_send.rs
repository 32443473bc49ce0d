//! Attacks on `POST /send/{path}`, the proxy to the app's backend: escaping the upstream's
//! prefix, smuggling a query, headers that describe the hop or claim an identity, a connection id
//! that is not the user's, and a body that grows past the limit mid-stream.

mod common;

use common::*;
use serde_json::json;

const UPSTREAM_SECRET: &str = "upstream-secret-0123456789";

async fn hub_with_upstream(upstream: &str, max_send_bytes: usize) -> TestHub {
    let mut config = config();
    config.app.upstream_url = Some(format!("{upstream}/base"));
    config.app.upstream_secret = Some(UPSTREAM_SECRET.into());
    config.app.limits.max_send_bytes = max_send_bytes;
    TestHub::start(config).await
}

fn raw_send(path: &str, token: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "POST /send/{path} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\n{extra_headers}\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .into_bytes()
}

#[tokio::test]
async fn paths_that_leave_the_upstream_prefix_or_carry_a_query_are_refused() {
    let mut upstream = Recorder::start().await;
    let hub = hub_with_upstream(&upstream.url, 1024).await;
    let alice = token("alice", json!({}));
    for bad in [
        "..%2F..%2Fadmin",
        "../admin",
        "a/../../admin",
        "%2e%2e/admin",
        "%2E%2E%2fadmin",
        "./admin",
        "a%2Fb",
        "a%5Cb",
        "a\\b",
        "x%3Fadmin=1",
        "x%23frag",
        "a%00b",
    ] {
        let answer = raw_exchange(hub.addr, &raw_send(bad, &alice, "")).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{bad}: {answer}");
        assert!(answer.contains("invalid-send-path"), "{bad}: {answer}");
    }
    // A good path is forwarded as received, still encoded, with only the request's own query
    // (less the token).
    let answer = raw_exchange(hub.addr, &raw_send("orders%20new/7?dry=1&access_token=x", &alice, "")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let got = upstream.next().await;
    assert_eq!(got.request_line(), "POST /base/orders%20new/7?dry=1 HTTP/1.1", "only this request got through");
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn hop_by_hop_and_forwarding_headers_are_the_hubs_not_the_clients() {
    let mut upstream = Recorder::start().await;
    let hub = hub_with_upstream(&upstream.url, 1024).await;
    let headers = "Connection: keep-alive, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
                   Trailer: X-Late\r\nUpgrade: websocket\r\nProxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\n\
                   X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Host: evil.example\r\n\
                   X-Herald-User: mallory\r\nX-Herald-Signature: sha256=00\r\nCookie: herald_token=x\r\nX-Trace: t1\r\n";
    let answer = raw_exchange(hub.addr, &raw_send("orders", &token("alice", json!({})), headers)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let got = upstream.next().await;
    for gone in [
        "x-secret-hop",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "x-forwarded-host",
        "cookie",
        "authorization",
    ] {
        assert_eq!(got.header(gone), None, "`{gone}` was forwarded:\n{}", got.head);
    }
    assert_eq!(got.header("x-forwarded-for"), Some("127.0.0.1"), "{}", got.head);
    assert_eq!(got.header("forwarded"), Some("for=127.0.0.1"), "{}", got.head);
    assert_eq!(got.header("x-herald-user"), Some("alice"));
    assert_eq!(got.header("x-trace"), Some("t1"), "end-to-end headers pass");
    hub.shutdown().await.unwrap();
}

fn expected_signature(got: &Recorded) -> String {
    let h = |name: &str| got.header(&format!("x-herald-{name}")).unwrap_or_default().to_string();
    let target = got.request_line().split(' ').nth(1).unwrap();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let signed = [h("timestamp"), h("app"), h("user"), h("tenant"), h("session"), h("connection")]
        .into_iter()
        .chain(["POST".to_string(), path.to_string(), query.to_string()])
        .collect::<Vec<_>>()
        .join("\n");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, UPSTREAM_SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, signed.as_bytes());
    format!("sha256={}", tag.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>())
}

#[tokio::test]
async fn a_connection_id_is_signed_only_when_it_is_the_users_own() {
    let mut upstream = Recorder::start().await;
    let hub = hub_with_upstream(&upstream.url, 1024).await;
    let (alice_token, bob_token) = (token("alice", json!({"tenant": "t1"})), token("bob", json!({})));
    let (_stream, connected) = Sse::connect(&hub.base, &format!("access_token={alice_token}")).await;
    let alice_connection = connected["connection_id"].as_str().unwrap().to_string();

    for (who, claimed, expected) in [
        (&bob_token, alice_connection.as_str(), ""),
        (&alice_token, "nonexistent-17", ""),
        (&alice_token, alice_connection.as_str(), alice_connection.as_str()),
    ] {
        let header = format!("X-Herald-Connection: {claimed}\r\n");
        let answer = raw_exchange(hub.addr, &raw_send("orders?n=1", who, &header)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let got = upstream.next().await;
        assert_eq!(got.header("x-herald-connection"), Some(expected), "{}", got.head);
        // The signature covers the identity and the request line the backend received.
        assert_eq!(got.header("x-herald-signature").unwrap(), expected_signature(&got), "{}", got.head);
    }
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_body_that_grows_past_the_limit_never_reaches_the_backend_whole() {
    let mut upstream = Recorder::start().await;
    let hub = hub_with_upstream(&upstream.url, 1000).await;
    let alice = token("alice", json!({}));
    // Chunked, so the size is learnt only as it arrives.
    let chunks = (0..10).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 500]));
    let response = client()
        .post(hub.url("/send/upload"))
        .bearer_auth(&alice)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // A request that fits goes through; whatever arrived before it was cut off.
    let ok = client().post(hub.url("/send/small")).bearer_auth(&alice).body("{}").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    loop {
        let got = upstream.next().await;
        if got.request_line().starts_with("POST /base/small ") {
            break;
        }
        assert!(!got.complete, "the backend received the oversized request whole: {}", got.head);
    }
    hub.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_https_upstream_is_reached_over_tls_with_the_systems_roots() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (ca, ca_key, csr, cert, key, ext) =
        (path("ca.pem"), path("ca.key"), path("leaf.csr"), path("cert.pem"), path("key.pem"), path("leaf.ext"));
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    // A CA the hub is told to trust (SSL_CERT_FILE), and a leaf it signed for the upstream.
    for args in [
        [&["req", "-x509"][..], &ec, &["-subj", "/CN=test-ca", "-days", "1", "-keyout", &ca_key, "-out", &ca]].concat(),
        [&["req"][..], &ec, &["-subj", "/CN=localhost", "-keyout", &key, "-out", &csr]].concat(),
        vec!["x509", "-req", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key, "-CAcreateserial", "-days", "1"]
            .into_iter()
            .chain(["-extfile", &ext, "-out", &cert])
            .collect(),
    ] {
        let made =
            std::process::Command::new("openssl").args(&args).output().expect("openssl is needed: run scripts/test");
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    }
    // The upstream is another hub over TLS: its answer to an unauthenticated publish proves the
    // request crossed TLS.
    let mut tls_config = config();
    tls_config.tls_cert = Some(cert.into());
    tls_config.tls_key = Some(key.into());
    let upstream = TestHub::start(tls_config).await;
    let upstream_url = upstream.base.clone();
    let herald = Process::start(
        &temp_db(&dir),
        &[("HERALD_UPSTREAM_URL", &upstream_url), ("HERALD_UPSTREAM_SECRET", UPSTREAM_SECRET), ("SSL_CERT_FILE", &ca)],
    )
    .await;
    let answer = client()
        .post(format!("{}/send/api/publish", herald.base))
        .bearer_auth(token("alice", json!({})))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let problem: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(problem["type"], "urn:herald:problem:api-key-missing", "{problem}");
    upstream.shutdown().await.unwrap();
}
