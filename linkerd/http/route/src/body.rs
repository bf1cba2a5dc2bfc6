use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::{
    pin::Pin,
    task::{Context, Poll},
};

pin_project! {
    /// The router's response body: the inner service's body, or the empty body of a response
    /// the router answered itself (no route, no backends, injected failure, redirect).
    ///
    /// One nameable type for both, rather than a boxed body, keeps the inner body's type and
    /// costs no allocation per response.
    #[derive(Debug)]
    pub struct RouteBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    #[derive(Debug)]
    enum Inner<B> {
        Body { #[pin] body: B },
        Empty,
    }
}

impl<B> RouteBody<B> {
    /// Wraps the inner service's body.
    pub const fn new(body: B) -> Self {
        Self {
            inner: Inner::Body { body },
        }
    }

    /// The empty body of a synthetic response.
    pub const fn empty() -> Self {
        Self {
            inner: Inner::Empty,
        }
    }

    /// Whether this is the empty body of a response the router answered itself (not its
    /// rule's service).
    pub const fn is_synthetic(&self) -> bool {
        matches!(self.inner, Inner::Empty)
    }

    /// The inner body, unless this is a synthetic response's empty body.
    pub fn into_inner(self) -> Option<B> {
        match self.inner {
            Inner::Body { body } => Some(body),
            Inner::Empty => None,
        }
    }
}

impl<B> Default for RouteBody<B> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<B: Body> Body for RouteBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().inner.project() {
            InnerProj::Body { body } => body.poll_frame(cx),
            InnerProj::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Body { body } => body.is_end_stream(),
            Inner::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Body { body } => body.size_hint(),
            Inner::Empty => SizeHint::with_exact(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RouteBody;
    use http_body::Body;

    #[test]
    fn a_synthetic_body_is_told_apart_from_a_services() {
        let synthetic = RouteBody::<String>::empty();
        assert!(synthetic.is_synthetic());
        assert!(synthetic.is_end_stream());
        assert!(RouteBody::<String>::default().is_synthetic());
        let routed = RouteBody::new(String::new());
        assert!(
            !routed.is_synthetic(),
            "even when the service's body is empty"
        );
        assert_eq!(routed.into_inner().as_deref(), Some(""));
    }
}
