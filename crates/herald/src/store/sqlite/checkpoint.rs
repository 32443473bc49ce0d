//! Copies the write-ahead log into the database file on a thread and connection of its own.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, so every
//! 8,192 pages the writer stopped for two fsyncs (0.1–0.15 s on a virtual disk) and every
//! durable publish queued behind it waited. Here the writer only nudges after a commit, and a
//! passive checkpoint runs beside it, never blocking it. A passive checkpoint cannot rewind a log
//! that keeps growing while it copies, though: under sustained writes it never catches up. So
//! once the log holds more than its limit, the writer itself runs a restarting checkpoint after
//! its next commit (from another connection it would wait forever for a writer that never
//! rests), copying the rest, which the passive ones have kept short, and the log starts over.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::failed;
use crate::store::StoreError;

/// Frames (pages) the log may hold before the writer runs a checkpoint that restarts it:
/// 128 MiB at SQLite's default page size.
pub(super) const LOG_LIMIT: u64 = 32_768;
/// Least time between two checkpoints: each copies the pages changed since the last one and
/// syncs both files, so a page rewritten by every commit is copied at most this often.
const PACE: Duration = Duration::from_millis(50);

/// The checkpointing thread; dropping this finishes its last checkpoint and stops it.
pub(super) struct Checkpointer {
    nudge: Option<SyncSender<()>>,
    /// Set by the thread when the log outgrew its limit.
    restart_due: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a second connection to the (already WAL-mode) file at `path`, with the writer's
    /// `synchronous` level, which decides how the checkpoint syncs.
    pub(super) fn start(path: &Path, synchronous: &str, log_limit: u64) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(failed)?;
        // A restarting checkpoint waits for the writer's transaction to end.
        conn.execute_batch(&format!("PRAGMA busy_timeout = 10000; PRAGMA synchronous = {synchronous};"))
            .map_err(failed)?;
        let (nudge, nudged) = sync_channel(1);
        let restart_due = Arc::new(AtomicBool::new(false));
        let due = restart_due.clone();
        let thread = std::thread::Builder::new()
            .name("herald-checkpoint".into())
            .spawn(move || run(&conn, &nudged, log_limit, &due))
            .map_err(|e| StoreError::Failed(e.to_string()))?;
        Ok(Self { nudge: Some(nudge), restart_due, thread: Some(thread) })
    }

    /// Called by the writer after each commit, on its connection: restarts the log when it
    /// outgrew its limit, and asks the thread for a passive checkpoint soon.
    pub(super) fn committed(&self, writer: &Connection) {
        if self.restart_due.swap(false, Ordering::Relaxed) {
            if let Err(e) = checkpoint(writer, "RESTART") {
                tracing::warn!(error = %e, "Restarting the store's log failed; it is retried after a later commit.");
            }
        }
        if let Some(nudge) = &self.nudge {
            let _ = nudge.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.nudge.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, nudged: &Receiver<()>, log_limit: u64, restart_due: &AtomicBool) {
    let mut last = Instant::now() - PACE;
    while nudged.recv().is_ok() {
        if let Some(wait) = PACE.checked_sub(last.elapsed()) {
            std::thread::sleep(wait);
        }
        last = Instant::now();
        match checkpoint(conn, "PASSIVE") {
            Ok(log) => restart_due.store(log > log_limit, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "Store checkpoint failed; it is retried after the next commit."),
        }
    }
}

/// Runs one checkpoint and returns the frames the log holds.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<u64> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get::<_, i64>(1)).map(|log| log.max(0) as u64)
}
