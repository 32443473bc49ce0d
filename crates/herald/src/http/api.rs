//! What backends call, with the app's API key: publishing, presence, control, durable messages.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures_util::StreamExt;
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};
use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

use super::bodies::{
    BatchAnswer, ConnectionsPage, InboxMessage, Kicked, MessagesPage, Unread, UserPresence, UsersPage,
};
use super::extract::{query_number, query_pairs, query_value, AckBody, ApiApp, JsonBody, RawBody};
use super::problem::{Problem, ProblemDocument};
use crate::hub::{ConnectionFilter, Hub, PresenceKind};
use crate::message::{Publish, Published, Targets};
use crate::sse;
use crate::store::Acked;

const DEFAULT_PAGE: u64 = 100;
const MAX_PAGE: u64 = 1000;

/// The JSON body of one publish, taken only as a JSON object (serde's derive would also take an
/// array of the fields in order, which no client means to send).
#[derive(Debug)]
pub(crate) struct PublishBody(PublishFields);

impl<'de> Deserialize<'de> for PublishBody {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        object(deserializer).map(Self)
    }
}

/// The fields of a publish body. `data` is kept as the raw JSON text rather than parsed into a
/// tree, which would cost many times its size in memory before any limit is checked.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Publish)]
pub(crate) struct PublishFields {
    /// Who receives it: any combination of addresses, or `all`.
    #[serde(deserialize_with = "object")]
    to: Targets,
    /// SSE event name: 1–128 characters, no line breaks, not starting with `herald.`.
    #[serde(default)]
    event: Option<String>,
    /// The payload: a JSON string is sent as-is, any other JSON as compact JSON.
    #[schema(value_type = serde_json::Value)]
    data: Box<RawValue>,
    /// Kept per user until acknowledged; answered only once committed.
    #[serde(default)]
    durable: bool,
    /// Seconds a durable message waits for its user (default and bound: the app's limits).
    #[serde(default)]
    ttl: Option<u64>,
}

