//! Route lookup cost at 10 / 100 / 1,000 / 10,000 routes (exact and prefix paths over 100
//! hostnames), against an empty table as the baseline; regex routes reported separately.

#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use linkerd_http_route::{
    BackendRef, Hostname, HttpRequestMatch, HttpRoute, HttpRule, PathMatch, RouteTable,
};
use std::hint::black_box;

fn table(n: usize, regex: bool) -> RouteTable<()> {
    let routes = (0..n)
        .map(|i| {
            let host = Hostname::parse(&format!("host{}.example.com", i % 100)).expect("host");
            let paths = if regex {
                vec![PathMatch::regex(&format!("/r{i}/[0-9]+")).expect("regex")]
            } else {
                vec![
                    PathMatch::exact(&format!("/r{i}/exact")).expect("exact"),
                    PathMatch::prefix(&format!("/r{i}/api")).expect("prefix"),
                ]
            };
            paths.into_iter().fold(
                HttpRoute::new(format!("route-{i}")).with_hostname(host),
                |route, p| {
                    route.with_rule(
                        HttpRule::new(())
                            .with_match(HttpRequestMatch::path(p))
                            .with_backend(BackendRef::new("web", 1)),
                    )
                },
            )
        })
        .collect();
    RouteTable::new(routes, vec![]).expect("valid")
}

fn requests(n: usize, regex: bool) -> Vec<http::Request<()>> {
    (0..64)
        .map(|k| {
            let i = (k * 7919) % n;
            let path = match (regex, k % 2) {
                (true, _) => format!("/r{i}/12345"),
                (false, 0) => format!("/r{i}/exact"),
                (false, _) => format!("/r{i}/api/users/42"),
            };
            http::Request::get(format!("http://host{}.example.com{path}", i % 100))
                .body(())
                .expect("request")
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    let empty = table(0, false);
    let reqs = requests(10, false);
    group.bench_function("baseline-empty-table", |b| {
        b.iter(|| {
            for r in &reqs {
                black_box(empty.find(black_box(r)));
            }
        });
    });
    for n in [10, 100, 1_000, 10_000] {
        let t = table(n, false);
        let reqs = requests(n, false);
        group.bench_with_input(BenchmarkId::new("exact+prefix", n), &n, |b, _| {
            b.iter(|| {
                for r in &reqs {
                    black_box(t.find(black_box(r)));
                }
            });
        });
    }
    for n in [10, 100, 1_000, 10_000] {
        let t = table(n, true);
        let reqs = requests(n, true);
        group.bench_with_input(BenchmarkId::new("regex", n), &n, |b, _| {
            b.iter(|| {
                for r in &reqs {
                    black_box(t.find(black_box(r)));
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
