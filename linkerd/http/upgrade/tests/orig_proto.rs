//! Orig-proto: HTTP/1 requests carried over HTTP/2 between two proxy instances.
//!
//! client --HTTP/1--> A [Upgrade -> OrigProtoUpgrade -> h2 client]
//!        --HTTP/2--> B [OrigProtoDowngrade -> HTTP/1 client] --HTTP/1--> application

mod support;

use bytes::Bytes;
use futures_util::stream;
use http::{Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use linkerd_http_test_util::{ServerProtocol, TestServer};
use linkerd_http_upgrade::{
    L5D_ORIG_PROTO, OrigProtoDowngrade, OrigProtoUpgrade, Tunnels, Upgrade,
};
use std::convert::Infallible;
use support::*;
use tokio::time::timeout;

struct Pair {
    app: TestServer,
    a: Server,
    _b: Server,
}

async fn pair() -> Pair {
    let app = TestServer::backend_with(ServerProtocol::Http1)
        .await
        .expect("bind");
    let app_addr = app.addr();
    let b = serve(
        Proto::Http2,
        false,
        OrigProtoDowngrade::new(tower::service_fn(move |req: Request<Incoming>| {
            http1_send(app_addr, req)
        })),
    )
    .await;
    let conn = h2_connect::<Body>(b.addr).await;
    let a = serve(
        Proto::Http1,
        false,
        Upgrade::new(
            OrigProtoUpgrade::new(tower::service_fn(move |req: Request<Incoming>| {
                let conn = conn.clone();
                async move { conn.send(req.map(boxed)).await }
            })),
            Tunnels::new(),
        ),
    )
    .await;
    Pair { app, a, _b: b }
}

async fn send<B>(pair: &Pair, req: Request<B>) -> (http::Response<Body>, Bytes)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    timeout(STEP, async {
        let rsp = http1_send(pair.a.addr, req).await.expect("response");
        let (parts, body) = rsp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        (http::Response::from_parts(parts, empty()), body)
    })
    .await
    .expect("in time")
}

fn assert_no_leak(pair: &Pair, rsp: &http::Response<Body>) {
    assert!(
        rsp.headers().get(L5D_ORIG_PROTO).is_none(),
        "l5d-orig-proto reached the client: {:?}",
        rsp.headers()
    );
    for seen in pair.app.requests() {
        assert!(
            seen.headers.get(L5D_ORIG_PROTO).is_none(),
            "l5d-orig-proto reached the application: {:?}",
            seen.headers
        );
    }
}

#[tokio::test]
async fn content_length_body_round_trip() {
    let pair = pair().await;
    let req = Request::post("/cl")
        .header("host", "app.example")
        .body(Full::new(Bytes::from_static(b"hello orig-proto")))
        .unwrap();
    let (rsp, body) = send(&pair, req).await;
    assert_eq!(rsp.status(), StatusCode::OK, "proxied");
    assert_eq!(body, "hello orig-proto", "the body is echoed");
    assert_eq!(rsp.version(), Version::HTTP_11, "the client gets HTTP/1.1");
    let seen = pair.app.requests();
    assert_eq!(
        seen[0].version,
        Version::HTTP_11,
        "the application gets HTTP/1.1"
    );
    assert_eq!(seen[0].uri, "/cl", "origin-form reaches the application");
    assert_eq!(
        seen[0].headers["content-length"], "16",
        "the length is kept"
    );
    assert_eq!(
        rsp.headers()["x-backend-version"],
        "HTTP/1.1",
        "the application answered over HTTP/1.1"
    );
    assert_no_leak(&pair, &rsp);
}

#[tokio::test]
async fn chunked_body_round_trip() {
    let pair = pair().await;
    let chunks = stream::iter(
        ["one ", "two ", "three"].map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from(c)))),
    );
    let req = Request::post("/chunked")
        .header("host", "app.example")
        .body(StreamBody::new(chunks))
        .unwrap();
    let (rsp, body) = send(&pair, req).await;
    assert_eq!(rsp.status(), StatusCode::OK, "proxied");
    assert_eq!(body, "one two three", "the chunked body is echoed");
    let seen = pair.app.requests();
    assert_eq!(
        seen[0]
            .headers
            .get("transfer-encoding")
            .map(|v| v.as_bytes()),
        Some(&b"chunked"[..]),
        "a body of unknown length reaches the application chunked"
    );
    assert!(seen[0].body_complete, "the application read the whole body");
    assert_no_leak(&pair, &rsp);
}

#[tokio::test]
async fn head_and_bodiless_statuses() {
    let pair = pair().await;
    let req = Request::builder()
        .method(Method::HEAD)
        .uri("/head")
        .header("host", "app.example")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (rsp, body) = send(&pair, req).await;
    assert_eq!(rsp.status(), StatusCode::OK, "HEAD is proxied");
    assert!(body.is_empty(), "a HEAD response has no body");
    assert_no_leak(&pair, &rsp);

    for status in ["204", "304"] {
        let req = Request::get("/status")
            .header("host", "app.example")
            .header("x-test-status", status)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let (rsp, body) = send(&pair, req).await;
        assert_eq!(rsp.status().as_str(), status, "the status is proxied");
        assert!(body.is_empty(), "a {status} response has no body");
        assert_no_leak(&pair, &rsp);
    }
    let methods: Vec<_> = pair
        .app
        .requests()
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(
        methods,
        [Method::HEAD, Method::GET, Method::GET],
        "every request arrived once"
    );
}

#[tokio::test]
async fn http10_and_absolute_form_are_restored() {
    let pair = pair().await;
    let head = timeout(
        STEP,
        raw_request(
            pair.a.addr,
            b"GET /ten HTTP/1.0\r\nHost: app.example\r\n\r\n",
        ),
    )
    .await
    .expect("in time");
    assert!(
        head.starts_with("HTTP/1.0 200"),
        "an HTTP/1.0 client gets HTTP/1.0: {head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("l5d-orig-proto"),
        "no leak: {head}"
    );

    let head = timeout(
        STEP,
        raw_request(
            pair.a.addr,
            b"GET http://app.example/abs HTTP/1.1\r\nHost: app.example\r\n\r\n",
        ),
    )
    .await
    .expect("in time");
    assert!(head.starts_with("HTTP/1.1 200"), "proxied: {head}");

    let seen = pair.app.requests();
    assert_eq!(
        seen[0].version,
        Version::HTTP_10,
        "the application gets HTTP/1.0"
    );
    assert_eq!(seen[0].uri, "/ten", "origin-form");
    assert_eq!(seen[1].version, Version::HTTP_11, "HTTP/1.1");
    assert_eq!(
        seen[1].uri, "http://app.example/abs",
        "absolute-form is restored for the application"
    );
    for r in &seen {
        assert!(
            r.headers.get(L5D_ORIG_PROTO).is_none(),
            "no leak: {:?}",
            r.headers
        );
    }
}

#[tokio::test]
async fn http2_reset_becomes_502() {
    let pair = pair().await;
    // The application drops the connection before answering: B fails the stream, and A's
    // HTTP/1 client must get a 502 rather than a dropped connection.
    let req = Request::get("/reset")
        .header("host", "app.example")
        .header("x-test-reset-before-headers", "CANCEL")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (rsp, _) = send(&pair, req).await;
    assert_eq!(
        rsp.status(),
        StatusCode::BAD_GATEWAY,
        "an HTTP/2 reset is a 502 for HTTP/1"
    );
    let reason = rsp.headers()["l5d-proxy-error"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.starts_with("upstream reset ("),
        "the reason is named: {reason}"
    );
}
