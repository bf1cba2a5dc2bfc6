//! A live request tap: a sampled, bounded record of recent requests that dashboard viewers
//! follow as server-sent events (`/api/tap` on the admin server).
//!
//! [`TapLayer`] sits next to the access log (it reads the same response extensions: the
//! route, the backend and the attempts through
//! [`ReadRouteInfo`], the final class through
//! `linkerd_http_classify::FinalClass`) and writes one [`TapEvent`] per sampled request when
//! its response body ends, fails or is dropped.
//!
//! # Bounds
//! Events live in one ring of [`TapConfig::capacity`] entries shared by every viewer: a new
//! event overwrites the oldest. A viewer keeps only a cursor into the ring; when it falls
//! behind by more than the ring (a slow or stalled client), the events it missed are counted
//! ([`TapStats::viewer_dropped`]) and it carries on from the oldest event still held. Requests
//! never wait for a viewer: recording takes the ring's lock for one push, and viewers hold it
//! only to copy out at most [`MAX_BATCH`] shared pointers. Memory is therefore bounded by the
//! ring, whatever the request rate and whatever the viewers do.
//!
//! # Sampling
//! At most [`TapConfig::max_per_second`] requests are recorded per second (`None`: every
//! request). A request that is not sampled costs two atomic operations and a clock read; it
//! allocates nothing.

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use linkerd_http_access_log::{ExtractInfo, ReadRouteInfo};
use linkerd_http_body_eos::{Eos, EosBody, OnEos};
use linkerd_http_classify::clock;
use linkerd_http_classify::{
    BoxError, FinalClass, Protocol, ProxyError, grpc_status, to_proxy_error,
};
use serde::Serialize;
use std::{
    collections::VecDeque,
    fmt::Write as _,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
    time::{Duration, SystemTime},
};
use tokio::{sync::Notify, time::Instant};

/// The most events a viewer copies out of the ring at once.
pub const MAX_BATCH: usize = 64;

/// How often an idle viewer's stream carries an SSE comment, so a vanished client is noticed.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// Tap settings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TapConfig {
    /// Events held for viewers (the ring's size). Default 512.
    pub capacity: usize,
    /// Requests recorded per second at most; `None` records every request. Default 200.
    pub max_per_second: Option<u32>,
}

/// The shared tap: the ring of recent events, the sampler and the counters.
///
/// Cloning shares it.
#[derive(Clone, Debug)]
pub struct Tap(Arc<Shared>);

/// One tapped request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TapEvent {
    /// Sequence number, increasing by one per recorded event.
    pub id: u64,
    /// When the request arrived, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The request method.
    pub method: String,
    /// The URI authority, or the `host` header.
    pub authority: Option<String>,
    /// The URI path (the query is left out: it may carry credentials).
    pub path: String,
    /// The matched route.
    pub route: Option<String>,
    /// The backend that answered the last attempt.
    pub backend: Option<String>,
    /// The status the client received; 0 when it got a reset or a closed connection.
    pub status: u16,
    /// The gRPC status name (`OK`, `UNAVAILABLE`) for gRPC requests that have one.
    pub grpc_status: Option<&'static str>,
    /// Attempts made: 1 + retries.
    pub attempts: u32,
    /// Time from the request's arrival to the end of its response, in milliseconds.
    pub duration_ms: f64,
    /// The metric `error` label (`REQUEST_TIMEOUT`, `CANCEL`, ...), if the request failed.
    pub error: Option<&'static str>,
}

/// A status class for [`TapFilter::status`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StatusClass {
    /// 1xx.
    Informational,
    /// 2xx.
    Success,
    /// 3xx.
    Redirection,
    /// 4xx.
    ClientError,
    /// 5xx.
    ServerError,
    /// The request carries an `error` label or got no status (a reset).
    Error,
}

/// Which events a viewer wants; every set field must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TapFilter {
    /// The route's name, exactly.
    pub route: Option<String>,
    /// A prefix of the path.
    pub path_prefix: Option<String>,
    /// The status class.
    pub status: Option<StatusClass>,
}

