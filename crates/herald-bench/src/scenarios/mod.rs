//! The benchmark scenarios. Each one starts its own subscribers, drives the publisher, and
//! returns a report; the server itself is started and stopped by the caller (`bench/compare`).

pub mod adversarial;
pub mod burst;
pub mod durable;
pub mod idle;
pub mod per_user;
pub mod presence;
pub mod reconnect;
pub mod resume;
pub mod soak;
pub mod steady;
pub mod unread;

use std::time::Duration;

use clap::Args;

use crate::fleet::{Connected, Fleet, Layout};
use crate::proc;
use crate::publisher::{self, Plan, Published};
use crate::report::Report;
use crate::stats::{summarize, Tally};
use crate::targets::{Mode, Target, To};
use crate::transport::TransportArgs;

/// How long deliveries may stall before the missing ones count as lost.
pub const QUIET: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Args)]
pub struct Common {
    #[command(flatten)]
    pub target: Target,
    /// Server processes to sample RSS and CPU time from, comma-separated and summed (with their
    /// children, for nginx workers).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Subscriber processes; by default as few as --per-worker allows.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Most subscribers in one process (a process may hold at most 20,000 open files).
    #[arg(long, default_value_t = 18_000)]
    pub per_worker: u32,
    /// Subscriber connection attempts in flight at once, per worker.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Keep-alive connections of the publisher.
    #[arg(long, default_value_t = 16)]
    pub publish_conns: usize,
    /// Name the report by this instead of the scenario (`bench/curves` names each point
    /// `<curve>@<x>`).
    #[arg(long)]
    pub report_as: Option<String>,
    /// Shell command run once the subscribers are connected, before the measured part (burst,
    /// steady, per-user; each throughput part of durable), e.g. `callgrind_control -z <pid>` to profile only that part.
    #[arg(long)]
    pub on_ready: Option<String>,
    /// Shell command run when the measured part has been delivered (`callgrind_control -d <pid>`).
    #[arg(long)]
    pub on_done: Option<String>,
}

impl Common {
    pub fn report(&self, scenario: &str) -> Report {
        Report::new(self.report_as.as_deref().unwrap_or(scenario), self.target.target.name())
    }

    pub async fn fleet(&self, mode: Mode, first: u32, count: u32) -> std::io::Result<(Fleet, Connected)> {
        self.fleet_over(mode, first, count, TransportArgs::default()).await
    }

    /// Like [`Common::fleet`], the subscribers connecting over `transport`.
    pub async fn fleet_over(
        &self,
        mode: Mode,
        first: u32,
        count: u32,
        transport: TransportArgs,
    ) -> std::io::Result<(Fleet, Connected)> {
        let layout = Layout {
            workers: self.workers,
            per_worker: self.per_worker,
            connect_concurrency: self.connect_concurrency,
            transport,
        };
        Fleet::start(&self.target, mode, first, count, layout).await
    }

    /// Runs `--on-ready` or `--on-done` when given, waiting for it to finish.
    pub async fn hook(&self, command: &Option<String>) -> std::io::Result<()> {
        if let Some(command) = command {
            let status = tokio::process::Command::new("sh").args(["-c", command]).status().await?;
            if !status.success() {
                return Err(std::io::Error::other(format!("`{command}` failed: {status}")));
            }
        }
        Ok(())
    }

    pub fn sample(&self) -> Option<proc::Sample> {
        if self.server_pid.is_empty() {
            return None;
        }
        let mut total = proc::Sample::default();
        for &pid in &self.server_pid {
            let s = proc::sample(pid).ok()?;
            total.rss_kb += s.rss_kb;
            total.cpu_us += s.cpu_us;
        }
        Some(total)
    }

    pub async fn publish(&self, to: Vec<To>, rate: Option<f64>, durable: bool) -> Published {
        self.publish_batched(to, rate, durable, 1).await
    }

    /// Like [`Common::publish`], `batch` messages per request.
    pub async fn publish_batched(&self, to: Vec<To>, rate: Option<f64>, durable: bool, batch: usize) -> Published {
        self.publish_from(to, rate, durable, batch, 0).await
    }

    /// Like [`Common::publish_batched`], numbering each stream's messages from `first`.
    pub async fn publish_from(
        &self,
        to: Vec<To>,
        rate: Option<f64>,
        durable: bool,
        batch: usize,
        first: u64,
    ) -> Published {
        let plan = Plan { to, rate, conns: self.publish_conns, durable, batch, first };
        publisher::run(&self.target, plan).await
    }

