//! Reading the golden metrics out of a parsed scrape, and the `/api/stats` document.

use linkerd_http_prom::{Sample, Scrape};
use serde::Serialize;
use std::collections::BTreeMap;

/// A route: its kind (`http` or `grpc`) and name.
pub type RouteKey = (&'static str, String);

/// A backend on a route: kind, route name, backend name.
pub type BackendKey = (&'static str, String, String);

/// Cumulative (requests, successes) per route: what a sparkline needs of one sample.
pub type Counts = BTreeMap<RouteKey, (f64, f64)>;

/// The cumulative counters of every route and backend at one instant, read from a scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Per route.
    pub routes: BTreeMap<RouteKey, RouteCounters>,
    /// Per backend of a route.
    pub backends: BTreeMap<BackendKey, Outcomes>,
    /// `balancer_endpoints` by backend: (ready, pending).
    pub endpoints: BTreeMap<String, (f64, f64)>,
    /// `http_server_connections_open` by protocol.
    pub connections: BTreeMap<String, f64>,
    /// `http_stream_resets_total` summed.
    pub stream_resets: f64,
    /// `access_log_dropped_total`.
    pub access_log_dropped: f64,
}

/// Finished requests, successes and the latency histogram of a route or backend.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcomes {
    /// Finished requests (responses, for a backend).
    pub requests: f64,
    /// Those that succeeded: no error label, HTTP status below 500 and gRPC status OK or none.
    pub successes: f64,
    /// Cumulative histogram buckets: (upper bound in seconds, count), ascending.
    pub buckets: Vec<(f64, f64)>,
}

/// A route's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteCounters {
    /// Requests, successes, latency.
    pub outcomes: Outcomes,
    /// `..._retry_requests_total`.
    pub retries: f64,
    /// `..._retry_successes_total`.
    pub retry_successes: f64,
    /// `..._retry_limit_exceeded_total`.
    pub retry_limit_exceeded: f64,
    /// `..._retry_overflow_total`.
    pub retry_overflow: f64,
    /// `..._requests_in_flight` (a gauge: not a counter).
    pub in_flight: f64,
}

/// The `/api/stats` document.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// The seconds the windowed figures cover (up to [`super::WINDOW`]).
    pub window_seconds: f64,
    /// Routes, sorted by kind then name.
    pub routes: Vec<RouteStats>,
    /// Backends, sorted by kind, route, then name.
    pub backends: Vec<BackendStats>,
    /// Open server connections by protocol.
    pub connections: BTreeMap<String, f64>,
    /// HTTP/2 stream resets since start.
    pub stream_resets: f64,
    /// Access-log lines dropped since start.
    pub access_log_dropped: f64,
    /// The tap's counters.
    pub tap: Option<crate::tap::TapStats>,
}

/// Windowed figures shared by routes and backends.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Golden {
    /// Requests finished in the window.
    pub requests: f64,
    /// Requests per second over the window.
    pub rps: f64,
    /// Fraction of successes in the window; `None` without requests.
    pub success_rate: Option<f64>,
    /// Latency quantiles in milliseconds; `None` without requests.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
}

/// One route in `/api/stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RouteStats {
    /// `http` or `grpc`.
    pub kind: &'static str,
    /// The route's name.
    pub name: String,
    /// Rate, success rate, latency.
    #[serde(flatten)]
    pub golden: Golden,
    /// Requests whose response has not ended.
    pub in_flight: f64,
    /// Retries in the window.
    pub retries: f64,
    /// Retried requests that succeeded, in the window.
    pub retry_successes: f64,
    /// Requests not retried further (attempts or deadline), in the window.
    pub retry_limit_exceeded: f64,
    /// Requests not retried (budget, body size, backend not ready), in the window.
    pub retry_overflow: f64,
    /// One point per sampled second, oldest first: requests per second and success rate.
    pub spark: Vec<SparkPoint>,
}

/// One backend of a route in `/api/stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BackendStats {
    /// `http` or `grpc`.
    pub kind: &'static str,
    /// The route's name.
    pub route: String,
    /// The backend's name.
    pub name: String,
    /// Rate, success rate, latency of the backend's responses.
    #[serde(flatten)]
    pub golden: Golden,
    /// Balancer endpoints ready now.
    pub endpoints_ready: f64,
    /// Balancer endpoints connecting or backing off now.
    pub endpoints_pending: f64,
}

/// A sparkline point.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SparkPoint {
    /// Requests per second over the interval.
    pub rps: f64,
    /// Success rate over the interval; `None` without requests.
    pub success_rate: Option<f64>,
}

const KINDS: [(&str, &str); 2] = [
    ("http", "outbound_http_route_"),
    ("grpc", "outbound_grpc_route_"),
];

