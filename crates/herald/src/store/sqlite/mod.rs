//! The embedded default: one SQLite file in WAL mode, written by one thread.
//!
//! Every operation is a command on a bounded queue to the writer thread, which applies what is
//! queued in one transaction and answers everyone after the commit (group commit): a thousand
//! concurrent durable publishes cost one fsync, not a thousand. With `synchronous=NORMAL` a
//! committed message survives a killed process; `store_sync = "full"` also survives a power
//! loss. The log is copied into the file beside the writer ([`checkpoint`]), and the hub locks
//! the file (`<file>-lock`), so a second hub on the same file fails at start instead of forking
//! the sequence.

mod checkpoint;
mod counters;
mod schema;

use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};
use rusqlite::{params, CachedStatement, Connection, ErrorCode, OptionalExtension, Transaction};
use tokio::sync::oneshot;

use self::checkpoint::{Checkpointer, LOG_LIMIT};
use self::counters::{Counters, EARLIEST_UNREAD};
use super::{
    Acked, Commit, DurableFor, HistoryLimits, Inbox, MessageQuery, Opened, Store, StoreError, StoredMessage, Swept,
    UnreadChange, UserMessage,
};
use crate::config::StoreSync;
use crate::message::{now_ms, Message};

/// Commands queued beyond this make appends fail with [`StoreError::Overloaded`].
const QUEUE: usize = 65_536;
/// Most commands applied in one transaction.
const BATCH: usize = 4_096;
/// How long opening waits for the lock of a store that is closing.
const LOCK_WAIT: Duration = Duration::from_millis(500);
/// The sweep's statements, each a range of `inbox_by_expiry` (see the test of their plans).
const EXPIRED_UNREAD: &str = "SELECT app, user FROM inbox WHERE (read_ms IS NULL) = 1 AND expires_ms <= ?1";
const DELETE_EXPIRED: &str = "DELETE FROM inbox WHERE (read_ms IS NULL) IN (0, 1) AND expires_ms <= ?1";
/// The payloads of the messages the sweep deletes, all of whose inbox rows expire together.
const DELETE_EXPIRED_PAYLOADS: &str = "DELETE FROM durable WHERE (app, seq) IN \
     (SELECT app, seq FROM inbox WHERE (read_ms IS NULL) IN (0, 1) AND expires_ms <= ?1)";

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Command {
    Open { app: String, limits: HistoryLimits, reply: Reply<Opened> },
    Append { app: String, message: Arc<Message>, durable: Option<DurableFor>, reply: Reply<Vec<UnreadChange>> },
    Ack { app: String, user: String, seqs: Vec<u64>, reply: Reply<Acked> },
    Unread { app: String, user: String, reply: Reply<u64> },
    Size { app: String, reply: Reply<u64> },
    Pending { app: String, user: String, up_to: u64, reply: Reply<Vec<UserMessage>> },
    Messages { app: String, user: String, query: MessageQuery, reply: Reply<Vec<UserMessage>> },
    Sweep { now_ms: u64, reply: Reply<Swept> },
    Flush { reply: Reply<()> },
}

impl Command {
    /// Answers without running: the batch it was in failed.
    fn refuse(self, e: StoreError) {
        match self {
            Command::Open { reply, .. } => drop(reply.send(Err(e))),
            Command::Append { reply, .. } => drop(reply.send(Err(e))),
            Command::Sweep { reply, .. } => drop(reply.send(Err(e))),
            Command::Ack { reply, .. } => drop(reply.send(Err(e))),
            Command::Unread { reply, .. } | Command::Size { reply, .. } => drop(reply.send(Err(e))),
            Command::Pending { reply, .. } | Command::Messages { reply, .. } => drop(reply.send(Err(e))),
            Command::Flush { reply } => drop(reply.send(Err(e))),
        }
    }
}

/// A handle to the writer thread; cheap to share.
pub struct SqliteStore {
    tx: SyncSender<Command>,
}

impl SqliteStore {
    /// Opens (creating when missing) the store file and starts its writer thread.
    ///
    /// # Errors
    ///
    /// The file is locked by another process, corrupt, or cannot be created.
    pub fn open(path: &Path, sync: StoreSync, max_bytes: Option<u64>) -> Result<Self, StoreError> {
        Self::open_with_log_limit(path, sync, max_bytes, LOG_LIMIT)
    }

    /// [`SqliteStore::open`], restarting the log past `log_limit` frames.
    fn open_with_log_limit(
        path: &Path,
        sync: StoreSync,
        max_bytes: Option<u64>,
        log_limit: u64,
    ) -> Result<Self, StoreError> {
        let lock = lock(path)?;
        let conn = open_connection(path, sync, max_bytes)?;
        let checkpointer = Checkpointer::start(path, synchronous(sync), log_limit)?;
        let (tx, rx) = sync_channel(QUEUE);
        let path = path.to_path_buf();
        let counters = Counters::new(&conn);
        std::thread::Builder::new()
            .name("herald-store".into())
            .spawn(move || {
                Writer { conn, path, limits: HashMap::new(), counters, checkpointer, _lock: lock }.run(rx);
            })
            .map_err(|e| StoreError::Failed(e.to_string()))?;
        Ok(Self { tx })
    }

