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
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

use super::extract::{query_number, query_pairs, query_value, AckBody, ApiApp, JsonBody, RawBody};
use super::problem::Problem;
use crate::hub::{ConnectionFilter, Hub, PresenceKind};
use crate::message::{Publish, Targets};
use crate::sse;

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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishFields {
    #[serde(deserialize_with = "object")]
    to: Targets,
    #[serde(default)]
    event: Option<String>,
    data: Box<RawValue>,
    #[serde(default)]
    durable: bool,
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
pub(crate) async fn publish(
    State(hub): State<Hub>,
    ApiApp(app): ApiApp,
    JsonBody(body): JsonBody<PublishBody>,
) -> Result<Response, Problem> {
    Ok(Json(hub.publish(&app, body.into()).await?).into_response())
}

/// `POST /api/publish/batch`: an array in, an array of answers (or per-item problems) out. The
/// parse stops at the first item past `limits.max_batch`.
pub(crate) async fn publish_batch(
    State(hub): State<Hub>,
    ApiApp(app): ApiApp,
    RawBody(body): RawBody,
) -> Result<Response, Problem> {
    let max = hub.app_config(&app)?.limits.max_batch;
    let batch = parse_batch(&body, max).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))?;
    drop(body);
    let answers = hub.publish_batch(&app, batch.into_iter().map(Into::into).collect()).await?;
    let answers: Vec<Value> = answers
        .into_iter()
        .map(|a| match a {
            Ok(published) => json!(published),
            Err(e) => json!({
                "type": format!("urn:herald:problem:{}", e.kind()),
                "title": e.status().canonical_reason(),
                "status": e.status().as_u16(),
                "detail": e.to_string(),
            }),
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
pub(crate) async fn users(State(hub): State<Hub>, ApiApp(app): ApiApp, parts: Parts) -> Result<Response, Problem> {
    let pairs = query_pairs(&parts);
    let page = hub.online_users(&app, page(&pairs)?, query_value(&pairs, "cursor")).await?;
    Ok(Json(json!({ "users": page.items, "next_cursor": page.next_cursor })).into_response())
}

/// `GET /api/users/{id}`.
pub(crate) async fn user(
    State(hub): State<Hub>,
    ApiApp(app): ApiApp,
    Path(user): Path<String>,
) -> Result<Response, Problem> {
    let connections = hub.user_connections(&app, &user).await?;
    Ok(Json(json!({ "id": user, "online": !connections.is_empty(), "connections": connections })).into_response())
}

/// `GET /api/connections`.
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
    Ok(Json(json!({ "connections": page.items, "next_cursor": page.next_cursor })).into_response())
}

/// `DELETE /api/users/{id}/connections`.
pub(crate) async fn kick_user(
    State(hub): State<Hub>,
    ApiApp(app): ApiApp,
    Path(user): Path<String>,
    parts: Parts,
) -> Result<Response, Problem> {
    let pairs = query_pairs(&parts);
    let kicked = hub.kick_user(&app, &user, query_value(&pairs, "reason")).await?;
    Ok(Json(json!({ "kicked": kicked })).into_response())
}

/// `DELETE /api/connections/{id}`.
pub(crate) async fn kick_connection(
    State(hub): State<Hub>,
    ApiApp(app): ApiApp,
    Path(id): Path<String>,
    parts: Parts,
) -> Result<Response, Problem> {
    let pairs = query_pairs(&parts);
    hub.kick_connection(&app, &id, query_value(&pairs, "reason")).await?;
    Ok(Json(json!({ "kicked": 1 })).into_response())
}

/// `GET /api/presence`: an SSE feed of `connect` and `disconnect` events.
pub(crate) async fn presence(State(hub): State<Hub>, ApiApp(app): ApiApp) -> Result<Response, Problem> {
    let events = BroadcastStream::new(hub.presence(&app)?);
    let hub_closing = hub.clone();
    let stream = futures_util::stream::once(async { Ok::<_, Infallible>(sse::comment("presence")) })
        .chain(events.map(|event| {
            Ok(match event {
                Ok(event) => {
                    let name = match event.kind {
                        PresenceKind::Connect => "connect",
                        PresenceKind::Disconnect => "disconnect",
                    };
                    sse::event(None, Some(name), &json!(event.connection).to_string())
                }
                Err(BroadcastStreamRecvError::Lagged(n)) => {
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
pub(crate) async fn ack(
    State(hub): State<Hub>,
    ApiApp(app): ApiApp,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<AckBody>,
) -> Result<Response, Problem> {
    Ok(Json(hub.ack(&app, &user, &body.ids).await?).into_response())
}

/// `GET /api/users/{id}/messages`.
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
    let messages: Vec<Value> = page
        .items
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "event": m.event,
                "data": m.data,
                "created_at": rfc3339_ms(m.created_ms),
                "expires_at": rfc3339_ms(m.expires_ms),
                "read_at": m.read_ms.map(rfc3339_ms),
            })
        })
        .collect();
    Ok(Json(json!({ "messages": messages, "next_cursor": page.next_cursor })).into_response())
}

fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

/// `GET /api/users/{id}/unread`.
pub(crate) async fn unread(
    State(hub): State<Hub>,
    ApiApp(app): ApiApp,
    Path(user): Path<String>,
) -> Result<Response, Problem> {
    let unread = hub.unread(&app, &user).await?;
    Ok(Json(json!({ "user": user, "unread": unread })).into_response())
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
