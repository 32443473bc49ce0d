//! The hidden `worker` subcommand: holds a block of subscribers in its own process (one process
//! may hold at most 20,000 open files) and talks to the coordinator in JSON lines: commands on
//! stdin, reports on stdout.

use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

use crate::client::{self, Phase, Shared};
use crate::stats::Tally;
use crate::targets::{Mode, Target};
use crate::transport::TransportArgs;

/// Longest wait for a block of clients to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub target: Target,
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// Index of the first subscriber (user `u<first>`).
    #[arg(long)]
    pub first: u32,
    #[arg(long)]
    pub count: u32,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    #[command(flatten)]
    pub transport: TransportArgs,
}

/// A line a worker writes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Line {
    /// All clients of a generation are connected or have failed.
    Connected {
        ok: u32,
        failed: u32,
        secs: f64,
        error: Option<String>,
    },
    Stats {
        tally: Tally,
    },
    Offline,
}

/// A command the coordinator writes.
pub const STATS: &str = "stats";
pub const OFFLINE: &str = "offline";
pub const ONLINE: &str = "online";

pub async fn run(args: WorkerArgs) -> std::io::Result<()> {
    let paths: Vec<String> = (0..args.count).map(|i| args.target.subscribe_path(args.mode, args.first + i)).collect();
    let shared = Shared::new(args.target.clone(), &args.transport, args.connect_concurrency);
    let shared = Rc::new(shared.map_err(std::io::Error::other)?);
    let (phase_tx, phase_rx) = watch::channel(Phase::Online(0));
    let started = Instant::now();
    for (i, path) in paths.into_iter().enumerate() {
        let task = client::run(shared.clone(), args.first + i as u32, path, phase_rx.clone());
        tokio::task::spawn_local(task);
    }
    drop(phase_rx);
    emit(&wait_connected(&shared, 0, args.count, started).await);

    let mut generation = 0;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(cmd) = lines.next_line().await? {
        match cmd.trim() {
            STATS => emit(&Line::Stats { tally: shared.tally() }),
            OFFLINE => {
                phase_tx.send_replace(Phase::Offline);
                let started = Instant::now();
                while shared.open_streams.get() > 0 && started.elapsed() < CONNECT_TIMEOUT {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                emit(&Line::Offline);
            }
            ONLINE => {
                generation += 1;
                let alive = args.count - shared.failed.get() - shared.broken();
                let started = Instant::now();
                phase_tx.send_replace(Phase::Online(generation));
                emit(&wait_connected(&shared, generation, alive, started).await);
            }
            other => eprintln!("worker: unknown command {other:?}"),
        }
    }
    Ok(())
}

async fn wait_connected(shared: &Shared, generation: u32, expected: u32, started: Instant) -> Line {
    let failed_before = shared.failed.get();
    loop {
        let ok = shared.connected_in(generation);
        let failed = shared.failed.get() - failed_before;
        if ok + failed >= expected || started.elapsed() > CONNECT_TIMEOUT {
            return Line::Connected {
                ok,
                failed: expected.saturating_sub(ok),
                secs: started.elapsed().as_secs_f64(),
                error: shared.first_error.borrow().clone(),
            };
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn emit(line: &Line) {
    let mut out = std::io::stdout().lock();
    let text = serde_json::to_string(line).expect("worker lines serialize");
    // The coordinator going away ends the worker through stdin; nothing to do about stdout here.
    let _ = writeln!(out, "{text}").and_then(|_| out.flush());
}
