//! One app's live state: its connections, its log, and how publishing and subscribing use them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::conn::{Conn, ConnMeta};
use super::log::{Log, Resume};
use super::outbox::{CloseReason, Outbox, StreamBody};
use super::presence::{PresenceEvent, PresenceKind, Webhooks};
use super::registry::{Refused, Registry};
use crate::auth::{Claims, TokenError, Verifier};
use crate::config::AppConfig;
use crate::error::Error;
use crate::message::{now_ms, Identity, Message, Publish, Published, Targets};
use crate::metrics::{add, Metrics};
use crate::sse;
use crate::store::{DurableFor, Store, UnreadChange, UserMessage};

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

pub(crate) struct App {
    pub(crate) id: String,
    pub(crate) config: AppConfig,
    pub(crate) verifier: Verifier,
    pub(crate) registry: Registry,
    pub(crate) log: Mutex<Log>,
    /// The head sequence, watched by long-polls.
    pub(crate) head: watch::Sender<u64>,
    pub(crate) presence: broadcast::Sender<PresenceEvent>,
    pub(crate) webhooks: Option<Webhooks>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) node: Arc<str>,
    pub(crate) retry_ms: u64,
    pub(crate) heartbeat_ms: u64,
}

impl App {
    /// Checks a publish against the app's rules; nothing is sent when this fails.
    pub(crate) fn validate(&self, p: &Publish) -> Result<(), Error> {
        let limits = &self.config.limits;
        if p.to.is_empty() {
            return Err(Error::Invalid("`to` names no recipient: give `users`, `sessions`, `tenants`, `channels` or `all: true`".into()));
        }
        let count = p.to.address_count();
        if count > limits.max_recipients {
            return Err(Error::Invalid(format!(
                "`to` names {count} addresses; at most {} are allowed (`limits.max_recipients`)",
                limits.max_recipients
            )));
        }
        for (field, list) in [("users", &p.to.users), ("sessions", &p.to.sessions), ("tenants", &p.to.tenants), ("channels", &p.to.channels)] {
            if list.iter().any(String::is_empty) {
                return Err(Error::Invalid(format!("`to.{field}` contains an empty string")));
            }
        }
        if let Some(event) = &p.event {
            if !sse::valid_event_name(event) || event.starts_with("herald.") {
                return Err(Error::Invalid(
                    "`event` must be 1 to 128 characters without line breaks or NUL, and must not start with `herald.` (reserved)".into(),
                ));
            }
        }
        if p.data.len() > limits.max_payload_bytes {
            return Err(Error::PayloadTooLarge { size: p.data.len(), limit: limits.max_payload_bytes });
        }
        if let Some(ttl) = p.ttl {
            if !p.durable {
                return Err(Error::Invalid("`ttl` applies only to durable messages; add `durable: true` or drop `ttl`".into()));
            }
            if ttl == 0 || ttl > limits.max_ttl_secs {
                return Err(Error::Invalid(format!("`ttl` must be between 1 and {} seconds (`limits.max_ttl_secs`)", limits.max_ttl_secs)));
            }
        }
        if p.durable && p.to.all && !self.config.durable_all {
            return Err(Error::Invalid("durable messages to `all` are disabled for this app (`durable_all`)".into()));
        }
        Ok(())
    }

