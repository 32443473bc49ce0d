//! `steady`: a steady broadcast rate to every subscriber of one channel; latency under load.

use clap::Args;

use super::Common;
use crate::report::Report;

#[derive(Debug, Clone, Args)]
pub struct SteadyArgs {
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: u32,
    /// Messages per second.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 20.0)]
    pub secs: f64,
}

pub async fn run(common: &Common, args: &SteadyArgs) -> std::io::Result<Report> {
    let mut r = common.report("steady");
    let messages = (args.rate * args.secs).round() as usize;
    super::broadcast(common, &mut r, args.subscribers, (messages, 1), Some(args.rate)).await?;
    Ok(r)
}
