//! Configuration of a hub: server-wide settings, and one [`AppConfig`] per app.
//!
//! Everything here deserialises from TOML with unknown keys refused, so a typo is an error
//! that names the key rather than a setting silently ignored. [`Config::validate`] checks what
//! types cannot, and names the key at fault in backticks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod redact;

/// Everything a hub needs to run.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address and port to listen on (`HERALD_LISTEN`).
    pub listen: SocketAddr,
    /// Seconds between heartbeat comments on an otherwise idle stream.
    pub heartbeat_secs: u64,
    /// Reconnection delay hint sent to clients, in milliseconds.
    pub retry_ms: u64,
    /// Seconds that shutdown waits for streams and in-flight requests before it forces them.
    pub shutdown_grace_secs: u64,
    /// Where history and durable messages live.
    pub store: StoreKind,
    /// The SQLite file of the `sqlite` store.
    pub store_path: PathBuf,
    /// `normal` survives a killed process; `full` also survives a power loss, at a cost.
    pub store_sync: StoreSync,
    /// Largest the SQLite file may grow, in bytes; past it durable publishes fail with 503, as on
    /// a full disk. Unlimited when unset.
    pub store_max_bytes: Option<u64>,
    /// Redis URL (`redis://host:port/db`, `redis+sentinel://H:P,H:P/MASTER`,
    /// `redis+cluster://H:P,H:P`); with it the node joins a cluster and Redis holds history,
    /// durable messages and presence instead of SQLite.
    pub redis_url: Option<String>,
    /// Cluster: Redis replicas that must confirm each publish (`WAIT`) before it is answered
    /// 200, so that a failover cannot lose it; 0 for a lone Redis, 1 with Sentinel or Cluster.
    pub redis_min_replicas: usize,
    /// Seconds after which a node that stopped refreshing its presence (crashed) is dropped
    /// from every presence answer.
    pub presence_ttl_secs: u64,
    /// The kernel send buffer of each accepted socket, in bytes (Linux doubles it for its own
    /// bookkeeping); 0 leaves it to the kernel's autotuning.
    pub send_buffer_bytes: usize,
    /// Cluster: how long a publish waits for the other nodes to report how many connections
    /// they handed the message to, in milliseconds; past it the answer says `complete: false`.
    pub delivery_report_ms: u64,
    /// Seconds a client has to send a whole request head; a slower one is disconnected.
    pub head_timeout_secs: u64,
    /// Seconds a client has to send a whole request body once its head arrived; a slower one
    /// is answered 408.
    pub body_timeout_secs: u64,
    /// PEM certificate chain; with `tls_key`, the server speaks HTTPS (HTTP/2 by ALPN).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Password of the admin dashboard at `/admin`, which then sees every app
    /// (`HERALD_ADMIN_PASSWORD`); an app's API key signs in to that app alone.
    pub admin_password: Option<String>,
    /// The default app, configured by the `HERALD_*` variables.
    pub app: AppConfig,
    /// Further apps, each with its own keys and limits.
    pub apps: Vec<AppConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            heartbeat_secs: 15,
            retry_ms: 2000,
            shutdown_grace_secs: 10,
            store: StoreKind::Sqlite,
            store_path: PathBuf::from("herald.db"),
            store_sync: StoreSync::Normal,
            store_max_bytes: None,
            redis_url: None,
            redis_min_replicas: 0,
            presence_ttl_secs: 15,
            send_buffer_bytes: 16 * 1024,
            delivery_report_ms: 100,
            head_timeout_secs: 10,
            body_timeout_secs: 30,
            tls_cert: None,
            tls_key: None,
            admin_password: None,
            app: AppConfig::default(),
            apps: Vec::new(),
        }
    }
}

/// Which store keeps history and durable messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In process memory: fast, and gone at exit.
    Memory,
    /// One SQLite file, the embedded default.
    Sqlite,
}

/// How hard the SQLite store pushes commits to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreSync {
    /// WAL with `synchronous=NORMAL`: a committed message survives a killed process.
    Normal,
    /// WAL with `synchronous=FULL`: it also survives a power loss.
    Full,
}

