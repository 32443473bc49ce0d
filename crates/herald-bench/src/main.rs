//! herald-bench: a loopback load generator for Herald and Nchan over Server-Sent Events.

mod baseline;
mod client;
mod clock;
mod fleet;
mod http;
mod jwt;
mod mercure;
mod proc;
mod prom;
mod publisher;
mod report;
mod scenarios;
mod sse;
mod stats;
mod targets;
mod transport;
mod worker;

use clap::{Parser, Subcommand};
use scenarios::Common;

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open N idle streams: connections/s and server memory per connection.
    Idle {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: scenarios::idle::IdleArgs,
    },
    /// Burst of messages to every subscriber of one channel: deliveries/s and loss.
    Burst {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: scenarios::burst::BurstArgs,
    },
    /// Steady broadcast: latency percentiles and server CPU per delivery.
    Steady {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: scenarios::steady::SteadyArgs,
    },
    /// One connection per user, messages to random users: latency, memory, CPU per message.
    PerUser {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: scenarios::per_user::PerUserArgs,
    },
    /// Everybody drops and resumes with Last-Event-ID while publishing goes on.
    Reconnect {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: scenarios::reconnect::ReconnectArgs,
    },
    /// Durable publish throughput and backlog replay (Herald only).
    Durable {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: scenarios::durable::DurableArgs,
    },
    /// A healthy fleet measured quiet, under attack by hostile clients, and after (Herald only).
    Adversarial {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: scenarios::adversarial::AdversarialArgs,
    },
    /// One subscriber misses N events and resumes: time to the first live event, history memory.
    Resume {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: scenarios::resume::ResumeArgs,
    },
    /// The presence feed under a connect storm, then `GET /api/users` pages (Herald only).
    Presence {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: scenarios::presence::PresenceArgs,
    },
    /// Publish latency with 0, 1 or more `herald.unread`-tracking durable users per message.
    Unread {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: scenarios::unread::UnreadArgs,
    },
    /// Constant mixed load with churning connections for --minutes; slopes of server resources.
    Soak {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: scenarios::soak::SoakArgs,
    },
    /// Compares report lines with a baseline file within its tolerance (bench/smoke).
    Check {
        #[arg(long)]
        baseline: std::path::PathBuf,
        /// Rewrite the baseline's values from these reports instead of checking them.
        #[arg(long)]
        update: bool,
        files: Vec<std::path::PathBuf>,
    },
    /// One cost curve from reports named `<curve>@<x>` (see `--report-as`): a Markdown table,
    /// or with `--plain` columns for gnuplot.
    Curve {
        #[arg(long)]
        name: String,
        #[arg(long, value_delimiter = ',')]
        metrics: Vec<String>,
        #[arg(long)]
        plain: bool,
        files: Vec<std::path::PathBuf>,
    },
    /// Markdown table of medians and Herald/Nchan ratios from files of report JSON lines.
    Summarize {
        /// Report targets, one column each; the ratio column divides the first by the second.
        #[arg(long, value_delimiter = ',', default_value = "herald,nchan")]
        targets: Vec<String>,
        files: Vec<std::path::PathBuf>,
    },
    /// Holds a block of subscribers for a coordinating process.
    #[command(hide = true)]
    Worker(worker::WorkerArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One thread per process: the server under test needs the other core more than we do.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, execute(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command) -> std::io::Result<()> {
    let report = match command {
        Command::Worker(args) => return worker::run(args).await,
        Command::Summarize { targets, files } => {
            let text = read_all(&files)?;
            let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
            print!("{}", report::summarize(&text, &targets));
            return Ok(());
        }
        Command::Curve { name, metrics, plain, files } => {
            let metrics: Vec<&str> = metrics.iter().map(String::as_str).collect();
            print!("{}", report::curve(&read_all(&files)?, &name, &metrics, plain));
            return Ok(());
        }
        Command::Check { baseline, update, files } => {
            let text = read_all(&files)?;
            let base: baseline::Baseline = serde_json::from_str(&std::fs::read_to_string(&baseline)?)?;
            if update {
                let json = serde_json::to_string_pretty(&baseline::updated(&base, &text))?;
                return std::fs::write(&baseline, json + "\n");
            }
            let (table, ok) = baseline::check(&base, &text);
            print!("{table}");
            return if ok { Ok(()) } else { Err(std::io::Error::other("below the baseline (see FAIL lines)")) };
        }
        Command::Idle { common, args } => scenarios::idle::run(&common, &args).await?,
        Command::Burst { common, args } => scenarios::burst::run(&common, &args).await?,
        Command::Steady { common, args } => scenarios::steady::run(&common, &args).await?,
        Command::PerUser { common, args } => scenarios::per_user::run(&common, &args).await?,
        Command::Reconnect { common, args } => scenarios::reconnect::run(&common, &args).await?,
        Command::Durable { common, args } => scenarios::durable::run(&common, &args).await?,
        Command::Adversarial { common, args } => scenarios::adversarial::run(&common, &args).await?,
        Command::Resume { common, args } => scenarios::resume::run(&common, &args).await?,
        Command::Presence { common, args } => scenarios::presence::run(&common, &args).await?,
        Command::Unread { common, args } => scenarios::unread::run(&common, &args).await?,
        Command::Soak { common, args } => scenarios::soak::run(&common, &args).await?,
    };
    report.print();
    Ok(())
}

/// The files' contents, one after another.
fn read_all(files: &[std::path::PathBuf]) -> std::io::Result<String> {
    let mut text = String::new();
    for f in files {
        text.push_str(&std::fs::read_to_string(f)?);
        text.push('\n');
    }
    Ok(text)
}
