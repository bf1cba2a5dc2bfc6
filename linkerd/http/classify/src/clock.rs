//! The time the layers read: one reading of the clock per synchronous step of a request.
//!
//! Several layers read the clock at the same moments of a request: when it enters the stack
//! (the access log's start, each metrics layer's start, the stream timeouts' deadline, the
//! retry layer's per-try timer) and when its response body ends (each of their durations).
//! One read of the monotonic clock costs about 20 ns here (the vDSO's `clock_gettime`, which
//! reads the CPU's time-stamp counter); at one read per layer that was about 2% of the
//! proxy's CPU time under load, for instants a few hundred nanoseconds apart.
//!
//! [`now`] reads the clock once per [`frozen`] scope and gives that instant to every later
//! caller in the same scope; outside any scope it reads the clock each time, so a layer used
//! on its own behaves exactly as with `Instant::now()`. A server edge wraps each synchronous
//! step of a request in [`frozen`] (the stack's `call`, each poll of its response future,
//! each poll of its response body): every layer then sees the time that step began. A scope
//! never spans a wait (a poll returns before the task sleeps), so an instant is at most one
//! step old: the time the step's own work takes, microseconds.
//!
//! The instants are `tokio::time::Instant`s, so paused test time applies to them.
//!
//! ```
//! use linkerd_http_classify::clock;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let (a, b) = clock::frozen(|| (clock::now(), clock::now()));
//! assert_eq!(a, b, "one reading per scope");
//! tokio::time::advance(std::time::Duration::from_millis(5)).await;
//! assert!(clock::now() > b, "outside a scope every call reads the clock");
//! # }
//! ```

use std::{
    cell::Cell,
    time::{Duration, SystemTime},
};
use tokio::time::Instant;

thread_local! {
    static SCOPE: Cell<Scope> = const { Cell::new(Scope::Outside) };
    /// A wall-clock time and the monotonic instant it was read at, for [`wall_time`].
    static ANCHOR: Cell<Option<(SystemTime, Instant)>> = const { Cell::new(None) };
}

/// How long [`wall_time`] derives wall-clock times from one anchor before reading the wall
/// clock again (so a step of the system clock shows within this time).
const ANCHOR_FOR: Duration = Duration::from_secs(1);

#[derive(Clone, Copy)]
enum Scope {
    Outside,
    /// In a scope that has not read the clock yet.
    Open,
    Read(Instant),
}

/// Restores "outside any scope" when the outermost scope ends, also on unwinding.
struct Close;

/// The current instant: within a [`frozen`] scope, the instant of its first call.
pub fn now() -> Instant {
    SCOPE
        .try_with(|scope| match scope.get() {
            Scope::Read(t) => t,
            Scope::Open => {
                let t = Instant::now();
                scope.set(Scope::Read(t));
                t
            }
            Scope::Outside => Instant::now(),
        })
        .unwrap_or_else(|_| Instant::now())
}

/// The time elapsed since `start`, by [`now`]; when that is zero (`start` was read in the
/// same scope: a request answered within one step), by the clock itself, so such a
/// duration is the few microseconds it took rather than nothing. Zero if `start` is later.
pub fn since(start: Instant) -> Duration {
    let t = now();
    if t > start {
        t - start
    } else {
        Instant::now().saturating_duration_since(start)
    }
}

/// Runs `f` in a scope where [`now`] reads the clock at most once. A scope opened inside
/// another one shares it.
pub fn frozen<R>(f: impl FnOnce() -> R) -> R {
    let opened = SCOPE
        .try_with(|scope| {
            let outermost = matches!(scope.get(), Scope::Outside);
            if outermost {
                scope.set(Scope::Open);
            }
            outermost
        })
        .unwrap_or(false);
    // Not `opened.then_some(Close)`: that builds (and drops, closing the outer scope) a
    // `Close` for a nested scope too.
    let _close = if opened { Some(Close) } else { None };
    f()
}

