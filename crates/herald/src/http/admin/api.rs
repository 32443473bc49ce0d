//! The dashboard's JSON API for one app: users and their connections, kicks, channels, publish
//! and a user's inbox. Each handler checks the session's scope, then calls the hub's library
//! function that the backend API calls too.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::request::Parts;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Admin, Signed};
use crate::http::api::{rfc3339_ms, PublishBody};
use crate::http::extract::{query_number, query_pairs, query_value, AckBody, JsonBody};
use crate::http::Problem;
use crate::hub::ConnectionFilter;
use crate::presence::ConnectionInfo;

const DEFAULT_PAGE: u64 = 50;
const MAX_PAGE: u64 = 500;
/// Channels listed at most; the search narrows a longer list.
const MAX_CHANNELS: usize = 1000;

fn limit(pairs: &[(String, String)], default: u64) -> Result<usize, Problem> {
    let limit = query_number(pairs, "limit")?.unwrap_or(default);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Problem::bad_request(format!("`limit` must be between 1 and {MAX_PAGE}")));
    }
    Ok(limit as usize)
}

/// Every open connection of `app` matching `filter`, cluster-wide.
async fn all_connections(admin: &Admin, app: &str, filter: &ConnectionFilter) -> Result<Vec<ConnectionInfo>, Problem> {
    Ok(admin.0.hub.connections(app, filter, usize::MAX - 1, None).await?.items)
}

