//! Real HTTP servers on 127.0.0.1 port 0 that stop when their handle is dropped.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::BoxError;

/// Which protocols a [`TestServer`] speaks on each connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServerProtocol {
    /// HTTP/1.1 or h2c (HTTP/2 with prior knowledge), chosen per connection from the client
    /// preface by hyper-util's auto builder. HTTP/1.1 upgrades work.
    #[default]
    Auto,
    /// HTTP/1.1 only (upgrades work); an HTTP/2 preface is a protocol error.
    Http1,
    /// HTTP/2 only (prior knowledge); extended CONNECT (RFC 8441) is enabled.
    Http2,
}

/// A running test server: a listener on `127.0.0.1:0` and one task per connection.
///
/// Dropping the handle aborts the accept loop and every connection at once (clients see the
/// connection close). [`shutdown`](Self::shutdown) stops gracefully instead.
///
/// Every server counts the connections it accepted and the requests it received. The built-in
/// [`backend`](Self::backend) also records each request in full ([`requests`](Self::requests)).
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// One request as the backend received it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ReceivedRequest {
    /// The request method.
    pub method: Method,
    /// The request URI as hyper parsed it (origin-form for HTTP/1.1, absolute for HTTP/2).
    pub uri: Uri,
    /// `HTTP_11` or `HTTP_2` (or `HTTP_10`).
    pub version: Version,
    /// The request headers.
    pub headers: HeaderMap,
    /// The body bytes read so far (all of them once `body_complete` is true).
    pub body: Bytes,
    /// The request trailers, if any arrived.
    pub trailers: Option<HeaderMap>,
    /// `true` once the body was read to its end without error.
    pub body_complete: bool,
    /// The error that ended the body early (for example a client reset), as text.
    pub body_error: Option<String>,
    /// The HTTP/2 reason in `body_error`'s chain: how the client (or a proxy) reset the
    /// request stream.
    pub body_reset: Option<h2::Reason>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    connections: AtomicUsize,
    requests: AtomicUsize,
    received: Mutex<Vec<ReceivedRequest>>,
}

// === impl TestServer ===

impl TestServer {
    /// Starts a server that answers every request with `handler`.
    ///
    /// The handler gets the request with its streaming body; an `Err` from it makes hyper
    /// reset the stream (HTTP/2, with the `h2::Reason` found in the error's `source()` chain,
    /// else `INTERNAL_ERROR`) or close the connection (HTTP/1.1).
    ///
    /// # Errors
    ///
    /// Binding `127.0.0.1:0` failed.
    ///
    /// # Example
    ///
    /// ```
    /// use linkerd_http_test_util::{HttpClient, ServerProtocol, TestServer};
    /// use http_body_util::Full;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let server = TestServer::serve(ServerProtocol::Http2, |req: http::Request<_>| async move {
    ///     let body = Full::new(bytes::Bytes::from(req.uri().path().to_owned()));
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(body))
    /// })
    /// .await
    /// .expect("bind");
    /// let mut client = HttpClient::http2(server.addr()).await.expect("connect");
    /// let rsp = client.get("/hello").await.expect("response");
    /// let body = linkerd_http_test_util::collect(rsp.into_body()).await.unwrap();
    /// assert_eq!(body.data, "/hello");
    /// assert_eq!(server.request_count(), 1);
    /// # }
    /// ```
    pub async fn serve<F, Fut, B, E>(protocol: ServerProtocol, handler: F) -> io::Result<Self>
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        Ok(Self::start(
            listener,
            addr,
            protocol,
            Arc::new(State::default()),
            handler,
        ))
    }

    /// Starts the scripted backend (see [the crate docs](crate#the-backend)) on HTTP/1.1 and
    /// h2c.
    ///
    /// # Errors
    ///
    /// Binding `127.0.0.1:0` failed.
    pub async fn backend() -> io::Result<Self> {
        Self::backend_with(ServerProtocol::Auto).await
    }

    /// Starts the scripted backend speaking `protocol`.
    ///
    /// # Errors
    ///
    /// Binding `127.0.0.1:0` failed.
    pub async fn backend_with(protocol: ServerProtocol) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let recorder = state.clone();
        Ok(Self::start(listener, addr, protocol, state, move |req| {
            crate::backend::respond(req, addr, recorder.clone())
        }))
    }

    /// The address the server listens on (`127.0.0.1` and an ephemeral port).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests reached the server so far (counted when their headers arrive).
    #[must_use]
    pub fn request_count(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// How many TCP connections the server accepted so far.
    #[must_use]
    pub fn connection_count(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// A copy of every request the backend received, in arrival order.
    ///
    /// Only the built-in [`backend`](Self::backend) records requests (it reads each body
    /// before answering); for a [`serve`](Self::serve) handler this is empty.
    #[must_use]
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.state.lock_received().clone()
    }

    /// Stops gracefully: closes the listener, asks every connection to finish (HTTP/2 GOAWAY,
    /// HTTP/1.1 close after the current response), and waits until all have ended.
    ///
    /// A connection with a request that never completes keeps this waiting: bound it with
    /// `tokio::time::timeout` when that can happen (the server is still torn down when the
    /// future is dropped).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Err(error) = (&mut self.task).await {
            tracing::debug!(%error, "test server task failed");
        }
    }

    fn start<F, Fut, B, E>(
        listener: TcpListener,
        addr: SocketAddr,
        protocol: ServerProtocol,
        state: Arc<State>,
        handler: F,
    ) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            listener,
            protocol,
            state.clone(),
            Arc::new(handler),
            shutdown_rx,
        ));
        Self {
            addr,
            state,
            shutdown,
            task,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Aborting the accept loop drops its `JoinSet`, which aborts every connection task.
        self.task.abort();
    }
}

