//! Redis key and channel names. Everything of one app shares the `herald:{space}:` prefix, where
//! `space` is the app's id — in braces on Redis Cluster (see [`space`]).

use std::borrow::Cow;

/// What names an app in its keys: its id, or on Redis Cluster `{id}`, a hash tag that puts every
/// key and channel of the app in one slot, so that the publish script may touch them together.
/// (Classic servers keep the names they always had, so an upgrade keeps their data.)
pub(super) fn space(app: &str, cluster: bool) -> Cow<'_, str> {
    match cluster {
        true => Cow::Owned(format!("{{{app}}}")),
        false => Cow::Borrowed(app),
    }
}

/// The app of a key space.
pub(super) fn app_of_space(space: &str) -> &str {
    space.strip_prefix('{').and_then(|s| s.strip_suffix('}')).unwrap_or(space)
}

/// The sorted set of the app's live nodes (score: last refresh, ms). One per app, so that it
/// shares the app's slot on Redis Cluster.
pub(super) fn nodes(app: &str) -> String {
    format!("herald:{app}:nodes")
}

pub(super) fn seq(app: &str) -> String {
    format!("herald:{app}:seq")
}

pub(super) fn epoch(app: &str) -> String {
    format!("herald:{app}:epoch")
}

pub(super) fn stream(app: &str) -> String {
    format!("herald:{app}:stream")
}

pub(super) fn expiry(app: &str) -> String {
    format!("herald:{app}:expiry")
}

pub(super) fn inbox(app: &str, user: &str) -> String {
    format!("herald:{app}:inbox:{user}")
}

pub(super) fn read(app: &str, user: &str) -> String {
    format!("herald:{app}:read:{user}")
}

pub(super) fn conns(app: &str, node: &str) -> String {
    format!("herald:{app}:conns:{node}")
}

/// The pub/sub channel every node of an app listens to.
pub(super) fn bus(app: &str) -> String {
    format!("herald:{app}:bus")
}

/// The pub/sub channel where other nodes report their delivery counts to `node`.
pub(super) fn reports(app: &str, node: &str) -> String {
    format!("herald:{app}:reports:{node}")
}

/// The app of this node's report channel name.
pub(super) fn app_of_reports<'a>(channel: &'a str, node: &str) -> Option<&'a str> {
    channel.strip_prefix("herald:")?.strip_suffix(node)?.strip_suffix(":reports:")
}

/// The app of a bus channel name.
pub(super) fn app_of_bus(channel: &str) -> Option<&str> {
    channel.strip_prefix("herald:")?.strip_suffix(":bus")
}
