//! The admin dashboard at `/admin`: a small page the hub serves itself (no build step, no CDN)
//! and the JSON API behind it under `/admin/api/`, which reuses the hub's own presence, kick,
//! publish and inbox functions.
//!
//! # Security
//!
//! - It exists only when someone can sign in: with `admin_password` (every app) or with an
//!   app's API key (that app alone). Otherwise `/admin` is a 404 like any unknown path.
//! - Sessions are a random id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` over TLS)
//!   pointing into a server-side table with an expiry (`session`).
//! - Failed sign-ins are throttled per peer address and in total (`throttle`).
//! - Every change (POST, DELETE) must come from the dashboard's own origin (`Origin` matches
//!   `Host`) and carry the session's CSRF token in `X-Herald-CSRF`; the cookie's `SameSite`
//!   is the first line, these are the second.
//! - A session scoped to one app answers 404 for every other app, existing or not.
//! - Every answer forbids framing and caching, and the page runs under a strict CSP.

mod api;
mod live;
mod samples;
mod session;
mod throttle;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::request::Parts;
use http::{header, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::extract::{cookie, JsonBody};
use super::Problem;
use crate::hub::Hub;
use samples::Samples;
use session::{csrf_matches, Credentials, Scope, Session, Sessions, COOKIE, SESSION_TTL};
use throttle::{Refusal, Throttle};

const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/admin.js");
const STYLE: &str = include_str!("ui/admin.css");

/// The header that carries the session's CSRF token on every change.
const CSRF_HEADER: &str = "x-herald-csrf";

/// The dashboard's state, shared by its handlers.
#[derive(Clone)]
pub(crate) struct Admin(Arc<Inner>);

struct Inner {
    hub: Hub,
    credentials: Credentials,
    sessions: Sessions,
    throttle: Throttle,
    samples: Arc<Samples>,
    started: Instant,
    /// The hub serves TLS itself, so the cookie is `Secure` whatever the page says.
    tls: bool,
}

/// The dashboard's routes, or `None` when nobody could sign in (then `/admin` is a 404).
pub(crate) fn router(hub: &Hub) -> Option<Router<Hub>> {
    let config = hub.config();
    let keys = config.all_apps().filter_map(|(_, a)| a.api_key.clone().map(|key| (a.id.clone(), key)));
    let credentials = Credentials::new(config.admin_password.as_deref(), keys);
    if !credentials.any() {
        return None;
    }
    let samples = Arc::new(Samples::new(hub.app_ids()));
    // Sampling starts with the hub, so the charts show the minutes before anyone looked.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(samples.clone().run(hub.clone()));
    }
    let admin = Admin(Arc::new(Inner {
        hub: hub.clone(),
        credentials,
        sessions: Sessions::default(),
        throttle: Throttle::new(),
        samples,
        started: Instant::now(),
        tls: config.tls_cert.is_some(),
    }));
    let router = Router::new()
        .route("/admin", get(page))
        // The page's relative links need `/admin` without the slash.
        .route("/admin/", get(|| async { Redirect::permanent("../admin") }))
        .route("/admin/admin.js", get(script))
        .route("/admin/admin.css", get(style))
        .route("/admin/api/session", get(session_info).post(sign_in).delete(sign_out))
        .route("/admin/api/overview", get(live::overview))
        .route("/admin/api/stream", get(live::stream))
        .route("/admin/api/apps/{app}/users", get(api::users))
        .route("/admin/api/apps/{app}/users/{user}/kick", post(api::kick_user))
        .route("/admin/api/apps/{app}/users/{user}/messages", get(api::messages))
        .route("/admin/api/apps/{app}/users/{user}/ack", post(api::ack))
        .route("/admin/api/apps/{app}/connections/{id}/kick", post(api::kick_connection))
        .route("/admin/api/apps/{app}/channels", get(api::channels))
        .route("/admin/api/apps/{app}/channels/{channel}/history", get(api::channel_history))
        .route("/admin/api/apps/{app}/channels/{channel}/live", get(live::channel))
        .route("/admin/api/apps/{app}/publish", post(api::publish))
        .layer(axum::middleware::map_response(hardened))
        .with_state(admin);
    Some(router)
}

/// Headers on every dashboard answer: no framing (clickjacking a Kick button), no sniffing, no
/// referrer, no caching of anything a session saw, and a CSP that allows only the page's own
/// script and style.
async fn hardened(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT).into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// A signed-in request. For a change (any method but GET and HEAD) it is also same-origin and
/// carries the session's CSRF token.
pub(crate) struct Signed {
    id: String,
    session: Session,
}

