//! `soak`: constant load for `--minutes`, watching the server for anything that grows without
//! bound. A broadcast at a steady rate and per-user messages go to two fleets, a share of each
//! fleet drops and resumes with its Last-Event-ID every `--churn-secs`, and durable messages are
//! published and acknowledged through the API. Every `--sample-secs` the server's RSS, open files,
//! runtime tasks (`herald_runtime_tasks` at /metrics) and SQLite files are sampled; the report
//! gives each one's slope over the whole run and over its second half (after history has filled),
//! and `--samples` writes them as CSV for a plot.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use super::{add_delivery, random_users, Common, QUIET};
use crate::fleet::{Connected, Fleet};
use crate::publisher::{Conn, Published};
use crate::report::Report;
use crate::stats::Tally;
use crate::targets::{Mode, To};

#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Subscribers of the broadcast channel.
    #[arg(long, default_value_t = 2000)]
    pub subscribers: u32,
    /// Broadcast messages per second.
    #[arg(long, default_value_t = 5.0)]
    pub broadcast_rate: f64,
    /// Users, one stream each.
    #[arg(long, default_value_t = 2000)]
    pub users: u32,
    /// Per-user messages per second, each to one random user.
    #[arg(long, default_value_t = 200.0)]
    pub user_rate: f64,
    /// Durable messages per second, each acknowledged through the API once published.
    #[arg(long, default_value_t = 10.0)]
    pub durable_rate: f64,
    /// Share of each fleet that drops and resumes every `--churn-secs`.
    #[arg(long, default_value_t = 0.1)]
    pub churn_share: f64,
    #[arg(long, default_value_t = 5.0)]
    pub churn_secs: f64,
    #[arg(long, default_value_t = 10.0)]
    pub sample_secs: f64,
    /// The server's SQLite file (its `-wal` and `-shm` are added); omit for the memory store.
    #[arg(long)]
    pub store_path: Option<PathBuf>,
    /// Where to write the samples as CSV.
    #[arg(long)]
    pub samples: Option<PathBuf>,
}

/// One sample of the server.
#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    rss_kb: f64,
    fds: f64,
    tasks: f64,
    connections: f64,
    store_kb: f64,
}

const COLUMNS: &str = "secs,rss_kib,open_fds,tasks,connections,store_kib";

/// A stable fleet and a churning one: users `first..split` and `split..first + n` in `mode`.
/// The two pairs of a soak have disjoint users: a per-user message reaches every stream of its
/// user, the broadcast ones too.
struct Pair {
    stable: Fleet,
    churn: Fleet,
    first: u32,
    split: u32,
    n: u32,
}

impl Pair {
    async fn start(
        common: &Common,
        r: &mut Report,
        (mode, first, n): (Mode, u32, u32),
        share: f64,
    ) -> std::io::Result<Pair> {
        let churning = ((f64::from(n) * share).round() as u32).clamp(1, n.saturating_sub(1).max(1));
        let split = first + n - churning;
        let (stable, a) = common.fleet(mode, first, n - churning).await?;
        let (churn, b) = common.fleet(mode, split, churning).await?;
        let name = if mode == Mode::User { "users_connected" } else { "subscribers_connected" };
        r.add(name, f64::from(a.ok + b.ok), "", "higher");
        if let Some(e) = a.error.or(b.error) {
            r.note(format!("first {name} error: {e}"));
        }
        Ok(Pair { stable, churn, first, split, n })
    }

    /// Drops the churning share and brings it back; how long it took to be back.
    async fn churn(&mut self) -> std::io::Result<Connected> {
        self.churn.offline().await?;
        self.churn.online().await
    }

    /// Waits for `(stable, churning)` distinct messages and merges both tallies.
    async fn wait_for(&mut self, (stable, churning): (u64, u64)) -> std::io::Result<Tally> {
        let mut tally = self.stable.wait_for(stable, QUIET).await?;
        tally.merge(&self.churn.wait_for(churning, QUIET).await?);
        Ok(tally)
    }
}

