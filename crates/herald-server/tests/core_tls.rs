//! HTTPS: with a certificate configured, the hub speaks TLS and offers HTTP/2 by ALPN. The
//! certificate is made with `openssl` and the client is `curl`, independent of Herald's stack.

mod common;

use std::process::Command;

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

#[tokio::test]
async fn https_negotiates_http2_by_alpn_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
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

    let mut config = config();
    config.tls_cert = Some(cert.clone());
    config.tls_key = Some(key);
    let hub = TestHub::start(config).await;
    assert!(hub.base.starts_with("https://"));

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
    // The test's reqwest has no TLS backend; publish in-process, as an embedding app would.
    let sent = hub
        .hub
        .publish(
            "default",
            herald::Publish {
                to: herald::Targets { users: vec!["42".into()], ..Default::default() },
                event: Some("TLS".into()),
                data: "secret".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(sent.delivered, 1);
    hub.shutdown().await.unwrap();
    let transcript = reader.await.unwrap();
    assert!(transcript.contains("event: herald.connected"), "{transcript}");
    assert!(transcript.contains(&format!("id: {}\nevent: TLS\ndata: secret\n", sent.id)), "{transcript}");
}
