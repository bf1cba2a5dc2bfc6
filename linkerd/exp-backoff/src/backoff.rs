use crate::{ExponentialBackoffStream, InvalidBackoff};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use std::{iter::FusedIterator, time::Duration};

/// Validated bounds and jitter ratio for an exponential backoff.
///
/// The delay before attempt `n` (counted from 0) starts from a *base* of `min * 2^n`, capped at
/// `max`. A random extra of at most `jitter * base` is added, and the sum is clamped to
/// `[min, max]`. So every delay lies between `min` and `max` inclusive, whatever the attempt
/// number, and no arithmetic overflows.
///
/// The value is `Copy` and holds no random state: draw delays with [`delay`](Self::delay), or
/// keep per-sequence state in [`Delays`] or [`ExponentialBackoffStream`].
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct ExponentialBackoff {
    min: Duration,
    max: Duration,
    jitter: f64,
}

/// An endless iterator of jittered delays for attempts `0, 1, 2, ...`, from
/// [`ExponentialBackoff::delays`] or [`ExponentialBackoff::delays_with_rng`].
///
/// It never returns `None`: bound it with [`Iterator::take`] or stop calling it.
#[derive(Clone, Debug)]
pub struct Delays<R = SmallRng> {
    backoff: ExponentialBackoff,
    attempt: u32,
    rng: R,
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

// === impl ExponentialBackoff ===

impl ExponentialBackoff {
    /// The default backoff: 25 ms doubling up to 250 ms, with a jitter ratio of 0.5.
    ///
    /// 25 ms and 250 ms are the `backoff` and `maxBackoff` defaults of a route's `retry` block.
    /// A ratio of 0.5 spreads the first retry over 25 to 37.5 ms, so clients that failed
    /// together do not all retry together, while keeping each step's range below the next
    /// step's base.
    pub const DEFAULT: Self = Self {
        min: Duration::from_millis(25),
        max: Duration::from_millis(250),
        jitter: 0.5,
    };

    /// Validates and builds a backoff.
    ///
    /// `min` may be zero (then every delay is zero: no backoff); `min == max` gives a constant
    /// delay.
    ///
    /// # Errors
    ///
    /// Returns [`InvalidBackoff`] if `max` is zero, if `min` is greater than `max`, or if
    /// `jitter` is NaN, infinite, or outside `[0, 1]`. It never panics.
    pub const fn try_new(
        min: Duration,
        max: Duration,
        jitter: f64,
    ) -> Result<Self, InvalidBackoff> {
        if max.is_zero() {
            return Err(InvalidBackoff::zero_max());
        }
        // `Duration`'s `Ord` is not usable in a `const fn`; nanosecond counts compare the same.
        if min.as_nanos() > max.as_nanos() {
            return Err(InvalidBackoff::min_above_max(min, max));
        }
        // `is_finite` is false for NaN, so NaN is rejected here too.
        if !jitter.is_finite() || jitter < 0.0 || jitter > 1.0 {
            return Err(InvalidBackoff::jitter(jitter));
        }
        Ok(Self { min, max, jitter })
    }

    /// The shortest delay this backoff produces.
    #[must_use]
    pub const fn min(&self) -> Duration {
        self.min
    }

    /// The longest delay this backoff produces.
    #[must_use]
    pub const fn max(&self) -> Duration {
        self.max
    }

    /// The jitter ratio, in `[0, 1]`.
    #[must_use]
    pub const fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The delay for attempt `attempt` (counted from 0) before jitter: `min * 2^attempt`,
    /// capped at `max`.
    ///
    /// Exact for every input (computed in whole nanoseconds), non-decreasing in `attempt`, and
    /// always within `[min, max]`.
    #[must_use]
    pub const fn base(&self, attempt: u32) -> Duration {
        let min = self.min.as_nanos();
        let max = self.max.as_nanos();
        if min == 0 {
            return Duration::ZERO;
        }
        // A `Duration` holds fewer than 2^94 nanoseconds, so the shift overflows `u128` only
        // when it would pass every possible `max` anyway.
        if attempt >= min.leading_zeros() {
            return self.max;
        }
        let nanos = min << attempt;
        if nanos >= max {
            return self.max;
        }
        // `nanos < max`, so the seconds fit in a `u64` and the sub-second part is below 10^9.
        #[allow(clippy::cast_possible_truncation)]
        let (secs, subsec) = (
            (nanos / NANOS_PER_SEC) as u64,
            (nanos % NANOS_PER_SEC) as u32,
        );
        Duration::new(secs, subsec)
    }

    /// Draws the jittered delay for attempt `attempt` (counted from 0): the
    /// [`base`](Self::base) plus a random extra of at most `jitter * base`, clamped to `[min, max]`.
    ///
    /// Draws at most one `f64` from `rng`, and none when the jitter ratio is zero or the base
    /// has already reached `max` (no room is left above it). Pass a seeded RNG for
    /// reproducible delays.
    pub fn delay<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let base = self.base(attempt);
        if self.jitter <= 0.0 || base >= self.max {
            return base;
        }
        let fraction = rng.random::<f64>() * self.jitter;
        // Cannot fail for a fraction in [0, 1), but a fallible conversion keeps this panic-free.
        let extra = Duration::try_from_secs_f64(base.as_secs_f64() * fraction).unwrap_or(self.max);
        base.saturating_add(extra).min(self.max).max(self.min)
    }

    /// An endless iterator of delays for attempts `0, 1, 2, ...`, with a small fast RNG seeded
    /// from the thread-local RNG.
    #[must_use]
    pub fn delays(self) -> Delays {
        self.delays_with_rng(SmallRng::from_rng(&mut rand::rng()))
    }

    /// An endless iterator of delays for attempts `0, 1, 2, ...`, drawing jitter from `rng`.
    #[must_use]
    pub const fn delays_with_rng<R: Rng>(self, rng: R) -> Delays<R> {
        Delays {
            backoff: self,
            attempt: 0,
            rng,
        }
    }

    /// A [`Stream`](futures_util::Stream) that sleeps for each delay in turn, with a small fast
    /// RNG seeded from the thread-local RNG.
    #[must_use]
    pub fn stream(self) -> ExponentialBackoffStream {
        self.stream_with_rng(SmallRng::from_rng(&mut rand::rng()))
    }

    /// A [`Stream`](futures_util::Stream) that sleeps for each delay in turn, drawing jitter
    /// from `rng`.
    #[must_use]
    pub const fn stream_with_rng<R: Rng + Unpin>(self, rng: R) -> ExponentialBackoffStream<R> {
        ExponentialBackoffStream::new(self, rng)
    }
}

impl Default for ExponentialBackoff {
    /// [`ExponentialBackoff::DEFAULT`]: 25 ms to 250 ms, jitter ratio 0.5.
    fn default() -> Self {
        Self::DEFAULT
    }
}

// === impl Delays ===

impl<R> Delays<R> {
    /// The attempt number whose delay the next call to `next` returns: the number of delays
    /// drawn since creation or the last [`reset`](Self::reset).
    #[must_use]
    pub const fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Starts again from attempt 0 (for example after a success), keeping the RNG.
    pub const fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The backoff this iterator draws from.
    #[must_use]
    pub const fn backoff(&self) -> &ExponentialBackoff {
        &self.backoff
    }
}

impl<R: Rng> Iterator for Delays<R> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.backoff.delay(self.attempt, &mut self.rng);
        // Past `u32::MAX` attempts the base is long since capped, so saturating changes nothing.
        self.attempt = self.attempt.saturating_add(1);
        Some(delay)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX, None)
    }
}

impl<R: Rng> FusedIterator for Delays<R> {}
