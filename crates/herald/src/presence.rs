//! Who is connected, as the presence API, webhooks and the cluster describe it: plain data that
//! the hub and every backbone share, so that neither depends on the other.

use serde::{Deserialize, Serialize};

use crate::message::Identity;

/// One connection, as the presence API and webhooks describe it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ConnectionInfo {
    /// Connection id, unique in the cluster.
    pub id: String,
    /// `sub` of its token.
    pub user: Option<String>,
    /// `tenant` of its token.
    pub tenant: Option<String>,
    /// `sid` of its token.
    pub session: Option<String>,
    /// Channels it joined.
    pub channels: Vec<String>,
    /// What the client called itself with `client_id=`.
    pub client_id: Option<String>,
    /// Remote address and port.
    pub remote_addr: String,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
    /// When it connected, RFC 3339 in UTC.
    pub connected_at: String,
    /// A Mercure subscriber's subscriptions; absent for native streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mercure: Option<MercureInfo>,
}

/// A Mercure subscriber as the subscriptions API describes it, on whichever node it is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct MercureInfo {
    /// Its subscriber id (`urn:uuid:...`).
    pub subscriber: String,
    /// Its subscriptions: match type, selector and the payload its token attaches.
    pub subscriptions: Vec<MercureSubscription>,
}

/// One subscription of a Mercure subscriber.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct MercureSubscription {
    /// `exact`, `urlpattern` or `template` (0.x `topic=`).
    pub match_type: String,
    /// The selector.
    #[serde(rename = "match")]
    pub selector: String,
    /// The `payload` its token gives this subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

impl ConnectionInfo {
    /// The addressable identity this connection had.
    pub(crate) fn identity(&self) -> Identity {
        Identity {
            user: self.user.as_deref().map(Into::into),
            tenant: self.tenant.as_deref().map(Into::into),
            session: self.session.as_deref().map(Into::into),
            channels: self.channels.iter().map(|c| c.as_str().into()).collect(),
        }
    }
}

/// Whether a connection came or went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceKind {
    /// A stream opened.
    Connect,
    /// A stream closed.
    Disconnect,
}

/// One coming or going.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PresenceEvent {
    /// `connect` or `disconnect`.
    #[serde(rename = "type")]
    pub kind: PresenceKind,
    /// The app it happened in.
    pub app: String,
    /// The connection.
    pub connection: ConnectionInfo,
    /// When, RFC 3339.
    pub at: String,
}

/// Connections to close, on whichever node holds them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kick {
    /// Every connection of this user.
    pub user: Option<String>,
    /// This one connection.
    pub connection: Option<String>,
    /// Sent to the client as `herald.kicked`.
    pub reason: Option<String>,
}
