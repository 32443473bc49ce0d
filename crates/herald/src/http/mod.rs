//! The HTTP face of the hub: one axum [`Router`] that an application mounts or the server runs.

mod admin;
pub(crate) mod api;
mod assets;
mod bodies;
pub(crate) mod cors;
pub(crate) mod deadline;
mod extract;
mod mercure;
pub mod openapi;
mod problem;
pub(crate) mod send;
mod subscriber;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use tower::util::MapRequestLayer;

pub(crate) use api::{api_app, publish_raw};
pub(crate) use extract::bearer_of;
pub use extract::ConnectionKill;
pub(crate) use extract::{no_body, subscriber, timeout_problem};
pub(crate) use mercure::stream as mercure_stream;
pub(crate) use problem::Problem;
pub use send::Signed;
pub(crate) use subscriber::stream_head;

use crate::hub::Hub;

/// The largest body any endpoint but a batch takes: the largest payload JSON-escaped, and room
/// for the rest of a publish.
pub(crate) fn body_limit(hub: &Hub) -> usize {
    hub.config().all_apps().map(|(_, a)| a.limits.max_payload_bytes).max().unwrap_or(0) * 4 + 64 * 1024
}

/// Every endpoint of the hub, with its state applied.
pub fn router(hub: Hub) -> Router {
    let body_limit = body_limit(&hub);
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
        .route("/readyz", get(assets::readyz))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/metrics", get(assets::metrics))
        .route("/herald.js", get(assets::script))
        .route("/herald.d.ts", get(assets::types))
        .route("/demo", get(assets::demo))
        .route("/", get(mercure::home))
        .route("/.well-known/mercure", get(mercure::subscribe).post(mercure::publish))
        .route("/.well-known/mercure/subscriptions", get(mercure::subscriptions))
        .route("/.well-known/mercure/subscriptions/{*rest}", get(mercure::subscriptions))
        .nest("/api", api)
        .merge(admin::router(&hub).unwrap_or_default())
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(MapRequestLayer::new(move |request| deadline::limit(request, body_timeout)))
        .layer(axum::middleware::from_fn_with_state(hub.clone(), cors::layer))
        .with_state(hub)
}
