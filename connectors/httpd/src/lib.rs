//! The server loop every crmflow listener uses (the webhook ingress, `/metrics`, the simulators),
//! instead of `axum::serve`, which sets no timer: with it a client that trickles its headers one
//! byte at a time, or sends half a body and waits, holds a connection and its task forever.
//!
//! [`serve`] accepts on a `TcpListener` and serves each connection with hyper's automatic
//! HTTP/1.1-or-h2 builder, bounded by [`Limits`]:
//! - the request head must arrive within [`Limits::header_read_timeout`] (hyper closes the
//!   connection otherwise), and a connection with no request in flight that reads and writes
//!   nothing for as long is closed too (hyper's timer starts only at a head's first byte, so a
//!   client that connects and stays silent, or an idle keep-alive one, would stay forever);
//! - a request, body read included, gets an answer within [`Limits::request_timeout`]: past it the
//!   handler is dropped and the client gets 408;
//! - at most [`Limits::max_connections`] connections are served at once; further ones wait in the
//!   kernel's accept queue.
//!
//! - a request whose `Content-Length` exceeds [`Limits::max_body_bytes`] is answered 413 at once,
//!   before any of the body is read (axum's `DefaultBodyLimit` only counts bytes as they arrive,
//!   so a client claiming a gigabyte and sending nothing would wait for the request timeout);
//!   bodies without a length are still cut by the router's `DefaultBodyLimit` (2 MiB by default)
//!   as they stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// What one listener allows a client.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to receive a request's head (request line and headers), from the first byte or from
    /// the end of the previous response on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// Time from a request's head to its answer, reading the body included.
    pub request_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Largest `Content-Length` accepted, bytes (keep it equal to the router's
    /// `DefaultBodyLimit`).
    pub max_body_bytes: usize,
}

impl Default for Limits {
    /// 10 s for headers, 60 s per request, 1,024 connections, 2 MiB bodies (axum's default).
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_body_bytes: 2 << 20,
        }
    }
}

impl Limits {
    /// `self` with another request timeout.
    pub fn with_request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// `self` with another body size limit.
    pub fn with_max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// `self` with another header read timeout.
    pub fn with_header_read_timeout(mut self, d: Duration) -> Self {
        self.header_read_timeout = d;
        self
    }
}

/// Answers 413 for a declared body past the limit, and 408 when the inner handler (body read
/// included) is not done within the time limit.
async fn request_timeout(
    State((limit, max_body)): State<(Duration, usize)>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {max_body} bytes\n"),
        )
            .into_response();
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            format!("request not complete within {} ms\n", limit.as_millis()),
        )
            .into_response(),
    }
}

/// `app` with the request timeout of `limits` around every route.
pub fn bounded(app: Router, limits: &Limits) -> Router {
    app.layer(axum::middleware::from_fn_with_state(
        (limits.request_timeout, limits.max_body_bytes),
        request_timeout,
    ))
}

fn builder(limits: &Limits) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_read_timeout / 2))
        .keep_alive_timeout(limits.header_read_timeout);
    b
}

/// Serves `app` on one accepted connection (plain TCP or TLS) until it ends or `stop` turns
/// true (then gracefully, for at most 2 s). `app` should already be [`bounded`].
pub async fn serve_connection<I>(
    io: I,
    app: Router,
    limits: &Limits,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let busy = Arc::new(AtomicUsize::new(0));
    let service = Tracked {
        inner: TowerToHyperService::new(app),
        busy: busy.clone(),
    };
    let io = IdleTimeout::new(io, limits.header_read_timeout, busy);
    let b = builder(limits);
    let conn = b.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%e, "connection ended with an error");
            }
        }
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
        }
    }
}

/// Accepts on `listener` and serves `app` within `limits` until `shutdown` completes; then
/// stops accepting and lets open connections finish (2 s at most each).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = bounded(app, &limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(%e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            serve_connection(tcp, app, &limits, stop).await;
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    // Wait until every connection ended (each holds a permit).
    let _ = tokio::time::timeout(
        Duration::from_secs(3),
        permits.acquire_many(limits.max_connections.max(1) as u32),
    )
    .await;
}

/// Counts the requests of one connection in flight (from head to response head).
struct Tracked<S> {
    inner: S,
    busy: Arc<AtomicUsize>,
}

/// Decrements the in-flight count when a request's future ends or is dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S, R> hyper::service::Service<R> for Tracked<S>
where
    S: hyper::service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, req: R) -> Self::Future {
        self.busy.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(self.busy.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            drop(guard);
            r
        })
    }
}

/// An IO that fails its reads once it moved no byte for `idle` while no request was in flight.
struct IdleTimeout<I> {
    io: I,
    idle: Duration,
    busy: Arc<AtomicUsize>,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<I> IdleTimeout<I> {
    fn new(io: I, idle: Duration, busy: Arc<AtomicUsize>) -> Self {
        Self {
            io,
            idle,
            busy,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn touch(&mut self) {
        let at = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(at);
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for IdleTimeout<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if self.busy.load(Ordering::Acquire) > 0 {
                    // A handler is working: its own timeout applies, not the idle one.
                    self.touch();
                }
                match self.deadline.as_mut().poll(cx) {
                    Poll::Ready(()) if self.busy.load(Ordering::Acquire) == 0 => Poll::Ready(Err(
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "connection idle"),
                    )),
                    Poll::Ready(()) => {
                        self.touch();
                        let _ = self.deadline.as_mut().poll(cx);
                        Poll::Pending
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
