//! Matching behaviours of the Gateway API conformance suite (written from the spec), as
//! tables of requests and the rule each must select.

mod support;

use support::{Case, check};

const H: &[(&str, &str)] = &[];

#[test]
fn http_route_exact_path_matching() {
    let t = support::table(
        r"
routes:
  - name: exact
    rules:
      - matches: [{ path: { type: Exact, value: /one } }]
      - matches: [{ path: { type: Exact, value: /two } }]
",
    );
    let cases: &[Case<'_>] = &[
        ("GET", "http://example.com/one", H, Some(("exact", 0))),
        ("GET", "http://example.com/two", H, Some(("exact", 1))),
        ("GET", "http://example.com/", H, None),
        ("GET", "http://example.com/one/example", H, None),
        ("GET", "http://example.com/two/", H, None),
        ("GET", "http://example.com/Two", H, None),
        ("GET", "http://example.com/one/two", H, None),
    ];
    check("HTTPRouteExactPathMatching", &t, cases);
}

#[test]
fn http_route_matching() {
    let t = support::table(
        r"
routes:
  - name: m
    rules:
      - matches: [{ path: { type: PathPrefix, value: / } }]
      - matches:
          - path: { type: PathPrefix, value: /v2 }
          - headers: [{ name: version, value: two }]
",
    );
    let cases: &[Case<'_>] = &[
        ("GET", "http://example.com/", H, Some(("m", 0))),
        ("GET", "http://example.com/example", H, Some(("m", 0))),
        ("GET", "http://example.com/v2", H, Some(("m", 1))),
        ("GET", "http://example.com/v2/", H, Some(("m", 1))),
        ("GET", "http://example.com/v2/example", H, Some(("m", 1))),
        (
            "GET",
            "http://example.com/",
            &[("version", "two")],
            Some(("m", 1)),
        ),
        ("GET", "http://example.com/v2example", H, Some(("m", 0))),
        (
            "GET",
            "http://example.com/foo/v2/example",
            H,
            Some(("m", 0)),
        ),
    ];
    check("HTTPRouteMatching", &t, cases);
}

#[test]
fn http_route_matching_across_routes() {
    let t = support::table(
        r"
routes:
  - name: first
    hostnames: [example.com, example.net]
    rules:
      - matches: [{ path: { value: / } }]
      - matches: [{ path: { value: /v1 } }]
  - name: second
    hostnames: [example.com]
    rules:
      - matches: [{ path: { value: /v2 } }]
      - matches: [{ headers: [{ name: version, value: two }] }]
",
    );
    let v2: &[(&str, &str)] = &[("version", "two")];
    let cases: &[Case<'_>] = &[
        ("GET", "http://example.com/", H, Some(("first", 0))),
        ("GET", "http://example.com/v1", H, Some(("first", 1))),
        ("GET", "http://example.com/v2", H, Some(("second", 0))),
        ("GET", "http://example.net/v2", H, Some(("first", 0))),
        ("GET", "http://example.com/", v2, Some(("second", 1))),
        ("GET", "http://example.net/", v2, Some(("first", 0))),
        // The longer prefix wins over the header count.
        ("GET", "http://example.com/v1", v2, Some(("first", 1))),
        ("GET", "http://example.org/", H, None),
    ];
    check("HTTPRouteMatchingAcrossRoutes", &t, cases);
}