/// One app: its credentials, its clients' rules and its limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// Unique id; subscribers choose a non-default app with `app=`.
    pub id: String,
    /// Publisher key, sent as `Authorization: Bearer` on `/api/*`.
    pub api_key: Option<String>,
    /// HS256 secret for subscriber tokens.
    pub jwt_secret: Option<String>,
    /// RS256 or ES256 public key (PEM text, or a path to a PEM file) for subscriber tokens.
    pub jwt_public_key: Option<String>,
    /// Required `iss` of subscriber tokens; not checked when unset.
    pub jwt_issuer: Option<String>,
    /// Audience that a subscriber token's `aud` must name; when unset, a token that names any
    /// audience is refused, as one meant for another service.
    pub jwt_audience: Option<String>,
    /// Whether subscriber tokens must carry `exp`; `false` accepts tokens that never expire.
    pub require_exp: bool,
    /// Cookie that may carry the subscriber token.
    pub cookie_name: String,
    /// Whether a token without `sub` may subscribe (to channels and broadcasts only).
    pub allow_anonymous: bool,
    /// Origins allowed to call the hub from a browser; `*` allows any.
    pub cors_origins: Vec<String>,
    /// URL that receives connect and disconnect webhooks.
    pub webhook_url: Option<String>,
    /// HMAC-SHA256 key that signs webhook bodies.
    pub webhook_secret: Option<String>,
    /// Backend URL that `POST /send/{path}` is proxied to.
    pub upstream_url: Option<String>,
    /// HMAC-SHA256 key that signs the identity headers of proxied sends.
    pub upstream_secret: Option<String>,
    /// Whether a durable message to `all` is stored for every online user.
    pub durable_all: bool,
    /// Bounds that protect the hub from hostile or broken clients.
    pub limits: Limits,
    /// The Mercure protocol at `/.well-known/mercure`; on when `publisher_jwt_key` is set.
    pub mercure: MercureConfig,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            id: "default".into(),
            api_key: None,
            jwt_secret: None,
            jwt_public_key: None,
            jwt_issuer: None,
            jwt_audience: None,
            require_exp: true,
            cookie_name: "herald_token".into(),
            allow_anonymous: false,
            cors_origins: Vec::new(),
            webhook_url: None,
            webhook_secret: None,
            upstream_url: None,
            upstream_secret: None,
            durable_all: false,
            limits: Limits::default(),
            mercure: MercureConfig::default(),
        }
    }
}

/// The Mercure hub of one app (`[app.mercure]`); the names mirror the reference hub's
/// `MERCURE_*` settings. Setting `publisher_jwt_key` turns it on.
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MercureConfig {
    /// HMAC secret, or PEM public key (text or path), verifying publisher tokens.
    pub publisher_jwt_key: Option<String>,
    /// Algorithm of publisher tokens: `HS256` (default), `RS256` or `ES256`.
    pub publisher_jwt_alg: Option<String>,
    /// Key verifying subscriber tokens; the publisher key when unset.
    pub subscriber_jwt_key: Option<String>,
    /// Algorithm of subscriber tokens: `HS256` (default), `RS256` or `ES256`.
    pub subscriber_jwt_alg: Option<String>,
    /// Whether subscribers without a token may subscribe (to public updates only).
    pub anonymous: bool,
    /// Whether the subscriptions API and subscription events are on.
    pub subscriptions: bool,
    /// Origins allowed to subscribe from a browser (`*` any, without credentials).
    pub cors_origins: Vec<String>,
    /// Origins allowed to publish from a browser with a cookie; empty allows none.
    pub publish_origins: Vec<String>,
    /// Required `aud` of Mercure tokens; any audience (or none) is accepted when unset.
    pub jwt_audience: Option<String>,
    /// Required `iss` of Mercure tokens; any issuer (or none) is accepted when unset.
    pub jwt_issuer: Option<String>,
}

impl MercureConfig {
    /// Whether this app speaks Mercure.
    pub fn enabled(&self) -> bool {
        self.publisher_jwt_key.is_some()
    }
}

/// Keys are masked: configuration may be printed.
impl std::fmt::Debug for MercureConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mask = |k: &Option<String>| k.as_ref().map(|_| "***");
        f.debug_struct("MercureConfig")
            .field("publisher_jwt_key", &mask(&self.publisher_jwt_key))
            .field("publisher_jwt_alg", &self.publisher_jwt_alg)
            .field("subscriber_jwt_key", &mask(&self.subscriber_jwt_key))
            .field("subscriber_jwt_alg", &self.subscriber_jwt_alg)
            .field("anonymous", &self.anonymous)
            .field("subscriptions", &self.subscriptions)
            .field("cors_origins", &self.cors_origins)
            .field("publish_origins", &self.publish_origins)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_issuer", &self.jwt_issuer)
            .finish()
    }
}

