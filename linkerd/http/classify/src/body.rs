use crate::{BoxError, Class, ClassifyEos};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, combinators::MapErr};
use linkerd_http_body_eos::{Eos, EosBody, OnEos};
use std::{
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
};

/// A shared slot holding a response's final [`Class`] once its body has ended (response
/// extension written by [`ClassifyLayer`](crate::ClassifyLayer)).
///
/// Outer layers (the access log) copy it from the response extensions at the headers and read
/// it after the body ends.
#[derive(Clone, Debug, Default)]
pub struct FinalClass(Arc<OnceLock<Class>>);

pin_project_lite::pin_project! {
    /// A response body that classifies the end of its stream and stores the [`Class`] in a
    /// [`FinalClass`].
    ///
    /// Forwards `is_end_stream` and `size_hint` of the inner body. Its errors are the inner
    /// body's, boxed.
    pub struct ClassifyBody<B, C>
    where
        B: Body,
        C: ClassifyEos,
    {
        #[pin]
        inner: EosBody<MapErr<B, fn(B::Error) -> BoxError>, Record<C>>,
    }
}

/// The end-of-stream callback of [`ClassifyBody`].
#[derive(Debug)]
pub struct Record<C> {
    classify: C,
    slot: FinalClass,
}

// === impl FinalClass ===

impl FinalClass {
    /// The class, once the body has ended.
    pub fn get(&self) -> Option<&Class> {
        self.0.get()
    }

    /// Stores `class`; the first write wins.
    pub fn set(&self, class: Class) {
        let _ = self.0.set(class);
    }
}

// === impl ClassifyBody ===

impl<B, C> ClassifyBody<B, C>
where
    B: Body,
    B::Error: Into<BoxError>,
    C: ClassifyEos,
{
    /// Wraps `inner`; its final class is written to `slot`.
    pub fn new(inner: B, classify: C, slot: FinalClass) -> Self {
        let boxed: fn(B::Error) -> BoxError = Into::into;
        Self {
            inner: EosBody::new(inner.map_err(boxed), Record { classify, slot }),
        }
    }
}

impl<B, C> std::fmt::Debug for ClassifyBody<B, C>
where
    B: Body,
    C: ClassifyEos,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassifyBody")
            .field("done", &self.inner.is_done())
            .finish()
    }
}

impl<B, C> Body for ClassifyBody<B, C>
where
    B: Body,
    B::Error: Into<BoxError>,
    C: ClassifyEos,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === impl Record ===

impl<C: ClassifyEos> OnEos<BoxError> for Record<C> {
    fn on_eos(self, eos: Eos<'_, BoxError>) {
        let class = match eos {
            Eos::End => self.classify.eos(None),
            Eos::Trailers(t) => self.classify.eos(Some(t)),
            Eos::Error(e) => self.classify.error(&**e),
            Eos::Cancelled => self.classify.cancelled(),
        };
        self.slot.set(class);
    }
}
