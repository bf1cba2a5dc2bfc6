//! The admin dashboard: an HTML page at `/`, the golden metrics as JSON at `/api/stats`, and
//! the live tap as server-sent events at `/api/tap`.
//!
//! # One source of truth
//! `/api/stats` is computed from the registry that `/metrics` serves: the dashboard encodes it
//! in OpenMetrics text and parses it back with [`Scrape`], so no counter exists twice and the
//! page can never disagree with a Prometheus scrape.
//!
//! # Windows and history
//! A sampler task ([`Dashboard::spawn_sampler`]) reads the registry once a second. The last
//! [`WINDOW`] seconds of samples give the windowed figures (request rate, success rate,
//! latency quantiles, retries): each request to `/api/stats` compares a fresh read with the
//! sample about [`WINDOW`] seconds old (early on, with the counts since start). Per-route request counts
//! of the last [`SPARK_POINTS`] samples give the sparklines. Both histories are bounded.
//!
//! # The tap
//! `/api/tap?route=NAME&path=PREFIX&status=5xx` streams the [`Tap`]'s events that match (see
//! [`TapFilter::from_query`]), starting with those it still holds, or after the client's
//! `Last-Event-ID`. `max_seconds=N` (1 to 3600) ends the stream after N seconds; the page
//! uses it with `EventSource`'s automatic reconnection and `Last-Event-ID`, so it loses no
//! event and never holds a request open for long (a headless browser's virtual time stands
//! still while a request is open). A bad parameter gets a 400.

mod stats;

pub use stats::{
    BackendKey, BackendStats, Counts, Golden, Outcomes, RouteCounters, RouteKey, RouteStats,
    Snapshot, SparkPoint, Stats, quantile,
};