#[test]
fn http_route_path_match_order() {
    let t = support::table(
        r#"
routes:
  - name: order
    rules:
      - matches: [{ path: { type: PathPrefix, value: /match } }]
      - matches: [{ path: { type: Exact, value: /match/exact } }]
      - matches: [{ path: { type: PathPrefix, value: /match/exact/one } }]
      - matches: [{ path: { type: PathPrefix, value: /match/prefix } }]
      - matches: [{ path: { type: PathPrefix, value: /match/prefix/one } }]
      - matches: [{ path: { type: Exact, value: /match/prefix/one } }]
      - matches: [{ path: { type: RegularExpression, value: "/match/[0-9]+" } }]
      - matches: [{ path: { type: RegularExpression, value: "/match/[0-9]+/long(er)?" } }]
      - matches: [{ path: { type: PathPrefix, value: /match/123/longer/and/longer } }]
"#,
    );
    let cases: &[Case<'_>] = &[
        ("GET", "http://example.com/match", H, Some(("order", 0))),
        (
            "GET",
            "http://example.com/match/exact",
            H,
            Some(("order", 1)),
        ),
        (
            "GET",
            "http://example.com/match/exact/one",
            H,
            Some(("order", 2)),
        ),
        (
            "GET",
            "http://example.com/match/exact/one/x",
            H,
            Some(("order", 2)),
        ),
        (
            "GET",
            "http://example.com/match/exactly",
            H,
            Some(("order", 0)),
        ),
        (
            "GET",
            "http://example.com/match/prefix",
            H,
            Some(("order", 3)),
        ),
        (
            "GET",
            "http://example.com/match/prefix/two",
            H,
            Some(("order", 3)),
        ),
        // Exact beats a PathPrefix of the same length.
        (
            "GET",
            "http://example.com/match/prefix/one",
            H,
            Some(("order", 5)),
        ),
        (
            "GET",
            "http://example.com/match/prefix/one/two",
            H,
            Some(("order", 4)),
        ),
        // A regular expression beats any prefix, the longer pattern first.
        ("GET", "http://example.com/match/123", H, Some(("order", 6))),
        (
            "GET",
            "http://example.com/match/123/longer",
            H,
            Some(("order", 7)),
        ),
        (
            "GET",
            "http://example.com/match/123/longer/and/longer",
            H,
            Some(("order", 8)),
        ),
        ("GET", "http://example.com/match/12a", H, Some(("order", 0))),
        ("GET", "http://example.com/other", H, None),
    ];
    check("HTTPRoutePathMatchOrder", &t, cases);
}

#[test]
fn http_route_header_matching() {
    let t = support::table(
        r#"
routes:
  - name: headers
    rules:
      - matches: [{ headers: [{ name: version, value: one }] }]
      - matches: [{ headers: [{ name: version, value: two }] }]
      - matches: [{ headers: [{ name: version, value: two }, { name: color, value: orange }] }]
      - matches: [{ headers: [{ name: Color, value: blue }] }]
      - matches: [{ headers: [{ type: RegularExpression, name: x-re, value: "a[0-9]+" }] }]
"#,
    );
    let cases: &[Case<'_>] = &[
        (
            "GET",
            "http://example.com/",
            &[("version", "one")],
            Some(("headers", 0)),
        ),
        (
            "GET",
            "http://example.com/",
            &[("version", "two")],
            Some(("headers", 1)),
        ),
        (
            "GET",
            "http://example.com/",
            &[("version", "two"), ("color", "orange")],
            Some(("headers", 2)),
        ),
        (
            "GET",
            "http://example.com/",
            &[("color", "blue")],
            Some(("headers", 3)),
        ),
        (
            "GET",
            "http://example.com/",
            &[("COLOR", "blue")],
            Some(("headers", 3)),
        ),
        ("GET", "http://example.com/", &[("color", "Blue")], None),
        ("GET", "http://example.com/", &[("version", "ONE")], None),
        (
            "GET",
            "http://example.com/",
            &[("version", "zero"), ("version", "one")],
            Some(("headers", 0)),
        ),
        (
            "GET",
            "http://example.com/",
            &[("x-re", "a12")],
            Some(("headers", 4)),
        ),
        ("GET", "http://example.com/", &[("x-re", "xa12")], None),
        ("GET", "http://example.com/", H, None),
    ];
    check("HTTPRouteHeaderMatching", &t, cases);
}

