//! `/.well-known/mercure`: the Mercure protocol's HTTP face — subscribe (GET), publish (POST),
//! the subscriptions API — and `GET /`.
//!
//! The app is chosen as for `/events` and CORS: `app=` in the query, else `X-Herald-App`, else
//! `default`. Errors are problem documents; 401 and 403 carry the `WWW-Authenticate: Bearer`
//! challenge with the OAuth error code the spec asks for.

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::response::{Html, IntoResponse, Response};
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};

use super::extract::{addressed_app, bearer, cookie, no_body, query_pairs, query_value, ConnectionKill};
use super::problem::Problem;
use crate::hub::mercure::HUB_PATH;
use crate::hub::{Hub, MercureError, MercurePublish, MercureSubscribe, StreamBody, SubscriptionsQuery};
use crate::mercure::MatchType;

/// Cookies that may carry a Mercure token: the 0.x name, then the newer one.
const COOKIES: [&str; 2] = ["mercureAuthorization", "__Secure-mercure_access_token"];

impl From<MercureError> for Problem {
    fn from(e: MercureError) -> Self {
        let detail = e.to_string();
        match e {
            MercureError::BadRequest(_) => Problem::bad_request(detail),
            MercureError::NoToken(_) => {
                Problem::new(StatusCode::UNAUTHORIZED, "token-missing", detail).with_challenge("Bearer")
            }
            MercureError::InvalidToken => Problem::new(StatusCode::UNAUTHORIZED, "token-invalid", detail)
                .with_challenge("Bearer error=\"invalid_token\""),
            MercureError::Forbidden(_) => Problem::new(StatusCode::FORBIDDEN, "insufficient-scope", detail)
                .with_challenge("Bearer error=\"insufficient_scope\""),
            MercureError::NotFound(_) | MercureError::Disabled(_) => Problem::not_found(detail),
            MercureError::TooLarge(_) => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", detail),
            MercureError::Hub(e) => e.into(),
        }
    }
}

/// The token of a Mercure request and whether it came from a cookie: the `Authorization` header
/// wins, then a cookie, then (0.x) the `authorization` query parameter.
fn token(parts: &Parts, pairs: &[(String, String)]) -> (Option<String>, bool) {
    if let Some(t) = bearer(&parts.headers) {
        return (Some(t.to_owned()), false);
    }
    if let Some(t) = COOKIES.iter().find_map(|name| cookie(&parts.headers, name)) {
        return (Some(t.to_owned()), true);
    }
    (query_value(pairs, "authorization").map(str::to_owned), false)
}

/// `GET /.well-known/mercure`: a Mercure event stream.
pub(crate) async fn subscribe(State(hub): State<Hub>, parts: Parts) -> Result<Response, Problem> {
    let kill = parts.extensions.get::<ConnectionKill>().map(|k| k.0.clone());
    let (_, body, head) = stream(&hub, &parts, kill).await.map_err(|(_, problem)| problem)?;
    let (head, ()) = head.into_parts();
    Ok(Response::from_parts(head, Body::new(body)))
}

/// Opens the Mercure stream `parts` asks for: its app, its body and its response head (without
/// CORS, which the caller adds). Both stream paths (hyper and the direct one for HTTP/1.1)
/// answer with exactly this. A refusal names the app too, for its CORS headers.
pub(crate) async fn stream(
    hub: &Hub,
    parts: &Parts,
    kill: Option<tokio_util::sync::CancellationToken>,
) -> Result<(String, StreamBody, http::Response<()>), (String, Problem)> {
    let pairs = query_pairs(parts);
    let app = addressed_app(&pairs, Some(&parts.headers)).to_string();
    let refuse = |problem: Problem| (app.clone(), problem);
    no_body(parts).map_err(refuse)?;
    let mut selectors = Vec::new();
    for (name, value) in &pairs {
        let kind = match name.as_str() {
            "topic" => (MatchType::Template, true),
            "match" | "match_exact" => (MatchType::Exact, false),
            "match_urlpattern" => (MatchType::UrlPattern, false),
            other if other.len() >= 5 && other[..5].eq_ignore_ascii_case("match") => {
                return Err(refuse(Problem::bad_request(format!(
                    "`{other}` is not a matcher type this hub supports: use `match`, `match_exact` or `match_urlpattern`"
                ))));
            }
            _ => continue,
        };
        selectors.push((kind.0, value.clone(), kind.1));
    }
    let last_event_id = parts
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or_else(|| query_value(&pairs, "last_event_id"))
        .or_else(|| query_value(&pairs, "lastEventID"))
        .map(str::to_owned);
    let request = MercureSubscribe {
        token: token(parts, &pairs).0,
        selectors,
        last_event_id,
        remote_addr: parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map_or(std::net::SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0),
        user_agent: parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
    };
    let stream = hub.mercure_subscribe(&app, request, kill).await.map_err(|e| refuse(e.into()))?;
    let mut head = http::Response::new(());
    let headers = head.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Ok(id) = HeaderValue::from_str(&stream.last_event_id) {
        headers.insert("last-event-id", id.clone());
        headers.insert("mercure-last-event-id", id);
    }
    Ok((app, stream.body, head))
}

