//! Stalled readers: valid subscribers of a channel of their own that read their answer's head
//! and then nothing, with a small receive buffer, while that channel gets large messages. The
//! server must drop each one once its queue (`limits.queue_bytes`) overflows. A dropped stream's
//! end only reaches its client once the client reads, so whether it was closed is seen when
//! the attack ends and every stalled reader drains its socket; when is seen by the server's
//! slow-client drop counter (see `server`).

use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};

use super::raw::{self, Statuses};
use crate::targets::Target;

pub const CHANNEL: &str = "stalled";
/// Stalled readers are users `u100000` and up.
const FIRST_USER: u32 = 100_000;
const PER_SOURCE: u32 = 1000;
const RCVBUF: u32 = 4096;
/// A drained stream that stays silent this long was not closed by the server.
const DRAIN_IDLE: Duration = Duration::from_secs(3);

#[derive(Debug, Default)]
pub struct Stalled {
    pub connected: u64,
    pub failed: u64,
    pub first_error: Option<String>,
    /// When the first large message was published, in seconds since the attack started.
    pub publish_started: f64,
    pub published: Statuses,
    /// Streams the server had closed (end of stream or reset when drained).
    pub closed: u64,
    /// Streams still open when drained.
    pub open: u64,
}

pub struct Plan {
    pub count: u32,
    /// Large messages per second to the stalled channel.
    pub rate: f64,
    pub bytes: usize,
    pub connect_concurrency: usize,
}

pub async fn run(target: Target, plan: Plan, since: Instant, mut stop: watch::Receiver<bool>) -> Stalled {
    let mut out = Stalled::default();
    let streams = open(&target, &plan, &mut out).await;
    out.publish_started = since.elapsed().as_secs_f64();
    let body = format!(r#"{{"to":{{"channels":["{CHANNEL}"]}},"event":"s","data":"{}"}}"#, "x".repeat(plan.bytes));
    let request = raw::post(target.addr, "/api/publish", &target.api_key, body.as_bytes());
    let start = Instant::now();
    for i in 0u64.. {
        let due = start + Duration::from_secs_f64(i as f64 / plan.rate.max(0.001));
        tokio::select! {
            () = tokio::time::sleep_until(due.into()) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let outcome = raw::one_shot(target.addr, raw::source(super::PUBLISH_FAMILY, 0), &request).await;
        raw::count(&mut out.published, &outcome);
    }
    let (closed, open) = drain(streams).await;
    out.closed = closed;
    out.open = open;
    out
}

/// Opens the stalled subscriptions; the ones answered 200.
async fn open(target: &Target, plan: &Plan, out: &mut Stalled) -> Vec<TcpStream> {
    let gate = Rc::new(Semaphore::new(plan.connect_concurrency.max(1)));
    let tasks: Vec<_> = (0..plan.count)
        .map(|i| {
            let (gate, target) = (gate.clone(), target.clone());
            tokio::task::spawn_local(async move {
                let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
                let token = crate::jwt::mint(&target.jwt_secret, FIRST_USER + i, &[CHANNEL]);
                let path = format!("/events?channel={CHANNEL}&access_token={token}");
                let source = raw::source(super::STALLED_FAMILY, i / PER_SOURCE);
                let mut stream = raw::connect(target.addr, source, Some(RCVBUF)).await?;
                match raw::exchange(&mut stream, &raw::get(target.addr, &path)).await? {
                    200 => Ok(stream),
                    status => Err(format!("status {status}")),
                }
            })
        })
        .collect();
    let mut streams = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(stream) => streams.push(stream),
            Err(e) => {
                out.failed += 1;
                out.first_error.get_or_insert(e);
            }
        }
    }
    out.connected = streams.len() as u64;
    streams
}

/// Reads every stream to its end: (closed by the server, still open).
async fn drain(streams: Vec<TcpStream>) -> (u64, u64) {
    let gate = Rc::new(Semaphore::new(256));
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let gate = gate.clone();
            tokio::task::spawn_local(async move {
                let _permit = gate.acquire().await;
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match tokio::time::timeout(DRAIN_IDLE, stream.read(&mut buf)).await {
                        Ok(Ok(0) | Err(_)) => return true,
                        Ok(Ok(_)) => {}
                        Err(_) => return false,
                    }
                }
            })
        })
        .collect();
    let mut closed = 0;
    let mut open = 0;
    for task in tasks {
        match task.await {
            Ok(true) => closed += 1,
            _ => open += 1,
        }
    }
    (closed, open)
}
