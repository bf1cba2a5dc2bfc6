use crate::{AccessLogWriter, ClientAddr, Record};
use bytes::Buf;
use http::{Extensions, Request, Response};
use http_body::{Body, Frame, SizeHint};
use linkerd_http_classify::{
    BoxError, FinalClass, Protocol, ProxyError, clock,
    dropped::{self, CutShort},
    grpc_status, to_proxy_error,
};
use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
};
use tokio::time::Instant;

/// What the access log reads from a response's extensions besides `linkerd-http-classify`'s
/// types: the route, the backend and the number of attempts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseInfo {
    /// The matched route's name (from `RouteMatch`).
    pub route: Option<Arc<str>>,
    /// The backend that answered (from `BackendName`).
    pub backend: Option<Arc<str>>,
    /// Attempts made, 1 + retries (from `RetryOutcome`); `None` counts as 1.
    pub attempts: Option<u32>,
}

/// Reads a [`ResponseInfo`] from response extensions.
///
/// Implemented for closures `Fn(&Extensions) -> ResponseInfo`. The default,
/// [`ReadRouteInfo`], reads `linkerd-http-route`'s `RouteMatch` and `BackendName` and
/// `linkerd-http-retry`'s `RetryOutcome`; [`NoInfo`] reads nothing.
pub trait ExtractInfo: Clone + Send + Sync + 'static {
    /// The route, backend and attempts recorded in `extensions`.
    fn extract(&self, extensions: &Extensions) -> ResponseInfo;

    /// The same, for a request that got no response (the client gets a reset or a closed
    /// connection): what `error`'s `source()` chain says. Nothing by default.
    fn extract_error(&self, error: &(dyn std::error::Error + 'static)) -> ResponseInfo {
        let _ = error;
        ResponseInfo::default()
    }
}

/// An [`ExtractInfo`] reading nothing: no route, no backend, one attempt.
#[derive(Copy, Clone, Debug, Default)]
pub struct NoInfo;

/// The default [`ExtractInfo`]: the route name from `linkerd_http_route::RouteMatch`, the
/// backend from `linkerd_http_route::BackendName`, attempts from
/// `linkerd_http_retry::RetryOutcome` (all response extensions).
///
/// Names are shared with the router (reference-count increments, no copies).
#[derive(Copy, Clone, Debug, Default)]
pub struct ReadRouteInfo;

impl ExtractInfo for ReadRouteInfo {
    fn extract(&self, ext: &Extensions) -> ResponseInfo {
        ResponseInfo {
            route: ext
                .get::<linkerd_http_route::RouteMatch>()
                .map(|m| m.route_name_arc().clone()),
            backend: ext
                .get::<linkerd_http_route::BackendName>()
                .map(|b| b.as_arc().clone()),
            attempts: ext
                .get::<linkerd_http_retry::RetryOutcome>()
                .map(|o| o.attempts),
        }
    }

    /// The backend from the `BackendError` in the chain (the weighted split's), else from a
    /// `CutShort` (the attempt a timeout cut noted where it went); attempts from the
    /// `RetryError` (the retry layer's when its last attempt failed), else from a `CutShort`
    /// (a timer above the retry layer cut it); no route.
    fn extract_error(&self, error: &(dyn std::error::Error + 'static)) -> ResponseInfo {
        let cut = CutShort::find(error);
        ResponseInfo {
            backend: linkerd_http_route::BackendError::find(error)
                .map(|b| b.as_arc().clone())
                .or_else(|| cut.and_then(|n| n.backend.clone())),
            attempts: linkerd_http_retry::RetryOutcome::from_error(error)
                .map(|o| o.attempts)
                .or_else(|| cut.and_then(|n| n.attempts)),
            ..ResponseInfo::default()
        }
    }
}

/// Writes one [`Record`] per request through an [`AccessLogWriter`], when the response body
/// ends, fails or is dropped (or when the inner service fails or the request is cancelled).
#[derive(Clone, Debug)]
pub struct AccessLogLayer<X = ReadRouteInfo> {
    writer: AccessLogWriter,
    extract: X,
}

/// The service of [`AccessLogLayer`].
#[derive(Clone, Debug)]
pub struct AccessLog<S, X = ReadRouteInfo> {
    inner: S,
    writer: AccessLogWriter,
    extract: X,
}

pin_project_lite::pin_project! {
    /// A request body that counts the bytes read from it.
    ///
    /// Forwards `is_end_stream` and `size_hint`.
    #[derive(Debug)]
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        // `None` when the body was already at its end: nothing to count, nothing allocated.
        bytes: Option<Arc<AtomicU64>>,
    }
}

