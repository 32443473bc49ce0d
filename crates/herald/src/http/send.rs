//! `POST /send/{path}`: browser-to-backend messages through the hub.
//!
//! The hub authenticates the user's token, strips any identity headers the browser sent,
//! adds its own (user, tenant, session, connection) signed with the app's `upstream_secret`,
//! and streams the body to the app's `upstream_url` without buffering it, within the size limit.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::extract::subscriber;
use super::problem::Problem;
use crate::hub::Hub;

const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

type UpstreamBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn client() -> &'static Client<HttpConnector, UpstreamBody> {
    static CLIENT: OnceLock<Client<HttpConnector, UpstreamBody>> = OnceLock::new();
    CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
}

/// The string the signature covers: every identity header, in a fixed order.
pub fn signed_string(timestamp: u64, app: &str, user: &str, tenant: &str, session: &str, connection: &str) -> String {
    format!("{timestamp}\n{app}\n{user}\n{tenant}\n{session}\n{connection}")
}

pub(crate) async fn send(
    State(hub): State<Hub>,
    Path(path): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let (mut parts, body) = request.into_parts();
    let (app, subscriber_request) = subscriber(&parts, &hub);
    let claims = hub.authenticate(&app, &subscriber_request)?;
    let config = hub.app_config(&app)?;
    let (Some(upstream), Some(secret)) = (&config.upstream_url, &config.upstream_secret) else {
        return Err(Problem::new(
            StatusCode::NOT_IMPLEMENTED,
            "no-upstream",
            "this app has no `upstream_url`, so sends have nowhere to go",
        ));
    };
    let limit = config.limits.max_send_bytes;
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }

    let query = parts.uri.query().map(strip_token).filter(|q| !q.is_empty());
    let uri =
        format!("{}/{}{}", upstream.trim_end_matches('/'), path, query.map(|q| format!("?{q}")).unwrap_or_default());
    let uri: http::Uri =
        uri.parse().map_err(|_| Problem::bad_request(format!("`{path}` does not make a valid upstream URL")))?;

    let connection = parts.headers.get("x-herald-connection").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let headers = &mut parts.headers;
    let own: Vec<HeaderName> = headers.keys().filter(|k| k.as_str().starts_with("x-herald-")).cloned().collect();
    for name in own {
        headers.remove(name);
    }
    for name in [header::AUTHORIZATION, header::COOKIE, header::HOST, header::CONNECTION] {
        headers.remove(name);
    }
    let timestamp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (user, tenant, session) =
        (claims.sub.unwrap_or_default(), claims.tenant.unwrap_or_default(), claims.sid.unwrap_or_default());
    let signature =
        crate::auth::sign(secret, signed_string(timestamp, &app, &user, &tenant, &session, &connection).as_bytes());
    for (name, value) in [
        ("x-herald-app", app.as_str()),
        ("x-herald-user", &user),
        ("x-herald-tenant", &tenant),
        ("x-herald-session", &session),
        ("x-herald-connection", &connection),
        ("x-herald-timestamp", &timestamp.to_string()),
        ("x-herald-signature", &signature),
    ] {
        let value = HeaderValue::from_str(value)
            .map_err(|_| Problem::bad_request(format!("`{name}` would not be a valid header value")))?;
        headers.insert(HeaderName::from_static(name), value);
    }

    let body: UpstreamBody =
        Limited::new(body, limit).map_err(|e| e as Box<dyn std::error::Error + Send + Sync>).boxed_unsync();
    let mut upstream_request = http::Request::from_parts(parts, body);
    *upstream_request.uri_mut() = uri;
    *upstream_request.version_mut() = http::Version::HTTP_11;
    let response = tokio::time::timeout(UPSTREAM_TIMEOUT, client().request(upstream_request))
        .await
        .map_err(|_| {
            Problem::new(StatusCode::GATEWAY_TIMEOUT, "upstream-timeout", "the upstream did not answer in time")
        })?
        .map_err(|e| {
            if is_length_limit(&e) {
                too_large(limit)
            } else {
                tracing::warn!(error = %e, "Upstream request failed.");
                Problem::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream-unreachable",
                    "the upstream could not be reached; retry later",
                )
            }
        })?;
    Ok(response.map(Body::new).into_response())
}

fn is_length_limit(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn too_large(limit: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        format!("the body is over {limit} bytes (`limits.max_send_bytes`)"),
    )
}

/// Drops the subscriber's own parameters from the query forwarded upstream.
fn strip_token(query: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k != "access_token" && k != "app"))
        .finish()
}
