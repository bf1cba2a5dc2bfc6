//! Filter behaviours of the Gateway API conformance suite (written from the spec) and the
//! router's synthetic answers, through the `Router` over in-memory services.

mod support;

use http::{HeaderMap, Request, Response, StatusCode};
use linkerd_http_classify::Protocol;
use linkerd_http_route::{
    MirrorBody, PathModifier, RouteBody, RouteLayer, RouteMatch, Rule, SharedRng,
    config::RuleExtensions,
};
use std::convert::Infallible;
use tower::{Layer, ServiceExt};

/// Every rule's service echoes the request head: `x-uri`, `x-host`, `x-rule`, and the request
/// headers prefixed with `x-echo-`.
type Echo = tower::util::BoxCloneService<Request<MirrorBody<String>>, Response<String>, Infallible>;

fn make(rule: &Rule<RuleExtensions>) -> Echo {
    let rule_name = format!("{}/{}", rule.route_name(), rule.index());
    Echo::new(tower::service_fn(
        move |req: Request<MirrorBody<String>>| {
            let rule_name = rule_name.clone();
            async move {
                assert!(
                    req.extensions().get::<RouteMatch>().is_some(),
                    "the router inserts RouteMatch before the inner service"
                );
                assert!(
                    req.extensions().get::<RuleExtensions>().is_some(),
                    "the router inserts the rule's policy"
                );
                let mut rsp = Response::new(req.body().get_ref().clone());
                let h = rsp.headers_mut();
                h.insert("x-uri", req.uri().to_string().parse().expect("uri"));
                if let Some(host) = req.headers().get("host") {
                    h.insert("x-host", host.clone());
                }
                h.insert("x-rule", rule_name.parse().expect("rule"));
                h.insert("x-backend-set", "backend".parse().expect("v"));
                h.append("x-backend-add", "backend".parse().expect("v"));
                h.insert("x-backend-remove", "backend".parse().expect("v"));
                for (k, v) in req.headers() {
                    let name = format!("x-echo-{k}");
                    h.append(
                        http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                        v.clone(),
                    );
                }
                Ok::<_, Infallible>(rsp)
            }
        },
    ))
}

async fn send(
    yaml: &str,
    listen_port: Option<u16>,
    req: Request<String>,
) -> Response<RouteBody<String>> {
    let mut layer = RouteLayer::new(support::table(yaml)).with_rng(SharedRng::seeded(1));
    if let Some(p) = listen_port {
        layer = layer.with_listen_port(p);
    }
    layer.layer(make).oneshot(req).await.expect("infallible")
}

fn get(uri: &str) -> Request<String> {
    Request::get(uri).body(String::new()).expect("request")
}

fn values(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect()
}

#[tokio::test]
async fn http_route_request_header_modifier() {
    let yaml = r#"
routes:
  - name: r
    rules:
      - filters:
          - type: RequestHeaderModifier
            requestHeaderModifier:
              set: [{ name: X-Header-Set, value: set-overwrites-values }]
              add: [{ name: X-Header-Add, value: add-appends-values }]
              remove: [X-Header-Remove]
        backendRefs: [{ name: web }]
"#;
    let req = Request::get("http://example.com/")
        .header("x-header-set", "some-other-value")
        .header("x-header-add", "existing")
        .header("x-header-remove", "gone")
        .header("x-header-keep", "kept")
        .body(String::new())
        .expect("request");
    let rsp = send(yaml, None, req).await;
    let h = rsp.headers();
    assert_eq!(
        values(h, "x-echo-x-header-set"),
        ["set-overwrites-values"],
        "set replaces existing values"
    );
    assert_eq!(
        values(h, "x-echo-x-header-add"),
        ["existing", "add-appends-values"],
        "add appends to existing values"
    );
    assert!(
        h.get("x-echo-x-header-remove").is_none(),
        "remove deletes the header"
    );
    assert_eq!(
        values(h, "x-echo-x-header-keep"),
        ["kept"],
        "others untouched"
    );
}

