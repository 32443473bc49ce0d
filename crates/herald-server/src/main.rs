//! `herald`: the command-line shell over the herald library.

mod check_config;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herald::config::Config;
use herald::Hub;

/// mimalloc rather than glibc's malloc: ~10 % fewer user-space instructions per publish and ~7 %
/// less server CPU per per-user or durable message, for ~8 MB more at start ("The allocator" in
/// bench/RESULTS.md). The library leaves the allocator to whoever embeds it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A real-time push hub over Server-Sent Events.
#[derive(Parser)]
#[command(name = "herald", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the hub. Configuration: `--config` file, then HERALD_* variables, then flags.
    #[command(after_help = after_help())]
    Serve(Serve),
    /// Checks a configuration and prints the effective one, secrets masked.
    ///
    /// Loads it as `serve` would (`--config` file, then HERALD_* variables). Exits 2, naming the
    /// key at fault, when it is invalid.
    CheckConfig(CheckConfig),
}

#[derive(clap::Args)]
struct CheckConfig {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct Serve {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address and port to listen on (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// `memory`, `sqlite`, or the path of the SQLite file (default `herald.db`).
    #[arg(long, value_name = "STORE")]
    store: Option<String>,
    /// Seconds between heartbeats on idle streams (default 15).
    #[arg(long, value_name = "SECS")]
    heartbeat_secs: Option<u64>,
    /// Generates an API key and a JWT secret when none is configured, and prints a user token,
    /// curl lines and the demo link. For trying Herald out, never for production.
    #[arg(long)]
    dev: bool,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn after_help() -> String {
    let vars: Vec<String> = settings::env_names().collect();
    format!("Environment variables:\n  {}", vars.join("\n  "))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Cli::parse().command {
        Command::Serve(args) => args,
        Command::CheckConfig(args) => {
            return match check_config::run(args.config.as_deref(), |k| std::env::var(k).ok()) {
                Ok(shown) => {
                    print!("{shown}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("herald: invalid configuration: {error}");
                    ExitCode::from(2)
                }
            };
        }
    };
    init_logging(args.log_json);
    let flags = settings::Overrides {
        listen: args.listen.as_deref(),
        store: args.store.as_deref(),
        heartbeat_secs: args.heartbeat_secs,
    };
    let mut config = match settings::load(args.config.as_deref(), |k| std::env::var(k).ok(), flags) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("herald: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    let dev_user_token = args.dev.then(|| dev_credentials(&mut config));
    match run(config, dev_user_token).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herald: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, dev_user_token: Option<String>) -> Result<(), Box<dyn std::error::Error>> {
    let tls = herald::server::tls_acceptor(&config)?;
    let listener =
        herald::server::bind(config.listen).map_err(|e| format!("cannot listen on `{}`: {e}", config.listen))?;
    let hub = Hub::new(config.clone()).await?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let store = match (&config.redis_url, config.store) {
        (Some(_), _) => "redis (cluster)".to_string(),
        (None, herald::config::StoreKind::Memory) => "memory".to_string(),
        (None, herald::config::StoreKind::Sqlite) => format!("sqlite {}", config.store_path.display()),
    };
    tracing::info!(%addr, %store, "Herald is listening.");
    if config.app.api_key.is_none() || config.app.jwt_secret.is_none() && config.app.jwt_public_key.is_none() {
        tracing::warn!(
            "The default app has no API key or no JWT key: nothing can publish or subscribe as a user until HERALD_API_KEY and \
             HERALD_JWT_SECRET (or `jwt_public_key`) are set. To try Herald out, run `herald serve --dev`."
        );
    }
    if let Some(token) = dev_user_token {
        print_dev_banner(&format!("{scheme}://{addr}"), &config, &token);
    }
    herald::server::serve_hub(listener, hub, tls, shutdown_signal()).await?;
    tracing::info!("Herald stopped.");
    Ok(())
}

/// Fills in missing keys with fresh random ones and mints a day-long token for user `alice`.
fn dev_credentials(config: &mut Config) -> String {
    let random = || hex::encode(rand::random::<[u8; 24]>());
    let app = &mut config.app;
    app.api_key.get_or_insert_with(random);
    if app.jwt_public_key.is_none() {
        app.jwt_secret.get_or_insert_with(random);
    }
    if app.cors_origins.is_empty() {
        app.cors_origins.push("*".into());
    }
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) + 24 * 3600;
    let claims =
        serde_json::json!({ "sub": "alice", "tenant": "acme", "sid": "alice-laptop", "channels": ["*"], "exp": exp });
    match &app.jwt_secret {
        Some(secret) => jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("HS256 signing cannot fail"),
        None => "(the app verifies RS256/ES256 tokens: mint one with your private key)".into(),
    }
}

fn print_dev_banner(base: &str, config: &Config, token: &str) {
    let key = config.app.api_key.as_deref().unwrap_or_default();
    println!(
        "\n  Herald dev mode: keys below are fresh for this run.\n\n  API key:    {key}\n  User token: {token}\n             (user alice, tenant acme, session alice-laptop, every channel, valid 24 h)\n\n  \
         Subscribe:\n    curl -N '{base}/events?channel=news&access_token={token}'\n\n  \
         Publish:\n    curl -X POST {base}/api/publish -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n      \
         -d '{{\"to\": {{\"users\": [\"alice\"]}}, \"event\": \"ALERT\", \"data\": {{\"text\": \"Hello from Herald\"}}}}'\n\n  \
         Demo:\n    {base}/demo?token={token}&key={key}\n"
    );
}

fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("herald=info,herald_server=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
