//! Shared test support: a real hub on port 0 (in-process, or the `herald` binary as a child
//! process), tokens, and an SSE client that waits on events with timeouts.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};
use herald::config::{AppConfig, Config, StoreKind};
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub const API_KEY: &str = "test-api-key-0123456789";
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789";
/// How long any wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A configuration with the default app keyed for tests, on the memory store.
pub fn config() -> Config {
    Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        store: StoreKind::Memory,
        app: AppConfig { api_key: Some(API_KEY.into()), jwt_secret: Some(JWT_SECRET.into()), ..AppConfig::default() },
        ..Config::default()
    }
}

/// [`config`] plus a second app, `hr`, with keys of its own.
pub fn two_apps() -> Config {
    let mut config = config();
    config.apps = vec![AppConfig {
        id: "hr".into(),
        api_key: Some("hr-api-key-0123456789".into()),
        jwt_secret: Some("hr-jwt-secret-0123456789".into()),
        ..AppConfig::default()
    }];
    config
}

/// A hub served in-process on 127.0.0.1:0.
pub struct TestHub {
    pub hub: herald::Hub,
    pub base: String,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestHub {
    pub async fn start(config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = herald::server::tls_acceptor(&config).unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let hub = herald::Hub::new(config).await.unwrap();
        let (stop, stopped) = oneshot::channel();
        let done = tokio::spawn(herald::server::serve_hub(listener, hub.clone(), tls, async {
            let _ = stopped.await;
        }));
        Self { hub, base: format!("{scheme}://{addr}"), addr, stop: Some(stop), done: Some(done) }
    }

    /// Triggers graceful shutdown and waits for the server to return.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.done.take().unwrap()).await.expect("shutdown timed out").unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// An HS256 token with these claims, signed with `secret`.
pub fn token_with(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A valid token for `user` with extra claims merged in (`tenant`, `sid`, `channels`...).
pub fn token(user: &str, extra: Value) -> String {
    let mut claims = json!({ "sub": user, "exp": now_secs() + 3600, "channels": ["*"] });
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    token_with(JWT_SECRET, claims)
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// POSTs a publish with the test API key; returns (status, body).
pub async fn publish(base: &str, body: Value) -> (u16, Value) {
    let r = client().post(format!("{base}/api/publish")).bearer_auth(API_KEY).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// GETs an API path with the test API key.
pub async fn api_get(base: &str, path: &str) -> (u16, Value) {
    let r = client().get(format!("{base}{path}")).bearer_auth(API_KEY).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// An open SSE stream, parsed by an independent parser (`eventsource-stream`).
pub struct Sse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    events: std::pin::Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>,
}

impl Sse {
    /// Opens `GET {base}/events?{query}`; `last_event_id` goes in the header.
    pub async fn open(base: &str, query: &str, last_event_id: Option<&str>) -> Sse {
        Self::open_with(&client(), base, query, last_event_id).await
    }

    pub async fn open_with(client: &reqwest::Client, base: &str, query: &str, last_event_id: Option<&str>) -> Sse {
        let mut request = client.get(format!("{base}/events?{query}"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = tokio::time::timeout(WAIT, request.send()).await.expect("connect timed out").unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let events = response.bytes_stream().eventsource().map(|r| r.map_err(|e| e.to_string())).boxed();
        Sse { status, headers, events }
    }

    /// The next event (comments are skipped by the parser); panics after [`WAIT`].
    pub async fn next(&mut self) -> Event {
        self.try_next(WAIT).await.expect("no event before the timeout")
    }

    /// The next event within `timeout`, or `None` if the stream ended or stayed silent.
    pub async fn try_next(&mut self, timeout: Duration) -> Option<Event> {
        match tokio::time::timeout(timeout, self.events.next()).await {
            Ok(Some(Ok(event))) => Some(event),
            Ok(Some(Err(e))) => panic!("stream error: {e}"),
            Ok(None) | Err(_) => None,
        }
    }

    /// The next event that is not a `herald.*` control event.
    pub async fn next_message(&mut self) -> Event {
        loop {
            let event = self.next().await;
            if !event.event.starts_with("herald.") {
                return event;
            }
        }
    }

    /// Skips events until one named `name` arrives.
    pub async fn until(&mut self, name: &str) -> Event {
        loop {
            let event = self.next().await;
            if event.event == name {
                return event;
            }
        }
    }

    /// Waits for the stream to end; panics if it stays open past [`WAIT`].
    pub async fn ended(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.next()).await {
                Ok(None) | Ok(Some(Err(_))) => return,
                Ok(Some(Ok(_))) => continue,
                Err(_) => panic!("stream did not end"),
            }
        }
    }
}

/// The `herald` binary as a child process, for restarts and `kill -9`.
pub struct Process {
    pub child: tokio::process::Child,
    pub base: String,
}

impl Process {
    /// Starts `herald serve` on a free port with the test keys and the SQLite file `store`.
    pub async fn start(store: &Path, extra_env: &[(&str, &str)]) -> Process {
        let port = free_port();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
        command
            .arg("serve")
            .env_clear()
            .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
            .env("HERALD_API_KEY", API_KEY)
            .env("HERALD_JWT_SECRET", JWT_SECRET)
            .env("HERALD_STORE", store)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let child = command.spawn().expect("spawn herald");
        let base = format!("http://127.0.0.1:{port}");
        wait_healthy(&base).await;
        Process { child, base }
    }

    /// `kill -9`.
    pub async fn kill9(&mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Polls `/healthz` until it answers, within [`WAIT`] (waiting on the server being up).
pub async fn wait_healthy(base: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(r) = client().get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "server at {base} did not become healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn temp_db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("herald.db")
}

impl Sse {
    /// Opens any SSE request (for example `GET /api/presence` with the API key).
    pub async fn from_request(request: reqwest::RequestBuilder) -> Sse {
        let response = tokio::time::timeout(WAIT, request.send()).await.expect("connect timed out").unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let events = response.bytes_stream().eventsource().map(|r| r.map_err(|e| e.to_string())).boxed();
        Sse { status, headers, events }
    }

    /// The `GET /api/presence` feed of the app whose API key is `key`.
    pub async fn presence(base: &str, key: &str) -> Sse {
        let feed = Self::from_request(client().get(format!("{base}/api/presence")).bearer_auth(key)).await;
        assert_eq!(feed.status, 200, "presence feed refused");
        feed
    }

    /// Opens a stream, checks it was accepted, and returns it with its `herald.connected` data.
    pub async fn connect(base: &str, query: &str) -> (Sse, Value) {
        let mut sse = Self::open(base, query, None).await;
        assert_eq!(sse.status, 200, "stream refused: {query}");
        let connected = sse.next().await;
        assert_eq!(connected.event, "herald.connected", "the first event must be herald.connected");
        let data = serde_json::from_str(&connected.data).unwrap();
        (sse, data)
    }
}

/// POSTs `body` to `path` with the API key `key`; returns (status, content type, body).
pub async fn api_post(base: &str, key: &str, path: &str, body: &Value) -> (u16, String, Value) {
    let r = client().post(format!("{base}{path}")).bearer_auth(key).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    (status, content_type, r.json().await.unwrap_or(Value::Null))
}

/// The value of one series at `GET /metrics` (`name` without the `herald_` prefix), summed
/// over its label sets (every app, every outcome).
pub async fn metric(base: &str, name: &str) -> u64 {
    metric_with(base, name, "").await
}

/// [`metric`] over the label sets that contain `label` (such as `outcome="ok"`).
pub async fn metric_with(base: &str, name: &str, label: &str) -> u64 {
    let text = client().get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let name = format!("herald_{name}");
    let values: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&name))
        .filter(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        .filter(|rest| rest.split(' ').next().unwrap().contains(label))
        .map(|rest| rest.rsplit(' ').next().unwrap().trim().parse().unwrap())
        .collect();
    assert!(!values.is_empty(), "no metric {name} in:\n{text}");
    values.iter().sum()
}

/// Polls `check` until it returns true, failing after [`WAIT`]; for state the hub exposes only
/// through its API.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `redis-server` of a test's own on a free port, with an append-only file fsynced on every
/// write so that a stop and restart on the same port and directory keeps every key. Killed on
/// drop. A machine without `redis-server` fails the test: it is a test dependency, not optional.
pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl Redis {
    /// Starts `redis-server` and waits until it answers `PING`.
    pub async fn start() -> Redis {
        let mut redis = Redis { port: free_port(), dir: tempfile::tempdir().unwrap(), child: None };
        redis.spawn().await;
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `redis-server` ({e}). The cluster tests need it: `apt-get install redis-server`, \
                     or run scripts/test, which installs it."
                )
            });
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.ping().await {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("redis-server on port {} exited at start: {status}", self.port);
            }
            assert!(tokio::time::Instant::now() < deadline, "redis-server on port {} did not answer PING", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends one inline command and returns the raw reply (RESP, one read, so for small
    /// replies), if Redis answered at all.
    pub async fn command(&self, command: &str) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let attempt = async {
            let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.ok()?;
            socket.write_all(format!("{command}\r\n").as_bytes()).await.ok()?;
            let mut reply = vec![0; 4096];
            let n = socket.read(&mut reply).await.ok()?;
            Some(String::from_utf8_lossy(&reply[..n]).to_string())
        };
        tokio::time::timeout(Duration::from_secs(2), attempt).await.ok().flatten()
    }

    /// Whether Redis answers `PING` with `PONG` (not while it is still loading its data).
    pub async fn ping(&self) -> bool {
        self.command("PING").await.is_some_and(|r| r.starts_with("+PONG"))
    }

    /// `SHUTDOWN` (the append-only file is already synced), and waits until the process exits.
    pub async fn stop(&mut self) {
        let _ = self.command("SHUTDOWN").await;
        let child = self.child.as_mut().expect("redis-server is not running");
        let deadline = tokio::time::Instant::now() + WAIT;
        while child.try_wait().unwrap().is_none() {
            assert!(tokio::time::Instant::now() < deadline, "redis-server on port {} did not shut down", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child = None;
    }

    /// Starts Redis again on the same port and directory, so it reloads its data.
    pub async fn restart(&mut self) {
        self.spawn().await;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes `request` on a fresh connection to `addr` and reads until the server closes it.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await.expect("the server did not close").ok();
    String::from_utf8_lossy(&answer).into_owned()
}

/// A backend that records every request it gets, raw, and whether it arrived whole.
pub struct Recorder {
    pub url: String,
    pub requests: tokio::sync::mpsc::UnboundedReceiver<Recorded>,
}

#[derive(Debug)]
pub struct Recorded {
    /// The request line and headers, as received.
    pub head: String,
    pub body: Vec<u8>,
    /// The whole body arrived (by `Content-Length`, or the last chunk), not a cut-off one.
    pub complete: bool,
}

impl Recorded {
    /// The value of header `name` (lower-case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }
}

impl Recorder {
    pub async fn start() -> Recorder {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, requests) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            if n == 0 {
                                return;
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        let body = buf[end + 4..].to_vec();
                        let mut recorded = Recorded { head, body, complete: false };
                        recorded.complete = match recorded.header("content-length") {
                            Some(length) => recorded.body.len() >= length.parse::<usize>().unwrap(),
                            None if recorded.header("transfer-encoding").is_some() => {
                                recorded.body.ends_with(b"0\r\n\r\n")
                            }
                            None => true,
                        };
                        if recorded.complete || n == 0 {
                            if recorded.complete {
                                let _ = socket
                                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                                    .await;
                            }
                            let _ = tx.send(recorded);
                            return;
                        }
                    }
                });
            }
        });
        Recorder { url, requests }
    }

    /// The next request that reached the backend.
    pub async fn next(&mut self) -> Recorded {
        tokio::time::timeout(WAIT, self.requests.recv()).await.expect("no request reached the backend").unwrap()
    }
}