/// The wall-clock time at `at` (an instant from [`now`], at most a few seconds old), derived
/// from the monotonic clock and the wall-clock time read at most a second earlier on
/// this thread: a log's timestamp without a second clock read per request.
pub fn wall_time(at: Instant) -> SystemTime {
    let anchored = ANCHOR
        .try_with(|anchor| {
            let (wall, mono) = match anchor.get() {
                // `at` may be a little earlier than the anchor (an instant frozen before
                // another caller re-anchored): as good as later.
                Some((wall, mono))
                    if at.saturating_duration_since(mono) < ANCHOR_FOR
                        && mono.saturating_duration_since(at) < ANCHOR_FOR =>
                {
                    (wall, mono)
                }
                _ => {
                    let fresh = (SystemTime::now(), Instant::now());
                    anchor.set(Some(fresh));
                    fresh
                }
            };
            derive(wall, mono, at)
        })
        .ok();
    anchored.unwrap_or_else(|| derive(SystemTime::now(), Instant::now(), at))
}

/// The wall-clock time at `at`, given that it was `wall` at `mono`.
fn derive(wall: SystemTime, mono: Instant, at: Instant) -> SystemTime {
    if at >= mono {
        wall.checked_add(at - mono).unwrap_or(wall)
    } else {
        wall.checked_sub(mono - at).unwrap_or(wall)
    }
}

// === impl Close ===

impl Drop for Close {
    fn drop(&mut self) {
        let _ = SCOPE.try_with(|scope| scope.set(Scope::Outside));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_scope_leaves_the_outer_one_open() {
        frozen(|| {
            let a = now();
            assert_eq!(frozen(now), a, "the nested scope shares the outer reading");
            // Real time: wait until the clock has moved, so a closed scope would show.
            while Instant::now() == a {
                std::hint::spin_loop();
            }
            assert_eq!(now(), a, "still the outer scope's reading");
        });
        let outside = now();
        while Instant::now() == outside {
            std::hint::spin_loop();
        }
        assert_ne!(now(), outside, "outside any scope again");
    }

    #[test]
    fn a_duration_within_one_scope_is_not_zero() {
        frozen(|| {
            let start = now();
            // Real time: wait until the clock has moved past the scope's reading.
            while Instant::now() == start {
                std::hint::spin_loop();
            }
            assert_eq!(now(), start, "the scope's reading");
            assert!(
                since(start) > Duration::ZERO,
                "but the elapsed time is real"
            );
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_scope_reads_once_and_nested_scopes_share_it() {
        let (a, b, c) = frozen(|| {
            let a = now();
            // Paused time moves only when told; advance the test clock by hand inside the
            // scope (a real clock would move by itself).
            let b = frozen(now);
            (a, b, now())
        });
        assert_eq!(a, b);
        assert_eq!(a, c);
        tokio::time::advance(Duration::from_millis(3)).await;
        let d = frozen(now);
        assert_eq!(d - a, Duration::from_millis(3), "a new scope reads again");
        assert_eq!(since(a), Duration::from_millis(3));
        assert_eq!(since(d + Duration::from_secs(1)), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_scope_closes_when_its_closure_panics() {
        let t0 = frozen(now);
        let caught = std::panic::catch_unwind(|| frozen(|| -> () { panic!("boom") }));
        assert!(caught.is_err());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(now() > t0, "outside a scope again: the clock is read");
    }

    #[tokio::test(start_paused = true)]
    async fn wall_time_follows_the_monotonic_clock_between_anchors() {
        let t0 = now();
        let w0 = wall_time(t0);
        let w_real = SystemTime::now();
        let off = w_real.duration_since(w0).unwrap_or_else(|e| e.duration());
        assert!(off < Duration::from_secs(1), "anchored to the wall clock");
        tokio::time::advance(Duration::from_millis(250)).await;
        let w1 = wall_time(now());
        assert_eq!(w1.duration_since(w0).ok(), Some(Duration::from_millis(250)));
        // Within the anchor's second, instants before and after it are derived from it.
        tokio::time::advance(Duration::from_millis(500)).await;
        let w2 = wall_time(now());
        assert_eq!(w2.duration_since(w0).ok(), Some(Duration::from_millis(750)));
        assert_eq!(wall_time(t0), w0, "the same anchor, backwards");
        // Past it, the wall clock is read again: paused test time has run 1.75 s ahead of
        // the real wall clock, which a stale anchor would carry into the result.
        tokio::time::advance(Duration::from_secs(1)).await;
        let w3 = wall_time(now());
        let off = SystemTime::now()
            .duration_since(w3)
            .unwrap_or_else(|e| e.duration());
        assert!(off < Duration::from_secs(1), "re-anchored: {off:?} off");
    }
}