pub async fn run(common: &Common, args: &SoakArgs) -> std::io::Result<Report> {
    let mut r = common.report("soak");
    let secs = args.minutes * 60.0;
    let mut broadcast = Pair::start(common, &mut r, (Mode::Channel, 0, args.subscribers), args.churn_share).await?;
    let mut users = Pair::start(common, &mut r, (Mode::User, args.subscribers, args.users), args.churn_share).await?;

    let plan = |to: Vec<To>, rate: f64| {
        let c = Common { publish_conns: 2, ..common.clone() };
        tokio::task::spawn_local(async move { c.publish(to, Some(rate), false).await })
    };
    let channel = plan(vec![To::Channel; (args.broadcast_rate * secs).round() as usize], args.broadcast_rate);
    let to_users: Vec<To> = random_users((args.user_rate * secs).round() as usize, args.users, 0x2545_f491_4f6c_dd1d)
        .into_iter()
        .map(|t| match t {
            To::User(u) => To::User(users.first + u),
            other => other,
        })
        .collect();
    let to_churning = to_users.iter().filter(|t| matches!(t, To::User(u) if *u >= users.split)).count() as u64;
    let per_user = plan(to_users, args.user_rate);
    let durable =
        tokio::task::spawn_local(durable_and_ack(common.clone(), (users.first, args.users), args.durable_rate, secs));

    let started = Instant::now();
    let (mut samples, mut churns, mut churn_max) = (Vec::new(), 0u64, 0f64);
    let (mut next_sample, mut next_churn) = (Duration::ZERO, Duration::from_secs_f64(args.churn_secs));
    while started.elapsed().as_secs_f64() < secs {
        if started.elapsed() >= next_sample {
            samples.push(sample(common, args, started.elapsed().as_secs_f64()).await);
            next_sample += Duration::from_secs_f64(args.sample_secs);
        }
        if started.elapsed() >= next_churn {
            for pair in [&mut broadcast, &mut users] {
                let back = pair.churn().await?;
                churn_max = churn_max.max(back.secs);
            }
            churns += 1;
            next_churn += Duration::from_secs_f64(args.churn_secs);
        }
        tokio::time::sleep(next_sample.min(next_churn).saturating_sub(started.elapsed())).await;
    }
    samples.push(sample(common, args, started.elapsed().as_secs_f64()).await);
    let channel = channel.await.map_err(std::io::Error::other)?;
    let per_user = per_user.await.map_err(std::io::Error::other)?;
    let (stored, acked, durable_errors) = durable.await.map_err(std::io::Error::other)?;

    r.add("churn_cycles", churns as f64, "", "").add("churn_back_max", churn_max, "s", "lower");
    r.add("durable_published", stored as f64, "", "").add("durable_acked", acked as f64, "", "");
    r.add("durable_errors", durable_errors as f64, "", "lower");
    let (stable, churning) = (u64::from(broadcast.split), u64::from(broadcast.n - broadcast.split));
    let tally = broadcast.wait_for((channel.ok * stable, channel.ok * churning)).await?;
    add_part(&mut r, "broadcast", channel.ok * (stable + churning), &tally, &channel);
    // Exact when every publish succeeded; publish errors are reported beside it.
    let tally = users.wait_for((per_user.ok.saturating_sub(to_churning), to_churning)).await?;
    add_part(&mut r, "per_user", per_user.ok, &tally, &per_user);
    add_slopes(&mut r, &samples);
    if let Some(path) = &args.samples {
        let rows: Vec<String> = samples
            .iter()
            .map(|s| format!("{:.1},{},{},{},{},{}", s.secs, s.rss_kb, s.fds, s.tasks, s.connections, s.store_kb))
            .collect();
        std::fs::write(path, format!("{COLUMNS}\n{}\n", rows.join("\n")))?;
    }
    Ok(r)
}

/// Delivery figures of one part of the load, their names prefixed.
fn add_part(r: &mut Report, part: &str, expected: u64, tally: &Tally, published: &Published) {
    let mut own = Report::new("", "");
    add_delivery(&mut own, expected, tally, published);
    for m in own.metrics {
        r.add(&format!("{part}_{}", m.name), m.value, &m.unit, &m.better);
    }
    for n in own.notes {
        r.note(format!("{part}: {n}"));
    }
}

