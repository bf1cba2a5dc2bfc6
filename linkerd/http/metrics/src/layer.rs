use crate::{ExtractRetry, ReadRetrySummary, RetryStopKind, RetrySummary};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use linkerd_http_classify::clock;
use linkerd_http_classify::{
    BoxError, Class, Classify, ClassifyEos, ClassifyResponse, DefaultClassify, PackedClassifier,
    Protocol, ProxyError, RequestStart, ResponseClassifier, to_proxy_error,
};
use linkerd_http_prom::{CounterFamily, StatusLabels};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};
use std::{
    fmt,
    future::Future,
    hash::Hash,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll, ready},
};
use tokio::time::Instant;

/// The metric handles one [`Instrument`] records into, resolved once when the layer is built.
pub(crate) struct Recorder<L> {
    pub(crate) labels: L,
    pub(crate) duration: Histogram,
    pub(crate) statuses: StatusCounters<L>,
    pub(crate) in_flight: Option<Gauge>,
    pub(crate) requests: Option<Counter>,
    pub(crate) retries: Option<RetryCounters>,
    /// The duration counts from the request's `RequestStart` when it has one (the route's;
    /// a backend's counts from its own call).
    pub(crate) from_request_start: bool,
    /// A response body dropped before it was read at all was discarded by the layers above
    /// (a retry layer retrying it), not cut: it counts as answered, with no `error` label (a
    /// backend's; a route's is the client's cancellation).
    pub(crate) unread_is_discarded: bool,
}

pub(crate) struct RetryCounters {
    pub(crate) requests: Counter,
    pub(crate) successes: Counter,
    pub(crate) limit_exceeded: Counter,
    pub(crate) overflow: Counter,
}

/// Records request metrics for one route (labels [`RouteLabels`](linkerd_http_prom::RouteLabels))
/// or one backend ([`BackendLabels`](linkerd_http_prom::BackendLabels)); built by
/// [`RouteFamilies::route_layer`](crate::RouteFamilies::route_layer) and
/// [`RouteFamilies::backend_layer`](crate::RouteFamilies::backend_layer).
pub struct InstrumentLayer<L, X = ReadRetrySummary> {
    recorder: Arc<Recorder<L>>,
    extract: X,
}

/// The service of [`InstrumentLayer`].
pub struct Instrument<S, L, X = ReadRetrySummary> {
    inner: S,
    recorder: Arc<Recorder<L>>,
    extract: X,
}

/// The route-metrics layer.
pub type RouteMetricsLayer<X = ReadRetrySummary> =
    InstrumentLayer<linkerd_http_prom::RouteLabels, X>;
/// The route-metrics service.
pub type RouteMetrics<S, X = ReadRetrySummary> = Instrument<S, linkerd_http_prom::RouteLabels, X>;
/// The backend-metrics layer.
pub type BackendMetricsLayer = InstrumentLayer<linkerd_http_prom::BackendLabels>;
/// The backend-metrics service.
pub type BackendMetrics<S> = Instrument<S, linkerd_http_prom::BackendLabels>;

/// What is recorded once, at the end of a request.
///
/// The classifier and the protocol stay in the response future: the body needs only the
/// classification started on the headers, and every layer above moves the response (and
/// so this body) by value.
struct Done<L, X> {
    recorder: Arc<Recorder<L>>,
    extract: X,
    start: Instant,
}

