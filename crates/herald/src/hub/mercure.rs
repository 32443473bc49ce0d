//! The hub side of Mercure: a Mercure subscriber is a connection of its app whose exact topics
//! are channels (indexed like any channel) and whose other selectors are evaluated once per
//! distinct selector (see `registry`); a Mercure update is a message to channels, published
//! through the backbone like any other, so history, resume, the cluster, presence, kicks,
//! limits and metrics are the native ones.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::app::App;
use super::body::StreamBody;
use super::conn::{Conn, ConnMeta};
use super::log::Resume;
use super::outbox::Outbox;
use super::registry::Refused;
use super::Hub;
use crate::config::{AppConfig, ConfigError};
use crate::error::Error;
use crate::mercure::selector::{check_text, HUB_URL};
use crate::mercure::token::Key;
use crate::mercure::{Grants, MatchType, Selector, Topic};
use crate::message::{Identity, MercureFields, Message, Publish, Targets};
use crate::metrics::{Outcome, Target};
use crate::presence::{ConnectionInfo, MercureInfo, MercureSubscription, PresenceKind};
use crate::sse;

/// The hub's path; topics under it are the hub's own (subscription events).
pub const HUB_PATH: &str = "/.well-known/mercure";
/// Subscription events waiting to be published; past this they are dropped and counted.
const EVENT_QUEUE: usize = 4096;

/// The keys of an app with Mercure on, and where its subscription events go.
pub(crate) struct MercureApp {
    publisher: Key,
    subscriber: Key,
    events: Option<mpsc::Sender<Publish>>,
}

impl MercureApp {
    /// The Mercure side of `app`, when its configuration turns it on.
    pub(crate) fn new(path: &str, config: &AppConfig) -> Result<Option<Self>, ConfigError> {
        let m = &config.mercure;
        let Some(publisher_key) = &m.publisher_jwt_key else { return Ok(None) };
        let publisher =
            Key::new(&format!("{path}.mercure.publisher_jwt_key"), publisher_key, m.publisher_jwt_alg.as_deref(), m)?;
        let subscriber = match &m.subscriber_jwt_key {
            Some(key) => {
                Key::new(&format!("{path}.mercure.subscriber_jwt_key"), key, m.subscriber_jwt_alg.as_deref(), m)?
            }
            None => Key::new(
                &format!("{path}.mercure.publisher_jwt_key"),
                publisher_key,
                m.subscriber_jwt_alg.as_deref().or(m.publisher_jwt_alg.as_deref()),
                m,
            )?,
        };
        Ok(Some(Self { publisher, subscriber, events: None }))
    }

    /// Starts the task that publishes subscription events, when they are on.
    pub(crate) fn start_events(&mut self, app: Weak<App>, enabled: bool) {
        if !enabled {
            return;
        }
        let (tx, mut rx) = mpsc::channel::<Publish>(EVENT_QUEUE);
        self.events = Some(tx);
        tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                let Some(app) = app.upgrade() else { return };
                if let Err(error) = app.publish(p).await {
                    tracing::warn!(%error, "Could not publish a Mercure subscription event.");
                }
            }
        });
    }
}

/// Why a Mercure request was refused; the HTTP layer turns each into its status and challenge.
#[derive(Debug, thiserror::Error)]
pub enum MercureError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 401 without an error code: no token, and one is needed.
    #[error("{0}")]
    NoToken(String),
    /// 401 `invalid_token`.
    #[error("the token is invalid")]
    InvalidToken,
    /// 403 `insufficient_scope`.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 413.
    #[error("{0}")]
    TooLarge(String),
    /// Mercure is not on for this app.
    #[error("Mercure is not enabled for app `{0}`: set its `mercure.publisher_jwt_key`")]
    Disabled(String),
    /// Anything the hub refuses natively (limits, shutdown, the store).
    #[error(transparent)]
    Hub(#[from] Error),
}

/// A Mercure subscriber's selectors and what its token allows.
#[derive(Debug)]
pub(crate) struct MercureSub {
    pub(crate) subscriber: String,
    /// Every selector, with the payload its token attaches and whether it came as `topic=`.
    selectors: Vec<(Arc<Selector>, Option<Value>, bool)>,
    /// Keys of the non-exact selectors, and the ids the registry indexes them by.
    pub(crate) patterns: Vec<Arc<str>>,
    pub(crate) pattern_ids: Vec<u32>,
    /// `None`: an anonymous subscriber, which receives public updates only.
    grants: Option<Grants>,
}

