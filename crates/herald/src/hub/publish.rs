//! Publishing: validation, and the hand-over to the app's backbone, which sequences, stores and
//! delivers. The order of the steps, and why, is in the `hub` module docs.

use std::sync::Arc;

use super::app::App;
use crate::error::Error;
use crate::message::{now_ms, Publish, Published, Targets};
use crate::presence::ConnectionInfo;
use crate::sse;
use crate::store::{DurableFor, UnreadChange};

impl App {
    /// Checks a publish against the app's rules; nothing is sent when this fails.
    pub(crate) fn validate(&self, p: &Publish) -> Result<(), Error> {
        let limits = &self.config.limits;
        if p.to.is_empty() {
            return Err(Error::Invalid(
                "`to` names no recipient: give `users`, `sessions`, `tenants`, `channels` or `all: true`".into(),
            ));
        }
        let count = p.to.address_count();
        if count > limits.max_recipients {
            return Err(Error::Invalid(format!(
                "`to` names {count} addresses; at most {} are allowed (`limits.max_recipients`)",
                limits.max_recipients
            )));
        }
        for (field, list) in [
            ("users", &p.to.users),
            ("sessions", &p.to.sessions),
            ("tenants", &p.to.tenants),
            ("channels", &p.to.channels),
        ] {
            if list.iter().any(String::is_empty) {
                return Err(Error::Invalid(format!("`to.{field}` contains an empty string")));
            }
        }
        if let Some(event) = &p.event {
            if !sse::valid_event_name(event) || event.starts_with("herald.") {
                return Err(Error::Invalid(
                    "`event` must be 1 to 128 characters without line breaks or NUL, and must not start with `herald.` (reserved)".into(),
                ));
            }
        }
        if p.data.len() > limits.max_payload_bytes {
            return Err(Error::PayloadTooLarge { size: p.data.len(), limit: limits.max_payload_bytes });
        }
        if let Some(ttl) = p.ttl {
            if !p.durable {
                return Err(Error::Invalid(
                    "`ttl` applies only to durable messages; add `durable: true` or drop `ttl`".into(),
                ));
            }
            if ttl == 0 || ttl > limits.max_ttl_secs {
                return Err(Error::Invalid(format!(
                    "`ttl` must be between 1 and {} seconds (`limits.max_ttl_secs`)",
                    limits.max_ttl_secs
                )));
            }
        }
        if p.durable && p.to.all && !self.config.durable_all {
            return Err(Error::Invalid("durable messages to `all` are disabled for this app (`durable_all`)".into()));
        }
        Ok(())
    }

    /// Publishes a validated message through the app's backbone.
    pub(crate) async fn publish(self: &Arc<Self>, p: Publish) -> Result<Published, Error> {
        self.backbone.publish(self, vec![p]).await.pop().expect("one answer per message")
    }

    /// Publishes validated messages in order.
    pub(crate) async fn publish_many(self: &Arc<Self>, batch: Vec<Publish>) -> Vec<Result<Published, Error>> {
        self.backbone.publish(self, batch).await
    }

    /// Tells users, on whichever node, that their unread count changed.
    pub(crate) async fn unread_changed(&self, changes: &[UnreadChange]) {
        self.backbone.unread_changed(self, changes).await;
    }

    /// Resolves a durable publish to user ids: users as named, sessions, tenants and `all`
    /// through the connections open now (Herald keeps no user registry).
    pub(crate) fn durable_recipients(&self, p: &Publish, remote: Vec<ConnectionInfo>) -> DurableFor {
        let mut users = p.to.users.clone();
        let indirect = Targets { users: Vec::new(), ..p.to.clone() };
        if !indirect.is_empty() {
            users.extend(
                self.registry.matching(&indirect).iter().filter_map(|c| c.who.user.as_deref().map(str::to_owned)),
            );
            users.extend(remote.into_iter().filter(|c| indirect.matches(&c.identity())).filter_map(|c| c.user));
        }
        users.sort_unstable();
        users.dedup();
        let ttl = p.ttl.unwrap_or(self.config.limits.default_ttl_secs);
        let expires_ms = now_ms().saturating_add(ttl.saturating_mul(1000));
        super::maintenance::expires_at(&self.next_expiry, expires_ms);
        DurableFor { users, expires_ms }
    }
}
