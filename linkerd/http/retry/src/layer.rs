use crate::{PeekTrailersBody, Policy, ReplayBody, ResponseFuture, RetryPolicy};
use http::{Request, Response};
use http_body::Body;
use linkerd_http_classify::{BoxError, Deadline};
use std::{
    fmt,
    marker::PhantomData,
    task::{Context, Poll},
};
use tower_service::Service;

/// Applies [`Retry`] to a service; `P` is the policy type read from request extensions.
pub struct RetryLayer<P = RetryPolicy> {
    default: Option<P>,
    _policy: PhantomData<fn() -> P>,
}

/// Retries requests that carry a policy `P` in their extensions (see the [crate docs](crate)),
/// or every request with the layer's default policy, if it has one.
pub struct Retry<S, P = RetryPolicy> {
    inner: S,
    default: Option<P>,
    _policy: PhantomData<fn() -> P>,
}

// === impl RetryLayer ===

impl RetryLayer {
    /// A layer reading [`RetryPolicy`] from request extensions.
    pub const fn new() -> Self {
        Self {
            default: None,
            _policy: PhantomData,
        }
    }
}

impl<P: Policy> RetryLayer<P> {
    /// A layer reading a custom policy type `P` from request extensions.
    pub const fn with_policy() -> Self {
        Self {
            default: None,
            _policy: PhantomData,
        }
    }

    /// A layer retrying every request with `policy`, unless the request carries its own `P`
    /// in its extensions (which wins). Cheaper than inserting the same policy into every
    /// request: no extension is allocated per request.
    pub fn with_default(policy: P) -> Self {
        Self {
            default: Some(policy),
            _policy: PhantomData,
        }
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Clone> Clone for RetryLayer<P> {
    fn clone(&self) -> Self {
        Self {
            default: self.default.clone(),
            _policy: PhantomData,
        }
    }
}

impl<P> fmt::Debug for RetryLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("policy", &std::any::type_name::<P>())
            .finish()
    }
}

impl<S, P: Clone> tower_layer::Layer<S> for RetryLayer<P> {
    type Service = Retry<S, P>;

    fn layer(&self, inner: S) -> Retry<S, P> {
        Retry {
            inner,
            default: self.default.clone(),
            _policy: PhantomData,
        }
    }
}

// === impl Retry ===

impl<S> Retry<S> {
    /// Wraps `inner`, reading [`RetryPolicy`] from request extensions.
    pub const fn new(inner: S) -> Self {
        Self {
            inner,
            default: None,
            _policy: PhantomData,
        }
    }

    /// A [`RetryLayer`] reading [`RetryPolicy`]: `RetryLayer::new()`.
    pub const fn layer() -> RetryLayer {
        RetryLayer::new()
    }
}

impl<S, P> Retry<S, P> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, P: Clone> Clone for Retry<S, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            default: self.default.clone(),
            _policy: PhantomData,
        }
    }
}

impl<S: fmt::Debug, P> fmt::Debug for Retry<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &std::any::type_name::<P>())
            .finish()
    }
}

impl<S, P, B, RspB> Service<Request<B>> for Retry<S, P>
where
    P: Policy,
    S: Service<Request<ReplayBody<B>>, Response = Response<RspB>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    RspB: Body + Unpin,
{
    type Response = Response<PeekTrailersBody<RspB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S, P, B, RspB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let policy = match req.extensions_mut().remove::<P>() {
            Some(p) => Some(p),
            None => self.default.clone(),
        };
        let Some(policy) = policy else {
            let deadline = req.extensions().get::<Deadline>().map(|d| d.0);
            let future = self.inner.call(req.map(ReplayBody::passthrough));
            return ResponseFuture::passthrough(future, deadline);
        };
        // The ready service serves the first attempt and stays with the future for retries.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::start(service, policy, req)
    }
}
