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
/// Most unread counters the writer remembers; past this it forgets them all (and reads them
/// again as they are used).
const REMEMBERED: usize = 100_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS app (
    id TEXT PRIMARY KEY, epoch TEXT NOT NULL, head INTEGER NOT NULL, floor INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    app TEXT NOT NULL, seq INTEGER NOT NULL, time_ms INTEGER NOT NULL, targets TEXT NOT NULL,
    event TEXT, data TEXT NOT NULL, durable INTEGER NOT NULL, PRIMARY KEY (app, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox (
    app TEXT NOT NULL, user TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, event TEXT,
    data TEXT NOT NULL, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, read_ms INTEGER,
    PRIMARY KEY (app, user, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inbox_by_expiry ON inbox (read_ms IS NULL, expires_ms);
CREATE TABLE IF NOT EXISTS unread (
    app TEXT NOT NULL, user TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (app, user)
) WITHOUT ROWID;
";

/// The sweep's statements, each a range of `inbox_by_expiry` (see the test of their plans).
const EXPIRED_UNREAD: &str = "SELECT app, user FROM inbox WHERE (read_ms IS NULL) = 1 AND expires_ms <= ?1";
const DELETE_EXPIRED: &str = "DELETE FROM inbox WHERE (read_ms IS NULL) IN (0, 1) AND expires_ms <= ?1";
const EARLIEST_UNREAD: &str = "SELECT MIN(expires_ms) FROM inbox WHERE (read_ms IS NULL) = 1";

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
        let counters = Counters { no_expiry_before: earliest_unread_expiry(&conn), ..Counters::default() };
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
         PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864; \
         BEGIN IMMEDIATE; {SCHEMA} COMMIT;"
    ))
    .map_err(classify)?;
    migrate(&conn).map_err(classify)?;
    if let Some(max_bytes) = max_bytes {
        let page_size: u64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(classify)?;
        let pages = max_bytes.div_ceil(page_size.max(1));
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(())).map_err(classify)?;
    }
    Ok(conn)
}

/// Schema changes after the first release, each applied once; a file written by an older Herald
/// opens unchanged and gains the new columns (old rows read as before).
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 1 {
        // 1: Mercure's extras of a history message (custom id, private, retry), as JSON.
        let has: bool =
            conn.query_row("SELECT COUNT(*) FROM pragma_table_info('history') WHERE name = 'mercure'", [], |r| {
                r.get::<_, u32>(0).map(|n| n > 0)
            })?;
        if !has {
            conn.execute_batch("ALTER TABLE history ADD COLUMN mercure TEXT")?;
        }
        conn.execute_batch("PRAGMA user_version = 1")?;
    }
    if version < 2 {
        // 2: one index of the inbox by expiry (`inbox_by_expiry`, created with the schema)
        // instead of three, each a page write and a B-tree insert per durable message. The
        // counters leave out expired messages without the per-user one (see `Counters`).
        conn.execute_batch(
            "DROP INDEX IF EXISTS inbox_expiry; DROP INDEX IF EXISTS inbox_unread_expiry; \
             DROP INDEX IF EXISTS inbox_user_unread_expiry; PRAGMA user_version = 2",
        )?;
    }
    Ok(())
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

/// What the writer knows of the unread counters, so that counting a durable message in costs
/// one write rather than two reads and a write. It alone writes the file, so it can tell.
#[derive(Default)]
struct Counters {
    /// Stored counters by app and user, as written by the open transaction; forgotten when
    /// a transaction rolls back.
    stored: HashMap<String, HashMap<String, u64>>,
    /// No unread message expires before this (milliseconds since the Unix epoch): until then
    /// there are no expired messages to leave out of a count. A lower bound; 0 when unknown.
    no_expiry_before: u64,
}

/// The earliest expiry of an unread message, 0 when it cannot be read (so every count looks
/// for expired messages).
fn earliest_unread_expiry(conn: &Connection) -> u64 {
    conn.query_row(EARLIEST_UNREAD, [], |r| r.get::<_, Option<u64>>(0))
        .map_or(0, |earliest| earliest.unwrap_or(u64::MAX))
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
                self.counters =
                    Counters { no_expiry_before: earliest_unread_expiry(&self.conn), ..Counters::default() };
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
    inbox: CachedStatement<'t>,
    counter: CachedStatement<'t>,
}

