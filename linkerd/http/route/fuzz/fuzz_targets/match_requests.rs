//! Matches arbitrary requests against arbitrary valid route tables: lookups never panic, and
//! the table agrees with the plain per-match predicates (a returned rule really matches).

#![no_main]

use libfuzzer_sys::fuzz_target;
use linkerd_http_route::{
    GrpcRequestMatch, GrpcRoute, GrpcRule, HeaderMatch, Hostname, HttpRequestMatch, HttpRoute,
    HttpRule, PathMatch, QueryParamMatch, RouteTable,
};

/// Reads bytes as a stream of small choices.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn pick<'s>(&mut self, from: &[&'s str]) -> &'s str {
        from[usize::from(self.byte()) % from.len()]
    }

    /// A short string from the remaining bytes (any bytes, lossy UTF-8).
    fn text(&mut self) -> String {
        let n = usize::from(self.byte() % 12);
        let take = n.min(self.0.len());
        let (s, rest) = self.0.split_at(take);
        self.0 = rest;
        String::from_utf8_lossy(s).into_owned()
    }
}

const SEGMENTS: &[&str] = &["", "a", "b", "ab", "api", "v2", "x.y", "%2F", "..", "A"];
const HOSTS: &[&str] = &[
    "a.example.com",
    "*.example.com",
    "example.com",
    "*.b.example.com",
    "x.org",
];
const REGEXES: &[&str] = &["/.*", "/a/[0-9]+", "/(a|b)+", "[a-z/]*", "/api/.+/x", ".*"];
const NAMES: &[&str] = &["x", "y", "content-type", "q"];
const VALUES: &[&str] = &["1", "2", "application/grpc", "", "a b"];

fn path(b: &mut Bytes<'_>) -> String {
    let n = 1 + usize::from(b.byte() % 3);
    (0..n).map(|_| format!("/{}", b.pick(SEGMENTS))).collect()
}

fn http_match(b: &mut Bytes<'_>) -> HttpRequestMatch {
    let p = path(b);
    let path = match b.byte() % 4 {
        0 => PathMatch::exact(&p).ok(),
        1 => PathMatch::prefix(&p).ok(),
        2 => PathMatch::regex(b.pick(REGEXES)).ok(),
        _ => None,
    };
    let mut m = HttpRequestMatch {
        path,
        ..HttpRequestMatch::default()
    };
    for _ in 0..b.byte() % 3 {
        let (n, v) = (b.pick(NAMES), b.pick(VALUES));
        if let Ok(h) = if b.byte() % 2 == 0 {
            HeaderMatch::exact(n, v)
        } else {
            HeaderMatch::regex(n, b.pick(REGEXES))
        } {
            m.headers.push(h);
        }
    }
    for _ in 0..b.byte() % 3 {
        if let Ok(q) = QueryParamMatch::exact(b.pick(NAMES), b.pick(VALUES)) {
            m.query_params.push(q);
        }
    }
    if b.byte() % 3 == 0 {
        m.method = Some(if b.byte() % 2 == 0 {
            http::Method::GET
        } else {
            http::Method::POST
        });
    }
    m
}

fn table(b: &mut Bytes<'_>) -> RouteTable<()> {
    let mut http = Vec::new();
    for i in 0..1 + b.byte() % 6 {
        let mut r = HttpRoute::new(format!("r{i}"));
        for _ in 0..b.byte() % 3 {
            if let Ok(h) = Hostname::parse(b.pick(HOSTS)) {
                r = r.with_hostname(h);
            }
        }
        for _ in 0..1 + b.byte() % 3 {
            let mut rule = HttpRule::new(());
            for _ in 0..b.byte() % 3 {
                rule = rule.with_match(http_match(b));
            }
            r = r.with_rule(rule);
        }
        http.push(r);
    }
    let mut grpc = Vec::new();
    for i in 0..b.byte() % 3 {
        let mut m = GrpcRequestMatch::exact(b.pick(&["svc.S", "a.B"]), b.pick(&["M", "N"]));
        if b.byte() % 2 == 0 {
            m.method = None;
        }
        grpc.push(GrpcRoute::new(format!("g{i}")).with_rule(GrpcRule::new(()).with_match(m)));
    }
    RouteTable::new(http, grpc).unwrap_or_default()
}

fn request(b: &mut Bytes<'_>) -> Option<http::Request<()>> {
    let host = match b.byte() % 4 {
        0 => b
            .pick(&[
                "a.example.com",
                "Q.B.Example.com:8080",
                "example.com.",
                "x.org",
            ])
            .to_owned(),
        1 => b.text(),
        _ => String::new(),
    };
    let mut uri = path(b);
    if b.byte() % 2 == 0 {
        uri.push_str(&format!(
            "?{}={}&{}",
            b.pick(NAMES),
            b.pick(VALUES),
            b.text()
        ));
    }
    let mut req = http::Request::builder()
        .method(if b.byte() % 2 == 0 { "GET" } else { "POST" })
        .uri(&uri);
    if !host.is_empty() {
        req = req.header("host", host);
    }
    for _ in 0..b.byte() % 4 {
        req = req.header(b.pick(NAMES), b.pick(VALUES));
    }
    req.body(()).ok()
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let t = table(&mut b);
    for _ in 0..4 {
        let Some(req) = request(&mut b) else { continue };
        let (m, examined) = t.find_counted(&req);
        assert!(
            examined <= 9 * t.len() + 1,
            "a lookup examines each match at most once per hostname bucket"
        );
        if let Some(m) = m {
            let rule = t.rule(&m).expect("a match names a rule of its table");
            assert_eq!(rule.index(), m.rule_index(), "the match names its rule");
            assert_eq!(&**rule.route_name(), m.route_name(), "and its route");
        }
    }
});
