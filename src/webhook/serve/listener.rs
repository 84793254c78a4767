//! The accept loop: bounded connections, timeouts, graceful shutdown.
//!
//! Written out rather than taken from a serve helper because each of these
//! is a production requirement: a bound on open connections (a connection
//! over the bound is closed at once), a TLS handshake timeout, a header-read
//! timeout (slowloris), an idle timeout for kept-alive HTTP/1 and HTTP/2
//! connections, and a shutdown that lets in-flight requests finish. Both
//! ports use it: the webhook's over TLS, the metrics and probes' in plain
//! HTTP, each with its own connection limit, so that a flood of one cannot
//! starve the other.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

/// Connection limits and timeouts.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

/// How connections speak: TLS (the webhook) or plain HTTP (metrics, probes).
pub enum Transport {
    Tls(Arc<rustls::ServerConfig>),
    Plain,
}

/// Serves `app` until `shutdown` resolves, then stops accepting, asks every
/// connection to close after its in-flight requests, and waits for them up
/// to `limits.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    transport: Transport,
    app: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    on_connections: impl Fn(i64) + Send + Sync + 'static,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        acceptor: match transport {
            Transport::Tls(config) => Some(TlsAcceptor::from(config)),
            Transport::Plain => None,
        },
        builder: http_builder(&limits),
        app,
        limits,
        on_connections: Box::new(on_connections),
    });

    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let max = shared.limits.max_connections;
            tracing::warn!(%peer, max, "connection limit reached; closing new connection");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (shared, stop_rx) = (shared.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            shared.connection(tcp, peer, stop_rx).await;
        });
    }

    // Stop accepting (the listener is dropped here), then let connections
    // finish what they are doing.
    drop(listener);
    let _ = stop_tx.send(true);
    wait_for_connections(&permits, &shared.limits).await;
}

/// What one connection may hold of a client's unread data: HTTP/1's read
/// buffer (request head included) and HTTP/2's flow-control windows. The
/// budget of bodies in flight counts only bodies being read, so this times
/// the connection limit is what clients can park beside it (hyper's defaults,
/// 400 KiB and 1 MiB, would let 256 connections park 256 MiB).
pub const CONNECTION_BUFFER: u32 = 64 * 1024;

/// HTTP/1.1 and HTTP/2 with the header-read timeout, keep-alive pings and
/// [`CONNECTION_BUFFER`].
fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(CONNECTION_BUFFER as usize)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        .initial_connection_window_size(CONNECTION_BUFFER)
        .initial_stream_window_size(CONNECTION_BUFFER)
        .max_concurrent_streams(250);
    builder
}

/// Waits until every connection has closed, at most `shutdown_grace`.
async fn wait_for_connections(permits: &Semaphore, limits: &Limits) {
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(limits.shutdown_grace, permits.acquire_many(all)).await;
    match drained {
        Ok(_) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!(
            open = limits.max_connections - permits.available_permits(),
            "shutdown grace period over; closing remaining connections"
        ),
    }
}

/// What every connection task shares.
struct Shared {
    /// None: plain HTTP.
    acceptor: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    app: axum::Router,
    limits: Limits,
    on_connections: Box<dyn Fn(i64) + Send + Sync>,
}

impl Shared {
    /// One connection: the bounded TLS handshake (if any), then HTTP until
    /// the peer leaves, it idles out, or shutdown asks it to close.
    async fn connection(&self, tcp: TcpStream, peer: SocketAddr, stop_rx: watch::Receiver<bool>) {
        let Some(acceptor) = &self.acceptor else {
            (self.on_connections)(1);
            self.http(tcp, peer, stop_rx).await;
            (self.on_connections)(-1);
            return;
        };
        let handshake = acceptor.accept(tcp);
        let tls = match tokio::time::timeout(self.limits.handshake_timeout, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        (self.on_connections)(1);
        self.http(tls, peer, stop_rx).await;
        (self.on_connections)(-1);
    }

    async fn http<T>(&self, stream: T, peer: SocketAddr, mut stop_rx: watch::Receiver<bool>)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new();
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: activity.clone(),
        });
        let service = TowerToHyperService::new(self.app.clone());
        let conn = self.builder.serve_connection(io, service);
        tokio::pin!(conn);
        let mut closing = *stop_rx.borrow();
        if closing {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                changed = stop_rx.changed(), if !closing => {
                    if changed.is_err() || *stop_rx.borrow() {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
                () = activity.idle_for(self.limits.idle_timeout), if !closing => {
                    tracing::debug!(%peer, "closing idle connection");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// When a connection last moved a byte, for the idle timeout.
#[derive(Clone)]
struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Passes a write's result through, counting written bytes as activity.
    fn after_write(&self, poll: Poll<std::io::Result<usize>>) -> Poll<std::io::Result<usize>> {
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
    }

    /// Resolves once nothing moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let idle = self.start.elapsed().saturating_sub(last);
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }
}

/// An IO stream that records activity.
struct Tracked<T> {
    inner: T,
    activity: Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.activity.after_write(poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.activity.after_write(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
