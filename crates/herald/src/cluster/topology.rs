//! Where Redis is — one server, a primary found through Sentinel, or a Redis Cluster — and one
//! connection type over the three ([`Conn`], a [`redis::aio::ConnectionLike`]), so that the rest
//! of `cluster` never asks which.
//!
//! Every request through a [`Conn`] is bounded in time: during a failover a publish fails fast
//! (503) instead of hanging, and the next one finds the new primary by itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::FutureExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, Pipeline, RedisConnectionInfo,
    RedisError, RedisFuture, RedisResult, Value,
};

/// How long one command (or pipeline) may take before Redis counts as unreachable.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting may take, to a server or a sentinel.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The Redis deployment `redis_url` names.
pub(crate) enum Topology {
    /// `redis://`, `rediss://`, `redis+unix://`: one server.
    Single(Client),
    /// `redis+sentinel://`: the primary Sentinel names, asked again after every failure.
    Sentinel(Arc<Sentinel>),
    /// `redis+cluster://`: Redis Cluster; keys of one app share a slot, the bus is sharded.
    Cluster { client: ClusterClient, password: Option<String> },
}

impl Topology {
    /// Parses `redis_url`. Errors never quote the URL: it may carry a password.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let (hosts, path, query) = split_url(rest);
            let master = path.trim_matches('/');
            if master.is_empty() {
                return Err("names no primary: `redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME`".into());
            }
            let (mut password, mut sentinel_password) = (None, None);
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                match &*k {
                    "password" => password = Some(v.into_owned()),
                    "sentinel_password" => sentinel_password = Some(v.into_owned()),
                    other => return Err(format!("has an unknown parameter `{other}`")),
                }
            }
            let sentinels = addresses(hosts)?
                .into_iter()
                .map(|(host, port)| Client::open(info(host, port, sentinel_password.clone())))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            return Ok(Self::Sentinel(Arc::new(Sentinel {
                sentinels,
                master: master.to_string(),
                password,
                current: Default::default(),
                generation: AtomicU64::new(0),
                connecting: Default::default(),
            })));
        }
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let (hosts, _, query) = split_url(rest);
            let mut password = None;
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                match &*k {
                    "password" => password = Some(v.into_owned()),
                    other => return Err(format!("has an unknown parameter `{other}`")),
                }
            }
            let nodes: Vec<ConnectionInfo> =
                addresses(hosts)?.into_iter().map(|(h, p)| info(h, p, password.clone())).collect();
            let client = redis::cluster::ClusterClientBuilder::new(nodes)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(COMMAND_TIMEOUT)
                .retries(2)
                .min_retry_wait(50)
                .max_retry_wait(300)
                .build()
                .map_err(|e| e.to_string())?;
            return Ok(Self::Cluster { client, password });
        }
        Client::open(url).map(Self::Single).map_err(|e| e.to_string())
    }

    /// A connection for commands; it finds Redis again by itself after a failure.
    pub(crate) async fn connect(&self) -> RedisResult<Conn> {
        match self {
            Self::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(COMMAND_TIMEOUT)
                    .set_response_timeout(COMMAND_TIMEOUT)
                    .set_number_of_retries(1);
                let conn = bounded(COMMAND_TIMEOUT * 2, client.get_connection_manager_with_config(config)).await?;
                Ok(Conn::Single(conn))
            }
            Self::Sentinel(sentinel) => {
                sentinel.connection().await?;
                Ok(Conn::Sentinel(sentinel.clone()))
            }
            Self::Cluster { client, .. } => {
                Ok(Conn::Cluster(bounded(COMMAND_TIMEOUT * 2, client.get_async_connection()).await?))
            }
        }
    }

    /// Whether the bus is sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`) rather than classic.
    pub(crate) fn sharded(&self) -> bool {
        matches!(self, Self::Cluster { .. })
    }
}

