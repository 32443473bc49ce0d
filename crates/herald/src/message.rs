//! What a publisher sends, and the message it becomes.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The addresses of one publish. Any combination; a connection that matches several of them
/// receives the message once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Targets {
    /// User ids (the `sub` of their tokens).
    pub users: Vec<String>,
    /// Login-session ids (the `sid` of their tokens).
    pub sessions: Vec<String>,
    /// Tenant ids (the `tenant` of their tokens).
    pub tenants: Vec<String>,
    /// Channel names, as joined with `channel=`.
    pub channels: Vec<String>,
    /// Every connection of the app.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

impl Targets {
    /// Whether nothing is addressed.
    pub fn is_empty(&self) -> bool {
        !self.all && self.address_count() == 0
    }

    /// How many addresses are named (`all` aside).
    pub fn address_count(&self) -> usize {
        self.users.len() + self.sessions.len() + self.tenants.len() + self.channels.len()
    }

    /// Whether a connection with this identity receives a message sent to these targets.
    pub fn matches(&self, who: &Identity) -> bool {
        fn has(list: &[String], value: &Option<Arc<str>>) -> bool {
            value.as_deref().is_some_and(|v| list.iter().any(|x| x == v))
        }
        self.all
            || has(&self.users, &who.user)
            || has(&self.sessions, &who.session)
            || has(&self.tenants, &who.tenant)
            || who.channels.iter().any(|c| self.channels.iter().any(|x| **x == **c))
    }
}

/// The addressable identity of one connection, from its token and its `channel=` parameters.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// `sub`.
    pub user: Option<Arc<str>>,
    /// `tenant`.
    pub tenant: Option<Arc<str>>,
    /// `sid`.
    pub session: Option<Arc<str>>,
    /// Joined channels.
    pub channels: Vec<Arc<str>>,
}

/// A publish, as the hub's Rust API takes it.
#[derive(Debug, Clone, Default)]
pub struct Publish {
    /// Who receives it.
    pub to: Targets,
    /// SSE event name; `None` fires the client's `message` listener.
    pub event: Option<String>,
    /// The payload, sent as-is (split into `data:` lines).
    pub data: String,
    /// Store it per addressed user until acknowledged or expired.
    pub durable: bool,
    /// Lifetime of a durable message in seconds; the app's default when `None`.
    pub ttl: Option<u64>,
    /// What a Mercure publish adds (a custom id, `private`, `retry`); `None` for native ones.
    pub mercure: Option<MercureFields>,
}

/// The fields a Mercure update carries beyond a native message. Its topics are the message's
/// `channels`. Stored and sent between nodes with the message, so that history and resume
/// keep them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MercureFields {
    /// The publisher's own id: the SSE `id` every subscriber sees, and a resume position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Only subscribers whose Mercure token may read one of the topics receive it (native
    /// subscribers joined its channel with a token that allowed it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
    /// The SSE `retry` sent with it, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u64>,
}

/// The answer to a publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Published {
    /// The SSE `id:` clients see; ids increase in publish order.
    pub id: String,
    /// How many connections the message was handed to, on every node of a cluster that
    /// reported in time.
    pub delivered: usize,
    /// `false` when some live nodes of a cluster did not report their count within
    /// `delivery_report_ms`; `delivered` then counts only the nodes that did.
    #[serde(skip_serializing_if = "is_true")]
    pub complete: bool,
    /// How many live nodes did not report in time.
    #[serde(skip_serializing_if = "is_zero")]
    pub unreported_nodes: usize,
}

impl Published {
    /// The answer of a publish that every node has counted.
    pub(crate) fn complete(id: String, delivered: usize) -> Self {
        Self { id, delivered, complete: true, unreported_nodes: 0 }
    }
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A published message: what history keeps and what every recipient shares.
#[derive(Debug)]
pub struct Message {
    /// Position in the app's sequence.
    pub seq: u64,
    /// The SSE id (`<epoch>-<seq>[-d]`).
    pub id: String,
    /// Publish time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Who it was addressed to, kept so that replay applies the live rules.
    pub targets: Targets,
    /// SSE event name.
    pub event: Option<String>,
    /// Payload text.
    pub data: String,
    /// Stored per user until acknowledged.
    pub durable: bool,
    /// Mercure's extras, when it was published as a Mercure update.
    pub mercure: Option<Box<MercureFields>>,
    /// The encoded SSE frame, shared by every recipient.
    pub frame: Bytes,
    /// When this node built it: the start of `herald_publish_to_write_seconds`.
    pub(crate) created: std::time::Instant,
}

/// The SSE id of message `seq`: the publisher's own (a Mercure custom id) when it gave one,
/// else `<epoch>-<seq>`.
pub(crate) fn wire_id(epoch: &str, seq: u64, durable: bool, custom: Option<String>) -> String {
    custom.unwrap_or_else(|| crate::id::format(epoch, seq, durable))
}

impl Message {
    /// Builds a message and encodes its frame once.
    pub fn new(
        epoch: &str,
        seq: u64,
        time_ms: u64,
        targets: Targets,
        event: Option<String>,
        data: String,
        durable: bool,
    ) -> Self {
        Self::with_mercure(epoch, seq, time_ms, targets, event, data, durable, None)
    }

    /// Builds a message that may carry Mercure's extras: a custom id replaces the generated
    /// one on the wire, and `retry` goes in the same frame.
    #[allow(clippy::too_many_arguments)]
    pub fn with_mercure(
        epoch: &str,
        seq: u64,
        time_ms: u64,
        targets: Targets,
        event: Option<String>,
        data: String,
        durable: bool,
        mercure: Option<MercureFields>,
    ) -> Self {
        let id = wire_id(epoch, seq, durable, mercure.as_ref().and_then(|m| m.id.clone()));
        let mut frame = crate::sse::event(Some(&id), event.as_deref(), &data);
        if let Some(retry) = mercure.as_ref().and_then(|m| m.retry) {
            frame = [format!("retry: {retry}\n").as_bytes(), &frame[..]].concat().into();
        }
        Self {
            seq,
            id,
            time_ms,
            targets,
            event,
            data,
            durable,
            mercure: mercure.map(Box::new),
            frame,
            created: std::time::Instant::now(),
        }
    }

    /// Whether a Mercure subscriber needs a subscribe grant for one of its topics to receive
    /// it: a private update, or any native message (a native channel is joined only with a
    /// token allowing it, so an anonymous Mercure subscriber must not read it either).
    pub fn needs_mercure_grant(&self) -> bool {
        self.mercure.as_ref().is_none_or(|m| m.private)
    }

    /// The publisher's own id, when it gave one.
    pub fn custom_id(&self) -> Option<&str> {
        self.mercure.as_ref().and_then(|m| m.id.as_deref())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
