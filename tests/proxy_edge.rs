//! The proxy binary from the outside (issue 9): routing over HTTP/1.1 and h2c, HEAD over
//! h2c, every row of DESIGN.md section 5 (except fail-fast and load shed) for HTTP and gRPC
//! clients, graceful shutdown on SIGTERM, `--check`.

mod support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{Empty, Full};
use linkerd_http_prom::Scrape;
use linkerd_http_test_util::{H2Client, HttpClient, ServerProtocol, TestServer, collect};
use std::{net::SocketAddr, time::Duration};
use support::{
    Proxy,
    raw_h2::{self, RawH2},
    reliability, run_proxy,
};

const STATUSES: &str = "outbound_http_route_request_statuses_total";
/// gRPC clients answered before routing are counted in the gRPC families.
const GRPC_STATUSES: &str = "outbound_grpc_route_request_statuses_total";

/// A config with one backend `b` (`protocol`) at `addr` and one route `r` holding `rules`
/// (YAML list items indented by 6 spaces), access log to stderr.
fn config(protocol: &str, addr: SocketAddr, rules: &str) -> String {
    format!(
        "accessLog: {{ format: json, output: stderr }}
backends:
  - name: b
    protocol: {protocol}
    endpoints: [{addr}]
routes:
  - name: r
    rules:
{rules}"
    )
}

