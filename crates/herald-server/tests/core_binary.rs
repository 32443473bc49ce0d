//! The `herald` binary: bad configurations exit non-zero naming the key, and `--dev` prints
//! working credentials.

mod common;

use std::process::{Command, Stdio};

use common::*;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Runs `herald serve` with only `env`, expecting it to refuse to start.
fn refused(env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.arg("serve").env_clear().env("HERALD_STORE", "memory").stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_bad_configuration_exits_non_zero_naming_the_key() {
    let listen = format!("127.0.0.1:{}", free_port());
    for (env, key) in [
        (vec![("HERALD_API_KEY", "short")], "app.api_key"),
        (vec![("HERALD_JWT_SECRET", "short")], "app.jwt_secret"),
        (vec![("HERALD_LISTEN", "nonsense")], "listen"),
        (vec![("HERALD_HEARTBEAT_SECS", "soon")], "HERALD_HEARTBEAT_SECS"),
        (vec![("HERALD_HEARTBEAT_SECS", "0")], "heartbeat_secs"),
        (vec![("HERALD_QUEUE_BYTES", "0")], "app.limits.queue_bytes"),
        (vec![("HERALD_ALLOW_ANONYMOUS", "maybe")], "HERALD_ALLOW_ANONYMOUS"),
        (vec![("HERALD_WEBHOOK_URL", "http://127.0.0.1:9/hook")], "app.webhook_secret"),
        (vec![("HERALD_STORE_SYNC", "sometimes")], "store_sync"),
        (vec![("HERALD_TLS_CERT", "/nonexistent.pem")], "tls_cert"),
    ] {
        let mut env = env.clone();
        if !env.iter().any(|(k, _)| *k == "HERALD_LISTEN") {
            env.push(("HERALD_LISTEN", &listen));
        }
        let (code, stderr) = refused(&env);
        assert_ne!(code, 0, "{env:?} started");
        assert!(stderr.contains(&format!("`{key}`")), "{env:?}: the error must name `{key}`: {stderr}");
    }
}

#[tokio::test]
async fn dev_mode_prints_working_credentials() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--dev", "--store", "memory", "--listen", "127.0.0.1:0"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let demo = printed.last().is_some_and(|l: &String| l.trim() == "Demo:");
            printed.push(line);
            if demo {
                return;
            }
        }
        panic!("stdout ended before the Demo line: {printed:?}");
    };
    tokio::time::timeout(WAIT, read).await.expect("no Demo line in time");
    let value = |label: &str| -> String {
        printed
            .iter()
            .find_map(|l| l.trim().strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label} in {printed:?}"))
            .trim()
            .to_string()
    };
    let key = value("API key:");
    let user_token = value("User token:");
    assert!(key.len() >= 16, "{key}");
    assert_eq!(user_token.split('.').count(), 3, "not a JWT: {user_token}");
    let subscribe = printed.iter().find(|l| l.contains("curl -N")).expect("no subscribe curl line");
    assert!(subscribe.contains(&user_token), "{subscribe}");
    let publish_line = printed.iter().find(|l| l.contains("curl -X POST")).expect("no publish curl line");
    assert!(publish_line.contains(&format!("Authorization: Bearer {key}")), "{publish_line}");
    let demo = printed.last().unwrap().trim().to_string();
    assert!(demo.contains("/demo?") && demo.contains(&key), "{demo}");

    // The printed credentials work against the printed address.
    let base = publish_line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .trim_end_matches("/api/publish")
        .to_string();
    let (mut sse, connected) = Sse::connect(&base, &format!("access_token={user_token}&channel=news")).await;
    assert_eq!(connected["user"], "alice");
    let (status, _, body) =
        api_post(&base, &key, "/api/publish", &json!({"to": {"channels": ["news"]}, "event": "HELLO", "data": "hi"}))
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sse.next_message().await.event, "HELLO");
    child.kill().await.unwrap();
}
