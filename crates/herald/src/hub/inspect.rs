//! What the admin dashboard reads of a running hub beyond the presence API: this node's id,
//! per-app gauges for its charts, and one channel's recent and live traffic from history.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::Hub;
use crate::error::Error;
use crate::message::{Identity, Message};
use crate::presence::ConnectionInfo;

/// One app's gauges on this node, read without touching the publish path.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AppGauges {
    /// Open streams on this node.
    pub(crate) connections: usize,
    /// The app's head sequence: one step per message published (cluster-wide in a cluster).
    pub(crate) head: u64,
}

impl Hub {
    /// This node's id, the prefix of its connection ids.
    pub(crate) fn node_id(&self) -> &str {
        self.inner.apps.values().next().map_or("", |a| &a.node)
    }

    /// The ids of every app, sorted.
    pub(crate) fn app_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.inner.apps.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// One app's gauges on this node.
    pub(crate) fn app_gauges(&self, app: &str) -> Result<AppGauges, Error> {
        let app = self.app(app)?;
        Ok(AppGauges { connections: app.registry.len(), head: *app.head.borrow() })
    }

    /// The users with a stream on this node, and how many streams each holds.
    pub(crate) fn local_users(&self, app: &str) -> Result<BTreeMap<Arc<str>, usize>, Error> {
        Ok(self.app(app)?.registry.users_after(None, usize::MAX))
    }

    /// The connections the other nodes of a cluster hold (none for a single node).
    pub(crate) async fn remote_connections(&self, app: &str) -> Result<Vec<ConnectionInfo>, Error> {
        let app = self.app(app)?;
        Ok(app.backbone.remote_connections(&app.id).await?)
    }

    /// Messages in history that a connection joined to `channel` receives (those to the
    /// channel and those to `all`), oldest first: the last `limit` of them, or those after
    /// `after`. Also the head they were read at.
    pub(crate) fn channel_messages(
        &self,
        app: &str,
        channel: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Arc<Message>>, u64), Error> {
        let app = self.app(app)?;
        let who = Identity { channels: vec![channel.into()], ..Identity::default() };
        let log = app.log.lock();
        let mut messages = match after {
            Some(seq) => log.after(seq, &who),
            None => log.latest(limit, &who),
        };
        messages.truncate(limit);
        Ok((messages, log.head))
    }

    /// The app's head sequence, changing as messages are delivered.
    pub(crate) fn watch_head(&self, app: &str) -> Result<watch::Receiver<u64>, Error> {
        Ok(self.app(app)?.head.subscribe())
    }
}