/// A query parameter of `/api/tap` that cannot be understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError(String);

/// The tap's counters, for the dashboard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TapStats {
    /// The ring's size.
    pub capacity: usize,
    /// Events held now (never more than `capacity`).
    pub buffered: usize,
    /// Requests that went through the tap layer.
    pub seen: u64,
    /// Requests recorded (sampled).
    pub recorded: u64,
    /// Connected viewers.
    pub viewers: usize,
    /// Events that viewers missed because they fell behind the ring, summed over viewers.
    pub viewer_dropped: u64,
}

/// A viewer's position in the tap: yields SSE text for the events that match its filter.
#[derive(Debug)]
pub struct TapViewer {
    tap: Tap,
    filter: TapFilter,
    next: u64,
    dropped: u64,
}

/// Records sampled requests into a [`Tap`].
#[derive(Clone, Debug)]
pub struct TapLayer {
    tap: Tap,
}

/// The service of [`TapLayer`].
#[derive(Clone, Debug)]
pub struct TapService<S> {
    inner: S,
    tap: Tap,
}

pin_project_lite::pin_project! {
    /// The response future of [`TapService`]: records failures and cancellations.
    pub struct TapFuture<F> {
        #[pin]
        inner: F,
        // Boxed: only sampled requests have one, and inline it would grow every request's
        // future by its size.
        pending: Option<Box<Pending>>,
    }

    impl<F> PinnedDrop for TapFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(p) = this.project().pending.take() {
                p.finish(0, Some(ProxyError::cancel().label()));
            }
        }
    }
}

/// The end-of-body callback of a tapped response (does nothing for unsampled requests).
#[derive(Debug)]
pub struct Finish(Option<(Box<Pending>, Option<FinalClass>)>);

/// The response body of [`TapService`].
pub type TapBody<B> = EosBody<B, Finish>;

#[derive(Debug)]
struct Shared {
    config: TapConfig,
    ring: Mutex<Ring>,
    notify: Notify,
    start: Instant,
    /// The sampling window: `second << 32 | count`.
    window: AtomicU64,
    seen: AtomicU64,
    recorded: AtomicU64,
    viewers: AtomicUsize,
    viewer_dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<Arc<TapEvent>>,
    /// The id the next event gets; the ring holds ids `next_id - len .. next_id`.
    next_id: u64,
}

#[derive(Debug)]
struct Pending {
    tap: Tap,
    event: TapEvent,
    start: Instant,
    grpc: bool,
}

// === impl TapConfig ===

impl Default for TapConfig {
    fn default() -> Self {
        Self {
            capacity: 512,
            max_per_second: Some(200),
        }
    }
}

impl TapConfig {
    /// A config holding `capacity` events and recording at most `max_per_second` requests a
    /// second (`None`: all).
    pub fn new(capacity: usize, max_per_second: Option<u32>) -> Self {
        Self {
            capacity,
            max_per_second,
        }
    }
}

// === impl Tap ===

impl Tap {
    /// A tap with `config`. A capacity of 0 is raised to 1.
    pub fn new(mut config: TapConfig) -> Self {
        config.capacity = config.capacity.max(1);
        Self(Arc::new(Shared {
            ring: Mutex::new(Ring {
                events: VecDeque::with_capacity(config.capacity),
                next_id: 0,
            }),
            config,
            notify: Notify::new(),
            start: clock::now(),
            window: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            recorded: AtomicU64::new(0),
            viewers: AtomicUsize::new(0),
            viewer_dropped: AtomicU64::new(0),
        }))
    }

    /// The settings.
    pub fn config(&self) -> &TapConfig {
        &self.0.config
    }

    /// Events held now; never more than [`TapConfig::capacity`].
    pub fn buffered(&self) -> usize {
        self.ring().events.len()
    }

    /// The counters.
    pub fn stats(&self) -> TapStats {
        TapStats {
            capacity: self.0.config.capacity,
            buffered: self.buffered(),
            seen: self.0.seen.load(Ordering::Relaxed),
            recorded: self.0.recorded.load(Ordering::Relaxed),
            viewers: self.0.viewers.load(Ordering::Relaxed),
            viewer_dropped: self.0.viewer_dropped.load(Ordering::Relaxed),
        }
    }

