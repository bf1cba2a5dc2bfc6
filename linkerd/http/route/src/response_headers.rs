use crate::{Filter, HeaderModifier, Rule};
use http::Response;
use pin_project_lite::pin_project;
use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tower_service::Service;

/// Applies a rule's `ResponseHeaderModifier` filters to every response of the wrapped service:
/// placed inside a retry layer, to each attempt's response.
///
/// When the application uses it, it builds its [`RouteLayer`](crate::RouteLayer) with
/// [`without_response_headers`](crate::RouteLayer::without_response_headers) so that the
/// edits are not applied twice.
#[derive(Clone)]
pub struct ResponseHeaderModifierLayer {
    modifiers: Arc<[HeaderModifier]>,
}

/// The service of [`ResponseHeaderModifierLayer`].
#[derive(Clone)]
pub struct ResponseHeaderModifier<S> {
    inner: S,
    modifiers: Arc<[HeaderModifier]>,
}

pin_project! {
    /// The [`ResponseHeaderModifier`]'s response future.
    pub struct ModifyFuture<F> {
        #[pin]
        inner: F,
        modifiers: Arc<[HeaderModifier]>,
    }
}

impl ResponseHeaderModifierLayer {
    /// A layer applying `modifiers`, in order.
    pub fn new(modifiers: impl Into<Arc<[HeaderModifier]>>) -> Self {
        Self {
            modifiers: modifiers.into(),
        }
    }

    /// A layer applying `rule`'s `ResponseHeaderModifier` filters.
    pub fn for_rule<P>(rule: &Rule<P>) -> Self {
        let mods: Vec<HeaderModifier> = rule
            .filters()
            .iter()
            .filter_map(|f| match f {
                Filter::ResponseHeaderModifier(m) => Some(m.clone()),
                _ => None,
            })
            .collect();
        Self::new(mods)
    }
}

impl fmt::Debug for ResponseHeaderModifierLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseHeaderModifierLayer")
            .field("modifiers", &self.modifiers)
            .finish()
    }
}

impl<S> tower_layer::Layer<S> for ResponseHeaderModifierLayer {
    type Service = ResponseHeaderModifier<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseHeaderModifier {
            inner,
            modifiers: self.modifiers.clone(),
        }
    }
}

impl<S> ResponseHeaderModifier<S> {
    /// A shortcut for [`ResponseHeaderModifierLayer::new`].
    pub fn layer(modifiers: impl Into<Arc<[HeaderModifier]>>) -> ResponseHeaderModifierLayer {
        ResponseHeaderModifierLayer::new(modifiers)
    }
}

impl<S: fmt::Debug> fmt::Debug for ResponseHeaderModifier<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseHeaderModifier")
            .field("inner", &self.inner)
            .field("modifiers", &self.modifiers)
            .finish()
    }
}

impl<S, R, B> Service<R> for ResponseHeaderModifier<S>
where
    S: Service<R, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = ModifyFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        ModifyFuture {
            inner: self.inner.call(req),
            modifiers: self.modifiers.clone(),
        }
    }
}

impl<F, B, E> Future for ModifyFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut rsp = std::task::ready!(this.inner.poll(cx))?;
        for m in this.modifiers.iter() {
            m.apply(rsp.headers_mut());
        }
        Poll::Ready(Ok(rsp))
    }
}

impl<F> fmt::Debug for ModifyFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModifyFuture").finish_non_exhaustive()
    }
}