fn topics(m: &Message) -> Vec<Topic<'_>> {
    m.targets.channels.iter().map(|t| Topic::new(t)).collect()
}

impl MercureSub {
    /// Whether its token may read one of `topics` (a private update's).
    pub(crate) fn may_read(&self, topics: &[Topic<'_>]) -> bool {
        self.grants.as_ref().is_some_and(|g| g.may_read(topics))
    }

    /// Whether it receives `m` (replay applies the live rules).
    fn receives(&self, m: &Message) -> bool {
        if m.targets.channels.is_empty() {
            return false;
        }
        let t = topics(m);
        self.selectors.iter().any(|(s, _, _)| s.matches_any(&t)) && (!m.needs_mercure_grant() || self.may_read(&t))
    }

    pub(crate) fn info(&self) -> MercureInfo {
        MercureInfo {
            subscriber: self.subscriber.clone(),
            subscriptions: self
                .selectors
                .iter()
                .map(|(s, payload, legacy)| MercureSubscription {
                    match_type: if *legacy { "topic".into() } else { s.kind.name().into() },
                    selector: s.raw.clone(),
                    payload: payload.clone(),
                })
                .collect(),
        }
    }
}

/// A Mercure subscribe request, as the HTTP layer read it.
#[derive(Debug, Clone)]
pub struct MercureSubscribe {
    /// The JWT, from the header, a cookie or the 0.x `authorization` query parameter.
    pub token: Option<String>,
    /// `topic=` (0.x: exact or URI template), `match=`/`match_exact=`, `match_urlpattern=`.
    pub selectors: Vec<(MatchType, String, bool)>,
    /// `Last-Event-ID`, `last_event_id`, `lastEventID`.
    pub last_event_id: Option<String>,
    /// Remote address.
    pub remote_addr: SocketAddr,
    /// `User-Agent`.
    pub user_agent: Option<String>,
}

/// A Mercure publish, as the HTTP layer read it from the form.
#[derive(Debug, Clone, Default)]
pub struct MercurePublish {
    /// The JWT.
    pub token: Option<String>,
    /// Whether the token came from a cookie (then the origin must be a publish origin).
    pub from_cookie: bool,
    /// `Origin` (or the origin of `Referer`).
    pub origin: Option<String>,
    /// `topic` fields, canonical first.
    pub topics: Vec<String>,
    /// `data`.
    pub data: String,
    /// Whether `private` was present.
    pub private: bool,
    /// `id`.
    pub id: Option<String>,
    /// `type`.
    pub event: Option<String>,
    /// `retry`.
    pub retry: Option<String>,
}

/// An open Mercure stream and the value of its last-event-id response headers.
pub struct MercureStream {
    pub(crate) body: StreamBody,
    /// `Last-Event-ID` / `Mercure-Last-Event-ID`.
    pub last_event_id: String,
}

impl App {
    fn mercure_app(&self) -> Result<&MercureApp, MercureError> {
        self.mercure.as_ref().ok_or_else(|| MercureError::Disabled(self.id.clone()))
    }

    fn mercure_grants(&self, token: Option<&str>, publisher: bool) -> Result<Option<Grants>, MercureError> {
        let keys = self.mercure_app()?;
        let Some(token) = token else { return Ok(None) };
        let key = if publisher { &keys.publisher } else { &keys.subscriber };
        key.verify(token).map(Some).map_err(|refused| {
            tracing::debug!(reason = %refused, "Refused a Mercure token.");
            MercureError::InvalidToken
        })
    }