struct Pending<X> {
    // Boxed: the record is most of the future's size, and the future and the body it
    // becomes move between layers; the writer's queue takes the box as it is.
    record: Box<Record>,
    start: Instant,
    request_bytes: Option<Arc<AtomicU64>>,
    writer: AccessLogWriter,
    extract: X,
    grpc: bool,
}

pin_project_lite::pin_project! {
    /// The response future of [`AccessLog`]: writes a record on failure or cancellation.
    pub struct ResponseFuture<F, X> {
        // `None` once dropped early (see the drop below).
        #[pin]
        inner: Option<F>,
        pending: Option<Pending<X>>,
    }

    impl<F, X> PinnedDrop for ResponseFuture<F, X> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if let Some(mut p) = this.pending.take() {
                // The client went away before the response: the work below is dropped
                // first, so that it says what it knew (the route, the backend, the
                // attempts made; see `linkerd_http_classify::dropped`).
                let note = dropped::observe(|| this.inner.set(None));
                p.record.route = note.route;
                p.record.backend = note.backend;
                p.record.attempts = note.attempts.unwrap_or(1).max(1);
                p.finish(0, Some(ProxyError::cancel().label()));
            }
        }
    }
}

struct BodyState {
    record: Box<Record>,
    start: Instant,
    request_bytes: Option<Arc<AtomicU64>>,
    writer: AccessLogWriter,
    class: Option<FinalClass>,
}

pin_project_lite::pin_project! {
    /// A response body that counts its bytes and writes the request's record when it ends.
    ///
    /// Forwards `is_end_stream` and `size_hint`.
    pub struct ResponseBody<B: Body> {
        #[pin]
        inner: B,
        state: Option<BodyState>,
    }

    impl<B: Body> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(s) = this.state.take() {
                if this.inner.size_hint().exact() == Some(0) {
                    // Every byte its length announced was read (hyper drops such a body
                    // without waiting for a separate end of stream): complete.
                    s.end(None);
                } else {
                    s.cancelled();
                }
            }
        }
    }
}

// === impl NoInfo ===

impl ExtractInfo for NoInfo {
    fn extract(&self, _: &Extensions) -> ResponseInfo {
        ResponseInfo::default()
    }
}

impl<F> ExtractInfo for F
where
    F: Fn(&Extensions) -> ResponseInfo + Clone + Send + Sync + 'static,
{
    fn extract(&self, extensions: &Extensions) -> ResponseInfo {
        self(extensions)
    }
}

// === impl AccessLogLayer ===

impl AccessLogLayer {
    /// A layer writing through `writer`, reading route, backend and attempts with
    /// [`ReadRouteInfo`].
    pub fn new(writer: AccessLogWriter) -> Self {
        Self {
            writer,
            extract: ReadRouteInfo,
        }
    }
}

impl<X> AccessLogLayer<X> {
    /// Reads route, backend and attempts with `extract`.
    pub fn with_extract<X2: ExtractInfo>(self, extract: X2) -> AccessLogLayer<X2> {
        AccessLogLayer {
            writer: self.writer,
            extract,
        }
    }

    /// The writer.
    pub fn writer(&self) -> &AccessLogWriter {
        &self.writer
    }
}

impl<S, X: Clone> tower_layer::Layer<S> for AccessLogLayer<X> {
    type Service = AccessLog<S, X>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLog {
            inner,
            writer: self.writer.clone(),
            extract: self.extract.clone(),
        }
    }
}

