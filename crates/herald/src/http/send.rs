//! `POST /send/{path}`: browser-to-backend messages through the hub.
//!
//! The hub authenticates the user's token and forwards the request to the app's
//! `upstream_url`, streaming the body within the size limit. Everything that names the caller
//! comes from the hub, never from the browser: the identity headers (user, tenant, session,
//! and a connection id only when that connection is the user's own), `X-Forwarded-For` from the
//! socket's peer, and a signature over them and the request line. The path is forwarded as
//! received, still percent-encoded, and refused when it could climb out of the upstream's
//! prefix or smuggle a query.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::Client;

use super::extract::subscriber;
use super::problem::{Problem, ProblemDocument};
use crate::hub::Hub;
use crate::outbound::Connector;

const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

type UpstreamBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn client() -> &'static Client<Connector, UpstreamBody> {
    static CLIENT: OnceLock<Client<Connector, UpstreamBody>> = OnceLock::new();
    CLIENT.get_or_init(crate::outbound::client)
}

/// What the signature covers, one field per line: who sent it, and the request the upstream
/// receives (method, path as sent, query without `?`). See docs/PROTOCOL.md.
pub struct Signed<'a> {
    /// `X-Herald-Timestamp`, Unix seconds.
    pub timestamp: u64,
    /// App id.
    pub app: &'a str,
    /// User id (empty for an anonymous token).
    pub user: &'a str,
    /// Tenant (empty when the token has none).
    pub tenant: &'a str,
    /// Login session (empty when the token has none).
    pub session: &'a str,
    /// The user's own connection id, or empty.
    pub connection: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// The path the upstream receives, percent-encoded as sent.
    pub path: &'a str,
    /// The query the upstream receives, without `?`; empty when there is none.
    pub query: &'a str,
}

impl Signed<'_> {
    /// The string the HMAC is computed over.
    pub fn string(&self) -> String {
        let Self { timestamp, app, user, tenant, session, connection, method, path, query } = self;
        format!("{timestamp}\n{app}\n{user}\n{tenant}\n{session}\n{connection}\n{method}\n{path}\n{query}")
    }
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
];

/// What a client may not say about itself: the hub says it, from the socket.
const CLIENT_CLAIMS: [&str; 4] = ["forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"];

/// `POST /send/{path}`: forwards the body to the app's `upstream_url`, signed.
#[utoipa::path(post, path = "/send/{path}", tag = "subscriber",
    security(("user_token" = []), ("user_token_query" = []), ("user_token_cookie" = [])),
    params(("path" = String, Path, description = "Appended to `upstream_url`; may not climb out of it (`..`) or carry a query.")),
    request_body(content = Option<serde_json::Value>, content_type = "*/*", description = "Any body, or none, up to `limits.max_send_bytes`; forwarded as is."),
    responses(
        (status = "default", description = "The upstream's answer, status, headers and body, passed through."),
        (status = 400, description = "A path that would leave the upstream's prefix, or a bad query.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No token, or one that is invalid or expired.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "The token does not allow a channel asked for.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within `body_timeout_secs`.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "The body is over `limits.max_send_bytes`.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 501, description = "The app has no `upstream_url`.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 502, description = "The upstream could not be reached.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The app has no JWT key.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 504, description = "The upstream did not answer in time.", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
pub(crate) async fn send(State(hub): State<Hub>, request: Request) -> Result<Response, Problem> {
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

    let raw = parts.uri.path().strip_prefix("/send/").unwrap_or_default();
    let path = upstream_path(raw).map_err(|why| Problem::new(StatusCode::BAD_REQUEST, "invalid-send-path", why))?;
    let upstream: http::Uri = upstream.parse().map_err(|_| Problem::bad_request("`upstream_url` is not a URL"))?;
    let path = format!("{}/{path}", upstream.path().trim_end_matches('/'));
    let query = parts.uri.query().map(strip_token).unwrap_or_default();
    let path_and_query = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
    let uri = http::uri::Builder::from(upstream)
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| Problem::bad_request(format!("`{raw}` does not make a valid upstream URL")))?;

    let user = claims.sub.unwrap_or_default();
    let claimed = parts.headers.get("x-herald-connection").and_then(|v| v.to_str().ok()).unwrap_or("");
    let connection = match claimed.is_empty() || user.is_empty() {
        true => String::new(),
        false => match hub.user_connections(&app, &user).await {
            Ok(own) if own.iter().any(|c| c.id == claimed) => claimed.to_string(),
            _ => String::new(),
        },
    };
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    strip_client_headers(&mut parts.headers);
    let headers = &mut parts.headers;
    if let Some(peer) = peer {
        let forwarded = match peer {
            std::net::IpAddr::V4(v4) => format!("for={v4}"),
            std::net::IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
        };
        headers.insert("x-forwarded-for", HeaderValue::from_str(&peer.to_string()).expect("an IP is a header value"));
        headers.insert(header::FORWARDED, HeaderValue::from_str(&forwarded).expect("an IP is a header value"));
    }
    let timestamp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (tenant, session) = (claims.tenant.unwrap_or_default(), claims.sid.unwrap_or_default());
    let signed = Signed {
        timestamp,
        app: &app,
        user: &user,
        tenant: &tenant,
        session: &session,
        connection: &connection,
        method: parts.method.as_str(),
        path: &path,
        query: &query,
    };
    let signature = crate::auth::sign(secret, signed.string().as_bytes());
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

    // Over the limit mid-stream, the body errors: the client aborts the request without its
    // final chunk, so the upstream never sees a complete request.
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
            if let Some(timeout) = super::deadline::timed_out(&e) {
                Problem::new(StatusCode::REQUEST_TIMEOUT, "body-timeout", timeout.to_string())
            } else if is_length_limit(&e) {
                too_large(limit)
            } else {
                let cause = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default();
                tracing::warn!(error = %e, %cause, "Upstream request failed.");
                Problem::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream-unreachable",
                    "the upstream could not be reached; retry later",
                )
            }
        })?;
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)).into_response())
}

