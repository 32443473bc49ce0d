//! The OpenAPI document at `/openapi.json`: it validates as OpenAPI 3.1, documents every error as
//! a problem document, and `schemathesis` run against a live server, with the API key and with a
//! user token, finds no 5xx, no answer the document does not describe, no invalid input accepted
//! and no endpoint that ignores its credentials.
//!
//! Needs `openapi-spec-validator` and `schemathesis` (PyPI): on `PATH`, or in `target/venv`
//! where scripts/test installs them. A missing tool fails the test; it is never skipped.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use common::*;
use serde_json::{json, Value};

/// Examples per operation and phase: enough to walk every parameter, short enough for CI.
const MAX_EXAMPLES: &str = "15";

/// A Python tool from `PATH`, else from the virtualenv scripts/test makes.
fn tool(name: &str) -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/venv/bin").join(name);
    if venv.exists() {
        return venv;
    }
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.exists()));
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is missing: run scripts/test (it installs it in target/venv), or \
             `python3 -m venv target/venv && target/venv/bin/pip install schemathesis openapi-spec-validator`"
        )
    })
}

async fn document(base: &str) -> Value {
    let r = client().get(format!("{base}/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().await.unwrap()
}

#[tokio::test]
async fn the_document_validates_and_documents_every_error_as_a_problem() {
    let hub = TestHub::start(config()).await;
    let doc = document(&hub.base).await;
    assert_eq!(doc["openapi"], "3.1.0");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = Command::new(tool("openapi-spec-validator")).arg(&file).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "openapi-spec-validator: {said}");

    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/publish",
        "/api/publish/batch",
        "/api/users",
        "/api/users/{id}",
        "/api/users/{id}/connections",
        "/api/users/{id}/ack",
        "/api/users/{id}/messages",
        "/api/users/{id}/unread",
        "/api/connections",
        "/api/connections/{id}",
        "/api/presence",
        "/events",
        "/poll",
        "/ack",
        "/send/{path}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    let content = &response["content"]["application/problem+json"]["schema"]["$ref"];
                    assert_eq!(content, "#/components/schemas/Problem", "{method} {path} {status}");
                }
            }
        }
    }
    for (path, event_types) in [
        ("/events", &["herald.connected", "herald.reset", "herald.unread"][..]),
        ("/api/presence", &["connect", "disconnect"]),
    ] {
        let ok = &paths[path]["get"]["responses"]["200"];
        assert!(ok["content"]["text/event-stream"].is_object(), "{path} is a text/event-stream");
        for event in event_types {
            assert!(ok["description"].as_str().unwrap().contains(event), "{path} names event {event}");
        }
    }
}

/// Runs one `schemathesis` pass over the operations `paths` selects, sending `authorization`.
async fn schemathesis(schema: &str, base: &str, authorization: &str, paths: &str) {
    let started = Instant::now();
    // Async, so that the hub on this runtime keeps answering while schemathesis runs.
    let out = tokio::process::Command::new(tool("st"))
        .args(["run", schema, "--url", base, "--header"])
        .arg(format!("Authorization: Bearer {authorization}"))
        .args(["--include-path-regex", paths])
        // The two streams never end on their own; the SSE tests cover them.
        .args(["--exclude-path", "/api/presence", "--exclude-path", "/events"])
        // Every check but one: no 5xx, every status, content type, header and body as documented,
        // invalid input refused, auth not ignored. Left out: `positive_data_acceptance`, since the
        // schema cannot say everything the server checks (`to` must name someone; ids are
        // `<epoch>-<seq>`), so a schema-valid request may still be a 400.
        .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
        .args(["--max-examples", MAX_EXAMPLES, "--workers", "1", "--request-timeout", "70", "--seed", "1"])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .await
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let cases = said.lines().skip_while(|l| !l.starts_with("Test cases:")).nth(1).unwrap_or_default().trim();
    eprintln!("schemathesis over {paths} took {:.1?}: {cases}", started.elapsed());
    assert!(out.status.success(), "schemathesis found problems over {paths}:\n{said}");
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let upstream = Recorder::start().await;
    let mut config = config();
    config.app.upstream_url = Some(format!("{}/base", upstream.url));
    config.app.upstream_secret = Some("upstream-secret-0123456789".into());
    let hub = TestHub::start(config).await;
    // Something to find: a user online with a durable message.
    let (_sse, _) = Sse::connect(&hub.base, &format!("access_token={}", token("ann", json!({})))).await;
    let (status, _) = publish(&hub.base, json!({"to": {"users": ["ann"]}, "data": "hi", "durable": true})).await;
    assert_eq!(status, 200);

    let schema = hub.url("/openapi.json");
    let user = token("ann", json!({}));
    // Side by side: long-polls spend most of their pass waiting.
    tokio::join!(
        schemathesis(&schema, &hub.base, API_KEY, "^/(api/|healthz|readyz|metrics|openapi)"),
        schemathesis(&schema, &hub.base, &user, "^/(poll|ack|send/)"),
    );
    hub.shutdown().await.unwrap();
}