/// Publishes durable messages to the users in turn at `rate`, acknowledging each through the API
/// as soon as its id is known: (published, acknowledged, errors).
async fn durable_and_ack(common: Common, (first, users): (u32, u32), rate: f64, secs: f64) -> (u64, u64, u64) {
    let mut conn = Conn::new(common.target.addr);
    let started = Instant::now();
    let (mut stored, mut acked, mut errors) = (0u64, 0u64, 0u64);
    for i in 0..(rate * secs).round() as u64 {
        tokio::time::sleep_until((started + Duration::from_secs_f64(i as f64 / rate)).into()).await;
        let user = format!("u{}", u64::from(first) + i % u64::from(users.max(1)));
        let body = serde_json::json!({"to": {"users": [user]}, "event": "soak", "data": "durable", "durable": true});
        let answer = conn.request(&common.target.api_request("POST", "/api/publish", &body.to_string())).await;
        let id = match answer {
            Ok((200, body)) => {
                serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v["id"].as_str().map(String::from))
            }
            _ => None,
        };
        let Some(id) = id else {
            errors += 1;
            continue;
        };
        stored += 1;
        let ack = serde_json::json!({ "ids": [id] }).to_string();
        match conn.request(&common.target.api_request("POST", &format!("/api/users/{user}/ack"), &ack)).await {
            Ok((200, _)) => acked += 1,
            _ => errors += 1,
        }
    }
    (stored, acked, errors)
}

async fn sample(common: &Common, args: &SoakArgs, secs: f64) -> Sample {
    let server = common.server_pid.first().copied();
    let rss_kb = common.sample().map_or(0.0, |s| s.rss_kb as f64);
    let fds = server.and_then(|p| crate::proc::open_fds(p).ok()).map_or(0.0, |n| n as f64);
    let metrics = match common.api("GET", "/metrics", "").await {
        Ok((_, body)) => String::from_utf8_lossy(&body).into_owned(),
        Err(_) => String::new(),
    };
    let gauge = |name: &str| crate::prom::sum(&metrics, name).unwrap_or(0.0);
    let store_kb = args.store_path.as_ref().map_or(0.0, |p| {
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", p.display())).ok())
            .map(|m| m.len() as f64 / 1024.0)
            .sum()
    });
    let s = Sample {
        secs,
        rss_kb,
        fds,
        tasks: gauge("herald_runtime_tasks"),
        connections: gauge("herald_connections"),
        store_kb,
    };
    eprintln!("soak: {s:?}");
    s
}

/// Least-squares slope of `y` over `x`, per minute of `x` seconds.
fn slope_per_minute(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx * 60.0
    }
}

/// A sampled quantity: its name, unit and how to read it from a sample.
type Series = (&'static str, &'static str, fn(&Sample) -> f64);

fn add_slopes(r: &mut Report, samples: &[Sample]) {
    let second_half: Vec<Sample> =
        samples.iter().copied().filter(|s| s.secs >= samples.last().map_or(0.0, |l| l.secs) / 2.0).collect();
    let series: [Series; 4] = [
        ("rss", "KiB", |s| s.rss_kb),
        ("open_fds", "", |s| s.fds),
        ("tasks", "", |s| s.tasks),
        ("store", "KiB", |s| s.store_kb),
    ];
    for (name, unit, get) in series {
        let points = |set: &[Sample]| set.iter().map(|s| (s.secs, get(s))).collect::<Vec<_>>();
        let (first, last) = (samples.first().map_or(0.0, get), samples.last().map_or(0.0, get));
        let per_min = if unit.is_empty() { "1/min".to_string() } else { format!("{unit}/min") };
        r.add(&format!("{name}_start"), first, unit, "")
            .add(&format!("{name}_end"), last, unit, "")
            .add(&format!("{name}_slope"), slope_per_minute(&points(samples)), &per_min, "lower")
            .add(&format!("{name}_slope_second_half"), slope_per_minute(&points(&second_half)), &per_min, "lower");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes_per_minute() {
        let flat = [(0.0, 5.0), (10.0, 5.0), (20.0, 5.0)];
        assert_eq!(slope_per_minute(&flat), 0.0);
        let rising = [(0.0, 0.0), (30.0, 1.0), (60.0, 2.0), (90.0, 3.0)];
        assert!((slope_per_minute(&rising) - 2.0).abs() < 1e-9);
        assert_eq!(slope_per_minute(&[(1.0, 1.0)]), 0.0);
    }
}
