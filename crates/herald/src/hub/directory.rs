//! Who is online, cluster-wide, and closing their streams.

use serde::Serialize;
use tokio::sync::broadcast;

use super::app::App;
use super::{Hub, Page};
use crate::error::Error;
use crate::presence::{ConnectionInfo, Kick, PresenceEvent};

/// An online user and how many connections it holds.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct OnlineUser {
    /// User id.
    pub id: String,
    /// Open connections.
    pub connections: usize,
}

/// Filters of a connection listing.
#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    /// Only this user's.
    pub user: Option<String>,
    /// Only this tenant's.
    pub tenant: Option<String>,
    /// Only those that joined this channel.
    pub channel: Option<String>,
}

impl Hub {
    /// The connections other cluster nodes hold (none for a single node).
    async fn remote(&self, app: &App) -> Result<Vec<ConnectionInfo>, Error> {
        Ok(app.backbone.remote_connections(&app.id).await?)
    }

    /// Online users, ordered by id, `limit` at a time after `cursor`; cluster-wide.
    ///
    /// # Errors
    ///
    /// An unknown app, or an unreachable cluster.
    pub async fn online_users(
        &self,
        app: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Vec<OnlineUser>>, Error> {
        let app = self.app(app)?;
        // Remote users are merged whole: with them, the first `limit + 1` of the union after the
        // cursor are still among these local ones and those remote ones.
        let mut users = app.registry.users_after(cursor, limit + 1);
        for remote in self.remote(app).await? {
            if let Some(user) = remote.user {
                *users.entry(user.into()).or_default() += 1;
            }
        }
        let mut items: Vec<OnlineUser> = users
            .range::<str, _>((
                cursor.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
                std::ops::Bound::Unbounded,
            ))
            .take(limit + 1)
            .map(|(id, n)| OnlineUser { id: id.to_string(), connections: *n })
            .collect();
        let next_cursor = (items.len() > limit).then(|| {
            items.truncate(limit);
            items.last().map(|u| u.id.clone()).unwrap_or_default()
        });
        Ok(Page { items, next_cursor })
    }

    /// The connections of one user (empty when offline); cluster-wide.
    ///
    /// # Errors
    ///
    /// An unknown app, or an unreachable cluster.
    pub async fn user_connections(&self, app: &str, user: &str) -> Result<Vec<ConnectionInfo>, Error> {
        let filter = ConnectionFilter { user: Some(user.to_string()), ..ConnectionFilter::default() };
        Ok(self.connections(app, &filter, usize::MAX - 1, None).await?.items)
    }

    /// Open connections matching `filter`, ordered by id, `limit` at a time after `cursor`;
    /// cluster-wide.
    ///
    /// # Errors
    ///
    /// An unknown app, or an unreachable cluster.
    pub async fn connections(
        &self,
        app: &str,
        filter: &ConnectionFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Vec<ConnectionInfo>>, Error> {
        let app = self.app(app)?;
        let local = match &filter.user {
            Some(user) => app.registry.of_user(user),
            None => app.registry.all(),
        };
        let mut conns: Vec<ConnectionInfo> = local.iter().map(|c| c.info()).chain(self.remote(app).await?).collect();
        conns.retain(|c| {
            cursor.is_none_or(|after| c.id.as_str() > after)
                && filter.user.as_ref().is_none_or(|u| c.user.as_ref() == Some(u))
                && filter.tenant.as_ref().is_none_or(|t| c.tenant.as_ref() == Some(t))
                && filter.channel.as_ref().is_none_or(|ch| c.channels.contains(ch))
        });
        conns.sort_by(|a, b| a.id.cmp(&b.id));
        let more = conns.len() > limit;
        conns.truncate(limit);
        let next_cursor = more.then(|| conns.last().map(|c| c.id.clone()).unwrap_or_default());
        Ok(Page { items: conns, next_cursor })
    }

    /// Closes every stream of a user, on every node, each after a `herald.kicked` event when
    /// `reason` is given; returns how many there were.
    ///
    /// # Errors
    ///
    /// An unknown app, or an unreachable cluster.
    pub async fn kick_user(&self, app: &str, user: &str, reason: Option<&str>) -> Result<usize, Error> {
        let app = self.app(app)?;
        let mut kicked = app.kick_local(Some(user), None, reason);
        let remote = app.backbone.remote_connections(&app.id).await?;
        kicked += remote.iter().filter(|c| c.user.as_deref() == Some(user)).count();
        let kick = Kick { user: Some(user.to_string()), connection: None, reason: reason.map(str::to_owned) };
        app.backbone.kick_remote(&app.id, kick).await?;
        Ok(kicked)
    }

    /// Closes one stream by its id, on whichever node holds it.
    ///
    /// # Errors
    ///
    /// An unknown app, no such connection, or an unreachable cluster.
    pub async fn kick_connection(&self, app: &str, connection: &str, reason: Option<&str>) -> Result<(), Error> {
        let app = self.app(app)?;
        if app.kick_local(None, Some(connection), reason) == 1 {
            return Ok(());
        }
        if app.backbone.remote_connections(&app.id).await?.iter().any(|c| c.id == connection) {
            let kick = Kick { user: None, connection: Some(connection.to_string()), reason: reason.map(str::to_owned) };
            app.backbone.kick_remote(&app.id, kick).await?;
            return Ok(());
        }
        Err(Error::NotFound(format!("there is no open connection `{connection}`")))
    }

    /// Comings and goings of an app's connections, from now on.
    ///
    /// # Errors
    ///
    /// An unknown app.
    pub fn presence(&self, app: &str) -> Result<broadcast::Receiver<PresenceEvent>, Error> {
        Ok(self.app(app)?.presence.subscribe())
    }
}