    /// One request to the server's API on a fresh connection: status and body.
    pub async fn api(&self, method: &str, path: &str, body: &str) -> std::io::Result<(u16, Vec<u8>)> {
        let request = self.target.api_request(method, path, body);
        publisher::Conn::new(self.target.addr).request(&request).await.map_err(std::io::Error::other)
    }
}

/// Connection figures every scenario reports.
pub fn add_connected(r: &mut Report, c: &Connected) {
    r.add("subscribers_connected", c.ok as f64, "", "higher");
    if c.failed > 0 {
        r.add("subscribers_failed", c.failed as f64, "", "lower");
    }
    if let Some(e) = &c.error {
        r.note(format!("first subscriber error: {e}"));
    }
}

/// Loss, duplicates, latency and publish errors of a delivery run.
pub fn add_delivery(r: &mut Report, expected: u64, tally: &Tally, published: &Published) {
    r.add("deliveries_expected", expected as f64, "", "")
        .add("lost", expected.saturating_sub(tally.unique) as f64, "", "lower")
        .add("duplicates", tally.duplicates as f64, "", "lower")
        .add("streams_broken", tally.broken as f64, "", "lower")
        .latency(&summarize(&tally.histogram()));
    r.add("publish_errors", published.errors as f64, "", "lower").add(
        "publisher_max_lag",
        published.max_lag_ms,
        "ms",
        "lower",
    );
    if let Some(d) = &tally.first_duplicate {
        r.note(format!("first duplicate: {d}"));
    }
    if let Some(e) = &published.first_error {
        r.note(format!("first publish error: {e}"));
    }
}

/// Deterministic pseudo-random users (xorshift), so both servers get the same sequence.
pub fn random_users(count: usize, users: u32, mut seed: u64) -> Vec<To> {
    (0..count)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            To::User((seed % users.max(1) as u64) as u32)
        })
        .collect()
}

/// Broadcast run shared by `burst` and `steady`: `messages` to every subscriber of the channel,
/// or, with `--groups N`, `messages` to each group's channel in turn, `batch` per request.
pub async fn broadcast(
    common: &Common,
    r: &mut Report,
    subscribers: u32,
    (messages, batch): (usize, usize),
    rate: Option<f64>,
) -> std::io::Result<(Tally, Published)> {
    let (mut fleet, connected) = common.fleet(Mode::Channel, 0, subscribers).await?;
    add_connected(r, &connected);
    let groups = common.target.spread.groups;
    let to = match groups {
        0 => vec![To::Channel; messages],
        n => (0..messages * n as usize).map(|m| To::Group(m as u32 % n)).collect(),
    };
    common.hook(&common.on_ready).await?;
    let before = common.sample();
    let bench_before = proc::sample(std::process::id()).ok();
    let published = common.publish_batched(to, rate, false, batch).await;
    // Every group has as many subscribers (the curves divide them evenly).
    let expected = published.ok * connected.ok as u64 / u64::from(groups.max(1));
    let tally = fleet.wait_for(expected, QUIET).await?;
    common.hook(&common.on_done).await?;
    let per_delivery = |b: Option<proc::Sample>, a: Option<proc::Sample>| {
        let (b, a) = (b?, a?);
        Some(a.cpu_us.saturating_sub(b.cpu_us) as f64 / tally.unique.max(1) as f64)
    };
    if let Some(cpu) = per_delivery(before, common.sample()) {
        r.add("server_cpu_per_delivery", cpu, "µs", "lower");
    }
    // The load generator shares the cores: its own cost shows whether it was the bottleneck.
    if let Some(cpu) = per_delivery(bench_before, proc::sample(std::process::id()).ok()) {
        r.add("bench_cpu_per_delivery", cpu, "µs", "");
    }
    add_delivery(r, expected, &tally, &published);
    Ok((tally, published))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_users_are_repeatable_and_in_range() {
        let a = random_users(1000, 10, 7);
        assert_eq!(a, random_users(1000, 10, 7));
        assert!(a.iter().all(|t| matches!(t, To::User(u) if *u < 10)));
        assert!((0..10).all(|u| a.contains(&To::User(u))));
    }
}
