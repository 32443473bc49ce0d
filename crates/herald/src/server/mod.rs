//! Serving the router: HTTP/1.1 and HTTP/2 (cleartext prior knowledge, or TLS with ALPN) on one
//! listener, and a graceful shutdown with a deadline. The hub's HTTP/1.1 streams, plain or over
//! TLS, take the lean path of `direct`.

pub(crate) mod direct;
pub(crate) mod publish;
mod rewind;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::{Config, ConfigError};
use crate::http::ConnectionKill;
use crate::hub::Hub;

/// Binds a listener with a deep accept queue (4096; the OS caps it at `net.core.somaxconn`), so
/// that a reconnect storm is queued rather than refused.
///
/// # Errors
///
/// The address cannot be bound.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Loads the TLS certificate and key of `config`, offering HTTP/2 and HTTP/1.1 by ALPN.
///
/// # Errors
///
/// A file that cannot be read, or holds no usable certificate or key; the error names the key.
pub fn tls_acceptor(config: &Config) -> Result<Option<TlsAcceptor>, ConfigError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else { return Ok(None) };
    let read = |name: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| ConfigError::new(name, format!("cannot read `{}`: {e}", path.display())))
    };
    let certs = rustls_pemfile::certs(&mut read("tls_cert", cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::new("tls_cert", format!("is not a PEM certificate chain: {e}")))?;
    let key = rustls_pemfile::private_key(&mut read("tls_key", key)?.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| ConfigError::new("tls_key", "holds no PEM private key"))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| ConfigError::new("tls_key", format!("does not fit `tls_cert`: {e}")))?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(tls))))
}

/// Serves the hub's own endpoints on `listener` until `shutdown` resolves; HTTP/1.1 streams
/// (plain or over TLS) take the lean path of `direct`. See [`serve`] for shutdown.
///
/// # Errors
///
/// Only a failure of the listener itself.
pub async fn serve_hub(
    listener: TcpListener,
    hub: Hub,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = crate::http::router(hub.clone());
    run(listener, hub, router, tls, shutdown, true).await
}

/// Serves `router` (an application's, mounting the hub's) on `listener` until `shutdown`
/// resolves, then stops accepting, ends every stream of `hub` with a `retry:` hint, and waits
/// for open requests up to the configured grace period.
///
/// # Errors
///
/// Only a failure of the listener itself.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    run(listener, hub, router, tls, shutdown, false).await
}

async fn run(
    listener: TcpListener,
    hub: Hub,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    direct: bool,
) -> std::io::Result<()> {
    let tasks = TaskTracker::new();
    let send_buffer = Some(hub.config().send_buffer_bytes).filter(|&b| b > 0);
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(hub.config().head_timeout());
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Duration::from_secs(30));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let first = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        // Take every connection already waiting (nginx's `multi_accept`): in a connection storm
        // this loop is one task among thousands, and one accept per turn would fall behind.
        let mut next = Some(first);
        while let Some(accepted) = next.take() {
            next = listener.accept().now_or_never();
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    break;
                }
            };
            let _ = stream.set_nodelay(true);
            if let Some(bytes) = send_buffer {
                // Bounds what a client that stops reading holds in the kernel, beside the
                // stream's own queue: without it the buffer grows to `tcp_wmem`'s maximum
                // (megabytes) per stalled socket, and every message is copied into each.
                let _ = socket2::SockRef::from(&stream).set_send_buffer_size(bytes);
            }
            let conn = Connection {
                builder: builder.clone(),
                router: router.clone(),
                watcher: graceful.watcher(),
                remote,
                kill: CancellationToken::new(),
            };
            match &tls {
                Some(tls) => {
                    let (tls, hub, tasks_inner) = (tls.clone(), hub.clone(), tasks.clone());
                    tasks.spawn(async move {
                        // Boxed: the TLS session is 1.2 KiB, and the futures that hold the
                        // connection for its whole life would each keep a copy of it inline.
                        // The handshake gets the request head's deadline: a client that connects
                        // and never completes it does not hold the socket.
                        let handshake = tokio::time::timeout(hub.config().head_timeout(), tls.accept(stream));
                        match handshake.await.map(|accepted| accepted.map(Box::new)) {
                            // HTTP/1.1 over TLS takes the lean path too; HTTP/2 by ALPN is hyper's.
                            Ok(Ok(stream)) if direct && stream.get_ref().1.alpn_protocol() != Some(b"h2") => {
                                serve_direct(stream, conn, &hub, &tasks_inner).await;
                            }
                            Ok(Ok(stream)) => conn.serve_http(stream).await,
                            Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed."),
                            Err(_) => tracing::debug!(%remote, "TLS handshake timed out."),
                        }
                    });
                }
                None if direct => {
                    let (hub, tasks_inner) = (hub.clone(), tasks.clone());
                    tasks.spawn(async move { serve_direct(stream, conn, &hub, &tasks_inner).await });
                }
                None => {
                    tasks.spawn(conn.serve_http(stream));
                }
            }
        }
    }
    drop(listener);
    tracing::info!("Shutting down: closing streams.");
    hub.shutdown();
    let grace = Duration::from_secs(hub.config().shutdown_grace_secs);
    tasks.close();
    let drained = async {
        graceful.shutdown().await;
        tasks.wait().await;
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(grace_secs = grace.as_secs(), "Grace period over; closing the remaining connections.");
    }
    hub.flush().await;
    Ok(())
}

