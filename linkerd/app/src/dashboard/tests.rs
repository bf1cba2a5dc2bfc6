use super::*;
use crate::tap::TapConfig;
use http_body_util::BodyExt;
use linkerd_http_metrics::Metrics;
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// A registry with the proxy's families and `ok` successes and `failed` 503s on route `api`.
async fn registry_with_traffic(ok: usize, failed: usize) -> Arc<Registry> {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let route = ServiceBuilder::new()
        .layer(metrics.http.route_layer("api"))
        .layer(metrics.http.backend_layer("api", "web"))
        .service(service_fn(|req: Request<Full<Bytes>>| async move {
            let status = if req.uri().path() == "/fail" {
                503
            } else {
                200
            };
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::from_static(b"x")))
        }));
    for path in std::iter::repeat_n("/ok", ok).chain(std::iter::repeat_n("/fail", failed)) {
        let req = Request::get(path)
            .body(Full::default())
            .expect("valid request");
        let rsp = route.clone().oneshot(req).await.expect("response");
        rsp.into_body().collect().await.expect("body");
    }
    metrics.set_endpoints(&Arc::from("web"), 2, 1);
    Arc::new(registry)
}

async fn body_text(rsp: Response<DashboardBody>) -> String {
    let bytes = rsp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(bytes.to_vec()).expect("UTF-8 body")
}

#[tokio::test]
async fn stats_come_from_the_registry() {
    let dashboard = Dashboard::new(registry_with_traffic(30, 10).await, None);
    let stats = dashboard.stats();
    let api = stats
        .routes
        .iter()
        .find(|r| r.kind == "http" && r.name == "api")
        .expect("route api in the stats");
    assert_eq!(api.golden.requests, 40.0, "every request counted once");
    assert_eq!(api.golden.success_rate, Some(0.75), "30 of 40 succeeded");
    assert!(
        api.golden.p50_ms.is_some(),
        "latency quantiles with traffic"
    );
    let web = stats
        .backends
        .iter()
        .find(|b| b.route == "api" && b.name == "web")
        .expect("backend web in the stats");
    assert_eq!(
        web.golden.success_rate,
        Some(0.75),
        "the backend saw the same"
    );
    assert_eq!(
        (web.endpoints_ready, web.endpoints_pending),
        (2.0, 1.0),
        "endpoint states from balancer_endpoints"
    );
}

#[tokio::test(start_paused = true)]
async fn windows_compare_with_the_history() {
    let dashboard = Dashboard::new(registry_with_traffic(4, 0).await, None);
    // The first sample comes after the requests finished (a sampler task that ran late).
    dashboard.sample();
    let stats = dashboard.stats();
    let api = stats.routes.iter().find(|r| r.name == "api").expect("api");
    assert_eq!(
        api.golden.requests, 4.0,
        "a proxy younger than the window counts every request since start"
    );
    assert_eq!(api.spark.len(), 0, "one sample gives no interval yet");
    tokio::time::advance(Duration::from_secs(1)).await;
    dashboard.sample();
    let stats = dashboard.stats();
    let api = stats.routes.iter().find(|r| r.name == "api").expect("api");
    assert_eq!(api.spark.len(), 1, "two samples give one sparkline point");
    assert_eq!(api.golden.requests, 4.0, "still inside the window");

    tokio::time::advance(Duration::from_secs(WINDOW)).await;
    dashboard.sample();
    let stats = dashboard.stats();
    let api = stats.routes.iter().find(|r| r.name == "api").expect("api");
    assert_eq!(
        api.golden.requests, 0.0,
        "requests before the sample a window old are outside the window"
    );
    assert!(
        (stats.window_seconds - WINDOW as f64).abs() < 1e-9,
        "the window is measured from that sample: {}",
        stats.window_seconds
    );
}

#[tokio::test]
async fn history_is_bounded() {
    let dashboard = Dashboard::new(registry_with_traffic(1, 0).await, None);
    for _ in 0..(SPARK_POINTS + 50) {
        dashboard.sample();
    }
    let h = dashboard.history();
    assert_eq!(
        h.spark.len(),
        SPARK_POINTS + 1,
        "sparkline samples are capped"
    );
    assert_eq!(
        h.full.len(),
        usize::try_from(WINDOW).expect("small") + 1,
        "full snapshots cover the window only"
    );
}

#[tokio::test]
async fn routes_page_stats_and_tap() {
    let tap = Tap::new(TapConfig::default());
    let dashboard = Dashboard::new(registry_with_traffic(1, 1).await, Some(tap));
    let get = |path: &str| Request::get(path).body(()).expect("valid request");

    let page = dashboard.respond(&get("/")).expect("the page at /");
    assert_eq!(page.status(), StatusCode::OK, "page served");
    assert_eq!(
        page.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    let html = body_text(page).await;
    for external in ["src=\"http", "href=\"http", "@import", "url(http", "//cdn"] {
        assert!(
            !html.contains(external),
            "the page loads nothing external ({external})"
        );
    }

    let stats = dashboard.respond(&get("/api/stats")).expect("stats");
    assert_eq!(stats.headers()[header::CONTENT_TYPE], "application/json");
    let json: serde_json::Value =
        serde_json::from_str(&body_text(stats).await).expect("stats are JSON");
    assert_eq!(json["routes"][0]["name"], "api", "routes listed");
    assert_eq!(
        json["routes"][0]["success_rate"], 0.5,
        "success rate as a fraction"
    );
    assert_eq!(json["tap"]["capacity"], 512, "tap counters included");

    let sse = dashboard.respond(&get("/api/tap?status=5xx")).expect("tap");
    assert_eq!(sse.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = sse.into_body();
    let first = body.frame().await.expect("a frame").expect("infallible");
    assert_eq!(
        first.into_data().expect("data"),
        "retry: 1000\n\n",
        "the stream starts with the reconnect delay"
    );
    assert_eq!(
        dashboard.tap().expect("tap").stats().viewers,
        1,
        "viewer counted"
    );
    drop(body);
    assert_eq!(
        dashboard.tap().expect("tap").stats().viewers,
        0,
        "viewer released"
    );

    let bad = dashboard.respond(&get("/api/tap?status=7xx")).expect("tap");
    assert_eq!(
        bad.status(),
        StatusCode::BAD_REQUEST,
        "a bad filter is a 400"
    );
    let post = Request::post("/api/stats").body(()).expect("valid request");
    assert_eq!(
        dashboard.respond(&post).expect("handled").status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "only GET and HEAD"
    );
    assert!(
        dashboard.respond(&get("/metrics")).is_none(),
        "other paths are not ours"
    );

    let off = Dashboard::new(registry_with_traffic(0, 0).await, None);
    assert_eq!(
        off.respond(&get("/api/tap")).expect("handled").status(),
        StatusCode::NOT_FOUND,
        "no tap, no stream"
    );
}
