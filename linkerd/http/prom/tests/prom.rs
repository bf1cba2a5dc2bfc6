//! The scrape service over a real socket, content negotiation, never-empty families and the
//! hand-written label values.

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd_http_classify::{Class, GrpcCode, ProxyErrorKind};
use linkerd_http_prom::{
    BackendLabels, ConnectionLabels, ConnectionProtocol, Direction, EndpointLabels, EndpointState,
    Format, LATENCY_SECONDS, MetricsService, ResetLabels, RouteLabels, Scrape, StatusLabels,
    register_counter, register_counter_family, register_gauge_family, register_histogram_family,
};
use prometheus_client::registry::Registry;
use proptest::prelude::*;
use std::sync::Arc;

fn registry() -> Registry {
    let mut registry = Registry::default();
    let route = registry.sub_registry_with_prefix("outbound_http_route");
    let statuses = register_counter_family::<(RouteLabels, StatusLabels)>(
        route,
        "request_statuses_total",
        "Statuses.",
    );
    let _ = register_histogram_family::<BackendLabels>(
        route,
        "backend_response_duration_seconds",
        "Durations.",
        LATENCY_SECONDS,
    );
    let resets =
        register_counter_family::<ResetLabels>(&mut registry, "http_stream_resets", "Resets.");
    let conns = register_gauge_family::<ConnectionLabels>(
        &mut registry,
        "http_server_connections_open",
        "Open.",
    );
    let eps = register_gauge_family::<EndpointLabels>(&mut registry, "balancer_endpoints", "Eps.");
    let dropped = register_counter(&mut registry, "access_log_dropped", "Dropped.");
    statuses
        .get_or_create(&(
            RouteLabels::new("web"),
            StatusLabels::from_class(&Class::grpc(
                StatusCode::OK,
                Some(GrpcCode::DEADLINE_EXCEEDED),
                false,
            )),
        ))
        .inc();
    statuses
        .get_or_create(&(
            RouteLabels::new("web"),
            StatusLabels::from_class(&Class::failed(
                None,
                None,
                ProxyErrorKind::Reset(h2::Reason::REFUSED_STREAM),
            )),
        ))
        .inc_by(2);
    resets
        .get_or_create(&ResetLabels::new(Direction::Outbound, h2::Reason::CANCEL))
        .inc();
    conns
        .get_or_create(&ConnectionLabels {
            protocol: ConnectionProtocol::Http2,
        })
        .set(3);
    eps.get_or_create(&EndpointLabels::new("svc", EndpointState::Pending))
        .set(1);
    dropped.inc_by(7);
    registry
}

async fn serve(svc: MetricsService) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        // Bounded: the test makes at most a handful of connections.
        for _ in 0..16 {
            let Ok((io, _)) = listener.accept().await else {
                return;
            };
            let svc = hyper_util::service::TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(io), svc).await;
            });
        }
    });
    addr
}