// === impl AccessLog ===

impl<S> AccessLog<S> {
    /// Shortcut for [`AccessLogLayer::new`].
    pub fn layer(writer: AccessLogWriter) -> AccessLogLayer {
        AccessLogLayer::new(writer)
    }
}

impl<S, X> AccessLog<S, X> {
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

impl<S, X, ReqB, RspB> tower_service::Service<Request<ReqB>> for AccessLog<S, X>
where
    S: tower_service::Service<Request<RequestBody<ReqB>>, Response = Response<RspB>>,
    S::Error: Into<BoxError>,
    X: ExtractInfo,
    ReqB: Body,
    RspB: Body,
    RspB::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<RspB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, X>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let start = clock::now();
        let mut record = Box::new(Record::from_request(
            clock::wall_time(start),
            req.method(),
            req.uri(),
            req.version(),
            req.headers(),
        ));
        record.client_addr = client_addr(req.extensions());
        let grpc = Protocol::of(&req).is_grpc();
        // A body already at its end (most GETs) has no bytes to count: no shared counter.
        let request_bytes = (!req.body().is_end_stream()).then(|| Arc::new(AtomicU64::new(0)));
        let req = req.map(|inner| RequestBody {
            inner,
            bytes: request_bytes.clone(),
        });
        ResponseFuture {
            inner: Some(self.inner.call(req)),
            pending: Some(Pending {
                record,
                start,
                request_bytes,
                writer: self.writer.clone(),
                extract: self.extract.clone(),
                grpc,
            }),
        }
    }
}

fn client_addr(ext: &Extensions) -> Option<SocketAddr> {
    ext.get::<ClientAddr>()
        .map(|a| a.0)
        .or_else(|| ext.get::<SocketAddr>().copied())
}

// === impl ResponseFuture ===

impl<F, X, B, E> Future for ResponseFuture<F, X>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    X: ExtractInfo,
    B: Body,
{
    type Output = Result<Response<ResponseBody<B>>, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Err("access-log future polled after completion".into()));
        };
        let result = ready!(inner.poll(cx));
        let Some(p) = this.pending.take() else {
            // Polled after completion: a contract violation by the caller, answered with an
            // error rather than a panic.
            return Poll::Ready(Err("access-log future polled after completion".into()));
        };
        match result {
            Err(e) => {
                let e: BoxError = e.into();
                let mut p = p;
                let info = p.extract.extract_error(&*e);
                p.record.route = info.route;
                p.record.backend = info.backend;
                p.record.attempts = info.attempts.unwrap_or(1).max(1);
                // The client gets a reset or a closed connection: no status.
                p.finish(0, Some(to_proxy_error(&*e).label()));
                Poll::Ready(Err(e))
            }
            Ok(rsp) => {
                let Pending {
                    mut record,
                    start,
                    request_bytes,
                    writer,
                    extract,
                    grpc,
                } = p;
                record.headers_ms = ms_since(start);
                record.status = rsp.status().as_u16();
                if grpc {
                    record.grpc_status = grpc_status(rsp.headers()).map(|c| c.as_u32());
                }
                let info = extract.extract(rsp.extensions());
                record.route = info.route;
                record.backend = info.backend;
                record.attempts = info.attempts.unwrap_or(1).max(1);
                record.error = rsp.extensions().get::<ProxyError>().map(ProxyError::label);
                let class = rsp.extensions().get::<FinalClass>().cloned();
                let (parts, inner) = rsp.into_parts();
                let body = ResponseBody::new(
                    inner,
                    BodyState {
                        record,
                        start,
                        request_bytes,
                        writer,
                        class,
                    },
                );
                Poll::Ready(Ok(Response::from_parts(parts, body)))
            }
        }
    }
}

impl<X> Pending<X> {
    fn finish(mut self, status: u16, error: Option<&'static str>) {
        let ms = ms_since(self.start);
        self.record.status = status;
        self.record.error = error;
        self.record.headers_ms = ms;
        self.record.duration_ms = ms;
        self.record.request_bytes = read_bytes(self.request_bytes.as_deref());
        self.writer.send(self.record);
    }
}

