//! The coordinator's side of the worker processes: spawns them, sends commands, merges reports.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::stats::Tally;
use crate::targets::{Mode, Target};
use crate::transport::TransportArgs;
use crate::worker::{Line, OFFLINE, ONLINE, STATS};

/// How a fleet is laid out over processes, and how its subscribers connect.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Worker processes; `None` picks as few as `per_worker` allows.
    pub workers: Option<usize>,
    pub per_worker: u32,
    pub connect_concurrency: usize,
    pub transport: TransportArgs,
}

struct Worker {
    _child: Child,
    stdin: ChildStdin,
    out: Lines<BufReader<ChildStdout>>,
}

pub struct Fleet {
    workers: Vec<Worker>,
}

/// Connection outcome, merged over workers.
#[derive(Debug, Clone, Default)]
pub struct Connected {
    pub ok: u32,
    pub failed: u32,
    pub secs: f64,
    pub error: Option<String>,
}

impl Connected {
    pub fn per_sec(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-9)
    }
}

fn io_err(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

impl Fleet {
    /// Starts `count` subscribers `u<first>..` and waits until they are connected.
    pub async fn start(
        target: &Target,
        mode: Mode,
        first: u32,
        count: u32,
        layout: Layout,
    ) -> std::io::Result<(Fleet, Connected)> {
        let n = layout.workers.unwrap_or_else(|| count.div_ceil(layout.per_worker.max(1)) as usize).max(1);
        let exe = std::env::current_exe()?;
        let mut workers = Vec::with_capacity(n);
        let mut start = first;
        let sub_addrs: Vec<String> = target.sub_addrs.iter().map(|a| a.to_string()).collect();
        for w in 0..n {
            let share = count / n as u32 + u32::from((w as u32) < count % n as u32);
            let mut cmd = Command::new(&exe);
            cmd.arg("worker").args(["--target", target.target.name()]).args(["--addr", &target.addr.to_string()]);
            cmd.args(["--groups", &target.spread.groups.to_string()])
                .args(["--extra-channels", &target.spread.extra_channels.to_string()]);
            if !sub_addrs.is_empty() {
                cmd.args(["--sub-addrs", &sub_addrs.join(",")]);
            }
            let mut child = cmd
                .args(["--mode", mode_name(mode)])
                .args(["--first", &start.to_string()])
                .args(["--count", &share.to_string()])
                .args(["--connect-concurrency", &layout.connect_concurrency.to_string()])
                .args(layout.transport.to_args())
                .env("HERALD_API_KEY", &target.api_key)
                .env("HERALD_JWT_SECRET", &target.jwt_secret)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            start += share;
            let stdin = child.stdin.take().ok_or_else(|| io_err("no stdin".into()))?;
            let out = child.stdout.take().ok_or_else(|| io_err("no stdout".into()))?;
            workers.push(Worker { _child: child, stdin, out: BufReader::new(out).lines() });
        }
        let mut fleet = Fleet { workers };
        let connected = fleet.read_connected().await?;
        Ok((fleet, connected))
    }

    async fn send(&mut self, cmd: &str) -> std::io::Result<()> {
        for w in &mut self.workers {
            w.stdin.write_all(format!("{cmd}\n").as_bytes()).await?;
            w.stdin.flush().await?;
        }
        Ok(())
    }

    async fn read_lines(&mut self) -> std::io::Result<Vec<Line>> {
        let mut lines = Vec::with_capacity(self.workers.len());
        for w in &mut self.workers {
            let text = w.out.next_line().await?.ok_or_else(|| io_err("a worker exited".into()))?;
            let line = serde_json::from_str(&text).map_err(|e| io_err(format!("{e}: {text}")))?;
            lines.push(line);
        }
        Ok(lines)
    }

    async fn read_connected(&mut self) -> std::io::Result<Connected> {
        let mut all = Connected::default();
        for line in self.read_lines().await? {
            if let Line::Connected { ok, failed, secs, error } = line {
                all.ok += ok;
                all.failed += failed;
                all.secs = all.secs.max(secs);
                all.error = all.error.or(error);
            }
        }
        Ok(all)
    }

    pub async fn tally(&mut self) -> std::io::Result<Tally> {
        self.send(STATS).await?;
        let mut all = Tally::default();
        for line in self.read_lines().await? {
            if let Line::Stats { tally } = line {
                all.merge(&tally);
            }
        }
        Ok(all)
    }

    /// Closes every stream at once.
    pub async fn offline(&mut self) -> std::io::Result<()> {
        self.send(OFFLINE).await?;
        self.read_lines().await.map(drop)
    }

    /// Reconnects every stream with its Last-Event-ID and waits until all are back.
    pub async fn online(&mut self) -> std::io::Result<Connected> {
        self.send(ONLINE).await?;
        self.read_connected().await
    }

    /// Polls until `unique` distinct messages arrived or nothing arrived for `quiet`.
    pub async fn wait_for(&mut self, unique: u64, quiet: Duration) -> std::io::Result<Tally> {
        let mut last_change = Instant::now();
        let mut seen = u64::MAX;
        loop {
            let tally = self.tally().await?;
            if tally.unique >= unique || last_change.elapsed() > quiet {
                return Ok(tally);
            }
            if tally.received != seen {
                seen = tally.received;
                last_change = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Channel => "channel",
        Mode::User => "user",
    }
}