async fn get(addr: std::net::SocketAddr, accept: Option<&str>) -> (http::Response<()>, String) {
    let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    let (mut send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::get("/metrics");
    if let Some(a) = accept {
        req = req.header(header::ACCEPT, a);
    }
    let rsp = send
        .send_request(req.body(Empty::<Bytes>::new()).expect("request"))
        .await
        .expect("response");
    let (parts, body) = rsp.into_parts();
    let text = body.collect().await.expect("body").to_bytes();
    (
        http::Response::from_parts(parts, ()),
        String::from_utf8(text.to_vec()).expect("utf-8"),
    )
}

#[tokio::test]
async fn serves_openmetrics_by_default_and_prometheus_on_request() {
    let addr = serve(MetricsService::new(Arc::new(registry()))).await;

    let (rsp, text) = get(addr, None).await;
    assert_eq!(rsp.status(), 200, "a GET is answered");
    assert_eq!(
        rsp.headers()[header::CONTENT_TYPE],
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        "OpenMetrics is the default"
    );
    assert!(
        text.ends_with("# EOF\n"),
        "an OpenMetrics exposition ends with EOF"
    );
    let scrape = Scrape::parse(&text).expect("parses");
    assert_eq!(
        scrape.get(
            "outbound_http_route_request_statuses_total",
            &[
                ("route_name", "web"),
                ("http_status", "200"),
                ("grpc_status", "DEADLINE_EXCEEDED"),
                ("error", "")
            ]
        ),
        Some(1.0),
        "gRPC codes are UPPER_SNAKE names"
    );
    assert_eq!(
        scrape.get(
            "outbound_http_route_request_statuses_total",
            &[
                ("route_name", "web"),
                ("http_status", ""),
                ("grpc_status", ""),
                ("error", "RESET")
            ]
        ),
        Some(2.0),
        "a reset without a response has an empty http_status"
    );
    assert_eq!(
        scrape.family_type("outbound_http_route_backend_response_duration_seconds"),
        Some("histogram"),
        "an empty histogram family is still described"
    );
    assert!(
        scrape
            .matching(
                "outbound_http_route_backend_response_duration_seconds_count",
                &[]
            )
            .next()
            .is_none(),
        "an empty family has no samples"
    );
    assert_eq!(
        scrape.get(
            "http_stream_resets_total",
            &[("direction", "outbound"), ("reason", "CANCEL")]
        ),
        Some(1.0),
        "direction is lower-case, reason is the RFC name"
    );
    assert_eq!(
        scrape.get("http_server_connections_open", &[("protocol", "http2")]),
        Some(3.0)
    );
    assert_eq!(
        scrape.get(
            "balancer_endpoints",
            &[("backend_name", "svc"), ("state", "pending")]
        ),
        Some(1.0),
        "state is lower-case"
    );
    assert_eq!(scrape.get("access_log_dropped_total", &[]), Some(7.0));

    let (rsp, text) = get(
        addr,
        Some("text/plain;version=0.0.4;q=0.9, application/openmetrics-text;q=0.5"),
    )
    .await;
    assert_eq!(
        rsp.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8",
        "text/plain preferred gets Prometheus text"
    );
    assert!(!text.contains("# EOF"), "Prometheus text has no EOF marker");
    let scrape = Scrape::parse(&text).expect("parses");
    assert_eq!(
        scrape.get("access_log_dropped_total", &[]),
        Some(7.0),
        "same samples in both formats"
    );
    assert_eq!(
        scrape.family_type("access_log_dropped_total"),
        Some("counter")
    );
}

#[tokio::test]
async fn other_methods_are_refused() {
    use tower::ServiceExt;
    let svc = MetricsService::new(Arc::new(Registry::default()));
    let rsp = svc
        .clone()
        .oneshot(Request::post("/metrics").body(()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(
        rsp.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "POST is refused"
    );
    let rsp = svc
        .oneshot(Request::head("/metrics").body(()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(rsp.status(), 200, "HEAD is answered");
    let body = rsp.into_body().collect().await.expect("body").to_bytes();
    assert!(body.is_empty(), "HEAD has no body");
}

#[test]
fn negotiation_table() {
    let cases: &[(&str, Format)] = &[
        ("", Format::OpenMetrics),
        ("*/*", Format::OpenMetrics),
        ("text/plain", Format::Prometheus),
        ("text/*", Format::Prometheus),
        ("text/plain;version=0.0.4", Format::Prometheus),
        // What Prometheus 2.x sends: OpenMetrics preferred.
        (
            "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
            Format::OpenMetrics,
        ),
        (
            "application/openmetrics-text;q=0.2, text/plain;q=0.3",
            Format::Prometheus,
        ),
        (
            "text/plain;q=0.5, application/openmetrics-text;q=0.5",
            Format::OpenMetrics,
        ),
        ("text/plain;q=0, */*", Format::OpenMetrics),
        ("application/json", Format::OpenMetrics),
        ("TEXT/PLAIN", Format::Prometheus),
    ];
    for (accept, want) in cases {
        let mut h = http::HeaderMap::new();
        if !accept.is_empty() {
            h.insert(header::ACCEPT, accept.parse().expect("valid header"));
        }
        assert_eq!(Format::negotiate(&h), *want, "Accept: {accept:?}");
    }
}

proptest! {
    #[test]
    fn label_values_round_trip(name in ".{0,24}", count in 1u64..1000) {
        let mut registry = Registry::default();
        let f = register_counter_family::<RouteLabels>(&mut registry, "requests", "R.");
        f.get_or_create(&RouteLabels::new(name.as_str())).inc_by(count);
        let text = Format::OpenMetrics.encode(&registry).expect("encodes");
        let scrape = Scrape::parse(&text).expect("parses");
        prop_assert_eq!(
            scrape.get("requests_total", &[("route_name", name.as_str())]),
            Some(count as f64),
            "any route name survives encoding and parsing"
        );
    }
}
