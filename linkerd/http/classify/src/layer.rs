use crate::{Classify, ClassifyBody, ClassifyResponse, DefaultClassify, FinalClass, Protocol};
use http::{Request, Response};
use http_body::Body;
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

/// Inserts [`Protocol`] and a per-request classifier into each request's extensions, and
/// records each response's final [`Class`](crate::Class) in a [`FinalClass`] response
/// extension.
#[derive(Clone, Debug)]
pub struct ClassifyLayer<C = DefaultClassify> {
    classify: C,
}

/// The service of [`ClassifyLayer`].
#[derive(Clone, Debug)]
pub struct ClassifyService<S, C = DefaultClassify> {
    inner: S,
    classify: C,
}

pin_project_lite::pin_project! {
    /// The response future of [`ClassifyService`].
    #[derive(Debug)]
    pub struct ResponseFuture<F, R> {
        #[pin]
        inner: F,
        classify: Option<R>,
    }
}

// === impl ClassifyLayer ===

impl<C> ClassifyLayer<C> {
    /// A layer using `classify`.
    pub const fn new(classify: C) -> Self {
        Self { classify }
    }
}

impl Default for ClassifyLayer {
    fn default() -> Self {
        Self::new(DefaultClassify::default())
    }
}

impl<S, C: Clone> tower_layer::Layer<S> for ClassifyLayer<C> {
    type Service = ClassifyService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        ClassifyService {
            inner,
            classify: self.classify.clone(),
        }
    }
}

// === impl ClassifyService ===

impl<S> ClassifyService<S> {
    /// Shortcut for [`ClassifyLayer::new`] with the default classifier.
    pub fn layer() -> ClassifyLayer {
        ClassifyLayer::default()
    }
}

impl<S, C> ClassifyService<S, C> {
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

impl<S, C, ReqB, RspB> tower_service::Service<Request<ReqB>> for ClassifyService<S, C>
where
    S: tower_service::Service<Request<ReqB>, Response = Response<RspB>>,
    C: Classify,
    RspB: Body,
    RspB::Error: Into<crate::BoxError>,
{
    type Response =
        Response<ClassifyBody<RspB, <C::ClassifyResponse as ClassifyResponse>::ClassifyEos>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C::ClassifyResponse>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline(always)]
    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let protocol = Protocol::of(&req);
        let classify = self.classify.classify_with_protocol(&req, protocol);
        req.extensions_mut().insert(protocol);
        req.extensions_mut().insert(classify.clone());
        ResponseFuture {
            inner: self.inner.call(req),
            classify: Some(classify),
        }
    }
}

// === impl ResponseFuture ===

impl<F, R, B, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<Response<B>, E>>,
    R: ClassifyResponse,
    B: Body,
    B::Error: Into<crate::BoxError>,
{
    type Output = Result<Response<ClassifyBody<B, R::ClassifyEos>>, E>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let rsp = std::task::ready!(this.inner.poll(cx))?;
        let classify = this
            .classify
            .take()
            .expect("ResponseFuture polled after completion");
        let eos = classify.start(&rsp);
        let slot = FinalClass::default();
        let (mut parts, body) = rsp.into_parts();
        parts.extensions.insert(slot.clone());
        Poll::Ready(Ok(Response::from_parts(
            parts,
            ClassifyBody::new(body, eos, slot),
        )))
    }
}
