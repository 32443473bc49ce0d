//! A single node: its own store sequences and persists, and this node alone delivers.
//!
//! A durable message reaches nobody before its commit; whatever is sequenced behind it waits in
//! the app's `held` queue, so that ids still arrive in order (see `hub::held`).

use std::sync::{Arc, Weak};

use futures_util::future::{BoxFuture, FutureExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::Backbone;
use crate::error::Error;
use crate::hub::app::{App, Ready};
use crate::hub::Inner;
use crate::message::{now_ms, Message, Publish, Published};
use crate::presence::{ConnectionInfo, Kick, PresenceEvent};
use crate::store::{HistoryLimits, Inbox, Opened, Store, StoreError, UnreadChange};

/// The backbone of a single node: a [`Store`].
pub(crate) struct Local {
    store: Arc<dyn Store>,
}

impl Local {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

impl Backbone for Local {
    fn open_app(
        &self,
        app: &str,
        limits: HistoryLimits,
    ) -> BoxFuture<'static, Result<(Opened, Option<String>), StoreError>> {
        self.store.open_app(app, limits).map(|opened| opened.map(|o| (o, None))).boxed()
    }

    /// Every message is sequenced and enqueued before any commit is awaited, so a batch of
    /// durable messages costs one group commit rather than one each.
    fn publish<'a>(&'a self, app: &'a Arc<App>, batch: Vec<Publish>) -> BoxFuture<'a, Vec<Result<Published, Error>>> {
        async move {
            let staged: Vec<_> = batch.into_iter().map(|p| stage(app, self.store.as_ref(), p)).collect();
            if staged.iter().any(|s| matches!(s, Ok(Staged::Ready { .. }))) {
                // Whoever holds the turn now may deliver these too; if this publisher goes away
                // before it gets the turn, the guard hands the delivery to a task of its own.
                let mut guard = DeliverReady(Some((app.clone(), tokio::runtime::Handle::current())));
                let turn = app.turn.lock().await;
                app.deliver_ready();
                drop(turn);
                guard.0 = None;
            }
            let mut answers = Vec::with_capacity(staged.len());
            for staged in staged {
                answers.push(match staged {
                    Ok(staged) => staged.finish().await,
                    Err(e) => Err(e),
                });
            }
            answers
        }
        .boxed()
    }

    fn inbox(&self) -> Arc<dyn Inbox> {
        self.store.clone()
    }

    fn remote_connections(&self, _app: &str) -> BoxFuture<'static, Result<Vec<ConnectionInfo>, StoreError>> {
        futures_util::future::ready(Ok(Vec::new())).boxed()
    }

    fn shares_presence(&self) -> bool {
        false
    }

    fn presence_changed(&self, _app: &str, _event: &PresenceEvent) {}

    fn kick_remote(&self, _app: &str, _kick: Kick) -> BoxFuture<'static, Result<(), StoreError>> {
        futures_util::future::ready(Ok(())).boxed()
    }

    fn unread_changed<'a>(&'a self, app: &'a App, changes: &'a [UnreadChange]) -> BoxFuture<'a, ()> {
        app.notify_unread(changes);
        futures_util::future::ready(()).boxed()
    }

    fn wait_for<'a>(&'a self, _app: &'a App, _seq: u64) -> BoxFuture<'a, ()> {
        futures_util::future::ready(()).boxed()
    }

    fn start(self: Arc<Self>, _hub: Weak<Inner>) {}

    fn listening(&self) -> bool {
        true
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.store.flush()
    }
}