fn read_bytes(counter: Option<&AtomicU64>) -> u64 {
    counter.map_or(0, |c| c.load(Ordering::Relaxed))
}

fn ms_since(start: Instant) -> f64 {
    clock::since(start).as_secs_f64() * 1000.0
}

// === impl RequestBody ===

impl<B: Body> Body for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(f)) = &frame
            && let Some(d) = f.data_ref()
            && let Some(bytes) = this.bytes
        {
            bytes.fetch_add(d.remaining() as u64, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        // No counter: the body was at its end when the request arrived, and stays there.
        // Answered here, as the layers below ask again and again: an HTTP/2 body asks its
        // connection, under the connection's lock.
        self.bytes.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> RequestBody<B> {
    /// The wrapped body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

// === impl ResponseBody ===

impl<B: Body> ResponseBody<B> {
    fn new(inner: B, state: BodyState) -> Self {
        if inner.is_end_stream() {
            // hyper never polls a body that is already at its end.
            state.end(None);
            return Self { inner, state: None };
        }
        Self {
            inner,
            state: Some(state),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let Some(state) = this.state.as_mut() else {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        };
        match frame {
            None => {
                if let Some(s) = this.state.take() {
                    s.end(None);
                }
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                let e: BoxError = e.into();
                if let Some(s) = this.state.take() {
                    s.failed(&*e);
                }
                Poll::Ready(Some(Err(e)))
            }
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    state.record.response_bytes += d.remaining() as u64;
                    if this.inner.is_end_stream()
                        && let Some(s) = this.state.take()
                    {
                        s.end(None);
                    }
                } else if let Some(t) = frame.trailers_ref()
                    && let Some(s) = this.state.take()
                {
                    s.end(Some(t));
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body + std::fmt::Debug> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("done", &self.state.is_none())
            .finish()
    }
}

impl<F: std::fmt::Debug, X> std::fmt::Debug for ResponseFuture<F, X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

// === impl BodyState ===

impl BodyState {
    fn end(mut self, trailers: Option<&http::HeaderMap>) {
        if let Some(code) = trailers.and_then(grpc_status) {
            self.record.grpc_status = Some(code.as_u32());
        }
        if let Some(class) = self.class.as_ref().and_then(FinalClass::get) {
            if let Some(code) = class.grpc_status() {
                self.record.grpc_status = Some(code.as_u32());
            }
            if class.error().is_some() {
                self.record.error = Some(class.error_label());
            }
        }
        self.write();
    }

    fn failed(mut self, e: &(dyn std::error::Error + 'static)) {
        let class_error = self
            .class
            .as_ref()
            .and_then(FinalClass::get)
            .and_then(|c| c.error().map(|_| c.error_label()));
        self.record.error = Some(class_error.unwrap_or_else(|| to_proxy_error(e).label()));
        self.write();
    }

    fn cancelled(mut self) {
        self.record.error = Some(ProxyError::cancel().label());
        self.write();
    }

    fn write(mut self) {
        self.record.duration_ms = ms_since(self.start);
        self.record.request_bytes = read_bytes(self.request_bytes.as_deref());
        self.writer.send(self.record);
    }
}

#[cfg(test)]
mod tests {
    use super::{CutShort, ExtractInfo, ReadRouteInfo};
    use linkerd_http_classify::dropped::DropNote;
    use std::sync::Arc;

    /// A timer above the retry layer that cut a request leaves the attempts and the backend
    /// in its error's note: the record takes both from it.
    #[test]
    fn a_cut_request_logs_the_noted_attempts_and_backend() {
        let mut note = DropNote::default();
        note.backend_or(&Arc::from("b"));
        note.attempts_or(2);
        let error = CutShort::wrap(note, "response headers timeout".into());
        let info = ReadRouteInfo.extract_error(&*error);
        assert_eq!(info.attempts, Some(2));
        assert_eq!(info.backend.as_deref(), Some("b"));
    }
}