    /// The events held now, oldest first.
    pub fn recent(&self) -> Vec<Arc<TapEvent>> {
        self.ring().events.iter().cloned().collect()
    }

    /// A viewer starting at the oldest event held, seeing the events that match `filter`.
    pub fn subscribe(&self, filter: TapFilter) -> TapViewer {
        self.subscribe_after(filter, None)
    }

    /// A viewer resuming after the event `last_id` (an SSE client's `Last-Event-ID`), or
    /// starting at the oldest event held when `None` or when `last_id` is not an id this tap
    /// gave out yet. Events between `last_id` and the oldest held count as dropped.
    pub fn subscribe_after(&self, filter: TapFilter, last_id: Option<u64>) -> TapViewer {
        let next = {
            let ring = self.ring();
            let oldest = ring.next_id - ring.events.len() as u64;
            match last_id {
                Some(id) if id < ring.next_id => id + 1,
                _ => oldest,
            }
        };
        self.0.viewers.fetch_add(1, Ordering::Relaxed);
        TapViewer {
            tap: self.clone(),
            filter,
            next,
            dropped: 0,
        }
    }

    /// Whether to record the next request (counts it as seen).
    fn admit(&self) -> bool {
        self.0.seen.fetch_add(1, Ordering::Relaxed);
        let Some(max) = self.0.config.max_per_second else {
            return true;
        };
        let second = clock::since(self.0.start).as_secs() & u64::from(u32::MAX);
        self.0
            .window
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                let (s, n) = (w >> 32, w & u64::from(u32::MAX));
                if s != second {
                    Some(second << 32 | 1)
                } else if n < u64::from(max) {
                    Some(w + 1)
                } else {
                    None
                }
            })
            .is_ok()
    }

    fn push(&self, mut event: TapEvent) {
        {
            let mut ring = self.ring();
            event.id = ring.next_id;
            ring.next_id += 1;
            if ring.events.len() == self.0.config.capacity {
                ring.events.pop_front();
            }
            ring.events.push_back(Arc::new(event));
        }
        self.0.recorded.fetch_add(1, Ordering::Relaxed);
        self.0.notify.notify_waiters();
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        // A panic while holding the lock leaves the ring consistent (each operation is one
        // push or pop), so a poisoned lock is still usable.
        self.0
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

// === impl TapEvent ===

impl TapEvent {
    /// The event as one line of JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    fn status_class(&self) -> Option<StatusClass> {
        if self.error.is_some() || self.status == 0 {
            return Some(StatusClass::Error);
        }
        match self.status / 100 {
            1 => Some(StatusClass::Informational),
            2 => Some(StatusClass::Success),
            3 => Some(StatusClass::Redirection),
            4 => Some(StatusClass::ClientError),
            5 => Some(StatusClass::ServerError),
            _ => None,
        }
    }
}

// === impl StatusClass ===

impl std::str::FromStr for StatusClass {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, FilterError> {
        match s.to_ascii_lowercase().as_str() {
            "1xx" => Ok(Self::Informational),
            "2xx" => Ok(Self::Success),
            "3xx" => Ok(Self::Redirection),
            "4xx" => Ok(Self::ClientError),
            "5xx" => Ok(Self::ServerError),
            "error" => Ok(Self::Error),
            _ => Err(FilterError(format!(
                "status: expected 1xx, 2xx, 3xx, 4xx, 5xx or error, got {s:?}"
            ))),
        }
    }
}

// === impl TapFilter ===