    /// Queues a command without waiting; the future resolves with the writer's answer.
    fn enqueue<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<BoxFuture<'static, Result<T, StoreError>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.try_send(make(reply)).map_err(|e| match e {
            TrySendError::Full(_) => StoreError::Overloaded,
            TrySendError::Disconnected(_) => writer_stopped(),
        })?;
        Ok(async move { rx.await.unwrap_or_else(|_| Err(writer_stopped())) }.boxed())
    }

    fn send<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        self.enqueue(make).unwrap_or_else(|e| futures_util::future::ready(Err(e)).boxed())
    }
}

fn writer_stopped() -> StoreError {
    StoreError::Failed("the store writer stopped".into())
}

/// Takes the hub's lock on the store file: a second hub on it would fork the sequence. An
/// advisory lock on a file of its own, since SQLite's own locks are per transaction (the
/// checkpointer needs a second connection) and closing any other descriptor of the database
/// file would drop them. Like SQLite's busy timeout, it waits a moment for a store that is
/// closing (its writer thread ends after the last handle is dropped).
fn lock(path: &Path) -> Result<File, StoreError> {
    let shown = path.display().to_string();
    let lock_path = format!("{shown}-lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Failed(format!("`{lock_path}`: {e}")))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(TryLockError::WouldBlock) => return Err(StoreError::Locked(shown)),
            Err(TryLockError::Error(e)) => return Err(StoreError::Failed(format!("`{lock_path}`: {e}"))),
        }
    }
}

fn synchronous(sync: StoreSync) -> &'static str {
    match sync {
        StoreSync::Normal => "NORMAL",
        StoreSync::Full => "FULL",
    }
}

fn open_connection(path: &Path, sync: StoreSync, max_bytes: Option<u64>) -> Result<Connection, StoreError> {
    let shown = path.display().to_string();
    let classify = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked(shown.clone()),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt(shown.clone(), e.to_string()),
        Some(ErrorCode::DiskFull) => StoreError::DiskFull,
        _ => StoreError::Failed(format!("`{shown}`: {e}")),
    };
    let conn = Connection::open(path).map_err(classify)?;
    let synchronous = synchronous(sync);
    // The busy timeout covers a restarting checkpoint (see `checkpoint`); the log is truncated
    // to 64 MiB when it starts over.
    conn.execute_batch(&format!(
        "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
         PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;"
    ))
    .map_err(classify)?;
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(classify)?;
    if version > schema::VERSION {
        return Err(StoreError::Failed(format!(
            "`{shown}` was written by a newer Herald (store schema version {version}; this one knows up to {})",
            schema::VERSION
        )));
    }
    schema::prepare(&conn).map_err(classify)?;
    if let Some(max_bytes) = max_bytes {
        let page_size: u64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(classify)?;
        let pages = max_bytes.div_ceil(page_size.max(1));
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(())).map_err(classify)?;
    }
    Ok(conn)
}

fn failed(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::DiskFull,
        _ => StoreError::Failed(e.to_string()),
    }
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    limits: HashMap<String, HistoryLimits>,
    counters: Counters,
    checkpointer: Checkpointer,
    /// Held for as long as the writer runs.
    _lock: File,
}

/// An answer that waits for the commit.
type Deferred = Box<dyn FnOnce(Option<&StoreError>) + Send>;

impl Writer {
    fn run(mut self, rx: Receiver<Command>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter().take(BATCH - 1));
            self.apply(batch);
        }
        tracing::debug!(path = %self.path.display(), "Store writer stopped.");
    }

    /// Applies a batch in one transaction, then answers every command.
    fn apply(&mut self, batch: Vec<Command>) {
        let mut answers: Vec<Deferred> = Vec::with_capacity(batch.len());
        let mut commands = batch.into_iter();
        let outcome = (|| {
            let tx = self.conn.transaction().map_err(failed)?;
            let mut prepared = Prepared::new(&tx).map_err(failed)?;
            let mut heads = HashMap::new();
            for command in commands.by_ref() {
                let state = (&mut self.limits, &mut self.counters, &mut prepared);
                let (answer, error) = execute(&tx, state, &mut heads, command);
                answers.push(answer);
                // SQLite rolls the whole transaction back on some errors (a full disk, an I/O
                // error): nothing of this batch is stored, so everyone in it hears that error, and
                // the rest must not run outside the transaction.
                if tx.is_autocommit() {
                    return Err(error.unwrap_or_else(|| StoreError::Failed("the transaction was rolled back".into())));
                }
            }
            drop(prepared);
            // One head update per app and batch, not one per message.
            for (app, head) in heads {
                tx.prepare_cached("UPDATE app SET head = MAX(head, ?2) WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![app, head]))
                    .map_err(failed)?;
            }
            tx.commit().map_err(failed)
        })();
        match &outcome {
            Ok(()) => self.checkpointer.committed(&self.conn),
            Err(e) => {
                tracing::error!(error = %e, "Store commit failed.");
                // What the rolled-back transaction wrote, or swept, is not in the file.
                self.counters = Counters::new(&self.conn);
            }
        }
        for answer in answers {
            answer(outcome.as_ref().err());
        }
        if let Err(e) = &outcome {
            // Those the rolled-back batch never reached share its fate.
            commands.for_each(|command| command.refuse(e.clone()));
        }
    }
}

