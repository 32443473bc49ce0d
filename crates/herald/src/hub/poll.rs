//! The long-poll fallback: the same history as the stream, one batch per request.

use std::time::Duration;

use serde::Serialize;

use super::subscribe::SubscribeRequest;
use super::Hub;
use crate::error::Error;

/// A long-poll answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PollAnswer {
    /// Events in order, control events without `id`.
    pub events: Vec<PolledEvent>,
    /// The position to pass as `lastEventId` next time.
    #[serde(rename = "lastEventId")]
    pub last_event_id: String,
    /// Whether the given id could not be resumed from (the client must refetch its state).
    pub reset: bool,
}

/// One event of a long-poll answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PolledEvent {
    /// SSE id; absent on control events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Event name; absent when the publisher gave none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Payload text.
    pub data: String,
}

impl Hub {
    /// Answers a long-poll: at once when something is due, else when something arrives, else
    /// empty after `timeout`.
    ///
    /// # Errors
    ///
    /// The token or a channel was refused.
    pub async fn poll(&self, app: &str, req: SubscribeRequest, timeout: Duration) -> Result<PollAnswer, Error> {
        let app = self.app(app)?;
        let admitted = app.admit(&req)?;
        let mut head = app.head.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let first_call = req.last_event_id.as_deref().is_none_or(str::is_empty);
        let mut last_event_id = req.last_event_id;
        loop {
            head.mark_unchanged();
            let start = app.start(&admitted.who, last_event_id.as_deref()).await;
            let reset = start.reset.is_some();
            let mut events = Vec::new();
            if let Some(reason) = start.reset {
                events.push(PolledEvent {
                    id: None,
                    event: Some("herald.reset".into()),
                    data: serde_json::json!({ "reason": reason }).to_string(),
                });
            }
            // Durable backlog only on a fresh start, or a poll loop would repeat it at once.
            if first_call || reset {
                events.extend(start.pending.iter().map(|m| PolledEvent {
                    id: Some(m.id.clone()),
                    event: m.event.clone(),
                    data: m.data.clone(),
                }));
            }
            events.extend(start.replay.iter().map(|m| PolledEvent {
                id: Some(m.id.clone()),
                event: m.event.clone(),
                data: m.data.clone(),
            }));
            // The replay holds everything for this client up to the head it was read at, so the
            // next call continues from there: a quiet client keeps up with a busy app instead of
            // falling behind the retained history and being told to reset.
            let position = start.head_id;
            if !events.is_empty() || first_call {
                return Ok(PollAnswer { events, last_event_id: position, reset });
            }
            last_event_id = Some(position);
            tokio::select! {
                changed = tokio::time::timeout_at(deadline, head.changed()) => {
                    if !matches!(changed, Ok(Ok(()))) {
                        return Ok(PollAnswer { events, last_event_id: last_event_id.unwrap_or_default(), reset: false });
                    }
                }
                () = self.inner.shutdown.cancelled() => {
                    return Ok(PollAnswer { events, last_event_id: last_event_id.unwrap_or_default(), reset: false });
                }
            }
        }
    }
}