/// `hosts[/path][?query]` → its three parts.
fn split_url(rest: &str) -> (&str, &str, &str) {
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    (hosts, path, query)
}

fn addresses(hosts: &str) -> Result<Vec<(String, u16)>, String> {
    let list: Result<Vec<_>, String> = hosts
        .split(',')
        .map(|hp| {
            let (host, port) = hp.rsplit_once(':').ok_or("needs HOST:PORT for every server")?;
            let port = port.parse().map_err(|_| "has a port that is not a number")?;
            Ok((host.trim_matches(['[', ']']).to_string(), port))
        })
        .collect();
    list.and_then(|l| if l.is_empty() { Err("names no server".into()) } else { Ok(l) })
}

pub(super) fn info(host: String, port: u16, password: Option<String>) -> ConnectionInfo {
    ConnectionInfo {
        addr: ConnectionAddr::Tcp(host, port),
        redis: RedisConnectionInfo { password, ..Default::default() },
    }
}

pub(super) async fn bounded<T>(
    limit: Duration,
    f: impl std::future::Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| Err(RedisError::from((ErrorKind::IoError, "timed out waiting for Redis"))))
}

/// A primary managed by Sentinel: asked of the sentinels when first needed and again after any
/// error that says it moved (the connection broke or timed out, or it answers `READONLY`
/// because it was demoted). A primary is used only once `ROLE` confirms it.
pub(crate) struct Sentinel {
    sentinels: Vec<Client>,
    master: String,
    password: Option<String>,
    /// The connection in use and its generation; `None` until (re)connected.
    current: parking_lot::Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
    /// One reconnection at a time; the others wait for its result, and share a failure of the
    /// last [`RETRY_AFTER`] instead of each trying again (a publish burst during a failover
    /// must not queue one connection attempt per publish). Holds when the last attempt failed.
    connecting: tokio::sync::Mutex<Option<std::time::Instant>>,
}

/// How long a failed search for the primary is the answer for everyone who asks.
const RETRY_AFTER: Duration = Duration::from_millis(200);

impl Sentinel {
    /// Asks every sentinel at once where the primary is, and takes the address a majority of
    /// them name, as soon as they have (else, once all answered or timed out, the address most
    /// name, the earliest-listed sentinel's in a tie). During a failover a sentinel that has not
    /// heard of it yet goes on naming a server that is no longer the primary, for seconds;
    /// following the first answer alone kept a node on such a server while the others had moved.
    pub(crate) async fn primary_address(&self) -> RedisResult<(String, u16)> {
        use futures_util::stream::{FuturesUnordered, StreamExt};
        let mut asks: FuturesUnordered<_> = self
            .sentinels
            .iter()
            .enumerate()
            .map(|(i, sentinel)| async move {
                let ask = async {
                    let mut conn = sentinel.get_multiplexed_async_connection().await?;
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(&self.master)
                        .query_async::<Option<(String, u16)>>(&mut conn)
                        .await
                };
                (i, bounded(CONNECT_TIMEOUT, ask).await)
            })
            .collect();
        // (address, votes, earliest sentinel naming it)
        let mut votes: Vec<((String, u16), usize, usize)> = Vec::new();
        let mut last = RedisError::from((ErrorKind::IoError, "no sentinel answered"));
        while let Some((i, answer)) = asks.next().await {
            match answer {
                Ok(Some(addr)) => {
                    let n = match votes.iter_mut().find(|(named, ..)| *named == addr) {
                        Some((_, n, first)) => {
                            (*n, *first) = (*n + 1, (*first).min(i));
                            *n
                        }
                        None => {
                            votes.push((addr.clone(), 1, i));
                            1
                        }
                    };
                    if n > self.sentinels.len() / 2 {
                        return Ok(addr);
                    }
                }
                Ok(None) => last = RedisError::from((ErrorKind::ClientError, "the sentinels know no such primary")),
                Err(e) => last = e,
            }
        }
        votes.sort_by_key(|(_, n, first)| (std::cmp::Reverse(*n), *first));
        votes.into_iter().next().map(|(addr, ..)| addr).ok_or(last)
    }

