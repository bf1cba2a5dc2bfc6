//! A proxy-like pipeline for the tests: a hyper server -> the layer under test -> a hyper
//! client to the backend, plus WebSocket and CONNECT backends and raw clients.
#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    service::TowerToHyperService,
};
use linkerd_http_upgrade::{
    ConnectProtocolFlag, ExtendedConnect, Tunnels, Upgrade, WatchConnectProtocol, to_origin_form,
};
use std::{convert::Infallible, future::Future, net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_tungstenite::{WebSocketStream, tungstenite::Message};

pub use linkerd_http_classify::BoxError;

/// The response body every pipeline service answers with.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A generous bound for every test step over real sockets.
pub const STEP: Duration = Duration::from_secs(10);

/// Which protocol a server or client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
}

/// A running server; its accept loop is aborted when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub tunnels: Tunnels,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

pub fn empty() -> Body {
    boxed(Empty::<Bytes>::new())
}

/// Serves `svc` on `127.0.0.1:0`: HTTP/1.1 with upgrades, or HTTP/2 with extended CONNECT
/// (when `connect_protocol`).
pub async fn serve<S>(proto: Proto, connect_protocol: bool, svc: S) -> Server
where
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                break;
            };
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let io = TokioIo::new(tcp);
                let res = match proto {
                    Proto::Http1 => {
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, svc)
                            .with_upgrades()
                            .await
                    }
                    Proto::Http2 => {
                        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                        if connect_protocol {
                            b.enable_connect_protocol();
                        }
                        b.serve_connection(io, svc).await
                    }
                };
                if let Err(error) = res {
                    tracing::debug!(%error, "test server connection failed");
                }
            });
        }
    });
    Server {
        addr,
        tunnels: Tunnels::new(),
        task,
    }
}

/// Serves a closure.
pub async fn serve_fn<F, Fut>(proto: Proto, connect_protocol: bool, f: F) -> Server
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, BoxError>> + Send + 'static,
{
    serve(proto, connect_protocol, tower::service_fn(f)).await
}

/// Sends `req` to `addr` over a fresh HTTP/1.1 connection (driven with upgrades).
pub async fn http1_send<B>(
    addr: SocketAddr,
    mut req: Request<B>,
) -> Result<Response<Body>, BoxError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let tcp = TcpStream::connect(addr).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    to_origin_form(&mut req);
    if req.version() == Version::HTTP_2 {
        *req.version_mut() = Version::HTTP_11;
    }
    let rsp = send.send_request(req).await?;
    Ok(rsp.map(boxed))
}

/// One HTTP/2 client connection whose extended CONNECT setting is tracked.
pub struct H2Conn<B> {
    pub send: hyper::client::conn::http2::SendRequest<B>,
    pub flag: ConnectProtocolFlag,
}

impl<B> Clone for H2Conn<B> {
    fn clone(&self) -> Self {
        Self {
            send: self.send.clone(),
            flag: self.flag.clone(),
        }
    }
}

pub async fn h2_connect<B>(addr: SocketAddr) -> H2Conn<B>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    let flag = ConnectProtocolFlag::new();
    tokio::spawn(WatchConnectProtocol::new(conn, flag.clone()));
    H2Conn { send, flag }
}

impl<B> H2Conn<B>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// Waits (bounded) until the server's SETTINGS advertised extended CONNECT.
    pub async fn wait_connect_protocol(&self) {
        for _ in 0..500 {
            if self.flag.is_enabled() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the server never advertised extended CONNECT");
    }

    pub async fn send(&self, req: Request<B>) -> Result<Response<Body>, BoxError> {
        let mut send = self.send.clone();
        send.ready().await?;
        Ok(send.send_request(req).await?.map(boxed))
    }
}

/// The upstream the proxy pipeline forwards to.
#[derive(Clone)]
pub enum Upstream {
    Http1(SocketAddr),
    Http2(H2Conn<Body>),
}

/// The proxy pipeline: a hyper server (`client` protocol) -> `Upgrade` -> a hyper client to
/// `upstream` (through `ExtendedConnect` for HTTP/2 upstreams).
pub async fn proxy(client: Proto, upstream: Upstream) -> Server {
    let tunnels = Tunnels::new();
    let inner = tower::service_fn(move |req: Request<Incoming>| {
        let upstream = upstream.clone();
        async move {
            match upstream {
                Upstream::Http1(addr) => http1_send(addr, req).await,
                Upstream::Http2(conn) => {
                    let flag = conn.flag.clone();
                    let svc = tower::service_fn(move |req: Request<Incoming>| {
                        let conn = conn.clone();
                        async move { conn.send(req.map(boxed)).await }
                    });
                    tower::ServiceExt::oneshot(ExtendedConnect::new(svc, flag), req).await
                }
            }
        }
    });
    let mut server = serve(client, true, Upgrade::new(inner, tunnels.clone())).await;
    server.tunnels = tunnels;
    server
}

// === backends ===

/// A WebSocket echo backend (tokio-tungstenite, which validates the key): echoes text and
/// binary messages; on the text `server-close` it starts the close handshake itself.
pub async fn websocket_backend() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                break;
            };
            tokio::spawn(async move {
                match tokio_tungstenite::accept_async(tcp).await {
                    Ok(ws) => ws_echo(ws).await,
                    Err(error) => tracing::debug!(%error, "websocket handshake failed"),
                }
            });
        }
    });
    (addr, task)
}

