//! The compiled table examines a bounded number of rules per lookup, whatever its size.

use linkerd_http_route::{
    BackendRef, Hostname, HttpRequestMatch, HttpRoute, HttpRule, PathMatch, RouteTable,
};

/// `n` routes over 100 hostnames, each with an Exact and a PathPrefix rule.
fn table(n: usize) -> RouteTable<()> {
    let routes = (0..n)
        .map(|i| {
            HttpRoute::new(format!("route-{i}"))
                .with_hostname(
                    Hostname::parse(&format!("host{}.example.com", i % 100)).expect("host"),
                )
                .with_rule(
                    HttpRule::new(())
                        .with_match(HttpRequestMatch::path(
                            PathMatch::exact(&format!("/r{i}/exact")).expect("path"),
                        ))
                        .with_backend(BackendRef::new("web", 1)),
                )
                .with_rule(
                    HttpRule::new(())
                        .with_match(HttpRequestMatch::path(
                            PathMatch::prefix(&format!("/r{i}/api")).expect("path"),
                        ))
                        .with_backend(BackendRef::new("web", 1)),
                )
        })
        .collect();
    RouteTable::new(routes, vec![]).expect("valid")
}

fn worst_examined(t: &RouteTable<()>, n: usize) -> usize {
    let mut worst = 0;
    for i in (0..n).step_by((n / 50).max(1)) {
        let host = format!("host{}.example.com", i % 100);
        for (path, rule) in [
            (format!("/r{i}/exact"), 0),
            (format!("/r{i}/api/users/42"), 1),
        ] {
            let req = http::Request::get(format!("http://{host}{path}"))
                .body(())
                .expect("request");
            let (m, examined) = t.find_counted(&req);
            let m = m.expect("every generated path matches");
            assert_eq!(
                (m.route_name(), m.rule_index()),
                (format!("route-{i}").as_str(), rule),
                "lookup of {path} on {host} finds its own route"
            );
            worst = worst.max(examined);
        }
        // A miss on a known host walks only the path's prefixes.
        let req = http::Request::get(format!("http://{host}/nothing/here/at/all"))
            .body(())
            .expect("request");
        let (m, examined) = t.find_counted(&req);
        assert!(m.is_none(), "no route for an unknown path");
        worst = worst.max(examined);
    }
    worst
}

#[test]
fn rules_examined_per_lookup_stay_small_at_ten_thousand_routes() {
    let small = worst_examined(&table(10), 10);
    let large = worst_examined(&table(10_000), 10_000);
    assert!(
        large <= 2,
        "at 10,000 routes a lookup examines at most 2 match conditions, saw {large}"
    );
    assert!(
        large <= small.max(1) * 2,
        "the cost at 10,000 routes ({large}) stays within 2x of 10 routes ({small})"
    );
}
