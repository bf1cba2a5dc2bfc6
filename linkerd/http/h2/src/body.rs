use crate::{IncompleteBody, OnReset, ResetDirection, StreamReset};
use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use linkerd_http_classify::{BoxError, find_h2_reason, find_proxy_error, is_timeout};
use pin_project_lite::pin_project;
use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

pin_project! {
    /// An upstream response body, made safe to send to a client.
    ///
    /// - An error carrying an HTTP/2 reason (the upstream reset the stream) becomes a
    ///   [`StreamReset`], so the client's stream is reset with the reason of DESIGN.md
    ///   section 5 however many layers wrap the error.
    /// - With a known length (`content-length`), a body that ends short fails with
    ///   [`IncompleteBody`] instead of ending cleanly: hyper reads an upstream
    ///   `RST_STREAM(NO_ERROR)` as a clean end.
    /// - Errors that already say what the client gets (a `ProxyError` in the chain, a
    ///   timeout) pass through unchanged, boxed.
    ///
    /// Each reset is reported to the hook `H` (inbound upstream reason, outbound client
    /// reason). `is_end_stream` and `size_hint` are forwarded, except that a short body is
    /// not at its end until it has reported its error.
    pub struct UpstreamBody<B, H = crate::NoopReset> {
        #[pin]
        inner: B,
        expected: Option<u64>,
        received: u64,
        hook: H,
        failed: bool,
    }
}

// === impl UpstreamBody ===

impl<B: fmt::Debug, H> fmt::Debug for UpstreamBody<B, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hook is often a closure, which has no Debug.
        f.debug_struct("UpstreamBody")
            .field("inner", &self.inner)
            .field("expected", &self.expected)
            .field("received", &self.received)
            .field("hook", &std::any::type_name::<H>())
            .field("failed", &self.failed)
            .finish()
    }
}

impl<B, H> UpstreamBody<B, H> {
    /// Wraps `inner`, whose announced length (from `content-length`) is `expected`, if known
    /// and if the response has a body at all (not for HEAD, CONNECT, 1xx, 204, 304).
    pub fn new(inner: B, expected: Option<u64>, hook: H) -> Self {
        Self {
            inner,
            expected,
            received: 0,
            hook,
            failed: false,
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

    /// Unwraps the body.
    pub fn into_inner(self) -> B {
        self.inner
    }

    fn is_short(&self) -> bool {
        self.expected.is_some_and(|n| self.received < n)
    }
}

impl<B, H> Body for UpstreamBody<B, H>
where
    B: Body,
    B::Error: Into<BoxError>,
    H: OnReset,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        let short = |received: u64| this.expected.filter(|n| received < *n);
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = u64::try_from(data.remaining()).unwrap_or(u64::MAX);
                    *this.received = this.received.saturating_add(len);
                } else if let Some(expected) = short(*this.received) {
                    // Trailers end the body: the data is complete or never will be.
                    *this.failed = true;
                    return Poll::Ready(Some(Err(incomplete(expected, *this.received, this.hook))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => match short(*this.received) {
                Some(expected) => {
                    *this.failed = true;
                    Poll::Ready(Some(Err(incomplete(expected, *this.received, this.hook))))
                }
                None => Poll::Ready(None),
            },
            Poll::Ready(Some(Err(error))) => {
                *this.failed = true;
                Poll::Ready(Some(Err(map_error(error.into(), this.hook))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        // A short body must be polled once more to report its error: hyper sends a clean
        // END_STREAM without polling again when this says the body is over.
        self.failed || (self.inner.is_end_stream() && !self.is_short())
    }

    fn size_hint(&self) -> SizeHint {
        if self.failed {
            return SizeHint::with_exact(0);
        }
        self.inner.size_hint()
    }
}

fn incomplete<H: OnReset>(expected: u64, received: u64, hook: &H) -> BoxError {
    let error = IncompleteBody::new(expected, received);
    hook.on_reset(ResetDirection::Inbound, h2::Reason::NO_ERROR);
    hook.on_reset(ResetDirection::Outbound, error.client_reason());
    Box::new(error)
}

/// Turns an upstream reset into a [`StreamReset`]; anything else passes through.
pub(crate) fn map_error<H: OnReset>(error: BoxError, hook: &H) -> BoxError {
    // Errors of this project (and timeouts, which carry CANCEL for the client's sake) already
    // say what the client gets.
    if find_proxy_error(&*error).is_some() || is_timeout(&*error) {
        return error;
    }
    match find_h2_reason(&*error) {
        Some(reason) => {
            // A reset made on this side (h2 on an upstream's protocol abuse: too many
            // empty DATA frames, headers too large; hyper when the request body it sends
            // fails) was not received from the upstream: the client's reset is still
            // counted, no inbound one.
            let ours = linkerd_http_classify::chain(&*error)
                .filter_map(|e| e.downcast_ref::<h2::Error>())
                .any(|e| e.is_library() || (e.is_reset() && !e.is_remote()));
            let reset = StreamReset::new(reason, Some(error));
            if !ours {
                hook.on_reset(ResetDirection::Inbound, reason);
            }
            hook.on_reset(ResetDirection::Outbound, reset.client_reason());
            Box::new(reset)
        }
        None => error,
    }
}