#[tokio::test]
async fn http_route_response_header_modifier() {
    let yaml = r"
routes:
  - name: r
    rules:
      - filters:
          - type: ResponseHeaderModifier
            responseHeaderModifier:
              set: [{ name: x-backend-set, value: proxy }]
              add: [{ name: x-backend-add, value: proxy }]
              remove: [x-backend-remove]
        backendRefs: [{ name: web }]
      - matches: [{ path: { value: /empty } }]
        filters:
          - type: ResponseHeaderModifier
            responseHeaderModifier: { add: [{ name: x-added, value: on-synthetic }] }
";
    let rsp = send(yaml, None, get("http://example.com/")).await;
    let h = rsp.headers();
    assert_eq!(values(h, "x-backend-set"), ["proxy"], "set overwrites");
    assert_eq!(
        values(h, "x-backend-add"),
        ["backend", "proxy"],
        "add appends"
    );
    assert!(h.get("x-backend-remove").is_none(), "remove deletes");

    let rsp = send(yaml, None, get("http://example.com/empty")).await;
    assert_eq!(
        rsp.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "no backends"
    );
    assert_eq!(
        values(rsp.headers(), "x-added"),
        ["on-synthetic"],
        "response filters apply to the rule's synthetic answers too"
    );
}

#[tokio::test]
async fn http_route_redirects() {
    let yaml = r"
routes:
  - name: r
    rules:
      - matches: [{ path: { type: Exact, value: /hostname } }]
        filters: [{ type: RequestRedirect, requestRedirect: { hostname: example.org } }]
      - matches: [{ path: { type: Exact, value: /status } }]
        filters: [{ type: RequestRedirect, requestRedirect: { statusCode: 301 } }]
      - matches: [{ path: { type: Exact, value: /scheme } }]
        filters: [{ type: RequestRedirect, requestRedirect: { scheme: https } }]
      - matches: [{ path: { type: Exact, value: /port } }]
        filters: [{ type: RequestRedirect, requestRedirect: { port: 8083 } }]
      - matches: [{ path: { type: Exact, value: /https-443 } }]
        filters: [{ type: RequestRedirect, requestRedirect: { scheme: https, port: 443 } }]
      - matches: [{ path: { type: Exact, value: /http-8080 } }]
        filters: [{ type: RequestRedirect, requestRedirect: { scheme: http, port: 8080 } }]
      - matches: [{ path: { type: Exact, value: /full } }]
        filters:
          - type: RequestRedirect
            requestRedirect: { path: { type: ReplaceFullPath, replaceFullPath: /replacement-full } }
      - matches: [{ path: { type: PathPrefix, value: /original-prefix } }]
        filters:
          - type: RequestRedirect
            requestRedirect:
              statusCode: 308
              path: { type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix }
";
    let cases: &[(&str, Option<u16>, u16, &str)] = &[
        (
            "http://example.com/hostname",
            None,
            302,
            "http://example.org/hostname",
        ),
        (
            "http://example.com:8080/hostname",
            None,
            302,
            "http://example.org:8080/hostname",
        ),
        (
            "http://example.com/status",
            None,
            301,
            "http://example.com/status",
        ),
        (
            "http://example.com:4140/scheme",
            Some(4140),
            302,
            "https://example.com/scheme",
        ),
        (
            "http://example.com/port",
            None,
            302,
            "http://example.com:8083/port",
        ),
        (
            "http://example.com/https-443",
            None,
            302,
            "https://example.com/https-443",
        ),
        (
            "http://example.com/http-8080",
            None,
            302,
            "http://example.com:8080/http-8080",
        ),
        // Neither port nor scheme: the listen port, omitted when it is the default.
        (
            "http://example.com/status",
            Some(4140),
            301,
            "http://example.com:4140/status",
        ),
        (
            "http://example.com:4140/status",
            Some(80),
            301,
            "http://example.com/status",
        ),
        (
            "http://example.com/full?q=1",
            None,
            302,
            "http://example.com/replacement-full?q=1",
        ),
        (
            "http://example.com/original-prefix/lemon",
            None,
            308,
            "http://example.com/replacement-prefix/lemon",
        ),
        (
            "http://example.com/original-prefix",
            None,
            308,
            "http://example.com/replacement-prefix",
        ),
    ];
    for (uri, port, status, location) in cases {
        let rsp = send(yaml, *port, get(uri)).await;
        assert_eq!(
            rsp.status().as_u16(),
            *status,
            "HTTPRouteRedirect status for {uri}"
        );
        assert_eq!(
            rsp.headers()["location"],
            *location,
            "HTTPRouteRedirect Location for {uri} (listen port {port:?})"
        );
        assert!(
            rsp.headers().get("l5d-proxy-error").is_none(),
            "a redirect is not a proxy error"
        );
        assert_eq!(rsp.headers()["content-length"], "0", "empty redirect body");
        assert!(
            rsp.extensions().get::<RouteMatch>().is_some(),
            "redirects carry the RouteMatch"
        );
    }
    // Origin-form HTTP/1 request: the Host header gives the host.
    let req = Request::get("/hostname")
        .header("host", "example.com:9090")
        .body(String::new())
        .expect("request");
    let rsp = send(yaml, None, req).await;
    assert_eq!(
        rsp.headers()["location"],
        "http://example.org:9090/hostname",
        "host from the filter, port from the request"
    );
}

