//! Slow clients: request heads sent one byte at a time (slowloris, on the stream path and on
//! the API path), and publish bodies that announce more than they send. Each slot reconnects
//! as soon as the server closes it, for as long as the attack lasts, and records how long the
//! server let it hold its connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::raw::{self, Statuses};
use crate::http::parse_head;
use crate::targets::Target;

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `GET /events?...` head, one byte per drip.
    HeadEvents,
    /// `POST /api/publish` head, one byte per drip.
    HeadPublish,
    /// `POST /api/publish` with a valid key and a body announced larger than sent, one byte
    /// per drip.
    Body,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::HeadEvents => "slowloris_events",
            Kind::HeadPublish => "slowloris_publish",
            Kind::Body => "slow_body",
        }
    }

    /// What is sent at once, then what is dripped (never all of it within an attack).
    fn request(self, target: &Target) -> (Vec<u8>, Vec<u8>) {
        let server = target.addr;
        let pad = format!("X-Pad: {}", "a".repeat(8192));
        match self {
            Kind::HeadEvents => {
                let token = crate::jwt::mint(&target.jwt_secret, 0, &[crate::targets::CHANNEL]);
                let head = format!("GET /events?access_token={token} HTTP/1.1\r\nHost: {server}\r\n{pad}");
                (Vec::new(), head.into_bytes())
            }
            Kind::HeadPublish => {
                let head = format!(
                    "POST /api/publish HTTP/1.1\r\nHost: {server}\r\nAuthorization: Bearer {}\r\n{pad}",
                    target.api_key
                );
                (Vec::new(), head.into_bytes())
            }
            Kind::Body => {
                let body = format!(r#"{{"to":{{"channels":["void"]}},"data":"{}"}}"#, "a".repeat(8192));
                let mut head = raw::post(server, "/api/publish", &target.api_key, body.as_bytes());
                head.truncate(head.len() - body.len());
                (head, body.into_bytes())
            }
        }
    }
}

/// How long the server let the connections of one kind hold on.
#[derive(Debug, Default)]
pub struct Held {
    /// Seconds from connecting to the server's answer or close, per connection it ended.
    pub closed_after: Vec<f64>,
    /// The answers it gave (a close without one counts as `closed`).
    pub answers: Statuses,
    /// Connections still open when the attack ended, and the longest such hold.
    pub open_at_end: u64,
    pub longest_open: f64,
}

impl Held {
    fn merge(&mut self, o: Held) {
        self.closed_after.extend(o.closed_after);
        for (k, v) in o.answers {
            *self.answers.entry(k).or_default() += v;
        }
        self.open_at_end += o.open_at_end;
        self.longest_open = self.longest_open.max(o.longest_open);
    }
}

/// Runs `slots` connections of `kind` until `stop`.
pub async fn run(target: Target, kind: Kind, slots: u32, drip: Duration, stop: watch::Receiver<bool>) -> Held {
    let (first, rest) = kind.request(&target);
    let server = target.addr;
    let tasks: Vec<_> = (0..slots)
        .map(|slot| {
            let (first, rest, stop) = (first.clone(), rest.clone(), stop.clone());
            let source = raw::source(super::SLOW_FAMILY, slot / 100);
            tokio::task::spawn_local(async move {
                let mut held = Held::default();
                while !*stop.borrow() {
                    hold(server, source, (&first, &rest), drip, stop.clone(), &mut held).await;
                }
                held
            })
        })
        .collect();
    let mut all = Held::default();
    for task in tasks {
        if let Ok(held) = task.await {
            all.merge(held);
        }
    }
    all
}

/// One connection: sends `first`, then one byte of `rest` per drip until the server answers or
/// closes, or the attack stops.
async fn hold(
    server: SocketAddr,
    source: std::net::IpAddr,
    (first, rest): (&[u8], &[u8]),
    drip: Duration,
    mut stop: watch::Receiver<bool>,
    held: &mut Held,
) {
    let started = Instant::now();
    let mut stream = match raw::connect(server, source, None).await {
        Ok(s) => s,
        Err(_) => {
            *held.answers.entry("connect_error".into()).or_default() += 1;
            tokio::time::sleep(drip).await;
            return;
        }
    };
    let mut sent = 0;
    let mut buf = Vec::with_capacity(1024);
    let ended = if stream.write_all(first).await.is_err() {
        Some("closed".to_string())
    } else {
        loop {
            tokio::select! {
                r = stream.read_buf(&mut buf) => break Some(match (r, parse_head(&buf)) {
                    (Ok(n), Ok(Some((head, _)))) if n > 0 => head.status.to_string(),
                    (Ok(n), Ok(None)) if n > 0 && buf.len() < 16 * 1024 => continue,
                    _ => "closed".to_string(),
                }),
                () = tokio::time::sleep(drip) => {
                    let byte = rest.get(sent..=sent).unwrap_or(b"a");
                    sent += 1;
                    if stream.write_all(byte).await.is_err() {
                        break Some("closed".to_string());
                    }
                }
                _ = stop.wait_for(|s| *s) => break None,
            }
        }
    };
    let secs = started.elapsed().as_secs_f64();
    match ended {
        Some(answer) => {
            held.closed_after.push(secs);
            *held.answers.entry(answer).or_default() += 1;
        }
        None => {
            held.open_at_end += 1;
            held.longest_open = held.longest_open.max(secs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            target: crate::targets::Kind::Herald,
            addr: "127.0.0.1:9".parse().unwrap(),
            sub_addrs: Vec::new(),
            api_key: "k".into(),
            jwt_secret: "s".into(),
            spread: Default::default(),
        }
    }

    #[test]
    fn heads_never_end_and_bodies_fall_short() {
        for kind in [Kind::HeadEvents, Kind::HeadPublish] {
            let (first, rest) = kind.request(&target());
            assert!(first.is_empty());
            assert!(!rest.windows(4).any(|w| w == b"\r\n\r\n"), "{kind:?}");
        }
        let (head, body) = Kind::Body.request(&target());
        let head = String::from_utf8(head).unwrap();
        assert!(head.ends_with(&format!("Content-Length: {}\r\n\r\n", body.len())), "{head}");
    }
}
