//! `adversarial`: a healthy fleet on a steady broadcast is measured three times: quiet, while
//! attackers run, and after they stop and the server has settled. The attackers: stalled
//! readers that never read, slowloris heads on the stream and API paths, slow publish bodies, a
//! connection flood from one address, and junk (bad tokens, oversized and malformed publishes)
//! at a steady rate. Reported: the healthy p99 and loss per phase, the server's RSS and open
//! files before, during and after, and how many attacker connections the server shed and how
//! fast.

mod flood;
mod junk;
mod raw;
mod server;
mod slow;
mod stalled;

use std::time::{Duration, Instant};

use clap::Args;
use tokio::sync::watch;
use tokio::task::spawn_local;

use super::{add_connected, Common, QUIET};
use crate::fleet::Fleet;
use crate::publisher::{self, Plan};
use crate::report::Report;
use crate::stats::{summarize, Summary, Tally};
use crate::targets::{Kind, Mode, To};

/// Source address families (127.<family>.x.y) of the attackers.
const STALLED_FAMILY: u8 = 10;
const FLOOD_FAMILY: u8 = 11;
const SLOW_FAMILY: u8 = 12;
const JUNK_FAMILY: u8 = 13;
const PUBLISH_FAMILY: u8 = 14;
/// Open files above the baseline that still count as settled (the bench's own `/metrics`
/// requests, a publisher connection or two).
const FD_SLACK: u64 = 24;
/// RSS above the baseline that still counts as back to it.
const RSS_SLACK: f64 = 0.10;

#[derive(Debug, Clone, Args)]
pub struct AdversarialArgs {
    /// Healthy subscribers of the broadcast channel.
    #[arg(long, default_value_t = 2_000)]
    pub subscribers: u32,
    /// Healthy broadcast messages per second.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Length of each measured phase: quiet, under attack, after it.
    #[arg(long, default_value_t = 20.0)]
    pub secs: f64,
    /// Longest wait after the attack for the server's open files to return to their baseline.
    #[arg(long, default_value_t = 60.0)]
    pub settle_secs: f64,
    /// Stalled readers: valid subscribers that never read.
    #[arg(long, default_value_t = 5_000)]
    pub stalled: u32,
    /// Large messages per second to the stalled readers' channel.
    #[arg(long, default_value_t = 40.0)]
    pub stall_rate: f64,
    /// Bytes of data in each of those messages.
    #[arg(long, default_value_t = 48 * 1024)]
    pub stall_bytes: usize,
    /// Slowloris connections on each path (`GET /events` and `POST /api/publish`).
    #[arg(long, default_value_t = 100)]
    pub slowloris: u32,
    /// Slow-body publishes.
    #[arg(long, default_value_t = 100)]
    pub slow_bodies: u32,
    /// Seconds between the bytes a slow client sends.
    #[arg(long, default_value_t = 2.0)]
    pub drip_secs: f64,
    /// Subscriptions from one address opened at once: more than the server's
    /// `max_connections_per_ip`.
    #[arg(long, default_value_t = 4_000)]
    pub flood: u32,
    /// Further subscriptions per second from that address until the attack ends.
    #[arg(long, default_value_t = 200.0)]
    pub flood_rate: f64,
    /// Bad-token and bad-publish requests per second, each on a new connection.
    #[arg(long, default_value_t = 1_000.0)]
    pub junk_rate: f64,
    /// The server's `max_payload_bytes`: oversized publishes exceed it.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_payload_bytes: usize,
}