#[test]
fn http_route_rewrite_path_prefix_table() {
    // The spec's table for ReplacePrefixMatch (request path, prefix, replacement, result).
    let cases = [
        ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo/", "/foo", "/xyz", "/xyz/"),
        ("/foo/bar", "/foo", "", "/bar"),
        ("/foo/", "/foo", "", "/"),
        ("/foo", "/foo", "", "/"),
        ("/foo/", "/foo", "/", "/"),
        ("/foo", "/foo", "/", "/"),
        ("/foo/bar", "/", "/xyz", "/xyz/foo/bar"),
    ];
    for (path, prefix, replacement, want) in cases {
        let t = support::table(&format!(
            "routes: [{{ name: r, rules: [{{ matches: [{{ path: {{ value: '{prefix}' }} }}] }}] }}]"
        ));
        let m = t
            .find(&support::request("GET", path, &[]))
            .expect("the prefix matches");
        let got = PathModifier::ReplacePrefixMatch(replacement.into()).apply(path, &m);
        assert_eq!(
            got, want,
            "HTTPRouteRewritePath: {path} with prefix {prefix} -> {replacement}"
        );
    }
}

#[tokio::test]
async fn http_route_rewrite_path_and_host() {
    let yaml = r"
routes:
  - name: r
    rules:
      - matches: [{ path: { value: /prefix/one } }]
        filters:
          - type: URLRewrite
            urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /one } }
        backendRefs: [{ name: web }]
      - matches: [{ path: { value: /full/one } }]
        filters:
          - type: URLRewrite
            urlRewrite: { path: { type: ReplaceFullPath, replaceFullPath: /one } }
        backendRefs: [{ name: web }]
      - matches: [{ path: { value: /host } }]
        filters: [{ type: URLRewrite, urlRewrite: { hostname: one.example.org } }]
        backendRefs: [{ name: web }]
";
    let rsp = send(yaml, None, get("http://example.com/prefix/one/two?a=b")).await;
    assert_eq!(
        rsp.headers()["x-uri"],
        "http://example.com/one/two?a=b",
        "HTTPRouteRewritePath: prefix replaced, query kept"
    );
    let rsp = send(yaml, None, get("http://example.com/full/one/two")).await;
    assert_eq!(
        rsp.headers()["x-uri"],
        "http://example.com/one",
        "HTTPRouteRewritePath: full path replaced"
    );
    let req = Request::get("/host")
        .header("host", "rewrite.example")
        .body(String::new())
        .expect("request");
    let rsp = send(yaml, None, req).await;
    assert_eq!(
        rsp.headers()["x-host"],
        "one.example.org",
        "HTTPRouteRewriteHost: Host replaced"
    );
    let rsp = send(yaml, None, get("http://rewrite.example:81/host")).await;
    assert_eq!(
        rsp.headers()["x-uri"],
        "http://one.example.org/host",
        "HTTPRouteRewriteHost: URI authority replaced"
    );
}