    /// Publishes a validated message. See the module docs of `hub` for the order of steps.
    pub(crate) async fn publish(self: &Arc<Self>, p: Publish) -> Result<Published, Error> {
        let durable = p.durable.then(|| self.durable_recipients(&p));
        let Publish { to, event, data, durable: is_durable, .. } = p;
        let (message, commit) = {
            let mut log = self.log.lock();
            let message = Arc::new(Message::new(&log.epoch, log.head + 1, now_ms(), to, event, data, is_durable));
            // Enqueued before anyone can see the message, so an ack never overtakes its insert.
            let commit = self.store.append(&self.id, message.clone(), durable).inspect_err(|_| add(&self.metrics.store_errors_total, 1))?;
            log.append(message.clone());
            (message, commit)
        };
        self.head.send_replace(message.seq);
        let delivered = self.deliver(&message);
        if is_durable {
            let changes = commit.await.inspect_err(|_| add(&self.metrics.store_errors_total, 1))?;
            self.notify_unread(&changes);
        } else {
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                if let Err(error) = commit.await {
                    add(&metrics.store_errors_total, 1);
                    tracing::error!(%error, "History write failed.");
                }
            });
        }
        Ok(Published { id: message.id.clone(), delivered })
    }

    /// Hands a message to this node's matching connections.
    pub(crate) fn deliver(&self, message: &Message) -> usize {
        let (delivered, overflowed) = self.registry.deliver(message);
        add(&self.metrics.publishes_total, 1);
        add(&self.metrics.deliveries_total, delivered as u64);
        for conn in overflowed {
            add(&self.metrics.slow_client_drops_total, 1);
            tracing::info!(connection = %conn.public_id(), "Dropped a connection whose client stopped reading.");
            self.unregister(&conn);
        }
        delivered
    }

    /// Resolves a durable publish to user ids: users as named, sessions, tenants and `all`
    /// through the connections open now (Herald keeps no user registry).
    fn durable_recipients(&self, p: &Publish) -> DurableFor {
        let mut users = p.to.users.clone();
        let indirect = Targets { users: Vec::new(), ..p.to.clone() };
        if !indirect.is_empty() {
            users.extend(self.registry.matching(&indirect).iter().filter_map(|c| c.who.user.as_deref().map(str::to_owned)));
        }
        users.sort_unstable();
        users.dedup();
        let ttl = p.ttl.unwrap_or(self.config.limits.default_ttl_secs);
        DurableFor { users, expires_ms: now_ms() + ttl * 1000 }
    }

    /// Tells each user's open connections their new unread count.
    pub(crate) fn notify_unread(&self, changes: &[UnreadChange]) {
        for change in changes {
            let frame = unread_frame(change.unread);
            for conn in self.registry.of_user(&change.user) {
                let _ = conn.outbox.push(None, frame.clone());
            }
        }
    }

    /// Verifies the token and the requested channels.
    pub(crate) fn admit(&self, req: &SubscribeRequest) -> Result<Admitted, Error> {
        let token = req.token.as_deref().ok_or_else(|| TokenError::Missing(self.config.cookie_name.clone()))?;
        let claims = self.verifier.verify(token)?;
        let max = self.config.limits.max_channels;
        if req.channels.len() > max {
            return Err(Error::Invalid(format!("{} channels requested; at most {max} are allowed (`limits.max_channels`)", req.channels.len())));
        }
        let mut channels: Vec<Arc<str>> = Vec::with_capacity(req.channels.len());
        for channel in &req.channels {
            if channel.is_empty() || channel.len() > 200 || channel.contains('*') {
                return Err(Error::Invalid(format!("channel `{channel}` is not a channel name: 1 to 200 characters, no `*`")));
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
            outbox: Arc::new(Outbox::new(self.config.limits.queue_bytes, kill)),
        });
        let limits = &self.config.limits;
        self.registry.insert(conn.clone(), limits.max_connections_per_user, limits.max_connections_per_ip).map_err(|r| {
            Error::TooManyConnections(match r {
                Refused::UserLimit(n) => format!("this user already has {n} open streams (`limits.max_connections_per_user`); close one first"),
                Refused::AddressLimit(n) => format!("this address already has {n} open streams (`limits.max_connections_per_ip`)"),
            })
        })?;
        add(&self.metrics.connects_total, 1);
        self.announce(PresenceKind::Connect, &conn);
        let app = self.clone();
        let closing = conn.clone();
        let body = StreamBody::new(conn.outbox.clone(), move || app.unregister(&closing));

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
        let (resume, replay, covered, position_id, head_id) = {
            let log = self.log.lock();
            let resume = log.resume(last_event_id);
            let position = match resume {
                Resume::From(p) => p,
                Resume::Reset { head, .. } => head,
            };
            (resume, log.after(position, who), log.head, log.id_of(position), log.id_of(log.head))
        };
        let position = match resume {
            Resume::From(p) => p,
            Resume::Reset { head, .. } => head,
        };
        let reset = match resume {
            Resume::Reset { reason, .. } => Some(reason),
            Resume::From(_) => None,
        };
        let (pending, unread) = match &who.user {
            Some(user) => self.pending(user, position).await,
            None => (Vec::new(), None),
        };
        Start { reset, head_id, position_id, pending, replay, covered, unread }
    }

    /// Unacknowledged durable messages up to `position`, and the unread count; a store failure
    /// is logged and skipped (the messages stay stored and come with the next connection).
    async fn pending(&self, user: &str, position: u64) -> (Vec<UserMessage>, Option<u64>) {
        let pending = self.store.pending(&self.id, user, position).await;
        let unread = self.store.unread(&self.id, user).await;
        if let Err(error) = pending.as_ref().map(|_| ()).and(unread.as_ref().map(|_| ())) {
            add(&self.metrics.store_errors_total, 1);
            tracing::warn!(%error, "Could not read pending durable messages.");
        }
        (pending.unwrap_or_default(), unread.ok())
    }

    /// Removes a connection (idempotent) and tells presence it left.
    pub(crate) fn unregister(&self, conn: &Conn) {
        if let Some(conn) = self.registry.remove(conn) {
            add(&self.metrics.disconnects_total, 1);
            self.announce(PresenceKind::Disconnect, &conn);
        }
    }

    /// Ends a stream from the hub's side, with an optional last frame.
    pub(crate) fn close(&self, conn: &Conn, last: Option<Bytes>, reason: CloseReason) {
        conn.outbox.finish(last, reason);
        self.unregister(conn);
    }

    fn announce(&self, kind: PresenceKind, conn: &Conn) {
        let event = PresenceEvent {
            kind,
            app: self.id.clone(),
            connection: conn.info(),
            at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        if let Some(webhooks) = &self.webhooks {
            if let Ok(body) = serde_json::to_vec(&event) {
                webhooks.send(body.into(), &self.metrics);
            }
        }
        let _ = self.presence.send(event);
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
            frames.push(sse::event(Some(&self.head_id), Some("herald.reset"), &json!({ "reason": reason }).to_string()));
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

pub(crate) fn unread_frame(unread: u64) -> Bytes {
    sse::event(None, Some("herald.unread"), &json!({ "unread": unread }).to_string())
}