    /// Drops the connection in use, so that the next request asks the sentinels again: the bus
    /// found that they name another primary, and the data must follow it there.
    pub(crate) fn forget(&self) {
        *self.current.lock() = None;
    }

    /// A client for the current primary, once `ROLE` says it is one.
    pub(crate) async fn primary(&self) -> RedisResult<Client> {
        let (host, port) = self.primary_address().await?;
        let client = Client::open(info(host, port, self.password.clone()))?;
        let check = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
            match role.first() {
                Some(Value::BulkString(r)) if r == b"master" => Ok(()),
                _ => Err(RedisError::from((ErrorKind::ReadOnly, "the address Sentinel gave is not a primary yet"))),
            }
        };
        bounded(CONNECT_TIMEOUT * 2, check).await?;
        Ok(client)
    }

    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(c) = self.current.lock().clone() {
            return Ok(c);
        }
        let mut failed_at = bounded(COMMAND_TIMEOUT, async { Ok(self.connecting.lock().await) }).await?;
        if let Some(c) = self.current.lock().clone() {
            return Ok(c);
        }
        if failed_at.is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return Err(RedisError::from((ErrorKind::IoError, "the Redis primary is unreachable; looking for it")));
        }
        let connect = async {
            let client = self.primary().await?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(CONNECT_TIMEOUT)
                .set_response_timeout(COMMAND_TIMEOUT);
            bounded(CONNECT_TIMEOUT, client.get_multiplexed_async_connection_with_config(&config)).await
        };
        let conn = connect.await.inspect_err(|_| *failed_at = Some(std::time::Instant::now()))?;
        *failed_at = None;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!("Connected to the primary Sentinel names.");
        *self.current.lock() = Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    /// Forgets the connection of `generation` if `error` says the primary may have moved.
    fn failed(&self, generation: u64, error: &RedisError) {
        if moved(error) {
            let mut current = self.current.lock();
            if current.as_ref().is_some_and(|(g, _)| *g == generation) {
                *current = None;
            }
        }
    }
}

/// Whether an error means "ask where the primary is again".
fn moved(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.kind() == ErrorKind::ReadOnly
        || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
        || e.to_string().contains("READONLY")
}

