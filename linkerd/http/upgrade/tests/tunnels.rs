//! Upgrade and CONNECT tunnels through the layer, over real sockets.

mod support;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Version};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};
use tokio_tungstenite::{WebSocketStream, tungstenite::protocol::Role};

async fn ws_over_http1(proxy: &Server, server_closes: bool) {
    let tcp = TcpStream::connect(proxy.addr).await.expect("connect");
    let url = format!("ws://{}/chat", proxy.addr);
    let (mut ws, rsp) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("the handshake through the proxy succeeds (the client checks the accept)");
    assert_eq!(
        rsp.status(),
        StatusCode::SWITCHING_PROTOCOLS,
        "101 reaches the client"
    );
    ws_exchange(&mut ws).await;
    if server_closes {
        ws_server_close(ws).await;
    } else {
        ws_client_close(ws).await;
    }
}

#[tokio::test]
async fn websocket_http1_to_http1() {
    let (backend, _task) = websocket_backend().await;
    let proxy = proxy(Proto::Http1, Upstream::Http1(backend)).await;
    timeout(STEP, async {
        ws_over_http1(&proxy, false).await;
        ws_over_http1(&proxy, true).await;
        timeout(STEP, proxy.tunnels.idle())
            .await
            .expect("both tunnels end after the close handshakes");
    })
    .await
    .expect("the test finishes in time");
}

#[tokio::test]
async fn websocket_http1_to_http2_extended_connect() {
    let backend = h2_tunnel_backend(true).await;
    let conn = h2_connect(backend.addr).await;
    conn.wait_connect_protocol().await;
    let proxy = proxy(Proto::Http1, Upstream::Http2(conn)).await;
    timeout(STEP, async {
        ws_over_http1(&proxy, false).await;
        ws_over_http1(&proxy, true).await;
    })
    .await
    .expect("the test finishes in time");
}

#[tokio::test]
async fn upgrade_to_http2_without_extended_connect_is_502() {
    let backend = h2_tunnel_backend(false).await;
    let conn = h2_connect(backend.addr).await;
    // A plain request first, so the backend's SETTINGS have been read.
    let warm_up = Request::get(format!("http://{}/", backend.addr))
        .body(empty())
        .unwrap();
    let rsp = timeout(STEP, conn.send(warm_up))
        .await
        .expect("in time")
        .expect("plain response");
    assert_eq!(rsp.status(), StatusCode::OK, "plain requests work");
    assert!(
        !conn.flag.is_enabled(),
        "the backend does not advertise extended CONNECT"
    );
    let proxy = proxy(Proto::Http1, Upstream::Http2(conn)).await;
    let tcp = TcpStream::connect(proxy.addr).await.expect("connect");
    let url = format!("ws://{}/chat", proxy.addr);
    let err = timeout(STEP, tokio_tungstenite::client_async(url, tcp))
        .await
        .expect("in time")
        .expect_err("the upgrade is refused");
    let tokio_tungstenite::tungstenite::Error::Http(rsp) = err else {
        panic!("expected an HTTP answer, got {err:?}");
    };
    assert_eq!(
        rsp.status(),
        StatusCode::BAD_GATEWAY,
        "no extended CONNECT: 502"
    );
    assert_eq!(
        rsp.headers()["l5d-proxy-error"],
        "upstream cannot tunnel",
        "the reason is named"
    );
}

#[tokio::test]
async fn websocket_http2_extended_connect_to_http1() {
    let (backend, _task) = websocket_backend().await;
    let proxy = proxy(Proto::Http2, Upstream::Http1(backend)).await;
    let client = h2_connect::<Empty<Bytes>>(proxy.addr).await;
    client.wait_connect_protocol().await;
    for server_closes in [false, true] {
        timeout(STEP, async {
            let req = websocket_extended_connect(proxy.addr);
            let mut rsp = client.send(req).await.expect("response");
            assert_eq!(
                rsp.status(),
                StatusCode::OK,
                "the HTTP/2 client gets 200, not 101"
            );
            assert!(
                rsp.headers().get("sec-websocket-accept").is_none(),
                "the accept value stays on the HTTP/1.1 side"
            );
            let up = hyper::upgrade::on(&mut rsp)
                .await
                .expect("the stream is upgraded");
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Client, None).await;
            ws_exchange(&mut ws).await;
            if server_closes {
                ws_server_close(ws).await;
            } else {
                ws_client_close(ws).await;
            }
        })
        .await
        .expect("the test finishes in time");
    }
}

