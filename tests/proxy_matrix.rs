//! The behaviour matrix through the real binary (issue 11): route matching and precedence,
//! every filter, retries with body replay, timeouts, weighted split, endpoint health, reset
//! propagation, tunnels, HTTP/1.0, absolute-form, hop-by-hop headers, `grpc-timeout`, and the
//! metrics and the JSON access log checked against each other.

mod support;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use linkerd_http_prom::Scrape;
use linkerd_http_test_util::{
    H2Client, HttpClient, MockBody, ServerProtocol, TestServer, body_pattern, collect,
    collect_until_error,
};
use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use support::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STATUSES: &str = "outbound_http_route_request_statuses_total";
const GRPC_STATUSES: &str = "outbound_grpc_route_request_statuses_total";

/// `backends:` with one entry per `(name, protocol, endpoints)`.
fn backends(list: &[(&str, &str, &[SocketAddr])]) -> String {
    let mut out = String::from("backends:\n");
    for (name, protocol, endpoints) in list {
        let eps: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
        out.push_str(&format!(
            "  - name: {name}\n    protocol: {protocol}\n    endpoints: [{}]\n",
            eps.join(", ")
        ));
    }
    out
}

/// A config: access log to stderr, `backends`, then the rest (`routes:` and so on).
fn config(backends: &str, rest: &str) -> String {
    format!("accessLog: {{ format: json, output: stderr }}\n{backends}{rest}")
}

fn get(path: &str) -> http::request::Builder {
    Request::get(path)
}

fn empty() -> Empty<Bytes> {
    Empty::new()
}

fn header<B>(rsp: &Response<B>, name: &str) -> Option<String> {
    rsp.headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_owned())
}

fn grpc_request(path: &str) -> http::request::Builder {
    Request::post(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
}

/// A gRPC message frame with `payload`.
fn grpc_frame(payload: &[u8]) -> Bytes {
    let mut b = vec![0u8];
    b.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    b.extend_from_slice(payload);
    b.into()
}

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

/// A backend that answers `fail` to the first `failures` requests, then echoes; it records
/// every request body (read in full) in order.
async fn flaky(
    protocol: ServerProtocol,
    failures: usize,
    fail: u16,
) -> (TestServer, Arc<Mutex<Vec<Bytes>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let n = Arc::new(AtomicUsize::new(0));
    let bodies = seen.clone();
    let server = TestServer::serve(protocol, move |req: Request<hyper::body::Incoming>| {
        let bodies = bodies.clone();
        let i = n.fetch_add(1, Ordering::SeqCst);
        async move {
            let body = req.into_body().collect().await?.to_bytes();
            bodies.lock().unwrap().push(body.clone());
            let status = if i < failures { fail } else { 200 };
            Ok::<_, hyper::Error>(
                Response::builder()
                    .status(status)
                    .header("x-attempt", i.to_string())
                    .body(Full::new(body))
                    .unwrap(),
            )
        }
    })
    .await
    .unwrap();
    (server, seen)
}

/// Reads an HTTP/1 response from a raw socket until the connection ends (bounded).
async fn read_all(io: &mut tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads an HTTP/1 response head from a raw socket (bounded).
async fn read_head(io: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    let work = async {
        while !buf.ends_with(b"\r\n\r\n") && buf.len() < 16 * 1024 {
            match io.read(&mut byte).await {
                Ok(1) => buf.push(byte[0]),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), work).await;
    String::from_utf8_lossy(&buf).into_owned()
}

fn statuses(scrape: &Scrape) -> Vec<String> {
    scrape
        .samples
        .iter()
        .filter(|s| s.name.ends_with("request_statuses_total"))
        .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
        .collect()
}

// === route matching and precedence (DESIGN.md 4.1) ===

/// `(host, method, path, headers, the rule expected or None for no route)`.
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
);

#[tokio::test]
async fn route_precedence() {
    let backend = TestServer::backend().await.unwrap();
    let tag = |t: &str| {
        format!(
            "        filters: [{{ type: RequestHeaderModifier, requestHeaderModifier: {{ set: [{{ name: x-rule, value: {t} }}] }} }}]\n        backendRefs: [{{ name: b }}]\n"
        )
    };
    let rule = |matches: &str, t: &str| format!("      - matches: [{matches}]\n{}", tag(t));
    let mut routes = String::from("routes:\n");
    routes.push_str("  - name: wild\n    hostnames: [\"*.example.com\"]\n    rules:\n");
    routes.push_str(&format!("      - {}", tag("wild").trim_start()));
    routes.push_str("  - name: longwild\n    hostnames: [\"*.api.example.com\"]\n    rules:\n");
    routes.push_str(&format!("      - {}", tag("longwild").trim_start()));
    routes.push_str("  - name: exact\n    hostnames: [www.example.com]\n    rules:\n");
    for (m, t) in [
        ("{ path: { type: PathPrefix, value: /a } }", "prefix-a"),
        ("{ path: { type: PathPrefix, value: /a/b } }", "prefix-ab"),
        (
            "{ path: { type: RegularExpression, value: \"/a/b/.*\" } }",
            "regex",
        ),
        (
            "{ path: { type: RegularExpression, value: \"/a/b/c.*\" } }",
            "longer-regex",
        ),
        ("{ path: { type: Exact, value: /a/b/c } }", "exact-path"),
        ("{ path: { type: PathPrefix, value: /m } }", "no-method"),
        (
            "{ path: { type: PathPrefix, value: /m }, method: POST }",
            "method",
        ),
        (
            "{ path: { type: PathPrefix, value: /h }, headers: [{ name: x-a, value: \"1\" }] }",
            "one-header",
        ),
        (
            "{ path: { type: PathPrefix, value: /h }, headers: [{ name: x-a, value: \"1\" }, { name: x-b, value: \"2\" }] }",
            "two-headers",
        ),
        ("{ path: { type: PathPrefix, value: /q } }", "no-query"),
        (
            "{ path: { type: PathPrefix, value: /q }, queryParams: [{ type: RegularExpression, name: v, value: \"[0-9]+\" }] }",
            "query",
        ),
    ] {
        routes.push_str(&rule(m, t));
    }
    routes.push_str("  - name: first\n    rules:\n");
    routes.push_str(&rule(
        "{ path: { type: PathPrefix, value: /order } }",
        "first",
    ));
    routes.push_str("  - name: second\n    rules:\n");
    routes.push_str(&rule(
        "{ path: { type: PathPrefix, value: /order } }",
        "second",
    ));
    routes.push_str(&rule(
        "{ path: { type: PathPrefix, value: /order } }",
        "second-b",
    ));

    let proxy = Proxy::start(
        &config(&backends(&[("b", "http1", &[backend.addr()])]), &routes),
        &[],
    );
    let mut client = HttpClient::http1(proxy.addr).await.unwrap();
    let cases: &[Case] = &[
        ("www.example.com", "GET", "/a/b/c", &[], Some("exact-path")),
        (
            "www.example.com:8080",
            "GET",
            "/a/b/c",
            &[],
            Some("exact-path"),
        ),
        (
            "www.example.com",
            "GET",
            "/a/b/cd",
            &[],
            Some("longer-regex"),
        ),
        ("www.example.com", "GET", "/a/b/x", &[], Some("regex")),
        ("www.example.com", "GET", "/a/b", &[], Some("prefix-ab")),
        ("www.example.com", "GET", "/a/bc", &[], Some("prefix-a")),
        ("www.example.com", "GET", "/a/x", &[], Some("prefix-a")),
        ("www.example.com", "POST", "/m", &[], Some("method")),
        ("www.example.com", "GET", "/m", &[], Some("no-method")),
        (
            "www.example.com",
            "GET",
            "/h",
            &[("x-a", "1"), ("x-b", "2")],
            Some("two-headers"),
        ),
        (
            "www.example.com",
            "GET",
            "/h",
            &[("x-a", "1")],
            Some("one-header"),
        ),
        ("www.example.com", "GET", "/q?v=12", &[], Some("query")),
        ("www.example.com", "GET", "/q?v=x", &[], Some("no-query")),
        // No rule of the exact-host route matches: the wildcard route does.
        ("www.example.com", "GET", "/zzz", &[], Some("wild")),
        ("x.api.example.com", "GET", "/", &[], Some("longwild")),
        ("foo.example.com", "GET", "/", &[], Some("wild")),
        ("example.com", "GET", "/order", &[], Some("first")),
        ("other.test", "GET", "/order", &[], Some("first")),
        ("other.test", "GET", "/a/b/c", &[], None),
    ];
    for (host, method, path, headers, want) in cases {
        let mut req = Request::builder()
            .method(*method)
            .uri(*path)
            .header("host", *host);
        for (k, v) in *headers {
            req = req.header(*k, *v);
        }
        let rsp = client.send(req.body(empty()).unwrap()).await.unwrap();
        let got = header(&rsp, "x-echo-x-rule");
        let status = rsp.status();
        let error = header(&rsp, "l5d-proxy-error");
        collect(rsp.into_body()).await.unwrap();
        match want {
            Some(w) => assert_eq!(
                got.as_deref(),
                Some(*w),
                "{method} {host}{path} {headers:?} picks rule {w} ({status} {error:?})"
            ),
            None => assert_eq!(status, 404, "{method} {host}{path}: no route"),
        }
    }
}

#[tokio::test]
async fn grpc_routes_take_grpc_requests_first() {
    let backend = TestServer::backend().await.unwrap();
    let rest = "grpcRoutes:
  - name: greeter
    rules:
      - matches: [{ method: { type: Exact, service: helloworld.Greeter, method: SayHello } }]
        filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: x-rule, value: grpc }] } }]
        backendRefs: [{ name: b }]