#[tokio::test]
async fn synthetic_answers_in_the_clients_form() {
    let yaml = r#"
routes:
  - name: r
    rules:
      - matches: [{ path: { value: /none } }]
      - matches: [{ path: { value: /zero } }]
        backendRefs: [{ name: web, weight: 0 }]
      - matches: [{ path: { value: /fail } }]
        filters: [{ type: InjectFailure, injectFailure: { status: 503, message: "chaos test" } }]
        backendRefs: [{ name: web }]
grpcRoutes:
  - name: g
    rules:
      - filters: [{ type: InjectFailure, injectFailure: { grpcStatus: 8 } }]
        backendRefs: [{ name: web }]
"#;
    let rsp = send(yaml, None, get("http://example.com/nothing")).await;
    assert_eq!(rsp.status(), StatusCode::NOT_FOUND, "no route: 404");
    assert_eq!(
        rsp.headers()["l5d-proxy-error"],
        "no route",
        "no route header"
    );
    assert!(
        rsp.extensions().get::<RouteMatch>().is_none(),
        "no RouteMatch without a route"
    );

    let rsp = send(yaml, None, get("http://example.com/none")).await;
    assert_eq!(
        rsp.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "no backends: 500"
    );
    assert_eq!(
        rsp.headers()["l5d-proxy-error"],
        "no backends",
        "no backends header"
    );
    let rsp = send(yaml, None, get("http://example.com/zero")).await;
    assert_eq!(
        rsp.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "all weights 0: 500"
    );

    let rsp = send(yaml, None, get("http://example.com/fail")).await;
    assert_eq!(
        rsp.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "injected status"
    );
    assert_eq!(
        rsp.headers()["l5d-proxy-error"],
        "chaos test",
        "injected message"
    );
    let m = rsp
        .extensions()
        .get::<RouteMatch>()
        .expect("RouteMatch on the response");
    assert_eq!(
        (m.route_name(), m.rule_index()),
        ("r", 2),
        "the matched rule"
    );

    // A gRPC client hitting an HTTP route's injected 503 gets UNAVAILABLE.
    let mut req = Request::post("http://example.com/fail")
        .header("content-type", "text/plain")
        .body(String::new())
        .expect("request");
    req.extensions_mut().insert(Protocol::Grpc);
    let rsp = send(yaml, None, req).await;
    assert_eq!(rsp.status(), StatusCode::OK, "gRPC answers are HTTP 200");
    assert_eq!(
        rsp.headers()["grpc-status"],
        "14",
        "503 maps to UNAVAILABLE"
    );

    // gRPC: no route is UNIMPLEMENTED (the Protocol comes from the content-type here).
    let req = Request::get("http://example.com/x.Y/Z")
        .header("content-type", "application/grpc")
        .body(String::new())
        .expect("request");
    let rsp = send(yaml, None, req).await;
    assert_eq!(
        rsp.headers()["grpc-status"],
        "12",
        "no route: UNIMPLEMENTED"
    );

    // A GRPCRoute's grpcStatus.
    let req = Request::post("http://example.com/x.Y/Z")
        .header("content-type", "application/grpc")
        .body(String::new())
        .expect("request");
    let rsp = send(yaml, None, req).await;
    assert_eq!(rsp.headers()["grpc-status"], "8", "configured gRPC code");
    assert!(
        rsp.extensions()
            .get::<RouteMatch>()
            .is_some_and(RouteMatch::is_grpc),
        "a gRPC RouteMatch"
    );
}

