//! A body wrapper that reports how a body's stream ended, exactly once.
//!
//! [`EosBody`] wraps any [`http_body::Body`] and calls a callback exactly once with an [`Eos`]
//! describing what ended the stream: the end of data without trailers, trailers, an error, or
//! cancellation (the body was dropped before its end). Metrics, access logs and classifiers are
//! built on it: they need one answer per response, at the moment the response really ends, not
//! when its headers leave.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use linkerd_http_body_eos::{Eos, EosBody};
//! use std::sync::{Arc, Mutex};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let seen = Arc::new(Mutex::new(None));
//! let slot = seen.clone();
//! let body = EosBody::new(Full::new(Bytes::from_static(b"hello")), move |eos: Eos<'_, _>| {
//!     *slot.lock().unwrap() = Some(eos.kind());
//! });
//! let bytes = body.collect().await.unwrap().to_bytes();
//! assert_eq!(bytes, "hello");
//! assert_eq!(*seen.lock().unwrap(), Some(linkerd_http_body_eos::EosKind::End));
//! # }
//! ```
//!
//! # When the callback fires
//! - In [`EosBody::new`], when the inner body already reports `is_end_stream()` (hyper never
//!   polls such a body, so waiting for a poll would never fire).
//! - When a data frame leaves the inner body at `is_end_stream()` (for example a body with an
//!   exact `Content-Length` whose last byte was just read): [`Eos::End`].
//! - On a trailers frame: [`Eos::Trailers`].
//! - On an error: [`Eos::Error`].
//! - On `None` from `poll_frame`: [`Eos::End`].
//! - On drop before any of the above: [`Eos::Cancelled`], unless the inner body's exact size
//!   hint says every announced byte was read ([`Eos::End`]: hyper drops a body once its
//!   `content-length` is written, without waiting for an end of stream sent on its own).
//!
//! # Cancellation
//! Dropping an [`EosBody`] that has not reached its end fires [`Eos::Cancelled`] from `Drop`
//! (or [`Eos::End`] when its announced length was read, above).
//! The callback therefore must not block.
//!
//! The wrapper forwards `is_end_stream` and `size_hint` of the inner body unchanged.

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

/// How a body's stream ended, given by reference to the callback.
#[derive(Debug)]
pub enum Eos<'a, E> {
    /// All data was read and no trailers were sent.
    End,
    /// The stream ended with these trailers.
    Trailers(&'a HeaderMap),
    /// The inner body failed with this error.
    Error(&'a E),
    /// The body was dropped before its end.
    Cancelled,
}

/// The variant of an [`Eos`], without its data; convenient to store or compare.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum EosKind {
    /// See [`Eos::End`].
    End,
    /// See [`Eos::Trailers`].
    Trailers,
    /// See [`Eos::Error`].
    Error,
    /// See [`Eos::Cancelled`].
    Cancelled,
}

/// A callback invoked once at the end of a body's stream.
///
/// Implemented for every `FnOnce(Eos<'_, E>)`.
pub trait OnEos<E> {
    /// Called exactly once with what ended the stream.
    fn on_eos(self, eos: Eos<'_, E>);
}

pin_project_lite::pin_project! {
    /// A body that calls an [`OnEos`] callback exactly once when its stream ends.
    ///
    /// See the [crate documentation](crate) for when the callback fires.
    pub struct EosBody<B, F>
    where
        B: Body,
        F: OnEos<B::Error>,
    {
        #[pin]
        inner: B,
        callback: Option<F>,
    }

    impl<B, F> PinnedDrop for EosBody<B, F>
    where
        B: Body,
        F: OnEos<B::Error>,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(callback) = this.callback.take() {
                // A body whose every announced byte was read is complete even if its end
                // of stream never came: hyper drops a body once its `content-length` is
                // written, without waiting for an end sent in a frame of its own.
                if this.inner.size_hint().exact() == Some(0) {
                    callback.on_eos(Eos::End);
                } else {
                    callback.on_eos(Eos::Cancelled);
                }
            }
        }
    }
}

// === impl Eos ===

impl<E> Eos<'_, E> {
    /// The variant of this end of stream.
    pub fn kind(&self) -> EosKind {
        match self {
            Self::End => EosKind::End,
            Self::Trailers(_) => EosKind::Trailers,
            Self::Error(_) => EosKind::Error,
            Self::Cancelled => EosKind::Cancelled,
        }
    }

    /// The trailers, when the stream ended with trailers.
    pub fn trailers(&self) -> Option<&HeaderMap> {
        match self {
            Self::Trailers(t) => Some(t),
            _ => None,
        }
    }

    /// The error, when the stream ended with an error.
    pub fn error(&self) -> Option<&E> {
        match self {
            Self::Error(e) => Some(e),
            _ => None,
        }
    }
}

// === impl OnEos ===

impl<E, F> OnEos<E> for F
where
    F: FnOnce(Eos<'_, E>),
{
    fn on_eos(self, eos: Eos<'_, E>) {
        (self)(eos);
    }
}

// === impl EosBody ===

impl<B, F> EosBody<B, F>
where
    B: Body,
    F: OnEos<B::Error>,
{
    /// Wraps `inner`, calling `callback` once when its stream ends.
    ///
    /// If `inner` is already at its end (`is_end_stream()`), the callback fires here with
    /// [`Eos::End`].
    pub fn new(inner: B, callback: F) -> Self {
        if inner.is_end_stream() {
            callback.on_eos(Eos::End);
            return Self {
                inner,
                callback: None,
            };
        }
        Self {
            inner,
            callback: Some(callback),
        }
    }

    /// Returns `true` once the callback has fired.
    pub fn is_done(&self) -> bool {
        self.callback.is_none()
    }

    /// A reference to the inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B, F> Body for EosBody<B, F>
where
    B: Body,
    F: OnEos<B::Error>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let polled = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        if this.callback.is_none() {
            return Poll::Ready(polled);
        }
        match &polled {
            None => fire(this.callback, Eos::End),
            Some(Err(error)) => fire(this.callback, Eos::Error(error)),
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    fire(this.callback, Eos::Trailers(trailers));
                } else if this.inner.is_end_stream() {
                    fire(this.callback, Eos::End);
                }
            }
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B, F> fmt::Debug for EosBody<B, F>
where
    B: Body + fmt::Debug,
    F: OnEos<B::Error>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EosBody")
            .field("inner", &self.inner)
            .field("done", &self.callback.is_none())
            .finish()
    }
}

fn fire<E, F: OnEos<E>>(slot: &mut Option<F>, eos: Eos<'_, E>) {
    if let Some(callback) = slot.take() {
        callback.on_eos(eos);
    }
}

#[cfg(test)]
mod tests;
