//! End-to-end: an h2 client -> hyper server -> (error-wrapping layer) -> [H2ResetLayer] ->
//! hyper client -> an h2 backend that resets streams after sending headers.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    service::TowerToHyperService,
};
use linkerd_http_classify::BoxError;
use linkerd_http_h2::{ClientSettings, H2ResetLayer, ResetDirection, ServerSettings};
use linkerd_http_test_util::{H2Client, H2Response};
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{net::TcpListener, task::JoinHandle};
use tower::{Layer, ServiceExt, service_fn, util::BoxCloneService};

type ProxyBody = BoxBody<Bytes, BoxError>;
type Seen = Arc<Mutex<Vec<(ResetDirection, h2::Reason)>>>;

/// Records every reset the adapter reports.
#[derive(Clone, Debug, Default)]
struct Hook(Seen);

impl linkerd_http_h2::OnReset for Hook {
    fn on_reset(&self, direction: ResetDirection, reason: h2::Reason) {
        self.0.lock().expect("lock").push((direction, reason));
    }
}

/// How the outer layer wraps errors: as a custom type whose `source()` is the original (as
/// stream-timeouts does), or with `io::Error::other` (whose `source()` skips a level).
#[derive(Copy, Clone, Debug)]
enum Wrap {
    Custom,
    Io,
}

#[derive(Debug)]
struct Wrapped(BoxError);

impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("outer layer failed")
    }
}

impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

fn wrap(how: Wrap, error: BoxError) -> BoxError {
    match how {
        Wrap::Custom => Box::new(Wrapped(error)),
        Wrap::Io => Box::new(std::io::Error::other(error)),
    }
}

/// Aborts the spawned tasks when dropped.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

// === the backend ===

/// An h2 server: `/a` answers slowly and completes; `/b?reason=N[&len=M]` sends headers and
/// some data, then resets the stream with reason N; anything else answers `ok`.
async fn backend() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((io, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(io).await else {
                    return;
                };
                while let Some(Ok((req, respond))) = conn.accept().await {
                    tokio::spawn(handle(req, respond));
                }
            });
        }
    });
    (addr, task)
}

fn query_param(req: &Request<h2::RecvStream>, name: &str) -> Option<u32> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.parse().ok()).flatten()
    })
}

async fn handle(req: Request<h2::RecvStream>, mut respond: h2::server::SendResponse<Bytes>) {
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/a" => {
            let Ok(mut stream) = respond.send_response(Response::new(()), false) else {
                return;
            };
            let _ = stream.send_data(Bytes::from_static(b"hello a"), false);
            // Still streaming while B is reset.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = stream.send_data(Bytes::from_static(b" done"), true);
        }
        "/b" => {
            let reason = query_param(&req, "reason").unwrap_or(0);
            let mut rsp = Response::builder();
            if let Some(len) = query_param(&req, "len") {
                rsp = rsp.header("content-length", len);
            }
            let rsp = rsp.body(()).expect("response");
            let Ok(mut stream) = respond.send_response(rsp, false) else {
                return;
            };
            let _ = stream.send_data(Bytes::from_static(b"partial"), false);
            // Let the headers and data reach the proxy before the reset.
            tokio::time::sleep(Duration::from_millis(100)).await;
            stream.send_reset(h2::Reason::from(reason));
        }
        _ => {
            if let Ok(mut stream) = respond.send_response(Response::new(()), false) {
                let _ = stream.send_data(Bytes::from_static(b"ok"), true);
            }
        }
    }
}

// === the proxy ===

struct Proxy {
    addr: SocketAddr,
    seen: Seen,
    _tasks: Tasks,
}

async fn proxy(upstream: SocketAddr, adapter: bool, how: Wrap) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("addr");
    let seen = Seen::default();
    let hook = Hook(seen.clone());
    let task = tokio::spawn(async move {
        while let Ok((io, _)) = listener.accept().await {
            // One upstream connection per client connection; connected before serving.
            let Ok(svc) = stack(upstream, adapter, how, hook.clone()).await else {
                continue;
            };
            let mut server = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            ServerSettings::default()
                .apply_to_server(&mut server)
                .expect("valid settings");
            // The connection future is spawned as is (not inside an async block) so that its
            // `Send` bound is proven on the concrete type.
            tokio::spawn(server.serve_connection(TokioIo::new(io), TowerToHyperService::new(svc)));
        }
    });
    Proxy {
        addr,
        seen,
        _tasks: Tasks(vec![task]),
    }
}

