//! Known traffic through access log, classify and the metrics layers; the scrape parsed into
//! (name, labels, value) and checked exactly, and the access log cross-checked.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use linkerd_http_access_log::{
    AccessLogLayer, AccessLogWriter, Format, Output, RequestBody, WriterConfig,
};
use linkerd_http_classify::{ClassifyLayer, ProxyError};
use linkerd_http_metrics::{Metrics, RetryStopKind, RetrySummary};
use linkerd_http_prom::{ConnectionProtocol, Direction, MetricsService, Scrape};
use linkerd_http_retry::{RetryOutcome, RetryStop};
use linkerd_http_route::BackendName;
use linkerd_http_test_util::{BoxError, MockBody};
use prometheus_client::registry::Registry;
use serde_json::Value;
use std::{
    io::Write,
    sync::{Arc, Mutex},
};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

#[derive(Debug)]
struct TestError(BoxError);

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("body failed")
    }
}

impl std::error::Error for TestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

type TestBody = http_body_util::combinators::MapErr<MockBody, fn(BoxError) -> TestError>;

fn body(mock: MockBody) -> TestBody {
    mock.map_err(TestError as fn(BoxError) -> TestError)
}

#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn scrape_text(admin: &MetricsService) -> String {
    let rsp = admin
        .clone()
        .oneshot(Request::get("/metrics").body(()).expect("request"))
        .await
        .expect("infallible");
    let text = rsp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(text.to_vec()).expect("utf-8")
}

async fn scrape(admin: &MetricsService) -> Scrape {
    Scrape::parse(&scrape_text(admin).await).expect("valid exposition")
}

const FAMILIES: [(&str, &str); 24] = [
    ("outbound_http_route_request_duration_seconds", "histogram"),
    ("outbound_http_route_request_statuses", "counter"),
    ("outbound_http_route_requests_in_flight", "gauge"),
    ("outbound_http_route_retry_requests", "counter"),
    ("outbound_http_route_retry_successes", "counter"),
    ("outbound_http_route_retry_limit_exceeded", "counter"),
    ("outbound_http_route_retry_overflow", "counter"),
    ("outbound_http_route_backend_requests", "counter"),
    (
        "outbound_http_route_backend_response_duration_seconds",
        "histogram",
    ),
    ("outbound_http_route_backend_response_statuses", "counter"),
    ("outbound_grpc_route_request_duration_seconds", "histogram"),
    ("outbound_grpc_route_request_statuses", "counter"),
    ("outbound_grpc_route_requests_in_flight", "gauge"),
    ("outbound_grpc_route_retry_requests", "counter"),
    ("outbound_grpc_route_retry_successes", "counter"),
    ("outbound_grpc_route_retry_limit_exceeded", "counter"),
    ("outbound_grpc_route_retry_overflow", "counter"),
    ("outbound_grpc_route_backend_requests", "counter"),
    (
        "outbound_grpc_route_backend_response_duration_seconds",
        "histogram",
    ),
    ("outbound_grpc_route_backend_response_statuses", "counter"),
    ("http_stream_resets", "counter"),
    ("http_server_connections_open", "gauge"),
    ("balancer_endpoints", "gauge"),
    ("access_log_dropped", "counter"),
];

#[tokio::test]
async fn every_family_is_described_before_traffic() {
    let mut registry = Registry::default();
    let _metrics = Metrics::register(&mut registry);
    let s = scrape(&MetricsService::new(Arc::new(registry))).await;
    for (name, ty) in FAMILIES {
        assert_eq!(
            s.family_type(name),
            Some(ty),
            "{name} is described before any traffic"
        );
    }
    assert_eq!(
        s.families.len(),
        FAMILIES.len(),
        "no other family: {:?}",
        s.families
    );
    assert_eq!(s.get("access_log_dropped_total", &[]), Some(0.0));
    // prometheus-client ends every HELP text with a period of its own.
    let text = scrape_text(&MetricsService::new(Arc::new(registry_with_metrics()))).await;
    for line in text.lines().filter(|l| l.starts_with("# HELP")) {
        assert!(
            line.ends_with('.') && !line.ends_with(".."),
            "one period: {line}"
        );
    }
}

