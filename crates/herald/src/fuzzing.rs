//! Entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`, off by default).
//!
//! Herald's parsers stay `pub(crate)`; this module is the one door the fuzzer goes through,
//! with thin wrappers that return plain data the targets can check. Not a stable API.

use std::net::SocketAddr;
use std::sync::OnceLock;

use crate::cluster::BusEvent;
use crate::config::{Config, StoreKind};
use crate::http::api::{parse_batch, PublishBody};
use crate::hub::log::{Log, Resume};
use crate::hub::{Hub, SubscribeRequest};
use crate::server::direct::{self, Head, Kind};
use crate::server::publish::{self, Parsed};
use crate::store::HistoryLimits;
use crate::{Error, Publish};

/// What the stream fast path makes of the bytes a connection has sent so far.
#[derive(Debug)]
pub enum Dispatch {
    /// Read on: too few bytes to tell, or a head that is not complete yet.
    ReadMore,
    /// Anything hyper answers: another request, or a stream request the fast path does not take.
    Hyper,
    /// A Mercure stream request, whole.
    Mercure,
    /// A publish for the lean publish path: its body length, credential and `Connection: close`.
    Publish {
        /// `Content-Length`.
        body_len: usize,
        /// The bearer credential.
        key: Option<String>,
        /// Whether the client asked to close.
        close: bool,
    },
    /// A stream request: the app it names and what the subscriber presented.
    Stream {
        /// The app the request names.
        app: String,
        /// Token, channels, last event id... as the hub receives them.
        request: SubscribeRequest,
    },
}

/// The decision `read_head` takes after a read that left `buf` (the same steps, in the same
/// order), then the publish path's parse of a publish head, or the subscriber's request from a
/// complete stream head.
pub fn request_head(buf: &[u8]) -> Dispatch {
    let more = buf.len() < direct::MAX_HEAD;
    let kind = match direct::kind_of(buf) {
        None => return Dispatch::ReadMore,
        Some(None) if direct::head_is_partial(buf) && more => return Dispatch::ReadMore,
        Some(None) => return Dispatch::Hyper,
        Some(Some(kind)) => kind,
    };
    if kind == Kind::Publish {
        if direct::head_is_partial(buf) && more {
            return Dispatch::ReadMore;
        }
        return match publish::parse(buf, crate::http::body_limit(hub())) {
            Parsed::Publish(head) => Dispatch::Publish { body_len: head.body_len, key: head.key, close: head.close },
            Parsed::Partial => Dispatch::ReadMore,
            Parsed::Other => Dispatch::Hyper,
        };
    }
    match direct::parse_head(buf, SocketAddr::from(([192, 0, 2, 1], 40000))) {
        Head::Complete(_) if kind == Kind::Mercure => Dispatch::Mercure,
        Head::Complete(parts) => {
            let (app, request) = crate::http::subscriber(&parts, hub());
            Dispatch::Stream { app, request }
        }
        Head::Partial if more => Dispatch::ReadMore,
        Head::Partial | Head::Unsupported => Dispatch::Hyper,
    }
}

/// Parses `body` as `POST /api/publish` does; `None` when it is refused.
pub fn publish(body: &[u8]) -> Option<Publish> {
    serde_json::from_slice::<PublishBody>(body).ok().map(Into::into)
}

/// Parses `body` as `POST /api/publish/batch` does, bounded by the default app's `max_batch`;
/// `None` when it is refused.
pub fn publish_batch(body: &[u8]) -> Option<Vec<Publish>> {
    let max = hub().app_config("default").ok()?.limits.max_batch;
    let batch = parse_batch(body, max).ok()?;
    Some(batch.into_iter().map(Into::into).collect())
}

/// The default app's verdict on a publish, checked before anything is sent.
///
/// # Errors
///
/// What the hub answers the publisher.
pub fn validate(publish: &Publish) -> Result<(), Error> {
    hub().app("default")?.validate(publish)
}

/// The `/send/{path}` sanitiser: the raw path forwarded upstream, or why it is refused.
///
/// # Errors
///
/// What the hub answers the client (400).
pub fn send_path(raw: &str) -> Result<&str, String> {
    crate::http::send::upstream_path(raw)
}

/// The kind of event a bus line decodes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    /// `m`: a published message.
    Message,
    /// `u`: unread counts.
    Unread,
    /// `p`: presence from another node.
    Presence,
    /// `k`: a kick.
    Kick,
    /// `r`: other nodes' delivery counts.
    Reports,
}

/// Decodes one cluster bus line as the node `own_node` does; `None` when it is skipped.
pub fn decode_bus(payload: &[u8], own_node: &str) -> Option<BusKind> {
    Some(match crate::cluster::parse("default", payload, own_node)? {
        BusEvent::Message { .. } => BusKind::Message,
        BusEvent::Unread { .. } => BusKind::Unread,
        BusEvent::Presence { .. } => BusKind::Presence,
        BusEvent::Kick { .. } => BusKind::Kick,
        BusEvent::Reports { .. } => BusKind::Reports,
        BusEvent::Resubscribed { .. } | BusEvent::Unsubscribed { .. } => {
            unreachable!("a bus line never decodes to a subscription's change")
        }
    })
}

/// Where a client that last saw `last_event_id` resumes in a history of `epoch` that keeps
/// the messages after `floor` up to `head`: `Ok(position)`, or `Err(head)` for a reset.
pub fn resume(epoch: &str, floor: u64, head: u64, last_event_id: Option<&str>) -> Result<u64, u64> {
    let limits = HistoryLimits { max_len: usize::MAX, max_age_ms: u64::MAX, max_bytes: usize::MAX };
    match Log::new(epoch.to_string(), head, floor, Vec::new(), limits).resume(last_event_id) {
        Resume::From(position) => Ok(position),
        Resume::Reset { head, .. } => Err(head),
    }
}

/// A hub on the default configuration (memory store), started once per process.
fn hub() -> &'static Hub {
    static HUB: OnceLock<(tokio::runtime::Runtime, Hub)> = OnceLock::new();
    let (_, hub) = HUB.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        // The memory store: targets run side by side in one directory, and a SQLite file there
        // would be locked by the first.
        let config = Config { store: StoreKind::Memory, ..Config::default() };
        let hub = runtime.block_on(Hub::new(config)).expect("the default configuration starts");
        (runtime, hub)
    });
    hub
}
