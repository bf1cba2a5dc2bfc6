//! Route metrics for the answers no rule stack records: the router's own answers (no route,
//! redirect, injected failure, rule without backends) and the upgrade layer's (bad request).
//!
//! A rule's stack records every request it serves (its responses reach this layer with the
//! rule's body, not a synthetic one: [`RouteBody::is_synthetic`](linkerd_http_route::RouteBody::is_synthetic));
//! this layer, between error mapping and upgrade, records the others in
//! `outbound_{http,grpc}_route_request_statuses_total` and friends, so every row of DESIGN.md
//! section 5 shows up with its `error` label. The route is the one the router matched (its
//! `RouteMatch` response extension), or `route_name=""` when none matched (no route, bad
//! request), in the gRPC families for gRPC clients. The duration counts from the start the
//! router marks on the answers it delayed (so it includes an injected delay), else from the
//! answer (the others are immediate).

use crate::{BoxError, RouterBody, stack::box_body};
use http::{Request, Response};
use linkerd_http_access_log::{ExtractInfo, ReadRouteInfo, ResponseInfo};
use linkerd_http_classify::{
    PackedClassifier, Protocol, ProxyError, RequestStart, ResponseClassifier, clock,
    dropped::{self, CutShort},
};
use linkerd_http_metrics::Metrics;
use linkerd_http_route::RouteMatch;
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tower::{Layer, Service, ServiceExt};

/// Records the requests no rule stack recorded.
#[derive(Clone, Debug)]
pub struct EdgeMetricsLayer(Arc<Metrics>);

/// The service of [`EdgeMetricsLayer`].
#[derive(Clone, Debug)]
pub struct EdgeMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl EdgeMetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self(metrics)
    }
}

impl<S> Layer<S> for EdgeMetricsLayer {
    type Service = EdgeMetrics<S>;

    fn layer(&self, inner: S) -> EdgeMetrics<S> {
        EdgeMetrics {
            inner,
            metrics: self.0.clone(),
        }
    }
}

impl<S, B> Service<Request<B>> for EdgeMetrics<S>
where
    S: Service<Request<B>, Response = Response<RouterBody>, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<RouterBody>;
    type Error = BoxError;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    #[inline(always)]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        let protocol = req
            .extensions()
            .get::<Protocol>()
            .copied()
            .unwrap_or_else(|| Protocol::of(&req));
        let classifier = req
            .extensions()
            .get::<ResponseClassifier>()
            .map(|c| PackedClassifier::from(*c));
        EdgeFuture {
            inner: self.inner.call(req),
            protocol,
            classifier,
            metrics: Some(self.metrics.clone()),
            record: None,
        }
    }
}

/// A boxed recording future, for the rare answers no rule recorded.
type RecordFuture = Pin<Box<dyn Future<Output = Result<Response<RouterBody>, BoxError>> + Send>>;

pin_project_lite::pin_project! {
    /// The response future of [`EdgeMetrics`]: passes recorded responses through as they are;
    /// records the others.
    pub struct EdgeFuture<F> {
        #[pin]
        inner: F,
        protocol: Protocol,
        classifier: Option<PackedClassifier>,
        metrics: Option<Arc<Metrics>>,
        record: Option<RecordFuture>,
    }
}

impl<F> std::fmt::Debug for EdgeFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeFuture")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl<F> Future for EdgeFuture<F>
where
    F: Future<Output = Result<Response<RouterBody>, BoxError>>,
{
    type Output = Result<Response<RouterBody>, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some(record) = this.record.as_mut() {
                return record.as_mut().poll(cx);
            }
            let rsp = std::task::ready!(this.inner.as_mut().poll(cx))?;
            // A rule's answer: its stack recorded it.
            if !rsp.body().is_synthetic() {
                return Poll::Ready(Ok(rsp));
            }
            let metrics = this
                .metrics
                .take()
                .expect("EdgeFuture polled after completion");
            *this.record = Some(Box::pin(record(
                rsp,
                *this.protocol,
                this.classifier.as_ref().map(PackedClassifier::unpack),
                metrics,
            )));
        }
    }
}

/// Records an answer no rule recorded in the route families, and returns it.
async fn record(
    rsp: Response<RouterBody>,
    protocol: Protocol,
    classifier: Option<ResponseClassifier>,
    metrics: Arc<Metrics>,
) -> Result<Response<RouterBody>, BoxError> {
    let (route, grpc) = match rsp.extensions().get::<RouteMatch>() {
        Some(m) => (m.route_name_arc().clone(), m.is_grpc()),
        None => (Arc::<str>::from(""), protocol == Protocol::Grpc),
    };
    // The route layer reads the protocol and classifier from the request it wraps.
    let mut probe = Request::new(());
    probe.extensions_mut().insert(protocol);
    // The duration counts from the request's start when the answer carries it (the router
    // marks the answers it delayed), else from now: these answers are immediate.
    let start = rsp
        .extensions()
        .get::<RequestStart>()
        .map_or_else(clock::now, |s| s.0);
    probe.extensions_mut().insert(RequestStart(start));
    if let Some(c) = classifier {
        probe.extensions_mut().insert(c);
    }
    let mut answer = Some(rsp);
    let recorded = metrics
        .route_families(grpc)
        .route_layer(route)
        .layer(tower::service_fn(move |_: Request<()>| {
            // Called once (oneshot); a second call would be a bug: answer 500.
            let rsp = answer.take().ok_or_else(ProxyError::internal);
            std::future::ready(rsp)
        }))
        .oneshot(probe)
        .await?;
    Ok(recorded.map(|body| RouterBody::new(box_body(body))))
}