#[tokio::test]
async fn route_match_is_copied_onto_responses() {
    let yaml = r"
routes:
  - name: api
    rules:
      - matches: [{ path: { type: Exact, value: /api/x } }]
        backendRefs: [{ name: web }]
";
    let rsp = send(yaml, None, get("http://example.com/api/x")).await;
    let m = rsp.extensions().get::<RouteMatch>().expect("RouteMatch");
    assert_eq!(m.route_name(), "api", "route name");
    assert_eq!(
        m.path_kind(),
        linkerd_http_route::RoutePathKind::Exact,
        "kind"
    );
    assert_eq!(m.path_len(), "/api/x".len(), "length");
    assert_eq!(
        rsp.headers()["x-rule"],
        "api/0",
        "dispatched to the rule's service"
    );
}

#[tokio::test(start_paused = true)]
async fn injected_delay_holds_the_request() {
    let yaml = r"
routes:
  - name: r
    rules:
      - filters: [{ type: InjectFailure, injectFailure: { delay: 10s } }]
        backendRefs: [{ name: web }]
";
    let router = RouteLayer::new(support::table(yaml))
        .with_rng(SharedRng::seeded(3))
        .layer(make);
    let mut fut = tokio_test::task::spawn(router.oneshot(get("http://example.com/")));
    assert!(fut.poll().is_pending(), "delayed");
    tokio::time::advance(std::time::Duration::from_secs(9)).await;
    assert!(fut.poll().is_pending(), "still delayed before 10s");
    tokio::time::advance(std::time::Duration::from_secs(2)).await;
    match fut.poll() {
        std::task::Poll::Ready(Ok(rsp)) => {
            assert_eq!(rsp.status(), 200, "forwarded after the delay");
        }
        other => panic!(
            "expected a response after the delay, got {:?}",
            other.is_ready()
        ),
    }
}

#[tokio::test]
async fn response_header_modifier_layer_per_attempt() {
    let yaml = r"
routes:
  - name: r
    rules:
      - filters:
          - type: ResponseHeaderModifier
            responseHeaderModifier: { add: [{ name: x-backend-add, value: proxy }] }
        backendRefs: [{ name: web }]
";
    // The application applies the edits inside its per-rule stack (e.g. under retry) and
    // tells the router not to apply them again.
    let router = RouteLayer::new(support::table(yaml))
        .without_response_headers()
        .layer(|rule: &Rule<RuleExtensions>| {
            Echo::new(
                linkerd_http_route::ResponseHeaderModifierLayer::for_rule(rule).layer(make(rule)),
            )
        });
    let rsp = router
        .oneshot(get("http://example.com/"))
        .await
        .expect("infallible");
    assert_eq!(
        values(rsp.headers(), "x-backend-add"),
        ["backend", "proxy"],
        "applied exactly once, by the per-rule layer"
    );
}

#[tokio::test]
async fn without_policy_extension_leaves_the_policy_out_and_keeps_the_match() {
    let yaml = r#"
routes:
  - name: r
    rules:
      - backendRefs: [{ name: b }]
"#;
    let seen = |rule: &Rule<RuleExtensions>| {
        let _ = rule;
        Echo::new(tower::service_fn(
            |req: Request<MirrorBody<String>>| async move {
                let mut rsp = Response::new(String::new());
                let flags = format!(
                    "match={} policy={}",
                    req.extensions().get::<RouteMatch>().is_some(),
                    req.extensions().get::<RuleExtensions>().is_some()
                );
                rsp.headers_mut()
                    .insert("x-seen", flags.parse().expect("value"));
                Ok::<_, Infallible>(rsp)
            },
        ))
    };
    let rsp = RouteLayer::new(support::table(yaml))
        .without_policy_extension()
        .layer(seen)
        .oneshot(get("http://example.test/"))
        .await
        .expect("infallible");
    assert_eq!(rsp.headers()["x-seen"], "match=true policy=false");
    let rsp = RouteLayer::new(support::table(yaml))
        .layer(seen)
        .oneshot(get("http://example.test/"))
        .await
        .expect("infallible");
    assert_eq!(
        rsp.headers()["x-seen"],
        "match=true policy=true",
        "the default inserts it"
    );
}
