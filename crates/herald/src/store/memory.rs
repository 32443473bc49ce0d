//! The in-memory store: for tests and `--store memory`. Durable messages live as long as the
//! process; history is not persisted (the hub's own ring is all there is), so a restart starts
//! a new epoch and resuming clients are told to reset.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures_util::future::{ready, BoxFuture, FutureExt};
use parking_lot::Mutex;

use super::{
    Acked, Commit, DurableFor, HistoryLimits, Inbox, MessageQuery, Opened, Store, StoreError, Swept, UnreadChange,
    UserMessage,
};
use crate::message::{now_ms, Message};

struct Entry {
    message: Arc<Message>,
    expires_ms: u64,
    read_ms: Option<u64>,
}

impl Entry {
    fn view(&self) -> UserMessage {
        let m = &self.message;
        UserMessage {
            seq: m.seq,
            id: m.id.clone(),
            event: m.event.clone(),
            data: m.data.clone(),
            created_ms: m.time_ms,
            expires_ms: self.expires_ms,
            read_ms: self.read_ms,
        }
    }

    fn unread(&self, now: u64) -> bool {
        self.read_ms.is_none() && self.expires_ms > now
    }
}

type UserInbox = BTreeMap<u64, Entry>;

/// Durable messages in a map per (app, user).
#[derive(Default)]
pub struct MemoryStore {
    inboxes: Mutex<HashMap<(String, String), UserInbox>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn unread_of(inbox: Option<&UserInbox>, now: u64) -> u64 {
        inbox.map_or(0, |i| i.values().filter(|e| e.unread(now)).count() as u64)
    }
}

impl Store for MemoryStore {
    fn open_app(&self, _app: &str, _limits: HistoryLimits) -> BoxFuture<'static, Result<Opened, StoreError>> {
        ready(Ok(Opened { epoch: crate::id::random_token(6), ..Opened::default() })).boxed()
    }

    fn append(&self, app: &str, message: Arc<Message>, durable: Option<DurableFor>) -> Result<Commit, StoreError> {
        let Some(durable) = durable else { return Ok(ready(Ok(Vec::new())).boxed()) };
        let now = now_ms();
        let mut inboxes = self.inboxes.lock();
        let changes = durable
            .users
            .into_iter()
            .map(|user| {
                let inbox = inboxes.entry((app.to_string(), user.clone())).or_default();
                inbox.insert(
                    message.seq,
                    Entry { message: message.clone(), expires_ms: durable.expires_ms, read_ms: None },
                );
                UnreadChange { app: app.to_string(), user, unread: Self::unread_of(Some(inbox), now) }
            })
            .collect();
        Ok(ready(Ok(changes)).boxed())
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        ready(Ok(())).boxed()
    }
}

impl Inbox for MemoryStore {
    fn ack(&self, app: &str, user: &str, seqs: Vec<u64>) -> BoxFuture<'static, Result<Acked, StoreError>> {
        let now = now_ms();
        let mut inboxes = self.inboxes.lock();
        let inbox = inboxes.get_mut(&(app.to_string(), user.to_string()));
        let mut acked = 0;
        let unread = match inbox {
            Some(inbox) => {
                for seq in seqs {
                    if let Some(entry) = inbox.get_mut(&seq).filter(|e| e.unread(now)) {
                        entry.read_ms = Some(now);
                        acked += 1;
                    }
                }
                Self::unread_of(Some(inbox), now)
            }
            None => 0,
        };
        ready(Ok(Acked { acked, unread })).boxed()
    }

    fn unread(&self, app: &str, user: &str) -> BoxFuture<'static, Result<u64, StoreError>> {
        let inboxes = self.inboxes.lock();
        ready(Ok(Self::unread_of(inboxes.get(&(app.to_string(), user.to_string())), now_ms()))).boxed()
    }

    fn size(&self, app: &str) -> BoxFuture<'static, Result<Option<u64>, StoreError>> {
        let now = now_ms();
        let inboxes = self.inboxes.lock();
        let size =
            inboxes.iter().filter(|((a, _), _)| a == app).map(|(_, inbox)| Self::unread_of(Some(inbox), now)).sum();
        ready(Ok(Some(size))).boxed()
    }

    fn pending(&self, app: &str, user: &str, up_to: u64) -> BoxFuture<'static, Result<Vec<UserMessage>, StoreError>> {
        let now = now_ms();
        let inboxes = self.inboxes.lock();
        let list = inboxes
            .get(&(app.to_string(), user.to_string()))
            .map(|inbox| inbox.range(..=up_to).map(|(_, e)| e).filter(|e| e.unread(now)).map(Entry::view).collect())
            .unwrap_or_default();
        ready(Ok(list)).boxed()
    }

    fn messages(
        &self,
        app: &str,
        user: &str,
        query: MessageQuery,
    ) -> BoxFuture<'static, Result<Vec<UserMessage>, StoreError>> {
        let now = now_ms();
        let inboxes = self.inboxes.lock();
        let list = inboxes
            .get(&(app.to_string(), user.to_string()))
            .map(|inbox| {
                inbox
                    .range(..query.before.unwrap_or(u64::MAX))
                    .rev()
                    .map(|(_, e)| e)
                    .filter(|e| e.expires_ms > now && (!query.unread_only || e.read_ms.is_none()))
                    .take(query.limit)
                    .map(Entry::view)
                    .collect()
            })
            .unwrap_or_default();
        ready(Ok(list)).boxed()
    }

    fn sweep(&self, now_ms: u64) -> BoxFuture<'static, Result<Swept, StoreError>> {
        let mut changes = Vec::new();
        let mut inboxes = self.inboxes.lock();
        inboxes.retain(|(app, user), inbox| {
            let expired_unread = inbox.values().filter(|e| e.read_ms.is_none() && e.expires_ms <= now_ms).count();
            inbox.retain(|_, e| e.expires_ms > now_ms);
            if expired_unread > 0 {
                let unread = Self::unread_of(Some(inbox), now_ms);
                changes.push(UnreadChange { app: app.clone(), user: user.clone(), unread });
            }
            !inbox.is_empty()
        });
        let next_expiry_ms =
            inboxes.values().flat_map(|i| i.values()).filter(|e| e.read_ms.is_none()).map(|e| e.expires_ms).min();
        ready(Ok(Swept { changes, next_expiry_ms })).boxed()
    }
}
