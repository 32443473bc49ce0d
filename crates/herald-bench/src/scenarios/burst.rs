//! `burst`: a burst of messages to every subscriber of one channel, as fast as possible.

use clap::Args;

use super::Common;
use crate::report::Report;

#[derive(Debug, Clone, Args)]
pub struct BurstArgs {
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: u32,
    /// Messages every subscriber receives.
    #[arg(long, default_value_t = 100)]
    pub messages: usize,
    /// Messages per publish request (above 1 through `/api/publish/batch`, Herald only).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
}

pub async fn run(common: &Common, args: &BurstArgs) -> std::io::Result<Report> {
    let mut r = common.report("burst");
    let (tally, published) =
        super::broadcast(common, &mut r, args.subscribers, (args.messages, args.batch), None).await?;
    // From the first POST to the last delivery: the server's fan-out rate as subscribers see it.
    let secs = tally.last_ns.saturating_sub(published.started_ns) as f64 / 1e9;
    r.add("deliveries_per_s", tally.unique as f64 / secs.max(1e-9), "1/s", "higher").add(
        "burst_time",
        secs,
        "s",
        "lower",
    );
    Ok(r)
}
