//! One endpoint's HTTP/2 connection, over hyper's `client::conn` API.
//!
//! Every request to the endpoint shares one connection, whatever its authority (HTTP/2
//! multiplexes them; the request keeps its `:authority`). A new connection is dialled, by one
//! request while the others wait for it, when there is none or the last one has closed.

use super::h1pool::SendError;
use crate::BoxBody;
use http::{Request, Response};
use hyper::{
    body::Incoming,
    client::conn::http2::{self, SendRequest},
};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use linkerd_http_upgrade::{ConnectProtocolFlag, WatchConnectProtocol};
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

/// One address's HTTP/2 connection.
#[derive(Debug)]
pub(crate) struct H2Conn {
    addr: SocketAddr,
    connect_timeout: Duration,
    current: Mutex<Option<SendRequest<BoxBody>>>,
    /// Held while dialling, so concurrent requests share one new connection.
    dialling: tokio::sync::Mutex<()>,
    /// Whether the current connection's upstream advertises extended CONNECT (RFC 8441).
    tunnels: ConnectProtocolFlag,
}

// === impl H2Conn ===

impl H2Conn {
    pub(crate) fn new(addr: SocketAddr, connect_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            addr,
            connect_timeout,
            current: Mutex::new(None),
            dialling: tokio::sync::Mutex::new(()),
            tunnels: ConnectProtocolFlag::new(),
        })
    }

    /// Whether a tunnel (CONNECT) can be sent on the endpoint's connection: dials one when
    /// there is none, and waits a little for the upstream's first SETTINGS (which follow its
    /// handshake) to say whether it takes extended CONNECT.
    pub(crate) async fn tunnels_enabled(&self) -> Result<bool, SendError> {
        self.sender().await?;
        for _ in 0..TUNNEL_SETTINGS_WAITS {
            if self.tunnels.is_enabled() {
                return Ok(true);
            }
            tokio::time::sleep(TUNNEL_SETTINGS_WAIT).await;
        }
        Ok(self.tunnels.is_enabled())
    }

    /// Sends `req` on the endpoint's connection (dialling one when needed). A request the
    /// connection did not take (it is closing, or going away after a GOAWAY) is sent once
    /// more on a new connection: it never reached the upstream.
    pub(crate) async fn send(
        self: Arc<Self>,
        mut req: Request<BoxBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let mut retried = false;
        loop {
            let mut tx = self.sender().await?;
            let result = match tx.ready().await {
                Ok(()) => tx.try_send_request(req).await,
                Err(error) => {
                    self.forget();
                    if retried {
                        return Err(SendError::Http(error));
                    }
                    retried = true;
                    continue;
                }
            };
            match result {
                Ok(rsp) => return Ok(rsp),
                Err(mut e) => {
                    if tx.is_closed() {
                        self.forget();
                    }
                    match e.take_message() {
                        Some(unsent) if !retried => {
                            self.forget();
                            retried = true;
                            req = unsent;
                        }
                        _ => return Err(SendError::Http(e.into_error())),
                    }
                }
            }
        }
    }

    /// Drops the current connection (it closed, or the upstream is shutting it down): the next
    /// request dials a new one. Streams in flight on it finish undisturbed.
    pub(crate) fn forget(&self) {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    fn open(&self) -> Option<SendRequest<BoxBody>> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.as_ref().filter(|tx| !tx.is_closed()).cloned()
    }

    async fn sender(&self) -> Result<SendRequest<BoxBody>, SendError> {
        if let Some(tx) = self.open() {
            return Ok(tx);
        }
        let _dialling = self.dialling.lock().await;
        // Another request may have dialled while this one waited.
        if let Some(tx) = self.open() {
            return Ok(tx);
        }
        // Boxed: the dialling future is large and rare (see the HTTP/1 pool).
        let tx = Box::pin(self.connect()).await?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx.clone());
        Ok(tx)
    }

    async fn connect(&self) -> Result<SendRequest<BoxBody>, SendError> {
        let tunnels = self.tunnels.clone();
        tunnels.set(false);
        super::h1pool::open(self.addr, self.connect_timeout, |io| async move {
            let (tx, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                // As much as the proxy's server takes from clients (hyper's 16 KiB default
                // failed larger answers that HTTP/1 upstreams could send).
                .max_header_list_size(MAX_HEADER_LIST_SIZE)
                .handshake(io)
                .await?;
            // Driven through the watcher: it records the upstream's extended CONNECT setting.
            Ok((tx, WatchConnectProtocol::new(conn, tunnels)))
        })
        .await
        // The connection is shared; its streams end on their own (no task to abort).
        .map(|(tx, _task)| tx)
    }
}

/// How long a tunnel waits, at most, for a new connection's SETTINGS to say whether the
/// upstream takes extended CONNECT (`TUNNEL_SETTINGS_WAITS` x `TUNNEL_SETTINGS_WAIT`).
const TUNNEL_SETTINGS_WAITS: u32 = 20;
const TUNNEL_SETTINGS_WAIT: Duration = Duration::from_millis(5);

/// `SETTINGS_MAX_HEADER_LIST_SIZE` for upstream responses: the server side's limit
/// (`linkerd_http_h2`'s defaults, 64 KiB).
const MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    use std::sync::atomic::{AtomicUsize, Ordering};

    type Conns = Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>;

    /// An h2c server answering with the request's authority; counts accepted connections and
    /// keeps their tasks (aborting one closes that connection).
    async fn server() -> (SocketAddr, Arc<AtomicUsize>, Conns) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let conns = Conns::default();
        let (count, tasks) = (accepted.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((io, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let task = tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        let authority = req.uri().authority().map(ToString::to_string);
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(
                            authority.unwrap_or_default(),
                        ))))
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(io), svc)
                        .await;
                });
                tasks.lock().expect("conns").push(task);
            }
        });
        (addr, accepted, conns)
    }

    fn request(authority: &str) -> Request<BoxBody> {
        let mut req = Request::new(
            Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *req.uri_mut() = format!("http://{authority}/").parse().expect("uri");
        *req.version_mut() = http::Version::HTTP_2;
        req
    }

    #[tokio::test]
    async fn one_connection_for_every_authority_and_concurrent_request() {
        let (addr, accepted, _conns) = server().await;
        let conn = H2Conn::new(addr, Duration::from_secs(1));
        let mut tasks = Vec::new();
        for i in 0..40 {
            let conn = conn.clone();
            tasks.push(tokio::spawn(async move {
                let authority = format!("host-{}.test", i % 7);
                let rsp = conn.send(request(&authority)).await.expect("response");
                let body = rsp.into_body().collect().await.expect("body").to_bytes();
                assert_eq!(body, authority.as_bytes(), "the authority travels as sent");
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection, shared by all authorities"
        );
    }

    #[tokio::test]
    async fn a_closed_connection_is_replaced() {
        let (addr, accepted, conns) = server().await;
        let conn = H2Conn::new(addr, Duration::from_secs(1));
        conn.clone().send(request("a")).await.expect("response");
        for task in conns.lock().expect("conns").drain(..) {
            task.abort();
        }
        // The client notices the closed connection.
        for _ in 0..500 {
            if conn.open().is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            conn.open().is_none(),
            "the closed connection is not offered"
        );
        let rsp = conn.clone().send(request("b")).await.expect("response");
        let body = rsp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body, "b");
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "a new connection");
    }

    #[tokio::test]
    async fn refused_connect_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let conn = H2Conn::new(addr, Duration::from_secs(1));
        match conn.send(request("x")).await {
            Err(SendError::Connect(e)) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
            }
            other => panic!("expected a connect error, got {other:?}"),
        }
    }
}
