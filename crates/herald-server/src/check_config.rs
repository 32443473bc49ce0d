//! `herald check-config`: loads the configuration exactly as `serve` would (file, then
//! `HERALD_*` variables), checks it, and prints the effective configuration with secrets masked.

use std::path::Path;

use herald::config::redact;
use serde_json::Value;

/// The effective configuration as TOML, secrets masked, or the error naming the key at fault.
///
/// # Errors
///
/// The same message `serve` would stop on.
pub fn run(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let config = crate::settings::load(file, env, crate::settings::Overrides::none())?;
    // `serve` reads the TLS files only as it starts; a check that passes should mean it starts.
    herald::server::tls_acceptor(&config).map_err(|e| e.to_string())?;
    let mut shown = redact::masked(&config);
    let mut unset = Vec::new();
    drop_nulls(&mut shown, "", &mut unset);
    let body = toml::to_string(&shown).map_err(|e| format!("cannot print the configuration: {e}"))?;
    let source = match file {
        Some(path) => format!("`{}`, then HERALD_* variables", path.display()),
        None => "defaults and HERALD_* variables (no --config file)".to_string(),
    };
    let mut out = format!("# The configuration is valid. Effective configuration from {source}; secrets masked.\n");
    if !unset.is_empty() {
        out.push_str(&format!("# Unset: {}\n", unset.join(", ")));
    }
    out.push('\n');
    out.push_str(&body);
    Ok(out)
}

/// Removes `null`s (TOML has none), collecting their dotted keys.
fn drop_nulls(value: &mut Value, path: &str, unset: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            map.retain(|key, value| {
                let key = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                if value.is_null() {
                    unset.push(key);
                    return false;
                }
                drop_nulls(value, &key, unset);
                true
            });
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                drop_nulls(item, &format!("{path}[{i}]"), unset);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::PathBuf;

    use herald::config::Config;

    use super::*;

    fn example_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../herald.example.toml")
    }

    /// Dotted paths of every key a configuration has; arrays (such as `apps`) are one key.
    fn key_paths(value: &Value, path: &str, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    key_paths(value, &if path.is_empty() { key.clone() } else { format!("{path}.{key}") }, out);
                }
            }
            _ => {
                out.insert(path.to_string());
            }
        }
    }

    /// A key line, written out or commented out: `key = value` or `# key = value`.
    fn key_of(line: &str) -> Option<&str> {
        let line = line.strip_prefix("# ").unwrap_or(line);
        let (key, _) = line.split_once(" = ")?;
        key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_').then_some(key)
    }

    /// Every key of the example (commented out or not) by dotted path, with the comment line
    /// above it; the `[[apps]]` sample counts as the one key `apps`.
    fn example_keys(text: &str) -> BTreeMap<String, String> {
        let mut keys = BTreeMap::new();
        let mut section = String::new();
        let mut previous = "";
        for line in text.lines() {
            let bare = line.strip_prefix("# ").unwrap_or(line);
            if bare.starts_with('[') {
                section = bare.trim_matches(['[', ']']).to_string();
            } else if let Some(key) = key_of(line) {
                if section.starts_with("apps") {
                    keys.insert("apps".to_string(), String::new());
                } else {
                    let path = if section.is_empty() { key.to_string() } else { format!("{section}.{key}") };
                    assert!(
                        previous.starts_with("# ") && key_of(previous).is_none(),
                        "`{path}` in herald.example.toml needs a one-line reason above it"
                    );
                    keys.insert(path, previous.to_string());
                }
            }
            previous = line;
        }
        keys
    }

    #[test]
    fn the_example_is_valid_as_is_and_holds_the_defaults() {
        let loaded =
            crate::settings::load(Some(&example_path()), |_| None, crate::settings::Overrides::none()).unwrap();
        assert_eq!(serde_json::to_value(loaded).unwrap(), serde_json::to_value(Config::default()).unwrap());
    }

    #[test]
    fn the_example_names_every_key_with_its_variable() {
        let text = std::fs::read_to_string(example_path()).unwrap();
        let mut accepted = BTreeSet::new();
        key_paths(&serde_json::to_value(Config::default()).unwrap(), "", &mut accepted);
        let documented = example_keys(&text);
        let missing: Vec<_> = accepted.iter().filter(|k| !documented.contains_key(*k)).collect();
        let unknown: Vec<_> = documented.keys().filter(|k| !accepted.contains(*k)).collect();
        assert!(missing.is_empty(), "keys missing from herald.example.toml: {missing:?}");
        assert!(unknown.is_empty(), "herald.example.toml names keys Herald does not accept: {unknown:?}");

        // Uncommented, every example value has the right type.
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if key_of(l).is_some() || rest.starts_with('[') => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let full: Config = toml::from_str(&uncommented).unwrap_or_else(|e| panic!("uncommented example: {e}"));
        assert_eq!(full.apps.len(), 1);

        // Each variable is named on its key's reason line.
        for entry in crate::settings::env_names() {
            let (var, key) = entry.trim_end_matches(')').split_once(" (").unwrap();
            let reason = documented.get(key).unwrap_or_else(|| panic!("{var} sets `{key}`, which is not documented"));
            assert!(reason.contains(&format!("({var})")), "the reason of `{key}` must name {var}: {reason}");
        }
    }
}
