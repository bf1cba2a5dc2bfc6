use crate::{RequestBody, ResponseBody, StreamTimeouts, timer::Deadlines};
use http::{HeaderMap, HeaderValue, Request, Response};
use linkerd_http_classify::{
    BoxError, Deadline, ProxyErrorKind, clock,
    dropped::{self, CutShort},
    encode_grpc_timeout, find_proxy_error, is_grpc, parse_grpc_timeout, to_proxy_error,
};
use pin_project_lite::pin_project;
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

// A name, not a `&str`: a lookup by `&str` parses and validates the name on every call.
const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// Applies [`StreamTimeouts`] to every request of the wrapped service.
///
/// Build it with [`StreamTimeoutsLayer::new`] or [`StreamTimeoutsService::layer`].
#[derive(Clone, Debug, Default)]
pub struct StreamTimeoutsLayer {
    timeouts: StreamTimeouts,
    inner_enforces_deadline: bool,
}

/// The service built by [`StreamTimeoutsLayer`].
///
/// Named `StreamTimeoutsService` rather than `StreamTimeouts<S>` because [`StreamTimeouts`] is
/// the configuration (and request extension) type that DESIGN.md section 2 names.
#[derive(Clone, Debug)]
pub struct StreamTimeoutsService<S> {
    inner: S,
    timeouts: StreamTimeouts,
    inner_enforces_deadline: bool,
}

pin_project! {
    /// The response future of [`StreamTimeoutsService`]: enforces `lifetime`,
    /// `response_headers`, `response_end` and `idle` until the response headers arrive.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        // `None` once a timer here cut the request (the inner future is dropped then).
        #[pin]
        inner: Option<F>,
        sleep: Option<Pin<Box<Sleep>>>,
        deadlines: Option<Deadlines>,
        // Until the headers, the inner service fails the request at its deadline: no timer
        // here, and an inner error at or after the deadline is the lifetime's.
        inner_deadline: bool,
    }
}

// === impl StreamTimeoutsLayer ===

impl StreamTimeoutsLayer {
    /// A layer applying `timeouts` to requests that carry no [`StreamTimeouts`] extension.
    pub const fn new(timeouts: StreamTimeouts) -> Self {
        Self {
            timeouts,
            inner_enforces_deadline: false,
        }
    }

    /// Declares that the wrapped service fails a request at its
    /// [`Deadline`](linkerd_http_classify::Deadline) while it waits for the response headers,
    /// as `linkerd-http-retry`'s layer does (its `DeadlineExceeded`): the response future of
    /// a request whose only timeout is the [`lifetime`](StreamTimeouts::lifetime) then arms
    /// no timer, so one timer per request serves both layers. An error of the inner service
    /// at or after the deadline is reported as [`LifetimeTimeout`](crate::LifetimeTimeout),
    /// and the response body still enforces the lifetime after the headers.
    ///
    /// Only for an inner service that keeps that promise: otherwise a request whose
    /// response never comes is never timed out until the headers.
    #[must_use]
    pub const fn inner_enforces_deadline(mut self) -> Self {
        self.inner_enforces_deadline = true;
        self
    }

    /// The default timeouts of this layer.
    pub const fn timeouts(&self) -> &StreamTimeouts {
        &self.timeouts
    }
}

impl<S> Layer<S> for StreamTimeoutsLayer {
    type Service = StreamTimeoutsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StreamTimeoutsService {
            inner,
            timeouts: self.timeouts,
            inner_enforces_deadline: self.inner_enforces_deadline,
        }
    }
}

// === impl StreamTimeoutsService ===

impl<S> StreamTimeoutsService<S> {
    /// Wraps `inner`, applying `timeouts` to requests without a [`StreamTimeouts`] extension.
    pub const fn new(inner: S, timeouts: StreamTimeouts) -> Self {
        Self {
            inner,
            timeouts,
            inner_enforces_deadline: false,
        }
    }