// === impl State ===

impl State {
    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn lock_received(&self) -> std::sync::MutexGuard<'_, Vec<ReceivedRequest>> {
        // A panic while holding the lock (in a test assertion) leaves valid data behind.
        self.received.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the head of a request and returns its index for [`State::finish_body`].
    pub(crate) fn record_head(&self, parts: &http::request::Parts) -> usize {
        let mut received = self.lock_received();
        received.push(ReceivedRequest {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            body: Bytes::new(),
            trailers: None,
            body_complete: false,
            body_error: None,
            body_reset: None,
        });
        received.len() - 1
    }

    pub(crate) fn finish_body(
        &self,
        index: usize,
        body: Bytes,
        trailers: Option<HeaderMap>,
        error: Option<(String, Option<h2::Reason>)>,
    ) {
        if let Some(record) = self.lock_received().get_mut(index) {
            record.body = body;
            record.trailers = trailers;
            record.body_complete = error.is_none();
            if let Some((text, reason)) = error {
                record.body_error = Some(text);
                record.body_reset = reason;
            }
        }
    }
}

// === accept and serve ===

async fn accept_loop<F, Fut, B, E>(
    listener: TcpListener,
    protocol: ServerProtocol,
    state: Arc<State>,
    handler: Arc<F>,
    mut shutdown: watch::Receiver<bool>,
) where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
    E: Into<BoxError> + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let io = match accepted {
                    Ok((io, _peer)) => io,
                    Err(error) => {
                        // Such as EMFILE: back off briefly rather than spin.
                        tracing::debug!(%error, "test server accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                state.connections.fetch_add(1, Ordering::SeqCst);
                let _ = io.set_nodelay(true);
                let state = state.clone();
                let handler = handler.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    state.count_request();
                    handler(req)
                });
                connections.spawn(serve_connection(io, protocol, service, shutdown.clone()));
            }
            () = stopped(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn serve_connection<S, B>(
    io: TcpStream,
    protocol: ServerProtocol,
    service: S,
    shutdown: watch::Receiver<bool>,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let io = TokioIo::new(io);
    match protocol {
        ServerProtocol::Auto => {
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http2().enable_connect_protocol();
            let conn = builder.serve_connection_with_upgrades(io, service);
            drive(conn, shutdown, |conn| conn.graceful_shutdown()).await;
        }
        ServerProtocol::Http1 => {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .with_upgrades();
            drive(conn, shutdown, |conn| conn.graceful_shutdown()).await;
        }
        ServerProtocol::Http2 => {
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder.enable_connect_protocol();
            let conn = builder.serve_connection(io, service);
            drive(conn, shutdown, |conn| conn.graceful_shutdown()).await;
        }
    }
}

/// Runs a connection to its end, starting a graceful shutdown when `shutdown` turns true.
async fn drive<C, T, E>(conn: C, mut shutdown: watch::Receiver<bool>, graceful: fn(Pin<&mut C>))
where
    C: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut conn = pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopped(&mut shutdown) => {
            graceful(conn.as_mut());
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "test server connection ended with an error");
    }
}

/// Resolves once shutdown was asked for (or the server handle is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The returned guard is not `Send`; drop it here so callers' futures stay `Send`.
    let _ = shutdown.wait_for(|stop| *stop).await;
}