/// What a section 5 row answers.
struct Row {
    path: &'static str,
    /// Extra request headers (scripting the backend).
    headers: &'static [(&'static str, &'static str)],
    http_status: u16,
    /// `(code, UPPER_SNAKE name)`; `None` for rows with no gRPC form.
    grpc: Option<(u8, &'static str)>,
    /// `l5d-proxy-error`.
    proxy_error: &'static str,
    /// The metric `error` label.
    label: &'static str,
}

/// Sends the row's request from an HTTP/1.1 client and from a gRPC client (h2c) and checks the
/// answers and the metric `error` label.
async fn check_row(proxy: &Proxy, row: &Row) {
    let mut h1 = HttpClient::http1(proxy.addr).await.expect("connect");
    let mut req = Request::get(row.path);
    for (k, v) in row.headers {
        req = req.header(*k, *v);
    }
    let rsp = h1
        .send(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .expect("HTTP/1.1 response");
    assert_eq!(
        rsp.status(),
        row.http_status,
        "{}: HTTP status ({:?})",
        row.path,
        rsp.headers().get("l5d-proxy-error")
    );
    assert_eq!(
        rsp.headers()
            .get("l5d-proxy-error")
            .map(|v| v.to_str().unwrap()),
        Some(row.proxy_error),
        "{}: l5d-proxy-error",
        row.path
    );
    assert_eq!(
        rsp.headers()["content-length"],
        "0",
        "{}: synthetic responses have content-length 0",
        row.path
    );
    let body = collect(rsp.into_body()).await.expect("body");
    assert!(body.data.is_empty(), "{}: empty body", row.path);

    if let Some((code, _)) = row.grpc {
        let mut h2 = H2Client::connect(proxy.addr).await.expect("connect h2");
        let rsp = h2
            .request(grpc_request(row.path, row.headers))
            .await
            .expect("gRPC response");
        assert_eq!(rsp.status, StatusCode::OK, "{}: gRPC HTTP status", row.path);
        assert_eq!(
            rsp.headers.get("grpc-status").map(|v| v.to_str().unwrap()),
            Some(code.to_string().as_str()),
            "{}: trailers-only grpc-status in the headers",
            row.path
        );
        assert_eq!(
            rsp.headers
                .get("l5d-proxy-error")
                .map(|v| v.to_str().unwrap()),
            Some(row.proxy_error),
            "{}: gRPC l5d-proxy-error",
            row.path
        );
        assert!(
            rsp.headers.contains_key("grpc-message"),
            "{}: grpc-message",
            row.path
        );
        assert!(rsp.data.is_empty(), "{}: trailers-only", row.path);
        assert!(rsp.trailers.is_none(), "{}: trailers-only", row.path);
    }

    let status = row.http_status.to_string();
    let http_labels = [
        ("route_name", "r"),
        ("http_status", status.as_str()),
        ("grpc_status", ""),
        ("error", row.label),
    ];
    let grpc_labels = row.grpc.map(|(_, name)| {
        [
            ("route_name", "r"),
            ("http_status", "200"),
            ("grpc_status", name),
            ("error", row.label),
        ]
    });
    let scrape = proxy
        .scrape_until(|s| {
            s.get(STATUSES, &http_labels) == Some(1.0)
                && grpc_labels.is_none_or(|l| s.get(STATUSES, &l) == Some(1.0))
        })
        .await;
    assert_eq!(
        scrape.get(STATUSES, &http_labels),
        Some(1.0),
        "{}: HTTP request counted with error={:?}; samples: {:#?}",
        row.path,
        row.label,
        statuses(&scrape)
    );
    if let Some(labels) = grpc_labels {
        assert_eq!(
            scrape.get(STATUSES, &labels),
            Some(1.0),
            "{}: gRPC request counted with error={:?}; samples: {:#?}",
            row.path,
            row.label,
            statuses(&scrape)
        );
    }
}

/// The access-log lines (JSON on the proxy's stderr) printed so far, waiting up to 5 s for
/// `n` of them.
async fn access_lines(proxy: &Proxy, n: usize) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while lines.len() < n && tokio::time::Instant::now() < until {
        lines.extend(
            proxy
                .stderr_lines()
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v.get("uri").is_some()),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lines
}

/// Waits (up to 5 s) for `n` access-log lines (JSON on the proxy's stderr) and asserts that
/// each names route `r` and backend `b`: a timeout answer still says where the request went.
async fn assert_logged_route_and_backend(proxy: &Proxy, n: usize) {
    let lines = access_lines(proxy, n).await;
    assert_eq!(lines.len(), n, "{lines:#?}");
    for v in &lines {
        assert_eq!(v["route"], "r", "{v}");
        assert_eq!(v["backend"], "b", "the backend the request went to: {v}");
    }
}

/// Asserts that backend `b`'s attempts that `label`'s timeout cut are counted with that
/// label in `backend_response_statuses_total` (the proxy's timer cut them: no `CANCEL`).
async fn assert_backend_attempts_labelled(proxy: &Proxy, label: &str, attempts: f64) {
    const BACKEND_STATUSES: &str = "outbound_http_route_backend_response_statuses_total";
    const GRPC_BACKEND_STATUSES: &str = "outbound_grpc_route_backend_response_statuses_total";
    let labels = [("backend_name", "b"), ("http_status", ""), ("error", label)];
    let count =
        |s: &Scrape| s.sum(BACKEND_STATUSES, &labels) + s.sum(GRPC_BACKEND_STATUSES, &labels);
    let scrape = proxy.scrape_until(|s| count(s) >= attempts).await;
    assert_eq!(count(&scrape), attempts, "{:#?}", statuses(&scrape));
    let cancel = [("backend_name", "b"), ("error", "CANCEL")];
    assert_eq!(
        scrape.sum(BACKEND_STATUSES, &cancel) + scrape.sum(GRPC_BACKEND_STATUSES, &cancel),
        0.0,
        "no client went away: {:#?}",
        statuses(&scrape)
    );
}

fn statuses(scrape: &Scrape) -> Vec<String> {
    scrape
        .samples
        .iter()
        .filter(|s| s.name.ends_with("statuses_total"))
        .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
        .collect()
}

fn grpc_request(path: &str, headers: &[(&str, &str)]) -> Request<Bytes> {
    let mut req = Request::post(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    // One empty length-prefixed message.
    req.body(Bytes::from_static(&[0, 0, 0, 0, 0])).unwrap()
}

// === routing ===

#[tokio::test]
async fn routes_http1_and_h2c_requests() {
    let backend = TestServer::backend().await.unwrap();
    let proxy = Proxy::start(
        &config(
            "http1",
            backend.addr(),
            "      - matches: [{ path: { type: PathPrefix, value: / } }]
        backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    for (name, mut client) in [
        ("HTTP/1.1", HttpClient::http1(proxy.addr).await.unwrap()),
        ("h2c", HttpClient::http2(proxy.addr).await.unwrap()),
    ] {
        let req = Request::post("/hello?x=1")
            .body(Full::new(Bytes::from_static(b"ping")))
            .unwrap();
        let rsp = client.send(req).await.expect("response");
        assert_eq!(rsp.status(), 200, "{name}: routed to the backend");
        assert_eq!(
            rsp.headers()["x-backend-addr"],
            backend.addr().to_string().as_str(),
            "{name}: answered by the backend"
        );
        assert_eq!(
            rsp.headers()["x-backend-version"],
            "HTTP/1.1",
            "{name}: an http1 backend is spoken to in HTTP/1.1"
        );
        let body = collect(rsp.into_body()).await.unwrap();
        assert_eq!(body.data, "ping", "{name}: request body echoed");
    }
    let received = backend.requests();
    assert_eq!(received.len(), 2, "both requests reached the backend");
    assert!(
        received.iter().all(|r| r.uri.path() == "/hello"),
        "path kept: {received:?}"
    );
    let scrape = proxy
        .scrape_until(|s| s.sum(STATUSES, &[("route_name", "r")]) == 2.0)
        .await;
    assert_eq!(
        scrape.get(
            STATUSES,
            &[
                ("route_name", "r"),
                ("http_status", "200"),
                ("grpc_status", ""),
                ("error", "")
            ]
        ),
        Some(2.0),
        "two successes counted: {:#?}",
        statuses(&scrape)
    );
}

/// An HTTP/2 upstream that sends its whole `content-length` and its END_STREAM in a frame of
/// its own, later: an HTTP/1.1 client gets the complete body (hyper's server stops reading
/// the body once the length is written) and the request is a success in the metrics and
/// the access log, not `CANCEL` (no client went away).
#[tokio::test]
async fn a_body_complete_by_length_is_no_cancel() {
    let backend = TestServer::serve(ServerProtocol::Http2, |_req| async {
        Ok::<_, std::convert::Infallible>(
            http::Response::builder()
                .header("content-length", "10")
                .body(
                    linkerd_http_test_util::MockBody::new()
                        .data("0123456789")
                        .delay(Duration::from_millis(300)),
                )
                .unwrap(),
        )
    })
    .await
    .unwrap();
    let proxy = Proxy::start(
        &config(
            "http2",
            backend.addr(),
            "      - backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    let mut h1 = HttpClient::http1(proxy.addr).await.unwrap();
    for _ in 0..3 {
        let rsp = h1.get("/whole").await.expect("response");
        assert_eq!(rsp.status(), StatusCode::OK);
        let body = collect(rsp.into_body()).await.expect("a whole body");
        assert_eq!(body.data, Bytes::from_static(b"0123456789"));
    }
    let ok = [
        ("route_name", "r"),
        ("http_status", "200"),
        ("grpc_status", ""),
        ("error", ""),
    ];
    let scrape = proxy
        .scrape_until(|s| s.get(STATUSES, &ok) == Some(3.0))
        .await;
    assert_eq!(
        scrape.get(STATUSES, &ok),
        Some(3.0),
        "{:#?}",
        statuses(&scrape)
    );
    let backend_ok = [("backend_name", "b"), ("http_status", "200"), ("error", "")];
    assert_eq!(
        scrape.sum(
            "outbound_http_route_backend_response_statuses_total",
            &backend_ok
        ),
        3.0,
        "{:#?}",
        statuses(&scrape)
    );
    let lines = access_lines(&proxy, 3).await;
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for v in &lines {
        assert_eq!(v["status"], 200, "{v}");
        assert_eq!(v["error"], serde_json::Value::Null, "{v}");
        assert_eq!(v["response_bytes"], 10, "{v}");
    }
}

/// Answers without content (to HEAD; 204; 304) from an HTTP/2 upstream whose END_STREAM
/// comes in a frame of its own, later: the client gets the answer, and the request is a
/// success in the metrics and the access log, not `CANCEL` (no client went away).
#[tokio::test]
async fn bodiless_answers_with_a_late_end_of_stream_are_no_cancel() {
    let backend = TestServer::serve(ServerProtocol::Http2, |req: Request<_>| async move {
        let status = match req.uri().path() {
            "/no-content" => 204,
            "/not-modified" => 304,
            _ => 200,
        };
        let mut rsp = http::Response::builder().status(status);
        if status == 200 {
            rsp = rsp.header("content-length", "10");
        }
        // No data: the body ends 300 ms after the headers (an empty DATA frame with
        // END_STREAM).
        Ok::<_, std::convert::Infallible>(
            rsp.body(linkerd_http_test_util::MockBody::new().delay(Duration::from_millis(300)))
                .unwrap(),
        )
    })
    .await
    .unwrap();
    let proxy = Proxy::start(
        &config(
            "http2",
            backend.addr(),
            "      - backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    let mut h1 = HttpClient::http1(proxy.addr).await.unwrap();
    let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
    for (method, path, status) in [
        ("HEAD", "/head", 200),
        ("GET", "/no-content", 204),
        ("GET", "/not-modified", 304),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let rsp = h1.send(req).await.expect("HTTP/1.1 answer");
        assert_eq!(rsp.status(), status, "{method} {path}");
        collect(rsp.into_body()).await.expect("complete");
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Bytes::new())
            .unwrap();
        let rsp = h2.request(req).await.expect("h2c answer");
        assert_eq!(rsp.status, status, "{method} {path}");
        assert!(rsp.body_error.is_none(), "{method} {path}: {rsp:?}");
    }
    let scrape = proxy
        .scrape_until(|s| s.sum(STATUSES, &[("error", "")]) >= 6.0)
        .await;
    assert_eq!(
        scrape.sum(STATUSES, &[("error", "")]),
        6.0,
        "{:#?}",
        statuses(&scrape)
    );
    assert_eq!(
        scrape.sum(STATUSES, &[("error", "CANCEL")]),
        0.0,
        "{:#?}",
        statuses(&scrape)
    );
}

/// Response headers larger than hyper's default 16 KiB list from an HTTP/2 upstream reach
/// the client, as they do from an HTTP/1 upstream (the proxy takes 64 KiB either way).
#[tokio::test]
async fn large_response_headers_from_an_http2_upstream_pass() {
    let backend = TestServer::serve(ServerProtocol::Http2, |_req| async {
        Ok::<_, std::convert::Infallible>(
            http::Response::builder()
                .header("x-large", "v".repeat(40 * 1024))
                .body(Full::new(Bytes::from_static(b"ok")))
                .unwrap(),
        )
    })
    .await
    .unwrap();
    let proxy = Proxy::start(
        &config(
            "http2",
            backend.addr(),
            "      - backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    let mut h1 = HttpClient::http1(proxy.addr).await.unwrap();
    let rsp = h1.get("/large").await.expect("response");
    assert_eq!(
        rsp.status(),
        StatusCode::OK,
        "{:?}",
        rsp.headers().get("l5d-proxy-error")
    );
    assert_eq!(rsp.headers()["x-large"].len(), 40 * 1024);
}

/// An HTTP/2 upstream that sends more empty DATA frames than h2 allows gets its connection
/// closed by the proxy's h2 (GOAWAY ENHANCE_YOUR_CALM, a limit against floods): the
/// request is cut, but the upstream reset nothing, so no inbound reset is counted.
#[tokio::test]
async fn a_reset_the_proxy_made_is_not_counted_as_received() {
    let backend = TestServer::serve(ServerProtocol::Http2, |_req| async {
        let mut body = linkerd_http_test_util::MockBody::new();
        for _ in 0..200 {
            body = body.data(Bytes::new());
        }
        Ok::<_, std::convert::Infallible>(http::Response::new(body.data("end")))
    })
    .await
    .unwrap();
    let proxy = Proxy::start(
        &config(
            "http2",
            backend.addr(),
            "      - backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
    let req = Request::get("/empty-frames").body(Bytes::new()).unwrap();
    let cut = match h2.request(req).await {
        Ok(rsp) => rsp.body_error.is_some(),
        Err(_) => true,
    };
    assert!(cut, "h2 refuses the flood of empty frames");
    let outbound = [("direction", "outbound")];
    let scrape = proxy
        .scrape_until(|s| s.sum("http_stream_resets_total", &outbound) >= 1.0)
        .await;
    assert_eq!(scrape.sum("http_stream_resets_total", &outbound), 1.0);
    assert_eq!(
        scrape.sum("http_stream_resets_total", &[("direction", "inbound")]),
        0.0,
        "the upstream reset nothing"
    );
}

#[tokio::test]
async fn head_over_h2c_sends_no_data_frame() {
    // An HTTP/2 backend that wrongly sends a body with its answer to HEAD.
    let backend = TestServer::serve(ServerProtocol::Http2, |_req| async {
        Ok::<_, std::convert::Infallible>(
            http::Response::builder()
                .header("content-length", "11")
                .body(Full::new(Bytes::from_static(b"not allowed")))
                .unwrap(),
        )
    })
    .await
    .unwrap();
    let proxy = Proxy::start(
        &config(
            "http2",
            backend.addr(),
            "      - backendRefs: [{ name: b }]
",
        ),
        &[],
    );

    let mut raw = RawH2::connect(proxy.addr).await;
    let authority = proxy.addr.to_string();
    raw.send_headers(
        1,
        &[
            (":method", "HEAD"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", &authority),
        ],
        true,
    )
    .await;
    let frames = raw.read_until_closed(1, Duration::from_secs(5)).await;
    let on_stream: Vec<_> = frames.iter().filter(|f| f.stream == 1).collect();
    assert!(
        on_stream
            .iter()
            .any(|f| f.kind == raw_h2::HEADERS && f.flags & raw_h2::END_STREAM != 0),
        "the response HEADERS end the stream: {on_stream:?}"
    );
    assert!(
        on_stream.iter().all(|f| f.kind != raw_h2::DATA),
        "no DATA frame on a HEAD response: {on_stream:?}"
    );
    assert!(
        on_stream.iter().all(|f| f.kind != raw_h2::RST_STREAM),
        "no reset: {on_stream:?}"
    );

    // The same through a full h2 client: status and content-length kept, no body.
    let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
    let rsp = h2
        .request(Request::head("/").body(Bytes::new()).unwrap())
        .await
        .expect("HEAD response");
    assert_eq!(rsp.status, StatusCode::OK, "HEAD status");
    assert_eq!(rsp.headers["content-length"], "11", "content-length kept");
    assert!(rsp.data.is_empty(), "no body");
    assert!(rsp.body_error.is_none(), "no reset: {:?}", rsp.body_error);
}

// === DESIGN.md section 5 ===

#[tokio::test]
async fn error_no_route() {
    let backend = TestServer::backend().await.unwrap();
    let proxy = Proxy::start(
        &config(
            "http1",
            backend.addr(),
            "      - matches: [{ path: { type: Exact, value: /only } }]
        backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    let mut h1 = HttpClient::http1(proxy.addr).await.unwrap();
    let rsp = h1.get("/elsewhere").await.unwrap();
    assert_eq!(rsp.status(), 404, "no route: 404");
    assert_eq!(rsp.headers()["l5d-proxy-error"], "no route");
    assert_eq!(rsp.headers()["content-length"], "0");
    let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
    let rsp = h2.request(grpc_request("/x.Y/Z", &[])).await.unwrap();
    assert_eq!(rsp.status, StatusCode::OK, "gRPC: 200");
    assert_eq!(rsp.headers["grpc-status"], "12", "gRPC: UNIMPLEMENTED");
    assert_eq!(rsp.headers["l5d-proxy-error"], "no route");
    assert_eq!(backend.request_count(), 0, "nothing reached the backend");

    // No route means no route label: the request is counted with an empty `route_name`.
    let http = [
        ("route_name", ""),
        ("http_status", "404"),
        ("grpc_status", ""),
        ("error", "NO_ROUTE"),
    ];
    let grpc = [
        ("route_name", ""),
        ("http_status", "200"),
        ("grpc_status", "UNIMPLEMENTED"),
        ("error", "NO_ROUTE"),
    ];
    let scrape = proxy
        .scrape_until(|s| {
            s.get(STATUSES, &http) == Some(1.0) && s.get(GRPC_STATUSES, &grpc) == Some(1.0)
        })
        .await;
    assert_eq!(
        scrape.get(STATUSES, &http),
        Some(1.0),
        "NO_ROUTE counted (HTTP): {:#?}",
        statuses(&scrape)
    );
    assert_eq!(
        scrape.get(GRPC_STATUSES, &grpc),
        Some(1.0),
        "NO_ROUTE counted (gRPC): {:#?}",
        statuses(&scrape)
    );
}

#[tokio::test]
async fn error_redirect_has_location_and_no_error() {
    let backend = TestServer::backend().await.unwrap();
    let proxy = Proxy::start(
        &config(
            "http1",
            backend.addr(),
            "      - matches: [{ path: { type: PathPrefix, value: /old } }]
        filters:
          - type: RequestRedirect
            requestRedirect: { hostname: new.example.com, path: { type: ReplacePrefixMatch, replacePrefixMatch: /new } }
",
        ),
        &[],
    );
    let mut h1 = HttpClient::http1(proxy.addr).await.unwrap();
    let req = Request::get("/old/page?q=1")
        .header("host", "example.com:1234")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = h1.send(req).await.unwrap();
    assert_eq!(rsp.status(), 302, "redirects default to 302");
    // No filter port and no filter scheme: the proxy's listen port.
    let want = format!("http://new.example.com:{}/new/page?q=1", proxy.addr.port());
    assert_eq!(rsp.headers()["location"], want.as_str(), "Location");
    assert!(
        rsp.headers().get("l5d-proxy-error").is_none(),
        "a redirect is not an error"
    );
    let labels = [
        ("route_name", "r"),
        ("http_status", "302"),
        ("grpc_status", ""),
        ("error", ""),
    ];
    let scrape = proxy
        .scrape_until(|s| s.get(STATUSES, &labels) == Some(1.0))
        .await;
    assert_eq!(
        scrape.get(STATUSES, &labels),
        Some(1.0),
        "redirect counted with an empty error label: {:#?}",
        statuses(&scrape)
    );
}

#[tokio::test]
async fn error_rule_without_backends() {
    let backend = TestServer::backend().await.unwrap();
    let proxy = Proxy::start(
        &config(
            "http1",
            backend.addr(),
            "      - matches: [{ path: { type: PathPrefix, value: /nothing } }]
",
        ),
        &[],
    );
    check_row(
        &proxy,
        &Row {
            path: "/nothing",
            headers: &[],
            http_status: 500,
            grpc: Some((13, "INTERNAL")),
            proxy_error: "no backends",
            label: "NO_BACKENDS",
        },
    )
    .await;
}

#[tokio::test]
async fn error_injected_failure() {
    let backend = TestServer::backend().await.unwrap();
    let proxy = Proxy::start(
        &config(
            "http1",
            backend.addr(),
            "      - matches: [{ path: { type: PathPrefix, value: /inject } }]
        filters:
          - type: InjectFailure
            injectFailure: { status: 503, ratio: 1.0, message: chaos monkey }
        backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    check_row(
        &proxy,
        &Row {
            path: "/inject",
            headers: &[],
            http_status: 503,
            grpc: Some((14, "UNAVAILABLE")),
            proxy_error: "chaos monkey",
            label: "INJECTED",
        },
    )
    .await;
    assert_eq!(
        backend.request_count(),
        0,
        "injected failures never reach the backend"
    );
}

/// A request to `/slow` whose backend answers after 5 s, cut by a 504 request timeout.
const SLOW_REQUEST_TIMEOUT: Row = Row {
    path: "/slow",
    headers: &[("x-test-delay-ms", "5000")],
    http_status: 504,
    grpc: Some((4, "DEADLINE_EXCEEDED")),
    proxy_error: "request timeout",
    label: "REQUEST_TIMEOUT",
};

#[tokio::test]
async fn error_request_timeout() {
    let backend = TestServer::backend().await.unwrap();
    let proxy = Proxy::start(
        &config(
            "http1",
            backend.addr(),
            "      - matches: [{ path: { type: PathPrefix, value: /slow } }]
        timeouts: { request: 100ms }
        backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    check_row(&proxy, &SLOW_REQUEST_TIMEOUT).await;
    assert_logged_route_and_backend(&proxy, 2).await;
    assert_backend_attempts_labelled(&proxy, "REQUEST_TIMEOUT", 2.0).await;
}

/// With a retry block, the retry layer's timer cuts the attempt at the request deadline
/// (the stream-timeouts layer arms none until the headers): the client still gets the
/// request timeout, whether the rule has no per-try timeout or one that ends with it (the
/// attempt starts after the request, so its timeout ends a little later; a longer one is a
/// config error, GEP-1742).
#[tokio::test]
async fn error_request_timeout_with_retries() {
    for timeouts in [
        "{ request: 200ms }",
        "{ request: 200ms, backendRequest: 200ms }",
    ] {
        let backend = TestServer::backend().await.unwrap();
        let proxy = Proxy::start(
            &config(
                "http1",
                backend.addr(),
                &format!(
                    "      - matches: [{{ path: {{ type: PathPrefix, value: /slow }} }}]
        timeouts: {timeouts}
        retry: {{ codes: [503], attempts: 2, backoff: 10ms }}
        backendRefs: [{{ name: b }}]
"
                ),
            ),
            &[],
        );
        let started = tokio::time::Instant::now();
        check_row(&proxy, &SLOW_REQUEST_TIMEOUT).await;
        assert_logged_route_and_backend(&proxy, 2).await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(4),
            "{timeouts}: answered at the deadline, not after the backend's delay"
        );
        assert_eq!(
            backend.request_count(),
            2,
            "{timeouts}: one attempt per request, none retried past the deadline"
        );
    }
}

#[tokio::test]
async fn error_backend_request_timeout() {
    let backend = TestServer::backend().await.unwrap();
    let proxy = Proxy::start(
        &config(
            "http1",
            backend.addr(),
            "      - matches: [{ path: { type: PathPrefix, value: /slow } }]
        timeouts: { backendRequest: 100ms }
        backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    check_row(
        &proxy,
        &Row {
            path: "/slow",
            headers: &[("x-test-delay-ms", "5000")],
            http_status: 504,
            grpc: Some((4, "DEADLINE_EXCEEDED")),
            proxy_error: "backend request timeout",
            label: "BACKEND_REQUEST_TIMEOUT",
        },
    )
    .await;
    assert_logged_route_and_backend(&proxy, 2).await;
    assert_backend_attempts_labelled(&proxy, "BACKEND_REQUEST_TIMEOUT", 2.0).await;
}

#[tokio::test]
async fn error_backend_request_timeout_after_retries() {
    let backend = TestServer::backend().await.unwrap();
    let proxy = Proxy::start(
        &config(
            "http1",
            backend.addr(),
            "      - matches: [{ path: { type: PathPrefix, value: /slow } }]
        timeouts: { request: 10s, backendRequest: 100ms }
        retry: { attempts: 2, backoff: 10ms }
        backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    check_row(
        &proxy,
        &Row {
            path: "/slow",
            headers: &[("x-test-delay-ms", "5000")],
            http_status: 504,
            grpc: Some((4, "DEADLINE_EXCEEDED")),
            proxy_error: "backend request timeout",
            label: "BACKEND_REQUEST_TIMEOUT",
        },
    )
    .await;
    assert_logged_route_and_backend(&proxy, 2).await;
    assert_backend_attempts_labelled(&proxy, "BACKEND_REQUEST_TIMEOUT", 6.0).await;
    // Two requests (HTTP and gRPC), each tried 1 + 2 times.
    let scrape = proxy
        .scrape_until(|s| {
            s.get(
                "outbound_http_route_retry_requests_total",
                &[("route_name", "r")],
            ) == Some(4.0)
        })
        .await;
    assert_eq!(
        scrape.get(
            "outbound_http_route_retry_requests_total",
            &[("route_name", "r")]
        ),
        Some(4.0),
        "each request was retried twice"
    );
    assert_eq!(backend.request_count(), 6, "three attempts per request");
}

/// `timeouts.backendRequest` bounds each attempt to the end of its response body, as the
/// Gateway API says ("to when the full response has been received from the backend"), with
/// and without a retry block: a body still coming past it is cut (HTTP/2: RST_STREAM CANCEL;
/// HTTP/1.1: the connection closes before the last chunk), labelled
/// `BACKEND_REQUEST_TIMEOUT` after the status sent. A body that ends in time is whole.
#[tokio::test]
async fn backend_request_timeout_bounds_the_response_body() {
    let backend = TestServer::backend().await.unwrap();
    let proxy = Proxy::start(
        &config(
            "http1",
            backend.addr(),
            "      - matches: [{ path: { type: PathPrefix, value: /plain } }]
        timeouts: { backendRequest: 300ms }
        backendRefs: [{ name: b }]
      - matches: [{ path: { type: PathPrefix, value: /retried } }]
        timeouts: { backendRequest: 300ms }
        retry: { codes: [503], attempts: 2 }
        backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    for path in ["/plain", "/retried"] {
        // Chunks at 0.2 s, 0.4 s and 0.6 s: cut at 0.3 s, after the first.
        let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
        let req = Request::get(path)
            .header("x-test-drip", "3,10,200")
            .body(Bytes::new())
            .unwrap();
        let rsp = h2.request(req).await.expect("headers");
        assert_eq!(rsp.status, StatusCode::OK, "{path}");
        assert_eq!(
            rsp.reset_reason(),
            Some(h2::Reason::CANCEL),
            "{path}: {rsp:?}"
        );
        assert_eq!(rsp.data.len(), 10, "{path}: the chunk sent in time");

        let mut h1 = HttpClient::http1(proxy.addr).await.unwrap();
        let req = Request::get(path)
            .header("x-test-drip", "3,10,200")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let rsp = h1.send(req).await.expect("headers");
        assert_eq!(rsp.status(), StatusCode::OK);
        assert!(
            collect(rsp.into_body()).await.is_err(),
            "{path}: the HTTP/1.1 body ends in an error, not a clean end"
        );

        // In time: whole.
        let req = Request::get(path)
            .header("x-test-drip", "2,10,50")
            .body(Bytes::new())
            .unwrap();
        let rsp = h2.request(req).await.expect("headers");
        assert!(rsp.body_error.is_none(), "{path}: {rsp:?}");
        assert_eq!(rsp.data.len(), 20, "{path}");
    }
    let cut = [
        ("route_name", "r"),
        ("http_status", "200"),
        ("grpc_status", ""),
        ("error", "BACKEND_REQUEST_TIMEOUT"),
    ];
    let scrape = proxy
        .scrape_until(|s| s.get(STATUSES, &cut) == Some(4.0))
        .await;
    assert_eq!(
        scrape.get(STATUSES, &cut),
        Some(4.0),
        "{:#?}",
        statuses(&scrape)
    );
}

#[tokio::test]
async fn error_response_headers_timeout() {
    let backend = TestServer::backend().await.unwrap();
    let proxy = Proxy::start(
        &config(
            "http1",
            backend.addr(),
            "      - matches: [{ path: { type: PathPrefix, value: /slow } }]
        streamTimeouts: { responseHeaders: 100ms }
        backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    check_row(
        &proxy,
        &Row {
            path: "/slow",
            headers: &[("x-test-delay-ms", "5000")],
            http_status: 504,
            grpc: Some((4, "DEADLINE_EXCEEDED")),
            proxy_error: "response headers timeout",
            label: "RESPONSE_HEADERS_TIMEOUT",
        },
    )
    .await;
    assert_logged_route_and_backend(&proxy, 2).await;
    assert_backend_attempts_labelled(&proxy, "RESPONSE_HEADERS_TIMEOUT", 2.0).await;
}

#[tokio::test]
async fn error_idle_timeout() {
    let backend = TestServer::backend().await.unwrap();
    let proxy = Proxy::start(
        &config(
            "http1",
            backend.addr(),
            "      - matches: [{ path: { type: PathPrefix, value: /slow } }]
        streamTimeouts: { idle: 100ms }
        backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    check_row(
        &proxy,
        &Row {
            path: "/slow",
            headers: &[("x-test-delay-ms", "5000")],
            http_status: 504,
            grpc: Some((4, "DEADLINE_EXCEEDED")),
            proxy_error: "idle timeout",
            label: "IDLE_TIMEOUT",
        },
    )
    .await;
    assert_logged_route_and_backend(&proxy, 2).await;
}

/// A stream timeout that cuts a retried request before its headers still says how many
/// attempts were made: the access log's `attempts` and `retry_requests_total` count the
/// retry the stream-timeouts layer dropped.
#[tokio::test]
async fn stream_timeout_after_a_retry_counts_the_retry() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    for (timeout, label) in [
        ("responseHeaders", "RESPONSE_HEADERS_TIMEOUT"),
        ("idle", "IDLE_TIMEOUT"),
    ] {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        // The first attempt is answered 503 (retried), the second past the timeout.
        let backend = TestServer::serve(
            ServerProtocol::Auto,
            move |_req: Request<hyper::body::Incoming>| {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n > 0 {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    let status = if n == 0 { 503 } else { 200 };
                    let rsp = http::Response::builder()
                        .status(status)
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    Ok::<_, std::convert::Infallible>(rsp)
                }
            },
        )
        .await
        .unwrap();
        let rules = format!(
            "      - backendRefs: [{{ name: b }}]
        retry: {{ codes: [503], attempts: 1, backoff: 5ms }}
        streamTimeouts: {{ {timeout}: 300ms }}
"
        );
        let proxy = Proxy::start(&config("http1", backend.addr(), &rules), &[]);
        let mut client = HttpClient::http1(proxy.addr).await.unwrap();
        let rsp = client.get("/").await.unwrap();
        assert_eq!(rsp.status(), 504, "{timeout}");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "{timeout}: two attempts");
        let lines = access_lines(&proxy, 1).await;
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert_eq!(lines[0]["attempts"], 2, "{timeout}: {}", lines[0]);
        assert_eq!(lines[0]["error"], label, "{timeout}: {}", lines[0]);
        let retries = [("route_name", "r")];
        let scrape = proxy
            .scrape_until(|s| s.sum("outbound_http_route_retry_requests_total", &retries) >= 1.0)
            .await;
        assert_eq!(
            scrape.sum("outbound_http_route_retry_requests_total", &retries),
            1.0,
            "{timeout}: the retry is counted"
        );
    }
}

/// Waits until the proxy reports `backend` with `ready` ready endpoints.
async fn wait_ready(proxy: &Proxy, backend: &str, ready: f64) {
    let labels = [("backend_name", backend), ("state", "ready")];
    let scrape = proxy
        .scrape_until(|s| s.get("balancer_endpoints", &labels) == Some(ready))
        .await;
    assert_eq!(
        scrape.get("balancer_endpoints", &labels),
        Some(ready),
        "{backend}: {ready} ready endpoint(s)"
    );
}

#[tokio::test]
async fn error_connect_failed() {
    // The endpoint is up (and probed ready), then goes away: the next connect is refused.
    let backend = TestServer::backend().await.unwrap();
    let proxy = Proxy::start(
        &config(
            "http1",
            backend.addr(),
            "      - matches: [{ path: { type: PathPrefix, value: /gone } }]
        backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    wait_ready(&proxy, "b", 1.0).await;
    drop(backend);

    let mut h1 = HttpClient::http1(proxy.addr).await.unwrap();
    let rsp = h1.get("/gone").await.unwrap();
    assert_eq!(rsp.status(), 502, "connect failed: 502");
    assert_eq!(rsp.headers()["l5d-proxy-error"], "connect failed");
    collect(rsp.into_body()).await.unwrap();
    let labels = [
        ("route_name", "r"),
        ("http_status", "502"),
        ("grpc_status", ""),
        ("error", "CONNECT_FAILED"),
    ];
    let scrape = proxy
        .scrape_until(|s| s.get(STATUSES, &labels) == Some(1.0))
        .await;
    assert_eq!(
        scrape.get(STATUSES, &labels),
        Some(1.0),
        "CONNECT_FAILED counted: {:#?}",
        statuses(&scrape)
    );
}

#[tokio::test]
async fn error_connect_failed_grpc() {
    let backend = TestServer::backend().await.unwrap();
    let proxy = Proxy::start(
        &config(
            "http2",
            backend.addr(),
            "      - matches: [{ path: { type: PathPrefix, value: /x.Y } }]
        backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    wait_ready(&proxy, "b", 1.0).await;
    drop(backend);

    let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
    let rsp = h2.request(grpc_request("/x.Y/Z", &[])).await.unwrap();
    assert_eq!(rsp.status, StatusCode::OK, "gRPC: 200");
    assert_eq!(rsp.headers["grpc-status"], "14", "UNAVAILABLE");
    assert_eq!(rsp.headers["l5d-proxy-error"], "connect failed");
    let labels = [
        ("route_name", "r"),
        ("http_status", "200"),
        ("grpc_status", "UNAVAILABLE"),
        ("error", "CONNECT_FAILED"),
    ];
    let scrape = proxy
        .scrape_until(|s| s.get(STATUSES, &labels) == Some(1.0))
        .await;
    assert_eq!(
        scrape.get(STATUSES, &labels),
        Some(1.0),
        "CONNECT_FAILED counted: {:#?}",
        statuses(&scrape)
    );
}

#[tokio::test]
async fn error_upstream_reset_before_headers() {
    let backend = TestServer::backend().await.unwrap();
    let proxy = Proxy::start(
        &config(
            "http2",
            backend.addr(),
            "      - backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    let reset = [("x-test-reset-before-headers", "ENHANCE_YOUR_CALM")];

    // HTTP/1 client: a 502 naming the reason.
    let mut h1 = HttpClient::http1(proxy.addr).await.unwrap();
    let req = Request::get("/reset")
        .header(reset[0].0, reset[0].1)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = h1.send(req).await.unwrap();
    assert_eq!(rsp.status(), 502, "HTTP/1: 502");
    assert_eq!(
        rsp.headers()["l5d-proxy-error"],
        "upstream reset (ENHANCE_YOUR_CALM)"
    );

    // HTTP/2 client: the stream is reset with the same reason, no response.
    let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
    let req = Request::get("/reset")
        .header(reset[0].0, reset[0].1)
        .body(Bytes::new())
        .unwrap();
    let err = h2.request(req).await.expect_err("HTTP/2: reset");
    assert_eq!(err.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM), "{err}");

    // gRPC client: also a reset; REFUSED_STREAM is forwarded as it is.
    let err = h2
        .request(grpc_request(
            "/x.Y/Z",
            &[("x-test-reset-before-headers", "REFUSED_STREAM")],
        ))
        .await
        .expect_err("gRPC: reset");
    assert_eq!(err.reason(), Some(h2::Reason::REFUSED_STREAM), "{err}");

    // gRPC client over HTTP/1.1: no stream to reset, so an answer: 200 with UNAVAILABLE,
    // counted as such (not as a reset with no status).
    let req = Request::post("/x.Y/Z")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header(reset[0].0, "INTERNAL_ERROR")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = h1.send(req).await.unwrap();
    assert_eq!(rsp.status(), 200, "gRPC over HTTP/1.1: an answer");
    assert_eq!(rsp.headers()["grpc-status"], "14");
    let grpc_h1_labels = [
        ("route_name", "r"),
        ("http_status", "200"),
        ("grpc_status", "UNAVAILABLE"),
        ("error", "RESET"),
    ];

    let h1_labels = [
        ("route_name", "r"),
        ("http_status", "502"),
        ("grpc_status", ""),
        ("error", "RESET"),
    ];
    let reset_labels = [
        ("route_name", "r"),
        ("http_status", ""),
        ("grpc_status", ""),
        ("error", "RESET"),
    ];
    let scrape = proxy
        .scrape_until(|s| {
            s.get(STATUSES, &h1_labels) == Some(1.0)
                && s.get(STATUSES, &grpc_h1_labels) == Some(1.0)
                && s.sum(STATUSES, &[("http_status", ""), ("error", "RESET")]) == 2.0
        })
        .await;
    assert_eq!(
        scrape.get(STATUSES, &h1_labels),
        Some(1.0),
        "HTTP/1: RESET with 502: {:#?}",
        statuses(&scrape)
    );
    assert_eq!(
        scrape.get(STATUSES, &grpc_h1_labels),
        Some(1.0),
        "gRPC over HTTP/1.1: RESET with 200 and UNAVAILABLE: {:#?}",
        statuses(&scrape)
    );
    assert_eq!(
        scrape.sum(STATUSES, &reset_labels[..2]) + 0.0,
        scrape.sum(STATUSES, &[("route_name", "r"), ("http_status", "")]),
        "consistency"
    );
    assert_eq!(
        scrape.sum(STATUSES, &[("http_status", ""), ("error", "RESET")]),
        2.0,
        "HTTP/2 and gRPC resets: RESET with no status: {:#?}",
        statuses(&scrape)
    );
    let outbound = |reason: &str| {
        scrape.sum(
            "http_stream_resets_total",
            &[("direction", "outbound"), ("reason", reason)],
        )
    };
    assert!(
        outbound("ENHANCE_YOUR_CALM") >= 1.0 && outbound("REFUSED_STREAM") >= 1.0,
        "the resets sent are counted: {:?}",
        scrape
            .matching("http_stream_resets_total", &[])
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn error_upstream_cannot_tunnel() {
    let (addr, task) = h2_backend(false).await;
    let proxy = Proxy::start(
        &config(
            "http2",
            addr,
            "      - backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    wait_ready(&proxy, "b", 1.0).await;
    let mut h1 = HttpClient::http1(proxy.addr).await.unwrap();
    let req = Request::get("/chat")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = h1.send(req).await.unwrap();
    assert_eq!(
        rsp.status(),
        502,
        "upgrade to an h2 backend without extended CONNECT"
    );
    assert_eq!(rsp.headers()["l5d-proxy-error"], "upstream cannot tunnel");
    drop(rsp);
    let labels = [
        ("route_name", "r"),
        ("http_status", "502"),
        ("grpc_status", ""),
        ("error", "UNAVAILABLE"),
    ];
    let scrape = proxy
        .scrape_until(|s| s.get(STATUSES, &labels) == Some(1.0))
        .await;
    assert_eq!(
        scrape.get(STATUSES, &labels),
        Some(1.0),
        "UNAVAILABLE counted: {:#?}",
        statuses(&scrape)
    );
    task.abort();
}

/// An HTTP/2-only server answering 200 to anything; with `extended_connect` it advertises
/// extended CONNECT (RFC 8441) and echoes the bytes of each tunnel it accepts.
async fn h2_backend(extended_connect: bool) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        // Bounded by the test: the task is aborted when the test ends.
        while let Ok((io, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |mut req: Request<hyper::body::Incoming>| async move {
                        if req.method() == http::Method::CONNECT {
                            let on = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                if let Ok(up) = on.await {
                                    let mut io = hyper_util::rt::TokioIo::new(up);
                                    let (mut r, mut w) = tokio::io::split(&mut io);
                                    let _ = tokio::io::copy(&mut r, &mut w).await;
                                }
                            });
                        }
                        Ok::<_, std::convert::Infallible>(
                            http::Response::new(Empty::<Bytes>::new()),
                        )
                    },
                );
                let mut builder =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
                if extended_connect {
                    builder.enable_connect_protocol();
                }
                let _ = builder
                    .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

/// DESIGN.md 4.1: an Upgrade routed to an `http2` backend that advertises extended CONNECT is
/// sent as one, and the tunnel carries bytes both ways (the HTTP/1.1 client gets its 101).
#[tokio::test]
async fn upgrade_to_an_http2_backend_with_extended_connect_tunnels() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (addr, task) = h2_backend(true).await;
    let proxy = Proxy::start(
        &config(
            "http2",
            addr,
            "      - backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    wait_ready(&proxy, "b", 1.0).await;
    let mut io = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    io.write_all(
        b"GET /chat HTTP/1.1\r\nhost: example.com\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
          sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(5), async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = io.read(&mut buf).await.unwrap();
            assert!(n > 0, "the answer: {:?}", String::from_utf8_lossy(&head));
            head.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("answered in time");
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "the accept value for the client's key: {head}"
    );
    io.write_all(b"ping through the tunnel").await.unwrap();
    let mut echoed = [0u8; 23];
    tokio::time::timeout(Duration::from_secs(5), io.read_exact(&mut echoed))
        .await
        .expect("echoed in time")
        .unwrap();
    assert_eq!(&echoed, b"ping through the tunnel");
    task.abort();
}

#[tokio::test]
async fn error_bad_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = TestServer::backend().await.unwrap();
    let proxy = Proxy::start(
        &config(
            "http1",
            backend.addr(),
            "      - backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    // HTTP/1.1: an authority-form GET, a CONNECT without a port, no Host.
    for (raw, why) in [
        (
            "GET example.com:80 HTTP/1.1\r\nhost: example.com\r\n\r\n",
            "bad request: authority-form target is only valid for CONNECT",
        ),
        (
            "CONNECT example.com HTTP/1.1\r\nhost: example.com\r\n\r\n",
            "bad request: CONNECT target must have a port",
        ),
        ("GET / HTTP/1.1\r\n\r\n", "bad request: missing host"),
    ] {
        let mut io = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        io.write_all(raw.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut n = 0;
        // Read the response head (bounded: the buffer, and a timeout).
        let head = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let m = io.read(&mut buf[n..]).await.unwrap();
                n += m;
                if m == 0 || buf[..n].windows(4).any(|w| w == b"\r\n\r\n") || n == buf.len() {
                    break;
                }
            }
            String::from_utf8_lossy(&buf[..n]).to_lowercase()
        })
        .await
        .expect("a response");
        assert!(
            head.starts_with("http/1.1 400"),
            "{raw:?}: 400, got {head:?}"
        );
        assert!(
            head.contains(&format!("l5d-proxy-error: {}\r\n", why.to_lowercase())),
            "{raw:?}: {why:?} in {head:?}"
        );
    }

    // gRPC: an HTTP/2 CONNECT without a port gets trailers-only INVALID_ARGUMENT.
    let io = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (send, conn) = h2::client::handshake(io).await.unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::builder()
        .method("CONNECT")
        .uri("example.com")
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let mut send = send.ready().await.unwrap();
    let (rsp, _stream) = send.send_request(req, false).unwrap();
    let rsp = tokio::time::timeout(Duration::from_secs(5), rsp)
        .await
        .expect("answered in time")
        .expect("gRPC bad request answer");
    conn.abort();
    assert_eq!(rsp.status(), StatusCode::OK, "gRPC: 200");
    assert_eq!(rsp.headers()["grpc-status"], "3", "gRPC: INVALID_ARGUMENT");
    assert_eq!(
        rsp.headers()["l5d-proxy-error"],
        "bad request: CONNECT target must have a port"
    );
    assert_eq!(backend.request_count(), 0, "bad requests are not forwarded");

    // Bad requests are refused before routing: no route label.
    let http = [
        ("route_name", ""),
        ("http_status", "400"),
        ("grpc_status", ""),
        ("error", "BAD_REQUEST"),
    ];
    let grpc = [
        ("route_name", ""),
        ("http_status", "200"),
        ("grpc_status", "INVALID_ARGUMENT"),
        ("error", "BAD_REQUEST"),
    ];
    let scrape = proxy
        .scrape_until(|s| {
            s.get(STATUSES, &http) == Some(3.0) && s.get(GRPC_STATUSES, &grpc) == Some(1.0)
        })
        .await;
    assert_eq!(
        scrape.get(STATUSES, &http),
        Some(3.0),
        "the three HTTP/1.1 bad requests are counted: {:#?}",
        statuses(&scrape)
    );
    assert_eq!(
        scrape.get(GRPC_STATUSES, &grpc),
        Some(1.0),
        "the gRPC bad request is counted: {:#?}",
        statuses(&scrape)
    );
}

// === graceful shutdown ===

#[tokio::test]
async fn sigterm_finishes_h1_requests_closes_idle_connections_and_exits_zero() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = TestServer::backend().await.unwrap();
    // A grace period far longer than the test: the proxy exits because every connection
    // ended, not because the grace period ran out.
    let yaml = format!(
        "{}server:\n  shutdownGracePeriod: 60s\n",
        config(
            "http1",
            backend.addr(),
            "      - backendRefs: [{ name: b }]\n"
        )
    );
    let mut proxy = Proxy::start(&yaml, &[]);

    // An idle keep-alive connection, after one request (HEAD: the head is the whole answer).
    let mut idle = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    idle.write_all(b"HEAD / HTTP/1.1\r\nhost: a.example\r\n\r\n")
        .await
        .unwrap();
    let head = reliability::read_head(&mut idle)
        .await
        .expect("a response head");
    assert_eq!(reliability::status_of(&head), Some(200), "{head:?}");

    // A request in flight: 10 chunks of 100 bytes, one every 100 ms.
    let mut client = HttpClient::http1(proxy.addr).await.unwrap();
    let req = Request::get("/drip")
        .header("host", "a.example")
        .header("x-test-drip", "10,100,100")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let rsp = client.send(req).await.expect("response headers");
    assert_eq!(rsp.status(), StatusCode::OK);

    proxy.sigterm();
    let body = tokio::time::timeout(Duration::from_secs(10), collect(rsp.into_body()))
        .await
        .expect("the body ends")
        .expect("the in-flight response is not cut");
    assert_eq!(
        body.data.len(),
        1000,
        "the in-flight request got its whole body"
    );

    let mut rest = [0; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut rest))
        .await
        .expect("the idle connection is closed promptly");
    assert!(
        matches!(read, Ok(0)),
        "EOF on the idle connection: {read:?}"
    );

    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("the proxy exited once its connections ended");
    assert_eq!(status.code(), Some(0), "exit code 0 after SIGTERM");
}

#[tokio::test]
async fn sigterm_drains_h2_stream_and_exits_zero() {
    let backend = TestServer::backend().await.unwrap();
    let mut proxy = Proxy::start(
        &config(
            "http1",
            backend.addr(),
            "      - backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    let mut raw = RawH2::connect(proxy.addr).await;
    let authority = proxy.addr.to_string();
    // 10 chunks of 100 bytes, one every 100 ms.
    raw.send_headers(
        1,
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/drip"),
            (":authority", &authority),
            ("x-test-drip", "10,100,100"),
        ],
        true,
    )
    .await;
    // Wait for the response headers and the first data.
    let mut frames = vec![];
    let first = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(f) = raw.read_frame().await {
            let data = f.kind == raw_h2::DATA && f.stream == 1;
            frames.push(f);
            if data {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(first, Ok(true), "the stream started: {frames:?}");

    proxy.sigterm();
    let (rest, ended) = raw.read_to_end(Duration::from_secs(10)).await;
    frames.extend(rest);
    assert!(ended, "the proxy closed the connection after the stream");
    let goaway = frames
        .iter()
        .position(|f| f.kind == raw_h2::GOAWAY)
        .unwrap_or_else(|| panic!("a GOAWAY was sent: {frames:?}"));
    assert_eq!(frames[goaway].error_code(), Some(0), "GOAWAY(NO_ERROR)");
    let data: usize = frames
        .iter()
        .filter(|f| f.kind == raw_h2::DATA && f.stream == 1)
        .map(|f| f.payload.len())
        .sum();
    assert_eq!(data, 1000, "the in-flight stream got its whole body");
    assert!(
        frames.iter().any(|f| f.closes(1) && f.kind == raw_h2::DATA),
        "the stream ended with END_STREAM, not a reset: {frames:?}"
    );
    assert!(
        frames[goaway..]
            .iter()
            .any(|f| f.kind == raw_h2::DATA && f.stream == 1),
        "data kept flowing after the GOAWAY"
    );

    // New connections are refused once the listener is closed.
    let refused = tokio::net::TcpStream::connect(proxy.addr).await;
    assert!(refused.is_err(), "new connections are refused");

    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("the proxy exited");
    assert_eq!(status.code(), Some(0), "exit code 0 after SIGTERM");
}

// === --check ===

#[test]
fn check_accepts_the_example_config() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/proxy.yaml");
    let (code, stdout, stderr) = run_proxy(&["--check", path]);
    assert_eq!(code, 0, "--check exits 0; stderr: {stderr}");
    assert!(stdout.contains("config ok"), "a summary: {stdout}");
}

#[test]
fn bad_config_exits_2_naming_file_line_column_and_path() {
    let dir = support::tempdir::TempDir::new();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "backends:
  - name: web
    endpoints: [127.0.0.1:8080]
routes:
  - name: r
    rules:
      - backendRefs: [{ name: nope }]
",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    for args in [vec!["--check", "--config", path], vec!["--config", path]] {
        let (code, _, stderr) = run_proxy(&args);
        assert_eq!(code, 2, "{args:?}: exit 2; stderr: {stderr}");
        let want = format!("{path}:7:31: routes[0].rules[0].backendRefs[0].name");
        assert!(
            stderr.contains(&want),
            "{args:?}: the error names {want:?}: {stderr}"
        );
    }
    let missing = dir.path().join("missing.yaml");
    let (code, _, stderr) = run_proxy(&["--config", missing.to_str().unwrap()]);
    assert_eq!(code, 2, "a missing file exits 2");
    assert!(
        stderr.contains(missing.to_str().unwrap()),
        "names the path: {stderr}"
    );
    // An address that cannot be bound (held here) is an error too: exit 2, naming it.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let busy_listen = ["--listen", addr.as_str()];
    let busy_admin = ["--listen", "127.0.0.1:0", "--admin", addr.as_str()];
    for args in [&busy_listen[..], &busy_admin[..]] {
        let (code, _, stderr) = run_proxy(args);
        assert_eq!(code, 2, "{args:?} ({addr} busy): exit 2; stderr: {stderr}");
        assert!(
            stderr.contains(&format!("cannot listen on {addr}")),
            "names the address: {stderr}"
        );
    }
}

/// An HTTP/2 client resetting its stream while the proxy reads the request body is counted
/// as an inbound reset with the client's reason (DESIGN.md section 6: `inbound` counts
/// "client resets seen through request-body errors"), once.
#[tokio::test]
async fn a_client_reset_during_the_request_body_is_an_inbound_reset() {
    let backend = TestServer::backend().await.unwrap();
    let proxy = Proxy::start(
        &config(
            "http1",
            backend.addr(),
            "      - backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    let mut raw = RawH2::connect(proxy.addr).await;
    let authority = proxy.addr.to_string();
    // Eight streams, each reset mid-body after a different pause: whether the proxy is
    // reading the body when the reset comes or has already dropped the stream's answer.
    const N: u32 = 8;
    for i in 0..N {
        let stream = 1 + 2 * i;
        raw.send_headers(
            stream,
            &[
                (":method", "POST"),
                (":scheme", "http"),
                (":path", "/upload"),
                (":authority", &authority),
                ("content-length", "100"),
            ],
            false,
        )
        .await;
        raw.send_data(stream, &[b'x'; 10], false).await;
        tokio::time::sleep(Duration::from_millis(u64::from(i % 4) * 40)).await;
        raw.send_reset(stream, 0x8).await;
    }
    // And a body of unknown length (chunked upstream) reset while the upstream reads it.
    let stream = 1 + 2 * N;
    raw.send_headers(
        stream,
        &[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/upload"),
            (":authority", &authority),
        ],
        false,
    )
    .await;
    raw.send_data(stream, &[b'x'; 100], false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    raw.send_reset(stream, 0x8).await;
    let n = N + 1;
    let inbound = [("direction", "inbound"), ("reason", "CANCEL")];
    let scrape = proxy
        .scrape_until(|s| s.sum("http_stream_resets_total", &inbound) >= f64::from(n))
        .await;
    assert_eq!(
        scrape.sum("http_stream_resets_total", &inbound),
        f64::from(n),
        "each client reset, counted once"
    );
    // The client went away: `CANCEL` with no status, and no reset of the proxy's own (the
    // upstream request the body failed is not the upstream's failure).
    let cancelled = [
        ("route_name", "r"),
        ("http_status", ""),
        ("error", "CANCEL"),
    ];
    let scrape = proxy
        .scrape_until(|s| s.sum(STATUSES, &cancelled) >= f64::from(n))
        .await;
    assert_eq!(
        scrape.sum(STATUSES, &cancelled),
        f64::from(n),
        "{:#?}",
        statuses(&scrape)
    );
    assert_eq!(
        scrape.sum("http_stream_resets_total", &[("direction", "outbound")]),
        0.0,
        "no reset sent: the client reset its streams itself"
    );
}

/// An HTTP/1.1 client that stops sending its request body (shuts its side down, or closes)
/// went away: `CANCEL`, status 0 in the access log, no status in the metrics; not the
/// upstream's `connect failed`.
#[tokio::test]
async fn an_http1_client_abandoning_its_body_is_a_cancel() {
    for protocol in [ServerProtocol::Http1, ServerProtocol::Http2] {
        abandon_body(protocol).await;
    }
}

async fn abandon_body(protocol: ServerProtocol) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = TestServer::backend_with(protocol).await.unwrap();
    let name = match protocol {
        ServerProtocol::Http2 => "http2",
        _ => "http1",
    };
    let proxy = Proxy::start(
        &config(
            name,
            backend.addr(),
            "      - backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    for _ in 0..2 {
        let mut io = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        io.write_all(
            b"POST /abandoned HTTP/1.1\r\nhost: example.com\r\ncontent-length: 100000\r\n\r\nabc",
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        io.shutdown().await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            !answer.contains("502"),
            "{name}: not blamed on the upstream: {answer:?}"
        );
    }
    let cancelled = [
        ("route_name", "r"),
        ("http_status", ""),
        ("error", "CANCEL"),
    ];
    let scrape = proxy
        .scrape_until(|s| s.sum(STATUSES, &cancelled) >= 2.0)
        .await;
    assert_eq!(
        scrape.sum(STATUSES, &cancelled),
        2.0,
        "{:#?}",
        statuses(&scrape)
    );
    let lines = access_lines(&proxy, 2).await;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    for v in &lines {
        assert_eq!(v["status"], 0, "{v}");
        assert_eq!(v["error"], "CANCEL", "{v}");
        assert_eq!(v["route"], "r", "{v}");
    }
}

/// Requests still in flight when the shutdown grace period ends are cut, and each still gets
/// its access-log line (DESIGN.md section 7: one line per request), with status 0 and
/// `CANCEL`: HTTP/1.1 and HTTP/2. The lines were lost with the process. While it drains, the
/// proxy's `/ready` answers 503.
#[tokio::test]
async fn requests_cut_at_the_end_of_the_grace_period_are_logged() {
    let backend = TestServer::backend().await.unwrap();
    let dir = support::tempdir::TempDir::new();
    let log = dir.path().join("access.log");
    let yaml = format!(
        "{}server:\n  shutdownGracePeriod: 300ms\n",
        config(
            "http1",
            backend.addr(),
            "      - backendRefs: [{ name: b }]\n"
        )
        .replace("output: stderr", &format!("output: {}", log.display()))
    );
    let mut proxy = Proxy::start(&yaml, &[]);
    let slow = |path: &str| {
        Request::get(path)
            .header("host", "a.example")
            .header("x-test-delay-ms", "10000")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let mut h1 = HttpClient::http1(proxy.addr).await.unwrap();
    let mut h2 = HttpClient::http2(proxy.addr).await.unwrap();
    let a = tokio::spawn(async move { h1.send(slow("/slow-h1")).await.map(|_| ()) });
    let b = tokio::spawn(async move { h2.send(slow("/slow-h2")).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut admin = HttpClient::http1(proxy.admin).await.unwrap();
    let ready = admin.get("/ready").await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "ready while serving");
    proxy.sigterm();
    // While draining, readiness fails, so load balancers stop sending.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut admin = HttpClient::http1(proxy.admin).await.unwrap();
    let ready = admin.get("/ready").await.unwrap();
    assert_eq!(
        ready.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready while draining"
    );
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("the proxy exited after its grace period");
    assert_eq!(status.code(), Some(0));
    assert!(a.await.unwrap().is_err(), "the HTTP/1.1 request was cut");
    assert!(b.await.unwrap().is_err(), "the HTTP/2 request was cut");
    let text = std::fs::read_to_string(&log).expect("the access log");
    for path in ["/slow-h1", "/slow-h2"] {
        let line = text
            .lines()
            .find(|l| l.contains(path))
            .unwrap_or_else(|| panic!("a line for {path}: {text:?}"));
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
        assert_eq!(v["status"], 0, "{line}");
        assert_eq!(v["error"], "CANCEL", "{line}");
    }
}

/// After the response headers too: an HTTP/1.1 client that abandons its request body while
/// an HTTP/2 upstream's response is still coming is `CANCEL` with the status sent, not an
/// upstream `RESET` (hyper resets the upstream stream itself when the body it sends fails),
/// and no reset is counted as received.
#[tokio::test]
async fn an_http1_client_abandoning_its_body_after_the_headers_is_a_cancel() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Answers at once, without reading the request body, and sends its body slowly.
    let backend = TestServer::serve(ServerProtocol::Http2, |_req| async {
        let mut body = linkerd_http_test_util::MockBody::new();
        for _ in 0..50 {
            body = body.data("0123456789").delay(Duration::from_millis(100));
        }
        Ok::<_, std::convert::Infallible>(http::Response::new(body))
    })
    .await
    .unwrap();
    let proxy = Proxy::start(
        &config(
            "http2",
            backend.addr(),
            "      - backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    let mut io = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    io.write_all(
        b"POST /abandoned HTTP/1.1\r\nhost: example.com\r\n\
          content-length: 100000\r\n\r\nabc",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(5), async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = io.read(&mut buf).await.unwrap();
            assert!(n > 0, "the response head");
            head.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the response headers in time");
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    io.shutdown().await.unwrap();
    let cancelled = [
        ("route_name", "r"),
        ("http_status", "200"),
        ("error", "CANCEL"),
    ];
    let scrape = proxy
        .scrape_until(|s| s.sum(STATUSES, &cancelled) >= 1.0)
        .await;
    assert_eq!(
        scrape.sum(STATUSES, &cancelled),
        1.0,
        "{:#?}",
        statuses(&scrape)
    );
    assert_eq!(
        scrape.sum("http_stream_resets_total", &[("direction", "inbound")]),
        0.0,
        "the upstream reset nothing"
    );
}

/// A client that goes away before the response headers (HTTP/2 RST_STREAM CANCEL, during a
/// retry): the access-log line still names the route, the backend the attempt in flight went
/// to and the attempts made, and the retries made before it are counted
/// (`retry_requests_total`).
#[tokio::test]
async fn a_request_cancelled_during_a_retry_is_logged_and_counted_in_full() {
    let backend = TestServer::backend().await.unwrap();
    let proxy = Proxy::start(
        &config(
            "http1",
            backend.addr(),
            "      - retry: { codes: [503], attempts: 5, backoff: 10ms }
        backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
    // Every attempt answers 503 after 300 ms: attempt 2 runs from about 310 ms to 610 ms.
    let req = Request::get("/cancelled")
        .header("x-test-status", "503")
        .header("x-test-delay-ms", "300")
        .body(())
        .unwrap();
    let (rsp, _send) = h2.send_request(req, true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(460)).await;
    drop(rsp); // h2 resets the stream with CANCEL
    drop(_send);
    let lines = access_lines(&proxy, 1).await;
    let [line] = lines.as_slice() else {
        panic!("one line: {lines:#?}");
    };
    assert_eq!(line["status"], 0, "{line}");
    assert_eq!(line["error"], "CANCEL", "{line}");
    assert_eq!(line["route"], "r", "{line}");
    assert_eq!(line["backend"], "b", "{line}");
    assert_eq!(
        line["attempts"], 2,
        "the first attempt and the retry in flight: {line}"
    );
    let retries = [("route_name", "r")];
    let scrape = proxy
        .scrape_until(|s| s.get("outbound_http_route_retry_requests_total", &retries) == Some(1.0))
        .await;
    assert_eq!(
        scrape.get("outbound_http_route_retry_requests_total", &retries),
        Some(1.0),
        "the retry made before the client went away"
    );
    assert_eq!(
        scrape.get(
            STATUSES,
            &[
                ("route_name", "r"),
                ("http_status", ""),
                ("grpc_status", ""),
                ("error", "CANCEL")
            ]
        ),
        Some(1.0)
    );
}

/// A client gone while the retry layer waits out its backoff (no attempt in flight) is
/// logged with the backend its last attempt went to.
#[tokio::test]
async fn a_request_cancelled_during_a_backoff_logs_its_backend() {
    let backend = TestServer::backend().await.unwrap();
    let proxy = Proxy::start(
        &config(
            "http1",
            backend.addr(),
            "      - retry: { codes: [503], attempts: 1, backoff: 2s, maxBackoff: 2s }
        backendRefs: [{ name: b }]
",
        ),
        &[],
    );
    let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
    let req = Request::get("/backoff")
        .header("x-test-status", "503")
        .body(())
        .unwrap();
    let (rsp, _send) = h2.send_request(req, true).await.unwrap();
    // The 503 comes at once; the retry waits at least a second (backoff with jitter).
    for _ in 0..100 {
        if backend.request_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(rsp); // h2 resets the stream with CANCEL
    drop(_send);
    let lines = access_lines(&proxy, 1).await;
    let [line] = lines.as_slice() else {
        panic!("one line: {lines:#?}");
    };
    assert_eq!(line["error"], "CANCEL", "{line}");
    assert_eq!(line["attempts"], 1, "{line}");
    assert_eq!(line["backend"], "b", "the last attempt's backend: {line}");
    assert_eq!(backend.request_count(), 1, "no retry was sent");
}

/// Tunnels are cut when the one shutdown grace period ends: the connections' wait and the
/// tunnels' drain share it. An HTTP/2 connection carrying a tunnel (a CONNECT stream) stays
/// open through the server's whole wait; an HTTP/1.1 tunnel beside it then got a second
/// grace period.
#[tokio::test]
async fn tunnels_get_one_shutdown_grace_period() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An HTTP/1 backend that accepts any CONNECT and then holds the tunnel open.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = listener.local_addr().unwrap();
    let backend = tokio::spawn(async move {
        loop {
            let (mut io, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match io.read(&mut buf).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let _ = io.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
                // Hold the tunnel until the proxy closes it.
                let _ = io.read(&mut buf).await;
            });
        }
    });
    let yaml = format!(
        "{}server:\n  shutdownGracePeriod: 1s\n",
        config(
            "http1",
            backend_addr,
            "      - backendRefs: [{ name: b }]\n"
        )
    );
    let mut proxy = Proxy::start(&yaml, &[]);
    let mut raw = RawH2::connect(proxy.addr).await;
    raw.send_headers(
        1,
        &[
            (":method", "CONNECT"),
            (":authority", "backend.example:443"),
        ],
        false,
    )
    .await;
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(f) = raw.read_frame().await {
            if f.kind == raw_h2::HEADERS && f.stream == 1 {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(answered, Ok(true), "the tunnel is up");
    // And an HTTP/1.1 tunnel beside it (its connection is no longer the server's once
    // upgraded: only the tunnels' drain ends it).
    let mut h1 = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    h1.write_all(b"CONNECT backend.example:443 HTTP/1.1\r\nhost: backend.example:443\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), h1.read(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &answer[..n]
    );
    let started = tokio::time::Instant::now();
    proxy.sigterm();
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("the proxy exited");
    assert_eq!(status.code(), Some(0));
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1800),
        "one grace period (1 s), not two: {took:?}"
    );
    backend.abort();
}