fn registry_with_metrics() -> Registry {
    let mut registry = Registry::default();
    let _metrics = Metrics::register(&mut registry);
    registry
}

fn http_backend(req: &Request<RequestBody<Full<Bytes>>>) -> Result<Response<TestBody>, BoxError> {
    let ok = |status: u16| {
        Response::builder()
            .status(status)
            .body(body(MockBody::new().data("hello")))
            .map_err(BoxError::from)
    };
    // The retry crate's own outcome type, read by the default extractors of both crates.
    let with_retry = |mut rsp: Response<TestBody>, attempts, stopped| {
        rsp.extensions_mut()
            .insert(RetryOutcome { attempts, stopped });
        rsp.extensions_mut().insert(BackendName::from("svc-a"));
        rsp
    };
    match req.uri().path() {
        "/ok" => ok(200),
        "/fail" => ok(500),
        "/timeout" => Err(ProxyError::request_timeout().into()),
        "/reset" => Err(h2::Error::from(h2::Reason::REFUSED_STREAM).into()),
        "/cancel" => Ok(Response::new(body(MockBody::new().data("part").hang()))),
        "/retried" => Ok(with_retry(ok(200)?, 3, None)),
        "/limit" => Ok(with_retry(ok(503)?, 2, Some(RetryStop::DeadlinePassed))),
        "/overflow" => Ok(with_retry(ok(503)?, 1, Some(RetryStop::BudgetExhausted))),
        "/summary" => {
            // Another retry layer's summary, read by the metrics' default extractor only.
            let mut rsp = ok(200)?;
            rsp.extensions_mut().insert(RetrySummary {
                attempts: 1,
                stopped: Some(RetryStopKind::Overflow),
            });
            Ok(rsp)
        }
        _ => ok(404),
    }
}

fn grpc_backend(req: &Request<RequestBody<Full<Bytes>>>) -> Result<Response<TestBody>, BoxError> {
    let code = match req.uri().path() {
        "/pkg.Svc/Ok" => "0",
        "/pkg.Svc/Unavailable" => "14",
        _ => return Err(ProxyError::request_timeout().into()),
    };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static(code));
    let mut rsp = Response::new(body(MockBody::new().data("msg").trailers(trailers)));
    rsp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    Ok(rsp)
}

