//! Embedding Herald in an axum application: the hub's router is mounted under `/push`, and the
//! app's own handler publishes in-process when an order is placed.
//!
//! ```sh
//! HERALD_EXAMPLE_LISTEN=127.0.0.1:3000 cargo run -p example-embed
//! curl -X POST localhost:3000/orders -d 'one large coffee'
//! ```

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use herald::config::{AppConfig, Config, StoreKind};
use herald::{Hub, Publish, Targets};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config {
        store: StoreKind::Memory,
        app: AppConfig {
            // An embedding app usually publishes in-process only; the key is for the HTTP API.
            api_key: Some("example-api-key-change-me".into()),
            jwt_secret: Some("example-jwt-secret-change-me".into()),
            ..AppConfig::default()
        },
        ..Config::default()
    };
    let hub = Hub::new(config).await?;

    let app = Router::new()
        .route("/", get(|| async { "Subscribe at /push/events, place orders with POST /orders." }))
        .route("/orders", post(place_order))
        .with_state(hub.clone())
        .nest("/push", herald::http::router(hub.clone()));

    let addr = std::env::var("HERALD_EXAMPLE_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("Listening on http://{}", listener.local_addr()?);
    // `herald::server::serve` adds HTTP/2, TLS and stream-aware graceful shutdown; a plain
    // `axum::serve` works too.
    herald::server::serve(listener, hub, app, None, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

/// The app's own endpoint: store the order (elided), then tell every admin at once.
async fn place_order(State(hub): State<Hub>, body: String) -> Json<Value> {
    let publish = Publish {
        to: Targets { channels: vec!["orders".into()], ..Targets::default() },
        event: Some("ORDER".into()),
        data: json!({ "order": body }).to_string(),
        ..Publish::default()
    };
    match hub.publish("default", publish).await {
        Ok(sent) => Json(json!({ "notified": sent.delivered, "event_id": sent.id })),
        Err(error) => Json(json!({ "error": error.to_string() })),
    }
}
