//! Where the configuration comes from: a TOML file, then `HERALD_*` environment variables, then
//! flags, each overriding the one before. Every error names the key (or variable) at fault.

use std::path::Path;

use herald::config::Config;
use toml::{Table, Value};

/// The kind of value an environment variable carries.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Number,
    Flag,
    List,
}

/// `HERALD_<NAME>` → TOML key. Server-wide keys, then the default app's (`app.*`). Further apps
/// are configured in the file only.
const ENV: &[(&str, &str, Kind)] = &[
    ("LISTEN", "listen", Kind::Text),
    ("HEARTBEAT_SECS", "heartbeat_secs", Kind::Number),
    ("RETRY_MS", "retry_ms", Kind::Number),
    ("SHUTDOWN_GRACE_SECS", "shutdown_grace_secs", Kind::Number),
    ("STORE_PATH", "store_path", Kind::Text),
    ("STORE_SYNC", "store_sync", Kind::Text),
    ("STORE_MAX_BYTES", "store_max_bytes", Kind::Number),
    ("REDIS_URL", "redis_url", Kind::Text),
    ("REDIS_MIN_REPLICAS", "redis_min_replicas", Kind::Number),
    ("PRESENCE_TTL_SECS", "presence_ttl_secs", Kind::Number),
    ("DELIVERY_REPORT_MS", "delivery_report_ms", Kind::Number),
    ("HEAD_TIMEOUT_SECS", "head_timeout_secs", Kind::Number),
    ("SEND_BUFFER_BYTES", "send_buffer_bytes", Kind::Number),
    ("BODY_TIMEOUT_SECS", "body_timeout_secs", Kind::Number),
    ("TLS_CERT", "tls_cert", Kind::Text),
    ("TLS_KEY", "tls_key", Kind::Text),
    ("ADMIN_PASSWORD", "admin_password", Kind::Text),
    ("APP_ID", "app.id", Kind::Text),
    ("API_KEY", "app.api_key", Kind::Text),
    ("JWT_SECRET", "app.jwt_secret", Kind::Text),
    ("JWT_PUBLIC_KEY", "app.jwt_public_key", Kind::Text),
    ("JWT_ISSUER", "app.jwt_issuer", Kind::Text),
    ("JWT_AUDIENCE", "app.jwt_audience", Kind::Text),
    ("REQUIRE_EXP", "app.require_exp", Kind::Flag),
    ("COOKIE_NAME", "app.cookie_name", Kind::Text),
    ("ALLOW_ANONYMOUS", "app.allow_anonymous", Kind::Flag),
    ("CORS_ORIGINS", "app.cors_origins", Kind::List),
    ("WEBHOOK_URL", "app.webhook_url", Kind::Text),
    ("WEBHOOK_SECRET", "app.webhook_secret", Kind::Text),
    ("UPSTREAM_URL", "app.upstream_url", Kind::Text),
    ("UPSTREAM_SECRET", "app.upstream_secret", Kind::Text),
    ("DURABLE_ALL", "app.durable_all", Kind::Flag),
    ("MAX_PAYLOAD_BYTES", "app.limits.max_payload_bytes", Kind::Number),
    ("MAX_RECIPIENTS", "app.limits.max_recipients", Kind::Number),
    ("MAX_BATCH", "app.limits.max_batch", Kind::Number),
    ("MAX_CHANNELS", "app.limits.max_channels", Kind::Number),
    ("MAX_CONNECTIONS_PER_USER", "app.limits.max_connections_per_user", Kind::Number),
    ("MAX_CONNECTIONS_PER_IP", "app.limits.max_connections_per_ip", Kind::Number),
    ("QUEUE_BYTES", "app.limits.queue_bytes", Kind::Number),
    ("HISTORY_SIZE", "app.limits.history_size", Kind::Number),
    ("HISTORY_BYTES", "app.limits.history_bytes", Kind::Number),
    ("HISTORY_AGE_SECS", "app.limits.history_age_secs", Kind::Number),
    ("DEFAULT_TTL_SECS", "app.limits.default_ttl_secs", Kind::Number),
    ("MAX_TTL_SECS", "app.limits.max_ttl_secs", Kind::Number),
    ("MAX_SEND_BYTES", "app.limits.max_send_bytes", Kind::Number),
    ("MERCURE_PUBLISHER_JWT_KEY", "app.mercure.publisher_jwt_key", Kind::Text),
    ("MERCURE_PUBLISHER_JWT_ALG", "app.mercure.publisher_jwt_alg", Kind::Text),
    ("MERCURE_SUBSCRIBER_JWT_KEY", "app.mercure.subscriber_jwt_key", Kind::Text),
    ("MERCURE_SUBSCRIBER_JWT_ALG", "app.mercure.subscriber_jwt_alg", Kind::Text),
    ("MERCURE_ANONYMOUS", "app.mercure.anonymous", Kind::Flag),
    ("MERCURE_SUBSCRIPTIONS", "app.mercure.subscriptions", Kind::Flag),
    ("MERCURE_CORS_ORIGINS", "app.mercure.cors_origins", Kind::List),
    ("MERCURE_PUBLISH_ORIGINS", "app.mercure.publish_origins", Kind::List),
];