/// The error of a request a rule's stack served: the inner error (its
/// [`source`](std::error::Error::source), so `to_proxy_error` and hyper see through it) with
/// the matched route, so that the synthetic answer error mapping builds still names the
/// route (the access log's `route`).
#[derive(Debug)]
pub struct RoutedError {
    route: RouteMatch,
    source: BoxError,
}

impl std::fmt::Display for RoutedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.source, f)
    }
}

impl std::error::Error for RoutedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Copies what an error knows about its request into the extensions of the answer built for
/// it: the matched route ([`RoutedError`]), the backend that failed (the split's
/// `BackendError`) and the retry outcome, as a routed response would carry them.
pub fn annotate_answer(error: &(dyn std::error::Error + 'static), ext: &mut http::Extensions) {
    if let Some(route) = routed(error) {
        ext.insert(route.clone());
    }
    if let Some(backend) = linkerd_http_route::BackendError::find(error) {
        ext.insert(backend.clone());
    } else if let Some(backend) = CutShort::find(error).and_then(|n| n.backend.as_ref()) {
        // A timeout cut the attempt: the backend it went to.
        ext.insert(linkerd_http_route::BackendName::new(backend.clone()));
    }
    if let Some(outcome) = linkerd_http_retry::RetryOutcome::from_error(error) {
        ext.insert(outcome);
    } else if let Some(attempts) = CutShort::find(error).and_then(|n| n.attempts) {
        // A timer above the retry layer (stream timeouts) cut it: the attempts it made.
        ext.insert(linkerd_http_retry::RetryOutcome {
            attempts,
            stopped: None,
        });
    }
}

/// The route a [`RoutedError`] in `error`'s chain names.
fn routed<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a RouteMatch> {
    linkerd_http_classify::chain(error)
        .find_map(|e| e.downcast_ref::<RoutedError>())
        .map(|r| &r.route)
}

/// The access log's reader of route, backend and attempts: a response's extensions as
/// [`ReadRouteInfo`] reads them; for a request that got no response (an HTTP/2 client
/// answered by a reset) the annotations error mapping put on its
/// [`ResetStream`](crate::errors::ResetStream) (every error of the stack passes through error
/// mapping; anything else is read as [`ReadRouteInfo`] reads errors).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadAnswerInfo;

impl ExtractInfo for ReadAnswerInfo {
    fn extract(&self, extensions: &http::Extensions) -> ResponseInfo {
        ReadRouteInfo.extract(extensions)
    }

    fn extract_error(&self, error: &(dyn std::error::Error + 'static)) -> ResponseInfo {
        // Error mapping's reset for an HTTP/2 client carries the answer's annotations.
        if let Some(reset) = linkerd_http_classify::chain(error)
            .find_map(|e| e.downcast_ref::<crate::errors::ResetStream>())
        {
            return ReadRouteInfo.extract(reset.annotations());
        }
        ReadRouteInfo.extract_error(error)
    }
}

/// Wraps a rule stack's errors in [`RoutedError`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TagRouteErrorsLayer;

/// The service of [`TagRouteErrorsLayer`].
#[derive(Clone, Debug)]
pub struct TagRouteErrors<S> {
    inner: S,
}

impl<S> Layer<S> for TagRouteErrorsLayer {
    type Service = TagRouteErrors<S>;

    fn layer(&self, inner: S) -> TagRouteErrors<S> {
        TagRouteErrors { inner }
    }
}

impl<S, B> Service<Request<B>> for TagRouteErrors<S>
where
    S: Service<Request<B>, Error = BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = TagFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    #[inline(always)]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = req.extensions().get::<RouteMatch>().cloned();
        TagFuture {
            inner: self.inner.call(req),
            route,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`TagRouteErrors`].
    pub struct TagFuture<F> {
        #[pin]
        inner: F,
        route: Option<RouteMatch>,
    }

    impl<F> PinnedDrop for TagFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped unfinished (the client went away): a layer observing the drop (the
            // access log) learns the route.
            if let Some(route) = this.project().route.take() {
                dropped::note(|n| n.route_or(route.route_name_arc()));
            }
        }
    }
}

impl<F, T> Future for TagFuture<F>
where
    F: Future<Output = Result<T, BoxError>>,
{
    type Output = Result<T, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        let route = this.route.take();
        Poll::Ready(out.map_err(|source| match route {
            Some(route) => Box::new(RoutedError { route, source }) as BoxError,
            None => source,
        }))
    }
}
