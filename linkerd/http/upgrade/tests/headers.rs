//! Hop-by-hop headers, h2c, authority normalisation and the 400 answers, over real sockets.

mod support;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Version};
use http_body_util::Empty;
use linkerd_http_test_util::{ServerProtocol, TestServer};
use support::*;
use tokio::time::timeout;

#[tokio::test]
async fn hop_by_hop_request_headers_are_stripped_http1_to_http1() {
    let backend = TestServer::backend_with(ServerProtocol::Http1)
        .await
        .expect("bind");
    let proxy = proxy(Proto::Http1, Upstream::Http1(backend.addr())).await;
    let req = Request::get("/hop")
        .header("host", "svc.example")
        .header("connection", "close, x-foo")
        .header("x-foo", "named by connection")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers, deflate")
        .header("x-keep", "end-to-end")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = timeout(STEP, http1_send(proxy.addr, req))
        .await
        .expect("in time")
        .expect("response");
    assert_eq!(rsp.status(), StatusCode::OK, "the request went through");

    let seen = backend.requests();
    assert_eq!(seen.len(), 1, "one request reached the backend");
    let h = &seen[0].headers;
    for name in ["x-foo", "keep-alive", "proxy-connection", "connection"] {
        assert!(
            h.get(name).is_none(),
            "{name} must not reach the backend: {h:?}"
        );
    }
    assert_eq!(h["te"], "trailers", "te is reduced to trailers");
    assert_eq!(h["x-keep"], "end-to-end", "end-to-end headers are kept");
    assert_eq!(h["host"], "svc.example", "host is kept");
    assert_eq!(
        seen[0].uri, "/hop",
        "origin-form reaches the HTTP/1 backend"
    );
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_stripped() {
    let backend = serve_fn(Proto::Http1, false, |_req| async move {
        let mut rsp = http::Response::new(empty());
        let h = rsp.headers_mut();
        h.insert("connection", "x-bar".parse().unwrap());
        h.insert("x-bar", "named by connection".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-connection", "close".parse().unwrap());
        h.insert("x-keep", "end-to-end".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        Ok(rsp)
    })
    .await;
    let proxy = proxy(Proto::Http1, Upstream::Http1(backend.addr)).await;
    let req = Request::get("/")
        .header("host", "svc.example")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = timeout(STEP, http1_send(proxy.addr, req))
        .await
        .expect("in time")
        .expect("response");
    let h = rsp.headers();
    // TE is a request header: kept as `te: trailers` on requests (HTTP/2, gRPC), never on
    // an answer.
    for name in ["x-bar", "keep-alive", "proxy-connection", "te"] {
        assert!(
            h.get(name).is_none(),
            "{name} must not reach the client: {h:?}"
        );
    }
    assert_eq!(h["x-keep"], "end-to-end", "end-to-end headers are kept");
}

#[tokio::test]
async fn h2c_upgrade_is_forwarded_as_a_plain_request() {
    let backend = TestServer::backend_with(ServerProtocol::Http1)
        .await
        .expect("bind");
    let proxy = proxy(Proto::Http1, Upstream::Http1(backend.addr())).await;
    let req = Request::get("/h2c")
        .header("host", "svc.example")
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("upgrade", "h2c")
        .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = timeout(STEP, http1_send(proxy.addr, req))
        .await
        .expect("in time")
        .expect("response");
    assert_eq!(rsp.status(), StatusCode::OK, "a plain answer, not 101");
    assert_eq!(proxy.tunnels.active(), 0, "no tunnel");
    let seen = backend.requests();
    let h = &seen[0].headers;
    for name in ["upgrade", "http2-settings", "connection"] {
        assert!(
            h.get(name).is_none(),
            "{name} must not reach the backend: {h:?}"
        );
    }
}

#[tokio::test]
async fn absolute_form_keeps_its_authority_and_replaces_host() {
    let backend = TestServer::backend_with(ServerProtocol::Http1)
        .await
        .expect("bind");
    let proxy = proxy(Proto::Http1, Upstream::Http1(backend.addr())).await;
    let head = timeout(
        STEP,
        raw_request(
            proxy.addr,
            b"GET http://abs.example:8080/p?q HTTP/1.1\r\nHost: other.example\r\n\r\n",
        ),
    )
    .await
    .expect("in time");
    assert!(head.starts_with("HTTP/1.1 200"), "proxied: {head}");
    let seen = backend.requests();
    assert_eq!(
        seen[0].headers["host"], "abs.example:8080",
        "Host is replaced by the absolute-form authority (RFC 9112 section 3.2.2)"
    );
    assert_eq!(
        seen[0].uri, "http://abs.example:8080/p?q",
        "an absolute-form request stays absolute-form"
    );
}

#[tokio::test]
async fn unproxiable_targets_get_400_with_a_reason() {
    let backend = TestServer::backend_with(ServerProtocol::Http1)
        .await
        .expect("bind");
    let proxy = proxy(Proto::Http1, Upstream::Http1(backend.addr())).await;
    let cases: [(&[u8], &str); 5] = [
        (
            b"GET example.com:80 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            "bad request: authority-form target is only valid for CONNECT",
        ),
        (
            b"CONNECT /path HTTP/1.1\r\nHost: example.com\r\n\r\n",
            "bad request: CONNECT target must be authority-form (host:port)",
        ),
        (
            b"CONNECT http://example.com:443/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
            "bad request: CONNECT target must be authority-form (host:port)",
        ),
        (b"GET / HTTP/1.1\r\n\r\n", "bad request: missing host"),
        (
            b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
            "bad request: multiple host headers",
        ),
    ];
    for (raw, reason) in cases {
        let head = timeout(STEP, raw_request(proxy.addr, raw))
            .await
            .expect("in time");
        assert!(
            head.starts_with("HTTP/1.1 400"),
            "{:?} is answered 400, got {head}",
            String::from_utf8_lossy(raw)
        );
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("l5d-proxy-error: {reason}").to_ascii_lowercase()),
            "{:?} names its reason {reason:?}, got {head}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(
        backend.request_count(),
        0,
        "no rejected request reached the backend"
    );
}

#[tokio::test]
async fn http2_connect_without_port_gets_400() {
    let backend = connect_backend(Proto::Http1).await;
    let proxy = proxy(Proto::Http2, Upstream::Http1(backend.addr)).await;
    let client = h2_connect::<Empty<Bytes>>(proxy.addr).await;
    let req = Request::builder()
        .method(Method::CONNECT)
        .version(Version::HTTP_2)
        .uri("backend.example")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = timeout(STEP, client.send(req))
        .await
        .expect("in time")
        .expect("response");
    assert_eq!(
        rsp.status(),
        StatusCode::BAD_REQUEST,
        "CONNECT needs host:port"
    );
    assert_eq!(
        rsp.headers()["l5d-proxy-error"],
        "bad request: CONNECT target must have a port",
        "the reason is named"
    );
}
