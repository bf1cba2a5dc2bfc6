//! Backends over real sockets: endpoint health, p2c, discovery changes, fail-fast, load shed.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use linkerd_app::{
    BoxBody, BoxError,
    backend::{BackendHandle, BackendParams, Discovery, EndpointParams, Resolve},
};
use linkerd_exp_backoff::ExponentialBackoff;
use linkerd_http_classify::{ProxyErrorKind, to_proxy_error};
use linkerd_http_test_util::TestServer;
use std::{
    collections::HashMap,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};
use tower::{Service, ServiceExt};

fn params(fail_fast: Duration, queue: usize) -> BackendParams {
    BackendParams {
        name: "test".into(),
        endpoint: EndpointParams {
            http2: false,
            connect_timeout: Duration::from_secs(1),
            backoff: ExponentialBackoff::try_new(
                Duration::from_millis(10),
                Duration::from_millis(100),
                0.5,
            )
            .unwrap(),
            max_idle: 16,
        },
        fail_fast,
        queue,
    }
}

fn req(delay_ms: Option<u64>) -> Request<BoxBody> {
    let mut b = Request::get("http://test.example/");
    if let Some(ms) = delay_ms {
        b = b.header("x-test-delay-ms", ms.to_string());
    }
    b.body(linkerd_app::server::empty_body()).unwrap()
}

/// Sends one request; returns the answering backend address or the error.
async fn send(svc: &mut BackendHandle, r: Request<BoxBody>) -> Result<SocketAddr, BoxError> {
    let rsp = svc.ready().await?.call(r).await?;
    assert_eq!(rsp.status(), StatusCode::OK);
    let addr = rsp.headers()["x-backend-addr"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    rsp.into_body().collect().await?;
    Ok(addr)
}

async fn refused_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
    // dropped: connections are refused from now on
}

