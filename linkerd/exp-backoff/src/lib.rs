//! Jittered exponential backoff: delays that double from a minimum up to a maximum, with a
//! random spread so that clients which failed together do not retry together.
//!
//! ```
//! use futures_util::StreamExt;
//! use linkerd_exp_backoff::ExponentialBackoff;
//! use rand::{SeedableRng, rngs::SmallRng};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backoff = ExponentialBackoff::try_new(
//!     Duration::from_millis(100), // min: the first delay is at least this
//!     Duration::from_secs(1),     // max: no delay is longer
//!     0.5,                        // jitter: add up to 50% of the base
//! )?;
//!
//! // Bases double, then stop at `max`.
//! assert_eq!(backoff.base(0), Duration::from_millis(100));
//! assert_eq!(backoff.base(3), Duration::from_millis(800));
//! assert_eq!(backoff.base(4), Duration::from_secs(1));
//!
//! // Draw one delay with an injected (here seeded, so reproducible) RNG.
//! let mut rng = SmallRng::seed_from_u64(7);
//! let first = backoff.delay(0, &mut rng);
//! assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(150));
//!
//! // Or iterate over the delays of successive attempts...
//! let delays: Vec<Duration> = backoff.delays().take(8).collect();
//! assert!(delays.iter().all(|d| *d >= backoff.min() && *d <= backoff.max()));
//!
//! // ...or sleep through them on the tokio timer.
//! let mut sleeps = backoff.stream();
//! let waited = sleeps.next().await.expect("the backoff stream never ends");
//! assert!(waited >= Duration::from_millis(100));
//! sleeps.reset(); // e.g. after a successful connect: start again from `min`
//!
//! // Bad configuration is an error, never a panic.
//! let err = ExponentialBackoff::try_new(Duration::from_secs(2), Duration::from_secs(1), 0.5)
//!     .unwrap_err();
//! assert_eq!(err.to_string(), "minimum backoff 2s is greater than maximum backoff 1s");
//! # Ok(())
//! # }
//! ```
//!
//! # Configuration
//!
//! [`ExponentialBackoff::try_new`] takes `min`, `max` and a jitter ratio. The delay before
//! attempt `n` (counted from 0) is
//!
//! ```text
//! base(n)  = min(min * 2^n, max)                       exact, saturating, non-decreasing
//! delay(n) = clamp(base(n) + U[0, 1) * jitter * base(n), min, max)
//! ```
//!
//! so `min <= delay(n) <= max` for every `n`, including `u32::MAX`. Jitter only lengthens a
//! delay; once the base reaches `max` there is no room above it, and delays at the cap are
//! exactly `max`. [`ExponentialBackoff::DEFAULT`] (also the [`Default`]) is 25 ms to 250 ms
//! with a jitter ratio of 0.5, matching the route `retry` defaults `backoff: 25ms` and
//! `maxBackoff: 250ms`. It is a `const`, and `try_new` is a `const fn`.
//!
//! Three ways to draw delays:
//! - [`ExponentialBackoff::delay`]`(n, &mut rng)`: stateless, with any [`rand::Rng`]; the way
//!   to get reproducible delays in tests.
//! - [`Delays`], an endless iterator over attempts `0, 1, 2, ...`, with
//!   [`reset`](Delays::reset).
//! - [`ExponentialBackoffStream`], a [`futures_util::Stream`] that sleeps through each delay
//!   with [`tokio::time::sleep`] (so paused test time controls it), with
//!   [`reset`](ExponentialBackoffStream::reset).
//!
//! # Where the proxy uses it
//!
//! - **Retries** (`linkerd-http-retry`): between two attempts the retry layer waits
//!   `delay(r, rng)`, where `r` is the number of retries already made, so the first retry waits
//!   at least the route's `backoff` (`min`) and none waits longer than `maxBackoff` (`max`).
//!   A `Retry-After` or `grpc-retry-pushback-ms` hint from the server replaces that delay, still
//!   clamped to `max`.
//! - **Endpoint reconnects** (`linkerd-app`): after a failed connect, an endpoint service
//!   waits for the next item of its [`ExponentialBackoffStream`] (its `poll_ready` stays
//!   `Pending` meanwhile) before dialing again, and calls `reset` once a connection is
//!   established.
//!
//! # Errors
//!
//! [`InvalidBackoff`] from [`ExponentialBackoff::try_new`] when `max` is zero, `min > max`, or
//! the jitter ratio is NaN, infinite, or outside `[0, 1]`. Nothing else in this crate fails.
//!
//! # Cancellation
//!
//! Dropping a pending `next()` of an [`ExponentialBackoffStream`] keeps its timer armed: the
//! next poll resumes waiting for the same deadline.

mod backoff;
mod error;
mod stream;

pub use self::{
    backoff::{Delays, ExponentialBackoff},
    error::InvalidBackoff,
    stream::ExponentialBackoffStream,
};
