//! `durable`: stored-message throughput, and replay of a backlog to a user that was offline.
//! Nchan has no per-user durable store, so it only gets a note.

use std::time::Duration;

use clap::Args;

use super::{add_connected, random_users, Common, QUIET};
use crate::publisher::Published;
use crate::report::Report;
use crate::targets::{Mode, To};

#[derive(Debug, Clone, Args)]
pub struct DurableArgs {
    /// Durable messages of the throughput part, to random users.
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    #[arg(long, default_value_t = 10_000)]
    pub users: u32,
    /// Concurrent POSTs of the throughput part.
    #[arg(long, default_value_t = 64)]
    pub conns: usize,
    /// Messages published to the offline user, then replayed.
    #[arg(long, default_value_t = 10_000)]
    pub replay: usize,
    /// Messages per `/api/publish/batch` request in the batched throughput part.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
}

pub async fn run(common: &Common, args: &DurableArgs) -> std::io::Result<Report> {
    let mut r = common.report("durable");
    if !common.target.supports_durable() {
        r.note("skipped: Nchan has no durable per-user store");
        return Ok(r);
    }
    let wide = Common { publish_conns: args.conns, ..common.clone() };
    // The hooks run around each throughput part, so a profile dumps one file for each.
    let to = random_users(args.messages, args.users, 0x2545_f491_4f6c_dd1d);
    common.hook(&common.on_ready).await?;
    let single = wide.publish(to, None, true).await;
    common.hook(&common.on_done).await?;
    add_throughput(&mut r, ("stored_per_s", "durable_publish_errors"), &single);
    // The same, `batch` messages per request: group commit without one HTTP round trip each.
    let to = random_users(args.messages, args.users, 0x9e37_79b9_7f4a_7c15);
    common.hook(&common.on_ready).await?;
    let batched = wide.publish_batched(to, None, true, args.batch).await;
    common.hook(&common.on_done).await?;
    add_throughput(&mut r, ("stored_per_s_batched", "durable_batch_errors"), &batched);

    // A user outside the throughput range learns its position, goes offline, and misses a backlog.
    let (mut fleet, connected) = common.fleet(Mode::User, args.users, 1).await?;
    add_connected(&mut r, &connected);
    tokio::time::sleep(Duration::from_millis(300)).await;
    fleet.offline().await?;
    let backlog = common.publish(vec![To::User(args.users); args.replay], None, true).await;
    let reconnect_ns = crate::clock::unix_nanos();
    fleet.online().await?;
    let tally = fleet.wait_for(backlog.ok, QUIET).await?;
    let secs = tally.last_ns.saturating_sub(reconnect_ns) as f64 / 1e9;
    r.add("replay_time", secs, "s", "lower")
        .add("replayed", tally.unique as f64, "", "higher")
        .add("replay_lost", backlog.ok.saturating_sub(tally.unique) as f64, "", "lower")
        .add("replay_duplicates", tally.duplicates as f64, "", "lower");
    Ok(r)
}

/// Stored messages per second and errors of one throughput part, under the given names.
fn add_throughput(r: &mut Report, (rate, errors): (&str, &str), stored: &Published) {
    r.add(rate, stored.ok as f64 / stored.secs().max(1e-9), "1/s", "higher").add(
        errors,
        stored.errors as f64,
        "",
        "lower",
    );
    if let Some(e) = &stored.first_error {
        r.note(format!("{errors}: first error: {e}"));
    }
}