pin_project_lite::pin_project! {
    /// The response future of [`Instrument`]; records a cancellation when dropped before the
    /// response headers.
    pub struct ResponseFuture<F, L, X>
    where
        L: Clone,
        L: Hash,
        L: Eq,
    {
        // `None` once dropped early (see the drop below).
        #[pin]
        inner: Option<F>,
        done: Option<Done<L, X>>,
        protocol: Protocol,
        // The client speaks HTTP/2 (an upstream reset is a reset for it, not an answer).
        h2: bool,
        classify: PackedClassifier,
    }

    impl<F, L, X> PinnedDrop for ResponseFuture<F, L, X>
    where
        L: Clone,
        L: Hash,
        L: Eq,
    {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if let Some(d) = this.done.take() {
                // The client went away before a response: nothing was sent. The work
                // below is dropped first, so that a retry layer in it says how many
                // attempts it made (the retries are counted).
                let note = linkerd_http_classify::dropped::observe(|| this.inner.set(None));
                let retry = note.attempts.map(|attempts| RetrySummary {
                    attempts,
                    stopped: None,
                });
                // Dropped by a timeout above (a backend's attempt cut by its timer): labelled
                // with the timeout, not as a client gone.
                let kind = linkerd_http_classify::dropped::cause()
                    .unwrap_or(linkerd_http_classify::ProxyErrorKind::Cancel);
                let class = Class::failed(None, None, kind);
                d.finish(&class, retry);
            }
        }
    }
}

struct BodyDone<L, X> {
    done: Done<L, X>,
    eos: <ResponseClassifier as ClassifyResponse>::ClassifyEos,
    retry: Option<RetrySummary>,
}

pin_project_lite::pin_project! {
    /// A response body that records the request's metrics once when it ends, fails or is
    /// dropped. Forwards `is_end_stream` and `size_hint`.
    pub struct ResponseBody<B, L, X>
    where
        B: Body,
        L: Clone,
        L: Hash,
        L: Eq,
    {
        #[pin]
        inner: B,
        state: Option<BodyDone<L, X>>,
        polled: bool,
    }

    impl<B, L, X> PinnedDrop for ResponseBody<B, L, X>
    where
        B: Body,
        L: Clone,
        L: Hash,
        L: Eq,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(s) = this.state.take() {
                let class = if !*this.polled && s.done.recorder.unread_is_discarded {
                    s.eos.eos(None)
                } else if this.inner.size_hint().exact() == Some(0) {
                    // Every byte its length announced was read: hyper drops such a body
                    // without waiting for its end (an HTTP/2 upstream's END_STREAM in a frame
                    // of its own), so the response was complete.
                    s.eos.eos(None)
                } else {
                    s.eos.cancelled()
                };
                s.done.finish(&class, s.retry);
            }
        }
    }
}

// === impl InstrumentLayer ===

impl<L, X> InstrumentLayer<L, X> {
    pub(crate) fn new(recorder: Arc<Recorder<L>>, extract: X) -> Self {
        Self { recorder, extract }
    }
}

impl<L, X: Clone> Clone for InstrumentLayer<L, X> {
    fn clone(&self) -> Self {
        Self {
            recorder: self.recorder.clone(),
            extract: self.extract.clone(),
        }
    }
}

impl<L: fmt::Debug, X> fmt::Debug for InstrumentLayer<L, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstrumentLayer")
            .field("labels", &self.recorder.labels)
            .finish_non_exhaustive()
    }
}

impl<S, L, X: Clone> tower_layer::Layer<S> for InstrumentLayer<L, X> {
    type Service = Instrument<S, L, X>;

    fn layer(&self, inner: S) -> Self::Service {
        Instrument {
            inner,
            recorder: self.recorder.clone(),
            extract: self.extract.clone(),
        }
    }
}

// === impl Instrument ===

impl<S, L, X> Instrument<S, L, X> {
    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, L, X: Clone> Clone for Instrument<S, L, X> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            recorder: self.recorder.clone(),
            extract: self.extract.clone(),
        }
    }
}

impl<S: fmt::Debug, L: fmt::Debug, X> fmt::Debug for Instrument<S, L, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instrument")
            .field("inner", &self.inner)
            .field("labels", &self.recorder.labels)
            .finish_non_exhaustive()
    }
}

