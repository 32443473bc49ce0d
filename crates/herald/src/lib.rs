//! Herald: a real-time push hub over Server-Sent Events.
//!
//! A backend says *send this to user 42 / session s / tenant 7 / channel `orders` / everyone*,
//! over HTTP or in-process through [`Hub`]; browsers hold one light SSE stream and get it at
//! once; the hub knows who is online, resumes clients exactly where they stopped, and keeps
//! durable messages until they are acknowledged.
//!
//! # Layout
//!
//! - [`hub`]: the heart of it. `registry` (sharded connections), `log` (sequence and history),
//!   `outbox` (bounded per-connection queues), `publish`, `subscribe` (replay and the live seam),
//!   `poll`, `directory` (who is online, kicks), `durable`, `webhooks`, `held` (messages waiting
//!   for a durable commit), `maintenance` (the shared tick and the sweeper), and `backbone`: one
//!   trait for who sequences, stores and fans out — `Local` (a single node's store) or `Redis`
//!   (a cluster) — so a topology is added without touching the rest of the hub.
//! - [`presence`]: connections and their comings and goings, as plain data that the hub and
//!   every backbone share.
//! - [`sse`]: the `text/event-stream` encoder; each message is encoded once.
//! - [`id`]: event ids `<epoch>-<seq>` that make resume exact.
//! - [`auth`]: JWT verification bound to the configured key, and HMAC signatures.
//! - [`store`]: persistence behind one trait — [`store::MemoryStore`], [`store::SqliteStore`].
//! - [`http`]: the axum router: subscriber endpoints, the backend API, problem documents, and
//!   the admin dashboard at `/admin`.
//! - `cluster`: the Redis side of the `Redis` backbone — shared sequence, history stream,
//!   durable inbox, pub/sub fan-out and presence, on one server, Sentinel or Redis Cluster;
//!   it knows nothing of the hub.
//! - [`server`]: HTTP/1.1 + HTTP/2 (+ TLS) serving and graceful shutdown.
//! - [`metrics`]: the Prometheus series of `/metrics`, one registry per hub, with per-app
//!   handles resolved once (docs/METRICS.md).
//! - [`config`]: configuration, validated with errors that name the key.
//!
//! # Embedding
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use herald::{config::Config, Hub, Publish, Targets};
//! let hub = Hub::new(Config::default()).await?;
//! let app = axum::Router::new().nest("/push", herald::http::router(hub.clone()));
//! let sent = hub
//!     .publish("default", Publish { to: Targets { users: vec!["42".into()], ..Default::default() }, data: "hi".into(), ..Default::default() })
//!     .await?;
//! println!("{} connections got {}", sent.delivered, sent.id);
//! # drop(app); Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
mod cluster;
pub mod config;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod hub;
pub mod id;
pub mod mercure;
pub mod message;
pub mod metrics;
mod outbound;
pub mod presence;
pub mod server;
pub mod sse;
pub mod store;

pub use error::Error;
pub use hub::Hub;
pub use message::{Publish, Published, Targets};

/// Why a hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid; the error names the key.
    #[error("invalid configuration: {0}")]
    Config(#[from] config::ConfigError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
}
