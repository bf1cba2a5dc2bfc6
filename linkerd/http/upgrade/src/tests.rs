//! In-memory tests of the services' request and response rewriting.

use crate::{
    ConnectProtocolFlag, ExtendedConnect, L5D_ORIG_PROTO, OrigProtoDowngrade, OrigProtoUpgrade,
    Tunnels, Upgrade, websocket_accept,
};
use http::{Method, Request, Response, StatusCode, Version};
use linkerd_http_classify::Protocol;
use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
};
use tower::{ServiceExt, service_fn};

type Seen = Arc<Mutex<Vec<Request<()>>>>;

/// An inner service that records each request and answers `status`.
fn recorder(
    status: StatusCode,
) -> (
    Seen,
    impl tower::Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone,
) {
    let seen = Seen::default();
    let rec = seen.clone();
    let svc = service_fn(move |req: Request<()>| {
        rec.lock().unwrap().push(req);
        let mut rsp = Response::new(String::new());
        *rsp.status_mut() = status;
        async move { Ok::<_, Infallible>(rsp) }
    });
    (seen, svc)
}

#[tokio::test]
async fn grpc_bad_request_is_trailers_only_invalid_argument() {
    let (seen, inner) = recorder(StatusCode::OK);
    let mut req = Request::get("example.com:80")
        .header("host", "example.com")
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    req.extensions_mut().insert(Protocol::Grpc);
    let rsp = Upgrade::new(inner, Tunnels::new())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(rsp.status(), StatusCode::OK, "gRPC errors are HTTP 200");
    assert_eq!(rsp.headers()["grpc-status"], "3", "INVALID_ARGUMENT");
    assert!(
        seen.lock().unwrap().is_empty(),
        "the inner service is not called"
    );
}

#[tokio::test]
async fn connect_without_an_upgradable_connection_is_500() {
    let (seen, inner) = recorder(StatusCode::OK);
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri("example.com:443")
        .body(())
        .unwrap();
    let rsp = Upgrade::new(inner, Tunnels::new())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(
        rsp.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "a CONNECT cannot be tunnelled without hyper's OnUpgrade"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "the inner service is not called"
    );
}

#[tokio::test]
async fn upgrade_without_an_upgradable_connection_goes_on_as_plain() {
    let (seen, inner) = recorder(StatusCode::OK);
    let req = Request::get("/ws")
        .header("host", "example.com")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(())
        .unwrap();
    let rsp = Upgrade::new(inner, Tunnels::new())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(rsp.status(), StatusCode::OK, "forwarded");
    let seen = seen.lock().unwrap();
    assert!(
        seen[0].headers().get("upgrade").is_none(),
        "an upgrade the proxy cannot carry is removed"
    );
}

#[tokio::test]
async fn extended_connect_needs_the_upstream_setting() {
    let (seen, inner) = recorder(StatusCode::OK);
    let flag = ConnectProtocolFlag::new();
    let req = Request::get("http://example.com/ws")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .unwrap();
    let rsp = ExtendedConnect::new(inner.clone(), flag.clone())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY, "no setting: 502");
    assert_eq!(rsp.headers()["l5d-proxy-error"], "upstream cannot tunnel");

    let req = Request::builder()
        .method(Method::CONNECT)
        .uri("example.com:443")
        .body(())
        .unwrap();
    let rsp = ExtendedConnect::new(inner, flag)
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(rsp.status(), StatusCode::BAD_GATEWAY, "CONNECT too");
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent upstream");
}

#[tokio::test]
async fn extended_connect_rewrites_an_upgrade() {
    let (seen, inner) = recorder(StatusCode::OK);
    let flag = ConnectProtocolFlag::new();
    flag.set(true);
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let req = Request::get("http://example.com/ws")
        .header("host", "example.com")
        .header("connection", "upgrade")
        .header("upgrade", "WebSocket")
        .header("sec-websocket-key", key)
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    let rsp = ExtendedConnect::new(inner, flag)
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(
        rsp.status(),
        StatusCode::SWITCHING_PROTOCOLS,
        "200 becomes 101"
    );
    assert_eq!(rsp.headers()["upgrade"], "websocket");
    assert_eq!(rsp.headers()["connection"], "upgrade");
    assert_eq!(
        rsp.headers()["sec-websocket-accept"],
        websocket_accept(key.as_bytes()),
        "the accept value answers the client's key"
    );
    let seen = seen.lock().unwrap();
    let sent = &seen[0];
    assert_eq!(sent.method(), Method::CONNECT, "sent as extended CONNECT");
    assert_eq!(sent.version(), Version::HTTP_2);
    assert_eq!(
        sent.extensions()
            .get::<hyper::ext::Protocol>()
            .map(hyper::ext::Protocol::as_str),
        Some("websocket"),
        ":protocol names the upgrade"
    );
    assert!(
        sent.headers().get("sec-websocket-key").is_none(),
        "RFC 8441 omits the key"
    );
    assert!(
        sent.headers().get("upgrade").is_none(),
        "no connection headers on HTTP/2"
    );
    assert_eq!(
        sent.headers()["sec-websocket-version"],
        "13",
        "other headers are kept"
    );
}

#[tokio::test]
async fn orig_proto_pair_in_memory() {
    let (seen, inner) = recorder(StatusCode::NO_CONTENT);
    let down = OrigProtoDowngrade::new(inner);
    let up = OrigProtoUpgrade::new(service_fn(move |req: Request<()>| {
        let down = down.clone();
        async move {
            assert_eq!(req.version(), Version::HTTP_2, "carried over HTTP/2");
            assert_eq!(
                req.headers()[L5D_ORIG_PROTO],
                "HTTP/1.0",
                "the original version"
            );
            let rsp = down.oneshot(req).await?;
            Ok::<_, Infallible>(rsp)
        }
    }));
    let req = Request::get("/x")
        .version(Version::HTTP_10)
        .header("host", "example.com")
        .body(())
        .unwrap();
    let rsp = up.oneshot(req).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        rsp.version(),
        Version::HTTP_10,
        "the client gets its own version"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0].version(),
        Version::HTTP_10,
        "the application gets HTTP/1.0"
    );
    assert!(seen[0].headers().get(L5D_ORIG_PROTO).is_none(), "no leak");
}

#[tokio::test]
async fn orig_proto_downgrade_rejects_a_bad_header() {
    let (seen, inner) = recorder(StatusCode::OK);
    let req = Request::get("http://example.com/")
        .version(Version::HTTP_2)
        .header(L5D_ORIG_PROTO, "HTTP/3")
        .body(())
        .unwrap();
    let rsp = OrigProtoDowngrade::new(inner).oneshot(req).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        rsp.headers()["l5d-proxy-error"],
        "bad request: invalid l5d-orig-proto"
    );
    assert!(seen.lock().unwrap().is_empty(), "not forwarded");
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Tunnels>();
    send_sync::<crate::UpgradeLayer>();
    send_sync::<Upgrade<()>>();
    send_sync::<crate::ExtendedConnectLayer>();
    send_sync::<ConnectProtocolFlag>();
    send_sync::<crate::OrigProtoUpgradeLayer>();
    send_sync::<crate::OrigProtoDowngradeLayer>();
    fn send<T: Send>() {}
    send::<crate::ResponseFuture<std::future::Ready<Result<Response<()>, Infallible>>, ()>>();
}
