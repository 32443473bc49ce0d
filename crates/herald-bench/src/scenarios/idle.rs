//! `idle`: N connections that only listen. Measures connections per second (with the hub's token
//! verification) and server memory per open stream.

use std::time::Duration;

use clap::Args;

use super::{add_connected, Common};
use crate::report::Report;
use crate::targets::Mode;

#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    #[arg(long, default_value_t = 10_000)]
    pub connections: u32,
    /// Pause after connecting before memory is sampled.
    #[arg(long, default_value_t = 2.0)]
    pub settle_secs: f64,
}

pub async fn run(common: &Common, args: &IdleArgs) -> std::io::Result<Report> {
    let mut r = common.report("idle");
    let before = common.sample();
    let (fleet, connected) = common.fleet(Mode::Channel, 0, args.connections).await?;
    add_connected(&mut r, &connected);
    r.add("connect_time", connected.secs, "s", "lower").add("connections_per_s", connected.per_sec(), "1/s", "higher");
    tokio::time::sleep(Duration::from_secs_f64(args.settle_secs)).await;
    if let (Some(b), Some(a)) = (before, common.sample()) {
        let n = connected.ok.max(1) as f64;
        r.add("server_rss_before", b.rss_kb as f64, "KiB", "lower")
            .add("server_rss_after", a.rss_kb as f64, "KiB", "lower")
            .add("rss_per_connection", (a.rss_kb as f64 - b.rss_kb as f64) / n, "KiB", "lower")
            .add("server_cpu_per_connect", a.cpu_us.saturating_sub(b.cpu_us) as f64 / n, "µs", "lower");
    }
    drop(fleet);
    Ok(r)
}