/// Limits, each with a default that suits a typical web app.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest `data` of one publish, in bytes.
    pub max_payload_bytes: usize,
    /// Most addresses (users + sessions + tenants + channels) in one publish.
    pub max_recipients: usize,
    /// Most items in one `/api/publish/batch`.
    pub max_batch: usize,
    /// Most channels one connection may join.
    pub max_channels: usize,
    /// Most open connections of one user; a further one is refused with 429.
    pub max_connections_per_user: usize,
    /// Most open connections from one remote address; a further one is refused with 429.
    pub max_connections_per_ip: usize,
    /// Bytes queued for one connection before it is dropped as too slow.
    pub queue_bytes: usize,
    /// Most messages kept in history for resume.
    pub history_size: usize,
    /// Most bytes of history kept in memory for resume (payloads and their encoded frames); the
    /// oldest messages go first, as with `history_size`.
    pub history_bytes: usize,
    /// Oldest message kept in history for resume, in seconds.
    pub history_age_secs: u64,
    /// Lifetime of a durable message when the publish names no `ttl`, in seconds.
    pub default_ttl_secs: u64,
    /// Longest `ttl` a publish may ask for, in seconds.
    pub max_ttl_secs: u64,
    /// Largest body of one `POST /send/{path}`, in bytes.
    pub max_send_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 64 * 1024,
            max_recipients: 10_000,
            max_batch: 1_000,
            max_channels: 64,
            max_connections_per_user: 32,
            max_connections_per_ip: 10_000,
            queue_bytes: 1024 * 1024,
            history_size: 100_000,
            history_bytes: 64 * 1024 * 1024,
            history_age_secs: 24 * 3600,
            default_ttl_secs: 7 * 24 * 3600,
            max_ttl_secs: 90 * 24 * 3600,
            max_send_bytes: 16 * 1024 * 1024,
        }
    }
}

/// A configuration that cannot run, naming the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("`{key}` {problem}")]
pub struct ConfigError {
    /// The key, as written in the TOML file (`apps[1].api_key`).
    pub key: String,
    /// What is wrong with it and how to fix it.
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { key: key.into(), problem: problem.into() }
    }
}

impl Config {
    /// Every app: the default one first.
    pub fn all_apps(&self) -> impl Iterator<Item = (String, &AppConfig)> {
        std::iter::once(("app".to_string(), &self.app))
            .chain(self.apps.iter().enumerate().map(|(i, a)| (format!("apps[{i}]"), a)))
    }

    /// The heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }

    /// How long a client may take to send a request head.
    pub fn head_timeout(&self) -> Duration {
        Duration::from_secs(self.head_timeout_secs)
    }