impl<'t> Prepared<'t> {
    fn new(tx: &'t Transaction<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            history: tx.prepare_cached(
                "INSERT OR REPLACE INTO history (app, seq, time_ms, targets, event, data, durable, mercure) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?,
            inbox: tx.prepare_cached(
                "INSERT OR IGNORE INTO inbox (app, user, seq, id, event, data, created_ms, expires_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?,
            counter: tx.prepare_cached("INSERT OR REPLACE INTO unread (app, user, count) VALUES (?1, ?2, ?3)")?,
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
        Command::Ack { app, user, seqs, reply } => {
            answer(reply, ack(tx, counters, &mut prepared.counter, &app, &user, &seqs))
        }
        Command::Unread { app, user, reply } => {
            answer(reply, counters.unread(tx, &app, &user, now_ms()).map_err(failed))
        }
        Command::Size { app, reply } => answer(reply, size(tx, &app).map_err(failed)),
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
    let Some(durable) = durable else { return Ok(Vec::new()) };
    counters.no_expiry_before = counters.no_expiry_before.min(durable.expires_ms);
    let mut changes = Vec::with_capacity(durable.users.len());
    for user in durable.users {
        let inserted = prepared
            .inbox
            .execute(params![app, user, m.seq, m.id, m.event, m.data, m.time_ms, durable.expires_ms])
            .map_err(failed)?;
        let unread = counters.add(tx, &mut prepared.counter, app, &user, inserted as i64, m.time_ms).map_err(failed)?;
        changes.push(UnreadChange { app: app.to_string(), user, unread });
    }
    Ok(changes)
}

/// Every unread message of `app`, from the per-user counters.
fn size(tx: &Transaction<'_>, app: &str) -> rusqlite::Result<u64> {
    tx.prepare_cached("SELECT COALESCE(SUM(count), 0) FROM unread WHERE app = ?1")?
        .query_row(params![app], |r| r.get(0))
}

/// A user's unread count is kept as a counter so that it costs one lookup, not a scan of their
/// inbox. The counter still includes messages that expired since the last sweep; they are
/// counted in the user's inbox and subtracted, so the count is exact at every moment. The hub
/// sweeps as each message expires, so that count is rarely needed.
impl Counters {
    /// A user's unread count.
    fn unread(&mut self, tx: &Transaction<'_>, app: &str, user: &str, now: u64) -> rusqlite::Result<u64> {
        Ok(self.stored(tx, app, user)?.saturating_sub(self.expired(tx, app, user, now)?))
    }

    /// Adds `delta` (possibly negative) to a user's unread counter (`write` stores it) and
    /// returns the exact count.
    fn add(
        &mut self,
        tx: &Transaction<'_>,
        write: &mut CachedStatement<'_>,
        app: &str,
        user: &str,
        delta: i64,
        now: u64,
    ) -> rusqlite::Result<u64> {
        let counter = self.stored(tx, app, user)?.saturating_add_signed(delta);
        if delta != 0 {
            write.execute(params![app, user, counter])?;
            self.remember(app, user, counter);
        }
        Ok(counter.saturating_sub(self.expired(tx, app, user, now)?))
    }

    /// A user's counter as stored (with the expired messages not swept yet).
    fn stored(&mut self, tx: &Transaction<'_>, app: &str, user: &str) -> rusqlite::Result<u64> {
        if let Some(&counter) = self.stored.get(app).and_then(|users| users.get(user)) {
            return Ok(counter);
        }
        let counter = tx
            .prepare_cached("SELECT count FROM unread WHERE app = ?1 AND user = ?2")?
            .query_row(params![app, user], |r| r.get(0))
            .optional()?
            .unwrap_or_default();
        self.remember(app, user, counter);
        Ok(counter)
    }

    fn remember(&mut self, app: &str, user: &str, counter: u64) {
        if let Some(known) = self.stored.get_mut(app).and_then(|users| users.get_mut(user)) {
            *known = counter;
            return;
        }
        if self.stored.values().map(HashMap::len).sum::<usize>() >= REMEMBERED {
            self.stored.clear();
        }
        self.stored.entry(app.to_string()).or_default().insert(user.to_string(), counter);
    }

    /// A user's unread messages that expired but are not swept yet.
    fn expired(&self, tx: &Transaction<'_>, app: &str, user: &str, now: u64) -> rusqlite::Result<u64> {
        if now < self.no_expiry_before {
            return Ok(0);
        }
        tx.prepare_cached(
            "SELECT COUNT(*) FROM inbox WHERE app = ?1 AND user = ?2 AND read_ms IS NULL AND expires_ms <= ?3",
        )?
        .query_row(params![app, user, now], |r| r.get(0))
    }

    /// Counts a user's unread, unexpired messages afresh and stores the count.
    fn recount(&mut self, tx: &Transaction<'_>, app: &str, user: &str, now: u64) -> rusqlite::Result<u64> {
        let counter = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO unread (app, user, count) SELECT ?1, ?2, COUNT(*) FROM inbox \
                 WHERE app = ?1 AND user = ?2 AND read_ms IS NULL AND expires_ms > ?3 RETURNING count",
            )?
            .query_row(params![app, user, now], |r| r.get(0))?;
        self.remember(app, user, counter);
        Ok(counter)
    }
}

fn ack(
    tx: &Transaction<'_>,
    counters: &mut Counters,
    counter: &mut CachedStatement<'_>,
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
    // SQLite integers are i64: a larger sequence names no message (and must not fail the batch).
    for seq in seqs.iter().filter(|&&seq| seq <= i64::MAX as u64) {
        acked += update.execute(params![app, user, seq, now]).map_err(failed)? as u64;
    }
    let unread = match acked {
        0 => counters.unread(tx, app, user, now),
        n => counters.add(tx, counter, app, user, -(n as i64), now),
    };
    Ok(Acked { acked, unread: unread.map_err(failed)? })
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

const USER_MESSAGE_COLUMNS: &str = "seq, id, event, data, created_ms, expires_ms, read_ms";

fn pending(tx: &Transaction<'_>, app: &str, user: &str, up_to: u64) -> Result<Vec<UserMessage>, StoreError> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT {USER_MESSAGE_COLUMNS} FROM inbox WHERE app = ?1 AND user = ?2 AND seq <= ?3 \
             AND read_ms IS NULL AND expires_ms > ?4 ORDER BY seq"
        ))
        .map_err(failed)?;
    let rows = stmt.query_map(params![app, user, up_to, now_ms()], user_message).map_err(failed)?;
    rows.collect::<Result<_, _>>().map_err(failed)
}