/// `GET /admin/api/apps/{app}/users?q=&tenant=&channel=&cursor=&limit=`: online users whose id
/// contains `q` (any case), with their connections, `limit` at a time in id order.
pub(super) async fn users(
    State(admin): State<Admin>,
    signed: Signed,
    Path(app): Path<String>,
    parts: Parts,
) -> Result<Response, Problem> {
    let app = signed.app(&admin.0.hub, &app)?;
    let pairs = query_pairs(&parts);
    let limit = limit(&pairs, DEFAULT_PAGE)?;
    let non_empty = |key| query_value(&pairs, key).filter(|v| !v.is_empty()).map(str::to_owned);
    let filter = ConnectionFilter { user: None, tenant: non_empty("tenant"), channel: non_empty("channel") };
    let search = non_empty("q").map(|q| q.to_lowercase());
    let cursor = non_empty("cursor");
    let mut users: BTreeMap<String, Vec<ConnectionInfo>> = BTreeMap::new();
    let mut anonymous = 0;
    for conn in all_connections(&admin, &app, &filter).await? {
        match &conn.user {
            Some(user) => users.entry(user.clone()).or_default().push(conn),
            None => anonymous += 1,
        }
    }
    let mut matching: Vec<(String, Vec<ConnectionInfo>)> =
        users.into_iter().filter(|(id, _)| search.as_ref().is_none_or(|q| id.to_lowercase().contains(q))).collect();
    let total = matching.len();
    matching.retain(|(id, _)| cursor.as_ref().is_none_or(|after| id > after));
    let next_cursor = (matching.len() > limit).then(|| matching[limit - 1].0.clone());
    matching.truncate(limit);
    let users: Vec<Value> =
        matching.into_iter().map(|(id, connections)| json!({ "id": id, "connections": connections })).collect();
    Ok(Json(json!({ "users": users, "total": total, "anonymous_connections": anonymous, "next_cursor": next_cursor }))
        .into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct KickBody {
    #[serde(default)]
    reason: Option<String>,
}

fn reason(body: &KickBody) -> Option<&str> {
    body.reason.as_deref().map(str::trim).filter(|r| !r.is_empty())
}

/// `POST /admin/api/apps/{app}/users/{user}/kick` with `{"reason"}` (optional).
pub(super) async fn kick_user(
    State(admin): State<Admin>,
    signed: Signed,
    Path((app, user)): Path<(String, String)>,
    JsonBody(body): JsonBody<KickBody>,
) -> Result<Response, Problem> {
    let app = signed.app(&admin.0.hub, &app)?;
    let kicked = admin.0.hub.kick_user(&app, &user, reason(&body)).await?;
    tracing::info!(%app, %user, kicked, "Kicked a user from the admin dashboard.");
    Ok(Json(json!({ "kicked": kicked })).into_response())
}

/// `POST /admin/api/apps/{app}/connections/{id}/kick` with `{"reason"}` (optional).
pub(super) async fn kick_connection(
    State(admin): State<Admin>,
    signed: Signed,
    Path((app, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<KickBody>,
) -> Result<Response, Problem> {
    let app = signed.app(&admin.0.hub, &app)?;
    admin.0.hub.kick_connection(&app, &id, reason(&body)).await?;
    tracing::info!(%app, connection = %id, "Kicked a connection from the admin dashboard.");
    Ok(Json(json!({ "kicked": 1 })).into_response())
}

/// `GET /admin/api/apps/{app}/channels?q=`: channels joined by open connections, with how many
/// connections and users joined each, busiest first.
pub(super) async fn channels(
    State(admin): State<Admin>,
    signed: Signed,
    Path(app): Path<String>,
    parts: Parts,
) -> Result<Response, Problem> {
    let app = signed.app(&admin.0.hub, &app)?;
    let pairs = query_pairs(&parts);
    let search = query_value(&pairs, "q").filter(|q| !q.is_empty()).map(str::to_lowercase);
    let mut channels: BTreeMap<String, (usize, std::collections::BTreeSet<String>)> = BTreeMap::new();
    for conn in all_connections(&admin, &app, &ConnectionFilter::default()).await? {
        for channel in &conn.channels {
            if search.as_ref().is_none_or(|q| channel.to_lowercase().contains(q)) {
                let entry = channels.entry(channel.clone()).or_default();
                entry.0 += 1;
                entry.1.extend(conn.user.clone());
            }
        }
    }
    let mut list: Vec<(String, usize, usize)> =
        channels.into_iter().map(|(name, (subscribers, users))| (name, subscribers, users.len())).collect();
    list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let truncated = list.len() > MAX_CHANNELS;
    list.truncate(MAX_CHANNELS);
    let channels: Vec<Value> = list
        .into_iter()
        .map(|(name, subscribers, users)| json!({ "name": name, "subscribers": subscribers, "users": users }))
        .collect();
    Ok(Json(json!({ "channels": channels, "truncated": truncated })).into_response())
}

/// A message from history, as the dashboard shows it.
pub(super) fn message_json(m: &crate::message::Message) -> Value {
    json!({
        "id": m.id,
        "event": m.event,
        "data": m.data,
        "durable": m.durable,
        "to": m.targets,
        "at": rfc3339_ms(m.time_ms),
    })
}

/// `GET /admin/api/apps/{app}/channels/{channel}/history?limit=`: the channel's most recent
/// messages in history (those to the channel and to `all`), oldest first.
pub(super) async fn channel_history(
    State(admin): State<Admin>,
    signed: Signed,
    Path((app, channel)): Path<(String, String)>,
    parts: Parts,
) -> Result<Response, Problem> {
    let app = signed.app(&admin.0.hub, &app)?;
    let limit = limit(&query_pairs(&parts), DEFAULT_PAGE)?;
    let (messages, _) = admin.0.hub.channel_messages(&app, &channel, None, limit)?;
    let messages: Vec<Value> = messages.iter().map(|m| message_json(m)).collect();
    Ok(Json(json!({ "channel": channel, "messages": messages })).into_response())
}

/// `POST /admin/api/apps/{app}/publish`: the body of `POST /api/publish`, answered the same way.
pub(super) async fn publish(
    State(admin): State<Admin>,
    signed: Signed,
    Path(app): Path<String>,
    JsonBody(body): JsonBody<PublishBody>,
) -> Result<Response, Problem> {
    let app = signed.app(&admin.0.hub, &app)?;
    Ok(Json(admin.0.hub.publish(&app, body.into()).await?).into_response())
}

/// `GET /admin/api/apps/{app}/users/{user}/messages?state=unread|all&cursor=&limit=`: a page of
/// the user's durable messages, newest first, and their unread count.
pub(super) async fn messages(
    State(admin): State<Admin>,
    signed: Signed,
    Path((app, user)): Path<(String, String)>,
    parts: Parts,
) -> Result<Response, Problem> {
    let app = signed.app(&admin.0.hub, &app)?;
    let pairs = query_pairs(&parts);
    let unread_only = match query_value(&pairs, "state").unwrap_or("unread") {
        "unread" => true,
        "all" => false,
        other => return Err(Problem::bad_request(format!("`state` must be `unread` or `all`, not `{other}`"))),
    };
    let limit = limit(&pairs, DEFAULT_PAGE)?;
    let cursor = query_value(&pairs, "cursor").filter(|c| !c.is_empty());
    let hub = &admin.0.hub;
    let page = hub.messages(&app, &user, unread_only, limit, cursor).await?;
    let unread = hub.unread(&app, &user).await?;
    let messages: Vec<Value> = page
        .items
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "event": m.event,
                "data": m.data,
                "created_at": rfc3339_ms(m.created_ms),
                "expires_at": rfc3339_ms(m.expires_ms),
                "read_at": m.read_ms.map(rfc3339_ms),
            })
        })
        .collect();
    Ok(Json(json!({ "user": user, "unread": unread, "messages": messages, "next_cursor": page.next_cursor }))
        .into_response())
}

/// `POST /admin/api/apps/{app}/users/{user}/ack` with `{"ids": [...]}`.
pub(super) async fn ack(
    State(admin): State<Admin>,
    signed: Signed,
    Path((app, user)): Path<(String, String)>,
    JsonBody(body): JsonBody<AckBody>,
) -> Result<Response, Problem> {
    let app = signed.app(&admin.0.hub, &app)?;
    Ok(Json(admin.0.hub.ack(&app, &user, &body.ids).await?).into_response())
}