impl TapFilter {
    /// Parses a query string: `route=NAME`, `path=PREFIX`, `status=2xx|..|5xx|error`
    /// (percent-encoded values; empty values and unknown parameters are ignored).
    ///
    /// # Errors
    /// A status that is not a class, or a value that is not valid percent-encoded UTF-8.
    pub fn from_query(query: Option<&str>) -> Result<Self, FilterError> {
        let mut filter = Self::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value)
                .ok_or_else(|| FilterError(format!("{key}: invalid percent-encoding")))?;
            if value.is_empty() {
                continue;
            }
            match key {
                "route" => filter.route = Some(value),
                "path" => filter.path_prefix = Some(value),
                "status" => filter.status = Some(value.parse()?),
                _ => {}
            }
        }
        Ok(filter)
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &TapEvent) -> bool {
        self.route
            .as_ref()
            .is_none_or(|r| event.route.as_deref() == Some(r.as_str()))
            && self
                .path_prefix
                .as_ref()
                .is_none_or(|p| event.path.starts_with(p.as_str()))
            && self.status.is_none_or(|c| event.status_class() == Some(c))
    }
}

/// Decodes `%XX` escapes and `+` (as a space, the form encoding browsers use).
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = (bytes.next()? as char).to_digit(16)?;
                let lo = (bytes.next()? as char).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FilterError {}

// === impl TapViewer ===

impl TapViewer {
    /// Events this viewer missed because it fell behind the ring.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Waits for matching events and returns them as SSE text: one `event: request` per
    /// event (with `id:` the event's id, so a reconnecting `EventSource` resumes after it with
    /// `Last-Event-ID`; data the event's JSON), preceded by an `event: dropped` (data
    /// `{"dropped":N}`, the viewer's total) when events were missed. After [`HEARTBEAT`]
    /// without events it returns an SSE comment instead.
    ///
    /// Cancel safe: dropping the future loses nothing (the cursor moves only when it
    /// returns).
    pub async fn next_chunk(&mut self) -> Bytes {
        let heartbeat = tokio::time::sleep(HEARTBEAT);
        tokio::pin!(heartbeat);
        let shared = self.tap.0.clone();
        loop {
            let notified = shared.notify.notified();
            tokio::pin!(notified);
            // Registered before looking at the ring, so an event pushed in between wakes us.
            notified.as_mut().enable();
            if let Some(chunk) = self.poll_ring() {
                return chunk;
            }
            tokio::select! {
                () = &mut notified => {}
                () = &mut heartbeat => return Bytes::from_static(b": keep-alive\n\n"),
            }
        }
    }

    /// Copies out up to [`MAX_BATCH`] events after the cursor; `None` when none match.
    fn poll_ring(&mut self) -> Option<Bytes> {
        let (batch, missed) = {
            let ring = self.tap.ring();
            let oldest = ring.next_id - ring.events.len() as u64;
            let missed = oldest.saturating_sub(self.next);
            let from = self.next.max(oldest);
            let skip = usize::try_from(from - oldest).unwrap_or(usize::MAX);
            let batch: Vec<Arc<TapEvent>> = ring
                .events
                .iter()
                .skip(skip)
                .take(MAX_BATCH)
                .cloned()
                .collect();
            self.next = from + batch.len() as u64;
            (batch, missed)
        };
        let mut text = String::new();
        if missed > 0 {
            self.dropped += missed;
            self.tap
                .0
                .viewer_dropped
                .fetch_add(missed, Ordering::Relaxed);
            let _ = write!(
                text,
                "event: dropped\ndata: {{\"dropped\":{}}}\n\n",
                self.dropped
            );
        }
        for event in batch.iter().filter(|e| self.filter.matches(e)) {
            let _ = write!(
                text,
                "id: {}\nevent: request\ndata: {}\n\n",
                event.id,
                event.to_json()
            );
        }
        (!text.is_empty()).then(|| Bytes::from(text))
    }
}