#[tokio::test]
async fn websocket_bad_accept_from_upstream_is_502() {
    // An upstream that answers 101 with a wrong accept value.
    let backend = serve_fn(Proto::Http1, false, |_req| async move {
        let mut rsp = http::Response::new(empty());
        *rsp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        rsp.headers_mut()
            .insert("upgrade", "websocket".parse().unwrap());
        rsp.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        rsp.headers_mut().insert(
            "sec-websocket-accept",
            "bm90IHRoZSByaWdodCB2YWx1ZQ==".parse().unwrap(),
        );
        Ok(rsp)
    })
    .await;
    let proxy = proxy(Proto::Http2, Upstream::Http1(backend.addr)).await;
    let client = h2_connect::<Empty<Bytes>>(proxy.addr).await;
    client.wait_connect_protocol().await;
    let req = websocket_extended_connect(proxy.addr);
    let rsp = timeout(STEP, client.send(req))
        .await
        .expect("in time")
        .expect("response");
    assert_eq!(
        rsp.status(),
        StatusCode::BAD_GATEWAY,
        "a wrong accept is not tunnelled"
    );
    assert_eq!(proxy.tunnels.active(), 0, "no tunnel started");
}

#[tokio::test]
async fn connect_http1_half_close() {
    let backend = connect_backend(Proto::Http1).await;
    let proxy = proxy(Proto::Http1, Upstream::Http1(backend.addr)).await;
    timeout(STEP, async {
        let req = Request::builder()
            .method(Method::CONNECT)
            .uri("backend.example:443")
            .header("host", "backend.example:443")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let mut rsp = http1_send(proxy.addr, req).await.expect("response");
        assert_eq!(
            rsp.status(),
            StatusCode::OK,
            "the backend accepted the CONNECT"
        );
        assert!(
            rsp.headers().get("content-length").is_none(),
            "a 2xx CONNECT answer has no content-length"
        );
        assert_eq!(proxy.tunnels.active(), 1, "the tunnel is counted");
        let up = hyper::upgrade::on(&mut rsp).await.expect("upgraded");
        let rest = half_close_exchange(TokioIo::new(up), b"ping over CONNECT").await;
        assert_eq!(
            rest, b"<eof>",
            "the backend saw our end of stream and could still answer"
        );
        timeout(STEP, proxy.tunnels.idle())
            .await
            .expect("the tunnel ends when both directions ended");
    })
    .await
    .expect("the test finishes in time");
}

#[tokio::test]
async fn connect_http2_half_close_with_end_stream() {
    let backend = connect_backend(Proto::Http1).await;
    let proxy = proxy(Proto::Http2, Upstream::Http1(backend.addr)).await;
    let client = h2_connect::<Empty<Bytes>>(proxy.addr).await;
    timeout(STEP, async {
        let req = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri("backend.example:443")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let mut rsp = client.send(req).await.expect("response");
        assert_eq!(
            rsp.status(),
            StatusCode::OK,
            "the backend accepted the CONNECT"
        );
        let up = hyper::upgrade::on(&mut rsp).await.expect("upgraded");
        let rest = half_close_exchange(TokioIo::new(up), b"ping over h2 CONNECT").await;
        assert_eq!(
            rest, b"<eof>",
            "END_STREAM reached the backend as EOF, and its bytes came back"
        );
        timeout(STEP, proxy.tunnels.idle())
            .await
            .expect("the tunnel ends");
    })
    .await
    .expect("the test finishes in time");
}

