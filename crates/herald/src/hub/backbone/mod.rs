//! The backbone: who sequences, stores and fans out an app's messages, and what the other nodes
//! of a cluster must hear. One trait, so that a topology is added beside the others without
//! touching the hub: [`Local`] is a single node's store, [`Redis`] a cluster over Redis.

mod local;
mod redis;

use std::sync::{Arc, Weak};

use futures_util::future::BoxFuture;

pub(crate) use local::Local;
pub(crate) use redis::{Applied, Redis};

use super::app::App;
use super::Inner;
use crate::error::Error;
use crate::message::{Publish, Published};
use crate::presence::{ConnectionInfo, Kick, PresenceEvent};
use crate::store::{HistoryLimits, Inbox, Opened, StoreError, UnreadChange};

pub(crate) trait Backbone: Send + Sync + 'static {
    /// What is persisted of `app` (epoch, head, retained history), and where a cluster's
    /// history stream stands.
    fn open_app(
        &self,
        app: &str,
        limits: HistoryLimits,
    ) -> BoxFuture<'static, Result<(Opened, Option<String>), StoreError>>;

    /// Sequences, stores and fans out validated messages, in order, and answers each: the
    /// message's id and the connections it was handed to. A durable message is answered once it
    /// is stored, and reaches nobody if it could not be.
    fn publish<'a>(&'a self, app: &'a Arc<App>, batch: Vec<Publish>) -> BoxFuture<'a, Vec<Result<Published, Error>>>;

    /// Where durable messages wait for their users.
    fn inbox(&self) -> Arc<dyn Inbox>;

    /// The connections other nodes hold (none for a single node).
    fn remote_connections(&self, app: &str) -> BoxFuture<'static, Result<Vec<ConnectionInfo>, StoreError>>;

    /// Whether other nodes must hear this node's comings and goings.
    fn shares_presence(&self) -> bool;

    /// Tells the other nodes that a connection of this node came or went.
    fn presence_changed(&self, app: &str, event: &PresenceEvent);

    /// Closes what `kick` names on the other nodes.
    fn kick_remote(&self, app: &str, kick: Kick) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Tells users' streams, on every node, their new unread counts.
    fn unread_changed<'a>(&'a self, app: &'a App, changes: &'a [UnreadChange]) -> BoxFuture<'a, ()>;

    /// Waits, within a bound, until this node has applied `seq`, which a client saw elsewhere.
    fn wait_for<'a>(&'a self, app: &'a App, seq: u64) -> BoxFuture<'a, ()>;

    /// Starts what runs beside the hub (a cluster's bus), holding the hub weakly.
    fn start(self: Arc<Self>, hub: Weak<Inner>);

    /// Whether this node hears every app's bus (a single node always does). Until it does, a
    /// publish is answered before this node's own copy arrives and its streams get messages
    /// late, from the catch-up that follows the subscription; `/readyz` waits for it.
    fn listening(&self) -> bool;

    /// Resolves once everything accepted is persisted; called at shutdown.
    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>>;
}