/// The names of every environment variable Herald reads, for `--help`.
pub fn env_names() -> impl Iterator<Item = String> {
    ENV.iter().map(|(name, key, _)| format!("HERALD_{name} ({key})")).chain(["HERALD_STORE (store)".to_string()])
}

/// A value set by a flag, by its TOML key.
pub struct Overrides<'a> {
    pub listen: Option<&'a str>,
    pub store: Option<&'a str>,
    pub heartbeat_secs: Option<u64>,
}

impl Overrides<'_> {
    /// No flag overrides anything.
    pub fn none() -> Self {
        Self { listen: None, store: None, heartbeat_secs: None }
    }
}

/// Builds the configuration from `file`, the process environment and `flags`.
///
/// # Errors
///
/// A message naming the key, variable or file at fault.
pub fn load(file: Option<&Path>, env: impl Fn(&str) -> Option<String>, flags: Overrides<'_>) -> Result<Config, String> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            text.parse::<Table>().map_err(|e| format!("`{}` is not valid TOML: {e}", path.display()))?
        }
        None => Table::new(),
    };
    for (name, key, kind) in ENV {
        let var = format!("HERALD_{name}");
        if let Some(raw) = env(&var) {
            set(&mut table, key, parse(&var, &raw, *kind)?).map_err(|e| format!("`{var}`: {e}"))?;
        }
    }
    if let Some(store) = env("HERALD_STORE") {
        set_store(&mut table, &store);
    }
    if let Some(listen) = flags.listen {
        table.insert("listen".into(), Value::String(listen.into()));
    }
    if let Some(store) = flags.store {
        set_store(&mut table, store);
    }
    if let Some(secs) = flags.heartbeat_secs {
        table.insert("heartbeat_secs".into(), Value::Integer(secs as i64));
    }
    let config: Config = Value::Table(table.clone()).try_into().map_err(|e: toml::de::Error| {
        // The error of a value deserialiser carries no key: find the top-level key that fails
        // on its own, so the message names it.
        let culprit = table.iter().find(|(key, value)| {
            let alone = Table::from_iter([((*key).clone(), (*value).clone())]);
            Value::Table(alone).try_into::<Config>().is_err()
        });
        match culprit {
            Some((key, _)) => format!("`{key}`: {}", e.message()),
            None => e.message().to_string(),
        }
    })?;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// `memory` and `sqlite` choose the store; anything else is the SQLite file's path.
fn set_store(table: &mut Table, value: &str) {
    match value {
        "memory" | "sqlite" => {
            table.insert("store".into(), Value::String(value.into()));
        }
        path => {
            table.insert("store".into(), Value::String("sqlite".into()));
            table.insert("store_path".into(), Value::String(path.into()));
        }
    }
}