/// The statements of every durable message, prepared once per transaction: looking each up in
/// the statement cache again for every message costs more than binding it.
struct Prepared<'t> {
    history: CachedStatement<'t>,
    payload: CachedStatement<'t>,
    inbox: CachedStatement<'t>,
}

impl<'t> Prepared<'t> {
    fn new(tx: &'t Transaction<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            history: tx.prepare_cached(
                "INSERT OR REPLACE INTO history (app, seq, time_ms, targets, event, data, durable, mercure) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?,
            payload: tx.prepare_cached(
                "INSERT OR IGNORE INTO durable (app, seq, id, event, data, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?,
            inbox: tx
                .prepare_cached("INSERT OR IGNORE INTO inbox (app, user, seq, expires_ms) VALUES (?1, ?2, ?3, ?4)")?,
        })
    }
}

/// What commands keep between them: history limits by app, the unread counters, the statements.
type State<'a, 't> = (&'a mut HashMap<String, HistoryLimits>, &'a mut Counters, &'a mut Prepared<'t>);

/// Runs one command inside the batch's transaction and returns how to answer it.
fn execute(
    tx: &Transaction<'_>,
    (limits, counters, prepared): State<'_, '_>,
    heads: &mut HashMap<String, u64>,
    command: Command,
) -> (Deferred, Option<StoreError>) {
    fn answer<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> (Deferred, Option<StoreError>) {
        let error = result.as_ref().err().cloned();
        let deferred: Deferred = Box::new(move |commit_error| {
            let _ = reply.send(match commit_error {
                Some(e) => Err(e.clone()),
                None => result,
            });
        });
        (deferred, error)
    }
    match command {
        Command::Open { app, limits: l, reply } => {
            limits.insert(app.clone(), l);
            answer(reply, open_app(tx, &app, l))
        }
        Command::Append { app, message, durable, reply } => {
            let head = heads.entry(app.clone()).or_default();
            *head = (*head).max(message.seq);
            answer(reply, append(tx, counters, prepared, &app, &message, durable))
        }
        Command::Ack { app, user, seqs, reply } => answer(reply, ack(tx, counters, &app, &user, &seqs)),
        Command::Unread { app, user, reply } => {
            answer(reply, counters.unread(tx, &app, &user, now_ms()).map_err(failed))
        }
        Command::Size { app, reply } => answer(reply, counters.app_total(tx, &app).map_err(failed)),
        Command::Pending { app, user, up_to, reply } => answer(reply, pending(tx, &app, &user, up_to)),
        Command::Messages { app, user, query, reply } => answer(reply, messages(tx, &app, &user, query)),
        Command::Sweep { now_ms, reply } => answer(reply, sweep(tx, limits, counters, now_ms)),
        // Answered after the commit of its batch, which holds everything queued before it.
        Command::Flush { reply } => answer(reply, Ok(())),
    }
}

fn open_app(tx: &Transaction<'_>, app: &str, limits: HistoryLimits) -> Result<Opened, StoreError> {
    let row = tx
        .query_row("SELECT epoch, head, floor FROM app WHERE id = ?1", [app], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?, r.get::<_, u64>(2)?))
        })
        .optional()
        .map_err(failed)?;
    let (epoch, head, floor) = match row {
        Some(row) => row,
        None => {
            let epoch = crate::id::random_token(6);
            tx.execute("INSERT INTO app (id, epoch, head, floor) VALUES (?1, ?2, 0, 0)", params![app, epoch])
                .map_err(failed)?;
            (epoch, 0, 0)
        }
    };
    trim_history(tx, app, limits, head, now_ms())?;
    let floor = floor.max(tx.query_row("SELECT floor FROM app WHERE id = ?1", [app], |r| r.get(0)).map_err(failed)?);
    let mut stmt = tx
        .prepare(
            "SELECT seq, time_ms, targets, event, data, durable, mercure FROM history WHERE app = ?1 AND seq > ?2 \
             ORDER BY seq",
        )
        .map_err(failed)?;
    let history = stmt
        .query_map(params![app, floor], |r| {
            Ok(StoredMessage {
                seq: r.get(0)?,
                time_ms: r.get(1)?,
                targets: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default(),
                event: r.get(3)?,
                data: r.get(4)?,
                durable: r.get(5)?,
                mercure: r.get::<_, Option<String>>(6)?.and_then(|j| serde_json::from_str(&j).ok()),
            })
        })
        .map_err(failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    Ok(Opened { epoch, head, floor, history })
}

/// Drops history past its bounds and records the new floor.
fn trim_history(tx: &Transaction<'_>, app: &str, limits: HistoryLimits, head: u64, now: u64) -> Result<(), StoreError> {
    let by_count = head.saturating_sub(limits.max_len as u64);
    let by_age: u64 = tx
        .query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM history WHERE app = ?1 AND time_ms < ?2",
            params![app, now.saturating_sub(limits.max_age_ms)],
            |r| r.get(0),
        )
        .map_err(failed)?;
    let floor = by_count.max(by_age);
    tx.execute("DELETE FROM history WHERE app = ?1 AND seq <= ?2", params![app, floor]).map_err(failed)?;
    tx.execute("UPDATE app SET floor = MAX(floor, ?2) WHERE id = ?1", params![app, floor]).map_err(failed)?;
    Ok(())
}