async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 5s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_endpoint_is_never_used() {
    let good = TestServer::backend().await.unwrap();
    let bad = refused_addr().await;
    let mut svc = BackendHandle::new(
        &params(Duration::from_secs(3), 100),
        Discovery::Static(vec![good.addr(), bad]),
    );
    // K = 0: an endpoint is ready only once it has connected, so a refusing endpoint never
    // receives a request.
    let mut failures = 0;
    for _ in 0..50 {
        match send(&mut svc, req(None)).await {
            Ok(addr) => assert_eq!(addr, good.addr(), "only the healthy endpoint answers"),
            Err(_) => failures += 1,
        }
    }
    assert_eq!(
        failures, 0,
        "no request may fail while one endpoint is healthy"
    );
    assert_eq!(svc.states().ready(), 1, "the healthy endpoint is ready");
    assert_eq!(
        svc.states().pending(),
        1,
        "the refusing endpoint is pending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_endpoint_gets_less_traffic() {
    let fast = TestServer::backend().await.unwrap();
    let slow = slow_backend(Duration::from_millis(50)).await;
    let svc = BackendHandle::new(
        &params(Duration::from_secs(3), 100),
        Discovery::Static(vec![fast.addr(), slow.addr()]),
    );
    wait_until(|| svc.states().ready() == 2).await;
    let counts = Arc::new(Mutex::new(HashMap::<SocketAddr, usize>::new()));
    let mut tasks = vec![];
    for _ in 0..10 {
        let mut svc = svc.clone();
        let counts = counts.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                let addr = send(&mut svc, req(None)).await.expect("request succeeds");
                *counts.lock().unwrap().entry(addr).or_default() += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let counts = counts.lock().unwrap();
    let fast_n = counts.get(&fast.addr()).copied().unwrap_or(0);
    assert_eq!(counts.values().sum::<usize>(), 1000);
    assert!(
        fast_n >= 800,
        "p2c should send at least 80% to the fast endpoint, got {fast_n}/1000 ({counts:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_down_fails_fast_and_full_queue_sheds() {
    let down = refused_addr().await;
    let mut svc = BackendHandle::new(
        &params(Duration::from_millis(100), 100),
        Discovery::Static(vec![down]),
    );
    let err = tokio::time::timeout(Duration::from_secs(5), send(&mut svc, req(None)))
        .await
        .expect("fail-fast answers well before the client's deadline")
        .expect_err("no endpoint is ready");
    assert_eq!(to_proxy_error(&*err).kind(), ProxyErrorKind::NoEndpoints);

    let mut empty = BackendHandle::new(
        &params(Duration::from_secs(30), 100),
        Discovery::Static(vec![]),
    );
    let err = tokio::time::timeout(Duration::from_secs(5), send(&mut empty, req(None)))
        .await
        .expect("an empty backend answers at once")
        .expect_err("no endpoints");
    assert_eq!(to_proxy_error(&*err).kind(), ProxyErrorKind::NoEndpoints);

    // A queue of 2 in front of a backend that never becomes ready (fail-fast far away): the
    // third waiting request is shed.
    let stuck = BackendHandle::new(
        &params(Duration::from_secs(30), 2),
        Discovery::Static(vec![refused_addr().await]),
    );
    let mut waiting = vec![];
    for _ in 0..3 {
        let mut s = stuck.clone();
        waiting.push(tokio::spawn(async move { send(&mut s, req(None)).await }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut s = stuck.clone();
    let err = send(&mut s, req(None)).await.expect_err("queue is full");
    assert_eq!(to_proxy_error(&*err).kind(), ProxyErrorKind::LoadShed);
    for w in waiting {
        w.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_endpoint_gets_traffic_again() {
    let a = TestServer::backend().await.unwrap();
    let b_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_addr = b_listener.local_addr().unwrap();
    drop(b_listener);
    let mut svc = BackendHandle::new(
        &params(Duration::from_secs(3), 100),
        Discovery::Static(vec![a.addr(), b_addr]),
    );
    wait_until(|| svc.states().ready() == 1).await;
    // B starts on its address: the prober finds it and traffic returns to it.
    let b = serve_at(b_addr).await;
    wait_until(|| svc.states().ready() == 2).await;
    let mut seen_b = false;
    for _ in 0..200 {
        if send(&mut svc, req(None)).await.unwrap() == b_addr {
            seen_b = true;
            break;
        }
    }
    assert!(seen_b, "a restarted endpoint receives traffic again");
    b.abort();
}

#[derive(Clone)]
struct FakeResolver(Arc<Mutex<io::Result<Vec<SocketAddr>>>>);

impl Resolve for FakeResolver {
    fn resolve(
        &self,
        _: &str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'static>> {
        let answer = match &*self.0.lock().unwrap() {
            Ok(a) => Ok(a.clone()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        Box::pin(async move { answer })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_changes_move_traffic() {
    let a = TestServer::backend().await.unwrap();
    let b = TestServer::backend().await.unwrap();
    let c = TestServer::backend().await.unwrap();
    let resolver = FakeResolver(Arc::new(Mutex::new(Ok(vec![a.addr(), b.addr()]))));
    let mut svc = BackendHandle::new(
        &params(Duration::from_secs(3), 100),
        Discovery::Dns {
            target: "web.test:80".into(),
            refresh: Duration::from_millis(50),
            resolver: Arc::new(resolver.clone()),
        },
    );
    wait_until(|| svc.states().ready() == 2).await;
    *resolver.0.lock().unwrap() = Ok(vec![b.addr(), c.addr()]);
    wait_until(|| svc.states().total() == 2 && svc.states().ready() == 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let a_before = a.request_count();
    let mut c_seen = 0;
    for _ in 0..100 {
        if send(&mut svc, req(None)).await.unwrap() == c.addr() {
            c_seen += 1;
        }
    }
    assert_eq!(
        a.request_count(),
        a_before,
        "A left the set: it gets no requests"
    );
    assert!(c_seen > 0, "C joined the set: it gets some requests");
    // A failing lookup changes nothing.
    *resolver.0.lock().unwrap() = Err(io::Error::other("SERVFAIL"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        svc.states().total(),
        2,
        "a failed lookup keeps the last set"
    );
    send(&mut svc, req(None)).await.expect("still served");
    let _ = Bytes::new();
}

/// A minimal backend on a chosen address answering with `x-backend-addr`.
async fn serve_at(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("rebind the port");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| async move {
                    let rsp = http::Response::builder()
                        .header("x-backend-addr", addr.to_string())
                        .body(http_body_util::Full::new(Bytes::from_static(b"ok")))
                        .unwrap();
                    Ok::<_, std::convert::Infallible>(rsp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

/// A backend that answers every request after `delay`, with `x-backend-addr`.
async fn slow_backend(delay: Duration) -> TestServer {
    let cell = Arc::new(std::sync::OnceLock::<SocketAddr>::new());
    let c = cell.clone();
    let server = TestServer::serve(linkerd_http_test_util::ServerProtocol::Auto, move |_req| {
        let addr = *c.get().expect("address set before traffic");
        async move {
            tokio::time::sleep(delay).await;
            let rsp = http::Response::builder()
                .header("x-backend-addr", addr.to_string())
                .body(http_body_util::Full::new(Bytes::from_static(b"slow")))
                .unwrap();
            Ok::<_, std::convert::Infallible>(rsp)
        }
    })
    .await
    .unwrap();
    cell.set(server.addr()).unwrap();
    server
}

/// Many requests wait for the only endpoint (down at first); when it comes up every one of
/// them is served (no waiter is left without a wake-up), and none waits past its turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_waiting_request_proceeds_when_an_endpoint_comes_up() {
    let addr = refused_addr().await;
    let svc = BackendHandle::new(
        &params(Duration::from_secs(10), 100),
        Discovery::Static(vec![addr]),
    );
    wait_until(|| svc.states().pending() == 1).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let mut svc = svc.clone();
        tasks.push(tokio::spawn(async move { send(&mut svc, req(None)).await }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tasks.iter().all(|t| !t.is_finished()),
        "requests wait while the endpoint is down"
    );
    let server = serve_at(addr).await;
    for t in tasks {
        let answered = tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .expect("served within 5s of the endpoint coming up")
            .unwrap()
            .expect("request succeeds");
        assert_eq!(answered, addr);
    }
    server.abort();
}

/// A backend whose set shrinks to one endpoint, grows to two, then empties: each request
/// goes to a member of the current set (the one-endpoint shortcut follows the set), and an
/// empty set answers `no endpoints`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_follows_the_set_through_one_two_and_no_endpoints() {
    let a = TestServer::backend().await.unwrap();
    let b = TestServer::backend().await.unwrap();
    let resolver = FakeResolver(Arc::new(Mutex::new(Ok(vec![a.addr()]))));
    let mut svc = BackendHandle::new(
        &params(Duration::from_millis(200), 100),
        Discovery::Dns {
            target: "web.test:80".into(),
            refresh: Duration::from_millis(20),
            resolver: Arc::new(resolver.clone()),
        },
    );
    wait_until(|| svc.states().ready() == 1).await;
    for _ in 0..20 {
        assert_eq!(send(&mut svc, req(None)).await.unwrap(), a.addr());
    }
    // One endpoint, replaced by another: nothing more reaches the first.
    *resolver.0.lock().unwrap() = Ok(vec![b.addr()]);
    wait_until(|| svc.states().total() == 1 && svc.states().ready() == 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let a_before = a.request_count();
    for _ in 0..20 {
        assert_eq!(send(&mut svc, req(None)).await.unwrap(), b.addr());
    }
    assert_eq!(
        a.request_count(),
        a_before,
        "the replaced endpoint gets nothing"
    );
    // Two endpoints: both get traffic.
    *resolver.0.lock().unwrap() = Ok(vec![a.addr(), b.addr()]);
    wait_until(|| svc.states().ready() == 2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        seen.insert(send(&mut svc, req(None)).await.unwrap());
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "both endpoints serve");
    // No endpoints.
    *resolver.0.lock().unwrap() = Ok(vec![]);
    wait_until(|| svc.states().total() == 0).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = send(&mut svc, req(None)).await.expect_err("no endpoints");
    assert_eq!(to_proxy_error(&*err).kind(), ProxyErrorKind::NoEndpoints);
}

/// Right after start-up, with the only endpoint down and fail-fast far away: one request
/// waits, the next is shed (`unavailable`), never `no endpoints`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_wait_list_sheds_from_the_start() {
    let down = refused_addr().await;
    let svc = BackendHandle::new(
        &params(Duration::from_secs(30), 1),
        Discovery::Static(vec![down]),
    );
    let mut first = svc.clone();
    let waiter = tokio::spawn(async move { send(&mut first, req(None)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = svc.clone();
    let err = tokio::time::timeout(Duration::from_secs(2), send(&mut second, req(None)))
        .await
        .expect("shed at once")
        .expect_err("shed");
    assert_eq!(to_proxy_error(&*err).kind(), ProxyErrorKind::LoadShed);
    assert!(!waiter.is_finished(), "the first request still waits");
    waiter.abort();
}

/// A name that does not resolve, or resolves to nothing, is an empty set once looked up:
/// requests get `no endpoints` at once, not after `failFast` (DESIGN.md section 3: "503 at
/// once when the endpoint set is empty").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_failed_first_dns_answer_fails_fast_at_once() {
    let answers: [io::Result<Vec<SocketAddr>>; 2] = [
        Err(io::Error::new(io::ErrorKind::NotFound, "no such name")),
        Ok(vec![]),
    ];
    for answer in answers {
        let what = format!("{answer:?}");
        let mut svc = BackendHandle::new(
            &params(Duration::from_secs(60), 100),
            Discovery::Dns {
                target: "web.test:80".into(),
                refresh: Duration::from_secs(60),
                resolver: Arc::new(FakeResolver(Arc::new(Mutex::new(answer)))),
            },
        );
        // Well under the 60 s fail-fast: the answer must not wait for it.
        let err = tokio::time::timeout(Duration::from_secs(10), send(&mut svc, req(None)))
            .await
            .unwrap_or_else(|_| panic!("{what}: answered before failFast"))
            .expect_err("no endpoints");
        assert_eq!(
            to_proxy_error(&*err).kind(),
            ProxyErrorKind::NoEndpoints,
            "{what}"
        );
    }
}

/// A resolver whose every answer takes `delay`.
#[derive(Clone)]
struct SlowResolver(Vec<SocketAddr>, Duration);

impl Resolve for SlowResolver {
    fn resolve(
        &self,
        _: &str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'static>> {
        let (answer, delay) = (self.0.clone(), self.1);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(answer)
        })
    }
}

/// Before DNS's first answer the set is unknown, not empty: a request sent at once waits for
/// the answer and is served, rather than failing with `no endpoints`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_before_the_first_dns_answer_wait_for_it() {
    let a = TestServer::backend().await.unwrap();
    let mut svc = BackendHandle::new(
        &params(Duration::from_secs(3), 100),
        Discovery::Dns {
            target: "web.test:80".into(),
            refresh: Duration::from_secs(60),
            resolver: Arc::new(SlowResolver(vec![a.addr()], Duration::from_millis(300))),
        },
    );
    let served = send(&mut svc, req(None))
        .await
        .expect("served once DNS answers");
    assert_eq!(served, a.addr());
}