#[test]
fn http_route_query_param_matching() {
    let t = support::table(
        r#"
routes:
  - name: query
    rules:
      - matches: [{ queryParams: [{ name: animal, value: whale }] }]
      - matches: [{ queryParams: [{ name: animal, value: dolphin }] }]
      - matches: [{ queryParams: [{ name: animal, value: dolphin }, { name: color, value: blue }] }]
      - matches: [{ queryParams: [{ name: ANIMAL, value: Whale }] }]
      - matches: [{ queryParams: [{ type: RegularExpression, name: q, value: "[0-9]+" }] }]
"#,
    );
    let cases: &[Case<'_>] = &[
        (
            "GET",
            "http://example.com/?animal=whale",
            H,
            Some(("query", 0)),
        ),
        (
            "GET",
            "http://example.com/?animal=dolphin",
            H,
            Some(("query", 1)),
        ),
        (
            "GET",
            "http://example.com/?animal=dolphin&color=blue",
            H,
            Some(("query", 2)),
        ),
        (
            "GET",
            "http://example.com/?color=blue&animal=dolphin",
            H,
            Some(("query", 2)),
        ),
        (
            "GET",
            "http://example.com/?animal=dolphin&color=red",
            H,
            Some(("query", 1)),
        ),
        (
            "GET",
            "http://example.com/?ANIMAL=Whale",
            H,
            Some(("query", 3)),
        ),
        ("GET", "http://example.com/?animal=Whale", H, None),
        (
            "GET",
            "http://example.com/?animal=wh%61le",
            H,
            Some(("query", 0)),
        ),
        ("GET", "http://example.com/?q=42", H, Some(("query", 4))),
        ("GET", "http://example.com/?q=4x", H, None),
        ("GET", "http://example.com/", H, None),
    ];
    check("HTTPRouteQueryParamMatching", &t, cases);
}

#[test]
fn http_route_method_matching() {
    let t = support::table(
        r"
routes:
  - name: method
    rules:
      - matches: [{ method: POST }]
      - matches: [{ method: GET }]
      - matches: [{ path: { value: /m }, headers: [{ name: a, value: b }, { name: c, value: d }] }]
      - matches: [{ path: { value: /m }, method: GET }]
      - matches: [{ path: { value: /q }, queryParams: [{ name: a, value: b }] }]
      - matches: [{ path: { value: /q }, headers: [{ name: a, value: b }] }]
",
    );
    let ab: &[(&str, &str)] = &[("a", "b"), ("c", "d")];
    let cases: &[Case<'_>] = &[
        ("POST", "http://example.com/", H, Some(("method", 0))),
        ("GET", "http://example.com/", H, Some(("method", 1))),
        ("HEAD", "http://example.com/", H, None),
        // Method ranks above header count (the spec's order; Linkerd ranks it below).
        ("GET", "http://example.com/m", ab, Some(("method", 3))),
        ("POST", "http://example.com/m", ab, Some(("method", 2))),
        // Headers rank above query parameters.
        (
            "GET",
            "http://example.com/q?a=b",
            &[("a", "b")],
            Some(("method", 5)),
        ),
        ("PUT", "http://example.com/q?a=b", H, Some(("method", 4))),
    ];
    check("HTTPRouteMethodMatching", &t, cases);
}

#[test]
fn hostname_precedence_and_forms() {
    let t = support::table(
        r"
routes:
  - name: any
    rules: [{}]
  - name: wild
    hostnames: ['*.example.com']
    rules: [{}]
  - name: longer-wild
    hostnames: ['*.api.example.com']
    rules: [{}]
  - name: exact
    hostnames: [foo.api.example.com]
    rules: [{ matches: [{ path: { type: Exact, value: /only } }] }]
",
    );
    let cases: &[Case<'_>] = &[
        (
            "GET",
            "http://foo.api.example.com/only",
            H,
            Some(("exact", 0)),
        ),
        // The exact host has no rule for this path: the next most specific hostname answers.
        (
            "GET",
            "http://foo.api.example.com/other",
            H,
            Some(("longer-wild", 0)),
        ),
        (
            "GET",
            "http://bar.api.example.com/",
            H,
            Some(("longer-wild", 0)),
        ),
        ("GET", "http://a.b.example.com/", H, Some(("wild", 0))),
        ("GET", "http://x.example.com/", H, Some(("wild", 0))),
        // A wildcard never matches the bare domain.
        ("GET", "http://example.com/", H, Some(("any", 0))),
        ("GET", "http://api.example.com/", H, Some(("wild", 0))),
        // The port is ignored; case is not significant; Host is used for origin-form.
        ("GET", "http://X.Example.COM:8080/", H, Some(("wild", 0))),
        (
            "GET",
            "/only",
            &[("host", "foo.api.example.com:80")],
            Some(("exact", 0)),
        ),
        ("GET", "/", &[("host", "x.example.com")], Some(("wild", 0))),
        ("GET", "/", H, Some(("any", 0))),
    ];
    check("hostnames", &t, cases);
}