fn append(
    tx: &Transaction<'_>,
    counters: &mut Counters,
    prepared: &mut Prepared<'_>,
    app: &str,
    m: &Message,
    durable: Option<DurableFor>,
) -> Result<Vec<UnreadChange>, StoreError> {
    let targets = serde_json::to_string(&m.targets).map_err(|e| StoreError::Failed(e.to_string()))?;
    let mercure = m.mercure.as_ref().and_then(|x| serde_json::to_string(x).ok());
    prepared
        .history
        .execute(params![app, m.seq, m.time_ms, targets, m.event, m.data, m.durable, mercure])
        .map_err(failed)?;
    let Some(durable) = durable.filter(|d| !d.users.is_empty()) else { return Ok(Vec::new()) };
    counters.no_expiry_before = counters.no_expiry_before.min(durable.expires_ms);
    prepared.payload.execute(params![app, m.seq, m.id, m.event, m.data, m.time_ms]).map_err(failed)?;
    let mut changes = Vec::with_capacity(durable.users.len());
    for user in durable.users {
        let inbox = &mut prepared.inbox;
        let unread = counters
            .change(tx, app, &user, m.time_ms, || {
                inbox.execute(params![app, user, m.seq, durable.expires_ms]).map(|inserted| inserted as i64)
            })
            .map_err(failed)?;
        changes.push(UnreadChange { app: app.to_string(), user, unread });
    }
    Ok(changes)
}

fn ack(
    tx: &Transaction<'_>,
    counters: &mut Counters,
    app: &str,
    user: &str,
    seqs: &[u64],
) -> Result<Acked, StoreError> {
    let now = now_ms();
    let mut update = tx
        .prepare_cached(
            "UPDATE inbox SET read_ms = ?4 WHERE app = ?1 AND user = ?2 AND seq = ?3 AND read_ms IS NULL AND expires_ms > ?4",
        )
        .map_err(failed)?;
    let mut acked = 0;
    let unread = counters
        .change(tx, app, user, now, || {
            // SQLite integers are i64: a larger sequence names no message (and must not fail
            // the batch).
            for seq in seqs.iter().filter(|&&seq| seq <= i64::MAX as u64) {
                acked += update.execute(params![app, user, seq, now])? as u64;
            }
            Ok(-(acked as i64))
        })
        .map_err(failed)?;
    Ok(Acked { acked, unread })
}

fn user_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserMessage> {
    Ok(UserMessage {
        seq: r.get(0)?,
        id: r.get(1)?,
        event: r.get(2)?,
        data: r.get(3)?,
        created_ms: r.get(4)?,
        expires_ms: r.get(5)?,
        read_ms: r.get(6)?,
    })
}

/// A user's messages: their inbox rows (`i`), each with its payload (`d`).
macro_rules! user_messages {
    ($where:literal) => {
        concat!(
            "SELECT i.seq, d.id, d.event, d.data, d.created_ms, i.expires_ms, i.read_ms ",
            "FROM inbox i JOIN durable d ON d.app = i.app AND d.seq = i.seq ",
            $where
        )
    };
}
/// Unread, unexpired, up to a sequence, oldest first.
const PENDING: &str = user_messages!(
    "WHERE i.app = ?1 AND i.user = ?2 AND i.seq <= ?3 AND i.read_ms IS NULL AND i.expires_ms > ?4 ORDER BY i.seq"
);
/// One page, newest first.
const MESSAGES: &str = user_messages!(
    "WHERE i.app = ?1 AND i.user = ?2 AND i.seq < ?3 AND i.expires_ms > ?4 AND (?5 = 0 OR i.read_ms IS NULL) \
     ORDER BY i.seq DESC LIMIT ?6"
);

fn pending(tx: &Transaction<'_>, app: &str, user: &str, up_to: u64) -> Result<Vec<UserMessage>, StoreError> {
    let mut stmt = tx.prepare_cached(PENDING).map_err(failed)?;
    let rows = stmt.query_map(params![app, user, up_to, now_ms()], user_message).map_err(failed)?;
    rows.collect::<Result<_, _>>().map_err(failed)
}

fn messages(tx: &Transaction<'_>, app: &str, user: &str, q: MessageQuery) -> Result<Vec<UserMessage>, StoreError> {
    let mut stmt = tx.prepare_cached(MESSAGES).map_err(failed)?;
    let before = q.before.unwrap_or(u64::MAX).min(i64::MAX as u64);
    let rows = stmt
        .query_map(params![app, user, before, now_ms(), q.unread_only, q.limit as u64], user_message)
        .map_err(failed)?;
    rows.collect::<Result<_, _>>().map_err(failed)
}