type Stack = BoxCloneService<Request<Incoming>, Response<ProxyBody>, BoxError>;

/// One upstream connection and the layers around it.
async fn stack(
    upstream: SocketAddr,
    adapter: bool,
    how: Wrap,
    hook: Hook,
) -> Result<Stack, BoxError> {
    let io = tokio::net::TcpStream::connect(upstream)
        .await
        .map_err(|e| -> BoxError { Box::new(e) })?;
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    ClientSettings::default()
        .apply_to_client(&mut builder)
        .map_err(|e| -> BoxError { Box::new(e) })?;
    let (tx, conn) = builder
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| -> BoxError { Box::new(e) })?;
    tokio::spawn(conn);
    let client = service_fn(move |req: Request<Incoming>| {
        let mut tx = tx.clone();
        let fut: std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Response<Incoming>, hyper::Error>> + Send>,
        > = Box::pin(async move {
            tx.ready().await?;
            tx.send_request(req).await
        });
        fut
    });
    let inner: BoxCloneService<Request<Incoming>, Response<ProxyBody>, BoxError> = if adapter {
        BoxCloneService::new(
            H2ResetLayer::with_hook(hook)
                .layer(client)
                .map_response(|rsp| rsp.map(|b| b.boxed())),
        )
    } else {
        BoxCloneService::new(
            client
                .map_err(|e| -> BoxError { Box::new(e) })
                .map_response(|rsp| {
                    rsp.map(|b| b.map_err(|e| -> BoxError { Box::new(e) }).boxed())
                }),
        )
    };
    Ok(BoxCloneService::new(
        inner
            .map_err(move |e| wrap(how, e))
            .map_response(move |rsp| rsp.map(|b| b.map_err(move |e| wrap(how, e)).boxed())),
    ))
}

// === the client's view ===

fn get(path: &str) -> Request<()> {
    Request::get(path).body(()).expect("request")
}

/// Streams A and B on one connection, B reset by the backend with `upstream` after its
/// headers; then C on the same connection. Returns B's response.
async fn a_and_b(proxy: &Proxy, b_path: &str) -> H2Response {
    let mut client = H2Client::connect(proxy.addr)
        .await
        .expect("connect to the proxy");
    let (a, _a_send) = client.send_request(get("/a"), true).await.expect("open A");
    let (b, _b_send) = client
        .send_request(get(b_path), true)
        .await
        .expect("open B");
    let (a, b) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(H2Response::read(a), H2Response::read(b))
    })
    .await
    .expect("A and B finish");
    let a = a.expect("A gets a response");
    assert_eq!(a.status, 200);
    assert!(
        a.body_error.is_none(),
        "A is not affected by B's reset: {:?}",
        a.body_error
    );
    assert_eq!(a.data, "hello a done", "A completes");
    let b = b.expect("B's headers were sent before the reset");
    assert_eq!(b.status, 200, "B was reset after its headers");

    let (c, _c_send) = client
        .send_request(get("/c"), true)
        .await
        .expect("the connection stays up after a stream reset");
    let c = tokio::time::timeout(Duration::from_secs(10), H2Response::read(c))
        .await
        .expect("C finishes")
        .expect("C gets a response");
    assert_eq!(c.data, "ok", "the connection still serves requests");
    b
}