/// Deserializes `T` from a JSON object only.
fn object<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<T, D::Error> {
    struct Object<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Object<T> {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    deserializer.deserialize_map(Object(std::marker::PhantomData))
}

impl From<PublishBody> for Publish {
    fn from(PublishBody(b): PublishBody) -> Self {
        let raw = b.data.get();
        let data = match raw.starts_with('"') {
            true => serde_json::from_str(raw).expect("a JSON string parses as one"),
            false => compact(raw),
        };
        Publish { to: b.to, event: b.event, data, durable: b.durable, ttl: b.ttl, mercure: None }
    }
}

/// Valid JSON text without the whitespace between its tokens (strings are kept as written).
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if !c.is_ascii_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// `POST /api/publish`.
#[utoipa::path(post, path = "/api/publish", tag = "publish", security(("api_key" = [])),
    request_body = PublishFields,
    responses(
        (status = 200, description = "Published: its id, and how many connections it was handed to.", body = Published),
        (status = 400, description = "Invalid JSON, no address, a reserved or malformed event name, an unknown field.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No API key, or one that matches no app.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within `body_timeout_secs`.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "The payload is over `limits.max_payload_bytes`.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 500, description = "The store failed.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The store or Redis is unavailable, or the hub is shutting down.", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
pub(crate) async fn publish(
    State(hub): State<Hub>,
    ApiApp(app): ApiApp,
    JsonBody(body): JsonBody<PublishBody>,
) -> Result<Response, Problem> {
    publish_parsed(&hub, &app, body).await
}

/// What [`publish`] does once its key and body were checked, shared with [`publish_raw`].
async fn publish_parsed(hub: &Hub, app: &str, body: PublishBody) -> Result<Response, Problem> {
    Ok(Json(hub.publish(app, body.into()).await?).into_response())
}

/// [`publish`] for the server's lean path, which has read the head and the whole body itself
/// and checked the key with [`api_app`]: the same steps in the same order, so the same answers.
pub(crate) async fn publish_raw(hub: &Hub, app: &str, body: &[u8]) -> Response {
    let answer = async { publish_parsed(hub, app, super::extract::json(body)?).await };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// The app of `key`, the bearer credential of a request, or the refusal [`publish`] answers.
pub(crate) fn api_app(hub: &Hub, key: Option<&str>) -> Result<String, Problem> {
    ApiApp::of_key(hub, key).map(|ApiApp(app)| app)
}

/// `POST /api/publish/batch`: an array in, an array of answers (or per-item problems) out. The
/// parse stops at the first item past `limits.max_batch`.
#[utoipa::path(post, path = "/api/publish/batch", tag = "publish", security(("api_key" = [])),
    request_body(content = Vec<PublishFields>, description = "At most `limits.max_batch` publishes, sent in order."),
    responses(
        (status = 200, description = "One answer per item, in order: its id, or the problem that stopped it.", body = Vec<BatchAnswer>),
        (status = 400, description = "Invalid JSON, too many items, or an invalid item (named by index): nothing was sent.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No API key, or one that matches no app.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within `body_timeout_secs`.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "The body is over the batch size limit.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 500, description = "The store failed.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The store or Redis is unavailable, or the hub is shutting down.", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
pub(crate) async fn publish_batch(
    State(hub): State<Hub>,
    ApiApp(app): ApiApp,
    RawBody(body): RawBody,
) -> Result<Response, Problem> {
    let max = hub.app_config(&app)?.limits.max_batch;
    let batch = parse_batch(&body, max).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))?;
    drop(body);
    let answers = hub.publish_batch(&app, batch.into_iter().map(Into::into).collect()).await?;
    let answers: Vec<BatchAnswer> = answers
        .into_iter()
        .map(|a| match a {
            Ok(published) => BatchAnswer::Published(published),
            Err(e) => BatchAnswer::Problem(ProblemDocument::new(e.status(), e.kind(), e.to_string())),
        })
        .collect();
    Ok(Json(answers).into_response())
}

/// Parses a whole batch body: a JSON array of at most `max` publish bodies, and nothing after it.
pub(crate) fn parse_batch(body: &[u8], max: usize) -> Result<Vec<PublishBody>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let batch = BoundedBatch(max).deserialize(&mut deserializer)?;
    // Trailing bytes make the body something other than one JSON document.
    deserializer.end()?;
    Ok(batch)
}

/// A JSON array of at most `.0` publish bodies.
struct BoundedBatch(usize);

impl<'de> DeserializeSeed<'de> for BoundedBatch {
    type Value = Vec<PublishBody>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BoundedBatch {
    type Value = Vec<PublishBody>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "an array of at most {} publish bodies", self.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.0));
        while let Some(item) = seq.next_element()? {
            if items.len() == self.0 {
                return Err(A::Error::custom(format!("the batch has more than {} items (`limits.max_batch`)", self.0)));
            }
            items.push(item);
        }
        Ok(items)
    }
}

fn page(pairs: &[(String, String)]) -> Result<usize, Problem> {
    let limit = query_number(pairs, "limit")?.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Problem::bad_request(format!("`limit` must be between 1 and {MAX_PAGE}")));
    }
    Ok(limit as usize)
}