fn sweep(
    tx: &Transaction<'_>,
    limits: &HashMap<String, HistoryLimits>,
    counters: &mut Counters,
    now: u64,
) -> Result<Swept, StoreError> {
    // Not `DISTINCT`: SQLite would then walk every message in (app, user) order instead of the
    // expired ones by expiry.
    let expired = tx
        .prepare(EXPIRED_UNREAD)
        .map_err(failed)?
        .query_map([now], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    tx.execute(DELETE_EXPIRED_PAYLOADS, [now]).map_err(failed)?;
    tx.execute(DELETE_EXPIRED, [now]).map_err(failed)?;
    for (app, l) in limits {
        let head: u64 = tx.query_row("SELECT head FROM app WHERE id = ?1", [app], |r| r.get(0)).map_err(failed)?;
        trim_history(tx, app, *l, head, now)?;
    }
    let changes = counters
        .swept(tx, expired)
        .map_err(failed)?
        .into_iter()
        .map(|(app, user, unread)| UnreadChange { app, user, unread })
        .collect();
    let next_expiry_ms: Option<u64> = tx.query_row(EARLIEST_UNREAD, [], |r| r.get(0)).map_err(failed)?;
    counters.no_expiry_before = next_expiry_ms.unwrap_or(u64::MAX);
    Ok(Swept { changes, next_expiry_ms })
}

impl Store for SqliteStore {
    fn open_app(&self, app: &str, limits: HistoryLimits) -> BoxFuture<'static, Result<Opened, StoreError>> {
        let app = app.to_string();
        self.send(|reply| Command::Open { app, limits, reply })
    }

    fn append(&self, app: &str, message: Arc<Message>, durable: Option<DurableFor>) -> Result<Commit, StoreError> {
        let app = app.to_string();
        self.enqueue(|reply| Command::Append { app, message, durable, reply })
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.send(|reply| Command::Flush { reply })
    }
}

