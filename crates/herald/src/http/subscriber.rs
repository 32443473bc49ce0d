//! What browsers call: the stream, its long-poll fallback, and acknowledgements.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::request::Parts;
use http::{header, HeaderValue};

use super::cors;
use super::extract::{no_body, query_number, query_pairs, subscriber, AckBody, ConnectionKill, JsonBody, User};
use super::problem::{Problem, ProblemDocument};
use crate::hub::{Hub, PollAnswer};
use crate::store::Acked;

/// Longest long-poll a client may ask for, in seconds.
const MAX_POLL_SECS: u64 = 60;
const DEFAULT_POLL_SECS: u64 = 25;

/// `GET /events`: the `text/event-stream` of one connection.
#[utoipa::path(get, path = "/events", tag = "subscriber",
    security(("user_token" = []), ("user_token_query" = []), ("user_token_cookie" = [])),
    params(
        ("channel" = Option<Vec<String>>, Query, explode = true, description = "A channel to join (repeat for several); the token's `channels` must allow it."),
        ("client_id" = Option<String>, Query, description = "What the client calls itself; shown in presence."),
        ("lastEventId" = Option<String>, Query, description = "Resume after this id (as the `Last-Event-ID` header)."),
        ("ping" = Option<u8>, Query, minimum = 0, maximum = 1, description = "`1`: heartbeats as `herald.ping` events instead of comments."),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this id; what EventSource sends when it reconnects."),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = String, description = "The stream: `retry:`, then `herald.connected` (`{connection_id, user, position, heartbeat_ms}`), `herald.reset` (`{reason}`) when the id could not be resumed, the user's unacknowledged durable messages, `herald.unread` (`{unread}`), the replay, then live messages (`id:` `<epoch>-<seq>[-d]`, the publisher's `event:` name or none, `data:` the payload). `herald.kicked` (`{reason}`) precedes a kick; `herald.ping` comes on the heartbeat with `ping=1`, else a comment."),
        (status = 400, description = "A bad query or a request body.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No token, or one that is invalid or expired.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "The token does not allow a channel asked for.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 429, description = "Too many connections for this user or address.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The hub is shutting down, or the app has no JWT key.", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
pub(crate) async fn events(State(hub): State<Hub>, parts: Parts) -> Result<Response, Problem> {
    no_body(&parts)?;
    let (app, request) = subscriber(&parts, &hub);
    let kill = parts.extensions.get::<ConnectionKill>().map(|k| k.0.clone());
    let body = hub.subscribe(&app, request, kill).await?;
    let (head, ()) = stream_head(&hub, &app, parts.headers.get(header::ORIGIN)).into_parts();
    Ok(Response::from_parts(head, Body::new(body)))
}

/// The head of an accepted stream of `app`, CORS included. Both stream paths (hyper and the
/// direct one for HTTP/1.1) send exactly this, so they cannot drift apart.
pub(crate) fn stream_head(hub: &Hub, app: &str, origin: Option<&HeaderValue>) -> http::Response<()> {
    let mut head = http::Response::new(());
    let headers = head.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.extend(cors::headers(hub, Some(app), origin));
    head
}

/// `GET /poll`: the same events as JSON, one batch per request.
#[utoipa::path(get, path = "/poll", tag = "subscriber",
    security(("user_token" = []), ("user_token_query" = []), ("user_token_cookie" = [])),
    params(
        ("channel" = Option<Vec<String>>, Query, explode = true, description = "A channel to join (repeat for several); the token's `channels` must allow it."),
        ("client_id" = Option<String>, Query, description = "What the client calls itself; shown in presence."),
        ("lastEventId" = Option<String>, Query, description = "Resume after this id (as the `Last-Event-ID` header)."),
        ("timeout" = Option<u64>, Query, minimum = 0, maximum = 60, description = "Seconds to wait when nothing is due (default 25)."),
    ),
    responses(
        (status = 200, description = "The events due, in order (`herald.*` control events without `id`), and the position to poll from next.", body = PollAnswer),
        (status = 400, description = "A bad `timeout` or query.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No token, or one that is invalid or expired.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "The token does not allow a channel asked for.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The hub is shutting down, or the app has no JWT key.", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
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
#[utoipa::path(post, path = "/ack", tag = "subscriber",
    security(("user_token" = []), ("user_token_query" = []), ("user_token_cookie" = [])),
    request_body = AckBody,
    responses(
        (status = 200, description = "How many changed from unread to read, and how many are left.", body = Acked),
        (status = 400, description = "Invalid JSON, an anonymous token, or an id that is not a durable message id.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No token, or one that is invalid or expired.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within `body_timeout_secs`.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "The body is over the size limit.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 500, description = "The store failed.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable, or the app has no JWT key.", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
pub(crate) async fn ack(
    State(hub): State<Hub>,
    User { app, id }: User,
    JsonBody(body): JsonBody<AckBody>,
) -> Result<Response, Problem> {
    Ok(Json(hub.ack(&app, &id, &body.ids).await?).into_response())
}