// === impl Snapshot ===

impl Snapshot {
    /// Reads the families of DESIGN.md section 6 out of `scrape`.
    pub fn from_scrape(scrape: &Scrape) -> Self {
        let mut snap = Self::default();
        for sample in &scrape.samples {
            snap.add(sample);
        }
        for r in snap.routes.values_mut() {
            sort_buckets(&mut r.outcomes.buckets);
        }
        for b in snap.backends.values_mut() {
            sort_buckets(&mut b.buckets);
        }
        snap
    }

    /// The (requests, successes) of every route.
    pub fn counts(&self) -> Counts {
        self.routes
            .iter()
            .map(|(k, r)| (k.clone(), (r.outcomes.requests, r.outcomes.successes)))
            .collect()
    }

    fn add(&mut self, s: &Sample) {
        let label = |k: &str| s.labels.get(k).map_or("", String::as_str);
        for (kind, prefix) in KINDS {
            let Some(family) = s.name.strip_prefix(prefix) else {
                continue;
            };
            let route = label("route_name").to_owned();
            if let Some(backend_family) = family.strip_prefix("backend_") {
                let key = (kind, route, label("backend_name").to_owned());
                let b = self.backends.entry(key).or_default();
                match backend_family {
                    "response_statuses_total" => b.add_status(s),
                    "response_duration_seconds_bucket" => b.add_bucket(s),
                    _ => {}
                }
                return;
            }
            let r = self.routes.entry((kind, route)).or_default();
            match family {
                "request_statuses_total" => r.outcomes.add_status(s),
                "request_duration_seconds_bucket" => r.outcomes.add_bucket(s),
                "requests_in_flight" => r.in_flight += s.value,
                "retry_requests_total" => r.retries += s.value,
                "retry_successes_total" => r.retry_successes += s.value,
                "retry_limit_exceeded_total" => r.retry_limit_exceeded += s.value,
                "retry_overflow_total" => r.retry_overflow += s.value,
                _ => {}
            }
            return;
        }
        match s.name.as_str() {
            "balancer_endpoints" => {
                let e = self
                    .endpoints
                    .entry(label("backend_name").to_owned())
                    .or_default();
                match label("state") {
                    "ready" => e.0 += s.value,
                    "pending" => e.1 += s.value,
                    _ => {}
                }
            }
            "http_server_connections_open" => {
                *self
                    .connections
                    .entry(label("protocol").to_owned())
                    .or_default() += s.value;
            }
            "http_stream_resets_total" => self.stream_resets += s.value,
            "access_log_dropped_total" => self.access_log_dropped += s.value,
            _ => {}
        }
    }
}

fn sort_buckets(buckets: &mut [(f64, f64)]) {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
}

// === impl Outcomes ===

impl Outcomes {
    fn add_status(&mut self, s: &Sample) {
        self.requests += s.value;
        if is_success(s) {
            self.successes += s.value;
        }
    }

    fn add_bucket(&mut self, s: &Sample) {
        let le = match s.labels.get("le").map(String::as_str) {
            Some("+Inf") => f64::INFINITY,
            Some(v) => match v.parse::<f64>() {
                Ok(v) => v,
                Err(_) => return,
            },
            None => return,
        };
        // Several label sets can share a route (not today, but summing keeps this honest).
        match self.buckets.iter_mut().find(|(b, _)| *b == le) {
            Some((_, n)) => *n += s.value,
            None => self.buckets.push((le, s.value)),
        }
    }

    /// `self - earlier`, for a window; counters that went backwards count from zero.
    fn since(&self, earlier: Option<&Self>) -> Self {
        let Some(e) = earlier else {
            return self.clone();
        };
        let d = |now: f64, then: f64| if now >= then { now - then } else { now };
        Self {
            requests: d(self.requests, e.requests),
            successes: d(self.successes, e.successes),
            buckets: self
                .buckets
                .iter()
                .map(|&(le, n)| {
                    let then = e
                        .buckets
                        .iter()
                        .find(|(b, _)| *b == le)
                        .map_or(0.0, |b| b.1);
                    (le, d(n, then))
                })
                .collect(),
        }
    }

    fn golden(&self, seconds: f64) -> Golden {
        let has = self.requests > 0.0;
        let q = |q| {
            if has {
                quantile(&self.buckets, q)
            } else {
                None
            }
        };
        Golden {
            requests: self.requests,
            rps: if seconds > 0.0 {
                self.requests / seconds
            } else {
                0.0
            },
            success_rate: has.then(|| self.successes / self.requests),
            p50_ms: q(0.5),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
        }
    }
}