pub async fn run(common: &Common, args: &AdversarialArgs) -> std::io::Result<Report> {
    if common.target.target != Kind::Herald || !common.target.addr.is_ipv4() {
        return Err(std::io::Error::other("the adversarial scenario attacks Herald on an IPv4 loopback address"));
    }
    let mut r = common.report("adversarial");
    let (fleet, connected) = common.fleet(Mode::Channel, 0, args.subscribers).await?;
    add_connected(&mut r, &connected);
    let mut healthy = Healthy { fleet, subscribers: u64::from(connected.ok), next: 0, so_far: Tally::default() };
    let origin = Instant::now();
    let baseline = server::point(common, origin).await;
    let quiet = healthy.measure(common, args).await?;

    let (stop_tx, stop) = watch::channel(false);
    let since = Instant::now();
    let watcher = spawn_local(server::watch(common.clone(), since, stop.clone()));
    let target = &common.target;
    let stall = stalled::Plan {
        count: args.stalled,
        rate: args.stall_rate,
        bytes: args.stall_bytes,
        connect_concurrency: common.connect_concurrency,
    };
    let stalled = spawn_local(stalled::run(target.clone(), stall, since, stop.clone()));
    let drip = Duration::from_secs_f64(args.drip_secs);
    let slow: Vec<_> = [
        (slow::Kind::HeadEvents, args.slowloris),
        (slow::Kind::HeadPublish, args.slowloris),
        (slow::Kind::Body, args.slow_bodies),
    ]
    .into_iter()
    .map(|(kind, n)| (kind, spawn_local(slow::run(target.clone(), kind, n, drip, stop.clone()))))
    .collect();
    let flood =
        spawn_local(flood::run(target.clone(), args.flood, args.flood_rate, common.connect_concurrency, stop.clone()));
    let junk = spawn_local(junk::run(target.clone(), args.junk_rate, args.max_payload_bytes, stop.clone()));
    let attack = healthy.measure(common, args).await?;
    stop_tx.send_replace(true);
    let attack_secs = since.elapsed().as_secs_f64();
    let points = watcher.await.map_err(std::io::Error::other)?;
    let stalled = stalled.await.map_err(std::io::Error::other)?;
    let mut held = Vec::new();
    for (kind, task) in slow {
        held.push((kind, task.await.map_err(std::io::Error::other)?));
    }
    let flood = flood.await.map_err(std::io::Error::other)?;
    let junk = junk.await.map_err(std::io::Error::other)?;

    let settle_started = Instant::now();
    let settled = loop {
        let p = server::point(common, origin).await;
        if p.fds <= baseline.fds + FD_SLACK || settle_started.elapsed().as_secs_f64() > args.settle_secs {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let settle_secs = settle_started.elapsed().as_secs_f64();
    let after = healthy.measure(common, args).await?;
    let end = server::point(common, origin).await;

    for (name, phase) in [("quiet", &quiet), ("attack", &attack), ("after", &after)] {
        phase.add(&mut r, name);
    }
    let ratio = attack.latency.p99_ms / quiet.latency.p99_ms.max(1e-9);
    r.add("attack_p99_ratio", ratio, "×", "lower").add("attack_secs", attack_secs, "s", "");
    let peak = |f: fn(&server::Point) -> u64| points.iter().map(f).max().unwrap_or(0);
    r.add("server_rss_baseline", baseline.rss_kb as f64, "KiB", "lower")
        .add("server_rss_peak", peak(|p| p.rss_kb) as f64, "KiB", "lower")
        .add("server_rss_settled", settled.rss_kb as f64, "KiB", "lower")
        .add("server_rss_after", end.rss_kb as f64, "KiB", "lower")
        .add("server_fds_baseline", baseline.fds as f64, "", "lower")
        .add("server_fds_peak", peak(|p| p.fds) as f64, "", "lower")
        .add("server_fds_settled", settled.fds as f64, "", "lower")
        .add("server_fds_after", end.fds as f64, "", "lower")
        .add("server_streams_peak", peak(|p| p.streams.unwrap_or(0)) as f64, "", "")
        .add("host_tcp_mem_baseline", baseline.tcp_mem_kb as f64, "KiB", "lower")
        .add("host_tcp_mem_peak", peak(|p| p.tcp_mem_kb) as f64, "KiB", "lower")
        .add("host_tcp_mem_after", end.tcp_mem_kb as f64, "KiB", "lower")
        .add("host_tcp_orphans_peak", peak(|p| p.orphans) as f64, "", "lower")
        .add("host_tcp_orphans_after", end.orphans as f64, "", "lower")
        .add("settle_time", settle_secs, "s", "lower");
    add_stalled(&mut r, &stalled, &points);
    // Their messages stay in the channel's history (bounded by count and age, not bytes), so this
    // much of the RSS after the attack is history, not connections.
    let stalled_data = stalled.published.get("200").copied().unwrap_or(0) * args.stall_bytes as u64 / 1024;
    r.add("stalled_data_published", stalled_data as f64, "KiB", "");
    for (kind, held) in &held {
        add_held(&mut r, kind.name(), held);
    }
    add_flood(&mut r, &flood);
    add_junk(&mut r, &junk);

    let verdict = |met: bool| if met { "met" } else { "missed" };
    r.note(format!("goal healthy p99 under attack within 1.5× of quiet: {} ({ratio:.2}×)", verdict(ratio <= 1.5)));
    let lost = [quiet.lost, attack.lost, after.lost];
    r.note(format!("goal zero healthy loss: {} (lost quiet/attack/after: {lost:?})", verdict(lost == [0, 0, 0])));
    let rss_back = end.rss_kb as f64 <= baseline.rss_kb as f64 * (1.0 + RSS_SLACK);
    let fds_back = end.fds <= baseline.fds + FD_SLACK;
    r.note(format!(
        "goal back to baseline after the attack (RSS within {:.0} %, open files within {FD_SLACK}): {} (RSS {} → peak {} → {} KiB, files {} → peak {} → {})",
        RSS_SLACK * 100.0,
        verdict(rss_back && fds_back),
        baseline.rss_kb,
        peak(|p| p.rss_kb),
        end.rss_kb,
        baseline.fds,
        peak(|p| p.fds),
        end.fds
    ));
    Ok(r)
}

/// The healthy side: a fleet on the broadcast channel, and the messages published to it so far.
struct Healthy {
    fleet: Fleet,
    subscribers: u64,
    /// Number of the next message, so that each phase continues the stream.
    next: u64,
    /// What the fleet had received when the last phase ended.
    so_far: Tally,
}

/// One measured phase of the healthy side.
struct Phase {
    expected: u64,
    lost: u64,
    duplicates: u64,
    broken: u64,
    latency: Summary,
    publish_errors: u64,
    max_lag_ms: f64,
}

impl Healthy {
    /// Publishes `rate` messages per second for `secs` and waits for their deliveries.
    async fn measure(&mut self, common: &Common, args: &AdversarialArgs) -> std::io::Result<Phase> {
        let messages = (args.rate * args.secs).round() as usize;
        let to = vec![To::Channel; messages];
        let plan =
            Plan { to, rate: Some(args.rate), conns: common.publish_conns, durable: false, batch: 1, first: self.next };
        let published = publisher::run(&common.target, plan).await;
        self.next += messages as u64;
        let expected = published.ok * self.subscribers;
        let tally = self.fleet.wait_for(self.so_far.unique + expected, QUIET).await?;
        let mut latency = tally.histogram();
        latency.subtract(self.so_far.histogram()).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let phase = Phase {
            expected,
            lost: expected.saturating_sub(tally.unique - self.so_far.unique),
            duplicates: tally.duplicates - self.so_far.duplicates,
            broken: tally.broken - self.so_far.broken,
            latency: summarize(&latency),
            publish_errors: published.errors,
            max_lag_ms: published.max_lag_ms,
        };
        self.so_far = tally;
        Ok(phase)
    }
}

impl Phase {
    fn add(&self, r: &mut Report, name: &str) {
        let m = |metric: &str| format!("{name}_{metric}");
        r.add(&m("deliveries_expected"), self.expected as f64, "", "")
            .add(&m("lost"), self.lost as f64, "", "lower")
            .add(&m("duplicates"), self.duplicates as f64, "", "lower")
            .add(&m("streams_broken"), self.broken as f64, "", "lower")
            .add(&m("latency_p50"), self.latency.p50_ms, "ms", "lower")
            .add(&m("latency_p99"), self.latency.p99_ms, "ms", "lower")
            .add(&m("latency_max"), self.latency.max_ms, "ms", "lower")
            .add(&m("publish_errors"), self.publish_errors as f64, "", "lower")
            .add(&m("publisher_max_lag"), self.max_lag_ms, "ms", "lower");
    }
}

/// The `q` quantile of `values` (0 when empty).
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0)
}