#[tokio::test]
async fn known_traffic_gives_exact_samples_and_matches_the_access_log() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let admin = MetricsService::new(Arc::new(registry));
    let lines = Lines::default();
    let mut config = WriterConfig::new(Format::Json);
    config.dropped = metrics.access_log_dropped.cell().clone();
    let writer =
        AccessLogWriter::spawn(Output::Writer(Box::new(lines.clone())), config).expect("spawn");

    let http = ServiceBuilder::new()
        .layer(AccessLogLayer::new(writer.clone()))
        .layer(ClassifyLayer::default())
        .layer(metrics.http.route_layer("web"))
        .layer(metrics.http.backend_layer("web", "svc-a"))
        .service(service_fn(|req| async move { http_backend(&req) }));
    let grpc = ServiceBuilder::new()
        .layer(AccessLogLayer::new(writer.clone()))
        .layer(ClassifyLayer::default())
        .layer(metrics.grpc.route_layer("grpc-svc"))
        .service(service_fn(|req| async move { grpc_backend(&req) }));

    let get = |path: &str| {
        Request::get(path)
            .body(Full::<Bytes>::default())
            .expect("request")
    };
    let grpc_req = |path: &str| {
        Request::post(path)
            .version(http::Version::HTTP_2)
            .header("content-type", "application/grpc")
            .body(Full::<Bytes>::default())
            .expect("request")
    };

    // In flight until the body ends, not at the headers.
    let rsp = http.clone().oneshot(get("/ok")).await.expect("response");
    let s = scrape(&admin).await;
    assert_eq!(
        s.get(
            "outbound_http_route_requests_in_flight",
            &[("route_name", "web")]
        ),
        Some(1.0),
        "in flight after the headers"
    );
    rsp.into_body().collect().await.expect("body");
    let s = scrape(&admin).await;
    assert_eq!(
        s.get(
            "outbound_http_route_requests_in_flight",
            &[("route_name", "web")]
        ),
        Some(0.0),
        "released at the end of the body"
    );

    for path in [
        "/ok",
        "/ok",
        "/fail",
        "/fail",
        "/retried",
        "/limit",
        "/overflow",
        "/summary",
    ] {
        let rsp = http.clone().oneshot(get(path)).await.expect("response");
        rsp.into_body().collect().await.expect("body");
    }
    let err = http
        .clone()
        .oneshot(get("/timeout"))
        .await
        .expect_err("timeout");
    assert!(
        linkerd_http_classify::find_proxy_error(&*err).is_some(),
        "error passes through"
    );
    let mut reset = get("/reset");
    *reset.version_mut() = http::Version::HTTP_2;
    http.clone().oneshot(reset).await.expect_err("reset");
    // Cancelled after headers: the body is dropped mid-stream.
    let rsp = http.clone().oneshot(get("/cancel")).await.expect("headers");
    let mut b = rsp.into_body();
    b.frame().await.expect("a frame").expect("data");
    drop(b);
    // Cancelled before headers: the response future is dropped.
    let mut svc = http.clone();
    drop(svc.ready().await.expect("ready").call(get("/ok")));

    for path in ["/pkg.Svc/Ok", "/pkg.Svc/Unavailable"] {
        let rsp = grpc
            .clone()
            .oneshot(grpc_req(path))
            .await
            .expect("response");
        rsp.into_body().collect().await.expect("body");
    }
    grpc.clone()
        .oneshot(grpc_req("/pkg.Svc/Slow"))
        .await
        .expect_err("timeout");

    metrics.record_reset(Direction::Outbound, h2::Reason::REFUSED_STREAM);
    let conn = metrics.connection_opened(ConnectionProtocol::Http2);
    let _conn2 = metrics.connection_opened(ConnectionProtocol::Http1);
    drop(conn);
    metrics.set_endpoints(&Arc::from("svc-a"), 2, 1);

    let s = scrape(&admin).await;
    let statuses = "outbound_http_route_request_statuses_total";
    let web = |http: &'static str, error: &'static str| {
        [
            ("route_name", "web"),
            ("http_status", http),
            ("grpc_status", ""),
            ("error", error),
        ]
    };
    let expect = [
        (web("200", ""), 5.0, "3 /ok + /retried + /summary"),
        (web("500", ""), 2.0, "/fail"),
        (web("503", ""), 2.0, "/limit and /overflow"),
        (
            web("504", "REQUEST_TIMEOUT"),
            1.0,
            "a timeout error: the 504 the client receives",
        ),
        (
            web("", "RESET"),
            1.0,
            "an HTTP/2 client answered by a reset: no status",
        ),
        (web("200", "CANCEL"), 1.0, "body dropped after headers"),
        (web("", "CANCEL"), 1.0, "future dropped before headers"),
    ];
    for (labels, want, why) in &expect {
        assert_eq!(s.get(statuses, labels), Some(*want), "{why}: {labels:?}");
    }
    assert_eq!(
        s.matching(statuses, &[]).count(),
        expect.len(),
        "no other status samples: {:?}",
        s.matching(statuses, &[]).collect::<Vec<_>>()
    );
    let total: f64 = expect.iter().map(|e| e.1).sum();
    assert_eq!(total, 13.0, "each of the 13 requests recorded exactly once");
    assert_eq!(
        s.get(
            "outbound_http_route_request_duration_seconds_count",
            &[("route_name", "web")]
        ),
        Some(total),
        "one duration per request"
    );
    assert_eq!(
        s.get(
            "outbound_http_route_requests_in_flight",
            &[("route_name", "web")]
        ),
        Some(0.0)
    );
    let backend = [("route_name", "web"), ("backend_name", "svc-a")];
    assert_eq!(
        s.get("outbound_http_route_backend_requests_total", &backend),
        Some(13.0)
    );
    assert_eq!(
        s.sum(
            "outbound_http_route_backend_response_statuses_total",
            &backend
        ),
        13.0,
        "backend statuses once per request"
    );
    assert_eq!(
        s.get(
            "outbound_http_route_backend_response_duration_seconds_count",
            &backend
        ),
        Some(13.0)
    );

    let route = [("route_name", "web")];
    let retries = s
        .get("outbound_http_route_retry_requests_total", &route)
        .expect("retries");
    assert_eq!(retries, 3.0, "retries, not first attempts: 2 + 1");
    assert_eq!(
        s.get("outbound_http_route_retry_successes_total", &route),
        Some(1.0)
    );
    assert_eq!(
        s.get("outbound_http_route_retry_limit_exceeded_total", &route),
        Some(1.0)
    );
    assert_eq!(
        s.get("outbound_http_route_retry_overflow_total", &route),
        Some(2.0),
        "budget exhausted (RetryOutcome) and a RetrySummary overflow"
    );

    let g = |grpc: &'static str, error: &'static str| {
        [
            ("route_name", "grpc-svc"),
            ("http_status", "200"),
            ("grpc_status", grpc),
            ("error", error),
        ]
    };
    let gs = "outbound_grpc_route_request_statuses_total";
    assert_eq!(s.get(gs, &g("OK", "")), Some(1.0), "gRPC success");
    assert_eq!(
        s.get(gs, &g("UNAVAILABLE", "")),
        Some(1.0),
        "gRPC error in trailers"
    );
    assert_eq!(
        s.get(gs, &g("DEADLINE_EXCEEDED", "REQUEST_TIMEOUT")),
        Some(1.0),
        "a gRPC timeout: 200 with DEADLINE_EXCEEDED"
    );
    assert_eq!(s.matching(gs, &[]).count(), 3, "no other gRPC samples");

    assert_eq!(
        s.get(
            "http_stream_resets_total",
            &[("direction", "outbound"), ("reason", "REFUSED_STREAM")]
        ),
        Some(1.0)
    );
    assert_eq!(
        s.get("http_server_connections_open", &[("protocol", "http2")]),
        Some(0.0)
    );
    assert_eq!(
        s.get("http_server_connections_open", &[("protocol", "http1")]),
        Some(1.0)
    );
    assert_eq!(
        s.sum("balancer_endpoints", &[("backend_name", "svc-a")]),
        3.0,
        "summed over states: the endpoint count"
    );
    assert_eq!(
        s.get(
            "balancer_endpoints",
            &[("backend_name", "svc-a"), ("state", "ready")]
        ),
        Some(2.0)
    );

    // The access log tells the same story.
    assert!(writer.flush_blocking(), "writer running");
    let text = String::from_utf8(lines.0.lock().expect("lock").clone()).expect("utf-8");
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(
        records.len(),
        16,
        "13 HTTP (one cancelled before headers) + 3 gRPC lines"
    );
    let limit = records
        .iter()
        .find(|v| v["uri"] == "/limit")
        .expect("the /limit line");
    assert_eq!(
        limit["backend"], "svc-a",
        "the access log reads BackendName by default"
    );
    assert_eq!(limit["attempts"], 2, "and RetryOutcome");
    let web_records: Vec<&Value> = records
        .iter()
        .filter(|v| !v["uri"].as_str().unwrap_or("").starts_with("/pkg"))
        .collect();
    let attempts: u64 = web_records
        .iter()
        .map(|v| v["attempts"].as_u64().expect("attempts"))
        .sum();
    assert_eq!(
        attempts - web_records.len() as u64,
        retries as u64,
        "retry_requests_total equals attempts minus requests in the access log"
    );
    let status_of = |uri: &str| {
        records
            .iter()
            .filter(|v| v["uri"] == uri)
            .map(|v| {
                (
                    v["status"].as_u64().unwrap_or(999),
                    v["error"].as_str().map(str::to_owned),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        status_of("/reset"),
        vec![(0, Some("RESET".to_owned()))],
        "access log agrees on the reset"
    );
    assert_eq!(status_of("/cancel"), vec![(200, Some("CANCEL".to_owned()))]);
    assert_eq!(
        s.get("access_log_dropped_total", &[]),
        Some(writer.dropped() as f64),
        "the shared counter is the writer's"
    );
}

#[tokio::test]
async fn dropped_access_log_lines_are_scraped() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let admin = MetricsService::new(Arc::new(registry));
    // An output that fails every write: each line is lost and counted.
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::Error::other("disk full"))
        }
    }
    let mut config = WriterConfig::new(Format::Json);
    config.dropped = metrics.access_log_dropped.cell().clone();
    config.capacity = 16;
    let writer = AccessLogWriter::spawn(Output::Writer(Box::new(Broken)), config).expect("spawn");
    let svc = ServiceBuilder::new()
        .layer(AccessLogLayer::new(writer.clone()))
        .service(service_fn(
            |_req: Request<RequestBody<Full<Bytes>>>| async {
                Ok::<_, BoxError>(
                    Response::builder()
                        .status(StatusCode::NO_CONTENT)
                        .body(Full::<Bytes>::default())?,
                )
            },
        ));
    for _ in 0..5 {
        let rsp = svc
            .clone()
            .oneshot(Request::new(Full::default()))
            .await
            .expect("response");
        rsp.into_body().collect().await.expect("body");
    }
    assert!(writer.flush_blocking(), "writer running");
    let s = scrape(&admin).await;
    assert_eq!(
        s.get("access_log_dropped_total", &[]),
        Some(5.0),
        "every lost line is counted"
    );
}

