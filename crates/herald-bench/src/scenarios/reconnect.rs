//! `reconnect`: every subscriber drops at once and reconnects with Last-Event-ID while publishing
//! goes on; nothing may be lost or delivered twice.

use std::time::Duration;

use clap::Args;

use super::{add_connected, add_delivery, Common, QUIET};
use crate::report::Report;
use crate::targets::{Mode, To};

#[derive(Debug, Clone, Args)]
pub struct ReconnectArgs {
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: u32,
    /// Broadcast messages per second while the drop happens.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// When, after publishing starts, everybody drops.
    #[arg(long, default_value_t = 3.0)]
    pub drop_after_secs: f64,
}

pub async fn run(common: &Common, args: &ReconnectArgs) -> std::io::Result<Report> {
    let mut r = common.report("reconnect");
    let (mut fleet, connected) = common.fleet(Mode::Channel, 0, args.subscribers).await?;
    add_connected(&mut r, &connected);
    let messages = (args.rate * args.secs).round() as usize;
    let driver = common.clone();
    let rate = args.rate;
    let publishing =
        tokio::task::spawn_local(async move { driver.publish(vec![To::Channel; messages], Some(rate), false).await });
    tokio::time::sleep(Duration::from_secs_f64(args.drop_after_secs)).await;
    fleet.offline().await?;
    let back = fleet.online().await?;
    r.add("reconnect_time", back.secs, "s", "lower").add("reconnected", back.ok as f64, "", "higher");
    if let Some(e) = &back.error {
        r.note(format!("first reconnect error: {e}"));
    }
    let published = publishing.await.map_err(std::io::Error::other)?;
    let expected = published.ok * connected.ok as u64;
    let tally = fleet.wait_for(expected, QUIET).await?;
    add_delivery(&mut r, expected, &tally, &published);
    Ok(r)
}