use crate::tap::{Tap, TapFilter};
use bytes::Bytes;
use futures_util::stream;
use http::{Method, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use linkerd_http_prom::{Format, Scrape, prometheus_client::registry::Registry};
use std::{
    collections::VecDeque,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::time::Instant;

/// Seconds covered by the windowed figures of `/api/stats`.
pub const WINDOW: u64 = 60;

/// Samples kept for the sparklines: one a second, five minutes.
pub const SPARK_POINTS: usize = 300;

/// The page served at `/`: self-contained (no external scripts, styles or fonts).
pub const PAGE: &str = include_str!("page.html");

/// The body of the dashboard's responses.
pub type DashboardBody = UnsyncBoxBody<Bytes, Infallible>;

/// The dashboard's state: the registry it reads, the tap and the sample history.
///
/// Cloning shares it.
#[derive(Clone, Debug)]
pub struct Dashboard(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    registry: Arc<Registry>,
    tap: Option<Tap>,
    history: Mutex<History>,
    /// When the dashboard was made: the registry's counters start (near) here.
    started: Instant,
}

#[derive(Debug, Default)]
struct History {
    /// Full snapshots of the last `WINDOW + 1` samples, oldest first.
    full: VecDeque<(Instant, Arc<Snapshot>)>,
    /// Per-route counts of the last `SPARK_POINTS + 1` samples, oldest first.
    spark: VecDeque<(Instant, Counts)>,
}

// === impl Dashboard ===

impl Dashboard {
    /// A dashboard over `registry` (the one `/metrics` serves) and `tap` (when the proxy
    /// taps requests).
    pub fn new(registry: Arc<Registry>, tap: Option<Tap>) -> Self {
        Self(Arc::new(Inner {
            registry,
            tap,
            history: Mutex::new(History::default()),
            started: Instant::now(),
        }))
    }

    /// The tap, if any.
    pub fn tap(&self) -> Option<&Tap> {
        self.0.tap.as_ref()
    }

    /// Reads the registry now.
    pub fn snapshot(&self) -> Snapshot {
        // Encoding our own families into a String cannot fail; parse errors would be a bug in
        // the encoder or the parser, and an empty snapshot is the safe answer for a page.
        let text = Format::OpenMetrics
            .encode(&self.0.registry)
            .unwrap_or_default();
        Scrape::parse(&text).map_or_else(|_| Snapshot::default(), |s| Snapshot::from_scrape(&s))
    }

    /// Takes one sample into the history (the sampler calls this every second).
    pub fn sample(&self) {
        let snap = self.snapshot();
        let now = Instant::now();
        let counts = snap.counts();
        let mut h = self.history();
        if h.full.len() > usize::try_from(WINDOW).unwrap_or(usize::MAX) {
            h.full.pop_front();
        }
        h.full.push_back((now, Arc::new(snap)));
        if h.spark.len() > SPARK_POINTS {
            h.spark.pop_front();
        }
        h.spark.push_back((now, counts));
    }

    /// Samples once now and then every second, until the task is aborted.
    pub fn spawn_sampler(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.sample();
            }
        })
    }

    /// The `/api/stats` document: a fresh read against the history.
    pub fn stats(&self) -> Stats {
        let now_snap = self.snapshot();
        let now = Instant::now();
        let h = self.history();
        let window = Duration::from_secs(WINDOW);
        // The newest sample at least WINDOW old. Without one: while the proxy is younger than
        // the window, every count since start is inside it (the first sample may have been
        // taken after the first requests finished, and must not hide them); later (a sampler
        // that fell behind), the oldest sample there is.
        let age = now.duration_since(self.0.started);
        let baseline = h
            .full
            .iter()
            .rev()
            .find(|(t, _)| now.duration_since(*t) >= window);
        let (seconds, base) = match baseline {
            Some((t, s)) => (now.duration_since(*t).as_secs_f64(), Some(s.as_ref())),
            None if age < window => (age.as_secs_f64(), None),
            None => match h.full.front() {
                Some((t, s)) => (now.duration_since(*t).as_secs_f64(), Some(s.as_ref())),
                None => (age.as_secs_f64(), None),
            },
        };
        let mut prev: Option<Instant> = None;
        let spark: Vec<(f64, &Counts)> = h
            .spark
            .iter()
            .map(|(t, c)| {
                let gap = prev.map_or(0.0, |p| t.duration_since(p).as_secs_f64());
                prev = Some(*t);
                (gap, c)
            })
            .collect();
        let mut stats = Stats::build(&now_snap, base, seconds, &spark);
        stats.tap = self.0.tap.as_ref().map(Tap::stats);
        stats
    }

    /// Answers `/`, `/api/stats` and `/api/tap`; `None` for any other path.
    pub fn respond<B>(&self, req: &Request<B>) -> Option<Response<DashboardBody>> {
        let path = req.uri().path();
        if !matches!(path, "/" | "/index.html" | "/api/stats" | "/api/tap") {
            return None;
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Some(text(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "method not allowed\n",
            ));
        }
        Some(match path {
            "/api/stats" => {
                let json = serde_json::to_string(&self.stats()).unwrap_or_default();
                text(StatusCode::OK, "application/json", json)
            }
            "/api/tap" => self.tap_stream(req),
            _ => text(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        })
    }

    fn tap_stream<B>(&self, req: &Request<B>) -> Response<DashboardBody> {
        let Some(tap) = &self.0.tap else {
            return text(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "the tap is off\n",
            );
        };
        let parsed = TapFilter::from_query(req.uri().query())
            .map_err(|e| e.to_string())
            .and_then(|f| Ok((f, max_seconds(req.uri().query())?)));
        let (filter, limit) = match parsed {
            Ok(p) => p,
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "text/plain; charset=utf-8",
                    format!("{e}\n"),
                );
            }
        };
        let body: DashboardBody = if req.method() == Method::HEAD {
            Full::default().boxed_unsync()
        } else {
            let last_id = req
                .headers()
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let viewer = tap.subscribe_after(filter, last_id);
            // `retry:` tells EventSource how soon to reconnect after the stream ends.
            let first = Bytes::from_static(b"retry: 1000\n\n");
            let deadline = limit.map(|d| Instant::now() + d);
            let events = stream::unfold(viewer, move |mut viewer| async move {
                let chunk = match deadline {
                    Some(at) => tokio::time::timeout_at(at, viewer.next_chunk())
                        .await
                        .ok()?,
                    None => viewer.next_chunk().await,
                };
                Some((Ok(Frame::data(chunk)), viewer))
            });
            let all = futures_util::StreamExt::chain(
                stream::once(std::future::ready(Ok(Frame::data(first)))),
                events,
            );
            StreamBody::new(all).boxed_unsync()
        };
        Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(body)
            .expect("static response parts are valid")
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        // Each update is a push and a pop: a poisoned history is still consistent.
        self.0
            .history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The `max_seconds` parameter of `/api/tap`.
fn max_seconds(query: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(value) = query
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("max_seconds="))
    else {
        return Ok(None);
    };
    match value.parse::<u64>() {
        Ok(n @ 1..=3600) => Ok(Some(Duration::from_secs(n))),
        _ => Err(format!(
            "max_seconds: expected 1 to 3600 seconds, got {value:?}"
        )),
    }
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<DashboardBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Full::new(body.into()).boxed_unsync())
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests;
