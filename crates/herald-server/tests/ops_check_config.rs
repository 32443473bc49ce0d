//! `herald check-config`: validates as `serve` would, names the key at fault with exit status 2,
//! and prints the effective configuration with every secret masked.

use std::process::{Command, Output, Stdio};

fn check_config(file: Option<&std::path::Path>, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.arg("check-config").env_clear().stdin(Stdio::null());
    if let Some(file) = file {
        command.arg("--config").arg(file);
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

#[test]
fn the_effective_configuration_is_printed_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(
        &file,
        r#"
heartbeat_secs = 20
redis_url = "redis://herald:file-redis-pw@redis:6379/0"
[app]
jwt_secret = "file-jwt-secret-0123456789"
webhook_url = "https://backend.example/hook"
webhook_secret = "file-webhook-secret"
upstream_url = "https://backend.example/send"
upstream_secret = "file-upstream-secret"
[[apps]]
id = "hr"
api_key = "file-hr-api-key-0123456789"
jwt_secret = "file-hr-jwt-secret-0123456789"
"#,
    )
    .unwrap();
    let out = check_config(
        Some(&file),
        &[("HERALD_API_KEY", "env-api-key-0123456789"), ("HERALD_HEARTBEAT_SECS", "25"), ("HERALD_STORE", "memory")],
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for secret in [
        "file-redis-pw",
        "file-jwt-secret",
        "file-webhook-secret",
        "file-upstream-secret",
        "file-hr-api-key",
        "file-hr-jwt-secret",
        "env-api-key",
    ] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }
    // The printed configuration is TOML with the file, then the environment, applied.
    let shown: toml::Table = stdout.parse().unwrap_or_else(|e| panic!("not TOML ({e}):\n{stdout}"));
    assert_eq!(shown["heartbeat_secs"].as_integer(), Some(25));
    assert_eq!(shown["store"].as_str(), Some("memory"));
    assert_eq!(shown["redis_url"].as_str(), Some("redis://herald:********@redis:6379/0"));
    assert_eq!(shown["app"]["api_key"].as_str(), Some("********"));
    assert_eq!(shown["app"]["webhook_url"].as_str(), Some("https://backend.example/hook"));
    assert_eq!(shown["apps"][0]["jwt_secret"].as_str(), Some("********"));
    assert_eq!(shown["apps"][0]["limits"]["max_channels"].as_integer(), Some(64));
}

#[test]
fn an_invalid_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    for (text, env, key) in [
        ("hearbeat_secs = 5\n", vec![], "hearbeat_secs"),
        ("[app.limits]\nmax_batch = 0\n", vec![], "app.limits.max_batch"),
        ("[app]\napi_key = \"short\"\n", vec![], "app.api_key"),
        ("", vec![("HERALD_QUEUE_BYTES", "lots")], "HERALD_QUEUE_BYTES"),
        ("", vec![("HERALD_TLS_CERT", "/nonexistent.pem"), ("HERALD_TLS_KEY", "/nonexistent.pem")], "tls_cert"),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = check_config(Some(&file), &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?} {env:?}: {stderr}");
        assert!(stderr.contains(&format!("`{key}`")), "{text:?} {env:?}: the error must name `{key}`: {stderr}");
        assert!(out.stdout.is_empty(), "nothing is printed as effective when invalid");
    }
    // A secret in a bad value is not echoed back.
    let out = check_config(None, &[("HERALD_REDIS_URL", "http://herald:s3cret-pw@redis:6379")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("s3cret-pw"));
}
