//! Redis key and channel names. Everything of one app shares the `herald:{app}:` prefix.

pub(super) const NODES: &str = "herald:nodes";

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
