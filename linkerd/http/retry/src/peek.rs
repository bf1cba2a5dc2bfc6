use bytes::Buf;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

/// A response body whose first frames may have been read ahead, so a retry policy can see
/// the gRPC status in the trailers of a unary response before the response is returned.
///
/// # The rule
///
/// [`PeekTrailersBody::peek`] waits for the body's **first** frame only:
///
/// - trailers (a response with no message, e.g. an error status after empty data): they are
///   peeked;
/// - data: the body is polled **once more without waiting**; if the next frame is already
///   there and is trailers (a unary response whose message and status arrived together),
///   they are peeked; otherwise nothing more is read;
/// - the end of the body, or an error: nothing is peeked; the error is replayed to the reader.
///
/// So a streaming response is delayed until its first frame at most, never until its end. The
/// retry layer peeks only when the policy asks for it (the ready-made policy: retryable gRPC
/// codes configured and a gRPC request), only on HTTP/2 responses, and only when the
/// status is not already in the headers (trailers-only responses) and the body is not
/// already at its end. Every other response is wrapped with
/// [`passthrough`](Self::passthrough), which reads nothing ahead. HTTP/1 responses always pass
/// through.
///
/// The frames read ahead are returned first, in order, then the rest of the body. The
/// wrapper forwards `is_end_stream` and `size_hint`, counting the frames it holds.
pub struct PeekTrailersBody<B: Body> {
    /// What was read ahead; boxed, as only peeked bodies have any, and every layer above moves
    /// the body (two frames would triple its size).
    held: Option<Box<Held<B>>>,
    inner: B,
}

/// The frames read ahead, returned before the rest of the body.
struct Held<B: Body> {
    first: Option<Result<Frame<B::Data>, B::Error>>,
    second: Option<Result<Frame<B::Data>, B::Error>>,
    /// The inner body returned `None` while peeking.
    ended: bool,
}

/// Reads the first frames of a body: the future returned by [`PeekTrailersBody::peek`].
pub struct PeekTrailers<B: Body> {
    body: Option<PeekTrailersBody<B>>,
}

// === impl PeekTrailersBody ===

impl<B: Body> PeekTrailersBody<B> {
    /// Wraps `body` without reading ahead.
    pub const fn passthrough(body: B) -> Self {
        Self {
            held: None,
            inner: body,
        }
    }

    /// Reads the first frame of `body` (and a second one if it is ready at once), following
    /// [the rule](Self#the-rule).
    pub fn peek(body: B) -> PeekTrailers<B>
    where
        B: Unpin,
    {
        PeekTrailers {
            body: Some(Self::passthrough(body)),
        }
    }

    /// The trailers read ahead, if any.
    pub fn peeked_trailers(&self) -> Option<&HeaderMap> {
        let held = self.held.as_deref()?;
        [&held.first, &held.second]
            .into_iter()
            .find_map(|f| f.as_ref()?.as_ref().ok()?.trailers_ref())
    }

    /// A reference to the inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    fn buffered_len(&self) -> u64 {
        let Some(held) = self.held.as_deref() else {
            return 0;
        };
        [&held.first, &held.second]
            .into_iter()
            .filter_map(|f| f.as_ref()?.as_ref().ok()?.data_ref())
            .map(|d| d.remaining() as u64)
            .sum()
    }

    fn held_frames(&self) -> u8 {
        self.held
            .as_deref()
            .map_or(0, |h| h.first.is_some() as u8 + h.second.is_some() as u8)
    }

    fn ended(&self) -> bool {
        self.held.as_deref().is_some_and(|h| h.ended)
    }
}

// Frames are moved in and out, never pinned: only the inner body needs to be `Unpin`.
impl<B: Body + Unpin> Unpin for PeekTrailersBody<B> {}

impl<B: Body + Unpin> Body for PeekTrailersBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        if let Some(held) = this.held.as_deref_mut() {
            if let Some(frame) = held.first.take() {
                return Poll::Ready(Some(frame));
            }
            if let Some(frame) = held.second.take() {
                return Poll::Ready(Some(frame));
            }
            if held.ended {
                return Poll::Ready(None);
            }
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        match self.held.as_deref() {
            None => self.inner.is_end_stream(),
            Some(h) => {
                h.first.is_none() && h.second.is_none() && (h.ended || self.inner.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.held.is_none() {
            return self.inner.size_hint();
        }
        let held = self.buffered_len();
        let inner = if self.ended() {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        };
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(held));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(held));
        }
        hint
    }
}

impl<B: Body> fmt::Debug for PeekTrailersBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeekTrailersBody")
            .field("held_frames", &self.held_frames())
            .field("peeked_trailers", &self.peeked_trailers())
            .field("ended", &self.ended())
            .finish_non_exhaustive()
    }
}

// === impl PeekTrailers ===

impl<B: Body + Unpin> Future for PeekTrailers<B> {
    type Output = PeekTrailersBody<B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(mut body) = this.body.take() else {
            // Polled after completion: stay pending rather than panic.
            return Poll::Pending;
        };
        if body.inner.is_end_stream() {
            return Poll::Ready(body);
        }
        let first = match Pin::new(&mut body.inner).poll_frame(cx) {
            Poll::Pending => {
                this.body = Some(body);
                return Poll::Pending;
            }
            Poll::Ready(first) => first,
        };
        let mut held = Held {
            first: None,
            second: None,
            ended: false,
        };
        match first {
            None => held.ended = true,
            Some(Ok(frame)) if frame.is_data() => {
                held.first = Some(Ok(frame));
                // One more poll, without waiting: a unary response's trailers usually arrive
                // with its message.
                match Pin::new(&mut body.inner).poll_frame(cx) {
                    Poll::Ready(Some(second)) => held.second = Some(second),
                    Poll::Ready(None) => held.ended = true,
                    Poll::Pending => {}
                }
            }
            Some(other) => held.first = Some(other),
        }
        body.held = Some(Box::new(held));
        Poll::Ready(body)
    }
}

impl<B: Body> fmt::Debug for PeekTrailers<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeekTrailers")
            .field("done", &self.body.is_none())
            .finish()
    }
}
