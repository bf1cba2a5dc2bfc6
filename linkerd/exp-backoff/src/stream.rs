use crate::ExponentialBackoff;
use futures_util::Stream;
use rand::{Rng, rngs::SmallRng};
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};
use tokio::time::Sleep;

/// A [`Stream`] that waits out each backoff delay in turn on the tokio timer, yielding the delay
/// it has just waited.
///
/// The first item arrives after the delay for attempt 0 (at least `min`), the next after the
/// delay for attempt 1, and so on; the stream never ends. Call [`reset`](Self::reset) after a
/// success so the next failure starts again from `min`.
///
/// Created by [`ExponentialBackoff::stream`] or [`ExponentialBackoff::stream_with_rng`].
///
/// # Cancellation
///
/// Dropping a pending `next()` future loses nothing: the timer stays armed, and the next poll
/// keeps waiting for the same deadline. Only [`reset`](Self::reset) disarms it.
///
/// # Allocation
///
/// The timer is boxed once, on the first poll, and reused for every later delay, so the stream
/// is `Unpin` (usable with `StreamExt::next` without pinning) and allocates nothing per delay.
///
/// # Panics
///
/// Polling panics outside a tokio runtime with the time driver enabled, as
/// [`tokio::time::sleep`] does.
#[derive(Debug)]
pub struct ExponentialBackoffStream<R = SmallRng> {
    backoff: ExponentialBackoff,
    attempt: u32,
    rng: R,
    sleep: Option<Pin<Box<Sleep>>>,
    // The delay the armed timer is waiting out, if any.
    armed: Option<Duration>,
}

// === impl ExponentialBackoffStream ===

impl<R> ExponentialBackoffStream<R> {
    pub(crate) const fn new(backoff: ExponentialBackoff, rng: R) -> Self {
        Self {
            backoff,
            attempt: 0,
            rng,
            sleep: None,
            armed: None,
        }
    }

    /// The number of delays completed since creation or the last [`reset`](Self::reset); the
    /// attempt number of the delay the stream waits out next.
    #[must_use]
    pub const fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Starts again from attempt 0 and disarms a timer that is running, so the next item comes
    /// after a fresh delay for attempt 0.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.armed = None;
    }

    /// The backoff this stream draws from.
    #[must_use]
    pub const fn backoff(&self) -> &ExponentialBackoff {
        &self.backoff
    }
}

impl<R: Rng + Unpin> Stream for ExponentialBackoffStream<R> {
    type Item = Duration;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Duration>> {
        let this = self.get_mut();
        let delay = if let Some(delay) = this.armed {
            delay
        } else {
            let delay = this.backoff.delay(this.attempt, &mut this.rng);
            // `tokio::time::sleep` saturates a deadline past the timer's range instead of
            // overflowing, so a huge `max` is safe.
            let sleep = tokio::time::sleep(delay);
            match &mut this.sleep {
                Some(armed) => armed.set(sleep),
                None => this.sleep = Some(Box::pin(sleep)),
            }
            this.armed = Some(delay);
            delay
        };
        if let Some(sleep) = &mut this.sleep {
            ready!(sleep.as_mut().poll(cx));
        }
        this.armed = None;
        this.attempt = this.attempt.saturating_add(1);
        Poll::Ready(Some(delay))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX, None)
    }
}