    /// Opens a Mercure stream.
    pub(crate) async fn mercure_subscribe(
        self: &Arc<Self>,
        req: MercureSubscribe,
        id: u64,
        kill: Option<CancellationToken>,
    ) -> Result<MercureStream, MercureError> {
        let grants = self.mercure_grants(req.token.as_deref(), false)?;
        if grants.is_none() && !self.config.mercure.anonymous {
            return Err(MercureError::NoToken(
                "this hub needs a subscriber token: send `Authorization: Bearer`, or the `mercureAuthorization` cookie"
                    .into(),
            ));
        }
        if req.selectors.is_empty() {
            return Err(MercureError::BadRequest("give at least one `topic`, `match` or `match_urlpattern`".into()));
        }
        let max = self.config.limits.max_channels;
        if req.selectors.len() > max {
            return Err(MercureError::BadRequest(format!(
                "{} selectors; at most {max} are accepted (`limits.max_channels`)",
                req.selectors.len()
            )));
        }
        let mut selectors: Vec<(Arc<Selector>, Option<Value>, bool)> = Vec::with_capacity(req.selectors.len());
        let mut channels: Vec<Arc<str>> = Vec::new();
        let (mut patterns, mut pattern_selectors) = (Vec::new(), Vec::new());
        for (kind, raw, legacy) in &req.selectors {
            let selector = Arc::new(Selector::parse(*kind, raw).map_err(MercureError::BadRequest)?);
            if selectors.iter().any(|(s, _, _)| s.key() == selector.key()) {
                continue;
            }
            if selector.is_exact() {
                channels.push(selector.raw.as_str().into());
            } else {
                patterns.push(selector.key().into());
                pattern_selectors.push(selector.clone());
            }
            let payload = grants.as_ref().and_then(|g| g.payload_for(raw)).cloned();
            selectors.push((selector, payload, *legacy));
        }
        let subscriber = format!("urn:uuid:{}", uuid_v4());
        let user = grants.as_ref().and_then(|g| g.subject.clone()).filter(|s| !s.is_empty());
        let expires_at = grants.as_ref().and_then(|g| g.exp);
        // Counted in now; released when the connection leaves the registry (or is refused by it).
        let keyed: Vec<(Arc<str>, Arc<Selector>)> = patterns.iter().cloned().zip(pattern_selectors).collect();
        let pattern_ids = self.registry.acquire_patterns(&keyed);
        let sub = MercureSub { subscriber, selectors, patterns, pattern_ids, grants };
        let conn = Arc::new(Conn {
            id,
            node: self.node.clone(),
            who: Identity { user: user.map(Into::into), tenant: None, session: None, channels },
            meta: ConnMeta {
                client_id: None,
                remote_addr: req.remote_addr,
                user_agent: req.user_agent,
                connected_at: SystemTime::now(),
            },
            expires_at,
            ping_events: false,
            outbox: Outbox::new(self.config.limits.queue_bytes, kill),
            mercure: Some(Box::new(sub)),
        });
        let limits = &self.config.limits;
        self.registry.insert(conn.clone(), limits.max_connections_per_user, limits.max_connections_per_ip).map_err(
            |r| {
                Error::TooManyConnections(match r {
                    Refused::UserLimit(n) => format!("this user already has {n} open streams"),
                    Refused::AddressLimit(n) => format!("this address already has {n} open streams"),
                })
            },
        )?;
        self.metrics.connects.inc();
        self.announce(PresenceKind::Connect, &conn);
        self.subscription_events(&conn, true);
        let body = StreamBody::new(self.clone(), conn.clone());
        let sub = conn.mercure.as_deref().expect("a Mercure connection");

        let requested = req.last_event_id.as_deref().filter(|s| !s.is_empty());
        if let Some(id) = requested.and_then(crate::id::EventId::parse) {
            if id.epoch == self.log.lock().epoch {
                self.backbone.wait_for(self, id.seq).await;
            }
        }
        let turn = self.turn.lock().await;
        let (reset, replay, covered, header, head_id) = {
            let log = self.log.lock();
            let (position, reset, header) = match requested {
                Some("earliest") => (log.floor(), None, "earliest".to_string()),
                None if log.head == 0 => (log.head, None, "earliest".to_string()),
                None => (log.head, None, log.wire_id_of(log.head)),
                Some(raw) => match log.resume(Some(raw)) {
                    Resume::From(p) if p == 0 => (p, None, "earliest".to_string()),
                    Resume::From(p) => (p, None, log.wire_id_of(p)),
                    Resume::Reset { head, reason } => (head, Some(reason), "earliest".to_string()),
                },
            };
            (reset, log.after_where(position, |m| sub.receives(m)), log.head, header, log.id_of(log.head))
        };
        drop(turn);
        let mut first = vec![sse::retry(self.retry_ms)];
        if let Some(reason) = reset {
            // The spec answers `earliest`; Herald also says so in the stream, never a silent gap.
            first.push(sse::event(Some(&head_id), Some("herald.reset"), &json!({ "reason": reason }).to_string()));
        }
        first.extend(replay.iter().map(|m| m.frame.clone()));
        conn.outbox.open(first, covered);
        Ok(MercureStream { body, last_event_id: header })
    }

