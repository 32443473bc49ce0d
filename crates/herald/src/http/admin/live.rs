//! The overview: this node's figures and health, the other nodes the cluster's presence shows,
//! and the streams that keep the page current (chart samples, a channel's traffic).

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::request::Parts;
use http::{header, HeaderValue};
use serde_json::{json, Value};

use super::api::message_json;
use super::samples::{read_counters, INTERVAL};
use super::session::Scope;
use super::{Admin, Signed};
use crate::http::extract::{query_pairs, query_value};
use crate::http::Problem;
use crate::hub::Hub;
use crate::sse;

/// Messages a channel's live feed sends at most per second; the rest are counted as skipped, so
/// a busy channel cannot flood the page.
const LIVE_BURST: usize = 100;
/// How long the health probe of the store may take before the store counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The apps a request covers: the one it names (if the session may see it), else every app of
/// the session. Also whether it named one.
fn covered(admin: &Admin, signed: &Signed, parts: &Parts) -> Result<(Vec<String>, Option<String>), Problem> {
    let hub = &admin.0.hub;
    let pairs = query_pairs(parts);
    match (query_value(&pairs, "app").filter(|a| !a.is_empty()), signed.scope()) {
        (Some(app), _) => {
            let app = signed.app(hub, app)?;
            Ok((vec![app.clone()], Some(app)))
        }
        (None, Scope::App(own)) => Ok((vec![own.clone()], Some(own.clone()))),
        (None, Scope::Admin) => Ok((hub.app_ids(), None)),
    }
}

