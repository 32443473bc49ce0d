//! Subscribing: who may connect, and what a stream or a poll receives before the live messages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::app::App;
use super::body::StreamBody;
use super::conn::{Conn, ConnMeta};
use super::log::Resume;
use super::outbox::Outbox;
use super::registry::Refused;
use crate::auth::{Claims, TokenError};
use crate::error::Error;
use crate::message::{Identity, Message};
use crate::presence::PresenceKind;
use crate::sse;
use crate::store::UserMessage;

/// What a subscriber presents, on `/events` and `/poll` alike.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    /// The JWT, from wherever it came.
    pub token: Option<String>,
    /// Channels to join.
    pub channels: Vec<String>,
    /// The client's name for itself.
    pub client_id: Option<String>,
    /// Where to resume from.
    pub last_event_id: Option<String>,
    /// Remote address.
    pub remote_addr: SocketAddr,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// Send heartbeats as `herald.ping` events, visible to EventSource.
    pub ping_events: bool,
}

/// A subscriber that passed authentication and channel checks.
pub(crate) struct Admitted {
    pub(crate) who: Identity,
    pub(crate) claims: Claims,
}

impl App {
    /// Verifies the token and the requested channels.
    pub(crate) fn admit(&self, req: &SubscribeRequest) -> Result<Admitted, Error> {
        let token = req.token.as_deref().ok_or_else(|| TokenError::Missing(self.config.cookie_name.clone()))?;
        let claims = self.verifier.verify(token)?;
        let max = self.config.limits.max_channels;
        if req.channels.len() > max {
            return Err(Error::Invalid(format!(
                "{} channels requested; at most {max} are allowed (`limits.max_channels`)",
                req.channels.len()
            )));
        }
        let mut channels: Vec<Arc<str>> = Vec::with_capacity(req.channels.len());
        for channel in &req.channels {
            if channel.is_empty() || channel.len() > 200 || channel.contains('*') {
                return Err(Error::Invalid(format!(
                    "channel `{channel}` is not a channel name: 1 to 200 characters, no `*`"
                )));
            }
            if !claims.may_join(channel) {
                return Err(Error::ChannelForbidden(channel.clone()));
            }
            if !channels.iter().any(|c| **c == **channel) {
                channels.push(channel.as_str().into());
            }
        }
        let who = Identity {
            user: claims.sub.as_deref().filter(|s| !s.is_empty()).map(Into::into),
            tenant: claims.tenant.as_deref().map(Into::into),
            session: claims.sid.as_deref().map(Into::into),
            channels,
        };
        Ok(Admitted { who, claims })
    }