fn messages(tx: &Transaction<'_>, app: &str, user: &str, q: MessageQuery) -> Result<Vec<UserMessage>, StoreError> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT {USER_MESSAGE_COLUMNS} FROM inbox WHERE app = ?1 AND user = ?2 AND seq < ?3 AND expires_ms > ?4 \
             AND (?5 = 0 OR read_ms IS NULL) ORDER BY seq DESC LIMIT ?6"
        ))
        .map_err(failed)?;
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
    let mut affected = tx
        .prepare(EXPIRED_UNREAD)
        .map_err(failed)?
        .query_map([now], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    affected.sort();
    affected.dedup();
    tx.execute(DELETE_EXPIRED, [now]).map_err(failed)?;
    for (app, l) in limits {
        let head: u64 = tx.query_row("SELECT head FROM app WHERE id = ?1", [app], |r| r.get(0)).map_err(failed)?;
        trim_history(tx, app, *l, head, now)?;
    }
    let changes = affected
        .into_iter()
        .map(|(app, user)| {
            let unread = counters.recount(tx, &app, &user, now).map_err(failed)?;
            Ok(UnreadChange { app, user, unread })
        })
        .collect::<Result<_, StoreError>>()?;
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

    #[tokio::test]
    async fn a_file_from_before_mercure_opens_and_keeps_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // The schema as the first release wrote it, with one message in history.
            let old = Connection::open(&path).unwrap();
            let schema = SCHEMA.to_string();
            old.execute_batch(&schema).unwrap();
            old.execute("INSERT INTO app (id, epoch, head, floor) VALUES ('a', 'ep', 1, 0)", []).unwrap();
            old.execute(
                "INSERT INTO history (app, seq, time_ms, targets, event, data, durable) \
                 VALUES ('a', 1, ?1, '{\"channels\":[\"c\"]}', NULL, 'old', 0)",
                [now_ms()],
            )
            .unwrap();
        }
        let limits = HistoryLimits { max_len: 10, max_age_ms: 60_000, max_bytes: usize::MAX };
        let store = SqliteStore::open(&path, StoreSync::Normal, None).unwrap();
        let opened = store.open_app("a", limits).await.unwrap();
        assert_eq!(opened.history.len(), 1);
        assert_eq!((opened.history[0].data.as_str(), opened.history[0].mercure.as_ref()), ("old", None));
        // New messages keep Mercure's extras next to the old ones.
        let extras = crate::message::MercureFields { id: Some("urn:x".into()), private: true, retry: None };
        let to = Targets { channels: vec!["c".into()], ..Targets::default() };
        let m = Message::with_mercure("ep", 2, now_ms(), to, None, "new".into(), false, Some(extras.clone()));
        store.append("a", Arc::new(m), None).unwrap().await.unwrap();
        drop(store);
        let store = SqliteStore::open(&path, StoreSync::Normal, None).unwrap();
        let opened = store.open_app("a", limits).await.unwrap();
        assert_eq!(opened.history[1].mercure.as_ref(), Some(&extras));
    }

    #[tokio::test]
    async fn a_version_1_file_opens_with_its_counts_and_without_expired_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let now = now_ms();
        {
            // Version 1, with its per-user expiry index; erin has one message kept and one
            // expired but not swept yet (her counter still holds both).
            let old = Connection::open(&path).unwrap();
            let schema = SCHEMA.replace(
                "CREATE INDEX IF NOT EXISTS inbox_by_expiry ON inbox (read_ms IS NULL, expires_ms);",
                "CREATE INDEX inbox_expiry ON inbox (expires_ms); \
                 CREATE INDEX inbox_unread_expiry ON inbox (expires_ms) WHERE read_ms IS NULL; \
                 CREATE INDEX inbox_user_unread_expiry ON inbox (app, user, expires_ms) WHERE read_ms IS NULL;",
            );
            old.execute_batch(&format!(
                "{schema} ALTER TABLE history ADD COLUMN mercure TEXT; PRAGMA user_version = 1;"
            ))
            .unwrap();
            old.execute("INSERT INTO app (id, epoch, head, floor) VALUES ('a', 'ep', 2, 0)", []).unwrap();
            for (seq, expires_ms) in [(1, now + 60_000), (2, now - 1)] {
                old.execute(
                    "INSERT INTO inbox (app, user, seq, id, data, created_ms, expires_ms) \
                     VALUES ('a', 'erin', ?1, 'ep-' || ?1 || '-d', 'x', ?2, ?3)",
                    params![seq, now - 10, expires_ms],
                )
                .unwrap();
            }
            old.execute("INSERT INTO unread (app, user, count) VALUES ('a', 'erin', 2)", []).unwrap();
        }
        let store = SqliteStore::open(&path, StoreSync::Normal, None).unwrap();
        let limits = HistoryLimits { max_len: 10, max_age_ms: 60_000, max_bytes: usize::MAX };
        assert_eq!(store.open_app("a", limits).await.unwrap().head, 2);
        assert_eq!(store.unread("a", "erin").await.unwrap(), 1, "the expired one is not counted");
        let to = Targets { users: vec!["erin".into()], ..Targets::default() };
        let message = Arc::new(Message::new("ep", 3, now, to, None, "y".into(), true));
        let durable = DurableFor { users: vec!["erin".into()], expires_ms: now + 60_000 };
        let changes = store.append("a", message, Some(durable)).unwrap().await.unwrap();
        assert_eq!(changes[0].unread, 2);
        let swept = store.sweep(now_ms()).await.unwrap();
        assert_eq!(swept.changes[0].unread, 2);
        assert_eq!(store.unread("a", "erin").await.unwrap(), 2);
        drop(store);
        let file = Connection::open(&path).unwrap();
        file.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        let indexes: String = file
            .query_row(
                "SELECT group_concat(name) FROM sqlite_master WHERE tbl_name = 'inbox' AND type = 'index'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, "inbox_by_expiry", "version 2 keeps one index of the inbox");
    }

    #[test]
    fn the_sweep_reads_only_the_expired_messages_through_the_expiry_index() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        for sql in [EXPIRED_UNREAD, DELETE_EXPIRED, EARLIEST_UNREAD] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {}", sql.replace("?1", "1")))
                .unwrap()
                .query_map([], |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(plan.len(), 1, "{sql}: {plan:?}");
            assert!(plan[0].starts_with("SEARCH inbox USING INDEX inbox_by_expiry ("), "{sql}: {plan:?}");
        }
    }
}