/// A connection to whichever Redis the topology names; cheap to clone (all clones share it).
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Sentinel(Arc<Sentinel>),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        async move {
            match self {
                Self::Single(c) => bounded(COMMAND_TIMEOUT, c.req_packed_command(cmd)).await,
                Self::Cluster(c) => bounded(COMMAND_TIMEOUT, c.req_packed_command(cmd)).await,
                Self::Sentinel(s) => {
                    let (generation, mut c) = s.connection().await?;
                    let answer = bounded(COMMAND_TIMEOUT, c.req_packed_command(cmd)).await;
                    if let Err(e) = &answer {
                        s.failed(generation, e);
                    }
                    answer
                }
            }
        }
        .boxed()
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        async move {
            match self {
                Self::Single(c) => bounded(COMMAND_TIMEOUT, c.req_packed_commands(cmd, offset, count)).await,
                Self::Cluster(c) => bounded(COMMAND_TIMEOUT, c.req_packed_commands(cmd, offset, count)).await,
                Self::Sentinel(s) => {
                    let (generation, mut c) = s.connection().await?;
                    let answer = bounded(COMMAND_TIMEOUT, c.req_packed_commands(cmd, offset, count)).await;
                    match &answer {
                        Err(e) => s.failed(generation, e),
                        // A pipeline answers its commands' errors inside the values.
                        Ok(values) => {
                            if let Some(Value::ServerError(e)) =
                                values.iter().find(|v| matches!(v, Value::ServerError(_)))
                            {
                                if e.code() == "READONLY" {
                                    s.failed(generation, &RedisError::from((ErrorKind::ReadOnly, "READONLY")));
                                }
                            }
                        }
                    }
                    answer
                }
            }
        }
        .boxed()
    }

    fn get_db(&self) -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A stand-in sentinel on a free port that names `primary_port` as the primary (and says
    /// OK to anything else a client sends on connecting).
    async fn fake_sentinel(primary_port: u16) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        // Every complete RESP array of bulk strings gets its answer.
                        while let Some((len, words)) = request(&buf) {
                            buf.drain(..len);
                            let reply = if words.first().is_some_and(|w| w.eq_ignore_ascii_case("sentinel")) {
                                format!(
                                    "*2\r\n$9\r\n127.0.0.1\r\n${}\r\n{primary_port}\r\n",
                                    primary_port.to_string().len()
                                )
                            } else {
                                "+OK\r\n".to_string()
                            };
                            if socket.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        let mut chunk = [0; 1024];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        port
    }

    /// The first whole request in `buf`: its length and its words.
    fn request(buf: &[u8]) -> Option<(usize, Vec<String>)> {
        let text = std::str::from_utf8(buf).ok()?;
        let (count, mut rest) = text.strip_prefix('*')?.split_once("\r\n")?;
        let mut words = Vec::new();
        for _ in 0..count.parse::<usize>().ok()? {
            let (len, after) = rest.strip_prefix('$')?.split_once("\r\n")?;
            let len: usize = len.parse().ok()?;
            words.push(after.get(..len)?.to_string());
            rest = after.get(len..)?.strip_prefix("\r\n")?;
        }
        Some((text.len() - rest.len(), words))
    }

    fn sentinels(ports: &[u16]) -> Arc<Sentinel> {
        let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let url = format!("redis+sentinel://{}/main", hosts.join(","));
        let Ok(Topology::Sentinel(sentinel)) = Topology::parse(&url) else { panic!("not a sentinel topology") };
        sentinel
    }

    /// One sentinel that has not heard of a failover yet, asked first, is outvoted by the two
    /// that name the new primary; without a majority, the first-listed of the most named wins.
    #[tokio::test]
    async fn the_primary_is_what_most_sentinels_name() {
        let (stale, current) = (fake_sentinel(7001).await, fake_sentinel(7002).await);
        let named = |ports: &[u16]| {
            let sentinel = sentinels(ports);
            async move { sentinel.primary_address().await.unwrap().1 }
        };
        assert_eq!(named(&[stale, current, fake_sentinel(7002).await]).await, 7002);
        // A sentinel that is down: nothing listens on its port any more.
        let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert_eq!(named(&[stale, down, current]).await, 7001);
        assert_eq!(named(&[down, current, stale]).await, 7002);
    }

    #[test]
    fn sentinel_and_cluster_urls_parse_and_errors_never_quote_them() {
        let t =
            Topology::parse("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/main?password=pw&sentinel_password=sp");
        let Ok(Topology::Sentinel(s)) = t else { panic!("not a sentinel topology") };
        assert_eq!((s.sentinels.len(), s.master.as_str(), s.password.as_deref()), (2, "main", Some("pw")));
        assert!(matches!(
            Topology::parse("redis+cluster://127.0.0.1:7000,127.0.0.1:7001"),
            Ok(Topology::Cluster { .. })
        ));
        assert!(matches!(Topology::parse("redis://127.0.0.1:6379"), Ok(Topology::Single(_))));
        for bad in ["redis+sentinel://127.0.0.1:26379", "redis+sentinel://h/m?passwd=secret", "redis+cluster://h:x"] {
            let Err(e) = Topology::parse(bad) else { panic!("{bad} parsed") };
            assert!(!e.contains("secret") && !e.contains("127.0.0.1") && !e.contains("h:x"), "{e}");
        }
    }
}