routes:
  - name: web
    rules:
      - filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: x-rule, value: http }] } }]
        backendRefs: [{ name: b }]
";
    let proxy = Proxy::start(
        &config(&backends(&[("b", "http2", &[backend.addr()])]), rest),
        &[],
    );
    let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
    for (path, grpc, want) in [
        ("/helloworld.Greeter/SayHello", true, "grpc"),
        // A plain HTTP request never matches a grpcRoute.
        ("/helloworld.Greeter/SayHello", false, "http"),
        // A gRPC request no grpcRoute matches falls through to routes.
        ("/helloworld.Greeter/Other", true, "http"),
    ] {
        let req = if grpc {
            grpc_request(path).body(grpc_frame(b"")).unwrap()
        } else {
            Request::post(path).body(Bytes::new()).unwrap()
        };
        let rsp = h2.request(req).await.unwrap();
        assert_eq!(
            rsp.headers
                .get("x-echo-x-rule")
                .map(|v| v.to_str().unwrap()),
            Some(want),
            "{path} (gRPC: {grpc})"
        );
    }
    let scrape = proxy
        .scrape_until(|s| s.sum(GRPC_STATUSES, &[("route_name", "greeter")]) == 1.0)
        .await;
    assert_eq!(
        scrape.sum(GRPC_STATUSES, &[("route_name", "greeter")]),
        1.0,
        "the grpcRoute's request is in the gRPC families: {:#?}",
        statuses(&scrape)
    );
    assert_eq!(
        scrape.sum(STATUSES, &[("route_name", "web")]),
        2.0,
        "the others in the HTTP families: {:#?}",
        statuses(&scrape)
    );
}

// === filters ===

#[tokio::test]
async fn filter_header_modifiers() {
    let backend = TestServer::backend().await.unwrap();
    let rest = "routes:
  - name: r
    rules:
      - filters:
          - type: RequestHeaderModifier
            requestHeaderModifier:
              set: [{ name: x-set, value: new }]
              add: [{ name: x-add, value: two }]
              remove: [x-gone]
          - type: ResponseHeaderModifier
            responseHeaderModifier:
              set: [{ name: x-backend-method, value: hidden }]
              add: [{ name: x-served-by, value: proxy }]
              remove: [x-backend-addr]
        backendRefs: [{ name: b }]
";
    let proxy = Proxy::start(
        &config(&backends(&[("b", "http1", &[backend.addr()])]), rest),
        &[],
    );
    let mut client = HttpClient::http2(proxy.addr).await.unwrap();
    let req = get("/")
        .header("x-set", "old")
        .header("x-add", "one")
        .header("x-gone", "bye")
        .body(empty())
        .unwrap();
    let rsp = client.send(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(
        header(&rsp, "x-echo-x-set").as_deref(),
        Some("new"),
        "set replaces"
    );
    let added: Vec<_> = rsp
        .headers()
        .get_all("x-echo-x-add")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(added, ["one", "two"], "add appends");
    assert!(header(&rsp, "x-echo-x-gone").is_none(), "remove removes");
    assert_eq!(
        header(&rsp, "x-backend-method").as_deref(),
        Some("hidden"),
        "response set"
    );
    assert_eq!(
        header(&rsp, "x-served-by").as_deref(),
        Some("proxy"),
        "response add"
    );
    assert!(header(&rsp, "x-backend-addr").is_none(), "response remove");
}

#[tokio::test]
async fn filter_redirect_location() {
    let backend = TestServer::backend().await.unwrap();
    let redirect = |path: &str, filter: &str| {
        format!(
            "      - matches: [{{ path: {{ type: PathPrefix, value: {path} }} }}]\n        filters: [{{ type: RequestRedirect, requestRedirect: {filter} }}]\n"
        )
    };
    let mut rest = String::from("routes:\n  - name: r\n    rules:\n");
    rest.push_str(&redirect("/https", "{ scheme: https }"));
    rest.push_str(&redirect(
        "/full",
        "{ scheme: https, hostname: new.example.com, port: 8443, statusCode: 301, path: { type: ReplaceFullPath, replaceFullPath: /x } }",
    ));
    rest.push_str(&redirect("/port80", "{ port: 80 }"));
    rest.push_str(&redirect("/https443", "{ scheme: https, port: 443 }"));
    rest.push_str(&redirect("/httpport", "{ scheme: http, port: 8080 }"));
    rest.push_str(&redirect(
        "/prefix",
        "{ path: { type: ReplacePrefixMatch, replacePrefixMatch: /new } }",
    ));
    let proxy = Proxy::start(
        &config(&backends(&[("b", "http1", &[backend.addr()])]), &rest),
        &[],
    );
    let port = proxy.addr.port();
    let mut client = HttpClient::http1(proxy.addr).await.unwrap();
    for (path, status, location) in [
        // The scheme's well-known port when the filter sets a scheme; 443 is omitted.
        ("/https/a", 302, "https://example.com/https/a".to_owned()),
        ("/full/a", 301, "https://new.example.com:8443/x".to_owned()),
        // A port equal to the scheme's default is omitted.
        ("/port80", 302, "http://example.com/port80".to_owned()),
        ("/https443", 302, "https://example.com/https443".to_owned()),
        (
            "/httpport",
            302,
            "http://example.com:8080/httpport".to_owned(),
        ),
        // No scheme or port in the filter: the proxy's listen port.
        (
            "/prefix/a/b",
            302,
            format!("http://example.com:{port}/new/a/b"),
        ),
    ] {
        let req = get(path)
            .header("host", "example.com:9999")
            .body(empty())
            .unwrap();
        let rsp = client.send(req).await.unwrap();
        assert_eq!(rsp.status(), status, "{path}: status");
        assert_eq!(
            header(&rsp, "location").as_deref(),
            Some(location.as_str()),
            "{path}: Location"
        );
        assert_eq!(header(&rsp, "content-length").as_deref(), Some("0"));
        collect(rsp.into_body()).await.unwrap();
    }
    assert_eq!(
        backend.request_count(),
        0,
        "redirects are answered by the proxy"
    );
}

#[tokio::test]
async fn filter_url_rewrite() {
    let backend = TestServer::backend().await.unwrap();
    let rest = "routes:
  - name: r
    rules:
      - matches: [{ path: { type: PathPrefix, value: /old } }]
        filters:
          - type: URLRewrite
            urlRewrite: { hostname: internal.svc, path: { type: ReplacePrefixMatch, replacePrefixMatch: /v2 } }
        backendRefs: [{ name: b }]
      - matches: [{ path: { type: Exact, value: /full } }]
        filters:
          - type: URLRewrite
            urlRewrite: { path: { type: ReplaceFullPath, replaceFullPath: /fixed } }
        backendRefs: [{ name: b }]
";
    let proxy = Proxy::start(
        &config(&backends(&[("b", "http1", &[backend.addr()])]), rest),
        &[],
    );
    let mut client = HttpClient::http1(proxy.addr).await.unwrap();
    for path in ["/old/x?y=1", "/full?y=1"] {
        let req = get(path)
            .header("host", "example.com")
            .body(empty())
            .unwrap();
        let rsp = client.send(req).await.unwrap();
        assert_eq!(rsp.status(), 200, "{path}");
        collect(rsp.into_body()).await.unwrap();
    }
    let seen = backend.requests();
    assert_eq!(seen.len(), 2);
    for (r, (path, host)) in seen
        .iter()
        .zip([("/v2/x", "internal.svc"), ("/fixed", "example.com")])
    {
        assert_eq!(r.uri.path(), path, "rewritten path");
        assert_eq!(r.uri.query(), Some("y=1"), "query kept");
        assert_eq!(r.headers["host"], host, "rewritten host");
    }
}

#[tokio::test]
async fn filter_request_mirror() {
    let primary = TestServer::backend().await.unwrap();
    let shadow = TestServer::backend().await.unwrap();
    let rest = "routes:
  - name: r
    rules:
      - filters:
          - type: RequestMirror
            requestMirror: { backendRef: { name: shadow }, percent: 100 }
        backendRefs: [{ name: primary }]
";
    let proxy = Proxy::start(
        &config(
            &backends(&[
                ("primary", "http1", &[primary.addr()]),
                ("shadow", "http1", &[shadow.addr()]),
            ]),
            rest,
        ),
        &[],
    );
    let mut client = HttpClient::http1(proxy.addr).await.unwrap();
    let req = Request::post("/m")
        .header("x-test-status", "201")
        .body(Full::new(Bytes::from_static(b"mirrored body")))
        .unwrap();
    let rsp = client.send(req).await.unwrap();
    assert_eq!(rsp.status(), 201, "the primary answers");
    assert_eq!(
        header(&rsp, "x-backend-addr").as_deref(),
        Some(primary.addr().to_string().as_str())
    );
    assert_eq!(
        collect(rsp.into_body()).await.unwrap().data,
        "mirrored body"
    );
    // The mirror is fire-and-forget: wait (bounded) for it.
    for _ in 0..250 {
        if shadow.requests().iter().any(|r| r.body_complete) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mirrored = shadow.requests();
    assert_eq!(mirrored.len(), 1, "the shadow got one copy");
    assert_eq!(mirrored[0].uri.path(), "/m");
    assert_eq!(mirrored[0].body, "mirrored body", "with the whole body");
    assert_eq!(primary.request_count(), 1);
}

#[tokio::test]
async fn filter_inject_failure() {
    let backend = TestServer::backend().await.unwrap();
    let rest = "routes:
  - name: r
    rules:
      - matches: [{ path: { type: PathPrefix, value: /never } }]
        filters: [{ type: InjectFailure, injectFailure: { status: 500, ratio: 0.0 } }]
        backendRefs: [{ name: b }]
      - matches: [{ path: { type: PathPrefix, value: /delay } }]
        filters: [{ type: InjectFailure, injectFailure: { delay: 50ms, delayRatio: 1.0 } }]
        backendRefs: [{ name: b }]
      - matches: [{ path: { type: PathPrefix, value: /always } }]
        filters: [{ type: InjectFailure, injectFailure: { status: 429, ratio: 1.0 } }]
        backendRefs: [{ name: b }]
grpcRoutes:
  - name: g
    rules:
      - filters: [{ type: InjectFailure, injectFailure: { grpcStatus: 8, ratio: 1.0, message: slow down } }]
        backendRefs: [{ name: b }]
";
    let proxy = Proxy::start(
        &config(&backends(&[("b", "http2", &[backend.addr()])]), rest),
        &[],
    );
    let mut client = HttpClient::http1(proxy.addr).await.unwrap();
    for (path, status, error) in [
        ("/never", 200, None),
        ("/delay", 200, None),
        ("/always", 429, Some("injected failure")),
    ] {
        let rsp = client.get(path).await.unwrap();
        assert_eq!(rsp.status(), status, "{path}");
        assert_eq!(header(&rsp, "l5d-proxy-error").as_deref(), error, "{path}");
        collect(rsp.into_body()).await.unwrap();
    }
    assert_eq!(
        backend.request_count(),
        2,
        "/never and /delay reach the backend"
    );
    let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
    let rsp = h2
        .request(grpc_request("/a.B/C").body(grpc_frame(b"")).unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.headers["grpc-status"], "8", "grpcStatus injected");
    assert_eq!(rsp.headers["l5d-proxy-error"], "slow down");
    // Spaces are printable ASCII: not percent-encoded (gRPC spec).
    assert_eq!(rsp.headers["grpc-message"], "slow down");
}

// === retries ===

async fn retry_proxy(backend: SocketAddr, retry: &str) -> Proxy {
    let rest = format!(
        "routes:
  - name: r
    rules:
      - backendRefs: [{{ name: b }}]
        retry: {retry}
"
    );
    Proxy::start(
        &config(&backends(&[("b", "http1", &[backend])]), &rest),
        &[],
    )
}

#[tokio::test]
async fn retry_replays_content_length_body() {
    let (backend, seen) = flaky(ServerProtocol::Auto, 2, 503).await;
    let proxy = retry_proxy(
        backend.addr(),
        "{ codes: [503], attempts: 3, backoff: 5ms }",
    )
    .await;
    let mut client = HttpClient::http1(proxy.addr).await.unwrap();
    let body = body_pattern(10_000);
    let rsp = client
        .send(Request::post("/").body(Full::new(body.clone())).unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200, "the third attempt succeeds");
    assert_eq!(header(&rsp, "x-attempt").as_deref(), Some("2"));
    assert_eq!(collect(rsp.into_body()).await.unwrap().data, body);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "three attempts");
    assert!(
        seen.iter().all(|b| *b == body),
        "each attempt got the whole body"
    );
    let scrape = proxy
        .scrape_until(|s| {
            s.get(
                "outbound_http_route_retry_successes_total",
                &[("route_name", "r")],
            ) == Some(1.0)
        })
        .await;
    assert_eq!(
        scrape.get(
            "outbound_http_route_retry_requests_total",
            &[("route_name", "r")]
        ),
        Some(2.0),
        "two retries"
    );
    assert_eq!(
        scrape.get(
            "outbound_http_route_retry_successes_total",
            &[("route_name", "r")]
        ),
        Some(1.0),
        "one retried success"
    );
    // The backend answered 503 twice and 200 once: the 503s the retry layer discarded are
    // answers, not cancellations.
    const BACKEND: &str = "outbound_http_route_backend_response_statuses_total";
    let scrape = proxy
        .scrape_until(|s| s.sum(BACKEND, &[("http_status", "200")]) >= 1.0)
        .await;
    assert_eq!(
        scrape.sum(BACKEND, &[("http_status", "503"), ("error", "")]),
        2.0,
        "two 503 answers: {:?}",
        scrape.matching(BACKEND, &[]).collect::<Vec<_>>()
    );
    assert_eq!(scrape.sum(BACKEND, &[("error", "CANCEL")]), 0.0);
}

#[tokio::test]
async fn retry_replays_chunked_body() {
    let (backend, seen) = flaky(ServerProtocol::Auto, 1, 503).await;
    let proxy = retry_proxy(
        backend.addr(),
        "{ codes: [503], attempts: 2, backoff: 5ms }",
    )
    .await;
    let mut client = HttpClient::http1(proxy.addr).await.unwrap();
    let body = MockBody::new()
        .data("chunk one, ")
        .delay(Duration::from_millis(5))
        .data("chunk two, ")
        .data("chunk three");
    let rsp = client
        .send(Request::post("/").body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200, "the retry succeeds");
    let want = "chunk one, chunk two, chunk three";
    assert_eq!(collect(rsp.into_body()).await.unwrap().data, want);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "two attempts");
    assert!(
        seen.iter().all(|b| *b == want),
        "both attempts got the body: {seen:?}"
    );
}

