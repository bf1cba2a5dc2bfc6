//! One endpoint's HTTP/1.1 connections, over hyper's `client::conn` API.
//!
//! A request takes the most recently used idle connection (or dials a new one), and its
//! connection goes back to the idle list when the response body ends. Nothing is spawned per
//! request and no pool key is hashed: the pool belongs to one address. A request that a reused
//! connection never wrote (it closed while idle) is sent again on another connection. A
//! request that leaves its connection before its end (a timeout, a client gone) closes it at
//! once: hyper's connection task would otherwise go on writing the request body, as long as
//! the upstream lets it, to an upstream that stopped reading (a socket and its send buffer
//! held for as long as the upstream stalls).

use crate::BoxBody;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::{
    body::Incoming,
    client::conn::http1::{self, SendRequest},
};
use hyper_util::rt::TokioIo;
use linkerd_http_classify::{ProxyError, clock};
use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
    time::Duration,
};
use tokio::time::Instant;

/// How long a connection may sit idle before it is closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// One address's idle HTTP/1.1 connections.
#[derive(Debug)]
pub(crate) struct H1Pool {
    addr: SocketAddr,
    connect_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

/// One connection: the request sender and the task that drives the connection.
#[derive(Debug)]
struct Conn {
    tx: SendRequest<BoxBody>,
    task: tokio::task::AbortHandle,
}

/// A connection a request is using. Dropped while it holds one (the request's answer never
/// came, or its body was not read to the end), it closes the connection: it cannot be
/// reused, and its task may be blocked writing the request's body.
#[derive(Debug)]
struct InUse(Option<Conn>);

/// Why a request got no response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be established.
    Connect(std::io::Error),
    /// The connection failed while the request was sent or the response read.
    Http(hyper::Error),
    /// A response future polled after it completed.
    Polled,
}

pin_project_lite::pin_project! {
    /// A response body that returns its connection to the pool when it ends.
    ///
    /// Forwards `is_end_stream` and `size_hint`. A body dropped before its end takes the
    /// connection with it (hyper closes a connection whose response was not read).
    pub(crate) struct PooledBody {
        #[pin]
        inner: Incoming,
        conn: InUse,
        pool: Option<Arc<H1Pool>>,
    }
}

// === impl H1Pool ===

