//! One subscriber connection: who it is, where it came from, and its queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use super::outbox::Outbox;
use crate::message::Identity;
use crate::presence::ConnectionInfo;

/// Where a connection came from, for presence answers.
#[derive(Debug, Clone)]
pub(crate) struct ConnMeta {
    pub(crate) client_id: Option<String>,
    pub(crate) remote_addr: SocketAddr,
    pub(crate) user_agent: Option<String>,
    pub(crate) connected_at: SystemTime,
}

/// A registered connection.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Unique within the node; [`Conn::public_id`] makes it unique in the cluster.
    pub(crate) id: u64,
    pub(crate) node: Arc<str>,
    pub(crate) who: Identity,
    pub(crate) meta: ConnMeta,
    /// Token expiry, seconds since the Unix epoch.
    pub(crate) expires_at: Option<u64>,
    /// Whether heartbeats are `herald.ping` events (visible to EventSource) rather than comments.
    pub(crate) ping_events: bool,
    pub(crate) outbox: Outbox,
    /// A Mercure subscriber's selectors and grants; `None` for a native stream.
    pub(crate) mercure: Option<Box<super::mercure::MercureSub>>,
}

impl Conn {
    /// The id clients and the API see: `<node>-<number in hex>`, padded so ids sort by age.
    pub(crate) fn public_id(&self) -> String {
        format!("{}-{:010x}", self.node, self.id)
    }

    /// The presence view of this connection.
    pub(crate) fn info(&self) -> ConnectionInfo {
        let who = &self.who;
        ConnectionInfo {
            id: self.public_id(),
            user: who.user.as_deref().map(str::to_owned),
            tenant: who.tenant.as_deref().map(str::to_owned),
            session: who.session.as_deref().map(str::to_owned),
            channels: who.channels.iter().map(|c| c.to_string()).collect(),
            client_id: self.meta.client_id.clone(),
            remote_addr: self.meta.remote_addr.to_string(),
            user_agent: self.meta.user_agent.clone(),
            connected_at: rfc3339(self.meta.connected_at),
            mercure: self.mercure.as_ref().map(|m| m.info()),
        }
    }
}

/// Parses a public connection id into its node and number.
pub(crate) fn parse_public_id(id: &str) -> Option<(&str, u64)> {
    let (node, n) = id.rsplit_once('-')?;
    Some((node, u64::from_str_radix(n, 16).ok()?))
}

/// Formats a time as RFC 3339 UTC with seconds (`2026-11-21T11:38:25Z`).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_public_ids() {
        assert_eq!(super::parse_public_id("n0de-1f"), Some(("n0de", 31)));
        assert_eq!(super::parse_public_id("x"), None);
    }
}