#[tokio::test]
async fn retry_skips_body_over_max_request_bytes() {
    let (backend, seen) = flaky(ServerProtocol::Auto, 1, 503).await;
    let proxy = retry_proxy(
        backend.addr(),
        "{ codes: [503], attempts: 2, backoff: 5ms, maxRequestBytes: 1024 }",
    )
    .await;
    let mut client = HttpClient::http1(proxy.addr).await.unwrap();
    for chunked in [false, true] {
        let body = body_pattern(8192);
        let req = if chunked {
            Request::post("/")
                .body(
                    MockBody::new()
                        .data(body.slice(..4096))
                        .data(body.slice(4096..))
                        .boxed_unsync(),
                )
                .unwrap()
        } else {
            Request::post("/")
                .body(
                    Full::new(body.clone())
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                )
                .unwrap()
        };
        let rsp = client.send(req).await.unwrap();
        let status = rsp.status();
        collect(rsp.into_body()).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        if chunked {
            assert_eq!(status, 200, "chunked: the backend no longer fails");
            assert_eq!(seen.len(), 2, "chunked: one attempt");
        } else {
            assert_eq!(status, 503, "not retried: the failure is the answer");
            assert_eq!(seen.len(), 1, "one attempt");
        }
        assert_eq!(
            seen.last().unwrap(),
            &body,
            "forwarded intact (chunked: {chunked})"
        );
    }
    let scrape = proxy
        .scrape_until(|s| {
            s.get(
                "outbound_http_route_retry_overflow_total",
                &[("route_name", "r")],
            ) >= Some(1.0)
        })
        .await;
    assert_eq!(
        scrape.get(
            "outbound_http_route_retry_requests_total",
            &[("route_name", "r")]
        ),
        Some(0.0),
        "no retries"
    );
    assert!(
        scrape.get(
            "outbound_http_route_retry_overflow_total",
            &[("route_name", "r")]
        ) >= Some(1.0),
        "counted as overflow"
    );
}

#[tokio::test]
async fn grpc_retry_on_trailers() {
    // Answers UNAVAILABLE in trailers (after headers) once, then OK.
    let n = Arc::new(AtomicUsize::new(0));
    let calls = n.clone();
    let backend = TestServer::serve(
        ServerProtocol::Http2,
        move |req: Request<hyper::body::Incoming>| {
            let i = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let _ = req.into_body().collect().await;
                let mut trailers = HeaderMap::new();
                let code = if i == 0 { "14" } else { "0" };
                trailers.insert("grpc-status", code.parse().unwrap());
                let body = if i == 0 {
                    MockBody::new().trailers(trailers)
                } else {
                    MockBody::new().data(grpc_frame(b"hi")).trailers(trailers)
                };
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "application/grpc")
                        .body(body)
                        .unwrap(),
                )
            }
        },
    )
    .await
    .unwrap();
    let rest = "grpcRoutes:
  - name: g
    rules:
      - backendRefs: [{ name: b }]
        retry: { codes: [unavailable], attempts: 2, backoff: 5ms }
";
    let proxy = Proxy::start(
        &config(&backends(&[("b", "http2", &[backend.addr()])]), rest),
        &[],
    );
    let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
    let rsp = h2
        .request(grpc_request("/a.B/C").body(grpc_frame(b"req")).unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.status, StatusCode::OK);
    assert_eq!(
        rsp.trailers.as_ref().map(|t| t["grpc-status"].clone()),
        Some("0".parse().unwrap()),
        "the retry's OK: {rsp:?}"
    );
    assert_eq!(rsp.data, grpc_frame(b"hi"));
    assert_eq!(n.load(Ordering::SeqCst), 2, "retried once");
    let scrape = proxy
        .scrape_until(|s| {
            s.get(
                "outbound_grpc_route_retry_requests_total",
                &[("route_name", "g")],
            ) == Some(1.0)
        })
        .await;
    assert_eq!(
        scrape.get(
            "outbound_grpc_route_retry_requests_total",
            &[("route_name", "g")]
        ),
        Some(1.0),
        "one retry counted"
    );
    assert_eq!(
        scrape.get(
            GRPC_STATUSES,
            &[
                ("route_name", "g"),
                ("http_status", "200"),
                ("grpc_status", "OK"),
                ("error", "")
            ]
        ),
        Some(1.0),
        "{:#?}",
        statuses(&scrape)
    );
}

