use crate::timer::{Deadlines, Shared};
use http_body::{Body, Frame, SizeHint};
use linkerd_http_classify::BoxError;
use linkerd_http_classify::clock;
use pin_project_lite::pin_project;
use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tokio::time::Sleep;

pin_project! {
    /// The request body as the inner service sees it.
    ///
    /// Records each frame as activity (for `idle`) and the end of the body (which starts
    /// `response_headers` and `response_end`). Once a timeout expired on the response side,
    /// the next poll fails with that timeout's error, so a proxy stops sending the request
    /// upstream (and an HTTP/2 upstream sees `CANCEL`). Without timeouts it forwards every
    /// call unchanged.
    #[derive(Debug)]
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        shared: Option<Arc<Shared>>,
    }
}

pin_project! {
    /// The response body: enforces `lifetime`, `response_end` and `idle` after the response
    /// headers, failing with the timeout's error (a [`BoxError`]).
    ///
    /// Each frame counts as activity for `idle`. Timers stop at the end of the body. Without
    /// timeouts it forwards every call unchanged.
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        sleep: Option<Pin<Box<Sleep>>>,
        deadlines: Option<Deadlines>,
        // Set once a timeout failed the body: it yields nothing more.
        expired: bool,
    }
}

// === impl RequestBody ===

impl<B: Body> RequestBody<B> {
    pub(crate) fn new(inner: B, shared: Option<Arc<Shared>>) -> Self {
        Self { inner, shared }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The wrapped body, mutably.
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// Unwraps the body (the timeouts no longer see its frames).
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let Some(shared) = this.shared else {
            return this.inner.poll_frame(cx).map_err(Into::into);
        };
        if let Some(expired) = shared.expired() {
            return Poll::Ready(Some(Err(expired.into_error())));
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let end = frame.is_trailers() || this.inner.is_end_stream();
                shared.request_frame(clock::now(), end);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                shared.request_frame(clock::now(), true);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Pending => match shared.poll_expired(cx) {
                Some(expired) => Poll::Ready(Some(Err(expired.into_error()))),
                None => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === impl ResponseBody ===

impl<B: Body> ResponseBody<B> {
    pub(crate) fn new(
        inner: B,
        deadlines: Option<Deadlines>,
        sleep: Option<Pin<Box<Sleep>>>,
    ) -> Self {
        // A body that is over before it starts has nothing left to time.
        let deadlines = deadlines.filter(|_| !inner.is_end_stream());
        let sleep = sleep.filter(|_| deadlines.is_some());
        Self {
            inner,
            sleep,
            deadlines,
            expired: false,
        }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The wrapped body, mutably.
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// Unwraps the body, dropping its timeouts.
    pub fn into_inner(self) -> B {
        self.inner
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
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        if *this.expired {
            return Poll::Ready(None);
        }
        let Some(deadlines) = this.deadlines.as_ref() else {
            return this.inner.poll_frame(cx).map_err(Into::into);
        };
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if frame.is_trailers() || this.inner.is_end_stream() {
                    *this.deadlines = None;
                    *this.sleep = None;
                } else {
                    deadlines.response_frame();
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(other) => {
                *this.deadlines = None;
                *this.sleep = None;
                return Poll::Ready(other.map(|res| res.map_err(Into::into)));
            }
            Poll::Pending => {}
        }
        match deadlines.poll_expired(this.sleep, cx, true) {
            Poll::Ready(expired) => {
                *this.deadlines = None;
                *this.expired = true;
                Poll::Ready(Some(Err(expired.into_error())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.expired {
            return SizeHint::with_exact(0);
        }
        self.inner.size_hint()
    }
}
