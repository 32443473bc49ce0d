//! `idle`: N streams that only listen. Measures connections per second (with the hub's token
//! verification) and server memory per open stream, over any of the transports (`--transport`).

use std::time::Duration;

use clap::Args;

use super::{add_connected, Common};
use crate::report::Report;
use crate::targets::Mode;
use crate::transport::TransportArgs;

#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    #[arg(long, default_value_t = 10_000)]
    pub connections: u32,
    /// Pause after connecting before memory is sampled.
    #[arg(long, default_value_t = 2.0)]
    pub settle_secs: f64,
    #[command(flatten)]
    pub transport: TransportArgs,
}

pub async fn run(common: &Common, args: &IdleArgs) -> std::io::Result<Report> {
    let mut r = common.report("idle");
    let before = common.sample();
    let (fleet, connected) = common.fleet_over(Mode::Channel, 0, args.connections, args.transport.clone()).await?;
    add_connected(&mut r, &connected);
    let t = &args.transport;
    r.note(format!("transport {}, {} stream(s) per connection", t.transport.name(), t.streams_per_conn));
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
