//! The HTTP face of the hub: one axum [`Router`] that an application mounts or the server runs.

pub(crate) mod api;
mod assets;
mod deadline;
mod extract;
mod problem;
pub(crate) mod send;
mod subscriber;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use http::{header, HeaderName, Method};
use tower::util::MapRequestLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use extract::ConnectionKill;
pub(crate) use extract::{no_body, subscriber};
pub(crate) use problem::Problem;
pub use send::Signed;

use crate::hub::Hub;

/// Every endpoint of the hub, with its state applied.
pub fn router(hub: Hub) -> Router {
    let body_limit =
        hub.config().all_apps().map(|(_, a)| a.limits.max_payload_bytes).max().unwrap_or(0) * 4 + 64 * 1024;
    let batch_limit =
        hub.config().all_apps().map(|(_, a)| a.limits.max_payload_bytes * a.limits.max_batch).max().unwrap_or(0);
    let body_timeout = hub.config().body_timeout();
    let api = Router::new()
        .route("/publish", post(api::publish))
        .route("/publish/batch", post(api::publish_batch).layer(DefaultBodyLimit::max(batch_limit)))
        .route("/users", get(api::users))
        .route("/users/{id}", get(api::user))
        .route("/users/{id}/connections", delete(api::kick_user))
        .route("/users/{id}/ack", post(api::ack))
        .route("/users/{id}/messages", get(api::messages))
        .route("/users/{id}/unread", get(api::unread))
        .route("/connections", get(api::connections))
        .route("/connections/{id}", delete(api::kick_connection))
        .route("/presence", get(api::presence));
    Router::new()
        .route("/events", get(subscriber::events))
        .route("/poll", get(subscriber::poll))
        .route("/ack", post(subscriber::ack))
        .route("/send/{*path}", post(send::send).layer(DefaultBodyLimit::disable()))
        .route("/healthz", get(assets::healthz))
        .route("/metrics", get(assets::metrics))
        .route("/herald.js", get(assets::script))
        .route("/herald.d.ts", get(assets::types))
        .route("/demo", get(assets::demo))
        .nest("/api", api)
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(MapRequestLayer::new(move |request| deadline::limit(request, body_timeout)))
        .layer(cors(&hub))
        .with_state(hub)
}

/// Whether any app allows browsers from `origin`; `*` in an app's list allows every origin.
pub(crate) fn cors_allows(hub: &Hub, origin: &str) -> bool {
    hub.config().all_apps().any(|(_, a)| a.cors_origins.iter().any(|o| o == "*" || o == origin))
}

/// CORS for the origins any app allows.
fn cors(hub: &Hub) -> CorsLayer {
    let hub = hub.clone();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| origin.to_str().is_ok_and(|o| cors_allows(&hub, o))))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-herald-app"),
            HeaderName::from_static("x-herald-connection"),
        ])
}