/// Notes 3 attempts when dropped, as a retry layer's future does when the client goes away
/// during its third attempt.
struct ThirdAttempt;

impl Drop for ThirdAttempt {
    fn drop(&mut self) {
        linkerd_http_classify::dropped::note(|n| n.attempts_or(3));
    }
}

#[tokio::test]
async fn retries_before_a_cancel_are_counted() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let admin = MetricsService::new(Arc::new(registry));
    let mut svc = ServiceBuilder::new()
        .layer(metrics.http.route_layer("web"))
        .service(service_fn(|_: Request<Full<Bytes>>| {
            let guard = ThirdAttempt;
            async move {
                std::future::pending::<()>().await;
                drop(guard);
                Ok::<_, BoxError>(Response::new(Full::<Bytes>::default()))
            }
        }));
    let mut fut = Box::pin(
        svc.ready()
            .await
            .expect("ready")
            .call(Request::new(Full::default())),
    );
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(std::future::Future::poll(fut.as_mut(), &mut cx).is_pending());
    drop(fut);
    let s = scrape(&admin).await;
    let route = [("route_name", "web")];
    assert_eq!(
        s.get("outbound_http_route_retry_requests_total", &route),
        Some(2.0),
        "the two retries made before the client went away"
    );
    assert_eq!(
        s.get(
            "outbound_http_route_request_statuses_total",
            &[
                ("route_name", "web"),
                ("http_status", ""),
                ("grpc_status", ""),
                ("error", "CANCEL")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        s.get("outbound_http_route_retry_limit_exceeded_total", &route),
        Some(0.0)
    );
}

#[tokio::test]
async fn retries_that_ran_out_are_no_success_whatever_the_status() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let admin = MetricsService::new(Arc::new(registry));
    // A 429 in `codes` is retried; it classifies as a success (not 5xx), but the retries
    // ran out on it.
    let svc = ServiceBuilder::new()
        .layer(metrics.http.route_layer("web"))
        .service(service_fn(|req: Request<Full<Bytes>>| async move {
            let (status, stopped) = match req.uri().path() {
                "/ran-out" => (429, Some(RetryStop::LimitExceeded)),
                _ => (200, None),
            };
            let mut rsp = Response::builder()
                .status(status)
                .body(Full::<Bytes>::default())
                .map_err(BoxError::from)?;
            rsp.extensions_mut().insert(RetryOutcome {
                attempts: 3,
                stopped,
            });
            Ok::<_, BoxError>(rsp)
        }));
    for path in ["/ran-out", "/retried-to-success"] {
        let rsp = svc
            .clone()
            .oneshot(Request::get(path).body(Full::default()).unwrap())
            .await
            .expect("response");
        rsp.into_body().collect().await.expect("body");
    }
    let s = scrape(&admin).await;
    let route = [("route_name", "web")];
    assert_eq!(
        s.get("outbound_http_route_retry_successes_total", &route),
        Some(1.0),
        "only the request retried to a success"
    );
    assert_eq!(
        s.get("outbound_http_route_retry_limit_exceeded_total", &route),
        Some(1.0)
    );
    assert_eq!(
        s.get("outbound_http_route_retry_requests_total", &route),
        Some(4.0)
    );
}