fn parse(var: &str, raw: &str, kind: Kind) -> Result<Value, String> {
    Ok(match kind {
        Kind::Text => Value::String(raw.into()),
        Kind::Number => {
            Value::Integer(raw.trim().parse().map_err(|_| format!("`{var}` must be a whole number, not `{raw}`"))?)
        }
        Kind::Flag => Value::Boolean(match raw.trim() {
            "1" | "true" | "yes" => true,
            "0" | "false" | "no" | "" => false,
            _ => return Err(format!("`{var}` must be true or false, not `{raw}`")),
        }),
        Kind::List => Value::Array(
            raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.into())).collect(),
        ),
    })
}

/// Sets a dotted key, creating tables on the way.
///
/// # Errors
///
/// A section on the way is not a table (`app = "x"` in the file), naming it.
fn set(table: &mut Table, key: &str, value: Value) -> Result<(), String> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("keys are non-empty");
    let mut current = table;
    let mut path = String::new();
    for part in parts {
        path = if path.is_empty() { part.to_string() } else { format!("{path}.{part}") };
        current = current
            .entry(part)
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("`{path}` must be a table (`[{path}]`) to hold `{key}`"))?;
    }
    current.insert(last.into(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_flags() -> Overrides<'static> {
        Overrides { listen: None, store: None, heartbeat_secs: None }
    }

    #[test]
    fn env_overrides_and_nests() {
        let env = |k: &str| match k {
            "HERALD_LISTEN" => Some("127.0.0.1:9000".to_string()),
            "HERALD_API_KEY" => Some("k".repeat(20)),
            "HERALD_MAX_CHANNELS" => Some("3".into()),
            "HERALD_STORE" => Some("/tmp/x.db".into()),
            _ => None,
        };
        let c = load(None, env, no_flags()).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.app.api_key.as_deref(), Some("kkkkkkkkkkkkkkkkkkkk"));
        assert_eq!(c.app.limits.max_channels, 3);
        assert_eq!(c.store_path, Path::new("/tmp/x.db"));
    }

    #[test]
    fn a_section_that_is_not_a_table_is_named_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(&file, "app = \"x\"\n").unwrap();
        let env = |k: &str| (k == "HERALD_API_KEY").then(|| "k".repeat(20));
        let err = load(Some(&file), env, no_flags()).unwrap_err();
        assert!(err.contains("HERALD_API_KEY") && err.contains("`app` must be a table"), "{err}");
    }

    #[test]
    fn a_wrong_redis_url_is_named_without_its_password() {
        let env = |k: &str| (k == "HERALD_REDIS_URL").then(|| "http://herald:s3cret-pw@redis:6379".to_string());
        let err = load(None, env, no_flags()).unwrap_err();
        assert!(err.contains("redis_url") && !err.contains("s3cret-pw"), "{err}");
    }

    #[test]
    fn errors_name_the_key() {
        let err = load(None, |k| (k == "HERALD_HEARTBEAT_SECS").then(|| "soon".into()), no_flags()).unwrap_err();
        assert!(err.contains("HERALD_HEARTBEAT_SECS"), "{err}");
        let err = load(None, |k| (k == "HERALD_API_KEY").then(|| "short".into()), no_flags()).unwrap_err();
        assert!(err.contains("app.api_key"), "{err}");
        let err = load(None, |k| (k == "HERALD_ADMIN_PASSWORD").then(|| "short".into()), no_flags()).unwrap_err();
        assert!(err.contains("`admin_password`") && !err.contains("short"), "{err}");
        let err = load(None, |k| (k == "HERALD_LISTEN").then(|| "nowhere".into()), no_flags()).unwrap_err();
        assert!(err.contains("socket address") && err.contains("`listen`"), "{err}");
    }
}
