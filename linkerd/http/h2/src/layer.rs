use crate::{NoopReset, OnReset, UpstreamBody, body::map_error};
use http::{Method, Request, Response, StatusCode};
use linkerd_http_classify::BoxError;
use pin_project_lite::pin_project;
use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};
use tower_layer::Layer;
use tower_service::Service;

/// Wraps upstream responses in [`UpstreamBody`] and maps upstream resets before headers to
/// [`StreamReset`](crate::StreamReset) (DESIGN.md section 5).
///
/// Place it directly around the upstream client, inside any layer that wraps errors.
#[derive(Clone, Default)]
pub struct H2ResetLayer<H = NoopReset> {
    hook: H,
}

/// The service built by [`H2ResetLayer`].
#[derive(Clone)]
pub struct H2Reset<S, H = NoopReset> {
    inner: S,
    hook: H,
}

pin_project! {
    /// The response future of [`H2Reset`].
    pub struct ResponseFuture<F, H> {
        #[pin]
        inner: F,
        hook: Option<H>,
        // HEAD and CONNECT responses carry a content-length but no body.
        bodiless: bool,
    }
}

// === impl H2ResetLayer ===

impl<H> fmt::Debug for H2ResetLayer<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hook is often a closure, which has no Debug.
        f.debug_struct("H2ResetLayer")
            .field("hook", &std::any::type_name::<H>())
            .finish()
    }
}

impl H2ResetLayer {
    /// A layer whose resets are not counted.
    pub const fn new() -> Self {
        Self { hook: NoopReset }
    }
}

impl<H> H2ResetLayer<H> {
    /// A layer reporting every reset to `hook` (for `http_stream_resets_total`).
    pub const fn with_hook(hook: H) -> Self {
        Self { hook }
    }
}

impl<S, H: Clone> Layer<S> for H2ResetLayer<H> {
    type Service = H2Reset<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        H2Reset {
            inner,
            hook: self.hook.clone(),
        }
    }
}

// === impl H2Reset ===

impl<S: fmt::Debug, H> fmt::Debug for H2Reset<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H2Reset")
            .field("inner", &self.inner)
            .field("hook", &std::any::type_name::<H>())
            .finish()
    }
}

impl<S> H2Reset<S> {
    /// A shortcut for [`H2ResetLayer::new`].
    pub const fn layer() -> H2ResetLayer {
        H2ResetLayer::new()
    }
}

impl<S, H> H2Reset<S, H> {
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

impl<S, H, ReqB, RspB> Service<Request<ReqB>> for H2Reset<S, H>
where
    S: Service<Request<ReqB>, Response = Response<RspB>>,
    S::Error: Into<BoxError>,
    H: OnReset + Clone,
{
    type Response = Response<UpstreamBody<RspB, H>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, H>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let bodiless = req.method() == Method::HEAD || req.method() == Method::CONNECT;
        ResponseFuture {
            inner: self.inner.call(req),
            hook: Some(self.hook.clone()),
            bodiless,
        }
    }
}

// === impl ResponseFuture ===

impl<F: fmt::Debug, H> fmt::Debug for ResponseFuture<F, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("inner", &self.inner)
            .field("bodiless", &self.bodiless)
            .finish_non_exhaustive()
    }
}

impl<F, H, B, E> Future for ResponseFuture<F, H>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    H: OnReset,
{
    type Output = Result<Response<UpstreamBody<B, H>>, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.inner.poll(cx));
        let Some(hook) = this.hook.take() else {
            // Polled after completion: a contract violation by the caller, reported as an
            // error rather than a panic.
            return Poll::Ready(Err("H2Reset response future polled after completion".into()));
        };
        match res {
            Ok(rsp) => {
                let expected = if *this.bodiless {
                    None
                } else {
                    expected_length(&rsp)
                };
                Poll::Ready(Ok(rsp.map(|body| UpstreamBody::new(body, expected, hook))))
            }
            Err(error) => Poll::Ready(Err(map_error(error.into(), &hook))),
        }
    }
}

/// The body length a response announces, when it has a body.
fn expected_length<B>(rsp: &Response<B>) -> Option<u64> {
    let status = rsp.status();
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return None;
    }
    rsp.headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
