//! Comings and goings, told to the backend two ways: an in-process broadcast that feeds
//! `GET /api/presence`, and signed webhooks. Neither ever holds up delivery: the broadcast
//! drops for a lagging reader, and webhooks go through a bounded queue to their own task.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::conn::ConnectionInfo;
use crate::metrics::{add, Metrics};

/// Webhooks waiting beyond this are dropped (and counted) rather than queued without bound.
const WEBHOOK_QUEUE: usize = 10_000;
const WEBHOOK_ATTEMPTS: u32 = 6;

/// Whether a connection came or went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceKind {
    /// A stream opened.
    Connect,
    /// A stream closed.
    Disconnect,
}

/// One coming or going.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PresenceEvent {
    /// `connect` or `disconnect`.
    #[serde(rename = "type")]
    pub kind: PresenceKind,
    /// The app it happened in.
    pub app: String,
    /// The connection.
    pub connection: ConnectionInfo,
    /// When, RFC 3339.
    pub at: String,
}

/// Posts webhooks for one app, in order, retrying each with exponential backoff.
pub(crate) struct Webhooks {
    tx: mpsc::Sender<Bytes>,
}

impl Webhooks {
    pub(crate) fn start(url: String, secret: String, metrics: std::sync::Arc<Metrics>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Bytes>(WEBHOOK_QUEUE);
        tokio::spawn(async move {
            let client = crate::outbound::client::<Full<Bytes>>();
            while let Some(body) = rx.recv().await {
                if !deliver(&client, &url, &secret, body).await {
                    add(&metrics.webhook_failures_total, 1);
                }
            }
        });
        Self { tx }
    }

    /// Queues one event's body; a full queue drops it, so delivery never waits for a webhook.
    pub(crate) fn send(&self, body: Bytes, metrics: &Metrics) {
        if self.tx.try_send(body).is_err() {
            add(&metrics.webhook_failures_total, 1);
            tracing::warn!("Webhook queue is full; an event was dropped.");
        }
    }
}

type HttpClient = Client<crate::outbound::Connector, Full<Bytes>>;

async fn deliver(client: &HttpClient, url: &str, secret: &str, body: Bytes) -> bool {
    let signature = crate::auth::sign(secret, &body);
    let mut delay = Duration::from_millis(250);
    for attempt in 1..=WEBHOOK_ATTEMPTS {
        let request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-herald-signature", &signature)
            .body(Full::new(body.clone()))
            .expect("a valid URL was checked at start-up");
        let outcome = tokio::time::timeout(Duration::from_secs(10), client.request(request)).await;
        match outcome {
            Ok(Ok(response)) if response.status().is_success() => return true,
            Ok(Ok(response)) => tracing::warn!(status = %response.status(), attempt, "Webhook was refused."),
            Ok(Err(error)) => tracing::warn!(%error, attempt, "Webhook failed."),
            Err(_) => tracing::warn!(attempt, "Webhook timed out."),
        }
        if attempt < WEBHOOK_ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
    false
}
