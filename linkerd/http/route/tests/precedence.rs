//! Property tests: the compiled table agrees with a naive scan that ranks every matching rule
//! by the spec's precedence, and the winner's rank does not depend on the order the routes
//! were given (only exact ties are broken by route order, then rule order).

use linkerd_http_route::{
    HeaderMatch, Hostname, HttpRequestMatch, HttpRoute, HttpRule, PathMatch, Pattern,
    QueryParamMatch, RouteTable,
};
use proptest::prelude::*;
use std::cmp::Reverse;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Regex,
}

#[derive(Clone, Debug)]
struct MatchSpec {
    path: (Kind, &'static str),
    method: Option<&'static str>,
    headers: Vec<(&'static str, &'static str)>,
    query: Vec<(&'static str, &'static str)>,
}

#[derive(Clone, Debug)]
struct RouteSpec {
    name: String,
    host: Option<&'static str>,
    rules: Vec<Vec<MatchSpec>>,
}

#[derive(Clone, Debug)]
struct Req {
    host: &'static str,
    path: &'static str,
    method: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    query: Vec<(&'static str, &'static str)>,
}

const PATHS: [(Kind, &str); 9] = [
    (Kind::Exact, "/a"),
    (Kind::Exact, "/a/b"),
    (Kind::Prefix, "/"),
    (Kind::Prefix, "/a"),
    (Kind::Prefix, "/a/b"),
    (Kind::Prefix, "/ab"),
    (Kind::Regex, "/a/.*"),
    (Kind::Regex, "/a/b.*"),
    (Kind::Regex, "/.*"),
];
const HOSTS: [Option<&str>; 4] = [
    None,
    Some("a.example.com"),
    Some("*.example.com"),
    Some("*.b.example.com"),
];
const HEADERS: [(&str, &str); 2] = [("x", "1"), ("y", "1")];
const QUERY: [(&str, &str); 2] = [("q", "1"), ("r", "1")];

fn subset<T: Clone + std::fmt::Debug + 'static>(
    all: &'static [T],
) -> impl Strategy<Value = Vec<T>> {
    proptest::sample::subsequence(all.to_vec(), 0..=all.len())
}

fn match_spec() -> impl Strategy<Value = MatchSpec> {
    (
        proptest::sample::select(PATHS.to_vec()),
        proptest::option::of(proptest::sample::select(vec!["GET", "POST"])),
        subset(&HEADERS),
        subset(&QUERY),
    )
        .prop_map(|(path, method, headers, query)| MatchSpec {
            path,
            method,
            headers,
            query,
        })
}

fn routes() -> impl Strategy<Value = Vec<RouteSpec>> {
    proptest::collection::vec(
        (
            proptest::sample::select(HOSTS.to_vec()),
            proptest::collection::vec(proptest::collection::vec(match_spec(), 0..3), 1..4),
        ),
        1..8,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (host, rules))| RouteSpec {
                name: format!("r{i}"),
                host,
                rules,
            })
            .collect()
    })
}

fn request() -> impl Strategy<Value = Req> {
    (
        proptest::sample::select(vec![
            "a.example.com",
            "x.b.example.com",
            "b.example.com",
            "other.org",
        ]),
        proptest::sample::select(vec!["/", "/a", "/a/", "/a/b", "/a/b/c", "/ab", "/abc"]),
        proptest::sample::select(vec!["GET", "POST"]),
        subset(&HEADERS),
        subset(&QUERY),
    )
        .prop_map(|(host, path, method, headers, query)| Req {
            host,
            path,
            method,
            headers,
            query,
        })
}

fn build(specs: &[RouteSpec]) -> RouteTable<()> {
    let routes = specs
        .iter()
        .map(|s| {
            let mut r = HttpRoute::new(s.name.as_str());
            if let Some(h) = s.host {
                r = r.with_hostname(Hostname::parse(h).expect("host"));
            }
            for rule in &s.rules {
                let mut out = HttpRule::new(());
                for m in rule {
                    out = out.with_match(HttpRequestMatch {
                        path: Some(match m.path {
                            (Kind::Exact, v) => PathMatch::exact(v).expect("path"),
                            (Kind::Prefix, v) => PathMatch::prefix(v).expect("path"),
                            (Kind::Regex, v) => PathMatch::regex(v).expect("regex"),
                        }),
                        method: m.method.map(|v| v.parse().expect("method")),
                        headers: m
                            .headers
                            .iter()
                            .map(|(k, v)| HeaderMatch::exact(k, v).expect("header"))
                            .collect(),
                        query_params: m
                            .query
                            .iter()
                            .map(|(k, v)| QueryParamMatch::exact(k, v).expect("query"))
                            .collect(),
                    });
                }
                r = r.with_rule(out);
            }
            r
        })
        .collect();
    RouteTable::new(routes, vec![]).expect("valid")
}

