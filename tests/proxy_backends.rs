//! Backends through the real binary (issue: endpoints, load balancing, fail-fast): all
//! endpoints down answers 503 `no endpoints` fast, a full queue answers 503 `unavailable`, for
//! HTTP and gRPC clients, with their metric `error` labels; `balancer_endpoints` shows states.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use linkerd_http_test_util::{H2Client, HttpClient, TestServer, collect};
use std::{net::SocketAddr, time::Duration};
use support::Proxy;

const STATUSES: &str = "outbound_http_route_request_statuses_total";
const GRPC_STATUSES: &str = "outbound_grpc_route_request_statuses_total";

fn refused_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn config(endpoints: &str, fail_fast: &str, queue: usize) -> String {
    format!(
        "backends:
  - name: b
    protocol: http1
    endpoints: [{endpoints}]
    failFast: {fail_fast}
    queue: {queue}
routes:
  - name: web
    rules:
      - backendRefs: [{{ name: b }}]
"
    )
}

fn grpc_request() -> Request<Bytes> {
    Request::post("/pkg.Svc/Call")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Bytes::from_static(&[0, 0, 0, 0, 0]))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_endpoints_down_fails_fast_for_http_and_grpc() {
    let down = refused_addr();
    let proxy = Proxy::start(&config(&down.to_string(), "100ms", 100), &[]);

    let mut http = HttpClient::http1(proxy.addr).await.unwrap();
    let rsp = tokio::time::timeout(Duration::from_secs(5), http.get("/x"))
        .await
        .expect("fail-fast answers well before the client's 5 s deadline")
        .unwrap();
    assert_eq!(rsp.status(), 503, "no ready endpoint: 503");
    assert_eq!(rsp.headers()["l5d-proxy-error"], "no endpoints");
    collect(rsp.into_body()).await.unwrap();

    let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
    let rsp = tokio::time::timeout(Duration::from_secs(5), h2.request(grpc_request()))
        .await
        .expect("gRPC fail-fast answers before the deadline")
        .unwrap();
    assert_eq!(rsp.status, 200, "gRPC errors are trailers-only 200s");
    assert_eq!(rsp.headers["grpc-status"], "14", "UNAVAILABLE");
    assert_eq!(rsp.headers["l5d-proxy-error"], "no endpoints");

    let http_labels = [
        ("route_name", "web"),
        ("http_status", "503"),
        ("grpc_status", ""),
        ("error", "NO_ENDPOINTS"),
    ];
    let grpc_labels = [
        ("route_name", "web"),
        ("http_status", "200"),
        ("grpc_status", "UNAVAILABLE"),
        ("error", "NO_ENDPOINTS"),
    ];
    // The endpoint gauges are sampled every 250 ms: wait for a sample taken after the
    // endpoint was registered too.
    let pending = [("backend_name", "b"), ("state", "pending")];
    let scrape = proxy
        .scrape_until(|s| {
            s.get(STATUSES, &http_labels) == Some(1.0)
                && (s.get(STATUSES, &grpc_labels) == Some(1.0)
                    || s.get(GRPC_STATUSES, &grpc_labels) == Some(1.0))
                && s.get("balancer_endpoints", &pending) == Some(1.0)
        })
        .await;
    assert_eq!(
        scrape.get(STATUSES, &http_labels),
        Some(1.0),
        "HTTP request counted with error=NO_ENDPOINTS"
    );
    assert!(
        scrape.get(STATUSES, &grpc_labels) == Some(1.0)
            || scrape.get(GRPC_STATUSES, &grpc_labels) == Some(1.0),
        "gRPC request counted with error=NO_ENDPOINTS"
    );
    assert_eq!(
        scrape.get(
            "balancer_endpoints",
            &[("backend_name", "b"), ("state", "pending")]
        ),
        Some(1.0),
        "the refusing endpoint is pending"
    );
    assert_eq!(
        scrape.get(
            "balancer_endpoints",
            &[("backend_name", "b"), ("state", "ready")]
        ),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_backend_answers_no_endpoints_at_once() {
    let proxy = Proxy::start(&config("", "30s", 100), &[]);
    let mut http = HttpClient::http1(proxy.addr).await.unwrap();
    let rsp = tokio::time::timeout(Duration::from_secs(5), http.get("/x"))
        .await
        .expect("an empty endpoint set answers at once, not after failFast")
        .unwrap();
    assert_eq!(rsp.status(), 503);
    assert_eq!(rsp.headers()["l5d-proxy-error"], "no endpoints");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_sheds_load_for_http_and_grpc() {
    // Endpoints never become ready and fail-fast is far away: requests wait in the queue of 1.
    let down = refused_addr();
    let proxy = Proxy::start(&config(&down.to_string(), "30s", 1), &[]);

    // One request takes the queue's only slot and waits for the whole test (its client stays
    // connected: a request whose client goes away gives its slot back).
    let addr = proxy.addr;
    let waiting = tokio::spawn(async move {
        let mut c = HttpClient::http1(addr).await.unwrap();
        let _ = c.get("/waits").await;
    });
    // Once it is in flight (waiting for an endpoint), requests beyond it are shed at once.
    proxy
        .scrape_until(|s| {
            s.get(
                "outbound_http_route_requests_in_flight",
                &[("route_name", "web")],
            ) == Some(1.0)
        })
        .await;
    let mut shed = 0;
    for i in 0..2 {
        let mut c = HttpClient::http1(addr).await.unwrap();
        let rsp = tokio::time::timeout(Duration::from_secs(3), c.get(&format!("/r{i}")))
            .await
            .expect("shed at once")
            .unwrap();
        assert_eq!(rsp.status(), 503, "a request beyond the queue is shed");
        assert_eq!(rsp.headers()["l5d-proxy-error"], "unavailable");
        shed += 1;
    }
    assert_eq!(shed, 2, "requests beyond the queue are shed at once");

    let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
    let rsp = tokio::time::timeout(Duration::from_secs(5), h2.request(grpc_request()))
        .await
        .expect("gRPC load shed answers at once")
        .unwrap();
    assert_eq!(rsp.headers["grpc-status"], "14", "UNAVAILABLE");
    assert_eq!(rsp.headers["l5d-proxy-error"], "unavailable");

    let http_labels = [
        ("route_name", "web"),
        ("http_status", "503"),
        ("grpc_status", ""),
        ("error", "LOAD_SHED"),
    ];
    let scrape = proxy
        .scrape_until(|s| s.get(STATUSES, &http_labels).is_some())
        .await;
    assert!(
        scrape.get(STATUSES, &http_labels).unwrap_or(0.0) >= 1.0,
        "HTTP load shed counted with error=LOAD_SHED"
    );
    waiting.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_endpoint_beside_a_healthy_one_never_fails_a_request() {
    let good = TestServer::backend().await.unwrap();
    let bad = refused_addr();
    let proxy = Proxy::start(&config(&format!("{}, {bad}", good.addr()), "3s", 100), &[]);
    let mut http = HttpClient::http1(proxy.addr).await.unwrap();
    let mut failures = 0;
    for _ in 0..50 {
        let req = Request::get("/ok").body(Full::<Bytes>::default()).unwrap();
        let rsp = http.send(req).await.unwrap();
        if rsp.status() != 200 {
            failures += 1;
        }
        collect(rsp.into_body()).await.unwrap();
    }
    // K = 0: an endpoint takes traffic only once it has connected.
    assert_eq!(
        failures, 0,
        "no request fails while one endpoint is healthy"
    );
    let scrape = proxy
        .scrape_until(|s| {
            s.get(
                "balancer_endpoints",
                &[("backend_name", "b"), ("state", "pending")],
            ) == Some(1.0)
        })
        .await;
    assert_eq!(
        scrape.get(
            "balancer_endpoints",
            &[("backend_name", "b"), ("state", "ready")]
        ),
        Some(1.0)
    );
    assert_eq!(
        scrape.get(
            "balancer_endpoints",
            &[("backend_name", "b"), ("state", "pending")]
        ),
        Some(1.0),
        "the refusing endpoint shows as pending"
    );
}

/// An `http2` backend gets one connection per endpoint, whatever authorities the requests
/// name (they keep them as `:authority`), instead of one connection per authority.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_backend_shares_one_connection_across_authorities() {
    let backend = TestServer::backend().await.unwrap();
    let yaml = format!(
        "backends:
  - name: b
    protocol: http2
    endpoints: [{}]
routes:
  - name: web
    rules:
      - backendRefs: [{{ name: b }}]
",
        backend.addr()
    );
    let proxy = Proxy::start(&yaml, &[]);
    // A first request opens the endpoint's connection (the endpoint's health probe is a
    // connection too): every later one must reuse it.
    let mut http = HttpClient::http1(proxy.addr).await.unwrap();
    let rsp = http.get("/first").await.unwrap();
    assert_eq!(rsp.status(), 200);
    collect(rsp.into_body()).await.unwrap();
    let before = backend.connection_count();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut http = HttpClient::http1(addr).await.unwrap();
            let req = Request::get("/shared")
                .header("host", format!("h{i}.example"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let rsp = http.send(req).await.unwrap();
            assert_eq!(rsp.status(), 200, "authority {i}");
            collect(rsp.into_body()).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        backend.connection_count(),
        before,
        "one HTTP/2 connection per endpoint, not one per authority"
    );
    let mut authorities: Vec<String> = backend
        .requests()
        .iter()
        .filter(|r| r.uri.path() == "/shared")
        .filter_map(|r| r.uri.authority().map(ToString::to_string))
        .collect();
    authorities.sort();
    authorities.dedup();
    assert_eq!(
        authorities.len(),
        20,
        "each request keeps its authority: {authorities:?}"
    );
}

/// `failFast: 0s` turns fail-fast off, as `0s` does every timeout (DESIGN.md section 4):
/// with its only endpoint down, a request waits for one until the rule's request timeout
/// (504), instead of 503 `no endpoints` at once; an empty endpoint set still answers 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_of_zero_never_fails_fast() {
    let down = refused_addr();
    let yaml = format!(
        "backends:
  - name: b
    protocol: http1
    endpoints: [{down}]
    failFast: 0s
  - name: empty
    protocol: http1
    endpoints: []
    failFast: 0s
routes:
  - name: web
    rules:
      - matches: [{{ path: {{ value: /empty }} }}]
        backendRefs: [{{ name: empty }}]
      - backendRefs: [{{ name: b }}]
        timeouts: {{ request: 1500ms }}
"
    );
    let proxy = Proxy::start(&yaml, &[]);
    let mut http = HttpClient::http1(proxy.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let rsp = tokio::time::timeout(Duration::from_secs(10), http.get("/x"))
        .await
        .expect("the request timeout answers")
        .unwrap();
    assert_eq!(
        rsp.status(),
        504,
        "waited for an endpoint until the deadline"
    );
    assert_eq!(rsp.headers()["l5d-proxy-error"], "request timeout");
    assert!(started.elapsed() >= Duration::from_millis(1400));
    collect(rsp.into_body()).await.unwrap();

    let rsp = tokio::time::timeout(Duration::from_secs(5), http.get("/empty"))
        .await
        .expect("an empty set answers at once")
        .unwrap();
    assert_eq!(rsp.status(), 503);
    assert_eq!(rsp.headers()["l5d-proxy-error"], "no endpoints");
}

/// The fail-fast period counts from when no endpoint is ready (here: from start-up, the only
/// endpoint refusing), not from the first request (DESIGN.md section 3: "no endpoint has
/// been ready for `failFast`"): a request after the period is answered 503 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_counts_from_when_no_endpoint_was_ready() {
    let down = refused_addr();
    let proxy = Proxy::start(&config(&down.to_string(), "1s", 100), &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut http = HttpClient::http1(proxy.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let rsp = tokio::time::timeout(Duration::from_secs(5), http.get("/x"))
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(rsp.status(), 503);
    assert_eq!(rsp.headers()["l5d-proxy-error"], "no endpoints");
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "at once, not a full failFast after the request: {:?}",
        started.elapsed()
    );
}