// === timeouts ===

#[tokio::test]
async fn request_timeout_bounds_retries() {
    let backend = TestServer::backend().await.unwrap();
    let rest = "routes:
  - name: r
    rules:
      - backendRefs: [{ name: b }]
        timeouts: { request: 500ms, backendRequest: 100ms }
        retry: { attempts: 100, backoff: 10ms, maxBackoff: 20ms }
";
    let proxy = Proxy::start(
        &config(&backends(&[("b", "http1", &[backend.addr()])]), rest),
        &[],
    );
    let mut client = HttpClient::http1(proxy.addr).await.unwrap();
    let req = get("/")
        .header("x-test-delay-ms", "5000")
        .body(empty())
        .unwrap();
    let rsp = client.send(req).await.unwrap();
    assert_eq!(rsp.status(), 504);
    let error = header(&rsp, "l5d-proxy-error");
    assert!(
        matches!(
            error.as_deref(),
            Some("request timeout" | "backend request timeout")
        ),
        "a timeout: {error:?}"
    );
    let attempts = backend.request_count();
    assert!(
        (2..100).contains(&attempts),
        "backend request timeouts were retried inside the request timeout: {attempts}"
    );
    // The retries are counted even though the request timeout answered, and the deadline
    // stopping them is a limit exceeded (DESIGN.md section 6).
    let route = [("route_name", "r")];
    let scrape = proxy
        .scrape_until(|s| s.sum("outbound_http_route_retry_limit_exceeded_total", &route) >= 1.0)
        .await;
    assert_eq!(
        scrape.sum("outbound_http_route_retry_requests_total", &route),
        (attempts - 1) as f64,
        "every retry counted"
    );
    assert_eq!(
        scrape.sum("outbound_http_route_retry_limit_exceeded_total", &route),
        1.0,
        "the deadline stopped the retries"
    );
}

#[tokio::test]
async fn backend_request_timeout_retried_to_success() {
    // The first attempt hangs past backendRequest; the retry is fast.
    let n = Arc::new(AtomicUsize::new(0));
    let calls = n.clone();
    let backend = TestServer::serve(
        ServerProtocol::Auto,
        move |_req: Request<hyper::body::Incoming>| {
            let i = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if i == 0 {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"fast"))))
            }
        },
    )
    .await
    .unwrap();
    let rest = "routes:
  - name: r
    rules:
      - backendRefs: [{ name: b }]
        timeouts: { request: 5s, backendRequest: 100ms }
        retry: { attempts: 2, backoff: 5ms }
";
    let proxy = Proxy::start(
        &config(&backends(&[("b", "http1", &[backend.addr()])]), rest),
        &[],
    );
    let mut client = HttpClient::http1(proxy.addr).await.unwrap();
    let rsp = client.get("/").await.unwrap();
    assert_eq!(rsp.status(), 200, "the retry answers");
    assert_eq!(collect(rsp.into_body()).await.unwrap().data, "fast");
    assert_eq!(n.load(Ordering::SeqCst), 2, "two attempts");
}

