//! Persistence behind one narrow seam: history for resume, and durable per-user messages.
//!
//! The hub keeps recent history in memory and delivers from there; a [`Store`] makes it
//! survive restarts and keeps durable messages until they are acknowledged. Appends are
//! *enqueued* synchronously, in sequence order, and return a [`Commit`] that resolves once the
//! message is on disk: a non-durable publish never waits for it, a durable one does. Because
//! an ack can only follow the delivery, and the delivery follows the enqueue, a store that
//! applies its queue in order never sees an ack before the message it acknowledges.

mod memory;
mod sqlite;

use std::sync::Arc;

use futures_util::future::{BoxFuture, FutureExt};
use serde::Serialize;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use crate::message::{Message, Targets};

/// What a store knows of one app when the hub starts.
#[derive(Debug, Default)]
pub struct Opened {
    /// The history's epoch; a new one means earlier ids cannot be resumed from.
    pub epoch: String,
    /// The last sequence number handed out.
    pub head: u64,
    /// Every message after this sequence is in `history`.
    pub floor: u64,
    /// Retained history, oldest first.
    pub history: Vec<StoredMessage>,
}

/// A message as stored.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Position in the app's sequence.
    pub seq: u64,
    /// Publish time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Who it was addressed to.
    pub targets: Targets,
    /// SSE event name.
    pub event: Option<String>,
    /// Payload text.
    pub data: String,
    /// Stored per user until acknowledged.
    pub durable: bool,
    /// Mercure's extras (a custom id, `private`, `retry`).
    pub mercure: Option<crate::message::MercureFields>,
}

/// History bounds of one app.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLimits {
    /// Most messages kept.
    pub max_len: usize,
    /// Oldest message kept, in milliseconds.
    pub max_age_ms: u64,
    /// Most bytes of messages kept in memory (payloads and their encoded frames).
    pub max_bytes: usize,
}

/// The users a durable message is kept for, and until when.
#[derive(Debug, Clone)]
pub struct DurableFor {
    /// User ids, each once.
    pub users: Vec<String>,
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_ms: u64,
}

/// A user's unread count after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadChange {
    /// App id.
    pub app: String,
    /// User id.
    pub user: String,
    /// Unacknowledged, unexpired durable messages.
    pub unread: u64,
}

/// What a sweep changed, and when the next one is due.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    /// Unread counts that dropped because messages expired.
    pub changes: Vec<UnreadChange>,
    /// The earliest expiry of an unread message left, milliseconds since the Unix epoch.
    pub next_expiry_ms: Option<u64>,
}

/// A durable message of one user.
#[derive(Debug, Clone, Serialize)]
pub struct UserMessage {
    /// Position in the app's sequence.
    #[serde(skip)]
    pub seq: u64,
    /// The SSE id.
    pub id: String,
    /// SSE event name.
    pub event: Option<String>,
    /// Payload text.
    pub data: String,
    /// Publish time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_ms: u64,
    /// When the user acknowledged it, if they did.
    pub read_ms: Option<u64>,
}

/// Which of a user's durable messages to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageQuery {
    /// Only unacknowledged ones.
    pub unread_only: bool,
    /// Page size.
    pub limit: usize,
    /// Only messages older than this sequence (the previous page's last).
    pub before: Option<u64>,
}

/// The outcome of an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Acked {
    /// Messages that changed from unread to read.
    pub acked: u64,
    /// Unread messages left.
    pub unread: u64,
}

/// Resolves when an append is on disk, with the unread counts it changed.
pub type Commit = BoxFuture<'static, Result<Vec<UnreadChange>, StoreError>>;

/// Why the store could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store file is held by another process.
    #[error("the store file `{0}` is locked by another process (is another herald running on it?)")]
    Locked(String),
    /// The store file is not a database, or is damaged.
    #[error("the store file `{0}` is corrupt or not a Herald database: {1}")]
    Corrupt(String, String),
    /// The disk is full.
    #[error("the store is full (its disk, or `store_max_bytes`): the message was not stored; free space and retry")]
    DiskFull,
    /// The writer has more queued than it accepts; retry shortly.
    #[error("the store is overloaded; retry shortly")]
    Overloaded,
    /// The store's server cannot be reached (the cluster's Redis); nothing was stored.
    #[error("the store is unreachable: {0}")]
    Unavailable(String),
    /// Any other failure of the storage engine.
    #[error("the store failed: {0}")]
    Failed(String),
}

/// Durable per-user messages: what a single node's store and the Redis cluster both answer.
pub trait Inbox: Send + Sync + 'static {
    /// Marks `user`'s messages `seqs` read; others' messages are left alone.
    fn ack(&self, app: &str, user: &str, seqs: Vec<u64>) -> BoxFuture<'static, Result<Acked, StoreError>>;

    /// Counts `user`'s unread, unexpired messages.
    fn unread(&self, app: &str, user: &str) -> BoxFuture<'static, Result<u64, StoreError>>;

    /// Counts the unread messages of all of `app`'s users (those expired but not yet swept
    /// included), for `herald_inbox_messages`; `None` from a store that cannot count without a
    /// scan (the cluster's Redis inbox keeps one hash per user).
    fn size(&self, app: &str) -> BoxFuture<'static, Result<Option<u64>, StoreError>> {
        let _ = app;
        futures_util::future::ready(Ok(None)).boxed()
    }

    /// `user`'s unread, unexpired messages up to sequence `up_to`, oldest first.
    fn pending(&self, app: &str, user: &str, up_to: u64) -> BoxFuture<'static, Result<Vec<UserMessage>, StoreError>>;

    /// One page of `user`'s messages, newest first.
    fn messages(
        &self,
        app: &str,
        user: &str,
        query: MessageQuery,
    ) -> BoxFuture<'static, Result<Vec<UserMessage>, StoreError>>;

    /// Drops expired durable messages and history past its bounds; returns the unread counts
    /// that changed, and when the next unread message expires (the hub sweeps again then, so a
    /// badge drops the moment its message expires).
    fn sweep(&self, now_ms: u64) -> BoxFuture<'static, Result<Swept, StoreError>>;
}

/// A single node's persistence: the inbox, plus history in the order the node sequences it.
/// (In a cluster, Redis sequences messages itself; see `cluster`.)
pub trait Store: Inbox {
    /// Opens (creating when new) the persisted state of `app`.
    fn open_app(&self, app: &str, limits: HistoryLimits) -> BoxFuture<'static, Result<Opened, StoreError>>;

    /// Enqueues `message` (and, when durable, its copies for `durable.users`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Overloaded`] when the queue is full; nothing was enqueued.
    fn append(&self, app: &str, message: Arc<Message>, durable: Option<DurableFor>) -> Result<Commit, StoreError>;

    /// Resolves once everything enqueued before it is on disk; called at shutdown.
    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>>;
}