impl<S, L, X, ReqB, RspB> tower_service::Service<Request<ReqB>> for Instrument<S, L, X>
where
    S: tower_service::Service<Request<ReqB>, Response = Response<RspB>>,
    S::Error: Into<BoxError>,
    L: Clone + Hash + Eq,
    X: ExtractRetry,
    RspB: Body,
{
    type Response = Response<ResponseBody<RspB, L, X>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, L, X>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let protocol = req
            .extensions()
            .get::<Protocol>()
            .copied()
            .unwrap_or_else(|| Protocol::of(&req));
        let h2 = client_speaks_h2(protocol, req.version());
        let classify = req
            .extensions()
            .get::<ResponseClassifier>()
            .copied()
            .unwrap_or_else(|| DefaultClassify::default().classify(&req));
        if let Some(g) = &self.recorder.in_flight {
            g.inc();
        }
        if let Some(c) = &self.recorder.requests {
            c.inc();
        }
        let start = match self.recorder.from_request_start {
            true => req.extensions().get::<RequestStart>().map(|s| s.0),
            false => None,
        }
        .unwrap_or_else(clock::now);
        ResponseFuture {
            inner: Some(self.inner.call(req)),
            done: Some(Done {
                recorder: self.recorder.clone(),
                extract: self.extract.clone(),
                start,
            }),
            protocol,
            h2,
            classify: classify.into(),
        }
    }
}

// === impl ResponseFuture ===

impl<F, L, X, B, E> Future for ResponseFuture<F, L, X>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    L: Clone + Hash + Eq,
    X: ExtractRetry,
    B: Body,
{
    type Output = Result<Response<ResponseBody<B, L, X>>, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Err("metrics future polled after completion".into()));
        };
        let result = ready!(inner.poll(cx));
        let Some(done) = this.done.take() else {
            return Poll::Ready(Err("metrics future polled after completion".into()));
        };
        match result {
            Err(e) => {
                let e: BoxError = e.into();
                // A timer above the retry layer that cut it (stream timeouts) carries the
                // attempts it had made in the error's note.
                let retry = done.extract.retry_of_error(&*e).or_else(|| {
                    let attempts = linkerd_http_classify::dropped::CutShort::find(&*e)?.attempts?;
                    Some(RetrySummary {
                        attempts,
                        stopped: None,
                    })
                });
                let class = client_error_class(*this.protocol, *this.h2, &to_proxy_error(&*e));
                done.finish(&class, retry);
                Poll::Ready(Err(e))
            }
            Ok(rsp) => {
                let retry = done.extract.retry_of_response(rsp.extensions());
                let eos = if *this.h2 && rsp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                    // An HTTP/2 client never gets a 101: an extended CONNECT bridged to an
                    // HTTP/1.1 upgrade is answered 200 (RFC 8441 section 5) above this layer.
                    linkerd_http_classify::EosClassifier::Done(Class::http(
                        http::StatusCode::OK,
                        true,
                    ))
                } else {
                    this.classify.unpack().start(&rsp)
                };
                Poll::Ready(Ok(rsp.map(|inner| {
                    ResponseBody::new(inner, BodyDone { done, eos, retry })
                })))
            }
        }
    }
}

/// The class of a request answered with `err` instead of a response, as the client sees it
/// (DESIGN.md section 5): an upstream reset is a reset for HTTP/2 and gRPC clients (no
/// status) and a 502 for HTTP/1 clients; gRPC clients get `200` with the error's code;
/// others the error's status.
///
/// It takes gRPC clients to speak HTTP/2; [`client_error_class`] tells a gRPC client over
/// HTTP/1.1 apart.
pub fn error_class(protocol: Protocol, err: &ProxyError) -> Class {
    client_error_class(protocol, protocol != Protocol::Http1, err)
}