impl Inbox for SqliteStore {
    fn ack(&self, app: &str, user: &str, seqs: Vec<u64>) -> BoxFuture<'static, Result<Acked, StoreError>> {
        let (app, user) = (app.to_string(), user.to_string());
        self.send(|reply| Command::Ack { app, user, seqs, reply })
    }

    fn unread(&self, app: &str, user: &str) -> BoxFuture<'static, Result<u64, StoreError>> {
        let (app, user) = (app.to_string(), user.to_string());
        self.send(|reply| Command::Unread { app, user, reply })
    }

    fn size(&self, app: &str) -> BoxFuture<'static, Result<Option<u64>, StoreError>> {
        let app = app.to_string();
        self.send(|reply| Command::Size { app, reply }).map(|r| r.map(Some)).boxed()
    }

    fn pending(&self, app: &str, user: &str, up_to: u64) -> BoxFuture<'static, Result<Vec<UserMessage>, StoreError>> {
        let (app, user) = (app.to_string(), user.to_string());
        self.send(|reply| Command::Pending { app, user, up_to, reply })
    }

    fn messages(
        &self,
        app: &str,
        user: &str,
        query: MessageQuery,
    ) -> BoxFuture<'static, Result<Vec<UserMessage>, StoreError>> {
        let (app, user) = (app.to_string(), user.to_string());
        self.send(|reply| Command::Messages { app, user, query, reply })
    }

    fn sweep(&self, now_ms: u64) -> BoxFuture<'static, Result<Swept, StoreError>> {
        self.send(|reply| Command::Sweep { now_ms, reply })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Targets;

    #[tokio::test]
    async fn the_unread_count_leaves_out_what_expired_before_any_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("h.db"), StoreSync::Normal, None).unwrap();
        let limits = HistoryLimits { max_len: 10, max_age_ms: 60_000, max_bytes: usize::MAX };
        store.open_app("a", limits).await.unwrap();
        let now = now_ms();
        for (seq, expires_ms) in [(1, now + 60_000), (2, now.saturating_sub(1))] {
            let to = Targets { users: vec!["u".into()], ..Targets::default() };
            let message = Arc::new(Message::new("ep", seq, now, to, None, "x".into(), true));
            let durable = DurableFor { users: vec!["u".into()], expires_ms };
            let changes = store.append("a", message, Some(durable)).unwrap().await.unwrap();
            assert_eq!(changes[0].unread, 1, "message {seq}: the expired one is not counted");
        }
        assert_eq!(store.unread("a", "u").await.unwrap(), 1);
        let swept = store.sweep(now_ms()).await.unwrap();
        assert_eq!(swept.next_expiry_ms, Some(now + 60_000));
    }

    #[tokio::test]
    async fn a_second_store_on_the_same_file_is_refused_until_the_first_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let first = SqliteStore::open(&path, StoreSync::Normal, None).unwrap();
        first.flush().await.unwrap();
        let second = SqliteStore::open(&path, StoreSync::Normal, None);
        assert!(matches!(second, Err(StoreError::Locked(ref p)) if *p == path.display().to_string()));
        drop(first);
        // The writer lets go of the lock once its queue is closed and its thread has ended.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while let Err(StoreError::Locked(_)) = SqliteStore::open(&path, StoreSync::Normal, None) {
            assert!(std::time::Instant::now() < deadline, "the lock outlived the store");
            tokio::task::yield_now().await;
        }
    }

    /// The writer never waits for a checkpoint, so the log cannot rely on SQLite's automatic
    /// one; this keeps the writer busy from four publishers and checks that the log starts
    /// over (its header counts restarts).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_starts_over_while_the_writer_never_rests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let store = Arc::new(SqliteStore::open_with_log_limit(&path, StoreSync::Normal, None, 64).unwrap());
        let limits = HistoryLimits { max_len: 1_000_000, max_age_ms: 3_600_000, max_bytes: usize::MAX };
        store.open_app("a", limits).await.unwrap();
        let wal = std::path::PathBuf::from(format!("{}-wal", path.display()));
        let restarts = || std::fs::read(&wal).map_or(0, |h| u32::from_be_bytes([h[12], h[13], h[14], h[15]]));
        let before = restarts();
        let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let publishers = (0..4).map(|p| {
            let (store, seq, wal) = (store.clone(), seq.clone(), wal.clone());
            tokio::spawn(async move {
                let mut largest = 0;
                for i in 0..4_000 {
                    let seq = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    let user = format!("user-{p}-{}", i % 500);
                    let to = Targets { users: vec![user.clone()], ..Targets::default() };
                    let m = Message::new("ep", seq, now_ms(), to, None, "x".repeat(200), true);
                    let durable = DurableFor { users: vec![user], expires_ms: now_ms() + 60_000 };
                    store.append("a", Arc::new(m), Some(durable)).unwrap().await.unwrap();
                    largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
                }
                largest
            })
        });
        let largest = futures_util::future::join_all(publishers).await.into_iter().map(Result::unwrap).max();
        // Without the writer's restarts the log never started over here (0 restarts, 368 MB);
        // how large it grows between two depends on how fast the disk syncs, so only the
        // restarts are asserted.
        let (largest, restarts) = (largest.unwrap(), restarts() - before);
        eprintln!("log: largest {largest} bytes, {restarts} restarts");
        assert!(restarts >= 2, "the log started over {restarts} times (it grew to {largest} bytes)");
        assert_eq!(store.unread("a", "user-3-499").await.unwrap(), 8);
    }

    /// The tables as the first release (version 0) wrote them.
    const FIRST_RELEASE: &str = "
        CREATE TABLE app (id TEXT PRIMARY KEY, epoch TEXT NOT NULL, head INTEGER NOT NULL, floor INTEGER NOT NULL);
        CREATE TABLE history (
            app TEXT NOT NULL, seq INTEGER NOT NULL, time_ms INTEGER NOT NULL, targets TEXT NOT NULL,
            event TEXT, data TEXT NOT NULL, durable INTEGER NOT NULL, PRIMARY KEY (app, seq)
        ) WITHOUT ROWID;
        CREATE TABLE inbox (
            app TEXT NOT NULL, user TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, event TEXT,
            data TEXT NOT NULL, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, read_ms INTEGER,
            PRIMARY KEY (app, user, seq)
        ) WITHOUT ROWID;
        CREATE INDEX inbox_expiry ON inbox (expires_ms);
        CREATE INDEX inbox_unread_expiry ON inbox (expires_ms) WHERE read_ms IS NULL;
        CREATE INDEX inbox_user_unread_expiry ON inbox (app, user, expires_ms) WHERE read_ms IS NULL;
        CREATE TABLE unread (
            app TEXT NOT NULL, user TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (app, user)
        ) WITHOUT ROWID;";

    /// Version 1 added Mercure's extras; version 2 swapped the inbox's indexes for one.
    fn older_schema(version: u32) -> String {
        let mut schema = FIRST_RELEASE.to_string();
        if version >= 1 {
            schema += "ALTER TABLE history ADD COLUMN mercure TEXT;";
        }
        if version >= 2 {
            schema += "DROP INDEX inbox_expiry; DROP INDEX inbox_unread_expiry; DROP INDEX inbox_user_unread_expiry; \
                       CREATE INDEX inbox_by_expiry ON inbox (read_ms IS NULL, expires_ms);";
        }
        schema + &format!("PRAGMA user_version = {version};")
    }

    fn limits() -> HistoryLimits {
        HistoryLimits { max_len: 10, max_age_ms: 60_000, max_bytes: usize::MAX }
    }

    fn durable_message(seq: u64, users: &[&str], data: &str, expires_ms: u64) -> (Arc<Message>, DurableFor) {
        let users: Vec<String> = users.iter().map(|u| u.to_string()).collect();
        let to = Targets { users: users.clone(), ..Targets::default() };
        (Arc::new(Message::new("ep", seq, now_ms(), to, None, data.into(), true)), DurableFor { users, expires_ms })
    }

    /// Reads the file beside the running store.
    fn peek(path: &Path, sql: &str) -> String {
        let file = Connection::open(path).unwrap();
        file.busy_timeout(Duration::from_secs(10)).unwrap();
        file.query_row(sql, [], |r| r.get::<_, Option<String>>(0)).unwrap().unwrap_or_default()
    }

    #[tokio::test]
    async fn a_file_from_before_mercure_opens_and_keeps_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(&older_schema(0)).unwrap();
            old.execute("INSERT INTO app (id, epoch, head, floor) VALUES ('a', 'ep', 1, 0)", []).unwrap();
            old.execute(
                "INSERT INTO history (app, seq, time_ms, targets, event, data, durable) \
                 VALUES ('a', 1, ?1, '{\"channels\":[\"c\"]}', NULL, 'old', 0)",
                [now_ms()],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path, StoreSync::Normal, None).unwrap();
        let opened = store.open_app("a", limits()).await.unwrap();
        assert_eq!(opened.history.len(), 1);
        assert_eq!((opened.history[0].data.as_str(), opened.history[0].mercure.as_ref()), ("old", None));
        // New messages keep Mercure's extras next to the old ones.
        let extras = crate::message::MercureFields { id: Some("urn:x".into()), private: true, retry: None };
        let to = Targets { channels: vec!["c".into()], ..Targets::default() };
        let m = Message::with_mercure("ep", 2, now_ms(), to, None, "new".into(), false, Some(extras.clone()));
        store.append("a", Arc::new(m), None).unwrap().await.unwrap();
        drop(store);
        let store = SqliteStore::open(&path, StoreSync::Normal, None).unwrap();
        let opened = store.open_app("a", limits()).await.unwrap();
        assert_eq!(opened.history[1].mercure.as_ref(), Some(&extras));
    }

    #[tokio::test]
    async fn older_files_open_with_their_messages_and_counts_and_without_expired_ones() {
        for version in [0, 1, 2] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("old.db");
            let now = now_ms();
            {
                // Erin has one message kept, one read and one expired but not swept yet (her
                // stored counter holds the unread two); frank shares the first.
                let old = Connection::open(&path).unwrap();
                old.execute_batch(&older_schema(version)).unwrap();
                old.execute("INSERT INTO app (id, epoch, head, floor) VALUES ('a', 'ep', 3, 0)", []).unwrap();
                for (user, seq, expires_ms, read_ms) in [
                    ("erin", 1, now + 60_000, None),
                    ("frank", 1, now + 60_000, None),
                    ("erin", 2, now + 60_000, Some(now - 5)),
                    ("erin", 3, now - 1, None),
                ] {
                    old.execute(
                        "INSERT INTO inbox (app, user, seq, id, data, created_ms, expires_ms, read_ms) \
                         VALUES ('a', ?1, ?2, 'ep-' || ?2 || '-d', 'x' || ?2, ?3, ?4, ?5)",
                        params![user, seq, now - 10, expires_ms, read_ms],
                    )
                    .unwrap();
                }
                old.execute("INSERT INTO unread (app, user, count) VALUES ('a', 'erin', 2), ('a', 'frank', 1)", [])
                    .unwrap();
            }
            let store = SqliteStore::open(&path, StoreSync::Normal, None).unwrap();
            assert_eq!(store.open_app("a", limits()).await.unwrap().head, 3);
            assert_eq!(
                store.unread("a", "erin").await.unwrap(),
                1,
                "version {version}: the expired one is not counted"
            );
            assert_eq!(store.unread("a", "frank").await.unwrap(), 1, "version {version}");
            let pending = store.pending("a", "erin", 10).await.unwrap();
            let pending: Vec<_> = pending.iter().map(|m| (m.seq, m.id.as_str(), m.data.as_str())).collect();
            assert_eq!(pending, [(1, "ep-1-d", "x1")], "version {version}");
            let all = store.messages("a", "erin", MessageQuery { before: None, limit: 10, unread_only: false });
            let all: Vec<_> = all.await.unwrap().iter().map(|m| (m.seq, m.read_ms)).collect();
            assert_eq!(
                all,
                [(2, Some(now - 5)), (1, None)],
                "version {version}: newest first, the expired one left out"
            );
            let (message, durable) = durable_message(4, &["erin"], "y", now + 60_000);
            let changes = store.append("a", message, Some(durable)).unwrap().await.unwrap();
            assert_eq!(changes[0].unread, 2, "version {version}");
            let swept = store.sweep(now_ms()).await.unwrap();
            assert_eq!(swept.changes, [UnreadChange { app: "a".into(), user: "erin".into(), unread: 2 }]);
            assert_eq!(store.size("a").await.unwrap(), Some(3), "version {version}: erin's two and frank's one");
            drop(store);
            let indexes =
                peek(&path, "SELECT group_concat(name) FROM sqlite_master WHERE tbl_name = 'inbox' AND type = 'index'");
            assert_eq!(indexes, "inbox_by_expiry", "version {version}: one index of the inbox");
            let tables = peek(&path, "SELECT group_concat(name) FROM sqlite_master WHERE type = 'table' ORDER BY name");
            assert!(!tables.split(',').any(|t| t == "unread"), "version {version}: counters are not stored ({tables})");
            let payloads = peek(&path, "SELECT group_concat(seq || ':' || data) FROM durable ORDER BY seq");
            assert_eq!(payloads, "1:x1,2:x2,4:y", "version {version}: one payload per message, the swept one gone");
        }
    }

    #[test]
    fn a_file_from_a_newer_herald_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE later (x); PRAGMA user_version = 99").unwrap();
        let Err(StoreError::Failed(e)) = SqliteStore::open(&path, StoreSync::Normal, None) else { panic!("opened") };
        assert!(e.contains("newer Herald (store schema version 99"), "{e}");
        assert_eq!(peek(&path, "SELECT group_concat(name) FROM sqlite_master"), "later");
    }

    #[tokio::test]
    async fn a_payload_is_stored_once_for_all_its_users_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let store = SqliteStore::open(&path, StoreSync::Normal, None).unwrap();
        store.open_app("a", limits()).await.unwrap();
        let now = now_ms();
        for (seq, expires_ms) in [(1, now + 60_000), (2, now - 1)] {
            let (message, durable) = durable_message(seq, &["u", "v", "w"], &format!("m{seq}"), expires_ms);
            store.append("a", message, Some(durable)).unwrap().await.unwrap();
        }
        assert_eq!(peek(&path, "SELECT group_concat(seq) FROM durable"), "1,2");
        assert_eq!(peek(&path, "SELECT COUNT(*) || '' FROM inbox"), "6");
        store.sweep(now_ms()).await.unwrap();
        assert_eq!(peek(&path, "SELECT group_concat(seq) FROM durable"), "1");
        for user in ["u", "v", "w"] {
            let pending = store.pending("a", user, 10).await.unwrap();
            assert_eq!(pending.iter().map(|m| m.data.as_str()).collect::<Vec<_>>(), ["m1"], "{user}");
        }
    }

    #[tokio::test]
    async fn counts_follow_appends_acks_and_sweeps_and_are_counted_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let store = SqliteStore::open(&path, StoreSync::Normal, None).unwrap();
        store.open_app("a", limits()).await.unwrap();
        let now = now_ms();
        // Counted before anything is written, so the app's total is kept from here on.
        assert_eq!(store.size("a").await.unwrap(), Some(0));
        let mut unread = Vec::new();
        for (seq, users, expires_ms) in
            [(1, &["u", "v"][..], now + 60_000), (2, &["u"][..], now + 60_000), (3, &["u"][..], now - 1)]
        {
            let (message, durable) = durable_message(seq, users, "x", expires_ms);
            let changes = store.append("a", message, Some(durable)).unwrap().await.unwrap();
            unread.extend(changes.into_iter().map(|c| (c.user, c.unread)));
        }
        let expected = [("u", 1), ("v", 1), ("u", 2), ("u", 2)].map(|(u, n)| (u.to_string(), n));
        assert_eq!(unread, expected, "the expired message is left out of the count it returns");
        assert_eq!(store.size("a").await.unwrap(), Some(4), "expired but not swept yet is included");
        let acked = store.ack("a", "u", vec![1, 1, 99]).await.unwrap();
        assert_eq!((acked.acked, acked.unread), (1, 1));
        assert_eq!(store.size("a").await.unwrap(), Some(3));
        let swept = store.sweep(now_ms()).await.unwrap();
        assert_eq!(swept.changes, [UnreadChange { app: "a".into(), user: "u".into(), unread: 1 }]);
        assert_eq!(store.size("a").await.unwrap(), Some(2));
        drop(store);
        let store = SqliteStore::open(&path, StoreSync::Normal, None).unwrap();
        store.open_app("a", limits()).await.unwrap();
        assert_eq!((store.unread("a", "u").await.unwrap(), store.unread("a", "v").await.unwrap()), (1, 1));
        assert_eq!(store.size("a").await.unwrap(), Some(2));
        let (message, durable) = durable_message(4, &["v"], "x", now + 60_000);
        let changes = store.append("a", message, Some(durable)).unwrap().await.unwrap();
        assert_eq!(changes[0].unread, 2, "counted from the inbox, then followed");
    }

    fn plan(conn: &Connection, sql: &str) -> Vec<String> {
        let bound = (1..=6).fold(sql.to_string(), |sql, n| sql.replace(&format!("?{n}"), "1"));
        conn.prepare(&format!("EXPLAIN QUERY PLAN {bound}"))
            .unwrap()
            .query_map([], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn the_sweep_reads_only_the_expired_messages_through_the_expiry_index() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(schema::SCHEMA).unwrap();
        for sql in [EXPIRED_UNREAD, DELETE_EXPIRED, EARLIEST_UNREAD] {
            let plan = plan(&conn, sql);
            assert_eq!(plan.len(), 1, "{sql}: {plan:?}");
            assert!(plan[0].starts_with("SEARCH inbox USING INDEX inbox_by_expiry ("), "{sql}: {plan:?}");
        }
        let plan = plan(&conn, DELETE_EXPIRED_PAYLOADS);
        assert!(plan[0].starts_with("SEARCH durable USING PRIMARY KEY (app=? AND seq=?)"), "{plan:?}");
        assert!(plan.iter().any(|step| step.starts_with("SEARCH inbox USING INDEX inbox_by_expiry (")), "{plan:?}");
        assert!(!plan.iter().any(|step| step.starts_with("SCAN")), "{plan:?}");
    }

    #[test]
    fn a_users_messages_are_read_by_user_with_each_payload_by_key() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(schema::SCHEMA).unwrap();
        for sql in [PENDING, MESSAGES] {
            let plan = plan(&conn, sql);
            assert_eq!(plan.len(), 2, "{sql}: {plan:?}");
            assert!(plan[0].starts_with("SEARCH i USING PRIMARY KEY (app=? AND user=? AND seq<"), "{sql}: {plan:?}");
            assert_eq!(plan[1], "SEARCH d USING PRIMARY KEY (app=? AND seq=?)", "{sql}: {plan:?}");
        }
    }
}
