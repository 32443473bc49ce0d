//! One app's live state: its connections, its log, and how publishing and subscribing use them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::body::StreamBody;
use super::conn::{parse_public_id, Conn, ConnMeta, ConnectionInfo};
use super::log::{Log, Resume};
use super::outbox::{CloseReason, Outbox};
use super::presence::{PresenceEvent, PresenceKind, Webhooks};
use super::registry::{Refused, Registry};
use crate::auth::{Claims, TokenError, Verifier};
use crate::cluster::{Cluster, Record, WireMessage};
use crate::config::AppConfig;
use crate::error::Error;
use crate::message::{now_ms, Identity, Message, Publish, Published, Targets};
use crate::metrics::{add, Metrics};
use crate::sse;
use crate::store::{DurableFor, HistoryLimits, Inbox, Store, UnreadChange, UserMessage};

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
    /// Held from a message's append to the end of its delivery, and by a stream reading history:
    /// messages reach every connection in id order, and a reader never sees a message that is
    /// appended but not yet delivered (it would get it twice). Async, so that a publisher waiting
    /// behind a large fan-out yields its thread to the streams instead of blocking it.
    pub(crate) turn: tokio::sync::Mutex<()>,
    /// The head sequence, watched by long-polls.
    pub(crate) head: watch::Sender<u64>,
    pub(crate) presence: broadcast::Sender<PresenceEvent>,
    pub(crate) webhooks: Option<Webhooks>,
    /// Who sequences and persists this app's messages.
    pub(crate) backbone: Backbone,
    /// Where durable messages wait for their users.
    pub(crate) inbox: Arc<dyn Inbox>,
    /// Cluster only: what this node has applied from the bus.
    pub(crate) applied: Mutex<Applied>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) node: Arc<str>,
    pub(crate) retry_ms: u64,
    pub(crate) heartbeat_ms: u64,
}

/// Who sequences, persists and fans out messages.
pub(crate) enum Backbone {
    /// This node alone, with its own store.
    Local(Arc<dyn Store>),
    /// Redis, for every node of the cluster.
    Cluster(Arc<Cluster>),
}

/// How long a publisher waits for its own message to come back on the cluster bus.
const BUS_ROUND_TRIP: Duration = Duration::from_secs(5);
/// Delivery counts kept for publishers waiting on the bus round trip.
const RECENT_COUNTS: usize = 4096;

/// The bus position of a cluster node, per app.
#[derive(Default)]
pub(crate) struct Applied {
    /// The last history-stream entry applied; a resync reads on from here.
    pub(crate) stream_id: Option<String>,
    /// `(seq, delivered)` of recent messages, for the publishers on this node.
    pub(crate) delivered: VecDeque<(u64, usize)>,
}

