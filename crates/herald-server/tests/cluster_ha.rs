//! High availability with real processes: a Sentinel-managed primary with a replica and three
//! sentinels, and a Redis Cluster of three primaries with a replica each, under a steady
//! durable+live publish load, with `kill -9` of the primary that holds the load. Each test
//! spawns its own servers on free loopback ports, with failure detection lowered to one second
//! (`down-after-milliseconds`, `cluster-node-timeout`) so that a failover takes seconds.
//!
//! The promises checked: every publish answered 200 reaches every subscriber once and in order
//! (streams stay open), is in the durable inbox and in the history a reconnecting client resumes
//! from; ids stay unique and increasing; publishing resumes by itself within
//! [`RESUME_BOUND`]; every refusal is a fast 503; presence and kicks work on the new primary.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Publishing must work again this long after the primary was killed (failure detection is
/// one second here; the rest is the election, the promotion and the nodes finding the new
/// primary).
const RESUME_BOUND: Duration = Duration::from_secs(15);
/// No refusal may take longer than this: a publish fails fast during a failover.
const REFUSAL_BOUND: Duration = Duration::from_secs(8);

/// A server process of the test's own, killed (`kill -9`) on drop.
struct Server {
    port: u16,
    args: Vec<String>,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl Server {
    fn spawn(program_args: &[String], dir: &Path) -> Server {
        let port: u16 =
            program_args.iter().position(|a| a == "--port").map(|i| program_args[i + 1].parse().unwrap()).unwrap();
        let child = std::process::Command::new("redis-server")
            .args(program_args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `redis-server` ({e}): run scripts/test, which installs it"));
        Server { port, args: program_args.to_vec(), dir: dir.to_path_buf(), child: Some(child) }
    }

    /// Starts the server again, with its arguments and data.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        *self = Server::spawn(&self.args, &self.dir);
    }

    /// A data server with an fsynced append-only file in a directory of its own.
    fn redis(root: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        let dir = root.join(port.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let mut args: Vec<String> =
            ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""].iter().map(|s| s.to_string()).collect();
        args.extend(["--appendonly", "yes", "--appendfsync", "always", "--dir"].map(String::from));
        args.push(dir.display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        Server::spawn(&args, &dir)
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `redis-cli -p PORT ARGS...`: its output, or `None` if it failed or took over 2 s.
async fn cli(port: u16, args: &[&str]) -> Option<String> {
    let run = tokio::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(2), run).await.ok()?.ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits (polling the servers, which expose their state only so) until `check` holds.
async fn until_cli(what: &str, port: u16, args: &[&str], check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if cli(port, args).await.is_some_and(|out| check(&out)) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `herald serve` as a child process with these variables (and, if given, a config file).
async fn herald(env: &[(&str, String)], config: Option<&Path>) -> Process {
    let port = free_port();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    command.arg("serve");
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command
        .env_clear()
        .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
        .env("HERALD_API_KEY", API_KEY)
        .env("HERALD_JWT_SECRET", JWT_SECRET)
        .env("HERALD_PRESENCE_TTL_SECS", "3")
        .env("RUST_LOG", "herald=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command.spawn().expect("spawn herald");
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base).await;
    Process { child, base }
}

/// One answered publish of the load.
struct Answer {
    status: u16,
    id: Option<String>,
    durable: bool,
    started: Instant,
    took: Duration,
}

#[derive(Default)]
struct Load {
    answers: Vec<Answer>,
    stop: bool,
}

/// Publishes to `user` of the app keyed `key`, in turn through each of `bases`, every other
/// message durable, until stopped; refusals must be fast problem documents.
fn start_load(
    bases: Vec<String>,
    key: &'static str,
    user: &'static str,
) -> (Arc<Mutex<Load>>, tokio::task::JoinHandle<()>) {
    let load: Arc<Mutex<Load>> = Arc::default();
    let task = {
        let load = load.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            for n in 0usize.. {
                if load.lock().unwrap().stop {
                    return;
                }
                let durable = n % 2 == 0;
                let body = json!({"to": {"users": [user]}, "data": format!("n{n}"), "durable": durable});
                let started = Instant::now();
                let base = &bases[n % bases.len()];
                let r = http.post(format!("{base}/api/publish")).bearer_auth(key).json(&body).send().await.unwrap();
                let status = r.status().as_u16();
                let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
                let answer: Value = r.json().await.unwrap();
                let took = started.elapsed();
                if status == 503 {
                    assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{answer}");
                    if std::env::var_os("HERALD_TEST_VERBOSE").is_some() {
                        eprintln!("503: {}", answer["detail"]);
                    }
                } else {
                    assert_eq!(status, 200, "{answer}");
                }
                let id = answer["id"].as_str().map(str::to_owned);
                load.lock().unwrap().answers.push(Answer { status, id, durable, started, took });
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    (load, task)
}

fn accepted_count(load: &Mutex<Load>) -> usize {
    load.lock().unwrap().answers.iter().filter(|a| a.status == 200).count()
}

async fn until_accepted(load: &Mutex<Load>, n: usize, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while accepted_count(load) < n {
        assert!(Instant::now() < deadline, "{what}: only {} publishes accepted", accepted_count(load));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn seq_of(id: &str) -> u64 {
    id.split('-').nth(1).unwrap().parse().unwrap()
}

/// Stops the load and checks what it saw: fast refusals, publishing back within the bound
/// after `killed`, ids unique and increasing. Returns the accepted answers.
async fn finish_load(
    what: &str,
    load: Arc<Mutex<Load>>,
    task: tokio::task::JoinHandle<()>,
    killed: Instant,
) -> Vec<Answer> {
    load.lock().unwrap().stop = true;
    task.await.unwrap();
    let answers = std::mem::take(&mut load.lock().unwrap().answers);
    for a in answers.iter().filter(|a| a.status == 503) {
        assert!(a.took < REFUSAL_BOUND, "a refusal took {:?}", a.took);
    }
    let refused = answers.iter().filter(|a| a.status == 503).count();
    let back = answers.iter().find(|a| a.status == 200 && a.started > killed).expect("publishing never resumed");
    let outage = (back.started + back.took).duration_since(killed);
    // bench/cluster collects this line.
    let secs = outage.as_secs_f64();
    eprintln!(
        "failover: {what}: publishing resumed {secs:.2} s after kill -9 of the primary; {refused} publishes refused (503)"
    );
    assert!(outage < RESUME_BOUND, "publishing resumed only after {outage:?}");
    let accepted: Vec<Answer> = answers.into_iter().filter(|a| a.status == 200).collect();
    let ids: Vec<&str> = accepted.iter().map(|a| a.id.as_deref().unwrap()).collect();
    let epochs: Vec<&str> = ids.iter().map(|id| id.split('-').next().unwrap()).collect();
    assert!(epochs.windows(2).all(|w| w[0] == w[1]), "the epoch changed (clients were reset): {ids:?}");
    assert!(ids.windows(2).all(|w| seq_of(w[0]) < seq_of(w[1])), "ids repeated or went back: {ids:?}");
    accepted
}

/// Reads `sse` until `last` and checks that it holds every accepted id, once, in order.
async fn receives_every_accepted(sse: &mut Sse, accepted: &[Answer], what: &str) {
    let last = accepted.last().unwrap().id.clone().unwrap();
    let mut received = Vec::new();
    loop {
        let Some(m) = sse.try_next(WAIT).await else {
            let want: Vec<&str> = accepted.iter().filter_map(|a| a.id.as_deref()).collect();
            panic!("{what}: the stream stopped before {last}; received {received:?}, accepted {want:?}");
        };
        if m.event.starts_with("herald.") {
            assert!(m.event != "herald.reset", "{what}: told to reset");
            continue;
        }
        received.push(m.id.clone());
        if m.id == last {
            break;
        }
    }
    assert!(
        received.windows(2).all(|w| seq_of(&w[0]) < seq_of(&w[1])),
        "{what}: out of order or doubled: {received:?}"
    );
    let missing: Vec<&str> =
        accepted.iter().filter_map(|a| a.id.as_deref()).filter(|id| !received.iter().any(|r| r == id)).collect();
    assert!(missing.is_empty(), "{what}: accepted but not delivered: {missing:?}");
}

/// Every accepted durable message is in `user`'s inbox; a client resuming from the first
/// accepted id gets every later one from the history.
async fn stored_and_resumable(base: &str, key: &str, query: &str, user: &str, accepted: &[Answer]) {
    let r = client().get(format!("{base}/api/users/{user}/messages?state=all&limit=1000")).bearer_auth(key).send();
    let stored: Value = r.await.unwrap().json().await.unwrap();
    let stored: Vec<&str> = stored["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    for a in accepted.iter().filter(|a| a.durable) {
        let id = a.id.as_deref().unwrap();
        assert!(stored.contains(&id), "{id} was accepted but is not in the inbox");
    }
    let first = accepted[0].id.as_deref().unwrap();
    let mut resumed = Sse::open(base, query, Some(first)).await;
    assert_eq!(resumed.status, 200);
    receives_every_accepted(&mut resumed, &accepted[1..], "resumed from history").await;
}

fn data_of(event: &eventsource_stream::Event) -> Value {
    serde_json::from_str(&event.data).unwrap()
}

/// The two `steady` streams opened before the failover are listed by every node after it
/// (presence written to the old primary may not have reached the new one: nodes rewrite theirs).
async fn presence_converges(bases: &[&str], key: &str) {
    for base in bases {
        eventually("presence from before the failover is listed", || async {
            let r = client().get(format!("{base}/api/users/steady")).bearer_auth(key).send().await.unwrap();
            let user: Value = r.json().await.unwrap();
            user["connections"].as_array().is_some_and(|c| c.len() == 2)
        })
        .await;
    }
}

/// A connection on `on` is listed by `other`, and a kick through `other` closes it.
async fn presence_and_kicks_work(on: &str, other: &str, key: &str, query: &str, user: &str) {
    let (mut sse, _) = Sse::connect(on, query).await;
    eventually("the new connection is listed on the other node", || async {
        let r = client().get(format!("{other}/api/users/{user}")).bearer_auth(key).send().await.unwrap();
        r.json::<Value>().await.unwrap()["online"] == true
    })
    .await;
    let r = client()
        .delete(format!("{other}/api/users/{user}/connections?reason=test"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(data_of(&sse.until("herald.kicked").await)["reason"], "test");
    sse.ended().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_loses_nothing_acknowledged() {
    let root = tempfile::tempdir().unwrap();
    let mut primary = Server::redis(root.path(), &[]);
    // Two replicas: with `redis_min_replicas = 1`, the promoted one still has a replica to
    // confirm publishes (with one, publishes would be refused until the old primary returns).
    let replicas: Vec<Server> =
        (0..2).map(|_| Server::redis(root.path(), &["--replicaof", "127.0.0.1", &primary.port.to_string()])).collect();
    for replica in &replicas {
        until_cli("a replica is in sync", replica.port, &["INFO", "replication"], |o| {
            o.contains("master_link_status:up")
        })
        .await;
    }
    let sentinels: Vec<Server> = (0..3)
        .map(|i| {
            let port = free_port();
            let conf = root.path().join(format!("sentinel{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nsentinel monitor main 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds main 1000\nsentinel failover-timeout main 5000\n",
                    primary.port
                ),
            )
            .unwrap();
            let args = [conf.display().to_string(), "--sentinel".into(), "--port".into(), port.to_string()];
            Server::spawn(&args, root.path())
        })
        .collect();
    // A failover needs the sentinels to know the replica and each other.
    for s in &sentinels {
        until_cli("a sentinel knows the replicas", s.port, &["SENTINEL", "replicas", "main"], |o| {
            replicas.iter().all(|r| o.lines().any(|l| l == r.port.to_string()))
        })
        .await;
        until_cli("a sentinel knows the two others", s.port, &["SENTINEL", "sentinels", "main"], |o| {
            o.lines().filter(|l| *l == "runid").count() == 2
        })
        .await;
    }
    let url = format!(
        "redis+sentinel://{}/main",
        sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect::<Vec<_>>().join(",")
    );
    let env = [("HERALD_REDIS_URL", url), ("HERALD_REDIS_MIN_REPLICAS", "1".to_string())];
    let (a, b) = (herald(&env, None).await, herald(&env, None).await);
    let query = format!("access_token={}", token("steady", json!({})));
    let (mut on_a, _) = Sse::connect(&a.base, &query).await;
    let (mut on_b, _) = Sse::connect(&b.base, &query).await;

    let early = format!("access_token={}", token("early", json!({})));
    presence_and_kicks_work(&b.base, &a.base, API_KEY, &early, "early").await;
    let (load, task) = start_load(vec![a.base.clone(), b.base.clone()], API_KEY, "steady");
    until_accepted(&load, 20, WAIT, "before the failover").await;
    let before = accepted_count(&load);
    primary.kill9();
    let killed = Instant::now();
    until_accepted(&load, before + 30, Duration::from_secs(40), "after the failover").await;
    let accepted = finish_load("Sentinel", load, task, killed).await;

    receives_every_accepted(&mut on_a, &accepted, "subscriber on A").await;
    receives_every_accepted(&mut on_b, &accepted, "subscriber on B").await;
    presence_converges(&[&a.base, &b.base], API_KEY).await;
    stored_and_resumable(&b.base, API_KEY, &query, "steady", &accepted).await;
    let late = format!("access_token={}", token("late", json!({})));
    presence_and_kicks_work(&b.base, &a.base, API_KEY, &late, "late").await;
    drop(sentinels);
}

/// Three apps, their keys and JWT secrets, chosen so that each lives on another shard.
struct ClusterApp {
    id: String,
    key: &'static str,
    secret: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_failover_loses_nothing_acknowledged() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Server> = (0..6)
        .map(|_| {
            Server::redis(
                root.path(),
                &["--cluster-enabled", "yes", "--cluster-node-timeout", "1000", "--cluster-config-file", "nodes.conf"],
            )
        })
        .collect();
    for n in &nodes {
        until_cli("a cluster node answers", n.port, &["PING"], |o| o.contains("PONG")).await;
    }
    let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(addrs.iter().map(String::as_str));
    create.extend(["--cluster-replicas", "1", "--cluster-yes"]);
    let out = tokio::process::Command::new("redis-cli").args(&create).stdout(Stdio::piped()).output().await.unwrap();
    assert!(out.status.success(), "redis-cli --cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
    for n in &nodes {
        until_cli("the cluster is up", n.port, &["CLUSTER", "INFO"], |o| o.contains("cluster_state:ok")).await;
        until_cli("every primary's replica is in sync", n.port, &["INFO", "replication"], |o| {
            o.contains("role:slave") && o.contains("master_link_status:up")
                || o.contains("role:master") && o.contains("connected_slaves:1") && o.contains("state=online")
        })
        .await;
    }

    // One app per shard: the owner of each candidate's hash tag decides.
    let shard_of = |slot: u64| (slot * 3 / 16384) as usize;
    let keys = [
        ("key-app-0-0123456789", "secret-app-0-0123456789"),
        ("key-app-1-0123456789", "secret-app-1-0123456789"),
        ("key-app-2-0123456789", "secret-app-2-0123456789"),
    ];
    let mut apps: Vec<Option<String>> = vec![None; 3];
    for i in 0.. {
        let id = format!("app{i}");
        let slot: u64 =
            cli(nodes[0].port, &["CLUSTER", "KEYSLOT", &format!("{{{id}}}")]).await.unwrap().trim().parse().unwrap();
        let shard = shard_of(slot);
        if apps[shard].is_none() {
            apps[shard] = Some(id);
        }
        if apps.iter().all(Option::is_some) {
            break;
        }
    }
    let apps: Vec<ClusterApp> =
        apps.into_iter().zip(keys).map(|(id, (key, secret))| ClusterApp { id: id.unwrap(), key, secret }).collect();
    let mut toml = String::new();
    for app in &apps {
        toml.push_str(&format!(
            "[[apps]]\nid = \"{}\"\napi_key = \"{}\"\njwt_secret = \"{}\"\n\n",
            app.id, app.key, app.secret
        ));
    }
    let config = root.path().join("herald.toml");
    std::fs::write(&config, toml).unwrap();
    let url = format!("redis+cluster://{}", addrs[..3].join(","));
    let env = [("HERALD_REDIS_URL", url), ("HERALD_REDIS_MIN_REPLICAS", "1".to_string())];
    let (a, b, c) =
        (herald(&env, Some(&config)).await, herald(&env, Some(&config)).await, herald(&env, Some(&config)).await);

    // Every target kind crosses nodes, in every app (so on every shard).
    for app in &apps {
        let claims = json!({"sub": "u1", "tenant": "t1", "sid": "s1", "channels": ["*"], "exp": now_secs() + 3600});
        let (mut on_b, _) = Sse::connect(
            &b.base,
            &format!("app={}&access_token={}&channel=news", app.id, token_with(app.secret, claims)),
        )
        .await;
        let mut ids = Vec::new();
        for to in [
            json!({"users": ["u1"]}),
            json!({"sessions": ["s1"]}),
            json!({"tenants": ["t1"]}),
            json!({"channels": ["news"]}),
            json!({"all": true}),
        ] {
            let r = client()
                .post(format!("{}/api/publish", c.base))
                .bearer_auth(app.key)
                .json(&json!({"to": to, "data": "x"}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let answer: Value = r.json().await.unwrap();
            assert_eq!(status, 200, "{}: {answer}", app.id);
            ids.push(answer["id"].as_str().unwrap().to_string());
        }
        for id in ids {
            assert_eq!(on_b.next_message().await.id, id, "app {}", app.id);
        }
    }

    // Load on the first app; kill the primary that owns its slot.
    let target = &apps[0];
    let user_token =
        |sub: &str| token_with(target.secret, json!({"sub": sub, "channels": ["*"], "exp": now_secs() + 3600}));
    let query = format!("app={}&access_token={}", target.id, user_token("steady"));
    let (mut on_a, _) = Sse::connect(&a.base, &query).await;
    let (mut on_b, _) = Sse::connect(&b.base, &query).await;
    let key: &'static str = target.key;
    let (load, task) = start_load(vec![a.base.clone(), b.base.clone(), c.base.clone()], key, "steady");
    until_accepted(&load, 20, WAIT, "before the failover").await;
    let slot: u64 = cli(nodes[0].port, &["CLUSTER", "KEYSLOT", &format!("{{{}}}", target.id)])
        .await
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // `CLUSTER NODES`: `id host:port@bus flags master-id ping pong epoch state slot-ranges...`.
    let table = cli(nodes[0].port, &["CLUSTER", "NODES"]).await.unwrap();
    let owner_port = table.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let owns = fields.iter().skip(8).any(|range| {
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            matches!((lo.parse::<u64>(), hi.parse::<u64>()), (Ok(lo), Ok(hi)) if lo <= slot && slot <= hi)
        });
        let port = fields.get(1)?.split('@').next()?.rsplit_once(':')?.1.parse::<u16>().ok()?;
        (fields.get(2)?.contains("master") && owns).then_some(port)
    });
    let owner_port = owner_port.expect("no primary owns the app's slot");
    let before = accepted_count(&load);
    nodes.iter_mut().find(|n| n.port == owner_port).unwrap().kill9();
    let killed = Instant::now();
    // Its replica takes over the slots; the killed server, restarted as a supervisor would,
    // rejoins as the new primary's replica, so that `redis_min_replicas = 1` can be met again
    // (until then the shard's publishes are refused, saying why).
    let live = nodes.iter().find(|n| n.port != owner_port).unwrap().port;
    let owner = format!("127.0.0.1:{owner_port}@");
    until_cli("a replica took over the slots", live, &["CLUSTER", "NODES"], |table| {
        table.lines().any(|l| l.contains(&owner) && l.contains("fail") && !l.contains("fail?"))
            && table.lines().filter(|l| l.contains("master") && !l.contains("fail")).count() == 3
    })
    .await;
    nodes.iter_mut().find(|n| n.port == owner_port).unwrap().restart();
    until_accepted(&load, before + 30, Duration::from_secs(40), "after the failover").await;
    let accepted = finish_load("Redis Cluster", load, task, killed).await;

    receives_every_accepted(&mut on_a, &accepted, "subscriber on A").await;
    receives_every_accepted(&mut on_b, &accepted, "subscriber on B").await;
    presence_converges(&[&a.base, &b.base, &c.base], key).await;
    stored_and_resumable(&c.base, key, &query, "steady", &accepted).await;
    let late = format!("app={}&access_token={}", target.id, user_token("late"));
    presence_and_kicks_work(&b.base, &a.base, key, &late, "late").await;
}

/// A promoted replica that missed the last increments, simulated on one Redis by setting the
/// sequence back: the next publish still gets a new, higher id (the publishing node's floor),
/// and a node that reconnects raises the sequence to what it has seen (the fence).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_stay_unique_when_redis_loses_the_last_increments() {
    let redis = Redis::start().await;
    let env = [("HERALD_REDIS_URL", redis.url())];
    let (a, b) = (herald(&env, None).await, herald(&env, None).await);
    let query = format!("access_token={}", token("u", json!({})));
    let (mut on_b, _) = Sse::connect(&b.base, &query).await;
    let mut sent = Vec::new();
    for n in 0..3 {
        let (status, answer) = publish(&a.base, json!({"to": {"users": ["u"]}, "data": n})).await;
        assert_eq!(status, 200, "{answer}");
        sent.push(answer["id"].as_str().unwrap().to_string());
    }
    for id in &sent {
        assert_eq!(&on_b.next_message().await.id, id);
    }
    assert!(redis.command("SET herald:default:seq 1").await.unwrap().starts_with("+OK"));
    let (status, answer) = publish(&b.base, json!({"to": {"users": ["u"]}, "data": "after"})).await;
    assert_eq!(status, 200, "{answer}");
    let after = answer["id"].as_str().unwrap();
    assert_eq!(seq_of(after), 4, "{after} after {sent:?}");
    assert_eq!(on_b.next_message().await.id, after);

    // The fence: both nodes lose the bus, resubscribe, and raise the sequence again.
    assert!(redis.command("SET herald:default:seq 1").await.unwrap().starts_with("+OK"));
    assert!(redis.command("CLIENT KILL TYPE pubsub").await.unwrap().starts_with(':'));
    eventually("a reconnecting node raises the sequence to its head", || async {
        redis.command("GET herald:default:seq").await.is_some_and(|r| r.ends_with("\r\n4\r\n"))
    })
    .await;
    let (status, answer) = publish(&a.base, json!({"to": {"users": ["u"]}, "data": "last"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(seq_of(answer["id"].as_str().unwrap()), 5, "{answer}");
    assert_eq!(on_b.next_message().await.id, answer["id"].as_str().unwrap());
}