/// `GET /api/users`: online users with their connection counts.
#[utoipa::path(get, path = "/api/users", tag = "presence", security(("api_key" = [])),
    params(
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100)."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "One page of online users, on every node.", body = UsersPage),
        (status = 400, description = "A bad `limit` or `cursor`.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No API key, or one that matches no app.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 500, description = "The store failed.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The store or Redis is unavailable, or the hub is shutting down.", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
pub(crate) async fn users(State(hub): State<Hub>, ApiApp(app): ApiApp, parts: Parts) -> Result<Response, Problem> {
    let pairs = query_pairs(&parts);
    let page = hub.online_users(&app, page(&pairs)?, query_value(&pairs, "cursor")).await?;
    Ok(Json(UsersPage { users: page.items, next_cursor: page.next_cursor }).into_response())
}

/// `GET /api/users/{id}`.
#[utoipa::path(get, path = "/api/users/{id}", tag = "presence", security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "User id (the `sub` of their tokens)."),
    ),
    responses(
        (status = 200, description = "Whether the user is online, and their connections.", body = UserPresence),
        (status = 401, description = "No API key, or one that matches no app.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 500, description = "The store failed.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The store or Redis is unavailable, or the hub is shutting down.", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
pub(crate) async fn user(
    State(hub): State<Hub>,
    ApiApp(app): ApiApp,
    Path(user): Path<String>,
) -> Result<Response, Problem> {
    let connections = hub.user_connections(&app, &user).await?;
    Ok(Json(UserPresence { id: user, online: !connections.is_empty(), connections }).into_response())
}

/// `GET /api/connections`.
#[utoipa::path(get, path = "/api/connections", tag = "presence", security(("api_key" = [])),
    params(
        ("user" = Option<String>, Query, description = "Only this user's."),
        ("tenant" = Option<String>, Query, description = "Only this tenant's."),
        ("channel" = Option<String>, Query, description = "Only those that joined this channel."),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100)."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "One page of open connections, on every node.", body = ConnectionsPage),
        (status = 400, description = "A bad `limit` or `cursor`.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No API key, or one that matches no app.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 500, description = "The store failed.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The store or Redis is unavailable, or the hub is shutting down.", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
pub(crate) async fn connections(
    State(hub): State<Hub>,
    ApiApp(app): ApiApp,
    parts: Parts,
) -> Result<Response, Problem> {
    let pairs = query_pairs(&parts);
    let filter = ConnectionFilter {
        user: query_value(&pairs, "user").map(str::to_owned),
        tenant: query_value(&pairs, "tenant").map(str::to_owned),
        channel: query_value(&pairs, "channel").map(str::to_owned),
    };
    let page = hub.connections(&app, &filter, page(&pairs)?, query_value(&pairs, "cursor")).await?;
    Ok(Json(ConnectionsPage { connections: page.items, next_cursor: page.next_cursor }).into_response())
}

/// `DELETE /api/users/{id}/connections`.
#[utoipa::path(delete, path = "/api/users/{id}/connections", tag = "control", security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "User id (the `sub` of their tokens)."),
        ("reason" = Option<String>, Query, description = "Sent to the client as a `herald.kicked` event before its stream closes."),
    ),
    responses(
        (status = 200, description = "The user's streams, on every node, are closed.", body = Kicked),
        (status = 401, description = "No API key, or one that matches no app.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 500, description = "The store failed.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The store or Redis is unavailable, or the hub is shutting down.", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
pub(crate) async fn kick_user(
    State(hub): State<Hub>,
    ApiApp(app): ApiApp,
    Path(user): Path<String>,
    parts: Parts,
) -> Result<Response, Problem> {
    let pairs = query_pairs(&parts);
    let kicked = hub.kick_user(&app, &user, query_value(&pairs, "reason")).await?;
    Ok(Json(Kicked { kicked }).into_response())
}

/// `DELETE /api/connections/{id}`.
#[utoipa::path(delete, path = "/api/connections/{id}", tag = "control", security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "Connection id, as in `herald.connected` and the presence API."),
        ("reason" = Option<String>, Query, description = "Sent to the client as a `herald.kicked` event before its stream closes."),
    ),
    responses(
        (status = 200, description = "The connection is closed.", body = Kicked),
        (status = 401, description = "No API key, or one that matches no app.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such connection is open.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 500, description = "The store failed.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The store or Redis is unavailable, or the hub is shutting down.", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
pub(crate) async fn kick_connection(
    State(hub): State<Hub>,
    ApiApp(app): ApiApp,
    Path(id): Path<String>,
    parts: Parts,
) -> Result<Response, Problem> {
    let pairs = query_pairs(&parts);
    hub.kick_connection(&app, &id, query_value(&pairs, "reason")).await?;
    Ok(Json(Kicked { kicked: 1 }).into_response())
}

/// `GET /api/presence`: an SSE feed of `connect` and `disconnect` events.
#[utoipa::path(get, path = "/api/presence", tag = "presence", security(("api_key" = [])),
    responses(
        (status = 200, content_type = "text/event-stream", body = String, description = "A stream of comings and goings, on every node: event `connect` and event `disconnect`, each with a Connection as its data; `lagged` with `{\"missed\": n}` when this reader fell behind and missed events."),
        (status = 401, description = "No API key, or one that matches no app.", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
pub(crate) async fn presence(State(hub): State<Hub>, ApiApp(app): ApiApp) -> Result<Response, Problem> {
    let events = BroadcastStream::new(hub.presence(&app)?);
    let (hub_closing, hub_counting) = (hub.clone(), hub.clone());
    let stream = futures_util::stream::once(async { Ok::<_, Infallible>(sse::comment("presence")) })
        .chain(events.map(move |event| {
            Ok(match event {
                Ok(event) => {
                    let name = match event.kind {
                        PresenceKind::Connect => "connect",
                        PresenceKind::Disconnect => "disconnect",
                    };
                    sse::event(None, Some(name), &json!(event.connection).to_string())
                }
                Err(BroadcastStreamRecvError::Lagged(n)) => {
                    hub_counting.presence_lagged(&app, n);
                    sse::event(None, Some("lagged"), &json!({ "missed": n }).to_string())
                }
            })
        }))
        .take_until(async move { hub_closing.shutting_down().await });
    let mut response = Response::new(Body::from_stream(stream.map(|r: Result<Bytes, Infallible>| r)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// `POST /api/users/{id}/ack`: the backend acknowledges on the user's behalf.
#[utoipa::path(post, path = "/api/users/{id}/ack", operation_id = "ack_for_user", tag = "durable", security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "User id (the `sub` of their tokens)."),
    ),
    request_body = AckBody,
    responses(
        (status = 200, description = "How many changed from unread to read, and how many are left.", body = Acked),
        (status = 400, description = "Invalid JSON, or an id that is not a durable message id.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No API key, or one that matches no app.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within `body_timeout_secs`.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "The body is over the size limit.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 500, description = "The store failed.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The store or Redis is unavailable, or the hub is shutting down.", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
pub(crate) async fn ack(
    State(hub): State<Hub>,
    ApiApp(app): ApiApp,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<AckBody>,
) -> Result<Response, Problem> {
    Ok(Json(hub.ack(&app, &user, &body.ids).await?).into_response())
}

/// `GET /api/users/{id}/messages`.
#[utoipa::path(get, path = "/api/users/{id}/messages", tag = "durable", security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "User id (the `sub` of their tokens)."),
        ("state" = Option<String>, Query, description = "`unread` (default) or `all`."),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100)."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "One page of the user's durable messages, newest first.", body = MessagesPage),
        (status = 400, description = "A bad `state`, `limit` or `cursor`.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No API key, or one that matches no app.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 500, description = "The store failed.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The store or Redis is unavailable, or the hub is shutting down.", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
pub(crate) async fn messages(
    State(hub): State<Hub>,
    ApiApp(app): ApiApp,
    Path(user): Path<String>,
    parts: Parts,
) -> Result<Response, Problem> {
    let pairs = query_pairs(&parts);
    let unread_only = match query_value(&pairs, "state").unwrap_or("unread") {
        "unread" => true,
        "all" => false,
        other => return Err(Problem::bad_request(format!("`state` must be `unread` or `all`, not `{other}`"))),
    };
    let page = hub.messages(&app, &user, unread_only, page(&pairs)?, query_value(&pairs, "cursor")).await?;
    let messages = page
        .items
        .into_iter()
        .map(|m| InboxMessage {
            created_at: rfc3339_ms(m.created_ms),
            expires_at: rfc3339_ms(m.expires_ms),
            read_at: m.read_ms.map(rfc3339_ms),
            id: m.id,
            event: m.event,
            data: m.data,
        })
        .collect();
    Ok(Json(MessagesPage { messages, next_cursor: page.next_cursor }).into_response())
}

pub(crate) fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

/// `GET /api/users/{id}/unread`.
#[utoipa::path(get, path = "/api/users/{id}/unread", tag = "durable", security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "User id (the `sub` of their tokens)."),
    ),
    responses(
        (status = 200, description = "The user's unread count.", body = Unread),
        (status = 401, description = "No API key, or one that matches no app.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 500, description = "The store failed.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The store or Redis is unavailable, or the hub is shutting down.", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
pub(crate) async fn unread(
    State(hub): State<Hub>,
    ApiApp(app): ApiApp,
    Path(user): Path<String>,
) -> Result<Response, Problem> {
    let unread = hub.unread(&app, &user).await?;
    Ok(Json(Unread { user, unread }).into_response())
}

/// Answers a known path with the wrong method.
pub(crate) async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this path does not accept that method; see docs/PROTOCOL.md",
    )
}

/// Answers an unknown path.
pub(crate) async fn not_found() -> Problem {
    Problem::not_found("no such endpoint; see docs/PROTOCOL.md")
}