    /// Opens a stream: register for live delivery (held), then build what comes first —
    /// connected, reset, pending durable messages, replay — and release the held live frames
    /// the replay did not cover.
    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        req: SubscribeRequest,
        id: u64,
        kill: Option<CancellationToken>,
    ) -> Result<StreamBody, Error> {
        let Admitted { who, claims } = self.admit(&req)?;
        let conn = Arc::new(Conn {
            id,
            node: self.node.clone(),
            who,
            meta: ConnMeta {
                client_id: req.client_id,
                remote_addr: req.remote_addr,
                user_agent: req.user_agent,
                connected_at: SystemTime::now(),
            },
            expires_at: claims.exp,
            ping_events: req.ping_events,
            outbox: Outbox::new(self.config.limits.queue_bytes, kill),
            mercure: None,
        });
        let limits = &self.config.limits;
        self.registry.insert(conn.clone(), limits.max_connections_per_user, limits.max_connections_per_ip).map_err(
            |r| {
                Error::TooManyConnections(match r {
                    Refused::UserLimit(n) => format!(
                        "this user already has {n} open streams (`limits.max_connections_per_user`); close one first"
                    ),
                    Refused::AddressLimit(n) => {
                        format!("this address already has {n} open streams (`limits.max_connections_per_ip`)")
                    }
                })
            },
        )?;
        self.metrics.connects.inc();
        self.announce(PresenceKind::Connect, &conn);
        let body = StreamBody::new(self.clone(), conn.clone());

        let start = self.start(&conn.who, req.last_event_id.as_deref()).await;
        let mut first = vec![sse::retry(self.retry_ms)];
        first.push(sse::event(
            Some(&start.position_id),
            Some("herald.connected"),
            &json!({
                "connection_id": conn.public_id(),
                "user": conn.who.user.as_deref(),
                "position": start.position_id,
                "heartbeat_ms": self.heartbeat_ms,
            })
            .to_string(),
        ));
        first.extend(start.frames());
        conn.outbox.open(first, start.covered);
        Ok(body)
    }

    /// What a client continuing from `last_event_id` receives before the live stream.
    pub(crate) async fn start(&self, who: &Identity, last_event_id: Option<&str>) -> Start {
        if let Some(id) = last_event_id.and_then(crate::id::EventId::parse) {
            if id.epoch == self.log.lock().epoch {
                self.backbone.wait_for(self, id.seq).await;
            }
        }
        // Taking the turn means no message is between its append and its delivery right now.
        let turn = self.turn.lock().await;
        let (resume, replay, covered, position_id, head_id) = {
            let log = self.log.lock();
            let resume = log.resume(last_event_id);
            let position = match resume {
                Resume::From(p) => p,
                Resume::Reset { head, .. } => head,
            };
            (resume, log.after(position, who), log.head, log.id_of(position), log.id_of(log.head))
        };
        drop(turn);
        let position = match resume {
            Resume::From(p) => p,
            Resume::Reset { head, .. } => head,
        };
        let reset = match resume {
            Resume::Reset { reason, .. } => Some(reason),
            Resume::From(_) => None,
        };
        match (reset, last_event_id) {
            (Some(_), _) => self.metrics.resets.inc(),
            (None, Some(_)) => self.metrics.resumes.inc(),
            (None, None) => {}
        }
        let (pending, unread) = match &who.user {
            Some(user) => self.pending(user, position).await,
            None => (Vec::new(), None),
        };
        Start { reset, head_id, position_id, pending, replay, covered, unread }
    }

    /// Unacknowledged durable messages up to `position`, and the unread count; a store failure
    /// is logged and skipped (the messages stay stored and come with the next connection).
    async fn pending(&self, user: &str, position: u64) -> (Vec<UserMessage>, Option<u64>) {
        let pending = self.inbox.pending(&self.id, user, position).await;
        let unread = self.inbox.unread(&self.id, user).await;
        if let Err(error) = pending.as_ref().map(|_| ()).and(unread.as_ref().map(|_| ())) {
            self.metrics.store_errors.inc();
            tracing::warn!(%error, "Could not read pending durable messages.");
        }
        (pending.unwrap_or_default(), unread.ok())
    }
}

/// The beginning of a stream or a poll.
pub(crate) struct Start {
    pub(crate) reset: Option<&'static str>,
    pub(crate) head_id: String,
    pub(crate) position_id: String,
    pub(crate) pending: Vec<UserMessage>,
    pub(crate) replay: Vec<Arc<Message>>,
    /// The head when the replay was read: live messages up to here are in it.
    pub(crate) covered: u64,
    pub(crate) unread: Option<u64>,
}

impl Start {
    /// Encodes the frames that precede the live stream, in the order the protocol gives.
    fn frames(&self) -> Vec<Bytes> {
        let mut frames = Vec::with_capacity(self.pending.len() + self.replay.len() + 3);
        if let Some(reason) = self.reset {
            frames.push(sse::event(
                Some(&self.head_id),
                Some("herald.reset"),
                &json!({ "reason": reason }).to_string(),
            ));
        }
        for m in &self.pending {
            frames.push(sse::event(Some(&m.id), m.event.as_deref(), &m.data));
        }
        if !self.pending.is_empty() {
            frames.push(sse::id_only(&self.position_id));
        }
        if let Some(unread) = self.unread {
            frames.push(unread_frame(unread));
        }
        frames.extend(self.replay.iter().map(|m| m.frame.clone()));
        frames
    }
}

/// The `herald.unread` control event.
pub(crate) fn unread_frame(unread: u64) -> Bytes {
    sse::event(None, Some("herald.unread"), &json!({ "unread": unread }).to_string())
}