/// A status sample counts as a success when it has no error label, an HTTP status below 500
/// (or none: gRPC answered in trailers) and a gRPC status of `OK` or none.
fn is_success(s: &Sample) -> bool {
    let get = |k: &str| s.labels.get(k).map_or("", String::as_str);
    let http_ok = get("http_status")
        .parse::<u16>()
        .is_ok_and(|status| status < 500);
    let grpc_ok = matches!(get("grpc_status"), "" | "OK");
    get("error").is_empty() && http_ok && grpc_ok
}

/// The `q` quantile (0..1) of a cumulative histogram, in milliseconds, interpolating linearly
/// inside the bucket that holds it (as Prometheus' `histogram_quantile` does). A quantile in
/// the `+Inf` bucket reports the largest finite bound.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, n) in buckets {
        if n >= rank {
            if le.is_infinite() {
                return Some(lower.0 * 1000.0);
            }
            let in_bucket = n - lower.1;
            let fraction = if in_bucket > 0.0 {
                (rank - lower.1) / in_bucket
            } else {
                1.0
            };
            return Some((lower.0 + (le - lower.0) * fraction) * 1000.0);
        }
        lower = (le, n);
    }
    Some(lower.0 * 1000.0)
}

// === impl Stats ===

impl Stats {
    /// The document for `now`, with windowed figures relative to `baseline` (taken `seconds`
    /// earlier; `None`: since start) and sparklines from `history` (cumulative counts one
    /// sample apart, oldest first, each with the seconds since the one before).
    pub fn build(
        now: &Snapshot,
        baseline: Option<&Snapshot>,
        seconds: f64,
        history: &[(f64, &Counts)],
    ) -> Self {
        let routes = now
            .routes
            .iter()
            .map(|(key, r)| {
                let then = baseline.and_then(|b| b.routes.get(key));
                let d = |now: f64, f: fn(&RouteCounters) -> f64| {
                    let then = then.map_or(0.0, f);
                    if now >= then { now - then } else { now }
                };
                RouteStats {
                    kind: key.0,
                    name: key.1.clone(),
                    golden: r.outcomes.since(then.map(|t| &t.outcomes)).golden(seconds),
                    in_flight: r.in_flight,
                    retries: d(r.retries, |t| t.retries),
                    retry_successes: d(r.retry_successes, |t| t.retry_successes),
                    retry_limit_exceeded: d(r.retry_limit_exceeded, |t| t.retry_limit_exceeded),
                    retry_overflow: d(r.retry_overflow, |t| t.retry_overflow),
                    spark: spark(key, history),
                }
            })
            .collect();
        let backends = now
            .backends
            .iter()
            .map(|(key, b)| {
                let then = baseline.and_then(|s| s.backends.get(key));
                let (ready, pending) = now.endpoints.get(&key.2).copied().unwrap_or_default();
                BackendStats {
                    kind: key.0,
                    route: key.1.clone(),
                    name: key.2.clone(),
                    golden: b.since(then).golden(seconds),
                    endpoints_ready: ready,
                    endpoints_pending: pending,
                }
            })
            .collect();
        Self {
            window_seconds: seconds,
            routes,
            backends,
            connections: now.connections.clone(),
            stream_resets: now.stream_resets,
            access_log_dropped: now.access_log_dropped,
            tap: None,
        }
    }
}

