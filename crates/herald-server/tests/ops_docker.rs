//! The Docker files cannot be run here (no Docker engine on the CI machine), so this checks what
//! can be checked: docker-compose.yml parses, every node's environment is a configuration Herald
//! accepts (through `herald check-config`), the nodes listen where nginx and the Dockerfile say,
//! docker/nginx.conf is docs/nginx.conf with only the compose addresses, and the image runs as a
//! non-root user.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// docker-compose.yml as JSON, parsed by PyYAML (Debian's python3-yaml; scripts/test installs it).
fn compose() -> Value {
    let python = std::env::var("HERALD_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python)
        .args(["-c", "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)"])
        .arg(repo("docker-compose.yml"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(output.status.success(), "docker-compose.yml: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Compose's `${NAME:?message}` and `${NAME:-default}`, with `vars` as the shell's environment.
fn interpolate(value: &str, vars: &[(&str, &str)]) -> String {
    let Some(start) = value.find("${") else { return value.to_string() };
    let end = start + value[start..].find('}').expect("unclosed ${");
    let inner = &value[start + 2..end];
    let name = inner.split([':', '-', '?']).next().unwrap();
    let set = vars.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let replacement = match (set, inner.split_once(":-")) {
        (Some(v), _) => v.to_string(),
        (None, Some((_, default))) => default.to_string(),
        (None, None) => panic!("`{value}` needs {name} set"),
    };
    format!("{}{replacement}{}", &value[..start], interpolate(&value[end + 1..], vars))
}

/// The variables `herald serve --help` lists: the ones Herald reads (others are ignored).
fn known_variables() -> BTreeSet<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_herald")).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    help.split_whitespace().filter(|w| w.starts_with("HERALD_")).map(str::to_string).collect()
}

/// `herald check-config` with exactly `env`, every name of which Herald must read; the effective
/// configuration it prints.
fn check_config(env: &[(String, String)]) -> toml::Table {
    let known = known_variables();
    for (name, _) in env {
        assert!(known.contains(name), "Herald reads no variable {name} (it would be ignored)");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("check-config")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "herald refuses {env:?}: {stderr}");
    String::from_utf8(output.stdout).unwrap().parse().unwrap()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("no port in `{addr}`"))
}

/// The `ENV` pairs of the Dockerfile's last stage.
fn dockerfile_env(final_stage: &str) -> Vec<(String, String)> {
    let joined = final_stage.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ENV "))
        .flat_map(|pairs| pairs.split_whitespace().map(|p| p.split_once('=').unwrap()))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn compose_nodes_are_valid_configurations_behind_the_tested_nginx_config() {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["herald1", "herald2", "herald3", "nginx", "redis"]));

    // docker/nginx.conf is docs/nginx.conf with the compose addresses, nothing else.
    let docs = read("docs/nginx.conf");
    let docker = read("docker/nginx.conf");
    let body = |text: &str| text[text.find("worker_processes").expect("no worker_processes")..].to_string();
    let mut expected = body(&docs).replace("listen 127.0.0.1:8080;", "listen 8080;");
    let mut upstreams = Vec::new();
    for n in 1..=3 {
        let (local, node) = (format!("server 127.0.0.1:808{n} "), format!("herald{n}"));
        assert!(expected.contains(&local), "docs/nginx.conf no longer names {local}");
        expected = expected.replace(&local, &format!("server {node}:8080 "));
        upstreams.push(node);
    }
    assert_eq!(body(&docker), expected, "docker/nginx.conf must be docs/nginx.conf with the compose addresses");

    // Each node: its environment is a valid configuration, listening where nginx sends traffic.
    let shell =
        [("HERALD_API_KEY", "compose-api-key-0123456789"), ("HERALD_JWT_SECRET", "compose-jwt-secret-0123456789")];
    for node in &upstreams {
        let env: Vec<(String, String)> = services[node]["environment"]
            .as_object()
            .unwrap_or_else(|| panic!("{node} has no environment map"))
            .iter()
            .map(|(k, v)| (k.clone(), interpolate(v.as_str().expect("string values"), &shell)))
            .collect();
        let effective = check_config(&env);
        assert_eq!(
            port_of(effective["listen"].as_str().unwrap()),
            8080,
            "{node} must listen where nginx sends traffic"
        );
        let redis = effective["redis_url"].as_str().expect("the nodes share Redis");
        assert!(redis.starts_with("redis://redis:"), "{node}: {redis} is not the redis service");
        assert!(services[node]["depends_on"]["redis"].is_object(), "{node} must wait for Redis");
    }

    // nginx is given that file, and publishes the port it listens on.
    let nginx = &services["nginx"];
    let volumes: Vec<&str> = nginx["volumes"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let mount =
        volumes.iter().find_map(|v| v.strip_prefix("./docker/nginx.conf:")).expect("nginx mounts docker/nginx.conf");
    let target = mount.trim_end_matches(":ro");
    let command = nginx["command"].as_array().unwrap().iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ");
    assert!(command.contains(&format!("-c {target}")), "nginx must run {target}: {command}");
    let ports: Vec<&str> = nginx["ports"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(ports.iter().any(|p| p.ends_with(":8080")), "nginx must publish its port 8080: {ports:?}");
}

#[test]
fn the_image_runs_herald_as_a_non_root_user_with_a_valid_environment() {
    let dockerfile = read("Dockerfile");
    let stages: Vec<&str> = dockerfile.split("\nFROM ").collect();
    assert!(stages.len() >= 2, "the Dockerfile must be multi-stage");
    let build = stages[stages.len() - 2];
    let last = stages[stages.len() - 1];
    assert!(build.contains("cargo build --release --locked -p herald-server"), "the build stage must build the server");
    assert!(build.contains("target/release/herald "), "the binary is named herald");

    let user = last.lines().find_map(|l| l.strip_prefix("USER ")).expect("the final stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "0" && uid != "root", "the image must not run as root: USER {user}");

    let env = dockerfile_env(last);
    let effective = check_config(&env);
    let port = port_of(effective["listen"].as_str().unwrap());
    assert!(last.contains(&format!("EXPOSE {port}")), "EXPOSE must be the port HERALD_LISTEN sets ({port})");
    let store = effective["store_path"].as_str().unwrap();
    let volume = last.lines().find_map(|l| l.strip_prefix("VOLUME ")).expect("the data directory is a VOLUME");
    let dir = Path::new(store).parent().unwrap().to_str().unwrap();
    assert!(volume.contains(&format!("\"{dir}\"")), "the store {store} must be in the VOLUME {volume}");
    assert!(last.contains(&format!("--chown={uid}:")), "the data directory must belong to the image's user");

    // The build stage's toolchain is at least the workspace's rust-version.
    let image = build.lines().next().unwrap();
    let version = image.strip_prefix("rust:").and_then(|v| v.split('-').next()).expect("FROM rust:<version>-...");
    let workspace = read("Cargo.toml");
    let wanted = workspace.lines().find_map(|l| l.strip_prefix("rust-version = ")).unwrap().trim_matches('"');
    let parse = |v: &str| v.split('.').map(|p| p.parse::<u32>().unwrap()).collect::<Vec<_>>();
    assert!(parse(version) >= parse(wanted), "rust:{version} is older than rust-version {wanted}");
}