impl H1Pool {
    pub(crate) fn new(addr: SocketAddr, connect_timeout: Duration, max_idle: usize) -> Arc<Self> {
        Arc::new(Self {
            addr,
            connect_timeout,
            max_idle,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `req` (already in origin-form with a `Host`) on an idle or new connection.
    ///
    /// When an idle connection is ready now, the request is handed to it at once and the
    /// returned future only waits for the response: it is a few hundred bytes, where the
    /// general path (dial, wait for readiness, resend) is boxed apart.
    pub(crate) fn send_now(self: Arc<Self>, req: Request<BoxBody>) -> SendNow<impl TrySend> {
        match self.checkout_ready() {
            Some(mut conn) => SendNow::Sent {
                response: conn.tx.try_send_request(req),
                conn: InUse(Some(conn)),
                pool: Some(self),
            },
            None => SendNow::General {
                future: Box::pin(self.send(req)),
            },
        }
    }

    /// An idle connection that can take a request now, if there is one. One that is not
    /// ready yet goes back to the pool (the general path waits on it).
    fn checkout_ready(&self) -> Option<Conn> {
        let mut conn = self.checkout()?;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match conn.tx.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => Some(conn),
            // Closed meanwhile: dropped.
            Poll::Ready(Err(_)) => None,
            Poll::Pending => {
                self.checkin(conn);
                None
            }
        }
    }

    /// Sends `req` (already in origin-form with a `Host`) on an idle or new connection.
    pub(crate) async fn send(
        self: Arc<Self>,
        mut req: Request<BoxBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        // Each turn either takes a connection off the idle list, which is finite, or dials a
        // new one and returns whatever it answers: this ends.
        loop {
            let (conn, reused) = match self.checkout() {
                Some(conn) => (conn, true),
                // Boxed: the dialling future is large and rare; inline it would grow every
                // request's future.
                None => (Box::pin(self.connect()).await?, false),
            };
            let mut in_use = InUse(Some(conn));
            if let Err(e) = in_use.tx().ready().await {
                in_use.release();
                if reused {
                    continue;
                }
                return Err(SendError::Http(e));
            }
            let sent = in_use.tx().try_send_request(req).await;
            let conn = in_use.release();
            match (sent, conn) {
                (Ok(rsp), Some(conn)) => return Ok(PooledBody::wrap(rsp, conn, self)),
                (Ok(_), None) => return Err(SendError::Polled),
                (Err(mut e), _) => match e.take_message() {
                    // Never written: the idle connection had closed. Another one.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(SendError::Http(e.into_error())),
                },
            }
        }
    }

    /// The most recently used open idle connection; stale ones are dropped.
    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(Idle { conn, since }) = idle.pop() {
            if !conn.tx.is_closed() && clock::since(since) < IDLE_TIMEOUT {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, conn: Conn) {
        if conn.tx.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // The oldest entries sit at the front: drop the expired and closed ones there.
        let now = clock::now();
        let fresh = idle
            .iter()
            .position(|i| !i.conn.tx.is_closed() && now.duration_since(i.since) < IDLE_TIMEOUT)
            .unwrap_or(idle.len());
        idle.drain(..fresh);
        if idle.len() < self.max_idle {
            idle.push(Idle { conn, since: now });
        }
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let (tx, task) = open(self.addr, self.connect_timeout, |io| {
            http1::Builder::new().handshake(io)
        })
        .await?;
        Ok(Conn { tx, task })
    }

    #[cfg(test)]
    fn idle_len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The future of a request handed to a ready connection: hyper's own response future.
pub(crate) trait TrySend:
    Future<Output = Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<BoxBody>>>>
    + Send
{
}

impl<F> TrySend for F where
    F: Future<
            Output = Result<
                Response<Incoming>,
                hyper::client::conn::TrySendError<Request<BoxBody>>,
            >,
        > + Send
{
}

type GeneralFuture = Pin<Box<dyn Future<Output = Result<Response<PooledBody>, SendError>> + Send>>;

pin_project_lite::pin_project! {
    /// The response future of [`H1Pool::send_now`].
    #[project = SendNowProj]
    pub(crate) enum SendNow<F> {
        /// Handed to an idle connection.
        Sent {
            #[pin]
            response: F,
            conn: InUse,
            pool: Option<Arc<H1Pool>>,
        },
        /// The general path: dial or wait for a connection, resend an unwritten request.
        General { future: GeneralFuture },
    }
}

impl<F: TrySend> Future for SendNow<F> {
    type Output = Result<Response<PooledBody>, SendError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // At most two turns: a request the idle connection never wrote moves to the general
        // path, which answers.
        loop {
            let general = match self.as_mut().project() {
                SendNowProj::General { future } => return future.as_mut().poll(cx),
                SendNowProj::Sent {
                    response,
                    conn,
                    pool,
                } => {
                    let result = ready!(response.poll(cx));
                    let (Some(conn), Some(pool)) = (conn.release(), pool.take()) else {
                        return Poll::Ready(Err(SendError::Polled));
                    };
                    match result {
                        Ok(rsp) => return Poll::Ready(Ok(PooledBody::wrap(rsp, conn, pool))),
                        Err(mut e) => match e.take_message() {
                            // Never written: the idle connection had closed. Another one.
                            Some(req) => Box::pin(pool.send(req)),
                            None => return Poll::Ready(Err(SendError::Http(e.into_error()))),
                        },
                    }
                }
            };
            self.set(SendNow::General { future: general });
        }
    }
}

/// Dials `addr` and runs hyper's client `handshake` on the stream; the connection is driven
/// by a task of its own, whose errors reach the requests in flight on it (aborting the task
/// closes the connection).
pub(crate) async fn open<Tx, C, F>(
    addr: SocketAddr,
    connect_timeout: Duration,
    handshake: impl FnOnce(TokioIo<tokio::net::TcpStream>) -> F,
) -> Result<(Tx, tokio::task::AbortHandle), SendError>
where
    F: Future<Output = Result<(Tx, C), hyper::Error>>,
    C: Future + Send + 'static,
{
    let stream = super::endpoint::dial(addr, connect_timeout)
        .await
        .map_err(SendError::Connect)?;
    let (tx, conn) = handshake(TokioIo::new(stream))
        .await
        .map_err(SendError::Http)?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((tx, task.abort_handle()))
}

// === impl InUse ===

impl InUse {
    /// The connection's sender (it is held until released).
    fn tx(&mut self) -> &mut SendRequest<BoxBody> {
        &mut self
            .0
            .as_mut()
            .expect("a connection in use until released")
            .tx
    }

    /// The connection, no longer closed when this is dropped.
    fn release(&mut self) -> Option<Conn> {
        self.0.take()
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            conn.task.abort();
        }
    }
}

// === impl SendError ===

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect failed: {e}"),
            Self::Http(e) => std::fmt::Display::fmt(e, f),
            Self::Polled => f.write_str("response future polled after completion"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(e) => Some(e),
            Self::Http(e) => Some(e),
            Self::Polled => None,
        }
    }
}

// === impl PooledBody ===