/// One point per consecutive pair of `history` entries for the route `key`.
fn spark(key: &RouteKey, history: &[(f64, &Counts)]) -> Vec<SparkPoint> {
    history
        .windows(2)
        .map(|pair| {
            let (_, before) = pair[0];
            let (seconds, after) = pair[1];
            let (r0, s0) = before.get(key).copied().unwrap_or_default();
            let (r1, s1) = after.get(key).copied().unwrap_or_default();
            let outcomes = Outcomes {
                requests: r1,
                successes: s1,
                buckets: vec![],
            }
            .since(Some(&Outcomes {
                requests: r0,
                successes: s0,
                buckets: vec![],
            }));
            let g = outcomes.golden(seconds);
            SparkPoint {
                rps: g.rps,
                success_rate: g.success_rate,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE outbound_http_route_request_statuses counter
outbound_http_route_request_statuses_total{route_name="api",http_status="200",grpc_status="",error=""} 30
outbound_http_route_request_statuses_total{route_name="api",http_status="503",grpc_status="",error=""} 10
outbound_http_route_request_statuses_total{route_name="api",http_status="504",grpc_status="",error="REQUEST_TIMEOUT"} 0
outbound_grpc_route_request_statuses_total{route_name="g",http_status="200",grpc_status="UNAVAILABLE",error=""} 1
outbound_grpc_route_request_statuses_total{route_name="g",http_status="200",grpc_status="OK",error=""} 3
outbound_http_route_request_duration_seconds_bucket{route_name="api",le="0.01"} 20
outbound_http_route_request_duration_seconds_bucket{route_name="api",le="0.1"} 40
outbound_http_route_request_duration_seconds_bucket{route_name="api",le="+Inf"} 40
outbound_http_route_retry_requests_total{route_name="api"} 4
outbound_http_route_requests_in_flight{route_name="api"} 2
outbound_http_route_backend_response_statuses_total{route_name="api",backend_name="web",http_status="200",grpc_status="",error=""} 30
outbound_http_route_backend_response_statuses_total{route_name="api",backend_name="web",http_status="",grpc_status="",error="RESET"} 2
balancer_endpoints{backend_name="web",state="ready"} 2
balancer_endpoints{backend_name="web",state="pending"} 1
http_server_connections_open{protocol="http1"} 3
access_log_dropped_total 5
"#;

    fn snapshot() -> Snapshot {
        Snapshot::from_scrape(&Scrape::parse(TEXT).expect("test text parses"))
    }

    #[test]
    fn reads_routes_backends_and_gauges() {
        let s = snapshot();
        let api = &s.routes[&("http", "api".to_owned())];
        assert_eq!(
            api.outcomes.requests, 40.0,
            "every status sample is a request"
        );
        assert_eq!(
            api.outcomes.successes, 30.0,
            "503 and error labels are failures"
        );
        assert_eq!(api.retries, 4.0, "retries are read");
        assert_eq!(api.in_flight, 2.0, "in-flight gauge is read");
        let g = &s.routes[&("grpc", "g".to_owned())];
        assert_eq!(
            (g.outcomes.requests, g.outcomes.successes),
            (4.0, 3.0),
            "a gRPC status other than OK is a failure even with HTTP 200"
        );
        let web = &s.backends[&("http", "api".to_owned(), "web".to_owned())];
        assert_eq!(
            (web.requests, web.successes),
            (32.0, 30.0),
            "a reset without a status is a failure"
        );
        assert_eq!(s.endpoints["web"], (2.0, 1.0), "endpoint states by backend");
        assert_eq!(s.connections["http1"], 3.0, "open connections by protocol");
        assert_eq!(s.access_log_dropped, 5.0, "access-log drops are read");
    }

    #[test]
    fn stats_window_and_quantiles() {
        let now = snapshot();
        let stats = Stats::build(&now, None, 10.0, &[]);
        let api = stats
            .routes
            .iter()
            .find(|r| r.name == "api")
            .expect("route api is listed");
        assert_eq!(api.golden.success_rate, Some(0.75), "30 of 40 succeeded");
        assert_eq!(api.golden.rps, 4.0, "40 requests over 10 s");
        // 20 of 40 below 10 ms: the median sits at the top of the first bucket.
        assert_eq!(api.golden.p50_ms, Some(10.0), "median from the buckets");
        let p99 = api.golden.p99_ms.expect("p99 with requests");
        assert!(
            p99 > 10.0 && p99 <= 100.0,
            "p99 in the second bucket: {p99}"
        );

        // Against itself as baseline, the window is empty.
        let empty = Stats::build(&now, Some(&now), 10.0, &[]);
        let api = empty.routes.iter().find(|r| r.name == "api").expect("api");
        assert_eq!(api.golden.requests, 0.0, "no requests in an empty window");
        assert_eq!(api.golden.success_rate, None, "no rate without requests");
    }

    #[test]
    fn sparkline_points_are_per_interval() {
        let zero = Counts::default();
        let now = snapshot();
        let counts = now.counts();
        let stats = Stats::build(
            &now,
            None,
            1.0,
            &[(0.0, &zero), (2.0, &counts), (1.0, &counts)],
        );
        let api = stats.routes.iter().find(|r| r.name == "api").expect("api");
        assert_eq!(api.spark.len(), 2, "one point per interval");
        assert_eq!(api.spark[0].rps, 20.0, "40 requests over 2 s");
        assert_eq!(
            api.spark[0].success_rate,
            Some(0.75),
            "interval success rate"
        );
        assert_eq!(api.spark[1].rps, 0.0, "nothing in the second interval");
    }

    #[test]
    fn quantile_edges() {
        assert_eq!(quantile(&[], 0.5), None, "no buckets");
        assert_eq!(
            quantile(&[(1.0, 0.0), (f64::INFINITY, 0.0)], 0.5),
            None,
            "no samples"
        );
        assert_eq!(
            quantile(&[(1.0, 0.0), (f64::INFINITY, 4.0)], 0.5),
            Some(1000.0),
            "the +Inf bucket reports the largest finite bound"
        );
        assert_eq!(
            quantile(&[(0.5, 2.0), (1.0, 4.0)], 0.75),
            Some(750.0),
            "linear inside the bucket"
        );
    }
}
