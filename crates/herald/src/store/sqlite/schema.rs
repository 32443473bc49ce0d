//! The store file's tables, and the changes that bring a file written by an older Herald up to
//! them.
//!
//! A durable message is one row of `durable` (its payload, once, however many users it is for)
//! and one small row per user in `inbox`. Both are keyed for what reads them: `durable` by
//! sequence, so that appends fill its pages in order, and `inbox` by user. A commit rewrites
//! every page it touches, and the inbox's pages are the ones a batch of messages to random
//! users scatters over: the smaller its rows, the fewer there are. Unread counts are not
//! stored; the writer counts a user's inbox once and keeps the count (`Counters`).

use rusqlite::Connection;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS app (
    id TEXT PRIMARY KEY, epoch TEXT NOT NULL, head INTEGER NOT NULL, floor INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    app TEXT NOT NULL, seq INTEGER NOT NULL, time_ms INTEGER NOT NULL, targets TEXT NOT NULL,
    event TEXT, data TEXT NOT NULL, durable INTEGER NOT NULL, mercure TEXT, PRIMARY KEY (app, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS durable (
    app TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, event TEXT, data TEXT NOT NULL,
    created_ms INTEGER NOT NULL, PRIMARY KEY (app, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox (
    app TEXT NOT NULL, user TEXT NOT NULL, seq INTEGER NOT NULL, expires_ms INTEGER NOT NULL, read_ms INTEGER,
    PRIMARY KEY (app, user, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inbox_by_expiry ON inbox (read_ms IS NULL, expires_ms);
";

/// The schema's version, in `PRAGMA user_version`.
pub(super) const VERSION: u32 = 3;

/// Applies the schema changes after the first release to a file written by an older Herald,
/// each once, then creates the tables the file lacks: it opens with its messages and counts.
pub(super) fn prepare(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let prepared = (|| {
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let fresh: bool =
            conn.query_row("SELECT COUNT(*) = 0 FROM sqlite_master WHERE name = 'app'", [], |r| r.get(0))?;
        if !fresh {
            migrate(conn, version)?;
        }
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(&format!("PRAGMA user_version = {VERSION}"))
    })();
    match prepared {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn migrate(conn: &Connection, version: u32) -> rusqlite::Result<()> {
    if version < 1 {
        // 1: Mercure's extras of a history message (custom id, private, retry), as JSON.
        let has: bool =
            conn.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('history') WHERE name = 'mercure'", [], |r| {
                r.get(0)
            })?;
        if !has {
            conn.execute_batch("ALTER TABLE history ADD COLUMN mercure TEXT")?;
        }
    }
    if version < 3 {
        // 2 dropped the inbox's three indexes for one by expiry; 3 moves the payload out of
        // the inbox into `durable` (once per message) and drops the stored counters. The old
        // inbox steps aside without its indexes (the schema reuses one of their names), the
        // schema creates the new tables, and what is kept is copied from the old inbox.
        conn.execute_batch(
            "DROP INDEX IF EXISTS inbox_expiry; DROP INDEX IF EXISTS inbox_unread_expiry;
             DROP INDEX IF EXISTS inbox_user_unread_expiry; DROP INDEX IF EXISTS inbox_by_expiry;
             ALTER TABLE inbox RENAME TO inbox_v2;",
        )?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(
            "INSERT OR IGNORE INTO durable SELECT app, seq, id, event, data, created_ms FROM inbox_v2;
             INSERT INTO inbox SELECT app, user, seq, expires_ms, read_ms FROM inbox_v2;
             DROP TABLE inbox_v2; DROP TABLE IF EXISTS unread;",
        )?;
    }
    Ok(())
}