/// Sequences a message and enqueues it to the store. A non-durable message with nothing held
/// ahead of it waits in the app's `ready` queue for the turn; otherwise it is held (see `held`)
/// until everything before it, and itself when durable, is committed.
fn stage(app: &Arc<App>, store: &dyn Store, p: Publish) -> Result<Staged, Error> {
    let durable = p.durable.then(|| app.durable_recipients(&p, Vec::new()));
    let Publish { to, event, data, durable: is_durable, mercure, .. } = p;
    let (message, commit, delivered) = {
        let mut log = app.log.lock();
        let seq = log.assigned + 1;
        let message = Arc::new(Message::with_mercure(&log.epoch, seq, now_ms(), to, event, data, is_durable, mercure));
        // Enqueued before anyone can see the message, so an ack never overtakes its insert.
        let commit = store.append(&app.id, message.clone(), durable).inspect_err(|_| app.metrics.store_errors.inc())?;
        log.assigned = seq;
        let mut held = app.held.lock();
        if !is_durable && held.is_empty() {
            // Still under the log's lock: `ready` stays in sequence order.
            let (tx, rx) = oneshot::channel();
            app.ready.lock().push(Ready { message: message.clone(), delivered: tx });
            // A non-durable publish does not wait for the disk; the store logs a failed write.
            return Ok(Staged::Ready { id: message.id.clone(), delivered: rx });
        }
        let delivered = held.push(message.clone());
        (message, commit, delivered)
    };
    let id = message.id.clone();
    // Its own task, so that a publisher that goes away cannot leave the queue stuck.
    let committed = is_durable.then(|| {
        let app = app.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let outcome = commit.await;
            app.metrics.store_commit_seconds.observe(started.elapsed().as_secs_f64());
            if app.held.lock().settle(message.seq, outcome.is_ok()) {
                release_held(&app).await;
            }
            outcome
        })
    });
    Ok(Staged::Held { id, delivered, committed, app: app.clone() })
}

/// Delivers what waits in `ready` in a task of its own when dropped armed: a publisher that
/// goes away while it waits for the turn must not leave its message sequenced and undelivered.
/// Keeps the runtime it was made on, as the future holding it may be dropped anywhere.
struct DeliverReady(Option<(Arc<App>, tokio::runtime::Handle)>);

impl Drop for DeliverReady {
    fn drop(&mut self) {
        if let Some((app, runtime)) = self.0.take() {
            runtime.spawn(async move {
                let _turn = app.turn.lock().await;
                app.deliver_ready();
            });
        }
    }
}

/// Delivers, in order, every held message that may go now, behind what is already ready (it
/// was sequenced before anything held), as runs like any ready message.
async fn release_held(app: &App) {
    let _turn = app.turn.lock().await;
    {
        // Both locks, in `stage`'s order: a publish that finds `held` empty must not queue in
        // `ready` ahead of the messages leaving it.
        let mut held = app.held.lock();
        let mut ready = app.ready.lock();
        while let Some((message, delivered)) = held.next_ready() {
            ready.push(Ready { message, delivered });
        }
    }
    app.deliver_ready();
}

/// A message sequenced, and ready or held.
enum Staged {
    /// Waiting in `ready` for the turn, which the publisher takes after staging its batch.
    Ready { id: String, delivered: oneshot::Receiver<usize> },
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
            // Delivered by the time the publisher had its turn (by it or by the holder before).
            Self::Ready { id, delivered } => return Ok(Published::complete(id, delivered.await.unwrap_or(0))),
            Self::Held { id, delivered, committed, app } => (id, delivered, committed, app),
        };
        if let Some(committed) = committed {
            let outcome = committed.await.map_err(|e| StoreError::Failed(e.to_string()))?;
            let changes = outcome.inspect_err(|_| app.metrics.store_errors.inc())?;
            app.metrics.durable_commits.inc();
            app.notify_unread(&changes);
        }
        // Sent once everything ahead is committed (or failed): the sender is never dropped
        // unsent while this message is still queued.
        let delivered = delivered.await.unwrap_or(0);
        Ok(Published::complete(id, delivered))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{Config, StoreKind};
    use crate::hub::Hub;
    use crate::message::{Publish, Targets};

    /// A publisher that goes away while another holds the turn has already sequenced its
    /// message: it is still appended and delivered, not left waiting for the next publish.
    #[tokio::test]
    async fn a_publish_abandoned_while_waiting_for_the_turn_is_still_delivered() {
        let hub = Hub::new(Config { store: StoreKind::Memory, ..Config::default() }).await.unwrap();
        let app = hub.app("default").unwrap().clone();
        let mut head = app.head.subscribe();
        let turn = app.turn.lock().await;
        let publish = Publish {
            to: Targets { users: vec!["ann".into()], ..Targets::default() },
            data: "x".into(),
            ..Publish::default()
        };
        let abandoned = tokio::time::timeout(Duration::ZERO, hub.publish("default", publish)).await;
        assert!(abandoned.is_err(), "the publish waited for the turn and was dropped");
        assert_eq!(app.log.lock().assigned, 1);
        drop(turn);
        let delivered = tokio::time::timeout(Duration::from_secs(10), head.wait_for(|h| *h == 1)).await;
        assert!(delivered.is_ok(), "the abandoned message was never appended and delivered");
    }
}
