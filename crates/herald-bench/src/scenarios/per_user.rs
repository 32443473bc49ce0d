//! `per-user`: every user on its own connection, messages to random users at a steady rate.

use clap::Args;

use super::{add_connected, add_delivery, random_users, Common, QUIET};
use crate::report::Report;
use crate::targets::Mode;

#[derive(Debug, Clone, Args)]
pub struct PerUserArgs {
    #[arg(long, default_value_t = 10_000)]
    pub users: u32,
    /// Messages per second, each to one random user.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 15.0)]
    pub secs: f64,
}

pub async fn run(common: &Common, args: &PerUserArgs) -> std::io::Result<Report> {
    let mut r = common.report("per-user");
    let idle = common.sample();
    let (mut fleet, connected) = common.fleet(Mode::User, 0, args.users).await?;
    add_connected(&mut r, &connected);
    common.hook(&common.on_ready).await?;
    let before = common.sample();
    let messages = (args.rate * args.secs).round() as usize;
    let to = random_users(messages, args.users, 0x9e37_79b9_7f4a_7c15);
    let published = common.publish(to, Some(args.rate), false).await;
    let tally = fleet.wait_for(published.ok, QUIET).await?;
    common.hook(&common.on_done).await?;
    if let (Some(i), Some(b), Some(a)) = (idle, before, common.sample()) {
        let per_conn = (b.rss_kb as f64 - i.rss_kb as f64) / connected.ok.max(1) as f64;
        let cpu = a.cpu_us.saturating_sub(b.cpu_us) as f64;
        r.add("rss_per_connection", per_conn, "KiB", "lower").add(
            "server_cpu_per_message",
            cpu / published.ok.max(1) as f64,
            "µs",
            "lower",
        );
    }
    add_delivery(&mut r, published.ok, &tally, &published);
    Ok(r)
}
