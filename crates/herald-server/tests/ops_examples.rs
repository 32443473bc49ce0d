//! The backend examples of docs/examples run against the real `herald` binary: the Python
//! (httpx) and Node (fetch) ones publish to a connected user and read presence, and the user's
//! stream receives what they published. (Go, PHP and Java are not run here: their toolchains are
//! not on the CI machine.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;
use serde_json::json;

fn example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples").join(path)
}

/// Runs `program example` against `base` with the test API key; returns its stdout, failing on a
/// non-zero exit.
async fn run(program: &str, script: &Path, base: &str) -> String {
    let output = tokio::process::Command::new(program)
        .arg(script)
        .env("HERALD_URL", base)
        .env("HERALD_API_KEY", API_KEY)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WAIT, output)
        .await
        .unwrap_or_else(|_| panic!("{} took too long", script.display()))
        .unwrap_or_else(|e| panic!("cannot run `{program}` (scripts/test installs it): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{} failed:\n{stdout}{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn python_and_node_examples_publish_and_read_presence() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Process::start(&temp_db(&dir), &[]).await;
    let (mut alice, _) = Sse::connect(&hub.base, &format!("access_token={}", token("alice", json!({})))).await;

    let python = std::env::var("HERALD_PYTHON").unwrap_or_else(|_| "python3".into());
    for (program, script, text) in [
        (python.as_str(), example("python/publish_presence.py"), "Hello from Python"),
        ("node", example("node/publish_presence.mjs"), "Hello from Node"),
    ] {
        let stdout = run(program, &script, &hub.base).await;
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 3, "{}: {stdout}", script.display());
        assert!(
            lines[0].starts_with("published ") && lines[0].ends_with(" to 1 connection(s)"),
            "{}: {stdout}",
            script.display()
        );
        assert_eq!(lines[1], "online: alice (1)", "{}", script.display());
        assert_eq!(lines[2], "alice is online with 1 connection(s)", "{}", script.display());

        let event = alice.next_message().await;
        assert_eq!(event.event, "ALERT");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&event.data).unwrap(), json!({ "text": text }));
        assert_eq!(lines[0], format!("published {} to 1 connection(s)", event.id));
    }
}