fn add_statuses(r: &mut Report, prefix: &str, statuses: &raw::Statuses) {
    for (status, n) in statuses {
        r.add(&format!("{prefix}_{status}"), *n as f64, "", "");
    }
}

fn add_stalled(r: &mut Report, s: &stalled::Stalled, points: &[server::Point]) {
    r.add("stalled_connected", s.connected as f64, "", "higher")
        .add("stalled_closed_by_server", s.closed as f64, "", "higher")
        .add("stalled_still_open", s.open as f64, "", "lower");
    if s.failed > 0 {
        r.add("stalled_failed", s.failed as f64, "", "lower");
    }
    if let Some(e) = &s.first_error {
        r.note(format!("first stalled reader error: {e}"));
    }
    add_statuses(r, "stalled_publish", &s.published);
    // Drops counted by the server, from the first large message on.
    let base = points.first().and_then(|p| p.drops).unwrap_or(0);
    let shed_by = |share: f64| {
        let want = (s.connected as f64 * share).ceil() as u64;
        points.iter().find(|p| p.drops.is_some_and(|d| d - base >= want.max(1))).map(|p| p.at - s.publish_started)
    };
    let dropped = points.iter().filter_map(|p| p.drops).max().unwrap_or(base) - base;
    r.add("stalled_dropped_by_server", dropped as f64, "", "higher");
    for (name, share) in [("stalled_shed_half_time", 0.5), ("stalled_shed_all_time", 1.0)] {
        match shed_by(share) {
            Some(secs) => r.add(name, secs.max(0.0), "s", "lower"),
            None => r.note(format!("{name}: not reached while the attack ran")),
        };
    }
}

