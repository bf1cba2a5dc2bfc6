use crate::{Class, ClassifyEos};
use http_body::{Body, Frame, SizeHint};
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
    /// Forwards `is_end_stream` and `size_hint` of the inner body.
    #[derive(Debug)]
    pub struct ClassifyBody<B, C>
    where
        B: Body,
        B::Error: std::error::Error,
        B::Error: 'static,
        C: ClassifyEos,
    {
        #[pin]
        inner: EosBody<B, Record<C>>,
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
    B::Error: std::error::Error + 'static,
    C: ClassifyEos,
{
    /// Wraps `inner`; its final class is written to `slot`.
    pub fn new(inner: B, classify: C, slot: FinalClass) -> Self {
        Self {
            inner: EosBody::new(inner, Record { classify, slot }),
        }
    }
}

impl<B, C> Body for ClassifyBody<B, C>
where
    B: Body,
    B::Error: std::error::Error + 'static,
    C: ClassifyEos,
{
    type Data = B::Data;
    type Error = B::Error;

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

impl<C, E> OnEos<E> for Record<C>
where
    C: ClassifyEos,
    E: std::error::Error + 'static,
{
    fn on_eos(self, eos: Eos<'_, E>) {
        let class = match eos {
            Eos::End => self.classify.eos(None),
            Eos::Trailers(t) => self.classify.eos(Some(t)),
            Eos::Error(e) => self.classify.error(e),
            Eos::Cancelled => self.classify.cancelled(),
        };
        self.slot.set(class);
    }
}