async fn reset_case(upstream: h2::Reason, expected: h2::Reason, how: Wrap) {
    let (backend, _backend) = backend().await;
    let proxy = proxy(backend, true, how).await;
    let b = a_and_b(&proxy, &format!("/b?reason={}", u32::from(upstream))).await;
    let err = b.body_error.as_ref().expect("B's body fails");
    assert_eq!(
        err.reason(),
        Some(expected),
        "upstream {upstream:?} reaches the client as {expected:?} ({how:?})"
    );
    assert!(err.is_remote(), "the proxy reset B ({how:?}): {err:?}");
    assert_eq!(
        *proxy.seen.lock().expect("lock"),
        vec![
            (ResetDirection::Inbound, upstream),
            (ResetDirection::Outbound, expected)
        ],
        "the hook counts the reset both ways"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_stream_is_forwarded() {
    reset_case(
        h2::Reason::REFUSED_STREAM,
        h2::Reason::REFUSED_STREAM,
        Wrap::Custom,
    )
    .await;
    reset_case(
        h2::Reason::REFUSED_STREAM,
        h2::Reason::REFUSED_STREAM,
        Wrap::Io,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enhance_your_calm_is_forwarded() {
    reset_case(
        h2::Reason::ENHANCE_YOUR_CALM,
        h2::Reason::ENHANCE_YOUR_CALM,
        Wrap::Custom,
    )
    .await;
    reset_case(
        h2::Reason::ENHANCE_YOUR_CALM,
        h2::Reason::ENHANCE_YOUR_CALM,
        Wrap::Io,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_is_forwarded() {
    reset_case(h2::Reason::CANCEL, h2::Reason::CANCEL, Wrap::Custom).await;
    reset_case(h2::Reason::CANCEL, h2::Reason::CANCEL, Wrap::Io).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_error_becomes_internal_error() {
    reset_case(
        h2::Reason::PROTOCOL_ERROR,
        h2::Reason::INTERNAL_ERROR,
        Wrap::Custom,
    )
    .await;
    reset_case(
        h2::Reason::PROTOCOL_ERROR,
        h2::Reason::INTERNAL_ERROR,
        Wrap::Io,
    )
    .await;
    reset_case(
        h2::Reason::FLOW_CONTROL_ERROR,
        h2::Reason::INTERNAL_ERROR,
        Wrap::Custom,
    )
    .await;
}

/// The control: without the adapter, an upstream PROTOCOL_ERROR reaches the client as is,
/// so the tests above depend on the adapter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_adapter_protocol_error_leaks() {
    let (backend, _backend) = backend().await;
    let proxy = proxy(backend, false, Wrap::Custom).await;
    let path = format!("/b?reason={}", u32::from(h2::Reason::PROTOCOL_ERROR));
    let b = a_and_b(&proxy, &path).await;
    let reason = b.body_error.as_ref().and_then(h2::Error::reason);
    assert_eq!(
        reason,
        Some(h2::Reason::PROTOCOL_ERROR),
        "hyper alone forwards the upstream's connection-level code"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_error_reset_of_a_known_length_body_is_a_reset() {
    let (backend, _backend) = backend().await;
    let proxy = proxy(backend, true, Wrap::Custom).await;
    let b = a_and_b(&proxy, "/b?reason=0&len=1000").await;
    assert_eq!(b.data, "partial", "what arrived is delivered");
    let err = b
        .body_error
        .as_ref()
        .expect("a short body must not end cleanly");
    assert_eq!(err.reason(), Some(h2::Reason::INTERNAL_ERROR), "{err:?}");
    assert!(err.is_remote(), "the proxy reset the stream: {err:?}");
    assert_eq!(
        *proxy.seen.lock().expect("lock"),
        vec![
            (ResetDirection::Inbound, h2::Reason::NO_ERROR),
            (ResetDirection::Outbound, h2::Reason::INTERNAL_ERROR)
        ]
    );
}

/// The control: without the adapter the proxy ends the short body cleanly, and only the
/// client's own content-length check (which an HTTP/1 or a lax client lacks) can notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_adapter_a_no_error_reset_ends_cleanly() {
    let (backend, _backend) = backend().await;
    let proxy = proxy(backend, false, Wrap::Custom).await;
    let b = a_and_b(&proxy, "/b?reason=0&len=1000").await;
    let remote_reset = b.body_error.as_ref().is_some_and(h2::Error::is_remote);
    assert!(
        !remote_reset,
        "hyper alone does not reset the client's stream: {:?}",
        b.body_error
    );
}