fn add_held(r: &mut Report, name: &str, h: &slow::Held) {
    r.add(&format!("{name}_closed"), h.closed_after.len() as f64, "", "")
        .add(&format!("{name}_closed_p50"), quantile(&h.closed_after, 0.5), "s", "lower")
        .add(&format!("{name}_closed_max"), quantile(&h.closed_after, 1.0), "s", "lower")
        .add(&format!("{name}_open_at_end"), h.open_at_end as f64, "", "lower")
        .add(&format!("{name}_longest_open"), h.longest_open, "s", "lower");
    add_statuses(r, &format!("{name}_answer"), &h.answers);
    if h.closed_after.is_empty() && h.open_at_end > 0 {
        r.note(format!("{name}: not closed within {:.0} s", h.longest_open));
    }
}

fn add_flood(r: &mut Report, f: &flood::Flood) {
    add_statuses(r, "flood", &f.answers);
    r.add("flood_refusal_p50", quantile(&f.refused_after_ms, 0.5), "ms", "lower").add(
        "flood_refusal_p99",
        quantile(&f.refused_after_ms, 0.99),
        "ms",
        "lower",
    );
}

fn add_junk(r: &mut Report, j: &junk::Junk) {
    r.add("junk_sent", j.sent as f64, "", "").add("junk_per_s", j.sent as f64 / j.secs.max(1e-9), "1/s", "");
    for (kind, statuses) in &j.answers {
        add_statuses(r, kind, statuses);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        assert_eq!(quantile(&[], 0.5), 0.0);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 1.0), 3.0);
        assert_eq!(quantile(&[5.0], 0.99), 5.0);
    }
}