impl App {
    /// Checks a publish against the app's rules; nothing is sent when this fails.
    pub(crate) fn validate(&self, p: &Publish) -> Result<(), Error> {
        let limits = &self.config.limits;
        if p.to.is_empty() {
            return Err(Error::Invalid(
                "`to` names no recipient: give `users`, `sessions`, `tenants`, `channels` or `all: true`".into(),
            ));
        }
        let count = p.to.address_count();
        if count > limits.max_recipients {
            return Err(Error::Invalid(format!(
                "`to` names {count} addresses; at most {} are allowed (`limits.max_recipients`)",
                limits.max_recipients
            )));
        }
        for (field, list) in [
            ("users", &p.to.users),
            ("sessions", &p.to.sessions),
            ("tenants", &p.to.tenants),
            ("channels", &p.to.channels),
        ] {
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
                return Err(Error::Invalid(
                    "`ttl` applies only to durable messages; add `durable: true` or drop `ttl`".into(),
                ));
            }
            if ttl == 0 || ttl > limits.max_ttl_secs {
                return Err(Error::Invalid(format!(
                    "`ttl` must be between 1 and {} seconds (`limits.max_ttl_secs`)",
                    limits.max_ttl_secs
                )));
            }
        }
        if p.durable && p.to.all && !self.config.durable_all {
            return Err(Error::Invalid("durable messages to `all` are disabled for this app (`durable_all`)".into()));
        }
        Ok(())
    }

    /// Publishes a validated message. See the module docs of `hub` for the order of steps.
    pub(crate) async fn publish(self: &Arc<Self>, p: Publish) -> Result<Published, Error> {
        match &self.backbone {
            Backbone::Local(store) => self.stage_local(store.as_ref(), p).await?.finish(self).await,
            Backbone::Cluster(cluster) => self.publish_clustered(cluster, p).await,
        }
    }

    /// Publishes validated messages in order. On a single node every message is sequenced and
    /// handed out before any commit is awaited, so a batch of durable messages costs one group
    /// commit rather than one each.
    pub(crate) async fn publish_many(self: &Arc<Self>, batch: Vec<Publish>) -> Vec<Result<Published, Error>> {
        let mut answers = Vec::with_capacity(batch.len());
        match &self.backbone {
            Backbone::Local(store) => {
                let mut staged = Vec::with_capacity(batch.len());
                for p in batch {
                    staged.push(self.stage_local(store.as_ref(), p).await);
                }
                for staged in staged {
                    answers.push(match staged {
                        Ok(staged) => staged.finish(self).await,
                        Err(e) => Err(e),
                    });
                }
            }
            Backbone::Cluster(cluster) => {
                for p in batch {
                    answers.push(self.publish_clustered(cluster, p).await);
                }
            }
        }
        answers
    }

    /// Sequences, stores (enqueued) and delivers a message: everything but waiting for the disk.
    async fn stage_local(&self, store: &dyn Store, p: Publish) -> Result<Staged, Error> {
        let durable = p.durable.then(|| self.durable_recipients(&p, Vec::new()));
        let Publish { to, event, data, durable: is_durable, .. } = p;
        let turn = self.turn.lock().await;
        let (message, commit) = {
            let mut log = self.log.lock();
            let message = Arc::new(Message::new(&log.epoch, log.head + 1, now_ms(), to, event, data, is_durable));
            // Enqueued before anyone can see the message, so an ack never overtakes its insert.
            let commit = store
                .append(&self.id, message.clone(), durable)
                .inspect_err(|_| add(&self.metrics.store_errors_total, 1))?;
            log.append(message.clone());
            (message, commit)
        };
        let delivered = self.deliver(&message);
        drop(turn);
        self.head.send_replace(message.seq);
        // A non-durable publish does not wait for the disk; the store logs a failed write.
        let commit = is_durable.then_some(commit);
        Ok(Staged { published: Published { id: message.id.clone(), delivered }, commit })
    }

    async fn publish_clustered(&self, cluster: &Cluster, p: Publish) -> Result<Published, Error> {
        let durable = match p.durable {
            true => {
                let remote = cluster
                    .remote_connections(&self.id)
                    .await
                    .inspect_err(|_| add(&self.metrics.store_errors_total, 1))?;
                Some(self.durable_recipients(&p, remote))
            }
            false => None,
        };
        let time_ms = now_ms();
        let record = durable.as_ref().map(|d| Record {
            event: p.event.clone(),
            data: p.data.clone(),
            created_ms: time_ms,
            expires_ms: d.expires_ms,
        });
        let wire = WireMessage { time_ms, targets: p.to, event: p.event, data: p.data, durable: p.durable };
        let mut head = self.head.subscribe();
        let seq = cluster
            .publish(&self.id, &wire, durable.as_ref().zip(record), self.history_limits())
            .await
            .inspect_err(|_| add(&self.metrics.store_errors_total, 1))?;
        // The message comes back on the bus to every node, this one included.
        let _ = tokio::time::timeout(BUS_ROUND_TRIP, head.wait_for(|h| *h >= seq)).await;
        let delivered = self.applied.lock().delivered.iter().find(|(s, _)| *s == seq).map_or(0, |(_, n)| *n);
        let epoch = self.log.lock().epoch.clone();
        Ok(Published { id: crate::id::format(&epoch, seq, wire.durable), delivered })
    }

    pub(crate) fn history_limits(&self) -> HistoryLimits {
        HistoryLimits {
            max_len: self.config.limits.history_size,
            max_age_ms: self.config.limits.history_age_secs * 1000,
        }
    }

    /// Applies a message from the cluster bus (or the stream, when catching up): history, then
    /// local delivery, then the head that waiting publishers and long-polls watch.
    pub(crate) async fn apply(&self, seq: u64, stream_id: Option<String>, m: WireMessage, unread: &[(String, u64)]) {
        let turn = self.turn.lock().await;
        let message = {
            let mut log = self.log.lock();
            if seq <= log.head {
                return;
            }
            let message = Arc::new(Message::new(&log.epoch, seq, m.time_ms, m.targets, m.event, m.data, m.durable));
            log.append(message.clone());
            message
        };
        let delivered = self.deliver(&message);
        drop(turn);
        {
            let mut applied = self.applied.lock();
            if stream_id.is_some() {
                applied.stream_id = stream_id;
            }
            applied.delivered.push_back((seq, delivered));
            if applied.delivered.len() > RECENT_COUNTS {
                applied.delivered.pop_front();
            }
        }
        self.head.send_replace(seq);
        let changes: Vec<UnreadChange> = unread
            .iter()
            .map(|(user, n)| UnreadChange { app: self.id.clone(), user: user.clone(), unread: *n })
            .collect();
        self.notify_unread(&changes);
    }

    /// Tells users, on whichever node, that their unread count changed.
    pub(crate) async fn unread_changed(&self, changes: &[UnreadChange]) {
        match &self.backbone {
            Backbone::Local(_) => self.notify_unread(changes),
            Backbone::Cluster(cluster) => {
                let pairs: Vec<(String, u64)> = changes.iter().map(|c| (c.user.clone(), c.unread)).collect();
                if let Err(error) = cluster.broadcast_unread(&self.id, &pairs).await {
                    tracing::warn!(%error, "Could not announce unread counts to the cluster.");
                }
            }
        }
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
    fn durable_recipients(&self, p: &Publish, remote: Vec<ConnectionInfo>) -> DurableFor {
        let mut users = p.to.users.clone();
        let indirect = Targets { users: Vec::new(), ..p.to.clone() };
        if !indirect.is_empty() {
            users.extend(
                self.registry.matching(&indirect).iter().filter_map(|c| c.who.user.as_deref().map(str::to_owned)),
            );
            users.extend(remote.into_iter().filter(|c| indirect.matches(&c.identity())).filter_map(|c| c.user));
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
        add(&self.metrics.connects_total, 1);
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
        if let (Backbone::Cluster(_), Some(id)) = (&self.backbone, last_event_id.and_then(crate::id::EventId::parse)) {
            // A client that moved nodes may have seen a message this node has not applied yet:
            // wait for the bus to bring it rather than tell the client to reset.
            let mut head = self.head.subscribe();
            if id.epoch == self.log.lock().epoch && id.seq > *head.borrow() {
                let _ = tokio::time::timeout(BUS_ROUND_TRIP, head.wait_for(|h| *h >= id.seq)).await;
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

    /// Closes this node's streams of `user`, or the stream `connection`, each after a
    /// `herald.kicked` event when there is a reason; returns how many it closed.
    pub(crate) fn kick_local(&self, user: Option<&str>, connection: Option<&str>, reason: Option<&str>) -> usize {
        let mut conns = user.map(|u| self.registry.of_user(u)).unwrap_or_default();
        if let Some((node, n)) = connection.and_then(parse_public_id) {
            conns.extend(self.registry.get(n).filter(|_| *self.node == *node));
        }
        let last =
            reason.map(|reason| sse::event(None, Some("herald.kicked"), &json!({ "reason": reason }).to_string()));
        for conn in &conns {
            self.close(conn, last.clone(), CloseReason::Kicked);
        }
        add(&self.metrics.kicks_total, conns.len() as u64);
        conns.len()
    }

    /// Cluster only: applies what the bus missed, from the history stream. If Redis lost its
    /// data (a new epoch) or its stream no longer reaches back to this node's head, the node
    /// starts over at Redis's head and closes its streams, whose clients then reconnect and
    /// get `herald.reset`.
    pub(crate) async fn catch_up(&self, cluster: &Cluster) {
        if let Err(error) = self.try_catch_up(cluster).await {
            tracing::warn!(app = %self.id, %error, "Could not catch up from the cluster's history.");
        }
    }

    async fn try_catch_up(&self, cluster: &Cluster) -> Result<(), crate::store::StoreError> {
        let (epoch, _) = cluster.epoch_and_head(&self.id).await?;
        let local_epoch = self.log.lock().epoch.clone();
        if epoch.as_deref() != Some(local_epoch.as_str()) {
            let (opened, stream_id) = cluster.open_app(&self.id, self.history_limits()).await?;
            tracing::warn!(app = %self.id, "The cluster's history was lost; clients will be told to reset.");
            self.log.lock().restart(opened.epoch, opened.floor);
            self.applied.lock().stream_id = None;
            self.close_all(CloseReason::Resync);
            for m in opened.history {
                self.apply(m.seq, None, WireMessage::from(m), &[]).await;
            }
            self.applied.lock().stream_id = stream_id;
            return Ok(());
        }
        let after = self.applied.lock().stream_id.clone();
        let (entries, last) = cluster.read_stream(&self.id, after.as_deref()).await?;
        let head = self.log.lock().head;
        if let Some(first) = entries.iter().find(|m| m.seq > head) {
            if first.seq > head + 1 {
                tracing::warn!(app = %self.id, missed_from = head + 1, "Messages were trimmed before this node caught up; clients will be told to reset.");
                self.log.lock().restart(local_epoch, first.seq - 1);
                self.close_all(CloseReason::Resync);
            }
        }
        for m in entries {
            self.apply(m.seq, None, WireMessage::from(m), &[]).await;
        }
        if last.is_some() {
            self.applied.lock().stream_id = last;
        }
        Ok(())
    }

    /// Ends every stream of this app on this node with a `retry:` hint.
    pub(crate) fn close_all(&self, reason: CloseReason) {
        let hint = sse::retry(self.retry_ms);
        for conn in self.registry.all() {
            self.close(&conn, Some(hint.clone()), reason);
        }
    }

    /// Ends a stream from the hub's side, with an optional last frame.
    pub(crate) fn close(&self, conn: &Conn, last: Option<Bytes>, reason: CloseReason) {
        conn.outbox.finish(last, reason);
        self.unregister(conn);
    }

    fn announce(&self, kind: PresenceKind, conn: &Conn) {
        // Building the event costs allocations on every connect; skip it when nobody listens.
        let feed = self.presence.receiver_count() > 0;
        if !feed && self.webhooks.is_none() && matches!(self.backbone, Backbone::Local(_)) {
            return;
        }
        let event = PresenceEvent {
            kind,
            app: self.id.clone(),
            connection: conn.info(),
            at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        if let Backbone::Cluster(cluster) = &self.backbone {
            cluster.presence_changed(&self.id, event.clone());
        }
        if let Some(webhooks) = &self.webhooks {
            if let Ok(body) = serde_json::to_vec(&event) {
                webhooks.send(body.into(), &self.metrics);
            }
        }
        if feed {
            let _ = self.presence.send(event);
        }
    }
}

/// A message sequenced and delivered, whose durable copies may still be on their way to disk.
struct Staged {
    published: Published,
    commit: Option<crate::store::Commit>,
}

impl Staged {
    /// Waits for the disk when the message is durable; then its users hear their unread count.
    async fn finish(self, app: &App) -> Result<Published, Error> {
        if let Some(commit) = self.commit {
            let changes = commit.await.inspect_err(|_| add(&app.metrics.store_errors_total, 1))?;
            app.notify_unread(&changes);
        }
        Ok(self.published)
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

pub(crate) fn unread_frame(unread: u64) -> Bytes {
    sse::event(None, Some("herald.unread"), &json!({ "unread": unread }).to_string())
}