impl Signed {
    /// The app `app`, if this session may see it; 404 otherwise, as if it did not exist.
    pub(crate) fn app(&self, hub: &Hub, app: &str) -> Result<String, Problem> {
        if self.session.scope.allows(app) && hub.app_config(app).is_ok() {
            Ok(app.to_string())
        } else {
            Err(Problem::not_found(format!("there is no app `{app}` in this session")))
        }
    }

    pub(crate) fn scope(&self) -> &Scope {
        &self.session.scope
    }
}

impl FromRequestParts<Admin> for Signed {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, admin: &Admin) -> Result<Self, Problem> {
        let signed_out = || {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "admin-session-missing",
                "sign in at /admin first: this needs a live dashboard session",
            )
        };
        let id = cookie(&parts.headers, COOKIE).ok_or_else(signed_out)?;
        let session = admin.0.sessions.get(id, Instant::now()).ok_or_else(signed_out)?;
        if parts.method != Method::GET && parts.method != Method::HEAD {
            same_origin(parts)?;
            let token = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
            if !csrf_matches(&session, token) {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "csrf-token-invalid",
                    "a change needs the session's CSRF token in `X-Herald-CSRF` (GET /admin/api/session gives it)",
                ));
            }
        }
        Ok(Self { id: id.to_string(), session })
    }
}

/// Refuses a request whose `Origin` is not the host it was sent to: a change, or a sign-in,
/// that another site's page caused.
fn same_origin(parts: &Parts) -> Result<(), Problem> {
    let refused = |detail: &str| Problem::new(StatusCode::FORBIDDEN, "cross-origin-refused", detail);
    let origin = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refused("a change must come from the dashboard's page, which sends `Origin`"))?;
    let host =
        parts.headers.get(header::HOST).and_then(|v| v.to_str().ok()).or(parts.uri.authority().map(|a| a.as_str()));
    let origin_host = origin.split_once("://").map(|(_, h)| h);
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(refused("`Origin` is not this hub: changes are accepted only from the dashboard's own page")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    password: String,
}

/// What the page learns about its session.
fn describe(admin: &Admin, session: &Session) -> serde_json::Value {
    let apps: Vec<String> = admin.0.hub.app_ids().into_iter().filter(|app| session.scope.allows(app)).collect();
    json!({
        "scope": match session.scope { Scope::Admin => "admin", Scope::App(_) => "app" },
        "apps": apps,
        "csrf": session.csrf,
        "node": admin.0.hub.node_id(),
    })
}

/// `POST /admin/api/session`: signs in with the admin password or an app's API key.
async fn sign_in(State(admin): State<Admin>, parts: Parts, JsonBody(body): JsonBody<SignIn>) -> Response {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    if let Err(problem) = same_origin(&parts) {
        return problem.into_response();
    }
    let now = Instant::now();
    if let Err(refusal) = admin.0.throttle.check(peer, now) {
        let (wait, detail) = match refusal {
            Refusal::Peer(wait) => (wait, "too many failed sign-ins from this address"),
            Refusal::Global(wait) => (wait, "too many failed sign-ins to this hub"),
        };
        let secs = wait.as_secs().max(1);
        let mut response = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "sign-in-throttled",
            format!("{detail}; try again in {secs} s"),
        )
        .into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return response;
    }
    let Some(scope) = admin.0.credentials.verify(&body.password) else {
        admin.0.throttle.failed(peer, now);
        tracing::info!(%peer, "Refused an admin sign-in.");
        return Problem::new(
            StatusCode::UNAUTHORIZED,
            "sign-in-failed",
            "that is neither the admin password nor an app's API key",
        )
        .into_response();
    };
    let (id, session) = admin.0.sessions.open(scope, now);
    tracing::info!(%peer, scope = ?session.scope, "Admin signed in.");
    // Behind a TLS-terminating proxy the page's own origin says it is HTTPS.
    let https = admin.0.tls
        || parts.headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).is_some_and(|o| o.starts_with("https://"));
    let cookie = format!(
        "{COOKIE}={id}; Path=/admin; Max-Age={}; HttpOnly; SameSite=Strict{}",
        SESSION_TTL.as_secs(),
        if https { "; Secure" } else { "" }
    );
    let mut response = Json(describe(&admin, &session)).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `GET /admin/api/session`: the signed-in session, with its CSRF token for the page.
async fn session_info(State(admin): State<Admin>, signed: Signed) -> Response {
    Json(describe(&admin, &signed.session)).into_response()
}

/// `DELETE /admin/api/session`: signs out.
async fn sign_out(State(admin): State<Admin>, signed: Signed) -> Response {
    admin.0.sessions.close(&signed.id);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("herald_admin=; Path=/admin; Max-Age=0; HttpOnly; SameSite=Strict"),
    );
    response
}