/// Echoes a WebSocket until it closes.
pub async fn ws_echo<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>) {
    for _ in 0..1000 {
        let Some(Ok(msg)) = ws.next().await else {
            return;
        };
        match msg {
            Message::Text(t) if t.as_str() == "server-close" => {
                let _ = ws.close(None).await;
            }
            Message::Text(_) | Message::Binary(_) => {
                let echoed = ws.send(msg).await;
                if echoed.is_err() {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// An HTTP/2 backend (extended CONNECT enabled when `connect_protocol`) that answers a
/// `websocket` extended CONNECT with 200 and echoes over it, and a plain CONNECT with 200
/// and [`connect_echo`].
pub async fn h2_tunnel_backend(connect_protocol: bool) -> Server {
    serve_fn(
        Proto::Http2,
        connect_protocol,
        |mut req: Request<Incoming>| async move {
            if req.method() != http::Method::CONNECT {
                return Ok(Response::new(boxed(http_body_util::Full::new(
                    Bytes::from_static(b"plain"),
                ))));
            }
            let ws = req
                .extensions()
                .get::<hyper::ext::Protocol>()
                .is_some_and(|p| p.as_str() == "websocket");
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(up) = on.await else { return };
                let io = TokioIo::new(up);
                if ws {
                    let ws = WebSocketStream::from_raw_socket(
                        io,
                        tokio_tungstenite::tungstenite::protocol::Role::Server,
                        None,
                    )
                    .await;
                    ws_echo(ws).await;
                } else {
                    connect_echo(io).await;
                }
            });
            Ok(Response::new(empty()))
        },
    )
    .await
}

/// A backend answering CONNECT with 200, then echoing bytes; after reading end of stream it
/// writes `<eof>` and closes its write side (so a half-closed client still gets bytes).
pub async fn connect_backend(proto: Proto) -> Server {
    serve_fn(proto, true, |mut req: Request<Incoming>| async move {
        if req.method() != http::Method::CONNECT {
            let mut rsp = Response::new(empty());
            *rsp.status_mut() = StatusCode::NOT_FOUND;
            return Ok(rsp);
        }
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                connect_echo(TokioIo::new(up)).await;
            }
        });
        Ok(Response::new(empty()))
    })
    .await
}

pub async fn connect_echo<S: AsyncRead + AsyncWrite + Unpin>(io: S) {
    let (mut r, mut w) = tokio::io::split(io);
    let mut buf = [0u8; 4096];
    for _ in 0..10_000 {
        match r.read(&mut buf).await {
            Ok(0) => {
                let _ = w.write_all(b"<eof>").await;
                let _ = w.shutdown().await;
                return;
            }
            Ok(n) => {
                if w.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Exchanges text and binary messages with an echo server.
pub async fn ws_exchange<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) {
    ws.send(Message::text("hello")).await.expect("send text");
    let got = ws.next().await.expect("a reply").expect("a message");
    assert_eq!(got, Message::text("hello"), "text is echoed");
    let bin = vec![0u8, 1, 2, 254, 255];
    ws.send(Message::binary(bin.clone()))
        .await
        .expect("send binary");
    let got = ws.next().await.expect("a reply").expect("a message");
    assert_eq!(got, Message::binary(bin), "binary is echoed");
}

/// The client closes: it gets the server's close frame back, then the end of the stream.
pub async fn ws_client_close<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>) {
    ws.close(None).await.expect("send close");
    let got = ws.next().await.expect("close reply").expect("a message");
    assert!(
        got.is_close(),
        "the server answers the close handshake, got {got:?}"
    );
    assert!(
        ws.next().await.is_none(),
        "the stream ends after the close handshake"
    );
}

/// The server closes: the client sees its close frame and answers.
pub async fn ws_server_close<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>) {
    ws.send(Message::text("server-close")).await.expect("send");
    let got = ws.next().await.expect("close frame").expect("a message");
    assert!(
        got.is_close(),
        "the server starts the close handshake, got {got:?}"
    );
    // Reading on flushes tungstenite's automatic close reply; then the stream ends.
    for _ in 0..10 {
        match ws.next().await {
            None | Some(Err(_)) => return,
            Some(Ok(_)) => {}
        }
    }
    panic!("the stream did not end after the close handshake");
}

/// Writes `data`, reads the echo, half-closes, and reads until the end: returns what came
/// after the echo.
pub async fn half_close_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    data: &[u8],
) -> Vec<u8> {
    io.write_all(data).await.expect("write");
    let mut echo = vec![0u8; data.len()];
    io.read_exact(&mut echo).await.expect("read echo");
    assert_eq!(echo, data, "bytes are echoed through the tunnel");
    io.shutdown().await.expect("half-close");
    let mut rest = Vec::new();
    io.read_to_end(&mut rest)
        .await
        .expect("read after half-close");
    rest
}

/// Sends raw bytes and reads the response head (bounded): status and headers text.
pub async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..100 {
        let n = tcp.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn ok<T>(t: T) -> Result<T, Infallible> {
    Ok(t)
}