/// `POST /.well-known/mercure`: publishes a form-encoded update; answers its id.
pub(crate) async fn publish(State(hub): State<Hub>, parts: Parts, body: Bytes) -> Result<Response, Problem> {
    let query = query_pairs(&parts);
    let app = addressed_app(&query, Some(&parts.headers)).to_string();
    let (token, from_cookie) = token(&parts, &query);
    let origin = parts
        .headers
        .get(header::ORIGIN)
        .or_else(|| parts.headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| url::Url::parse(v).ok())
        .map(|u| u.origin().ascii_serialization());
    let mut request = MercurePublish { token, from_cookie, origin, ..MercurePublish::default() };
    for (name, value) in form_urlencoded::parse(&body) {
        match &*name {
            "topic" => request.topics.push(value.into_owned()),
            "data" => request.data = value.into_owned(),
            "private" => request.private = true,
            "id" => request.id = Some(value.into_owned()),
            "type" => request.event = Some(value.into_owned()),
            "retry" => request.retry = Some(value.into_owned()),
            _ => {} // The spec: unknown fields are ignored, for future extensions.
        }
    }
    let id = hub.mercure_publish(&app, request).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], id).into_response())
}

/// `GET /.well-known/mercure/subscriptions[/...]`: active subscriptions. Paths in the newer
/// shape start with a match type (`exact`, `urlpattern`) and answer plain JSON; the 0.x paths
/// (`/{topic}[/{subscriber}]`) and the bare collection answer the 0.x JSON-LD documents when the
/// path is 0.x, the newer ones otherwise.
pub(crate) async fn subscriptions(State(hub): State<Hub>, parts: Parts) -> Result<Response, Problem> {
    let pairs = query_pairs(&parts);
    let app = addressed_app(&pairs, Some(&parts.headers)).to_string();
    let path = parts.uri.path().to_owned();
    let rest = path.strip_prefix(&format!("{HUB_PATH}/subscriptions")).unwrap_or("");
    let segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let typed = |t: &str| t == "exact" || t == "urlpattern";
    let query = match segments.as_slice() {
        [] => SubscriptionsQuery::All,
        [t, m] if typed(t) => SubscriptionsQuery::Selector { match_type: t.clone(), selector: m.clone() },
        [t, m, s] if typed(t) => {
            SubscriptionsQuery::One { match_type: t.clone(), selector: m.clone(), subscriber: s.clone() }
        }
        [topic] => SubscriptionsQuery::Selector { match_type: "topic".into(), selector: topic.clone() },
        [topic, s] => {
            SubscriptionsQuery::One { match_type: "topic".into(), selector: topic.clone(), subscriber: s.clone() }
        }
        _ => return Err(Problem::not_found("no such subscriptions resource")),
    };
    let legacy = matches!(&query, SubscriptionsQuery::Selector { match_type, .. } | SubscriptionsQuery::One { match_type, .. } if match_type == "topic");
    let (token, _) = token(&parts, &pairs);
    let (doc, last) = hub.mercure_subscriptions(&app, token.as_deref(), &path, query).await?;
    let mut response =
        ([(header::CONTENT_TYPE, if legacy { "application/ld+json" } else { "application/json" })], doc.to_string())
            .into_response();
    let headers = response.headers_mut();
    let link = format!(
        "<{HUB_PATH}>; rel=\"mercure\"; last-event-id=\"{}\"; type=\"mercure\"; content-type=\"application/json\"",
        last.replace(['"', '\\'], "")
    );
    if let Ok(link) = HeaderValue::from_str(&link) {
        headers.insert(header::LINK, link);
    }
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", last.replace(['"', '\\'], ""))) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("must-revalidate"));
    Ok(response)
}

/// `GET /`: a short page saying what this is (the Mercure conformance suite opens it first).
pub(crate) async fn home() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Herald</title></head><body>",
        "<h1>Herald</h1><p>A real-time push hub over Server-Sent Events. It also speaks Mercure at ",
        "<code>/.well-known/mercure</code>. See <a href=\"/demo\">the demo</a>.</p></body></html>"
    ))
}
