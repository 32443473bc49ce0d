//! HTTPS: with a certificate configured, the hub speaks TLS and offers HTTP/2 by ALPN; streams
//! over HTTP/1.1 and TLS take the lean path. The certificate is made with `openssl` and the
//! client is `curl`, independent of Herald's stack.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::json;

fn tool(name: &str) -> Command {
    let version = if name == "openssl" { "version" } else { "--version" };
    assert!(
        Command::new(name).arg(version).output().is_ok_and(|o| o.status.success()),
        "`{name}` is needed for this test: run scripts/test, or `apt-get install {name}`"
    );
    Command::new(name)
}

/// A self-signed P-256 certificate for 127.0.0.1 in `dir`: (certificate, key).
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = tool("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-subj", "/CN=localhost", "-days", "1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    (cert, key)
}

/// Publishes `data` as event `TLS` to user 42 in-process (the test's reqwest has no TLS backend),
/// as an embedding app would.
async fn publish_to_42(hub: &TestHub, data: &str) -> herald::Published {
    let to = herald::Targets { users: vec!["42".into()], ..Default::default() };
    let publish = herald::Publish { to, event: Some("TLS".into()), data: data.into(), ..Default::default() };
    hub.hub.publish("default", publish).await.unwrap()
}

async fn start_tls(dir: &Path) -> (TestHub, PathBuf) {
    let (cert, key) = self_signed(dir);
    let mut config = config();
    config.tls_cert = Some(cert.clone());
    config.tls_key = Some(key);
    let hub = TestHub::start(config).await;
    assert!(hub.base.starts_with("https://"));
    (hub, cert)
}

/// `curl` over HTTP/1.1 and TLS trusting `cert`, its output piped.
fn curl_http1(cert: &Path, url: &str) -> tokio::process::Command {
    let mut curl = tokio::process::Command::from(tool("curl"));
    curl.args(["-sSN", "--http1.1", "--max-time", "10", "-w", "\n%{http_version}", "--cacert"])
        .arg(cert)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    curl
}

#[tokio::test]
async fn https_negotiates_http2_by_alpn_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, cert) = start_tls(dir.path()).await;

    let health = hub.url("/healthz");
    let cert_path = cert.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let out = tool("curl")
            .args(["-sS", "--http2", "-w", "\n%{http_version}", "--cacert"])
            .arg(&cert_path)
            .arg(&health)
            .output();
        let out = out.unwrap();
        assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    })
    .await
    .unwrap();
    assert!(answer.ends_with("\n2"), "ALPN should pick HTTP/2: {answer}");

    // A stream over TLS (HTTP/2) receives a publish.
    let url = hub.url(&format!("/events?access_token={}", token("42", json!({}))));
    let cert_path = cert.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["-sSN", "--http2", "--max-time", "5", "--cacert"])
            .arg(&cert_path)
            .arg(&url)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    });
    eventually("the TLS stream is registered", || async { hub.hub.connection_count() == 1 }).await;
    let sent = publish_to_42(&hub, "secret").await;
    assert_eq!(sent.delivered, 1);
    hub.shutdown().await.unwrap();
    let transcript = reader.await.unwrap();
    assert!(transcript.contains("event: herald.connected"), "{transcript}");
    assert!(transcript.contains(&format!("id: {}\nevent: TLS\ndata: secret\n", sent.id)), "{transcript}");
}

#[tokio::test]
async fn https_http1_streams_deliver_end_cleanly_and_notice_a_closed_client() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, cert) = start_tls(dir.path()).await;

    // Anything but a stream is hyper's, with the bytes already read over TLS replayed.
    let health = curl_http1(&cert, &hub.url("/healthz")).output().await.unwrap();
    let health = String::from_utf8(health.stdout).unwrap();
    assert!(health.ends_with("\n1.1"), "{health}");

    let url = hub.url(&format!("/events?access_token={}", token("42", json!({}))));
    let reader = curl_http1(&cert, &url).spawn().unwrap();
    eventually("the TLS stream is registered", || async { hub.hub.connection_count() == 1 }).await;
    // A client that goes away is noticed through TLS, with nothing written to it.
    let mut leaver =
        curl_http1(&cert, &hub.url(&format!("/events?access_token={}", token("7", json!({}))))).spawn().unwrap();
    eventually("the second stream is registered", || async { hub.hub.connection_count() == 2 }).await;
    leaver.kill().await.unwrap();
    eventually("the closed client is unregistered", || async { hub.hub.connection_count() == 1 }).await;

    let sent = publish_to_42(&hub, "over http/1.1").await;
    assert_eq!(sent.delivered, 1);
    hub.shutdown().await.unwrap();
    // The stream ends with a TLS close_notify, so curl sees a complete response.
    let out = reader.wait_with_output().await.unwrap();
    let transcript = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "curl: {} {transcript}", String::from_utf8_lossy(&out.stderr));
    assert!(transcript.contains("event: herald.connected"), "{transcript}");
    assert!(transcript.contains(&format!("id: {}\nevent: TLS\ndata: over http/1.1\n", sent.id)), "{transcript}");
    assert!(transcript.ends_with("\n1.1"), "{transcript}");
}

#[tokio::test]
async fn https_http1_publishes_share_one_kept_alive_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, cert) = start_tls(dir.path()).await;
    let url = hub.url(&format!("/events?access_token={}", token("42", json!({}))));
    let reader = curl_http1(&cert, &url).spawn().unwrap();
    eventually("the TLS stream is registered", || async { hub.hub.connection_count() == 1 }).await;
    // Two publishes and a wrong key on one connection (curl reuses it; `-w` shows how many it opened).
    let body = json!({"to": {"users": ["42"]}, "data": "over tls"}).to_string();
    let publish = hub.url("/api/publish");
    let mut curl = tokio::process::Command::from(tool("curl"));
    curl.args(["-sS", "--http1.1", "--max-time", "10", "--cacert"]).arg(&cert);
    curl.args(["-H", "content-type: application/json", "-d", &body, "-w", " %{http_code} %{num_connects}\n"]);
    curl.args(["-H", &format!("authorization: Bearer {API_KEY}"), &publish, &publish]);
    curl.args(["--next", "--http1.1", "--cacert"]).arg(&cert);
    curl.args([
        "-H",
        "authorization: Bearer wrong-key-0123456789",
        "-d",
        &body,
        "-w",
        " %{http_code} %{num_connects}\n",
    ]);
    let out = curl.arg(&publish).output().await.unwrap();
    let said = String::from_utf8(out.stdout).unwrap();
    let answers: Vec<&str> = said.lines().collect();
    assert_eq!(answers.len(), 3, "{said}");
    assert!(answers[0].contains(r#""delivered":1"#) && answers[0].ends_with(" 200 1"), "{said}");
    assert!(answers[1].contains(r#""delivered":1"#) && answers[1].ends_with(" 200 0"), "{said}");
    assert!(answers[2].contains("api-key-invalid") && answers[2].ends_with(" 401 0"), "{said}");
    hub.shutdown().await.unwrap();
    let out = reader.wait_with_output().await.unwrap();
    let transcript = String::from_utf8(out.stdout).unwrap();
    assert_eq!(transcript.matches("data: over tls\n").count(), 2, "{transcript}");
}

#[tokio::test]
async fn a_client_that_never_completes_the_handshake_is_closed_after_the_head_timeout() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let mut config = config();
    config.tls_cert = Some(cert);
    config.tls_key = Some(key);
    config.head_timeout_secs = 1;
    let hub = TestHub::start(config).await;
    let mut silent = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(WAIT, silent.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the server kept a connection that never started TLS");
}
