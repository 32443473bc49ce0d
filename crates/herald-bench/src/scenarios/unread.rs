//! `unread`: what durable addressing costs a publish. Every user is connected; each message goes
//! to `--per-message` users as a durable message (stored, counted unread, a `herald.unread` event
//! to each), or with 0 to one user, not durable. Reports the publisher's round trip and the
//! server's CPU per message.

use clap::Args;

use super::{add_connected, add_delivery, random_users, Common, QUIET};
use crate::report::Report;
use crate::stats::{new_histogram, summarize};
use crate::targets::{Mode, To};

#[derive(Debug, Clone, Args)]
pub struct UnreadArgs {
    #[arg(long, default_value_t = 1000)]
    pub users: u32,
    /// Durable users per message; 0 publishes to one user without `durable`.
    #[arg(long, default_value_t = 1)]
    pub per_message: u32,
    /// Messages per second.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
}

pub async fn run(common: &Common, args: &UnreadArgs) -> std::io::Result<Report> {
    let mut r = common.report("unread");
    if !common.target.supports_durable() {
        r.note("skipped: Nchan has no durable per-user store");
        return Ok(r);
    }
    let (mut fleet, connected) = common.fleet(Mode::User, 0, args.users).await?;
    add_connected(&mut r, &connected);
    let messages = (args.rate * args.secs).round() as usize;
    let k = args.per_message;
    let to: Vec<To> = match k {
        0 => random_users(messages, args.users, 0x9e37_79b9_7f4a_7c15),
        k => (0..messages).map(|m| To::Users((m as u32 * k) % args.users.saturating_sub(k).max(1), k)).collect(),
    };
    let before = common.sample();
    let published = common.publish(to, Some(args.rate), k > 0).await;
    let expected = published.ok * u64::from(k.max(1));
    let tally = fleet.wait_for(expected, QUIET).await?;
    if let (Some(b), Some(a)) = (before, common.sample()) {
        let cpu = a.cpu_us.saturating_sub(b.cpu_us) as f64 / published.ok.max(1) as f64;
        r.add("server_cpu_per_message", cpu, "µs", "lower");
    }
    let mut rtt = new_histogram();
    for &us in &published.round_trips_us {
        rtt.saturating_record(us.max(1));
    }
    let rtt = summarize(&rtt);
    r.add("publish_p50", rtt.p50_ms, "ms", "lower").add("publish_p99", rtt.p99_ms, "ms", "lower");
    add_delivery(&mut r, expected, &tally, &published);
    Ok(r)
}