/// The rank of a (route, match) for a request, independent of order; `None` if it does not
/// match. Written from the spec, independently of the table.
fn rank(
    route: &RouteSpec,
    m: Option<&MatchSpec>,
    req: &Req,
) -> Option<(u8, usize, u8, usize, bool, usize, usize)> {
    let host = match route.host {
        None => (0, 0),
        Some(h) if h == req.host => (2, h.len()),
        Some(h) => {
            let suffix = h.strip_prefix("*.")?;
            if req.host.len() > suffix.len() && req.host.ends_with(&format!(".{suffix}")) {
                (1, suffix.len())
            } else {
                return None;
            }
        }
    };
    let Some(m) = m else {
        // A rule without matches is PathPrefix /.
        return Some((host.0, host.1, 0, 0, false, 0, 0));
    };
    let path = match m.path {
        (Kind::Exact, v) => (v == req.path).then_some((2, v.len()))?,
        (Kind::Prefix, v) => {
            let v = v.strip_suffix('/').unwrap_or(v);
            (req.path.starts_with(v)
                && (req.path.len() == v.len() || req.path.as_bytes()[v.len()] == b'/'))
                .then_some((0, v.len()))?
        }
        (Kind::Regex, v) => Pattern::new(v)
            .expect("regex")
            .is_match(req.path)
            .then_some((1, v.len()))?,
    };
    if m.method.is_some_and(|x| x != req.method) {
        return None;
    }
    if !m.headers.iter().all(|h| req.headers.contains(h))
        || !m.query.iter().all(|q| req.query.contains(q))
    {
        return None;
    }
    Some((
        host.0,
        host.1,
        path.0,
        path.1,
        m.method.is_some(),
        m.headers.len(),
        m.query.len(),
    ))
}

type Key = (u8, usize, u8, usize, bool, usize, usize);

/// The naive winner: the highest rank, then the first route, then the first rule.
fn reference(specs: &[RouteSpec], req: &Req) -> Option<(String, usize, Key)> {
    let mut best: Option<(Key, Reverse<usize>, Reverse<usize>)> = None;
    for (ri, route) in specs.iter().enumerate() {
        for (ui, rule) in route.rules.iter().enumerate() {
            let ranks: Vec<Key> = if rule.is_empty() {
                rank(route, None, req).into_iter().collect()
            } else {
                rule.iter()
                    .filter_map(|m| rank(route, Some(m), req))
                    .collect()
            };
            if let Some(k) = ranks.into_iter().max() {
                let cand = (k, Reverse(ri), Reverse(ui));
                if best.as_ref().is_none_or(|b| cand > *b) {
                    best = Some(cand);
                }
            }
        }
    }
    best.map(|(k, Reverse(ri), Reverse(ui))| (specs[ri].name.clone(), ui, k))
}

fn http_request(req: &Req) -> http::Request<()> {
    let query: Vec<String> = req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let uri = if query.is_empty() {
        format!("http://{}{}", req.host, req.path)
    } else {
        format!("http://{}{}?{}", req.host, req.path, query.join("&"))
    };
    let mut b = http::Request::builder().method(req.method).uri(uri);
    for (k, v) in &req.headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("request")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn table_agrees_with_naive_precedence(specs in routes(), reqs in proptest::collection::vec(request(), 1..8)) {
        let t = build(&specs);
        for req in &reqs {
            let got = t.find(&http_request(req)).map(|m| (m.route_name().to_owned(), m.rule_index()));
            let want = reference(&specs, req).map(|(r, u, _)| (r, u));
            prop_assert_eq!(got, want, "request {:?}", req);
        }
    }

    #[test]
    fn precedence_is_independent_of_route_order(
        specs in routes(),
        reqs in proptest::collection::vec(request(), 1..8),
        seed in any::<u64>(),
    ) {
        // A deterministic shuffle of the routes (names kept).
        let mut shuffled = specs.clone();
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let j = usize::try_from(s >> 33).unwrap_or(0) % (i + 1);
            shuffled.swap(i, j);
        }
        let a = build(&specs);
        let b = build(&shuffled);
        for req in &reqs {
            let ra = reference(&specs, req);
            let rb = reference(&shuffled, req);
            let ga = a.find(&http_request(req)).map(|m| (m.route_name().to_owned(), m.rule_index()));
            let gb = b.find(&http_request(req)).map(|m| (m.route_name().to_owned(), m.rule_index()));
            prop_assert_eq!(ga.is_some(), gb.is_some(), "a match exists in both orders");
            // Same rank whatever the order; a different winner only on an exact tie.
            prop_assert_eq!(ra.as_ref().map(|r| r.2), rb.as_ref().map(|r| r.2), "winning rank");
            if ga != gb {
                let (ra, rb) = (ra.expect("match"), rb.expect("match"));
                prop_assert_eq!(ra.2, rb.2, "different winners only on a full tie");
            }
        }
    }
}
