//! `ExponentialBackoffStream` under paused tokio time: each item arrives after its delay,
//! `reset` restarts from `min`, and a dropped `next()` keeps the timer armed.

use futures_util::{Stream, StreamExt};
use linkerd_exp_backoff::ExponentialBackoff;
use rand::{SeedableRng, rngs::SmallRng};
use std::time::Duration;
use tokio::time::{advance, timeout};
use tokio_test::{assert_pending, assert_ready_eq, task};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// 100ms doubling to 1s, no jitter, so every deadline is a whole millisecond.
fn exact() -> ExponentialBackoff {
    ExponentialBackoff::try_new(ms(100), ms(1000), 0.0).expect("valid backoff")
}

#[tokio::test(start_paused = true)]
async fn yields_after_each_delay_in_turn() {
    let mut stream = task::spawn(exact().stream());
    for expected in [100, 200, 400, 800, 1000, 1000] {
        assert_pending!(
            stream.poll_next(),
            "must wait before the {expected}ms delay"
        );
        advance(ms(expected - 1)).await;
        assert_pending!(stream.poll_next(), "must not yield 1ms before {expected}ms");
        advance(ms(1)).await;
        assert!(
            stream.is_woken(),
            "the timer must wake the task at {expected}ms"
        );
        assert_ready_eq!(
            stream.poll_next(),
            Some(ms(expected)),
            "yields the delay it waited"
        );
    }
    assert_eq!(stream.attempt(), 6, "six delays completed");
}

#[tokio::test(start_paused = true)]
async fn reset_restarts_from_min_and_disarms_the_timer() {
    let mut stream = task::spawn(exact().stream());
    for expected in [100, 200] {
        assert_pending!(stream.poll_next());
        advance(ms(expected)).await;
        assert_ready_eq!(stream.poll_next(), Some(ms(expected)));
    }

    // Arm the 400ms delay, wait part of it, then reset: the next item must come a fresh 100ms
    // later, not at the old 400ms deadline and not at once.
    assert_pending!(stream.poll_next(), "the 400ms delay is armed");
    advance(ms(350)).await;
    stream.reset();
    assert_eq!(stream.attempt(), 0, "reset must go back to attempt 0");
    assert_pending!(stream.poll_next(), "after reset the stream must wait again");
    advance(ms(60)).await;
    assert_pending!(
        stream.poll_next(),
        "the old deadline (400ms) has passed, but reset must have disarmed it"
    );
    advance(ms(40)).await;
    assert_ready_eq!(
        stream.poll_next(),
        Some(ms(100)),
        "after reset the delay is min"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_next_keeps_the_deadline() {
    let mut stream = exact().stream();
    // Auto-advance fires the 60ms timeout first; the `next()` future is dropped.
    let cancelled = timeout(ms(60), stream.next()).await;
    assert!(
        cancelled.is_err(),
        "the 100ms delay must outlast a 60ms timeout"
    );

    let mut next = task::spawn(stream.next());
    assert_pending!(next.poll(), "40ms of the delay remain");
    advance(ms(39)).await;
    assert_pending!(next.poll(), "1ms of the delay remains");
    advance(ms(1)).await;
    assert_ready_eq!(
        next.poll(),
        Some(ms(100)),
        "the item must arrive at the original deadline, not a fresh 100ms later"
    );
}

#[tokio::test(start_paused = true)]
async fn jittered_stream_draws_the_same_delays_as_the_iterator() {
    let backoff = ExponentialBackoff::try_new(ms(10), ms(500), 1.0).expect("valid backoff");
    let expected: Vec<_> = backoff
        .delays_with_rng(SmallRng::seed_from_u64(42))
        .take(10)
        .collect();
    let mut stream = task::spawn(backoff.stream_with_rng(SmallRng::seed_from_u64(42)));
    for delay in expected {
        assert!(
            delay >= backoff.min() && delay <= backoff.max(),
            "delay {delay:?} out of bounds"
        );
        assert_pending!(stream.poll_next());
        // The timer has millisecond resolution and rounds deadlines up: bracket by 1ms.
        advance(delay.saturating_sub(ms(1))).await;
        assert_pending!(stream.poll_next(), "must not yield before {delay:?}");
        advance(ms(2)).await;
        assert_ready_eq!(stream.poll_next(), Some(delay), "same RNG, same delays");
    }
}

#[tokio::test(start_paused = true)]
async fn huge_delays_do_not_overflow_the_timer() {
    let backoff = ExponentialBackoff::try_new(Duration::MAX, Duration::MAX, 1.0).expect("valid");
    let mut stream = task::spawn(backoff.stream());
    assert_pending!(stream.poll_next(), "a Duration::MAX delay must just wait");
    advance(Duration::from_secs(86_400 * 365)).await;
    assert_pending!(stream.poll_next(), "still waiting a year later");
    assert_eq!(
        stream.size_hint(),
        (usize::MAX, None),
        "the stream never ends"
    );
}