/// Checks the path after `/send/` as received (still percent-encoded) and returns it unchanged
/// when forwarding it cannot leave the upstream's prefix: no `.` or `..` segment (in any
/// encoding), no encoded `/`, no `\`, no `?` or `#`, no control bytes.
///
/// # Errors
///
/// What is wrong with the path, for the 400 answer.
pub(crate) fn upstream_path(raw: &str) -> Result<&str, String> {
    if raw.is_empty() {
        return Err("the path after `/send/` is empty".into());
    }
    for segment in raw.split('/') {
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(segment).collect();
        if decoded == b"." || decoded == b".." {
            return Err("the path may not contain `.` or `..` segments".into());
        }
        if let Some(b) = decoded.iter().find(|b| matches!(b, b'/' | b'\\' | b'?' | b'#') || b.is_ascii_control()) {
            return Err(format!(
                "the path may not contain an encoded `/`, `\\`, `?`, `#` or a control character (found byte {b:#04x})"
            ));
        }
    }
    Ok(raw)
}

/// Removes hop-by-hop headers (and those `Connection` names), identity the browser claims, and
/// the user's credentials.
fn strip_client_headers(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    let own: Vec<HeaderName> = headers.keys().filter(|k| k.as_str().starts_with("x-herald-")).cloned().collect();
    for name in own.into_iter().chain([header::AUTHORIZATION, header::COOKIE, header::HOST]) {
        headers.remove(name);
    }
    for name in CLIENT_CLAIMS {
        headers.remove(name);
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in listed {
        headers.remove(name.as_str());
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
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

/// The request's own query without the subscriber's parameters (`access_token`, `app`).
fn strip_token(query: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k != "access_token" && k != "app"))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::upstream_path;

    #[test]
    fn refuses_paths_that_leave_the_prefix_or_carry_a_query() {
        for ok in ["orders", "orders/new", "a%20b/c", "files/scan.pdf", "..a", "a..", ".well", "%7Euser"] {
            assert_eq!(upstream_path(ok), Ok(ok), "{ok}");
        }
        for bad in [
            "..",
            ".",
            "../admin",
            "a/../b",
            "a/./b",
            "%2e%2e/admin",
            "%2E%2e",
            ".%2E",
            "..%2Fadmin",
            "a%2fb",
            "a%5cb",
            "a\\b",
            "x%3Fadmin=1",
            "x%23frag",
            "a%00b",
            "a%0d%0ab",
            "",
        ] {
            assert!(upstream_path(bad).is_err(), "{bad}");
        }
    }
}
