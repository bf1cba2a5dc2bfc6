//! `timeouts.backendRequest`: each attempt, from when it is sent to the end of its response
//! body (the Gateway API: "to when the full response has been received from the backend").
//!
//! Before the response headers the retry layer's per-try timer enforces it when the rule
//! has a `retry` block (a cut attempt can be retried); without one, [`AttemptTimeout`] does,
//! answering 504 `backend request timeout`. After the headers the response body carries the
//! attempt's deadline ([`AttemptBody`]): past it, the body fails with the same error (the
//! client's stream is reset with `CANCEL`, or its HTTP/1 connection closed before the body
//! completes), labelled `BACKEND_REQUEST_TIMEOUT`. The body arms a timer only when it has to
//! wait for the backend: a body that arrives with its headers costs a clock read.

use crate::BoxError;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use linkerd_http_classify::{
    ProxyError, ProxyErrorKind, clock,
    dropped::{self, CutShort},
};
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::time::{Instant, Sleep};
use tower::Service;

/// The error of an attempt past its `backendRequest` timeout; HTTP/2 clients get `CANCEL`.
fn timed_out() -> BoxError {
    ProxyError::backend_request_timeout()
        .with_source(h2::Error::from(h2::Reason::CANCEL))
        .into()
}

/// Bounds each attempt by `timeout`: until the headers when `headers` is set (no retry
/// layer above does it), and the response body always.
#[derive(Clone, Debug)]
pub(crate) struct AttemptTimeout<S> {
    inner: S,
    timeout: Duration,
    headers: bool,
}

impl<S> AttemptTimeout<S> {
    /// `inner`'s attempts bounded by `timeout`; `headers`: also the wait for the headers.
    pub(crate) fn new(inner: S, timeout: Duration, headers: bool) -> Self {
        Self {
            inner,
            timeout,
            headers,
        }
    }
}

impl<S, Req, B> Service<Req> for AttemptTimeout<S>
where
    S: Service<Req, Response = Response<B>, Error = BoxError>,
{
    type Response = Response<AttemptBody<B>>;
    type Error = BoxError;
    type Future = AttemptFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    #[inline(always)]
    fn call(&mut self, req: Req) -> Self::Future {
        // A timeout too long to represent never fires.
        let deadline = clock::now().checked_add(self.timeout);
        AttemptFuture {
            inner: Some(self.inner.call(req)),
            sleep: deadline
                .filter(|_| self.headers)
                .map(|at| Box::pin(tokio::time::sleep_until(at))),
            deadline,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`AttemptTimeout`].
    pub(crate) struct AttemptFuture<F> {
        // `None` once the timeout cut the attempt (dropped then).
        #[pin]
        inner: Option<F>,
        // The bound on the wait for the headers, when this layer enforces it (boxed: a
        // timer is over 100 bytes, and with a retry layer above, which bounds the wait
        // itself, it would be empty space moved with every attempt's future).
        sleep: Option<Pin<Box<Sleep>>>,
        deadline: Option<Instant>,
    }
}

impl<F, B> Future for AttemptFuture<F>
where
    F: Future<Output = Result<Response<B>, BoxError>>,
{
    type Output = Result<Response<AttemptBody<B>>, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(ProxyError::internal().into()));
        };
        if let Poll::Ready(result) = inner.poll(cx) {
            let deadline = *this.deadline;
            return Poll::Ready(result.map(|rsp| rsp.map(|body| AttemptBody::new(body, deadline))));
        }
        let Some(sleep) = this.sleep.as_mut() else {
            return Poll::Pending;
        };
        std::task::ready!(sleep.as_mut().poll(cx));
        // The attempt is over: dropped now, noting the backend it went to (and telling it
        // why: its backend's metrics say so).
        let note = dropped::observe_cut(ProxyErrorKind::BackendRequestTimeout, || {
            this.inner.set(None);
        });
        Poll::Ready(Err(CutShort::wrap(note, timed_out())))
    }
}

pin_project_lite::pin_project! {
    /// A backend's response body bounded by its attempt's deadline.
    ///
    /// Forwards `is_end_stream` and `size_hint`.
    pub(crate) struct AttemptBody<B> {
        #[pin]
        inner: B,
        // `None`: unbounded (no `backendRequest`), or the deadline already passed.
        deadline: Option<Instant>,
        // Armed at the first wait for the backend.
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<B> AttemptBody<B> {
    /// `inner`, failing past `deadline` (never without one).
    pub(crate) fn new(inner: B, deadline: Option<Instant>) -> Self {
        Self {
            inner,
            deadline,
            sleep: None,
        }
    }
}

impl<B> Body for AttemptBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let Some(deadline) = *this.deadline else {
            return Poll::Pending;
        };
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        std::task::ready!(sleep.as_mut().poll(cx));
        *this.deadline = None;
        *this.sleep = None;
        Poll::Ready(Some(Err(timed_out())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Marks a response body as unbounded: the type of every rule's backend bodies is the same
/// with or without `backendRequest`.
pub(crate) fn unbounded<B>(rsp: Response<B>) -> Response<AttemptBody<B>> {
    rsp.map(|body| AttemptBody::new(body, None))
}
