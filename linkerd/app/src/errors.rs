//! Error mapping (DESIGN.md section 5): turns every error of the inner stack into the answer the
//! client receives — a synthetic response in the client's form (plain HTTP with
//! `l5d-proxy-error`, or gRPC trailers-only) — except an upstream reset, which an HTTP/2 client
//! receives as a reset with the reason table's code.

use crate::{BoxError, RouterBody};
use http::{Request, Response, Version};
use linkerd_http_classify::{Protocol, ProxyError, ProxyErrorKind, to_proxy_error};
use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};
use tower::{Layer, Service};

/// The error-mapping layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorMapLayer;

/// The error-mapping service.
#[derive(Clone, Debug)]
pub struct ErrorMap<S> {
    inner: S,
}

/// The error returned to hyper for an upstream reset on an HTTP/2 connection: its `source()`
/// chain holds the `ProxyError` (for metrics and logs) and then `h2::Error::from(reason)`, which
/// hyper uses to reset the client's stream. It also carries what a synthetic answer's
/// extensions would (the matched route, the failed backend, the retry outcome), for the
/// access log.
#[derive(Debug)]
pub struct ResetStream {
    error: ProxyError,
    annotations: http::Extensions,
}

impl ResetStream {
    /// What the request's answer would have carried in its extensions: the matched route
    /// (`RouteMatch`), the failed backend (`BackendName`) and the retry outcome, when known.
    pub fn annotations(&self) -> &http::Extensions {
        &self.annotations
    }
}

impl<S> Layer<S> for ErrorMapLayer {
    type Service = ErrorMap<S>;

    fn layer(&self, inner: S) -> ErrorMap<S> {
        ErrorMap { inner }
    }
}

impl<S, B> Service<Request<B>> for ErrorMap<S>
where
    S: Service<Request<B>, Response = Response<RouterBody>, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<RouterBody>;
    type Error = BoxError;
    type Future = ErrorMapFuture<S::Future>;

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
        let h2 = req.version() == Version::HTTP_2;
        ErrorMapFuture {
            inner: self.inner.call(req),
            protocol,
            h2,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ErrorMap`].
    #[derive(Debug)]
    pub struct ErrorMapFuture<F> {
        #[pin]
        inner: F,
        protocol: Protocol,
        h2: bool,
    }
}

impl<F> Future for ErrorMapFuture<F>
where
    F: Future<Output = Result<Response<RouterBody>, BoxError>>,
{
    type Output = Result<Response<RouterBody>, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match std::task::ready!(this.inner.poll(cx)) {
            Ok(rsp) => Poll::Ready(Ok(rsp)),
            Err(error) => {
                let mut answer = map_error(&*error, *this.protocol, *this.h2);
                let annotations = match &mut answer {
                    Ok(rsp) => Some(rsp.extensions_mut()),
                    Err(reset) => reset
                        .downcast_mut::<ResetStream>()
                        .map(|r| &mut r.annotations),
                };
                if let Some(ext) = annotations {
                    crate::edge_metrics::annotate_answer(&*error, ext);
                }
                Poll::Ready(answer)
            }
        }
    }
}

/// The answer for `error` to a client of `protocol` (`h2`: the client speaks HTTP/2).
///
/// # Errors
/// An upstream reset for an HTTP/2 client: a [`ResetStream`] error, so hyper resets the stream.
pub fn map_error(
    error: &(dyn std::error::Error + 'static),
    protocol: Protocol,
    h2: bool,
) -> Result<Response<RouterBody>, BoxError> {
    let proxy_error = to_proxy_error(error);
    if proxy_error.kind() == ProxyErrorKind::Cancel {
        // The client went away (its request body failed): no answer reaches it. The
        // stream is reset (it already is) or the HTTP/1 connection closed.
        tracing::debug!(%error, "the client went away");
        let cancel = proxy_error.with_source(h2::Error::from(h2::Reason::CANCEL));
        return Err(Box::new(ResetStream {
            error: cancel,
            annotations: http::Extensions::new(),
        }));
    }
    if h2 && let Some(reason) = proxy_error.h2_reset_reason() {
        tracing::debug!(%error, ?reason, "resetting the client's stream");
        let with_reason = proxy_error.with_source(h2::Error::from(reason));
        return Err(Box::new(ResetStream {
            error: with_reason,
            annotations: http::Extensions::new(),
        }));
    }
    tracing::debug!(%error, status = %proxy_error.http_status(), "answering with a proxy error");
    Ok(proxy_error.to_response(protocol))
}

impl fmt::Display for ResetStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream reset: {}", self.error)
    }
}

impl std::error::Error for ResetStream {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