    /// A shortcut for [`StreamTimeoutsLayer::new`].
    pub const fn layer(timeouts: StreamTimeouts) -> StreamTimeoutsLayer {
        StreamTimeoutsLayer::new(timeouts)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqB, RspB> Service<Request<ReqB>> for StreamTimeoutsService<S>
where
    S: Service<Request<RequestBody<ReqB>>, Response = Response<RspB>>,
    S::Error: Into<BoxError>,
    ReqB: http_body::Body,
    RspB: http_body::Body,
{
    type Response = Response<ResponseBody<RspB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let timeouts = req
            .extensions_mut()
            .remove::<StreamTimeouts>()
            .unwrap_or(self.timeouts);
        let (lifetime, grpc_timeout) = match effective_lifetime(timeouts.lifetime, req.headers()) {
            Ok(found) => found,
            Err(lifetime) => {
                // A malformed `grpc-timeout` goes no further: on the upstream connection
                // every client's requests share, a gRPC server's header decoder can take it
                // badly for the requests after it.
                req.headers_mut().remove(&GRPC_TIMEOUT);
                (lifetime, false)
            }
        };
        let deadlines = if lifetime.is_none() && timeouts.is_empty() {
            None
        } else {
            let now = clock::now();
            if let Some(at) = lifetime.and_then(|d| now.checked_add(d)) {
                // An earlier deadline set further out (another layer, the application) stays.
                let at = match req.extensions().get::<Deadline>() {
                    Some(Deadline(earlier)) => at.min(*earlier),
                    None => at,
                };
                req.extensions_mut().insert(Deadline(at));
                if grpc_timeout {
                    let remaining = at.saturating_duration_since(now);
                    req.headers_mut()
                        .insert(GRPC_TIMEOUT, encode_grpc_timeout(remaining));
                }
            }
            Deadlines::new(&timeouts, lifetime, now, req.body().is_end_stream())
        };
        let shared = deadlines.as_ref().and_then(|d| d.shared().cloned());
        // Other timeouts than the lifetime need this layer's timer before the headers.
        let inner_deadline = self.inner_enforces_deadline && shared.is_none();
        let req = req.map(|body| RequestBody::new(body, shared));
        ResponseFuture {
            inner: Some(self.inner.call(req)),
            sleep: None,
            deadlines,
            inner_deadline,
        }
    }
}

// === impl ResponseFuture ===

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: http_body::Body,
{
    type Output = Result<Response<ResponseBody<B>>, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Err("stream-timeouts future polled after completion".into()));
        };
        // A response that is ready wins over a timer that fires in the same turn.
        if let Poll::Ready(res) = inner.poll(cx) {
            let rsp = match res {
                Ok(rsp) => rsp,
                Err(error) if *this.inner_deadline => {
                    let error: BoxError = error.into();
                    // The inner layer's own deadline error (a retry layer's) already says
                    // `request timeout`, and its chain says more (the attempts made): kept.
                    let says_so = find_proxy_error(&*error)
                        .is_some_and(|p| p.kind() == ProxyErrorKind::RequestTimeout);
                    let expired = this.deadlines.as_ref().and_then(Deadlines::lifetime_passed);
                    return Poll::Ready(Err(match expired {
                        Some(expired) if !says_so => expired.into_error(),
                        _ => error,
                    }));
                }
                Err(error) => return Poll::Ready(Err(error.into())),
            };
            let deadlines = this.deadlines.take();
            if let Some(deadlines) = &deadlines {
                deadlines.response_frame();
            }
            // The body takes the timer over (it re-arms it for its own next deadline).
            let sleep = this.sleep.take();
            return Poll::Ready(Ok(rsp.map(|body| ResponseBody::new(body, deadlines, sleep))));
        }
        if let Some(deadlines) = this.deadlines.as_ref().filter(|_| !*this.inner_deadline)
            && let Poll::Ready(expired) = deadlines.poll_expired(this.sleep, cx, false)
        {
            // The request is over: the work below is dropped now, noting what it knew
            // (the backend it went to) for the answer's error.
            let error = expired.into_error();
            let kind = to_proxy_error(&*error).kind();
            let note = dropped::observe_cut(kind, || this.inner.set(None));
            return Poll::Ready(Err(CutShort::wrap(note, error)));
        }
        Poll::Pending
    }
}

// === grpc-timeout ===

/// The lifetime after a gRPC request's `grpc-timeout` (which may shorten it, never lengthen
/// it), and whether the request carried a valid `grpc-timeout` to re-write upstream.
///
/// A malformed value is ignored (logged at debug level); the caller removes it.
///
/// # Errors
/// The lifetime alone when the request carries a malformed `grpc-timeout`.
fn effective_lifetime(
    lifetime: Option<Duration>,
    headers: &HeaderMap,
) -> Result<(Option<Duration>, bool), Option<Duration>> {
    // `content-type` first: most requests are not gRPC, and it is the cheaper lookup.
    let value = if is_grpc(headers) {
        headers.get(&GRPC_TIMEOUT)
    } else {
        None
    };
    let Some(value) = value else {
        return Ok((lifetime, false));
    };
    match grpc_timeout(value) {
        Some(d) => Ok((Some(lifetime.map_or(d, |l| l.min(d))), true)),
        None => Err(lifetime),
    }
}

fn grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    match parse_grpc_timeout(value.as_bytes()) {
        Ok(d) => Some(d),
        Err(error) => {
            tracing::debug!(%error, "ignoring a malformed grpc-timeout");
            None
        }
    }
}