    /// How long a client may take to send a request body.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs)
    }

    /// Checks what the types alone cannot.
    ///
    /// # Errors
    ///
    /// The first problem found, naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_secs == 0 {
            return Err(ConfigError::new("heartbeat_secs", "must be at least 1"));
        }
        for (key, value) in
            [("head_timeout_secs", self.head_timeout_secs), ("body_timeout_secs", self.body_timeout_secs)]
        {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        if self.presence_ttl_secs < 3 {
            return Err(ConfigError::new("presence_ttl_secs", "must be at least 3"));
        }
        if let Some(url) = &self.redis_url {
            const SCHEMES: [&str; 5] =
                ["redis://", "rediss://", "redis+unix://", "redis+sentinel://", "redis+cluster://"];
            if !SCHEMES.iter().any(|s| url.starts_with(s)) {
                // Not quoted: a URL may carry a password.
                return Err(ConfigError::new(
                    "redis_url",
                    "is not a `redis://`, `rediss://`, `redis+unix://`, `redis+sentinel://` or `redis+cluster://` URL",
                ));
            }
            if let Err(e) = crate::cluster::Topology::parse(url) {
                return Err(ConfigError::new("redis_url", e));
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::new("tls_cert", "and `tls_key` must be set together"));
        }
        if self.admin_password.as_ref().is_some_and(|p| p.len() < 12) {
            return Err(ConfigError::new("admin_password", "must be at least 12 characters"));
        }
        let mut ids = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        let mut jwt_keys = std::collections::HashMap::new();
        for (path, app) in self.all_apps() {
            if app.id.is_empty() || !app.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(ConfigError::new(format!("{path}.id"), "must be non-empty letters, digits, `-` or `_`"));
            }
            if !ids.insert(app.id.as_str()) {
                return Err(ConfigError::new(format!("{path}.id"), format!("`{}` is used by two apps", app.id)));
            }
            if let Some(key) = &app.api_key {
                if key.len() < 16 {
                    return Err(ConfigError::new(format!("{path}.api_key"), "must be at least 16 characters"));
                }
                if !keys.insert(key.as_str()) {
                    return Err(ConfigError::new(
                        format!("{path}.api_key"),
                        "is used by two apps; keys decide the app",
                    ));
                }
            }
            if let Some(secret) = &app.jwt_secret {
                if secret.len() < 16 {
                    return Err(ConfigError::new(format!("{path}.jwt_secret"), "must be at least 16 characters"));
                }
                // A public key is no secret: used as an HMAC key, it lets anyone sign tokens.
                if secret.contains("-----BEGIN") {
                    return Err(ConfigError::new(
                        format!("{path}.jwt_secret"),
                        "holds a PEM key; a public key belongs in `jwt_public_key`, and an HS256 secret must be secret",
                    ));
                }
            }
            if app.jwt_secret.is_some() && app.jwt_public_key.is_some() {
                return Err(ConfigError::new(
                    format!("{path}.jwt_public_key"),
                    "cannot be set together with `jwt_secret`: one app verifies one algorithm family",
                ));
            }
            for (key, value) in [("jwt_issuer", &app.jwt_issuer), ("jwt_audience", &app.jwt_audience)] {
                if value.as_deref().is_some_and(str::is_empty) {
                    return Err(ConfigError::new(
                        format!("{path}.{key}"),
                        "must not be empty; leave it unset to skip the check",
                    ));
                }
            }
            // Builds the verifier once here so that an unusable public key is a configuration
            // error, and so that apps sharing a key are caught: each would accept the other's users.
            let verifier = crate::auth::Verifier::new(&path, app)?;
            if let Some(digest) = verifier.key_digest() {
                if let Some(other) = jwt_keys.insert(digest, app.id.as_str()) {
                    let key = if app.jwt_secret.is_some() { "jwt_secret" } else { "jwt_public_key" };
                    return Err(ConfigError::new(
                        format!("{path}.{key}"),
                        format!(
                            "is the JWT key of both app `{other}` and app `{}`: each app needs its own key, or \
                             each accepts the other's tokens",
                            app.id
                        ),
                    ));
                }
            }
            if app.webhook_url.is_some() && app.webhook_secret.is_none() {
                return Err(ConfigError::new(
                    format!("{path}.webhook_secret"),
                    "is required when `webhook_url` is set",
                ));
            }
            if app.upstream_url.is_some() && app.upstream_secret.is_none() {
                return Err(ConfigError::new(
                    format!("{path}.upstream_secret"),
                    "is required when `upstream_url` is set",
                ));
            }
            for (key, url) in [("webhook_url", &app.webhook_url), ("upstream_url", &app.upstream_url)] {
                if let Some(url) = url {
                    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
                    if !scheme_ok || url.parse::<http::Uri>().is_err() {
                        return Err(ConfigError::new(
                            format!("{path}.{key}"),
                            format!("`{url}` is not an http:// or https:// URL"),
                        ));
                    }
                }
            }
            let l = &app.limits;
            for (key, value) in [
                ("max_payload_bytes", l.max_payload_bytes),
                ("max_recipients", l.max_recipients),
                ("max_batch", l.max_batch),
                ("max_channels", l.max_channels),
                ("max_connections_per_user", l.max_connections_per_user),
                ("max_connections_per_ip", l.max_connections_per_ip),
                ("queue_bytes", l.queue_bytes),
                ("history_size", l.history_size),
            ] {
                if value == 0 {
                    return Err(ConfigError::new(format!("{path}.limits.{key}"), "must be at least 1"));
                }
            }
            if l.history_bytes < l.max_payload_bytes.saturating_mul(4) {
                return Err(ConfigError::new(
                    format!("{path}.limits.history_bytes"),
                    "must hold at least four of the largest messages (4 × `max_payload_bytes`)",
                ));
            }
            if l.default_ttl_secs == 0 || l.default_ttl_secs > l.max_ttl_secs {
                return Err(ConfigError::new(
                    format!("{path}.limits.default_ttl_secs"),
                    "must be between 1 and `max_ttl_secs`",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str, secret: &str) -> AppConfig {
        AppConfig { id: id.into(), jwt_secret: Some(secret.into()), ..AppConfig::default() }
    }

    #[test]
    fn two_apps_sharing_a_jwt_key_are_refused_by_name() {
        let shared = "shared-jwt-secret-0123456789";
        let config = Config {
            app: app("default", shared),
            apps: vec![app("hr", "own-jwt-secret-0123456789"), app("crm", shared)],
            ..Config::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("`apps[1].jwt_secret`") && error.contains("`default`") && error.contains("`crm`"),
            "{error}"
        );
        // One public key, once as text and once re-wrapped, is one key.
        let pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEVs/o5+uQbTjL3chynL4wXgUg2R9\nq9UU8I5mEovUf86QZ7kOBIjJwqnzD1omageEHWwHdBO6B+dFabmdT9POxg==\n-----END PUBLIC KEY-----\n";
        let rewrapped = pem.replace('\n', "\r\n  ");
        let config = Config {
            app: AppConfig { jwt_public_key: Some(pem.into()), ..AppConfig::default() },
            apps: vec![AppConfig { id: "hr".into(), jwt_public_key: Some(rewrapped), ..AppConfig::default() }],
            ..Config::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("`apps[0].jwt_public_key`") && error.contains("`hr`"), "{error}");
    }

    #[test]
    fn a_public_key_is_no_jwt_secret() {
        let config = Config {
            app: app("default", "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----"),
            ..Config::default()
        };
        assert!(config.validate().unwrap_err().to_string().contains("`app.jwt_secret`"));
    }
}