/// [`error_class`] for a client that speaks HTTP/2 (`h2`) or not: an upstream reset resets
/// an HTTP/2 client's stream (no status), and is answered to any other client, a gRPC client
/// over HTTP/1.1 with `200` and the error's code.
pub fn client_error_class(protocol: Protocol, h2: bool, err: &ProxyError) -> Class {
    match protocol {
        // The client went away: nothing was sent.
        _ if err.kind() == linkerd_http_classify::ProxyErrorKind::Cancel => {
            Class::failed(None, None, err.kind())
        }
        _ if h2 && err.h2_reset_reason().is_some() => Class::failed(None, None, err.kind()),
        Protocol::Grpc => Class::failed(
            Some(http::StatusCode::OK),
            Some(err.grpc_code()),
            err.kind(),
        ),
        _ => Class::failed(Some(err.http_status()), None, err.kind()),
    }
}

/// Whether the client of a request of `protocol` at `version` speaks HTTP/2. The protocol
/// is the client's (the edge works it out before any layer re-versions the request: an
/// HTTP/2 extended CONNECT goes on as an HTTP/1.1 upgrade); a gRPC request's version tells.
fn client_speaks_h2(protocol: Protocol, version: http::Version) -> bool {
    match protocol {
        Protocol::Http1 => false,
        Protocol::Http2 => true,
        Protocol::Grpc => version == http::Version::HTTP_2,
    }
}

/// The status counters of one recorder's label set: a handful of (status labels, counter)
/// slots filled on first use, so the common outcomes are counted without hashing the label
/// set or taking the family's lock; outcomes beyond the slots go through the family.
pub(crate) struct StatusCounters<L> {
    family: CounterFamily<(L, StatusLabels)>,
    slots: [OnceLock<(StatusLabels, Counter)>; STATUS_SLOTS],
}

const STATUS_SLOTS: usize = 8;

impl<L: Clone + Hash + Eq> StatusCounters<L> {
    pub(crate) fn new(family: CounterFamily<(L, StatusLabels)>) -> Self {
        Self {
            family,
            slots: Default::default(),
        }
    }

    fn inc(&self, labels: &L, status: StatusLabels) {
        for slot in &self.slots {
            // An empty slot is claimed for this outcome; a racing claim for another outcome
            // wins the slot and the scan moves on.
            let (s, counter) = slot.get_or_init(|| {
                let counter = self.family.get_or_create_owned(&(labels.clone(), status));
                (status, counter)
            });
            if same_status(s, &status) {
                counter.inc();
                return;
            }
        }
        self.family.get_or_create(&(labels.clone(), status)).inc();
    }
}

/// `a == b`, comparing the `error` labels by address first: they are `'static` strings from
/// one closed set, so equal labels are almost always the same string.
fn same_status(a: &StatusLabels, b: &StatusLabels) -> bool {
    a.http_status == b.http_status
        && a.grpc_status == b.grpc_status
        && (std::ptr::eq(a.error, b.error) || a.error == b.error)
}

// === impl Done ===

impl<L: Clone + Hash + Eq, X> Done<L, X> {
    fn finish(self, class: &Class, retry: Option<RetrySummary>) {
        let r = &*self.recorder;
        r.duration.observe(clock::since(self.start).as_secs_f64());
        r.statuses.inc(&r.labels, StatusLabels::from_class(class));
        if let Some(g) = &r.in_flight {
            g.dec();
        }
        if let (Some(c), Some(retry)) = (&r.retries, retry) {
            let retries = retry.attempts.saturating_sub(1);
            c.requests.inc_by(u64::from(retries));
            // A request whose retries ran out (or were refused) on a retryable answer is no
            // success, whatever that answer's class (a 429 in `codes` classifies as one).
            if retries > 0 && class.is_success() && retry.stopped.is_none() {
                c.successes.inc();
            }
            match retry.stopped {
                Some(RetryStopKind::LimitExceeded) => {
                    c.limit_exceeded.inc();
                }
                Some(RetryStopKind::Overflow) => {
                    c.overflow.inc();
                }
                None => {}
            }
        }
    }
}

// === impl ResponseBody ===