    /// Publishes a Mercure update; answers its id.
    pub(crate) async fn mercure_publish(self: &Arc<Self>, req: MercurePublish) -> Result<String, MercureError> {
        let grants = self.mercure_grants(req.token.as_deref(), true)?.ok_or_else(|| {
            MercureError::NoToken("publishing needs a publisher token: send `Authorization: Bearer <jwt>`".into())
        })?;
        if req.from_cookie {
            let allowed = &self.config.mercure.publish_origins;
            let ok = req.origin.as_deref().is_some_and(|o| allowed.iter().any(|a| a == "*" || a == o));
            if !ok {
                return Err(MercureError::Forbidden(
                    "a token in a cookie publishes only from an origin in `mercure.publish_origins`".into(),
                ));
            }
        }
        if req.topics.is_empty() {
            return Err(MercureError::BadRequest("give at least one `topic`".into()));
        }
        let max = self.config.limits.max_recipients;
        if req.topics.len() > max {
            return Err(MercureError::TooLarge(format!(
                "{} topics; at most {max} are accepted (`limits.max_recipients`)",
                req.topics.len()
            )));
        }
        for topic in &req.topics {
            check_text(topic, "topic").map_err(MercureError::BadRequest)?;
            if topic == "*" {
                return Err(MercureError::BadRequest(
                    "`*` is reserved for the wildcard and cannot be published".into(),
                ));
            }
            if is_hub_topic(topic) {
                return Err(MercureError::BadRequest(format!(
                    "`{topic}` is in the hub's reserved namespace `{HUB_PATH}`"
                )));
            }
        }
        if let Some(id) = &req.id {
            check_text(id, "id").map_err(MercureError::BadRequest)?;
            if id.starts_with('#') || id == "earliest" {
                return Err(MercureError::BadRequest("an `id` must not start with `#` nor be `earliest`".into()));
            }
        }
        if let Some(event) = &req.event {
            check_text(event, "type").map_err(MercureError::BadRequest)?;
            if event == "mercure" {
                return Err(MercureError::BadRequest(
                    "the `type` `mercure` is reserved for the hub's own events".into(),
                ));
            }
        }
        let retry = match &req.retry {
            None => None,
            Some(r) if !r.is_empty() && r.len() <= 12 && r.bytes().all(|b| b.is_ascii_digit()) => r.parse().ok(),
            Some(_) => return Err(MercureError::BadRequest("`retry` must be ASCII digits".into())),
        };
        let limit = self.config.limits.max_payload_bytes;
        if req.data.len() > limit {
            return Err(MercureError::TooLarge(format!(
                "`data` is {} bytes; at most {limit} are accepted (`limits.max_payload_bytes`)",
                req.data.len()
            )));
        }
        let topics: Vec<Topic<'_>> = req.topics.iter().map(|t| Topic::new(t)).collect();
        if !grants.may_publish_all(&topics) {
            return Err(MercureError::Forbidden(
                "the token does not allow publishing to every topic of the update".into(),
            ));
        }
        drop(topics);
        let publish = Publish {
            to: Targets { channels: req.topics, ..Targets::default() },
            event: req.event,
            data: req.data,
            mercure: Some(MercureFields { id: req.id, private: req.private, retry }),
            ..Publish::default()
        };
        // Counted like a native publish to channels.
        if let Err(e) = self.validate(&publish) {
            self.metrics.published(Target::Channels, Outcome::Invalid);
            return Err(e.into());
        }
        let started = std::time::Instant::now();
        let answer = self.publish(publish).await;
        self.metrics.published(Target::Channels, if answer.is_ok() { Outcome::Ok } else { Outcome::Failed });
        self.metrics.publish_seconds.observe(started.elapsed().as_secs_f64());
        Ok(answer?.id)
    }

