//! Durable messages from the backend's side: acknowledgements, unread counts, listings.

use super::Hub;
use super::Page;
use crate::error::Error;
use crate::id;
use crate::store::{Acked, MessageQuery, UnreadChange, UserMessage};

impl Hub {
    /// Acknowledges durable messages of `user`; ids of other users' messages change nothing.
    ///
    /// # Errors
    ///
    /// A malformed id, or a store failure.
    pub async fn ack(&self, app: &str, user: &str, ids: &[String]) -> Result<Acked, Error> {
        let app = self.app(app)?;
        let epoch = app.log.lock().epoch.clone();
        let mut seqs = Vec::with_capacity(ids.len());
        for raw in ids {
            let parsed = id::EventId::parse(raw)
                .ok_or_else(|| Error::Invalid(format!("`{raw}` is not an event id (`<epoch>-<seq>[-d]`)")))?;
            if parsed.epoch == epoch {
                seqs.push(parsed.seq);
            }
        }
        let acked = app.inbox.ack(&app.id, user, seqs).await?;
        if acked.acked > 0 {
            app.unread_changed(&[UnreadChange { app: app.id.clone(), user: user.to_string(), unread: acked.unread }])
                .await;
        }
        Ok(acked)
    }

    /// How many durable messages `user` has not acknowledged.
    ///
    /// # Errors
    ///
    /// A store failure.
    pub async fn unread(&self, app: &str, user: &str) -> Result<u64, Error> {
        let app = self.app(app)?;
        Ok(app.inbox.unread(&app.id, user).await?)
    }

    /// A page of `user`'s durable messages, newest first.
    ///
    /// # Errors
    ///
    /// A malformed cursor, or a store failure.
    pub async fn messages(
        &self,
        app: &str,
        user: &str,
        unread_only: bool,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Vec<UserMessage>>, Error> {
        let app = self.app(app)?;
        let before = match cursor {
            Some(c) => Some(
                id::EventId::parse(c)
                    .map(|i| i.seq)
                    .ok_or_else(|| Error::Invalid(format!("`cursor` `{c}` is not an event id")))?,
            ),
            None => None,
        };
        let mut items =
            app.inbox.messages(&app.id, user, MessageQuery { unread_only, limit: limit + 1, before }).await?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = more.then(|| items.last().map(|m| m.id.clone()).unwrap_or_default());
        Ok(Page { items, next_cursor })
    }
}