impl<B: Body, L: Clone + Hash + Eq, X> ResponseBody<B, L, X> {
    fn new(inner: B, state: BodyDone<L, X>) -> Self {
        if inner.is_end_stream() {
            // hyper never polls a body already at its end.
            let class = state.eos.eos(None);
            state.done.finish(&class, state.retry);
            return Self {
                inner,
                state: None,
                polled: false,
            };
        }
        Self {
            inner,
            state: Some(state),
            polled: false,
        }
    }
}

impl<B, L, X> Body for ResponseBody<B, L, X>
where
    B: Body,
    B::Error: Into<BoxError>,
    L: Clone + Hash + Eq,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let mut this = self.project();
        *this.polled = true;
        let frame = ready!(this.inner.as_mut().poll_frame(cx)).map(|r| r.map_err(Into::into));
        if this.state.is_none() {
            return Poll::Ready(frame);
        }
        let class = match &frame {
            None => Some(None),
            Some(Ok(f)) => match f.trailers_ref() {
                Some(t) => Some(Some(t)),
                None => this.inner.is_end_stream().then_some(None),
            },
            Some(Err(_)) => None,
        };
        if let Some(trailers) = class {
            if let Some(s) = this.state.take() {
                let class = s.eos.eos(trailers);
                s.done.finish(&class, s.retry);
            }
        } else if let Some(Err(e)) = &frame
            && let Some(s) = this.state.take()
        {
            let class = s.eos.error(&**e);
            s.done.finish(&class, s.retry);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body + fmt::Debug, L: Clone + Hash + Eq, X> fmt::Debug for ResponseBody<B, L, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("done", &self.state.is_none())
            .finish()
    }
}

impl<F: fmt::Debug, L: Clone + Hash + Eq, X> fmt::Debug for ResponseFuture<F, L, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkerd_http_classify::GrpcCode;
    use linkerd_http_prom::RouteLabels;

    fn status(code: u16, error: &'static str) -> StatusLabels {
        StatusLabels {
            http_status: Some(http::StatusCode::from_u16(code).expect("status")),
            grpc_status: None,
            error,
        }
    }

    /// Every layer above moves the response, and so this body, by value: it carries what
    /// the end of the request needs (the started classification, not the classifier).
    #[test]
    fn the_response_body_carries_no_classifier() {
        type Inner = http_body_util::Empty<bytes::Bytes>;
        let body = size_of::<ResponseBody<Inner, RouteLabels, ReadRetrySummary>>();
        assert!(
            body < size_of::<Inner>() + size_of::<ResponseClassifier>(),
            "{body} bytes"
        );
    }

    #[test]
    fn status_counters_count_every_outcome_past_the_slots() {
        let family = CounterFamily::<(RouteLabels, StatusLabels)>::default();
        let counters = StatusCounters::new(family.clone());
        let labels = RouteLabels::new("r");
        // More distinct outcomes than slots, each counted a different number of times, in an
        // interleaved order; an error label equal in text but not in address is the same.
        let outcomes: Vec<StatusLabels> = (0..u16::try_from(STATUS_SLOTS * 2).expect("small"))
            .map(|i| status(200 + i, ""))
            .chain([StatusLabels {
                http_status: Some(http::StatusCode::OK),
                grpc_status: Some(GrpcCode::UNAVAILABLE),
                error: "RESET",
            }])
            .collect();
        for round in 0..outcomes.len() {
            for (i, s) in outcomes.iter().enumerate() {
                if i <= round {
                    counters.inc(&labels, *s);
                }
            }
        }
        let owned = String::from("RESET");
        let leaked: &'static str = Box::leak(owned.into_boxed_str());
        counters.inc(
            &labels,
            StatusLabels {
                http_status: Some(http::StatusCode::OK),
                grpc_status: Some(GrpcCode::UNAVAILABLE),
                error: leaked,
            },
        );
        for (i, s) in outcomes.iter().enumerate() {
            let want = (outcomes.len() - i) as u64 + u64::from(i == outcomes.len() - 1);
            let got = family.get(&(labels.clone(), *s)).map(|c| c.get());
            assert_eq!(got, Some(want), "outcome {i}: {s:?}");
        }
    }
}