#[tokio::test]
async fn connect_to_http2_backend() {
    let backend = h2_tunnel_backend(true).await;
    let conn = h2_connect(backend.addr).await;
    conn.wait_connect_protocol().await;
    let proxy = proxy(Proto::Http1, Upstream::Http2(conn)).await;
    timeout(STEP, async {
        let req = Request::builder()
            .method(Method::CONNECT)
            .uri("backend.example:443")
            .header("host", "backend.example:443")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let mut rsp = http1_send(proxy.addr, req).await.expect("response");
        assert_eq!(
            rsp.status(),
            StatusCode::OK,
            "the HTTP/2 backend accepted the CONNECT"
        );
        let up = hyper::upgrade::on(&mut rsp).await.expect("upgraded");
        let rest = half_close_exchange(TokioIo::new(up), b"ping").await;
        assert_eq!(rest, b"<eof>", "half-close crosses HTTP/1.1 -> HTTP/2");
    })
    .await
    .expect("the test finishes in time");
}

#[tokio::test]
async fn connect_refused_by_backend_is_an_ordinary_response() {
    let backend = serve_fn(Proto::Http1, false, |_req| async move {
        let mut rsp =
            http::Response::new(boxed(http_body_util::Full::new(Bytes::from_static(b"no"))));
        *rsp.status_mut() = StatusCode::FORBIDDEN;
        Ok(rsp)
    })
    .await;
    let proxy = proxy(Proto::Http1, Upstream::Http1(backend.addr)).await;
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri("backend.example:443")
        .header("host", "backend.example:443")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = timeout(STEP, http1_send(proxy.addr, req))
        .await
        .expect("in time")
        .expect("response");
    assert_eq!(
        rsp.status(),
        StatusCode::FORBIDDEN,
        "the backend's refusal is forwarded"
    );
    assert_eq!(proxy.tunnels.active(), 0, "no tunnel");
}

#[tokio::test]
async fn drain_closes_open_tunnels() {
    let backend = connect_backend(Proto::Http1).await;
    let proxy = proxy(Proto::Http1, Upstream::Http1(backend.addr)).await;
    timeout(STEP, async {
        let req = Request::builder()
            .method(Method::CONNECT)
            .uri("backend.example:443")
            .header("host", "backend.example:443")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let mut rsp = http1_send(proxy.addr, req).await.expect("response");
        let mut io = TokioIo::new(hyper::upgrade::on(&mut rsp).await.expect("upgraded"));
        io.write_all(b"x").await.expect("write");
        let mut one = [0u8; 1];
        io.read_exact(&mut one).await.expect("echo");
        assert_eq!(proxy.tunnels.active(), 1, "one open tunnel");

        let closed = proxy
            .tunnels
            .drain(std::time::Duration::from_millis(100))
            .await;
        assert_eq!(closed, 1, "the open tunnel had to be closed");
        let mut rest = Vec::new();
        let res = io.read_to_end(&mut rest).await;
        assert!(
            res.is_err() || rest.is_empty(),
            "the client's side is closed, got {res:?} {rest:?}"
        );
        timeout(STEP, proxy.tunnels.idle())
            .await
            .expect("no tunnel left");
    })
    .await
    .expect("the test finishes in time");
}

#[tokio::test]
async fn a_bridged_upgrade_declined_with_2xx_is_502() {
    // The HTTP/1 upstream answers the upgrade with an ordinary 200: to an HTTP/2 client a 2xx
    // would say its extended CONNECT succeeded.
    let backend = serve_fn(Proto::Http1, false, |_req| async move {
        Ok(http::Response::new(boxed(http_body_util::Full::new(
            Bytes::from_static(b"nope!"),
        ))))
    })
    .await;
    let proxy = proxy(Proto::Http2, Upstream::Http1(backend.addr)).await;
    let client = h2_connect::<Empty<Bytes>>(proxy.addr).await;
    client.wait_connect_protocol().await;
    let req = websocket_extended_connect(proxy.addr);
    let rsp = timeout(STEP, client.send(req))
        .await
        .expect("in time")
        .expect("a response, not a reset");
    assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(rsp.headers()["l5d-proxy-error"], "upstream cannot tunnel");
    assert_eq!(proxy.tunnels.active(), 0, "no tunnel");
}

/// An HTTP/2 client's extended CONNECT (RFC 8441) for a WebSocket at `/chat` on `addr`.
fn websocket_extended_connect(addr: std::net::SocketAddr) -> Request<Empty<Bytes>> {
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .version(Version::HTTP_2)
        .uri(format!("http://{addr}/chat"))
        .header("sec-websocket-version", "13")
        .body(Empty::<Bytes>::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    req
}
