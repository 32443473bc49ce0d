//! Files the hub serves itself, so browsers install nothing: the client module, its types and
//! the demo; plus health, readiness and metrics.

use std::sync::OnceLock;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};

use super::bodies::{Health, Ready};
use super::problem::{Problem, ProblemDocument};
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

/// `GET /healthz`: liveness; the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up.", body = Health)))]
pub(crate) async fn healthz(State(hub): State<Hub>) -> Response {
    Json(Health { status: "ok", connections: hub.connection_count() }).into_response()
}

/// `GET /readyz`: 200 while the hub can serve (its store or Redis answers; this answer shows
/// the listener is up), else a 503 problem document saying what is not ready.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready: the store (or Redis) answers and the listener is up.", body = Ready),
        (status = 503, description = "Not ready: shutting down, or the store or Redis did not answer.", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
pub(crate) async fn readyz(State(hub): State<Hub>) -> Result<Response, Problem> {
    match hub.ready().await {
        Ok(()) => Ok(Json(Ready { status: "ready" }).into_response()),
        Err(not_ready) => Err(Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", not_ready.to_string())),
    }
}

/// `GET /metrics`, Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Every series, labelled by app (docs/METRICS.md).", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)))]
pub(crate) async fn metrics(State(hub): State<Hub>) -> Response {
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], hub.render_metrics().await).into_response()
}
