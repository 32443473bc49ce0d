//! Request parts the handlers share: credentials, query strings and JSON bodies, each turned
//! into a problem document when it is wrong.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::problem::Problem;
use crate::hub::{Hub, SubscribeRequest};

/// Closes the client's whole transport; the server inserts one per accepted connection.
#[derive(Clone, Debug)]
pub struct ConnectionKill(pub CancellationToken);

/// The app whose API key authorised a backend call.
pub(crate) struct ApiApp(pub(crate) String);

impl FromRequestParts<Hub> for ApiApp {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, hub: &Hub) -> Result<Self, Problem> {
        Self::of_key(hub, bearer(&parts.headers))
    }
}

impl ApiApp {
    /// The app of `key`, the bearer credential of a request (`None`: it had none).
    pub(crate) fn of_key(hub: &Hub, key: Option<&str>) -> Result<Self, Problem> {
        let key = key.ok_or_else(|| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "api-key-missing",
                "send the app's API key as `Authorization: Bearer <key>`",
            )
        })?;
        hub.app_for_key(key)
            .map(|app| Self(app.to_string()))
            .ok_or_else(|| Problem::new(StatusCode::UNAUTHORIZED, "api-key-invalid", "the API key matches no app"))
    }
}

/// The user a subscriber request's token names, authenticated from the head alone: a handler
/// that takes this before its body reads nothing from an anonymous client.
pub(crate) struct User {
    pub(crate) app: String,
    pub(crate) id: String,
}

impl FromRequestParts<Hub> for User {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, hub: &Hub) -> Result<Self, Problem> {
        let (app, request) = subscriber(parts, hub);
        let claims = hub.authenticate(&app, &request)?;
        let id = claims.sub.ok_or_else(|| Problem::bad_request("an anonymous token has no messages to acknowledge"))?;
        Ok(Self { app, id })
    }
}

/// A JSON body parsed strictly: unknown fields, bad UTF-8 and wrong types are a 400 that says
/// where, and an oversized body a 413.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        json(&bytes).map(Self)
    }
}

/// Parses a whole JSON body strictly, as [`JsonBody`] does.
pub(crate) fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(bytes).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))
}

/// The whole body, within the size limit (413) and `body_timeout_secs` (408).
pub(crate) struct RawBody(pub(crate) Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        Bytes::from_request(req, state).await.map(Self).map_err(|e| {
            if let Some(timeout) = super::deadline::timed_out(&e) {
                timeout_problem(timeout)
            } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    "the request body is over the size limit",
                )
            } else {
                Problem::bad_request(format!("could not read the request body: {e}"))
            }
        })
    }
}

/// The answer to a body that missed its deadline.
pub(crate) fn timeout_problem(timeout: &super::deadline::BodyTimeout) -> Problem {
    Problem::new(StatusCode::REQUEST_TIMEOUT, "body-timeout", timeout.to_string())
}

/// The body of `POST /ack` and `POST /api/users/{id}/ack`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckBody {
    pub(crate) ids: Vec<String>,
}

/// `Authorization: Bearer <token>`.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    bearer_of(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// The credential of an `Authorization` value of the bearer scheme.
pub(crate) fn bearer_of(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// The value of cookie `name`.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The query string as pairs, percent-decoded; repeated keys stay repeated.
pub(crate) fn query_pairs(parts: &Parts) -> Vec<(String, String)> {
    form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()).into_owned().collect()
}

/// The first value of `key`.
pub(crate) fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Parses an optional numeric query value, naming it when it is not a number.
pub(crate) fn query_number(pairs: &[(String, String)], key: &str) -> Result<Option<u64>, Problem> {
    query_value(pairs, key)
        .map(|v| {
            v.parse().map_err(|_| Problem::bad_request(format!("`{key}` must be a non-negative integer, not `{v}`")))
        })
        .transpose()
}

/// The app a subscriber request addresses: `app=` in the query, else the `X-Herald-App` header,
/// else `default`. CORS decides by the same rule, so a stream and its CORS answer never disagree.
pub(crate) fn addressed_app<'a>(query: &'a [(String, String)], headers: Option<&'a HeaderMap>) -> &'a str {
    query_value(query, "app").or_else(|| headers?.get("x-herald-app")?.to_str().ok()).unwrap_or("default")
}

/// A `GET /events` carries no body. One that announces a body is refused: the stream's fast path
/// never reads past the head, and bytes left behind it must not be taken for a next request.
pub(crate) fn no_body(parts: &Parts) -> Result<(), Problem> {
    let length = parts.headers.get(header::CONTENT_LENGTH).map(|v| v.as_bytes() != b"0");
    if length.unwrap_or(false) || parts.headers.contains_key(header::TRANSFER_ENCODING) {
        return Err(Problem::bad_request(
            "`GET /events` takes no body; send no `Content-Length` or `Transfer-Encoding`",
        ));
    }
    Ok(())
}

/// Everything `/events` and `/poll` read from a subscriber's request, and the app it names.
pub(crate) fn subscriber(parts: &Parts, hub: &Hub) -> (String, SubscribeRequest) {
    let pairs = query_pairs(parts);
    let app = addressed_app(&pairs, Some(&parts.headers)).to_string();
    let cookie_name = hub.app_config(&app).map(|c| c.cookie_name.clone()).unwrap_or_default();
    let token = bearer(&parts.headers)
        .or_else(|| cookie(&parts.headers, &cookie_name))
        .or_else(|| query_value(&pairs, "access_token"))
        .map(str::to_owned);
    let last_event_id = parts
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or_else(|| query_value(&pairs, "lastEventId"))
        .map(str::to_owned);
    let remote_addr =
        parts.extensions.get::<ConnectInfo<SocketAddr>>().map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
    let request = SubscribeRequest {
        token,
        channels: pairs.iter().filter(|(k, _)| k == "channel").map(|(_, v)| v.clone()).collect(),
        client_id: query_value(&pairs, "client_id").map(str::to_owned),
        last_event_id,
        remote_addr,
        user_agent: parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
        ping_events: query_value(&pairs, "ping") == Some("1"),
    };
    (app, request)
}