/// A gRPC answer from an HTTP/2 upstream that does not declare its trailers (it need not)
/// reaches an HTTP/1.1 client with them: the proxy declares gRPC's trailers, which hyper's
/// HTTP/1 server otherwise drops (the client would lose `grpc-status`).
#[tokio::test]
async fn grpc_trailers_reach_http1_clients_undeclared() {
    let backend = TestServer::serve(
        ServerProtocol::Http2,
        |_req: Request<hyper::body::Incoming>| async move {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", "14".parse().unwrap());
            trailers.insert("grpc-message", "try%20later".parse().unwrap());
            let body = MockBody::new().data(grpc_frame(b"x")).trailers(trailers);
            let rsp = Response::builder()
                .header("content-type", "application/grpc")
                .body(body)
                .unwrap();
            Ok::<_, Infallible>(rsp)
        },
    )
    .await
    .unwrap();
    let rest = "grpcRoutes:
  - name: g
    rules:
      - backendRefs: [{ name: b }]
";
    let proxy = Proxy::start(
        &config(&backends(&[("b", "http2", &[backend.addr()])]), rest),
        &[],
    );
    let mut client = HttpClient::http1(proxy.addr).await.unwrap();
    let rsp = client
        .send(
            grpc_request("/a.B/C")
                .header("te", "trailers")
                .body(Full::new(grpc_frame(b"")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(
        rsp.headers().get("trailer").map(|v| v.to_str().unwrap()),
        Some("grpc-status, grpc-message, grpc-status-details-bin")
    );
    let body = collect(rsp.into_body()).await.unwrap();
    assert_eq!(body.data, grpc_frame(b"x"));
    let trailers = body
        .trailers
        .expect("the trailers reach the HTTP/1.1 client");
    assert_eq!(trailers["grpc-status"], "14");
    assert_eq!(trailers["grpc-message"], "try%20later");
}

#[tokio::test]
async fn grpc_timeout_header_bounds_the_request() {
    let backend = TestServer::backend().await.unwrap();
    let rest = "grpcRoutes:
  - name: g
    rules:
      - backendRefs: [{ name: b }]
";
    let proxy = Proxy::start(
        &config(&backends(&[("b", "http2", &[backend.addr()])]), rest),
        &[],
    );
    let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
    // A deadline shorter than the backend's delay.
    let rsp = h2
        .request(
            grpc_request("/a.B/C")
                .header("grpc-timeout", "100m")
                .header("x-test-delay-ms", "5000")
                .body(grpc_frame(b""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(rsp.status, StatusCode::OK);
    assert_eq!(rsp.headers["grpc-status"], "4", "DEADLINE_EXCEEDED");
    // A long deadline: the backend answers and sees a grpc-timeout no longer than the client's.
    let rsp = h2
        .request(
            grpc_request("/a.B/C")
                .header("grpc-timeout", "10S")
                .header("x-test-trailers", "grpc-status=0")
                .body(grpc_frame(b""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        rsp.trailers.as_ref().map(|t| t["grpc-status"].clone()),
        Some("0".parse().unwrap()),
        "answered: {rsp:?}"
    );
    let seen = backend.requests();
    let timeout = seen
        .last()
        .and_then(|r| r.headers.get("grpc-timeout"))
        .map(|v| v.to_str().unwrap().to_owned());
    let parsed = timeout
        .as_deref()
        .and_then(|t| linkerd_http_classify::parse_grpc_timeout(t.as_bytes()).ok());
    assert!(
        parsed.is_some_and(|d| d <= Duration::from_secs(10) && d > Duration::from_secs(5)),
        "the backend sees the deadline: {timeout:?}"
    );
    let scrape = proxy
        .scrape_until(|s| s.sum(GRPC_STATUSES, &[("grpc_status", "DEADLINE_EXCEEDED")]) == 1.0)
        .await;
    assert_eq!(
        scrape.sum(
            GRPC_STATUSES,
            &[("route_name", "g"), ("grpc_status", "DEADLINE_EXCEEDED")]
        ),
        1.0,
        "{:#?}",
        statuses(&scrape)
    );
    // A malformed `grpc-timeout` does not reach the backend (on the connection every client
    // shares, a gRPC server's header decoder can take it badly for the requests after it).
    for bogus in ["bogus", "1s", "1.5S", "-1S", "123456789S"] {
        let rsp = h2
            .request(
                grpc_request("/a.B/C")
                    .header("grpc-timeout", bogus)
                    .header("x-test-trailers", "grpc-status=0")
                    .body(grpc_frame(b""))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(rsp.status, StatusCode::OK, "{bogus}");
        let seen = backend.requests();
        assert!(
            !seen.last().unwrap().headers.contains_key("grpc-timeout"),
            "{bogus}: {:?}",
            seen.last().unwrap().headers
        );
    }
}

// === backends ===

#[tokio::test]
async fn weighted_split_within_5_sigma() {
    let a = TestServer::backend().await.unwrap();
    let b = TestServer::backend().await.unwrap();
    let rest = "routes:
  - name: r
    rules:
      - backendRefs: [{ name: a, weight: 1 }, { name: b, weight: 3 }]
";
    let proxy = Proxy::start(
        &config(
            &backends(&[("a", "http1", &[a.addr()]), ("b", "http1", &[b.addr()])]),
            rest,
        ),
        &[],
    );
    // The proxy's RNG is seeded from entropy: a 5-sigma band makes a spurious failure
    // vanishingly rare (about 6e-7).
    const N: usize = 400;
    let mut client = HttpClient::http2(proxy.addr).await.unwrap();
    for _ in 0..N {
        let rsp = client.get("/").await.unwrap();
        assert_eq!(rsp.status(), 200);
        collect(rsp.into_body()).await.unwrap();
    }
    let p = 0.25;
    let n = N as f64;
    let sigma = (n * p * (1.0 - p)).sqrt();
    let got = a.request_count() as f64;
    assert_eq!(
        a.request_count() + b.request_count(),
        N,
        "every request reached a backend"
    );
    assert!(
        (got - n * p).abs() <= 5.0 * sigma,
        "backend a got {got} of {N}, expected {} +- {}",
        n * p,
        5.0 * sigma
    );
    let scrape = proxy
        .scrape_until(|s| s.sum("outbound_http_route_backend_requests_total", &[]) == n)
        .await;
    assert_eq!(
        scrape.get(
            "outbound_http_route_backend_requests_total",
            &[("route_name", "r"), ("backend_name", "a")]
        ),
        Some(got),
        "backend metrics agree"
    );
}

#[tokio::test]
async fn refusing_endpoint_is_avoided() {
    let refused = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let live = TestServer::backend().await.unwrap();
    let rest = "routes:
  - name: r
    rules:
      - backendRefs: [{ name: b }]
";
    let proxy = Proxy::start(
        &config(&backends(&[("b", "http1", &[refused, live.addr()])]), rest),
        &[],
    );
    wait_ready(&proxy, "b", 1.0).await;
    let mut client = HttpClient::http1(proxy.addr).await.unwrap();
    for i in 0..20 {
        let rsp = client.get("/").await.unwrap();
        assert_eq!(
            rsp.status(),
            200,
            "request {i} answered by the live endpoint"
        );
        collect(rsp.into_body()).await.unwrap();
    }
    assert_eq!(live.request_count(), 20);
    let scrape = proxy.scrape().await;
    assert_eq!(
        scrape.sum("balancer_endpoints", &[("backend_name", "b")]),
        2.0,
        "both endpoints counted"
    );
    assert_eq!(
        scrape.get(
            "balancer_endpoints",
            &[("backend_name", "b"), ("state", "pending")]
        ),
        Some(1.0),
        "the refusing one is pending"
    );
}

// === resets ===

#[tokio::test]
async fn reset_reasons_follow_the_table() {
    use h2::Reason;
    let backend = TestServer::backend().await.unwrap();
    let rest = "routes:
  - name: r
    rules:
      - backendRefs: [{ name: b }]
";
    let proxy = Proxy::start(
        &config(&backends(&[("b", "http2", &[backend.addr()])]), rest),
        &[],
    );
    let table = [
        ("CANCEL", Reason::CANCEL),
        ("REFUSED_STREAM", Reason::REFUSED_STREAM),
        ("ENHANCE_YOUR_CALM", Reason::ENHANCE_YOUR_CALM),
        ("INTERNAL_ERROR", Reason::INTERNAL_ERROR),
        ("PROTOCOL_ERROR", Reason::INTERNAL_ERROR),
        ("FLOW_CONTROL_ERROR", Reason::INTERNAL_ERROR),
        ("HTTP_1_1_REQUIRED", Reason::INTERNAL_ERROR),
    ];
    let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
    for (sent, want) in table {
        let req = get("/")
            .header("x-test-reset-before-headers", sent)
            .body(Bytes::new())
            .unwrap();
        let err = h2.request(req).await.expect_err("reset before headers");
        assert_eq!(err.reason(), Some(want), "{sent} before headers: {err}");

        let req = get("/")
            .header("x-test-reset-after-headers", sent)
            .header("x-test-body-len", "10")
            .body(Bytes::new())
            .unwrap();
        let rsp = h2.request(req).await.expect("headers first");
        assert_eq!(
            rsp.status,
            StatusCode::OK,
            "{sent} after headers: status sent"
        );
        assert_eq!(
            rsp.reset_reason(),
            Some(want),
            "{sent} after headers: {rsp:?}"
        );
    }

    // An HTTP/1 client: before headers a 502; after headers the body is cut.
    let mut h1 = HttpClient::http1(proxy.addr).await.unwrap();
    let req = get("/")
        .header("x-test-reset-before-headers", "PROTOCOL_ERROR")
        .body(empty())
        .unwrap();
    let rsp = h1.send(req).await.unwrap();
    assert_eq!(rsp.status(), 502);
    assert_eq!(
        header(&rsp, "l5d-proxy-error").as_deref(),
        Some("upstream reset (PROTOCOL_ERROR)")
    );
    collect(rsp.into_body()).await.unwrap();
    let req = get("/")
        .header("x-test-reset-after-headers", "CANCEL")
        .header("x-test-body-len", "10")
        .body(empty())
        .unwrap();
    let rsp = h1.send(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let (_, error) = collect_until_error(rsp.into_body()).await;
    assert!(
        error.is_some(),
        "the HTTP/1 body ends with an error, not cleanly"
    );

    let scrape = proxy
        .scrape_until(|s| {
            s.sum(
                "http_stream_resets_total",
                &[("direction", "inbound"), ("reason", "PROTOCOL_ERROR")],
            ) >= 2.0
        })
        .await;
    let count = |direction: &str, reason: &str| {
        scrape.sum(
            "http_stream_resets_total",
            &[("direction", direction), ("reason", reason)],
        )
    };
    assert!(
        count("inbound", "PROTOCOL_ERROR") >= 2.0,
        "resets received are counted"
    );
    assert!(
        count("outbound", "INTERNAL_ERROR") >= 6.0,
        "resets sent are counted with the reason chosen"
    );
}

/// Reads the JSON access log at `path` until it has `want` lines (bounded wait).
async fn access_lines(path: &std::path::Path, want: usize) -> Vec<serde_json::Value> {
    let mut lines: Vec<serde_json::Value> = vec![];
    for _ in 0..250 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        lines = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("JSON line {l:?}: {e}")))
            .collect();
        if lines.len() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lines
}

/// `http_stream_resets_total`: `inbound` counts each reset received from an upstream (one per
/// attempt), `outbound` each reset the proxy sends a client: once per request whatever the
/// retries, never to an HTTP/1 client (which gets a 502), and also for the resets the proxy
/// makes itself (a stream timeout after the headers). The access log of a request answered
/// by a reset still names its route and backend and counts its attempts.
#[tokio::test]
async fn resets_are_counted_where_they_are_sent() {
    let h2_backend = TestServer::backend().await.unwrap();
    let h1_backend = TestServer::backend_with(ServerProtocol::Http1)
        .await
        .unwrap();
    let dir = support::tempdir::TempDir::new();
    let log = dir.path().join("access.log");
    let yaml = format!(
        "accessLog: {{ format: json, output: {} }}
{}routes:
  - name: retried
    rules:
      - matches: [{{ path: {{ type: PathPrefix, value: /refused }} }}]
        backendRefs: [{{ name: h2 }}]
        retry: {{ attempts: 2, backoff: 5ms }}
      - matches: [{{ path: {{ type: PathPrefix, value: /idle }} }}]
        backendRefs: [{{ name: h1 }}]
        streamTimeouts: {{ idle: 200ms }}
",
        log.display(),
        backends(&[
            ("h2", "http2", &[h2_backend.addr()]),
            ("h1", "http1", &[h1_backend.addr()])
        ])
    );
    let proxy = Proxy::start(&yaml, &[]);
    let count = |scrape: &Scrape, direction: &str, reason: &str| {
        scrape.sum(
            "http_stream_resets_total",
            &[("direction", direction), ("reason", reason)],
        )
    };

    // HTTP/2 client: three attempts refused upstream, one reset sent.
    let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
    let req = get("/refused")
        .header("x-test-reset-before-headers", "REFUSED_STREAM")
        .body(Bytes::new())
        .unwrap();
    let err = h2.request(req).await.expect_err("reset");
    assert_eq!(err.reason(), Some(h2::Reason::REFUSED_STREAM), "{err}");
    let scrape = proxy
        .scrape_until(|s| count(s, "inbound", "REFUSED_STREAM") >= 3.0)
        .await;
    assert_eq!(
        count(&scrape, "inbound", "REFUSED_STREAM"),
        3.0,
        "one per attempt"
    );
    assert_eq!(
        count(&scrape, "outbound", "REFUSED_STREAM"),
        1.0,
        "one reset sent"
    );

    // HTTP/1 client: a 502, no reset sent.
    let mut h1 = HttpClient::http1(proxy.addr).await.unwrap();
    let req = get("/refused")
        .header("x-test-reset-before-headers", "REFUSED_STREAM")
        .body(empty())
        .unwrap();
    let rsp = h1.send(req).await.unwrap();
    assert_eq!(rsp.status(), 502);
    collect(rsp.into_body()).await.unwrap();
    let scrape = proxy
        .scrape_until(|s| count(s, "inbound", "REFUSED_STREAM") >= 6.0)
        .await;
    assert_eq!(count(&scrape, "inbound", "REFUSED_STREAM"), 6.0);
    assert_eq!(
        count(&scrape, "outbound", "REFUSED_STREAM"),
        1.0,
        "an HTTP/1 client gets no reset"
    );

    // A reset the proxy makes: the idle timeout after the headers (an HTTP/1 upstream).
    let req = get("/idle")
        .header("x-test-drip", "2,10,1000")
        .body(Bytes::new())
        .unwrap();
    let rsp = h2.request(req).await.expect("headers first");
    assert_eq!(rsp.status, StatusCode::OK);
    assert_eq!(rsp.reset_reason(), Some(h2::Reason::CANCEL), "{rsp:?}");
    let scrape = proxy
        .scrape_until(|s| count(s, "outbound", "CANCEL") >= 1.0)
        .await;
    assert_eq!(
        count(&scrape, "outbound", "CANCEL"),
        1.0,
        "the proxy's own reset"
    );
    assert_eq!(count(&scrape, "inbound", "CANCEL"), 0.0, "none received");

    // The access log of the HTTP/2 request answered by a reset.
    let lines = access_lines(&log, 3).await;
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let reset = lines
        .iter()
        .find(|l| l["uri"].as_str().is_some_and(|u| u.ends_with("/refused")) && l["status"] == 0)
        .unwrap_or_else(|| panic!("the reset request's line: {lines:#?}"));
    assert_eq!(reset["error"], "RESET", "{reset}");
    assert_eq!(reset["route"], "retried", "the route is known: {reset}");
    assert_eq!(reset["backend"], "h2", "the backend that failed: {reset}");
    assert_eq!(reset["attempts"], 3, "1 + 2 retries: {reset}");
    let h1_line = lines
        .iter()
        .find(|l| l["status"] == 502)
        .unwrap_or_else(|| panic!("the 502's line: {lines:#?}"));
    assert_eq!(h1_line["route"], "retried", "{h1_line}");
    assert_eq!(h1_line["backend"], "h2", "{h1_line}");
    assert_eq!(h1_line["attempts"], 3, "{h1_line}");
}

/// An HTTP/1 upstream that closes the connection before the body it announced is complete:
/// after the headers, so an upstream reset (`RESET`, DESIGN.md section 5) with the status
/// sent, in the metrics and in the access log; the client's body ends with an error.
#[tokio::test]
async fn http1_upstream_cut_mid_body_is_a_reset() {
    let backend = TestServer::backend_with(ServerProtocol::Http1)
        .await
        .unwrap();
    let dir = support::tempdir::TempDir::new();
    let log = dir.path().join("access.log");
    let yaml = format!(
        "accessLog: {{ format: json, output: {} }}
{}routes:
  - name: r
    rules:
      - backendRefs: [{{ name: b }}]
",
        log.display(),
        backends(&[("b", "http1", &[backend.addr()])])
    );
    let proxy = Proxy::start(&yaml, &[]);
    // The upstream's head, data and close arrive together: the client still gets the head
    // (hyper would close without flushing it), every time. Then a chunked body cut the same
    // way (the upstream aborts the connection mid-body): it fails too, never ending cleanly
    // with a final chunk.
    const N: usize = 5;
    let cuts = [
        ("x-test-content-length", "1000"),
        ("x-test-reset-after-headers", "CANCEL"),
    ];
    for (name, value) in cuts {
        for i in 0..N {
            let mut h1 = HttpClient::http1(proxy.addr).await.unwrap();
            let req = get("/cut")
                .header(name, value)
                .header("x-test-body-len", "10")
                .body(empty())
                .unwrap();
            let rsp = h1
                .send(req)
                .await
                .unwrap_or_else(|e| panic!("{name} {i}: a response head: {e}"));
            assert_eq!(rsp.status(), 200);
            let (_, error) = collect_until_error(rsp.into_body()).await;
            assert!(error.is_some(), "{name} {i}: the body ends with an error");
        }
    }
    let labels = [
        ("route_name", "r"),
        ("http_status", "200"),
        ("error", "RESET"),
    ];
    let scrape = proxy
        .scrape_until(|s| s.sum(STATUSES, &labels) == 2.0 * N as f64)
        .await;
    assert_eq!(
        scrape.sum(STATUSES, &labels),
        2.0 * N as f64,
        "RESET after the headers: {:#?}",
        statuses(&scrape)
    );
    let lines = access_lines(&log, 2 * N).await;
    assert_eq!(lines.len(), 2 * N, "{lines:#?}");
    for l in &lines {
        assert_eq!(l["status"], 200, "{l}");
        assert_eq!(l["error"], "RESET", "{l}");
    }
}

/// Durations count from the request's arrival: an injected delay is part of the route's
/// request duration whether the request is then forwarded or answered by the proxy, and an
/// answer the proxy makes at once takes a few microseconds, not zero (HTTP/1.1 serves it
/// within one step of its connection).
#[tokio::test]
async fn durations_count_from_arrival() {
    let backend = TestServer::backend().await.unwrap();
    let dir = support::tempdir::TempDir::new();
    let log = dir.path().join("access.log");
    let yaml = format!(
        "accessLog: {{ format: json, output: {} }}
{}routes:
  - name: delayed
    rules:
      - matches: [{{ path: {{ type: PathPrefix, value: /forwarded }} }}]
        filters:
          - type: InjectFailure
            injectFailure: {{ status: 503, ratio: 0, delay: 150ms, delayRatio: 1 }}
        backendRefs: [{{ name: b }}]
  - name: failed
    rules:
      - matches: [{{ path: {{ type: PathPrefix, value: /failed }} }}]
        filters:
          - type: InjectFailure
            injectFailure: {{ status: 503, ratio: 1, delay: 150ms, delayRatio: 1 }}
        backendRefs: [{{ name: b }}]
",
        log.display(),
        backends(&[("b", "http1", &[backend.addr()])])
    );
    let proxy = Proxy::start(&yaml, &[]);
    let mut h1 = HttpClient::http1(proxy.addr).await.unwrap();
    for (path, status) in [("/forwarded", 200), ("/failed", 503), ("/nowhere", 404)] {
        let rsp = h1.get(path).await.unwrap();
        assert_eq!(rsp.status(), status, "{path}");
        collect(rsp.into_body()).await.unwrap();
    }
    const DURATION: &str = "outbound_http_route_request_duration_seconds_sum";
    let scrape = proxy
        .scrape_until(|s| s.sum(DURATION, &[("route_name", "failed")]) > 0.0)
        .await;
    for route in ["delayed", "failed"] {
        let sum = scrape.sum(DURATION, &[("route_name", route)]);
        assert!(
            (0.15..5.0).contains(&sum),
            "{route}: the injected delay is in the request duration: {sum}"
        );
    }
    let backend_sum = scrape.sum(
        "outbound_http_route_backend_response_duration_seconds_sum",
        &[("route_name", "delayed")],
    );
    assert!(
        backend_sum < 0.15,
        "the backend's time excludes it: {backend_sum}"
    );
    let lines = access_lines(&log, 3).await;
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for l in &lines {
        let ms = l["duration_ms"].as_f64().unwrap_or_default();
        let min = if l["status"] == 404 { 0.0 } else { 150.0 };
        assert!(ms > min, "duration_ms {ms} > {min}: {l}");
        assert!(l["headers_ms"].as_f64().unwrap_or_default() > 0.0, "{l}");
    }
}

/// An HTTP/2 client's `cookie` fields reach an HTTP/1.1 backend as one field, joined with
/// "; " (RFC 9113 section 8.2.3); a single one is left as it is.
#[tokio::test]
async fn http2_cookies_are_joined_for_http1_backends() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heads_tx, mut heads) = tokio::sync::mpsc::unbounded_channel::<String>();
    let server = tokio::spawn(async move {
        // Bounded by the test: aborted when it ends.
        while let Ok((mut io, _)) = listener.accept().await {
            let heads_tx = heads_tx.clone();
            tokio::spawn(async move {
                loop {
                    let head = read_head(&mut io).await;
                    if head.is_empty() {
                        return;
                    }
                    let _ = heads_tx.send(head);
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if io.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let rest = "routes:
  - name: r
    rules:
      - backendRefs: [{ name: b }]
";
    let proxy = Proxy::start(&config(&backends(&[("b", "http1", &[addr])]), rest), &[]);
    let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
    let cookies = |head: &str| -> Vec<String> {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(name, _)| name.eq_ignore_ascii_case("cookie"))
            .map(|(_, value)| value.trim().to_owned())
            .collect()
    };
    let req = get("/two")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(h2.request(req).await.unwrap().status, StatusCode::OK);
    let head = tokio::time::timeout(Duration::from_secs(5), heads.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cookies(&head), ["a=1; b=2"], "{head}");
    let req = get("/one")
        .header("cookie", "c=3")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(h2.request(req).await.unwrap().status, StatusCode::OK);
    let head = tokio::time::timeout(Duration::from_secs(5), heads.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cookies(&head), ["c=3"], "{head}");
    server.abort();
}

// === tunnels ===

#[tokio::test]
async fn websocket_upgrade_through_the_proxy() {
    use tokio_tungstenite::tungstenite::Message;
    // A WebSocket echo server (tungstenite), HTTP/1.1.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        // Ends when the test aborts the task.
        while let Ok((io, _)) = listener.accept().await {
            tokio::spawn(async move {
                // The proxy's health probes connect and close: not WebSocket handshakes.
                let Ok(mut ws) = tokio_tungstenite::accept_async(io).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        if ws.send(msg).await.is_err() {
                            break;
                        }
                    } else if msg.is_close() {
                        break;
                    }
                }
            });
        }
    });
    let rest = "routes:
  - name: r
    rules:
      - backendRefs: [{ name: ws }]
";
    let proxy = Proxy::start(
        &config(&backends(&[("ws", "http1", &[ws_addr])]), rest),
        &[],
    );
    let io = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut ws, rsp) = tokio_tungstenite::client_async(format!("ws://{}/chat", proxy.addr), io)
        .await
        .expect("WebSocket handshake through the proxy");
    assert_eq!(rsp.status(), StatusCode::SWITCHING_PROTOCOLS);
    for text in ["hello", "world"] {
        ws.send(Message::text(text)).await.unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo in time")
            .expect("a message")
            .expect("no error");
        assert_eq!(
            echo.into_text().unwrap().as_str(),
            text,
            "echoed through the tunnel"
        );
    }
    ws.close(None).await.unwrap();

    // The same backend through an HTTP/2 client's extended CONNECT (RFC 8441): answered 200,
    // and counted once in the route's statuses (the bridged answer is still the upstream's).
    let io = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (h2, conn) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let mut h2 = tokio::time::timeout(Duration::from_secs(5), h2.ready())
        .await
        .expect("ready in time")
        .unwrap();
    // The server's SETTINGS arrive with the connection's first turns.
    for _ in 0..100 {
        if h2.is_extended_connect_protocol_enabled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        h2.is_extended_connect_protocol_enabled(),
        "RFC 8441 advertised"
    );
    let mut req = Request::connect(format!("http://{}/chat", proxy.addr))
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    req.extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    let (rsp, _send) = h2.send_request(req, false).unwrap();
    let rsp = tokio::time::timeout(Duration::from_secs(5), rsp)
        .await
        .expect("answered in time")
        .unwrap();
    assert_eq!(
        rsp.status(),
        StatusCode::OK,
        "RFC 8441: 200, not 101: {:?}",
        rsp.headers()
    );
    let route = [("route_name", "r")];
    const STATUSES: &str = "outbound_http_route_request_statuses_total";
    let scrape = proxy.scrape_until(|s| s.sum(STATUSES, &route) >= 2.0).await;
    assert_eq!(
        scrape.sum(STATUSES, &route),
        2.0,
        "one sample per tunnel: {:?}",
        scrape.matching(STATUSES, &[]).collect::<Vec<_>>()
    );
    // Each with the status its client got: 101 over HTTP/1.1, 200 over HTTP/2.
    for status in ["101", "200"] {
        assert_eq!(
            scrape.sum(STATUSES, &[("route_name", "r"), ("http_status", status)]),
            1.0,
            "{status}: {:?}",
            scrape.matching(STATUSES, &[]).collect::<Vec<_>>()
        );
    }
    server.abort();
}

#[tokio::test]
async fn connect_tunnel_through_the_proxy() {
    // An HTTP/1.1 backend that answers CONNECT with 200 and echoes the tunnel's bytes.
    let backend = TestServer::serve(
        ServerProtocol::Http1,
        |req: Request<hyper::body::Incoming>| async move {
            if req.method() == http::Method::CONNECT {
                tokio::spawn(async move {
                    let Ok(upgraded) = hyper::upgrade::on(req).await else {
                        return;
                    };
                    let mut io = hyper_util::rt::TokioIo::new(upgraded);
                    let mut buf = [0u8; 1024];
                    // Ends when the tunnel closes.
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        },
    )
    .await
    .unwrap();
    // A short header read timeout: the tunnel must outlive it (the connection's head timer
    // stops once the CONNECT is answered and the connection upgraded).
    let rest = "server: { headerReadTimeout: 1s }
routes:
  - name: r
    rules:
      - backendRefs: [{ name: b }]
";
    let proxy = Proxy::start(
        &config(&backends(&[("b", "http1", &[backend.addr()])]), rest),
        &[],
    );
    let mut io = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    io.write_all(b"CONNECT tunnel.example:443 HTTP/1.1\r\nhost: tunnel.example:443\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut io).await;
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "tunnel established: {head:?}"
    );
    for (i, msg) in [&b"ping"[..], b"pong and more"].into_iter().enumerate() {
        if i > 0 {
            // Quiet for longer than the header read timeout.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        io.write_all(msg).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), io.read_exact(&mut buf))
            .await
            .expect("echo in time")
            .expect("echo");
        assert_eq!(buf, msg, "bytes tunnelled both ways");
    }
    assert_eq!(backend.request_count(), 1, "the backend got the CONNECT");
}

// === HTTP/1 details ===

#[tokio::test]
async fn http10_client_gets_http10_without_chunking() {
    let backend = TestServer::backend().await.unwrap();
    let rest = "routes:
  - name: r
    rules:
      - backendRefs: [{ name: b }]
";
    let proxy = Proxy::start(
        &config(&backends(&[("b", "http1", &[backend.addr()])]), rest),
        &[],
    );
    // A body of unknown length (drip): close-delimited for HTTP/1.0.
    let mut io = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    io.write_all(b"GET /ten HTTP/1.0\r\nhost: example.com\r\nx-test-drip: 3,10,10\r\n\r\n")
        .await
        .unwrap();
    let text = read_all(&mut io).await;
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    assert!(
        head.starts_with("HTTP/1.0 200"),
        "answered in HTTP/1.0: {head:?}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "no chunked encoding: {head:?}"
    );
    assert_eq!(body.as_bytes(), &body_pattern(30)[..], "the whole body");
    // A keep-alive HTTP/1.0 client is not promised keep-alive for a body it can only read
    // to the close (RFC 9112 section 9.3, appendix C.2.2).
    let mut io = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    io.write_all(
        b"GET /ten HTTP/1.0\r\nhost: example.com\r\nconnection: keep-alive\r\nx-test-drip: 3,10,10\r\n\r\n",
    )
    .await
    .unwrap();
    let text = read_all(&mut io).await;
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    assert!(
        !head.to_ascii_lowercase().contains("keep-alive"),
        "no keep-alive promised: {head:?}"
    );
    assert_eq!(
        body.as_bytes(),
        &body_pattern(30)[..],
        "the whole body, then the close"
    );
    // HTTP/1.0 may omit Host.
    let mut io = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    io.write_all(b"GET /nohost HTTP/1.0\r\n\r\n").await.unwrap();
    let text = read_all(&mut io).await;
    assert!(
        text.starts_with("HTTP/1.0 200"),
        "no Host is fine: {text:?}"
    );
}

#[tokio::test]
async fn absolute_form_request_routes_by_its_authority() {
    let backend = TestServer::backend().await.unwrap();
    let rest = "routes:
  - name: abs
    hostnames: [abs.example]
    rules:
      - backendRefs: [{ name: b }]
";
    let proxy = Proxy::start(
        &config(&backends(&[("b", "http1", &[backend.addr()])]), rest),
        &[],
    );
    let mut io = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    io.write_all(
        b"GET http://abs.example/p?q=1 HTTP/1.1\r\nhost: wrong.example\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let text = read_all(&mut io).await;
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "routed by the URI authority: {text:?}"
    );
    let seen = backend.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers["host"], "abs.example",
        "Host replaced by the authority"
    );
    assert_eq!(seen[0].uri.path(), "/p");
    assert_eq!(seen[0].uri.query(), Some("q=1"));
}

/// Dot segments (`..`, `.`, also as `%2e`) are removed from the path before routing, and
/// the path without them is forwarded: a `PathPrefix /public` rule cannot be left through
/// `/public/../admin` (the upstream would resolve it to `/admin`). Userinfo in the target is
/// refused (RFC 9110 section 4.2.4).
#[tokio::test]
async fn dot_segments_are_resolved_before_routing() {
    let public = TestServer::backend().await.unwrap();
    let admin = TestServer::backend().await.unwrap();
    let rest = "routes:
  - name: r
    rules:
      - matches: [{ path: { type: PathPrefix, value: /public } }]
        backendRefs: [{ name: pub }]
      - matches: [{ path: { type: PathPrefix, value: /admin } }]
        backendRefs: [{ name: adm }]
";
    let proxy = Proxy::start(
        &config(
            &backends(&[
                ("pub", "http1", &[public.addr()]),
                ("adm", "http2", &[admin.addr()]),
            ]),
            rest,
        ),
        &[],
    );
    for target in [
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/public/%2E./admin/x",
        "/public/./../admin/x",
    ] {
        let mut io = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        let req = format!("GET {target}?q=1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        io.write_all(req.as_bytes()).await.unwrap();
        let text = read_all(&mut io).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{target}: {text:?}");
    }
    let mut h2 = HttpClient::http2(proxy.addr).await.unwrap();
    let rsp = h2
        .send(get("http://x/public/../admin/x?q=1").body(empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(public.request_count(), 0, "nothing left /public's rule");
    let seen = admin.requests();
    assert_eq!(seen.len(), 5);
    for r in &seen {
        assert_eq!(r.uri.path(), "/admin/x", "the resolved path is forwarded");
        assert_eq!(r.uri.query(), Some("q=1"));
    }
    // `/public/./x` stays under /public, as `/public/x`.
    let rsp = h2
        .send(get("http://x/public/./x").body(empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(public.requests()[0].uri.path(), "/public/x");

    let mut io = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    io.write_all(
        b"GET http://alice:pw@x/public/y HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let text = read_all(&mut io).await;
    assert!(text.starts_with("HTTP/1.1 400"), "userinfo: {text:?}");
    assert!(
        text.contains("l5d-proxy-error: bad request: userinfo in the target"),
        "{text:?}"
    );
    assert_eq!(
        public.request_count(),
        1,
        "the refused request went nowhere"
    );
}

/// A chunked `GET` body from an HTTP/1.1 client reaches an `http1` backend, chunked:
/// hyper's HTTP/1 client would send the request without it. An HTTP/2 client's `GET` body
/// with a `content-length` goes with it; one without (its HEADERS leaving the stream open,
/// then an empty DATA frame) goes bodiless, as it came.
#[tokio::test]
async fn get_bodies_of_unknown_length_reach_http1_backends() {
    let backend = TestServer::backend().await.unwrap();
    let rest = "routes:
  - name: r
    rules:
      - backendRefs: [{ name: b }]
";
    let proxy = Proxy::start(
        &config(&backends(&[("b", "http1", &[backend.addr()])]), rest),
        &[],
    );
    let mut io = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    io.write_all(
        b"GET /search HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let text = read_all(&mut io).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    let mut h2 = HttpClient::http2(proxy.addr).await.unwrap();
    let rsp = h2
        .send(
            get("http://x/search")
                .body(MockBody::new().data("from h2").with_exact_size(7))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let rsp = h2
        .send(get("http://x/open").body(MockBody::new().data("")).unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let seen = backend.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].body, "hello world", "the HTTP/1.1 client's body");
    assert_eq!(seen[1].body, "from h2", "the HTTP/2 client's body");
    assert!(
        !seen[2].headers.contains_key("transfer-encoding"),
        "an HTTP/2 GET ending with an empty DATA frame stays bodiless: {:?}",
        seen[2].headers
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped() {
    let backend = TestServer::serve(
        ServerProtocol::Auto,
        |req: Request<hyper::body::Incoming>| async move {
            let names: Vec<String> = req.headers().keys().map(ToString::to_string).collect();
            Ok::<_, Infallible>(
                Response::builder()
                    .header("connection", "x-bar")
                    .header("x-bar", "hop")
                    .header("keep-alive", "timeout=5")
                    .header("proxy-connection", "keep-alive")
                    .header("x-end-to-end", "kept")
                    .body(Full::new(Bytes::from(names.join(","))))
                    .unwrap(),
            )
        },
    )
    .await
    .unwrap();
    let rest = "routes:
  - name: r
    rules:
      - backendRefs: [{ name: b }]
";
    let proxy = Proxy::start(
        &config(&backends(&[("b", "http1", &[backend.addr()])]), rest),
        &[],
    );
    let mut client = HttpClient::http1(proxy.addr).await.unwrap();
    let req = get("/")
        .header("connection", "x-foo")
        .header("x-foo", "hop")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "gzip")
        .header("upgrade", "foo/1")
        .header("x-end-to-end", "kept")
        .body(empty())
        .unwrap();
    let rsp = client.send(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    for name in ["x-bar", "keep-alive", "proxy-connection"] {
        assert!(
            rsp.headers().get(name).is_none(),
            "response {name} stripped"
        );
    }
    assert_eq!(header(&rsp, "x-end-to-end").as_deref(), Some("kept"));
    let body = collect(rsp.into_body()).await.unwrap().data;
    let seen: Vec<&str> = std::str::from_utf8(&body).unwrap().split(',').collect();
    for name in ["x-foo", "keep-alive", "proxy-connection", "te", "upgrade"] {
        assert!(!seen.contains(&name), "request {name} stripped: {seen:?}");
    }
    assert!(
        seen.contains(&"x-end-to-end"),
        "end-to-end headers kept: {seen:?}"
    );
}

// === metrics and the access log, after traffic ===

#[tokio::test]
async fn metrics_and_json_access_log_agree() {
    let backend = TestServer::backend().await.unwrap();
    let dir = support::tempdir::TempDir::new();
    let log = dir.path().join("access.log");
    let yaml = format!(
        "accessLog: {{ format: json, output: {} }}
{}routes:
  - name: web
    rules:
      - matches: [{{ path: {{ type: PathPrefix, value: /web }} }}]
        backendRefs: [{{ name: b }}]
        retry: {{ codes: [503], attempts: 1, backoff: 5ms }}
      - matches: [{{ path: {{ type: PathPrefix, value: /slow }} }}]
        backendRefs: [{{ name: b }}]
        timeouts: {{ request: 100ms }}
grpcRoutes:
  - name: greeter
    rules:
      - backendRefs: [{{ name: b }}]
",
        log.display(),
        backends(&[("b", "http2", &[backend.addr()])]),
    );
    let proxy = Proxy::start(&yaml, &[]);
    let mut h1 = HttpClient::http1(proxy.addr).await.unwrap();
    let mut sent = 0;
    for _ in 0..3 {
        let req = Request::post("/web/ok")
            .header("user-agent", "matrix-test")
            .header("x-request-id", "req-1")
            .body(Full::new(Bytes::from_static(b"12345")))
            .unwrap();
        let rsp = h1.send(req).await.unwrap();
        assert_eq!(rsp.status(), 200);
        collect(rsp.into_body()).await.unwrap();
        sent += 1;
    }
    let req = get("/web/fail")
        .header("x-test-status", "503")
        .body(empty())
        .unwrap();
    let rsp = h1.send(req).await.unwrap();
    assert_eq!(rsp.status(), 503, "retried once, still 503");
    collect(rsp.into_body()).await.unwrap();
    sent += 1;
    let rsp = h1.get("/nowhere").await.unwrap();
    assert_eq!(rsp.status(), 404);
    collect(rsp.into_body()).await.unwrap();
    sent += 1;
    let req = get("/slow")
        .header("x-test-delay-ms", "5000")
        .body(empty())
        .unwrap();
    let rsp = h1.send(req).await.unwrap();
    assert_eq!(rsp.status(), 504);
    collect(rsp.into_body()).await.unwrap();
    sent += 1;
    let mut h2 = H2Client::connect(proxy.addr).await.unwrap();
    let rsp = h2
        .request(
            grpc_request("/helloworld.Greeter/SayHello")
                .header("x-test-trailers", "grpc-status=0")
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .body(grpc_frame(b"hi"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(rsp.status, StatusCode::OK);
    sent += 1;

    // The log is written when bodies end, through a batched writer: wait (bounded).
    let lines = access_lines(&log, sent).await;
    assert_eq!(lines.len(), sent, "one line per request: {lines:#?}");

    // Field types (DESIGN.md section 7).
    for l in &lines {
        for f in ["timestamp", "method", "uri", "version", "client_addr"] {
            assert!(l[f].is_string(), "{f} is a string: {l}");
        }
        for f in [
            "status",
            "attempts",
            "request_bytes",
            "response_bytes",
            "duration_ms",
            "headers_ms",
        ] {
            assert!(l[f].is_number(), "{f} is a number: {l}");
        }
        assert!(
            l["grpc_status"].is_number() || l["grpc_status"].is_null(),
            "{l}"
        );
        assert!(l["error"].is_string() || l["error"].is_null(), "{l}");
        assert!(l["route"].is_string() || l["route"].is_null(), "{l}");
    }
    let ok: Vec<_> = lines
        .iter()
        .filter(|l| l["uri"].as_str().is_some_and(|u| u.ends_with("/web/ok")))
        .collect();
    assert_eq!(ok.len(), 3);
    for l in &ok {
        assert_eq!(l["status"], 200);
        assert_eq!(l["method"], "POST");
        assert_eq!(l["version"], "HTTP/1.1");
        assert_eq!(l["route"], "web");
        assert_eq!(l["backend"], "b");
        assert_eq!(l["attempts"], 1);
        assert_eq!(l["request_bytes"], 5);
        assert_eq!(l["response_bytes"], 5, "the echo");
        assert_eq!(l["user_agent"], "matrix-test");
        assert_eq!(l["trace_id"], "req-1");
        assert!(l["error"].is_null());
    }
    let fail = lines
        .iter()
        .find(|l| l["status"] == 503)
        .expect("the 503 line");
    assert_eq!(fail["attempts"], 2, "1 + one retry");
    let grpc = lines
        .iter()
        .find(|l| l["route"] == "greeter")
        .expect("the gRPC line");
    assert_eq!(grpc["grpc_status"], 0);
    assert_eq!(grpc["version"], "HTTP/2.0");
    assert_eq!(grpc["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let timeout = lines
        .iter()
        .find(|l| l["status"] == 504)
        .expect("the 504 line");
    assert_eq!(timeout["error"], "REQUEST_TIMEOUT");
    let noroute = lines
        .iter()
        .find(|l| l["status"] == 404)
        .expect("the 404 line");
    assert_eq!(noroute["error"], "NO_ROUTE");

    // Every line is a request counted in the route metrics with the same labels.
    let mut from_log: BTreeMap<(String, String, String, String), f64> = BTreeMap::new();
    for l in &lines {
        let route = l["route"].as_str().unwrap_or("").to_owned();
        let status = l["status"].to_string();
        let grpc = l["grpc_status"].as_u64().map(|c| match c {
            0 => "OK".to_owned(),
            other => other.to_string(),
        });
        let error = l["error"].as_str().unwrap_or("").to_owned();
        *from_log
            .entry((route, status, grpc.unwrap_or_default(), error))
            .or_default() += 1.0;
    }
    let want_total = sent as f64;
    let scrape = proxy
        .scrape_until(|s| s.sum(STATUSES, &[]) + s.sum(GRPC_STATUSES, &[]) == want_total)
        .await;
    let mut from_metrics: BTreeMap<(String, String, String, String), f64> = BTreeMap::new();
    for s in scrape
        .samples
        .iter()
        .filter(|s| s.name == STATUSES || s.name == GRPC_STATUSES)
        .filter(|s| s.value > 0.0)
    {
        let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
        *from_metrics
            .entry((
                l("route_name"),
                l("http_status"),
                l("grpc_status"),
                l("error"),
            ))
            .or_default() += s.value;
    }
    assert_eq!(
        from_log, from_metrics,
        "the access log and /metrics count the same requests"
    );
    assert_eq!(
        scrape.sum("outbound_http_route_requests_in_flight", &[]),
        0.0,
        "nothing in flight"
    );
    assert_eq!(
        scrape.get(
            "outbound_http_route_retry_limit_exceeded_total",
            &[("route_name", "web")]
        ),
        Some(1.0),
        "the 503 ran out of retries"
    );
    let attempts: f64 = lines
        .iter()
        .filter(|l| l["route"] == "web")
        .map(|l| l["attempts"].as_f64().unwrap())
        .sum();
    assert_eq!(
        scrape.sum(
            "outbound_http_route_backend_requests_total",
            &[("route_name", "web")]
        ),
        attempts,
        "each attempt is a backend request"
    );
}
