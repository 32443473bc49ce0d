//! The configuration as it may be shown to a person (`herald check-config`, a dashboard, a log):
//! secrets masked.
//!
//! Secrets are found by the *name* of their key, not by a list of fields, so that a secret key
//! added later (`admin_password`, `sentinel_password`, `signing_key`...) is masked without anyone
//! having to remember this module: a key is secret when its name contains `secret`, `password`,
//! `passwd`, `token`, `credential` or `private`, or ends in `key`/`keys`, unless it is one of the
//! few names in [`PUBLIC`]. Independently, the password of any URL (`redis://:pw@host`) is
//! masked wherever a URL appears.

use serde_json::Value;

use super::Config;

/// What a masked value is shown as.
pub const MASK: &str = "********";

/// Names that match the secret pattern but hold no secret: a public key, and the *path* of the
/// TLS key file (the key itself stays in the file).
pub const PUBLIC: &[&str] = &["jwt_public_key", "tls_key"];

/// Whether a key of this name holds a secret.
pub fn is_secret_key(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if PUBLIC.contains(&name.as_str()) {
        return false;
    }
    ["secret", "password", "passwd", "token", "credential", "private"].iter().any(|word| name.contains(word))
        || name.ends_with("key")
        || name.ends_with("keys")
}

/// Every key of `config` (unset ones as `null`), with secrets masked.
pub fn masked(config: &Config) -> Value {
    let mut value = serde_json::to_value(config).expect("a configuration always serialises");
    mask(&mut value);
    value
}

/// Masks, in place, the value of every secret key and the password of every URL in `value`.
pub fn mask(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if is_secret_key(key) {
                    mask_all(value);
                } else {
                    mask(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        Value::String(text) => {
            if let Some(clean) = without_url_password(text) {
                *text = clean;
            }
        }
        _ => {}
    }
}

/// Replaces every set value under a secret key; an unset one stays `null` (that it is unset is
/// no secret, and worth seeing).
fn mask_all(value: &mut Value) {
    match value {
        Value::Null => {}
        Value::Array(items) => items.iter_mut().for_each(mask_all),
        Value::Object(map) => map.values_mut().for_each(mask_all),
        other => *other = Value::String(MASK.into()),
    }
}

/// `scheme://user:password@host/...?password=...` with the password and every secret-named query
/// parameter (`password`, `sentinel_password` of a `redis+sentinel://` URL) masked, or `None`
/// when `text` holds no credentials. A lone `user@` is masked whole: Redis clients take it as the
/// password.
fn without_url_password(text: &str) -> Option<String> {
    let start = text.find("://")? + 3;
    let rest = &text[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let shown = match authority[..at].split_once(':') {
                Some((user, _)) => format!("{user}:{MASK}"),
                None => MASK.to_string(),
            };
            format!("{shown}{}", &authority[at..])
        }
        None => authority.to_string(),
    };
    let tail = masked_query(tail);
    let clean = format!("{}{authority}{tail}", &text[..start]);
    (clean != text).then_some(clean)
}

/// The path, query and fragment of a URL with the value of every secret-named query parameter
/// masked.
fn masked_query(tail: &str) -> String {
    let Some(q) = tail.find('?') else { return tail.to_string() };
    let (query, fragment) = tail[q + 1..].split_at(tail[q + 1..].find('#').unwrap_or(tail.len() - q - 1));
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_key(name) => format!("{name}={MASK}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{}?{}{fragment}", &tail[..q], pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::AppConfig;

    #[test]
    fn every_secret_of_a_configuration_is_masked() {
        let secrets = ["api-key-0123456789", "jwt-secret-0123456789", "webhook-s3cret", "upstream-s3cret", "redis-pw"];
        let app = AppConfig {
            api_key: Some(secrets[0].into()),
            jwt_secret: Some(secrets[1].into()),
            webhook_url: Some("https://backend/hook".into()),
            webhook_secret: Some(secrets[2].into()),
            upstream_secret: Some(secrets[3].into()),
            ..AppConfig::default()
        };
        let config = Config {
            redis_url: Some(format!("redis://herald:{}@redis:6379/0", secrets[4])),
            apps: vec![AppConfig { id: "hr".into(), ..app.clone() }],
            app,
            ..Config::default()
        };
        let shown = masked(&config);
        let text = shown.to_string();
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} shown in {text}");
        }
        assert_eq!(shown["app"]["api_key"], MASK);
        assert_eq!(shown["apps"][0]["webhook_secret"], MASK);
        assert_eq!(shown["redis_url"], format!("redis://herald:{MASK}@redis:6379/0"));
        // What is not secret stays readable, and unset stays visibly unset.
        assert_eq!(shown["app"]["webhook_url"], "https://backend/hook");
        assert_eq!(shown["app"]["jwt_public_key"], Value::Null);
        assert_eq!(shown["app"]["limits"]["max_batch"], 1000);
    }

    #[test]
    fn a_secret_key_added_later_is_masked_by_its_name() {
        // Keys another module might add: none is listed anywhere in this module.
        let mut value = json!({
            "admin_password": "pw1",
            "redis": { "sentinel_password": "pw2", "sentinel_urls": ["redis://:pw3@s1:26379", "redis://s2:26379"] },
            "apps": [{ "signing_key": "k1", "previous_api_keys": ["k2", "k3"], "client_secret": "cs1",
                       "oauth_token": "t1", "private_pem": "p1", "Upstream_Credentials": { "user": "u1" } }],
            "cookie_name": "herald_token",
            "jwt_public_key": "-----BEGIN PUBLIC KEY-----",
            "tls_key": "/etc/herald/key.pem",
            "redis_url": "redis://:pw4@redis:6379",
            "webhook_url": "https://user@backend/hook?x=a@b",
            "sentinel_url": "redis+sentinel://s1:26379,s2:26379/main?password=pw5&db=0&sentinel_password=pw6#f",
        });
        mask(&mut value);
        let text = value.to_string();
        for secret in ["pw1", "pw2", "pw3", "pw4", "pw5", "pw6", "k1", "k2", "k3", "cs1", "t1", "p1", "u1", "user@"] {
            assert!(!text.contains(secret), "{secret} shown in {text}");
        }
        assert_eq!(value["redis"]["sentinel_urls"][1], "redis://s2:26379");
        assert_eq!(value["redis_url"], format!("redis://:{MASK}@redis:6379"));
        assert_eq!(value["webhook_url"], format!("https://{MASK}@backend/hook?x=a@b"));
        assert_eq!(
            value["sentinel_url"],
            format!("redis+sentinel://s1:26379,s2:26379/main?password={MASK}&db=0&sentinel_password={MASK}#f")
        );
        assert_eq!(value["cookie_name"], "herald_token");
        assert_eq!(value["tls_key"], "/etc/herald/key.pem");
        assert_eq!(value["jwt_public_key"], "-----BEGIN PUBLIC KEY-----");
    }
}
