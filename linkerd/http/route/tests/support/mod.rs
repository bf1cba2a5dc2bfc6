//! Helpers shared by the integration tests: tables from YAML, requests, lookups.

#![allow(dead_code, unreachable_pub)]

use linkerd_http_route::{
    RouteTable,
    config::{RoutesConfig, RuleExtensions},
};

/// A table from `routes:`/`grpcRoutes:` YAML, every backend name accepted.
pub fn table(yaml: &str) -> RouteTable<RuleExtensions> {
    let config: RoutesConfig = marked_yaml::from_yaml(0, yaml).expect("test YAML deserializes");
    let compiled = config.compile(|_| true).expect("test routes are valid");
    RouteTable::new(compiled.http, compiled.grpc).expect("test routes compile")
}

/// A request: `uri` may be absolute (authority used) or a path with `host` given as a header.
pub fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("valid request")
}

/// `(route, rule)` of the match for `req`, or `None`.
pub fn lookup<P>(t: &RouteTable<P>, req: &http::Request<()>) -> Option<(String, usize)> {
    t.find(req)
        .map(|m| (m.route_name().to_owned(), m.rule_index()))
}

/// One case: method, URI, headers, and the expected `(route, rule)`.
pub type Case<'a> = (
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    Option<(&'a str, usize)>,
);

/// Runs a table of `(method, uri, headers, expected (route, rule))` cases.
pub fn check<P>(name: &str, t: &RouteTable<P>, cases: &[Case<'_>]) {
    for (method, uri, headers, want) in cases {
        let got = lookup(t, &request(method, uri, headers));
        let want = want.map(|(r, i)| (r.to_owned(), i));
        assert_eq!(
            got, want,
            "{name}: {method} {uri} {headers:?} should match {want:?}"
        );
    }
}
