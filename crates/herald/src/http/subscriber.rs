//! What browsers call: the stream, its long-poll fallback, and acknowledgements.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::request::Parts;
use http::{header, HeaderValue};

use super::extract::{no_body, query_number, query_pairs, subscriber, AckBody, ConnectionKill, JsonBody, User};
use super::problem::Problem;
use crate::hub::Hub;

/// Longest long-poll a client may ask for, in seconds.
const MAX_POLL_SECS: u64 = 60;
const DEFAULT_POLL_SECS: u64 = 25;

/// `GET /events`: the `text/event-stream` of one connection.
pub(crate) async fn events(State(hub): State<Hub>, parts: Parts) -> Result<Response, Problem> {
    no_body(&parts)?;
    let (app, request) = subscriber(&parts, &hub);
    let kill = parts.extensions.get::<ConnectionKill>().map(|k| k.0.clone());
    let body = hub.subscribe(&app, request, kill).await?;
    let mut response = Response::new(Body::new(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// `GET /poll`: the same events as JSON, one batch per request.
pub(crate) async fn poll(State(hub): State<Hub>, parts: Parts) -> Result<Response, Problem> {
    let (app, request) = subscriber(&parts, &hub);
    let timeout = query_number(&query_pairs(&parts), "timeout")?.unwrap_or(DEFAULT_POLL_SECS);
    if timeout > MAX_POLL_SECS {
        return Err(Problem::bad_request(format!("`timeout` is at most {MAX_POLL_SECS} seconds")));
    }
    let answer = hub.poll(&app, request, Duration::from_secs(timeout)).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response())
}

/// `POST /ack`: the user named by the token acknowledges its durable messages. The token is
/// checked before the body is read.
pub(crate) async fn ack(
    State(hub): State<Hub>,
    User { app, id }: User,
    JsonBody(body): JsonBody<AckBody>,
) -> Result<Response, Problem> {
    Ok(Json(hub.ack(&app, &id, &body.ids).await?).into_response())
}