/// Reads the first request of `io`: a stream subscribed by it runs in a separate, small task, since
/// the hyper connection future is several times the size of a direct stream's and a task's memory
/// is the size of its future; a publish opens the lean publish loop (`publish`), which hands the
/// connection to hyper if something else follows; anything else is served by hyper.
async fn serve_direct<I>(io: I, conn: Connection, hub: &Hub, tasks: &TaskTracker)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match direct::accept(io, hub, conn.remote).await {
        Ok(direct::Accepted::Stream(stream)) => {
            tasks.spawn(stream.run());
        }
        Ok(direct::Accepted::Publish(io, buf)) => {
            let hub = hub.clone();
            tasks.spawn(async move {
                match publish::serve(io, buf, &hub).await {
                    Ok(Some(rewound)) => conn.serve_http(rewound).await,
                    Ok(None) => {}
                    Err(error) => tracing::debug!(%error, "Publish connection ended with an error."),
                }
            });
        }
        Ok(direct::Accepted::Other(rewound)) => {
            tasks.spawn(conn.serve_http(rewound));
        }
        Ok(direct::Accepted::Done) => {}
        Err(error) => tracing::debug!(%error, "Could not read a request."),
    }
}

/// What serving one accepted connection through hyper needs.
struct Connection {
    builder: Arc<Builder<TokioExecutor>>,
    router: Router,
    watcher: hyper_util::server::graceful::Watcher,
    remote: SocketAddr,
    /// Cancelled when a stream of this connection overflows its queue: the client stopped
    /// reading, so its transport is closed rather than left blocked.
    kill: CancellationToken,
}

impl Connection {
    async fn serve_http<I>(self, io: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Self { builder, router, watcher, remote, kill } = self;
        let service = service(router, remote, kill.clone());
        let served = watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned());
        tokio::select! {
            result = served => if let Err(error) = result {
                tracing::debug!(%error, "Connection ended with an error.");
            },
            () = kill.cancelled() => tracing::debug!(%remote, "Closed the transport of a client that stopped reading."),
        }
    }
}

/// The per-connection service: the router, with the remote address and the kill switch in
/// every request's extensions.
fn service(
    router: Router,
    remote: SocketAddr,
    kill: CancellationToken,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = tower::util::Oneshot<Router, http::Request<Body>>,
> + Clone {
    hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        request.extensions_mut().insert(ConnectionKill(kill.clone()));
        router.clone().oneshot(request.map(Body::new))
    })
}