    /// Queues the subscription events of a Mercure connection that came (`active`) or went.
    pub(crate) fn subscription_events(&self, conn: &Conn, active: bool) {
        let (Some(m), Some(tx)) = (&conn.mercure, self.mercure.as_ref().and_then(|a| a.events.as_ref())) else {
            return;
        };
        for subscription in m.info().subscriptions {
            let document = subscription_document(&m.subscriber, &subscription, active);
            let topic = document["id"].as_str().unwrap_or_default().to_owned();
            let p = Publish {
                to: Targets { channels: vec![topic], ..Targets::default() },
                event: Some("mercure".into()),
                data: document.to_string(),
                mercure: Some(MercureFields { private: true, ..MercureFields::default() }),
                ..Publish::default()
            };
            if tx.try_send(p).is_err() {
                tracing::warn!("Dropped a Mercure subscription event: the queue is full.");
            }
        }
    }
}

/// Whether a topic names a resource under the hub's path (after resolving it against the hub's
/// URL, removing dot segments and decoding percent-encoded unreserved characters).
fn is_hub_topic(topic: &str) -> bool {
    let base = url::Url::parse(HUB_URL).expect("the hub URL parses");
    let Ok(url) = url::Url::options().base_url(Some(&base)).parse(topic) else { return false };
    let path = decode_unreserved(url.path());
    // Decoding can reveal new dot segments (`%2E%2E`): resolve once more.
    let path = base.join(&path).map(|u| u.path().to_owned()).unwrap_or(path);
    path == HUB_PATH || path.starts_with(&format!("{HUB_PATH}/"))
}

fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&path[i + 1..i + 3], 16) {
                if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                    out.push(v as char);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

/// The topic and document of one subscription: the newer shape for `match*` subscriptions,
/// the 0.x JSON-LD shape for `topic=` ones.
pub(crate) fn subscription_document(subscriber: &str, s: &MercureSubscription, active: bool) -> Value {
    // RFC 6570 simple expansion: everything but the unreserved characters, encoded once.
    const ENCODED: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    let enc = |v: &str| percent_encoding::utf8_percent_encode(v, ENCODED).to_string();
    if s.match_type == "topic" {
        let id = format!("{HUB_PATH}/subscriptions/{}/{}", enc(&s.selector), enc(subscriber));
        let mut doc = json!({
            "@context": "https://mercure.rocks/",
            "id": id, "type": "Subscription", "topic": s.selector,
            "subscriber": subscriber, "active": active,
        });
        if let Some(payload) = &s.payload {
            doc["payload"] = payload.clone();
        }
        return doc;
    }
    let id = format!("{HUB_PATH}/subscriptions/{}/{}/{}", s.match_type, enc(&s.selector), enc(subscriber));
    let mut doc = json!({
        "id": id, "type": "subscription", "match_type": s.match_type, "match": s.selector,
        "subscriber": subscriber, "active": active,
    });
    if let Some(payload) = &s.payload {
        doc["payload"] = payload.clone();
    }
    doc
}

/// A random (version 4) UUID.
fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Which subscriptions a subscriptions API request asks for.
#[derive(Debug, Clone)]
pub enum SubscriptionsQuery {
    /// `/subscriptions`.
    All,
    /// `/subscriptions/{topic}` (0.x) or `/subscriptions/{match_type}/{match}`.
    Selector {
        /// `exact`, `urlpattern`, or `topic` for a 0.x path.
        match_type: String,
        /// The selector.
        selector: String,
    },
    /// `/subscriptions/{topic}/{subscriber}` (0.x) or `.../{match_type}/{match}/{subscriber}`.
    One {
        /// `exact`, `urlpattern`, or `topic` for a 0.x path.
        match_type: String,
        /// The selector.
        selector: String,
        /// The subscriber id.
        subscriber: String,
    },
}

impl Hub {
    /// Opens a Mercure stream on `app`.
    ///
    /// # Errors
    ///
    /// The token, a selector or a limit refused it.
    pub async fn mercure_subscribe(
        &self,
        app: &str,
        req: MercureSubscribe,
        kill: Option<CancellationToken>,
    ) -> Result<MercureStream, MercureError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown.into());
        }
        let app = self.app(app)?;
        let id = self.inner.next_conn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        app.mercure_subscribe(req, id, kill).await
    }

    /// Publishes a Mercure update on `app`; answers its id.
    ///
    /// # Errors
    ///
    /// The token, a field or a limit refused it, or the store failed.
    pub async fn mercure_publish(&self, app: &str, req: MercurePublish) -> Result<String, MercureError> {
        self.app(app)?.mercure_publish(req).await
    }

    /// Whether `app` speaks Mercure.
    pub fn mercure_enabled(&self, app: &str) -> bool {
        self.app(app).is_ok_and(|a| a.mercure.is_some())
    }

    /// The subscriptions API: the document at `path` (relative to the hub's path), and the id of
    /// the last event (`earliest` when there is none).
    ///
    /// # Errors
    ///
    /// No or an invalid token (401), a token that may not read `path` (403), an unknown
    /// subscription (404), or the API is off (404).
    pub async fn mercure_subscriptions(
        &self,
        app: &str,
        token: Option<&str>,
        path: &str,
        query: SubscriptionsQuery,
    ) -> Result<(Value, String), MercureError> {
        let app = self.app(app)?;
        if !app.config.mercure.subscriptions {
            return Err(MercureError::NotFound("the subscriptions API is off (`mercure.subscriptions`)".into()));
        }
        let grants = app
            .mercure_grants(token, false)?
            .ok_or_else(|| MercureError::NoToken("the subscriptions API needs a subscriber token".into()))?;
        if !grants.may_read(&[Topic::new(path)]) {
            return Err(MercureError::Forbidden(format!("the token may not read `{path}`")));
        }
        let last = {
            let log = app.log.lock();
            if log.head == 0 {
                "earliest".to_string()
            } else {
                log.wire_id_of(log.head)
            }
        };
        let mut conns: Vec<ConnectionInfo> = app.registry.all().iter().map(|c| c.info()).collect();
        conns.extend(app.backbone.remote_connections(&app.id).await.map_err(Error::from)?);
        let mut docs = Vec::new();
        let legacy = !path.starts_with(&format!("{HUB_PATH}/subscriptions/exact/"))
            && !path.starts_with(&format!("{HUB_PATH}/subscriptions/urlpattern/"))
            && path != format!("{HUB_PATH}/subscriptions");
        for info in conns.iter().filter_map(|c| c.mercure.as_ref()) {
            for s in &info.subscriptions {
                let wanted = match &query {
                    SubscriptionsQuery::All => true,
                    SubscriptionsQuery::Selector { match_type, selector } => {
                        s.match_type == *match_type && s.selector == *selector
                    }
                    SubscriptionsQuery::One { match_type, selector, subscriber } => {
                        s.match_type == *match_type && s.selector == *selector && info.subscriber == *subscriber
                    }
                };
                if wanted {
                    docs.push(subscription_document(&info.subscriber, s, true));
                }
            }
        }
        if let SubscriptionsQuery::One { .. } = query {
            return docs.pop().map(|d| (d, last)).ok_or_else(|| MercureError::NotFound("no such subscription".into()));
        }
        let doc = if legacy {
            json!({"@context": "https://mercure.rocks/", "id": path, "type": "Subscriptions", "lastEventID": last, "subscriptions": docs})
        } else {
            json!({"id": path, "type": "subscriptions", "subscriptions": docs})
        };
        Ok((doc, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_namespace_is_reserved_however_spelled() {
        for topic in [
            "/.well-known/mercure",
            "/.well-known/mercure/subscriptions/x",
            "https://other.example/.well-known/mercure/subscriptions/a/b",
            "/.well-known/%6Dercure/x",
            "/.well-known/mercure/../mercure/x",
            "/a/../.well-known/mercure",
        ] {
            assert!(is_hub_topic(topic), "{topic}");
        }
        for topic in ["/.well-known/mercurex", "https://example.com/books/1", "urn:uuid:1", "books"] {
            assert!(!is_hub_topic(topic), "{topic}");
        }
    }

    #[test]
    fn uuids_are_version_4() {
        let id = uuid_v4();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
