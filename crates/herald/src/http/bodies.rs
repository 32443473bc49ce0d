//! The JSON bodies the HTTP API answers with (and the publish body it takes), as types: the
//! handlers serialize exactly these, and the OpenAPI document (`openapi`) is generated from
//! them, so the two cannot drift apart.

use serde::Serialize;
use utoipa::ToSchema;

use super::problem::ProblemDocument;
use crate::hub::OnlineUser;
use crate::message::Published;
use crate::presence::ConnectionInfo;

/// One answer of `POST /api/publish/batch`, in the order of the items.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum BatchAnswer {
    /// The item was published.
    Published(Published),
    /// The item could not be carried out (the store failed); the others were.
    Problem(ProblemDocument),
}

/// `GET /api/users`.
#[derive(Serialize, ToSchema)]
pub(crate) struct UsersPage {
    /// Online users, ordered by id.
    pub(crate) users: Vec<OnlineUser>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub(crate) next_cursor: Option<String>,
}

/// `GET /api/connections`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConnectionsPage {
    /// Open connections, on every node.
    pub(crate) connections: Vec<ConnectionInfo>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub(crate) next_cursor: Option<String>,
}

/// `GET /api/users/{id}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserPresence {
    /// The user id asked for.
    pub(crate) id: String,
    /// Whether the user has a connection open anywhere.
    pub(crate) online: bool,
    /// The user's connections.
    pub(crate) connections: Vec<ConnectionInfo>,
}

/// The answer of a kick.
#[derive(Serialize, ToSchema)]
pub(crate) struct Kicked {
    /// Connections closed.
    pub(crate) kicked: usize,
}

/// One durable message of a user.
#[derive(Serialize, ToSchema)]
pub(crate) struct InboxMessage {
    /// Its SSE id (ends in `-d`).
    pub(crate) id: String,
    /// Event name, `null` when the publisher gave none.
    pub(crate) event: Option<String>,
    /// Payload text.
    pub(crate) data: String,
    /// When it was published, RFC 3339.
    pub(crate) created_at: String,
    /// When it expires, RFC 3339.
    pub(crate) expires_at: String,
    /// When the user acknowledged it, RFC 3339; `null` while unread.
    pub(crate) read_at: Option<String>,
}

/// `GET /api/users/{id}/messages`.
#[derive(Serialize, ToSchema)]
pub(crate) struct MessagesPage {
    /// Newest first.
    pub(crate) messages: Vec<InboxMessage>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub(crate) next_cursor: Option<String>,
}

/// `GET /api/users/{id}/unread`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Unread {
    /// The user id asked for.
    pub(crate) user: String,
    /// Unread, unexpired durable messages.
    pub(crate) unread: u64,
}

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok`: the process answers.
    pub(crate) status: &'static str,
    /// Open streams on this node.
    pub(crate) connections: usize,
}

/// `GET /readyz` when ready.
#[derive(Serialize, ToSchema)]
pub(crate) struct Ready {
    /// Always `ready`.
    pub(crate) status: &'static str,
}
