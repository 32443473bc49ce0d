//! `presence`: the presence feed under a connect storm, then `GET /api/users` with everybody
//! online. The feed must report every connect of the storm, and how long it trails the storm is
//! its lag; a listing page should cost the same whether 1,000 or 19,000 users are online.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{add_connected, Common, QUIET};
use crate::http::{parse_head, Chunked};
use crate::publisher::Conn;
use crate::report::Report;
use crate::sse::Parser;
use crate::stats::{new_histogram, summarize};
use crate::targets::Mode;

#[derive(Debug, Clone, Args)]
pub struct PresenceArgs {
    /// Users connecting in the storm, one stream each.
    #[arg(long, default_value_t = 1000)]
    pub users: u32,
    /// Timed requests of the first `GET /api/users` page.
    #[arg(long, default_value_t = 50)]
    pub pages: usize,
    /// `limit` of each page (Herald allows at most 1,000).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// `connect` events the feed has delivered, when the last one arrived, and how many events it
/// said it dropped (`lagged`: the feed's buffer overflowed because its reader fell behind).
#[derive(Default)]
struct Feed {
    connects: Cell<u64>,
    last: Cell<Option<Instant>>,
    lagged: Cell<u64>,
}

pub async fn run(common: &Common, args: &PresenceArgs) -> std::io::Result<Report> {
    let mut r = common.report("presence");
    let feed = Rc::new(Feed::default());
    let reader = tokio::task::spawn_local(read_feed(common.clone(), feed.clone()));
    let storm = Instant::now();
    let (fleet, connected) = common.fleet(Mode::User, 0, args.users).await?;
    let storm_end = storm + Duration::from_secs_f64(connected.secs);
    add_connected(&mut r, &connected);
    r.add("connections_per_s", connected.per_sec(), "1/s", "higher");
    let waited = Instant::now();
    while feed.connects.get() < u64::from(connected.ok) && waited.elapsed() < QUIET && !reader.is_finished() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let lag = feed.last.get().map_or(0.0, |t| t.saturating_duration_since(storm_end).as_secs_f64() * 1000.0);
    r.add("feed_connects", feed.connects.get() as f64, "", "higher")
        .add("feed_missing", u64::from(connected.ok).saturating_sub(feed.connects.get()) as f64, "", "lower")
        .add("feed_lagged", feed.lagged.get() as f64, "", "lower")
        .add("feed_lag", lag, "ms", "lower");
    if reader.is_finished() {
        if let Ok(Err(e)) = reader.await {
            r.note(format!("presence feed: {e}"));
        }
    } else {
        reader.abort();
    }

    let mut conn = Conn::new(common.target.addr);
    let first_page = common.target.api_request("GET", &format!("/api/users?limit={}", args.limit), "");
    let mut times = new_histogram();
    for _ in 0..args.pages {
        let t = Instant::now();
        let (status, _) = conn.request(&first_page).await.map_err(std::io::Error::other)?;
        times.saturating_record(t.elapsed().as_micros() as u64);
        if status != 200 {
            r.note(format!("GET /api/users answered {status}"));
            break;
        }
    }
    let page = summarize(&times);
    r.add("users_page_p50", page.p50_ms, "ms", "lower").add("users_page_max", page.max_ms, "ms", "lower");
    let (listed, secs) = list_all(common, &mut conn, args.limit).await?;
    r.add("users_listed", listed as f64, "", "higher").add("users_list_all", secs * 1000.0, "ms", "lower");
    drop(fleet);
    Ok(r)
}

/// Walks every page of `GET /api/users`: users listed and seconds taken.
async fn list_all(common: &Common, conn: &mut Conn, limit: usize) -> std::io::Result<(usize, f64)> {
    let started = Instant::now();
    let (mut listed, mut cursor) = (0, None::<String>);
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/users?limit={limit}&cursor={c}"),
            None => format!("/api/users?limit={limit}"),
        };
        let (_, body) =
            conn.request(&common.target.api_request("GET", &path, "")).await.map_err(std::io::Error::other)?;
        let page: serde_json::Value = serde_json::from_slice(&body)?;
        listed += page["users"].as_array().map_or(0, Vec::len);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok((listed, started.elapsed().as_secs_f64())),
        }
    }
}

/// Reads `GET /api/presence` until it ends, counting `connect` events.
async fn read_feed(common: Common, feed: Rc<Feed>) -> Result<(), String> {
    let mut stream = TcpStream::connect(common.target.addr).await.map_err(|e| e.to_string())?;
    stream.write_all(&common.target.api_request("GET", "/api/presence", "")).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(8192);
    let (head, len) = loop {
        if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("closed before its head".into());
        }
        if let Some(found) = parse_head(&buf)? {
            break found;
        }
    };
    if head.status != 200 {
        return Err(format!("status {}", head.status));
    }
    let mut chunked = head.chunked.then(Chunked::default);
    let mut parser = Parser::default();
    let mut on_event = |e: crate::sse::Event<'_>| {
        if e.event == "connect" {
            feed.connects.set(feed.connects.get() + 1);
            feed.last.set(Some(Instant::now()));
        } else if e.event == "lagged" {
            let missed = serde_json::from_str::<serde_json::Value>(e.data).ok().and_then(|v| v["missed"].as_u64());
            feed.lagged.set(feed.lagged.get() + missed.unwrap_or(0));
        }
    };
    let mut pending = buf.split_off(len);
    loop {
        match chunked.as_mut() {
            Some(c) => {
                c.decode(&pending, &mut |b| parser.feed(b, &mut on_event))?;
            }
            None => parser.feed(&pending, &mut on_event),
        }
        pending.clear();
        if stream.read_buf(&mut pending).await.map_err(|e| e.to_string())? == 0 {
            return Ok(());
        }
    }
}
