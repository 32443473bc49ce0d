//! Files the hub serves itself, so browsers install nothing: the client module, its types and
//! the demo; plus health and metrics.

use std::sync::OnceLock;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};
use serde_json::json;

use crate::hub::Hub;

const SCRIPT: &str = include_str!("../../../../client/herald.js");
const TYPES: &str = include_str!("../../../../client/herald.d.ts");
const DEMO: &str = include_str!("../../../../client/demo.html");

/// A content hash, so an updated file gets a new ETag (and a new `?v=` URL).
fn etag(content: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, content.as_bytes());
    format!("\"{}\"", hex::encode(&digest.as_ref()[..8]))
}

fn cached(
    parts: &Parts,
    content: &'static str,
    tag: &'static OnceLock<String>,
    content_type: &'static str,
) -> Response {
    let tag = tag.get_or_init(|| etag(content));
    let versioned =
        parts.uri.query().is_some_and(|q| q.split('&').any(|p| p == format!("v={}", tag.trim_matches('"'))));
    // A versioned URL never changes; an unversioned one is revalidated so updates reach pages.
    let cache = if versioned { "public, max-age=31536000, immutable" } else { "public, max-age=300, must-revalidate" };
    let mut response = if parts.headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(tag.as_str()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], content).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(value) = HeaderValue::from_str(tag) {
        headers.insert(header::ETAG, value);
    }
    response
}

/// `GET /herald.js`.
pub(crate) async fn script(parts: Parts) -> Response {
    static TAG: OnceLock<String> = OnceLock::new();
    cached(&parts, SCRIPT, &TAG, "text/javascript; charset=utf-8")
}

/// `GET /herald.d.ts`.
pub(crate) async fn types(parts: Parts) -> Response {
    static TAG: OnceLock<String> = OnceLock::new();
    cached(&parts, TYPES, &TAG, "application/typescript; charset=utf-8")
}

/// `GET /demo`.
pub(crate) async fn demo(parts: Parts) -> Response {
    static TAG: OnceLock<String> = OnceLock::new();
    cached(&parts, DEMO, &TAG, "text/html; charset=utf-8")
}

/// `GET /healthz`.
pub(crate) async fn healthz(State(hub): State<Hub>) -> Response {
    Json(json!({ "status": "ok", "connections": hub.connection_count() })).into_response()
}

/// `GET /metrics`, Prometheus text.
pub(crate) async fn metrics(State(hub): State<Hub>) -> Response {
    let mut text = hub.metrics().render(hub.connection_count());
    // Tasks alive in the runtime that serves this request (each stream holds one or two): a soak
    // watches it for tasks that never end. tokio counts them without `tokio_unstable`.
    let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    text.push_str(&format!(
        "# HELP herald_runtime_tasks Tasks alive in the runtime.\n# TYPE herald_runtime_tasks gauge\nherald_runtime_tasks {tasks}\n"
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
