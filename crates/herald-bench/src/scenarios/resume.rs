//! `resume`: what a reconnect costs after missing N events. One subscriber of the broadcast
//! channel goes offline, N messages are published (the server's RSS grows by their history), it
//! comes back with its Last-Event-ID and one live message follows: the time from reconnecting to
//! that live event is the cost of replaying N (it can only arrive after all of them).

use clap::Args;

use super::{add_connected, Common, QUIET};
use crate::report::Report;
use crate::targets::{Mode, To};

#[derive(Debug, Clone, Args)]
pub struct ResumeArgs {
    /// Messages published while the subscriber is away (Herald keeps 100,000 by default).
    #[arg(long, default_value_t = 1000)]
    pub missed: usize,
    /// Messages per publish request while it is away.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
}

pub async fn run(common: &Common, args: &ResumeArgs) -> std::io::Result<Report> {
    let mut r = common.report("resume");
    let (mut fleet, connected) = common.fleet(Mode::Channel, 0, 1).await?;
    add_connected(&mut r, &connected);
    fleet.offline().await?;
    let before = common.sample();
    let missed = common.publish_batched(vec![To::Channel; args.missed], None, false, args.batch).await;
    let after = common.sample();
    let reconnect_ns = crate::clock::unix_nanos();
    let back = fleet.online().await?;
    let live = common.publish_from(vec![To::Channel], None, false, 1, args.missed as u64).await;
    let expected = missed.ok + live.ok;
    let tally = fleet.wait_for(expected, QUIET).await?;
    let secs = tally.last_ns.saturating_sub(reconnect_ns) as f64 / 1e9;
    r.add("missed", missed.ok as f64, "", "")
        .add("reconnect_head_time", back.secs * 1000.0, "ms", "lower")
        .add("time_to_live_event", secs * 1000.0, "ms", "lower")
        .add("lost", expected.saturating_sub(tally.unique) as f64, "", "lower")
        .add("duplicates", tally.duplicates as f64, "", "lower")
        .add("publish_errors", (missed.errors + live.errors) as f64, "", "lower");
    if let (Some(b), Some(a)) = (before, after) {
        let grown = a.rss_kb as f64 - b.rss_kb as f64;
        r.add("history_rss", grown, "KiB", "lower").add(
            "history_bytes_per_message",
            grown * 1024.0 / missed.ok.max(1) as f64,
            "B",
            "lower",
        );
    }
    Ok(r)
}
