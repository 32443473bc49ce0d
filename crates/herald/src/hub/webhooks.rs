//! Comings and goings told to the backend by signed webhooks, through a bounded queue to their
//! own task, so they never hold up delivery. (The in-process feed of `GET /api/presence` is a
//! broadcast that drops for a lagging reader.)

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use tokio::sync::mpsc;

use crate::metrics::{AppMetrics, DropReason};

/// Webhooks waiting beyond this are dropped (and counted) rather than queued without bound.
const WEBHOOK_QUEUE: usize = 10_000;
const WEBHOOK_ATTEMPTS: u32 = 6;

/// Posts webhooks for one app, in order, retrying each with exponential backoff.
pub(crate) struct Webhooks {
    tx: mpsc::Sender<Bytes>,
    metrics: AppMetrics,
}

impl Webhooks {
    pub(crate) fn start(url: String, secret: String, metrics: AppMetrics) -> Self {
        let (tx, mut rx) = mpsc::channel::<Bytes>(WEBHOOK_QUEUE);
        let task_metrics = metrics.clone();
        tokio::spawn(async move {
            let metrics = task_metrics;
            let client = crate::outbound::client::<Full<Bytes>>();
            while let Some(body) = rx.recv().await {
                let started = std::time::Instant::now();
                let delivered = deliver(&client, &url, &secret, body).await;
                metrics.webhook_seconds.observe(started.elapsed().as_secs_f64());
                if !delivered {
                    metrics.webhook_failures.inc();
                    metrics.dropped(DropReason::WebhookFailed, 1);
                }
            }
        });
        Self { tx, metrics }
    }

    /// Queues one event's body; a full queue drops it, so delivery never waits for a webhook.
    pub(crate) fn send(&self, body: Bytes) {
        if self.tx.try_send(body).is_err() {
            self.metrics.webhook_failures.inc();
            self.metrics.dropped(DropReason::WebhookQueueFull, 1);
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