/// Whether the store (SQLite, memory or Redis) answers a read, and how fast: an unread count of
/// a user that does not exist.
async fn probe_store(hub: &Hub, app: &str) -> Value {
    let kind = match (&hub.config().redis_url, hub.config().store) {
        (Some(_), _) => "redis",
        (None, crate::config::StoreKind::Memory) => "memory",
        (None, crate::config::StoreKind::Sqlite) => "sqlite",
    };
    let start = Instant::now();
    let answer = tokio::time::timeout(PROBE_TIMEOUT, hub.unread(app, "herald-admin-health-probe")).await;
    let latency_ms = (start.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
    match answer {
        Ok(Ok(_)) => json!({ "kind": kind, "healthy": true, "latency_ms": latency_ms }),
        Ok(Err(e)) => json!({ "kind": kind, "healthy": false, "error": e.to_string() }),
        Err(_) => json!({ "kind": kind, "healthy": false, "error": format!("no answer within {PROBE_TIMEOUT:?}") }),
    }
}

/// `GET /admin/api/overview?app=`: the nodes, with this node's figures and health.
pub(super) async fn overview(State(admin): State<Admin>, signed: Signed, parts: Parts) -> Result<Response, Problem> {
    let hub = &admin.0.hub;
    let (apps, named) = covered(&admin, &signed, &parts)?;
    let own = hub.node_id().to_string();
    // Other nodes: connections and distinct users, from the cluster's presence. This node's
    // figures come from its registry, without listing its connections.
    let mut nodes: BTreeMap<String, (usize, BTreeSet<(String, String)>)> = BTreeMap::new();
    let mut per_app = Vec::new();
    let mut local_users = 0;
    let mut local_connections = 0;
    // With Redis down the cluster's presence is out of reach: this node is still shown, with why.
    let mut presence_error = None;
    for app in &apps {
        let local = hub.app_gauges(app)?.connections;
        let mut users: BTreeSet<String> = hub.local_users(app)?.into_keys().map(|u| u.to_string()).collect();
        local_connections += local;
        local_users += users.len();
        let remote = hub.remote_connections(app).await.unwrap_or_else(|error| {
            presence_error = Some(error.to_string());
            Vec::new()
        });
        for conn in &remote {
            let node = conn.id.rsplit_once('-').map_or("", |(n, _)| n).to_string();
            let entry = nodes.entry(node).or_default();
            entry.0 += 1;
            entry.1.extend(conn.user.clone().map(|u| (app.clone(), u)));
        }
        users.extend(remote.iter().filter_map(|c| c.user.clone()));
        per_app.push(json!({ "id": app, "connections": local + remote.len(), "users": users.len() }));
    }
    let recent = admin.0.samples.recent(signed.scope(), named.as_deref(), 5);
    let sees_node = matches!(signed.scope(), Scope::Admin) && named.is_none();
    let mut list = vec![json!({
        "id": own,
        "this_node": true,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": admin.0.started.elapsed().as_secs(),
        "connections": local_connections,
        "users": local_users,
        "publishes_per_sec": recent.map(|p| p.publishes_per_sec),
        "deliveries_per_sec": recent.and_then(|p| p.deliveries_per_sec),
        "slow_client_drops": sees_node.then(|| read_counters(hub).slow_client_drops),
        "store": probe_store(hub, &apps[0]).await,
    })];
    for (node, (connections, users)) in nodes.into_iter().filter(|(n, _)| *n != own) {
        list.push(json!({ "id": node, "this_node": false, "connections": connections, "users": users.len() }));
    }
    Ok(Json(json!({
        "cluster": hub.config().redis_url.is_some(),
        "presence_error": presence_error,
        "nodes": list,
        "apps": per_app,
    }))
    .into_response())
}

/// An SSE answer of `events`, ended when the hub shuts down.
fn event_stream(hub: &Hub, events: impl Stream<Item = Bytes> + Send + 'static) -> Response {
    let hub = hub.clone();
    let stream = futures_util::stream::once(async { sse::comment("admin") })
        .chain(events)
        .take_until(async move { hub.shutting_down().await })
        .map(Ok::<_, Infallible>);
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Whether the session behind a stream is still signed in; a stream ends with its session.
fn alive(admin: &Admin, signed: &Signed) -> bool {
    admin.0.sessions.get(&signed.id, Instant::now()).is_some()
}

/// `GET /admin/api/stream?app=`: the charts' points, as SSE: `history` (every kept point), then
/// one `sample` a second.
pub(super) async fn stream(State(admin): State<Admin>, signed: Signed, parts: Parts) -> Result<Response, Problem> {
    let (_, named) = covered(&admin, &signed, &parts)?;
    let samples = admin.0.samples.clone();
    let history =
        sse::event(None, Some("history"), &json!(samples.points(signed.scope(), named.as_deref())).to_string());
    let ticks = samples.subscribe();
    let hub = admin.0.hub.clone();
    let live = futures_util::stream::unfold((admin, signed, ticks), move |(admin, signed, mut ticks)| {
        let named = named.clone();
        async move {
            ticks.changed().await.ok()?;
            if !alive(&admin, &signed) {
                return None;
            }
            let point = admin.0.samples.last(signed.scope(), named.as_deref());
            let frame = match point {
                Some(point) => sse::event(None, Some("sample"), &json!(point).to_string()),
                None => sse::comment("warming up"),
            };
            Some((frame, (admin, signed, ticks)))
        }
    });
    Ok(event_stream(&hub, futures_util::stream::once(async { history }).chain(live)))
}

/// `GET /admin/api/apps/{app}/channels/{channel}/live`: the channel's messages as they are
/// published, as SSE `message` events (and `skipped` when a burst was too large to show).
pub(super) async fn channel(
    State(admin): State<Admin>,
    signed: Signed,
    Path((app, channel)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let hub = admin.0.hub.clone();
    let app = signed.app(&hub, &app)?;
    let mut head = hub.watch_head(&app)?;
    let from = *head.borrow_and_update();
    let live = futures_util::stream::unfold((admin, signed, head, from), move |(admin, signed, mut head, from)| {
        let (app, channel) = (app.clone(), channel.clone());
        async move {
            // A quiet channel's next message shows at once; a busy one is read once a second.
            tokio::select! {
                changed = head.changed() => changed.ok()?,
                () = tokio::time::sleep(INTERVAL) => {}
            }
            if !alive(&admin, &signed) {
                return None;
            }
            let (messages, at) = admin.0.hub.channel_messages(&app, &channel, Some(from), usize::MAX).ok()?;
            let mut frames = Vec::new();
            for m in messages.iter().take(LIVE_BURST) {
                frames.extend_from_slice(&sse::event(None, Some("message"), &message_json(m).to_string()));
            }
            if messages.len() > LIVE_BURST {
                let skipped = json!({ "skipped": messages.len() - LIVE_BURST });
                frames.extend_from_slice(&sse::event(None, Some("skipped"), &skipped.to_string()));
            }
            if !messages.is_empty() {
                tokio::time::sleep(INTERVAL).await;
            }
            Some((Bytes::from(frames), (admin, signed, head, at)))
        }
    });
    Ok(event_stream(&hub, live))
}
