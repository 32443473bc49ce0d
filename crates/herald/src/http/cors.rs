//! CORS, decided per app: a browser origin is allowed only by the app the request addresses.
//!
//! An origin the app lists is reflected with `Access-Control-Allow-Credentials: true` (cookies
//! go along); `*` answers `Access-Control-Allow-Origin: *` without credentials, so a page on any
//! origin can subscribe with a token in the header or the query but never with the user's
//! cookie. `/api/*` gets no CORS at all: it takes API keys, which never belong in a browser.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::extract::addressed_app;
use crate::hub::Hub;

/// The request headers a browser may send (`Access-Control-Allow-Headers`).
const ALLOWED_HEADERS: &str =
    "authorization, content-type, last-event-id, idempotency-key, x-herald-app, x-herald-connection";

/// The CORS headers of an answer to `origin` from `app` (`None`: an answer that allows no
/// browser, such as `/api/*`).
pub(crate) fn headers(hub: &Hub, app: Option<&str>, origin: Option<&HeaderValue>) -> HeaderMap {
    let listed = app.and_then(|app| hub.app_config(app).ok()).map(|config| &config.cors_origins[..]);
    headers_for(listed, origin)
}

/// The CORS headers of a `/.well-known/mercure` answer of `app`: its Mercure origins, and the
/// headers pages may read (the last-event-id ones and the subscriptions API's `Link`).
pub(crate) fn mercure_headers(hub: &Hub, app: &str, origin: Option<&HeaderValue>) -> HeaderMap {
    let config = hub.app_config(app).ok();
    let mut cors = headers_for(config.map(|c| &c.mercure.cors_origins[..]), origin);
    if cors.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
        cors.insert(
            http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("last-event-id, mercure-last-event-id, link"),
        );
    }
    cors
}

/// The CORS headers of an answer to `origin` when `listed` are the allowed origins.
fn headers_for(listed: Option<&[String]>, origin: Option<&HeaderValue>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let Some(listed) = listed else {
        return headers;
    };
    // The answer depends on the origin whenever the app names origins, allowed or not, so a
    // cache must not hand one origin's answer to another.
    if listed.iter().any(|o| o != "*") {
        headers.insert(VARY, HeaderValue::from_static("origin"));
    }
    let Some(origin) = origin else { return headers };
    if origin.to_str().is_ok_and(|o| listed.iter().any(|l| l == o)) {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    } else if listed.iter().any(|o| o == "*") {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    }
    headers
}

/// The app a request addresses for CORS; `None` for `/api/*`, which browsers are not to call,
/// and for the admin dashboard, which only its own page calls.
/// A preflight names its app in the query only: it cannot carry the value of `X-Herald-App`.
fn app_of(request: &Request, preflight: bool) -> Option<String> {
    let path = request.uri().path();
    if path == "/api" || path.starts_with("/api/") || path == "/admin" || path.starts_with("/admin/") {
        return None;
    }
    let query: Vec<(String, String)> =
        form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
    Some(addressed_app(&query, (!preflight).then(|| request.headers())).to_string())
}

/// Middleware: answers preflights and adds the CORS headers of the addressed app to every answer.
pub(crate) async fn layer(State(hub): State<Hub>, request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(ORIGIN).cloned() else { return next.run(request).await };
    let preflight =
        request.method() == Method::OPTIONS && request.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD);
    // `/.well-known/mercure` answers with the app's Mercure origins.
    let app = app_of(&request, preflight);
    let cors = match request.uri().path().starts_with("/.well-known/mercure") {
        true => mercure_headers(&hub, app.as_deref().unwrap_or("default"), Some(&origin)),
        false => headers(&hub, app.as_deref(), Some(&origin)),
    };
    if preflight {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if cors.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
            let headers = response.headers_mut();
            headers.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOWED_HEADERS));
            headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
        response.headers_mut().extend(cors);
        return response;
    }
    let mut response = next.run(request).await;
    response.headers_mut().extend(cors);
    response
}
