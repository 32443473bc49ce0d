//! The server's side of the attack as seen from outside: RSS and open files from /proc, and
//! streams and slow-client drops from its `/metrics`, and the host's TCP memory, sampled while
//! the attack runs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::proc;
use crate::scenarios::Common;

/// How often the server is sampled during the attack.
const EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy)]
pub struct Point {
    /// Seconds since the attack started.
    pub at: f64,
    pub rss_kb: u64,
    pub fds: u64,
    /// `herald_connections` and `herald_slow_client_drops_total`, when `/metrics` answered.
    pub streams: Option<u64>,
    pub drops: Option<u64>,
    /// The host's TCP socket memory (KiB) and orphaned sockets.
    pub tcp_mem_kb: u64,
    pub orphans: u64,
}

/// One sample of every server process.
pub async fn point(common: &Common, since: Instant) -> Point {
    let fds = common.server_pid.iter().filter_map(|&pid| proc::open_fds(pid).ok()).sum();
    let (streams, drops) = metrics(common.target.addr).await.unzip();
    let (tcp_mem_kb, orphans) = proc::tcp_sockstat().unwrap_or_default();
    let rss_kb = common.sample().map_or(0, |s| s.rss_kb);
    Point { at: since.elapsed().as_secs_f64(), rss_kb, fds, streams, drops, tcp_mem_kb, orphans }
}

/// Samples every [`EVERY`] until `stop` turns true.
pub async fn watch(common: Common, since: Instant, mut stop: watch::Receiver<bool>) -> Vec<Point> {
    let mut points = Vec::new();
    loop {
        points.push(point(&common, since).await);
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            _ = stop.wait_for(|s| *s) => return points,
        }
    }
}

/// The open-stream gauge and the slow-client drop counter from `GET /metrics`.
async fn metrics(addr: SocketAddr) -> Option<(u64, u64)> {
    let fetch = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await.ok()?;
        parse_metrics(&text)
    };
    tokio::time::timeout(Duration::from_secs(2), fetch).await.ok().flatten()
}

fn parse_metrics(text: &str) -> Option<(u64, u64)> {
    let value = |name: &str| crate::prom::sum(text, name).map(|v| v as u64);
    Some((value("herald_connections")?, value("herald_slow_client_drops_total")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text() {
        let text = "HTTP/1.1 200 OK\r\n\r\n# HELP herald_connections x\nherald_connections 12\n\
                    herald_connects_total 40\nherald_slow_client_drops_total 7\n";
        assert_eq!(parse_metrics(text), Some((12, 7)));
        assert_eq!(parse_metrics("herald_connections 1\n"), None);
        let labelled = "herald_connections{app=\"a\"} 2\nherald_connections{app=\"b\"} 3\n\
                        herald_slow_client_drops_total{app=\"a\"} 1\nherald_slow_client_drops_total{app=\"b\"} 0\n";
        assert_eq!(parse_metrics(labelled), Some((5, 1)));
    }
}
