//! Publishing: validation, sequencing, delivery, and waiting for the disk or the cluster bus.
//! The order of the steps, and why, is in the `hub` module docs.

use std::sync::Arc;

use super::app::{App, Backbone};
use super::bus::BUS_ROUND_TRIP;
use super::conn::ConnectionInfo;
use crate::cluster::{Cluster, Record, WireMessage};
use crate::error::Error;
use crate::message::{now_ms, Message, Publish, Published, Targets};
use crate::metrics::add;
use crate::sse;
use crate::store::{DurableFor, Store, StoreError, UnreadChange};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Deliveries up to which a publisher yields so that the streams write first.
const FEW: usize = 8;

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
            Backbone::Local(store) => self.stage_local(store.as_ref(), p).await?.finish().await,
            Backbone::Cluster(cluster) => self.publish_clustered(cluster, p).await,
        }
    }

    /// Publishes validated messages in order. On a single node every message is sequenced and
    /// enqueued before any commit is awaited, so a batch of durable messages costs one group
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
                        Ok(staged) => staged.finish().await,
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

    /// Sequences a message and enqueues it to the store. A non-durable message with nothing held
    /// ahead of it is delivered at once; otherwise it is held (see `held`) until everything
    /// before it, and itself when durable, is committed.
    async fn stage_local(self: &Arc<Self>, store: &dyn Store, p: Publish) -> Result<Staged, Error> {
        let durable = p.durable.then(|| self.durable_recipients(&p, Vec::new()));
        let Publish { to, event, data, durable: is_durable, .. } = p;
        let turn = self.turn.lock().await;
        let (message, commit, hold) = {
            let mut log = self.log.lock();
            let seq = log.assigned + 1;
            let message = Arc::new(Message::new(&log.epoch, seq, now_ms(), to, event, data, is_durable));
            // Enqueued before anyone can see the message, so an ack never overtakes its insert.
            let commit = store
                .append(&self.id, message.clone(), durable)
                .inspect_err(|_| add(&self.metrics.store_errors_total, 1))?;
            log.assigned = seq;
            let mut held = self.held.lock();
            let hold = (is_durable || !held.is_empty()).then(|| held.push(message.clone()));
            if hold.is_none() {
                log.append(message.clone());
            }
            (message, commit, hold)
        };
        let id = message.id.clone();
        let Some(delivered) = hold else {
            let delivered = self.deliver(&message);
            drop(turn);
            self.head.send_replace(message.seq);
            if (1..=FEW).contains(&delivered) {
                // Let the few streams just woken write before this task answers its publisher.
                tokio::task::yield_now().await;
            }
            // A non-durable publish does not wait for the disk; the store logs a failed write.
            return Ok(Staged::Delivered(Published { id, delivered }));
        };
        drop(turn);
        // Its own task, so that a publisher that goes away cannot leave the queue stuck.
        let committed = is_durable.then(|| {
            let app = self.clone();
            tokio::spawn(async move {
                let outcome = commit.await;
                app.held.lock().settle(message.seq, outcome.is_ok());
                app.release_held().await;
                outcome
            })
        });
        Ok(Staged::Held { id, delivered, committed, app: self.clone() })
    }

    /// Delivers, in order, every held message that may go now.
    async fn release_held(&self) {
        let turn = self.turn.lock().await;
        let mut head = None;
        loop {
            let Some((message, publisher)) = self.held.lock().next_ready() else { break };
            self.log.lock().append(message.clone());
            let _ = publisher.send(self.deliver(&message));
            head = Some(message.seq);
        }
        drop(turn);
        if let Some(seq) = head {
            self.head.send_replace(seq);
        }
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
        let expires_ms = now_ms().saturating_add(ttl.saturating_mul(1000));
        super::maintenance::expires_at(&self.next_expiry, expires_ms);
        DurableFor { users, expires_ms }
    }
}

/// A message sequenced, and delivered or held.
enum Staged {
    /// Delivered already; a non-durable publish does not wait for the disk.
    Delivered(Published),
    /// Waiting behind a commit, its own when durable.
    Held {
        id: String,
        delivered: oneshot::Receiver<usize>,
        committed: Option<JoinHandle<Result<Vec<UnreadChange>, StoreError>>>,
        app: Arc<App>,
    },
}

impl Staged {
    /// Waits until the message is delivered; a durable one is committed before that, and its
    /// users then hear their unread count. A failed commit is the publish's error, and the
    /// message reached nobody.
    async fn finish(self) -> Result<Published, Error> {
        let (id, delivered, committed, app) = match self {
            Self::Delivered(published) => return Ok(published),
            Self::Held { id, delivered, committed, app } => (id, delivered, committed, app),
        };
        if let Some(committed) = committed {
            let outcome = committed.await.map_err(|e| StoreError::Failed(e.to_string()))?;
            let changes = outcome.inspect_err(|_| add(&app.metrics.store_errors_total, 1))?;
            app.notify_unread(&changes);
        }
        // Sent once everything ahead is committed (or failed): the sender is never dropped
        // unsent while this message is still queued.
        let delivered = delivered.await.unwrap_or(0);
        Ok(Published { id, delivered })
    }
}