impl Drop for TapViewer {
    fn drop(&mut self) {
        self.tap.0.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

// === impl TapLayer ===

impl TapLayer {
    /// A layer recording into `tap`.
    pub fn new(tap: Tap) -> Self {
        Self { tap }
    }
}

impl<S> tower::Layer<S> for TapLayer {
    type Service = TapService<S>;

    fn layer(&self, inner: S) -> TapService<S> {
        TapService {
            inner,
            tap: self.tap.clone(),
        }
    }
}

// === impl TapService ===

impl<S> TapService<S> {
    /// Shortcut for [`TapLayer::new`].
    pub fn layer(tap: Tap) -> TapLayer {
        TapLayer::new(tap)
    }
}

impl<S, ReqB, RspB> tower::Service<Request<ReqB>> for TapService<S>
where
    S: tower::Service<Request<ReqB>, Response = Response<RspB>>,
    S::Error: Into<BoxError>,
    RspB: Body<Error = BoxError>,
{
    type Response = Response<TapBody<RspB>>;
    type Error = BoxError;
    type Future = TapFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let pending = self
            .tap
            .admit()
            .then(|| Box::new(Pending::new(&self.tap, &req)));
        TapFuture {
            inner: self.inner.call(req),
            pending,
        }
    }
}

// === impl TapFuture ===

impl<F, B, E> Future for TapFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body<Error = BoxError>,
{
    type Output = Result<Response<TapBody<B>>, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let pending = this.pending.take();
        match result {
            Err(e) => {
                let e: BoxError = e.into();
                if let Some(p) = pending {
                    p.finish(0, Some(to_proxy_error(&*e).label()));
                }
                Poll::Ready(Err(e))
            }
            Ok(rsp) => {
                let finish = pending.map(|mut p| {
                    let info = ReadRouteInfo.extract(rsp.extensions());
                    p.event.route = info.route.map(|r| r.to_string());
                    p.event.backend = info.backend.map(|b| b.to_string());
                    p.event.attempts = info.attempts.unwrap_or(1).max(1);
                    p.event.status = rsp.status().as_u16();
                    p.event.error = rsp.extensions().get::<ProxyError>().map(ProxyError::label);
                    if p.grpc {
                        p.event.grpc_status = grpc_status(rsp.headers()).and_then(|c| c.name());
                    }
                    (p, rsp.extensions().get::<FinalClass>().cloned())
                });
                let (parts, body) = rsp.into_parts();
                let body = EosBody::new(body, Finish(finish));
                Poll::Ready(Ok(Response::from_parts(parts, body)))
            }
        }
    }
}

impl<F: std::fmt::Debug> std::fmt::Debug for TapFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapFuture")
            .field("inner", &self.inner)
            .field("sampled", &self.pending.is_some())
            .finish()
    }
}

// === impl Pending ===

impl Pending {
    fn new<B>(tap: &Tap, req: &Request<B>) -> Self {
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            });
        let timestamp_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            tap: tap.clone(),
            event: TapEvent {
                id: 0,
                timestamp_ms,
                method: req.method().as_str().to_owned(),
                authority,
                path: req.uri().path().to_owned(),
                route: None,
                backend: None,
                status: 0,
                grpc_status: None,
                attempts: 1,
                duration_ms: 0.0,
                error: None,
            },
            start: clock::now(),
            grpc: Protocol::of(req).is_grpc(),
        }
    }

    fn finish(mut self, status: u16, error: Option<&'static str>) {
        self.event.status = status;
        self.event.error = error;
        self.record();
    }

    fn record(mut self) {
        self.event.duration_ms = clock::since(self.start).as_secs_f64() * 1000.0;
        self.tap.push(self.event);
    }
}

// === impl Finish ===

impl OnEos<BoxError> for Finish {
    fn on_eos(self, eos: Eos<'_, BoxError>) {
        let Some((mut p, class)) = self.0 else {
            return;
        };
        match eos {
            Eos::End => {}
            Eos::Trailers(t) => {
                if p.grpc
                    && let Some(code) = grpc_status(t)
                {
                    p.event.grpc_status = code.name();
                }
            }
            Eos::Error(e) => p.event.error = Some(to_proxy_error(&**e).label()),
            Eos::Cancelled => p.event.error = Some(ProxyError::cancel().label()),
        }
        // The classifier's verdict (set by the classify layer inside) is final when present.
        if let Some(class) = class.as_ref().and_then(FinalClass::get) {
            if let Some(code) = class.grpc_status() {
                p.event.grpc_status = code.name();
            }
            if class.error().is_some() {
                p.event.error = Some(class.error_label());
            }
        }
        p.record();
    }
}

#[cfg(test)]
mod tests;