#[test]
fn grpc_exact_method_matching() {
    let t = support::table(
        r#"
grpcRoutes:
  - name: grpc
    rules:
      - matches: [{ method: { service: helloworld.Greeter, method: SayHello } }]
      - matches: [{ method: { service: helloworld.Greeter } }]
      - matches: [{ method: { method: Ping } }]
      - matches: [{ method: { type: RegularExpression, service: "helloworld\\..*", method: "Say.*" } }]
routes:
  - name: http
    rules: [{ matches: [{ path: { value: /helloworld.Greeter } }] }]
"#,
    );
    let g: &[(&str, &str)] = &[("content-type", "application/grpc")];
    let gp: &[(&str, &str)] = &[("content-type", "application/grpc+proto")];
    let cases: &[Case<'_>] = &[
        (
            "POST",
            "http://example.com/helloworld.Greeter/SayHello",
            g,
            Some(("grpc", 0)),
        ),
        (
            "POST",
            "http://example.com/helloworld.Greeter/SayHello",
            gp,
            Some(("grpc", 0)),
        ),
        (
            "POST",
            "http://example.com/helloworld.Greeter/SayGoodbye",
            g,
            Some(("grpc", 1)),
        ),
        (
            "POST",
            "http://example.com/other.Svc/Ping",
            g,
            Some(("grpc", 2)),
        ),
        (
            "POST",
            "http://example.com/helloworld.Other/SayHi",
            g,
            Some(("grpc", 3)),
        ),
        // No gRPC route matches: fall through to the HTTP routes.
        ("POST", "http://example.com/other.Svc/Nope", g, None),
        // Not gRPC (method or content-type): HTTP routes only.
        (
            "GET",
            "http://example.com/helloworld.Greeter/SayHello",
            g,
            Some(("http", 0)),
        ),
        (
            "POST",
            "http://example.com/helloworld.Greeter/SayHello",
            H,
            Some(("http", 0)),
        ),
        (
            "POST",
            "http://example.com/helloworld.Greeter/SayHello",
            &[("content-type", "application/grpc-web")],
            Some(("http", 0)),
        ),
    ];
    check("GRPCExactMethodMatching", &t, cases);
}

#[test]
fn grpc_route_header_matching() {
    let t = support::table(
        r"
grpcRoutes:
  - name: grpc
    rules:
      - matches: [{ headers: [{ name: version, value: one }] }]
      - matches: [{ headers: [{ name: version, value: two }] }]
      - matches: [{ headers: [{ name: version, value: two }, { name: color, value: orange }] }]
",
    );
    let path = "http://example.com/svc.S/M";
    let cases: &[Case<'_>] = &[
        (
            "POST",
            path,
            &[("content-type", "application/grpc"), ("version", "one")],
            Some(("grpc", 0)),
        ),
        (
            "POST",
            path,
            &[("content-type", "application/grpc"), ("version", "two")],
            Some(("grpc", 1)),
        ),
        (
            "POST",
            path,
            &[
                ("content-type", "application/grpc"),
                ("version", "two"),
                ("color", "orange"),
            ],
            Some(("grpc", 2)),
        ),
        ("POST", path, &[("content-type", "application/grpc")], None),
    ];
    check("GRPCRouteHeaderMatching", &t, cases);
}

#[test]
fn grpc_precedence_service_then_method_then_headers() {
    let t = support::table(
        r#"
grpcRoutes:
  - name: a
    hostnames: ['*.example.com']
    rules:
      - matches: [{ method: { service: svc.S, method: M } }]
  - name: b
    rules:
      - matches: [{ method: { service: svc.S }, headers: [{ name: x, value: "1" }] }]
      - matches: [{ method: { service: svc.S, method: M }, headers: [{ name: x, value: "1" }] }]
      - matches: [{ method: { service: svc.S, method: M } }]
"#,
    );
    let g1: &[(&str, &str)] = &[("content-type", "application/grpc"), ("x", "1")];
    let cases: &[Case<'_>] = &[
        // Hostname first: the wildcard route beats host-less routes with more headers.
        ("POST", "http://h.example.com/svc.S/M", g1, Some(("a", 0))),
        // Then method over headers, then header count.
        ("POST", "http://other.org/svc.S/M", g1, Some(("b", 1))),
        ("POST", "http://other.org/svc.S/N", g1, Some(("b", 0))),
    ];
    check("GRPC precedence", &t, cases);
}
