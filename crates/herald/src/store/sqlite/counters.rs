//! Unread counts, kept by the writer instead of stored.
//!
//! Only the writer changes the inbox, so it can count a user's unread messages once and then
//! follow every insert, ack and sweep: a durable message costs a map update, not a write to a
//! page of its own. Counts are not in the file, so a crash cannot leave one that disagrees with
//! the inbox; after a restart (or a rollback, or once too many are kept) they are counted again
//! as they are needed.

use std::collections::HashMap;

use rusqlite::{params, Transaction};

/// Most users whose counts the writer keeps; past this it forgets them all.
const KEPT: usize = 100_000;

/// When the next unread message expires: a range of `inbox_by_expiry` (see the test of the
/// sweep's plans).
pub(super) const EARLIEST_UNREAD: &str = "SELECT MIN(expires_ms) FROM inbox WHERE (read_ms IS NULL) = 1";

/// Counts of unread inbox rows, expired ones not swept yet included; the exact count of a
/// user leaves those out as it is read.
#[derive(Default)]
pub(super) struct Counters {
    /// By app and user.
    users: HashMap<String, HashMap<String, u64>>,
    /// By app, for `herald_inbox_messages`.
    apps: HashMap<String, u64>,
    /// No unread message expires before this (milliseconds since the Unix epoch): until then
    /// there are no expired messages to leave out of a count. A lower bound; 0 when unknown.
    pub(super) no_expiry_before: u64,
}

impl Counters {
    /// What a writer starts with, and goes back to after a rollback.
    pub(super) fn new(conn: &rusqlite::Connection) -> Self {
        let no_expiry_before = conn
            .query_row(EARLIEST_UNREAD, [], |r| r.get::<_, Option<u64>>(0))
            .map_or(0, |earliest| earliest.unwrap_or(u64::MAX));
        Self { no_expiry_before, ..Self::default() }
    }

    /// A user's unread, unexpired messages.
    pub(super) fn unread(&mut self, tx: &Transaction<'_>, app: &str, user: &str, now: u64) -> rusqlite::Result<u64> {
        Ok(self.counted(tx, app, user)?.saturating_sub(self.expired(tx, app, user, now)?))
    }

    /// Runs `write`, which changes a user's unread rows by the number it returns (possibly
    /// negative), follows that change, and returns the user's exact count after it. The user is
    /// counted before `write` runs: a first count reads the inbox, and after the write it would
    /// already hold the change.
    pub(super) fn change(
        &mut self,
        tx: &Transaction<'_>,
        app: &str,
        user: &str,
        now: u64,
        write: impl FnOnce() -> rusqlite::Result<i64>,
    ) -> rusqlite::Result<u64> {
        let count = self.counted(tx, app, user)?;
        let delta = write()?;
        let count = count.saturating_add_signed(delta);
        if delta != 0 {
            self.keep(app, user, count);
            if let Some(total) = self.apps.get_mut(app) {
                *total = total.saturating_add_signed(delta);
            }
        }
        Ok(count.saturating_sub(self.expired(tx, app, user, now)?))
    }

    /// A user's unread rows, as kept or counted afresh.
    fn counted(&mut self, tx: &Transaction<'_>, app: &str, user: &str) -> rusqlite::Result<u64> {
        if let Some(&count) = self.users.get(app).and_then(|users| users.get(user)) {
            return Ok(count);
        }
        let count = tx
            .prepare_cached("SELECT COUNT(*) FROM inbox WHERE app = ?1 AND user = ?2 AND read_ms IS NULL")?
            .query_row(params![app, user], |r| r.get(0))?;
        self.keep(app, user, count);
        Ok(count)
    }

    fn keep(&mut self, app: &str, user: &str, count: u64) {
        if let Some(kept) = self.users.get_mut(app).and_then(|users| users.get_mut(user)) {
            *kept = count;
            return;
        }
        if self.users.values().map(HashMap::len).sum::<usize>() >= KEPT {
            self.users.clear();
        }
        self.users.entry(app.to_string()).or_default().insert(user.to_string(), count);
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

    /// Every unread message of `app`, expired ones not swept yet included.
    pub(super) fn app_total(&mut self, tx: &Transaction<'_>, app: &str) -> rusqlite::Result<u64> {
        if let Some(&total) = self.apps.get(app) {
            return Ok(total);
        }
        let total = tx
            .prepare_cached("SELECT COUNT(*) FROM inbox WHERE app = ?1 AND read_ms IS NULL")?
            .query_row(params![app], |r| r.get(0))?;
        self.apps.insert(app.to_string(), total);
        Ok(total)
    }

    /// Forgets what a sweep deleted: `expired` holds one `(app, user)` per unread row it
    /// deleted. Returns each user once, with their count afresh.
    pub(super) fn swept(
        &mut self,
        tx: &Transaction<'_>,
        mut expired: Vec<(String, String)>,
    ) -> rusqlite::Result<Vec<(String, String, u64)>> {
        for (app, _) in &expired {
            if let Some(total) = self.apps.get_mut(app) {
                *total = total.saturating_sub(1);
            }
        }
        expired.sort();
        expired.dedup();
        expired
            .into_iter()
            .map(|(app, user)| {
                if let Some(kept) = self.users.get_mut(&app) {
                    kept.remove(&user);
                }
                let count = self.counted(tx, &app, &user)?;
                Ok((app, user, count))
            })
            .collect()
    }
}