impl PooledBody {
    fn wrap(rsp: Response<Incoming>, conn: Conn, pool: Arc<H1Pool>) -> Response<Self> {
        rsp.map(|inner| {
            if inner.is_end_stream() {
                // hyper never polls a body already at its end: the connection is free now.
                pool.checkin(conn);
                return Self {
                    inner,
                    conn: InUse(None),
                    pool: None,
                };
            }
            Self {
                inner,
                conn: InUse(Some(conn)),
                pool: Some(pool),
            }
        })
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = crate::BoxError;

    /// A body that fails (the upstream closed or reset the connection before its end, or
    /// sent a malformed one) is an upstream reset (DESIGN.md section 5: `RESET` after the
    /// headers; an HTTP/2 client's stream is reset with `INTERNAL_ERROR`).
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, crate::BoxError>>> {
        let mut this = self.project();
        let frame = match ready!(this.inner.as_mut().poll_frame(cx)) {
            None => None,
            Some(Ok(frame)) => Some(Ok(frame)),
            Some(Err(error)) => {
                // The connection failed: nothing to close or return.
                this.conn.release();
                return Poll::Ready(Some(Err(ProxyError::reset(h2::Reason::INTERNAL_ERROR)
                    .with_source(error)
                    .into())));
            }
        };
        let done = frame.is_none() || this.inner.is_end_stream();
        if done && let (Some(conn), Some(pool)) = (this.conn.release(), this.pool.take()) {
            pool.checkin(conn);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("pooled", &self.conn.0.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A keep-alive HTTP/1.1 server that counts accepted connections; `close_after` makes it
    /// close each connection after that many responses.
    async fn server(close_after: Option<usize>) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((io, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let served = Arc::new(AtomicUsize::new(0));
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let n = served.fetch_add(1, Ordering::SeqCst) + 1;
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let mut rsp = Response::new(Full::new(body));
                            if close_after.is_some_and(|c| n >= c) {
                                rsp.headers_mut()
                                    .insert(http::header::CONNECTION, "close".parse().unwrap());
                            }
                            Ok::<_, hyper::Error>(rsp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(io), svc)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn request(body: &'static str) -> Request<BoxBody> {
        let mut req = Request::new(
            Full::new(Bytes::from_static(body.as_bytes()))
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *req.uri_mut() = http::Uri::from_static("/echo");
        req.headers_mut()
            .insert(http::header::HOST, "test".parse().unwrap());
        req
    }

    async fn echo(pool: &Arc<H1Pool>, body: &'static str) -> Bytes {
        let rsp = pool
            .clone()
            .send_now(request(body))
            .await
            .expect("response");
        rsp.into_body().collect().await.expect("body").to_bytes()
    }

    #[tokio::test]
    async fn reuses_one_connection_for_sequential_requests() {
        let (addr, accepted) = server(None).await;
        let pool = H1Pool::new(addr, Duration::from_secs(1), 4);
        for i in 0..20 {
            let body = if i % 2 == 0 { "ping" } else { "" };
            assert_eq!(echo(&pool, body).await, body.as_bytes(), "request {i}");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection for all");
        assert_eq!(pool.idle_len(), 1);
    }

    #[tokio::test]
    async fn a_ready_idle_connection_takes_the_request_at_once() {
        let (addr, accepted) = server(None).await;
        let pool = H1Pool::new(addr, Duration::from_secs(1), 4);
        assert_eq!(echo(&pool, "warm").await, "warm");
        let future = pool.clone().send_now(request("now"));
        assert!(
            matches!(future, SendNow::Sent { .. }),
            "handed to the idle connection without waiting"
        );
        // Small enough to box in the allocator's fast bins and to move cheaply; the general
        // path (dialing, readiness, resend) lives in its own box.
        assert!(
            std::mem::size_of_val(&future) <= 512,
            "{} bytes",
            std::mem::size_of_val(&future)
        );
        let rsp = future.await.expect("response");
        assert_eq!(
            rsp.into_body().collect().await.expect("body").to_bytes(),
            "now"
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection for both"
        );
    }

    #[tokio::test]
    async fn concurrent_requests_open_connections_and_keep_at_most_max_idle() {
        let (addr, accepted) = server(None).await;
        let pool = H1Pool::new(addr, Duration::from_secs(1), 2);
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(pool.clone().send_now(request("x")).await.expect("response"));
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            4,
            "bodies unread: no reuse"
        );
        for rsp in held {
            rsp.into_body().collect().await.expect("body");
        }
        assert_eq!(pool.idle_len(), 2, "max_idle bounds the idle list");
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_reused() {
        let (addr, accepted) = server(Some(1)).await;
        let pool = H1Pool::new(addr, Duration::from_secs(1), 4);
        for _ in 0..5 {
            assert_eq!(echo(&pool, "hi").await, "hi");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            5,
            "a new connection per request"
        );
    }

    #[tokio::test]
    async fn a_dropped_body_does_not_return_its_connection() {
        let (addr, accepted) = server(None).await;
        let pool = H1Pool::new(addr, Duration::from_secs(1), 4);
        let rsp = pool
            .clone()
            .send_now(request("abc"))
            .await
            .expect("response");
        drop(rsp);
        assert_eq!(pool.idle_len(), 0);
        assert_eq!(echo(&pool, "x").await, "x");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn refused_connect_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let pool = H1Pool::new(addr, Duration::from_secs(1), 4);
        match pool.send_now(request("")).await {
            Err(SendError::Connect(e)) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
            }
            other => panic!("expected a connect error, got {other:?}"),
        }
    }
}
