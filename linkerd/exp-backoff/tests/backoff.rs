//! Bounds, growth and validation of `ExponentialBackoff`, by example and by property.

use linkerd_exp_backoff::{ExponentialBackoff, InvalidBackoff};
use proptest::prelude::*;
use rand::{RngCore, SeedableRng, rngs::SmallRng};
use std::time::Duration;

/// An RNG that returns the same word forever: `u64::MAX` makes `random::<f64>()` its largest
/// value (just below 1), `0` its smallest (0), so tests can pin jitter to either edge.
struct Fixed(u64);

impl RngCore for Fixed {
    fn next_u32(&mut self) -> u32 {
        #[allow(clippy::cast_possible_truncation)]
        let word = self.0 as u32;
        word
    }

    fn next_u64(&mut self) -> u64 {
        self.0
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for (byte, src) in dst.iter_mut().zip(self.0.to_le_bytes().into_iter().cycle()) {
            *byte = src;
        }
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn backoff(min: Duration, max: Duration, jitter: f64) -> ExponentialBackoff {
    ExponentialBackoff::try_new(min, max, jitter).expect("test backoff must be valid")
}

// Usable in a `const` item: `try_new` is a `const fn`.
const RECONNECT: Result<ExponentialBackoff, InvalidBackoff> =
    ExponentialBackoff::try_new(Duration::from_millis(100), Duration::from_secs(10), 0.1);

#[test]
fn default_matches_route_retry_defaults() {
    let b = ExponentialBackoff::default();
    assert_eq!(b, ExponentialBackoff::DEFAULT, "Default must equal DEFAULT");
    assert_eq!(
        b.min(),
        ms(25),
        "default min is the route `backoff` default"
    );
    assert_eq!(
        b.max(),
        ms(250),
        "default max is the route `maxBackoff` default"
    );
    assert!(
        (b.jitter() - 0.5).abs() < f64::EPSILON,
        "default jitter ratio is 0.5"
    );
    assert!(
        RECONNECT.is_ok(),
        "a valid backoff must build in a const context"
    );
}

#[test]
fn base_doubles_from_min_then_caps_at_max() {
    let b = ExponentialBackoff::DEFAULT;
    let bases: Vec<_> = (0..7).map(|n| b.base(n)).collect();
    assert_eq!(
        bases,
        [ms(25), ms(50), ms(100), ms(200), ms(250), ms(250), ms(250)],
        "base must be min * 2^n capped at max"
    );
}

#[test]
fn huge_attempt_numbers_saturate_without_overflow() {
    let b = backoff(ms(25), ms(250), 1.0);
    let mut rng = SmallRng::seed_from_u64(1);
    for n in [31, 32, 63, 64, 93, 94, 127, 128, u32::MAX - 1, u32::MAX] {
        assert_eq!(b.base(n), ms(250), "base({n}) must be capped at max");
        assert_eq!(b.delay(n, &mut rng), ms(250), "delay({n}) must be max");
    }

    // The widest possible range: the base stays exact far past 32 doublings.
    let wide = backoff(Duration::from_nanos(1), Duration::MAX, 1.0);
    assert_eq!(
        wide.base(40),
        Duration::from_nanos(1 << 40),
        "base must be exact"
    );
    assert_eq!(
        wide.base(63),
        Duration::from_nanos(1 << 63),
        "base must be exact"
    );
    assert_eq!(
        wide.base(u32::MAX),
        Duration::MAX,
        "base must saturate at max"
    );
    let d = wide.delay(90, &mut Fixed(u64::MAX));
    assert!(
        d >= wide.base(90),
        "jitter near Duration::MAX must not shorten the delay"
    );
}

#[test]
fn jitter_only_lengthens_and_stays_below_ratio() {
    let b = backoff(ms(100), ms(1000), 0.5);
    assert_eq!(
        b.delay(0, &mut Fixed(0)),
        ms(100),
        "the smallest jitter draw must give the base"
    );
    let top = b.delay(0, &mut Fixed(u64::MAX));
    assert!(
        top > Duration::from_micros(149_999) && top <= ms(150),
        "the largest jitter draw must give base * 1.5 (within rounding), got {top:?}"
    );
    let capped = b.delay(3, &mut Fixed(u64::MAX));
    assert_eq!(capped, ms(1000), "800ms * 1.5 must be clamped to max");
}

#[test]
fn zero_jitter_and_zero_min() {
    let exact = backoff(ms(10), ms(100), 0.0);
    let mut rng = SmallRng::seed_from_u64(3);
    let delays: Vec<_> = exact.delays_with_rng(&mut rng).take(6).collect();
    assert_eq!(
        delays,
        [ms(10), ms(20), ms(40), ms(80), ms(100), ms(100)],
        "without jitter every delay must equal its base"
    );

    let none = backoff(Duration::ZERO, ms(100), 1.0);
    assert!(
        (0..100).all(|n| none.delay(n, &mut rng).is_zero()),
        "a zero min must mean no backoff at all"
    );

    let constant = backoff(ms(40), ms(40), 1.0);
    assert!(
        (0..100).all(|n| constant.delay(n, &mut rng) == ms(40)),
        "min == max must give a constant delay"
    );
}

#[test]
fn delays_iterator_follows_attempts_and_resets() {
    let b = backoff(ms(10), ms(1000), 0.0);
    let mut delays = b.delays();
    assert_eq!(
        delays.size_hint(),
        (usize::MAX, None),
        "the iterator never ends"
    );
    assert_eq!(delays.next(), Some(ms(10)), "attempt 0");
    assert_eq!(delays.next(), Some(ms(20)), "attempt 1");
    assert_eq!(delays.next(), Some(ms(40)), "attempt 2");
    assert_eq!(delays.attempt(), 3, "three delays drawn");
    delays.reset();
    assert_eq!(delays.attempt(), 0, "reset must go back to attempt 0");
    assert_eq!(
        delays.next(),
        Some(ms(10)),
        "after reset the first delay is min again"
    );
    assert_eq!(delays.backoff(), &b, "the iterator keeps its backoff");
}

#[test]
fn invalid_input_is_a_typed_error() {
    let err = ExponentialBackoff::try_new(ms(1), Duration::ZERO, 0.5).unwrap_err();
    assert!(
        err.is_zero_max(),
        "a zero max must be reported as such: {err:?}"
    );
    assert_eq!(err.to_string(), "maximum backoff must be greater than zero");

    let err = ExponentialBackoff::try_new(ms(300), ms(200), 0.5).unwrap_err();
    assert!(
        err.is_min_above_max(),
        "min > max must be reported as such: {err:?}"
    );
    assert_eq!(
        err.to_string(),
        "minimum backoff 300ms is greater than maximum backoff 200ms"
    );

    for jitter in [-0.1, 1.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = ExponentialBackoff::try_new(ms(1), ms(2), jitter).unwrap_err();
        assert!(err.is_invalid_jitter(), "jitter {jitter} must be rejected");
        assert!(
            !err.is_zero_max() && !err.is_min_above_max(),
            "only one predicate holds"
        );
        assert_eq!(
            err.to_string(),
            format!("backoff jitter {jitter} is not a finite ratio between 0 and 1")
        );
    }

    for jitter in [0.0, 1.0] {
        assert!(
            ExponentialBackoff::try_new(ms(1), ms(2), jitter).is_ok(),
            "the jitter bounds {jitter} are inclusive"
        );
    }
}

#[test]
fn error_is_a_send_sync_std_error() {
    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<InvalidBackoff>();
}

// === properties ===

/// Durations across the whole range, weighted towards realistic ones.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        3 => (0u64..=10_000_000_000).prop_map(Duration::from_nanos),
        1 => (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        1 => Just(Duration::MAX),
        1 => Just(Duration::ZERO),
    ]
}

/// Any valid backoff: the two durations sorted, max not zero, jitter in [0, 1].
fn valid_backoff() -> impl Strategy<Value = ExponentialBackoff> {
    (duration(), duration(), 0.0f64..=1.0).prop_map(|(a, b, jitter)| {
        let (min, max) = if a <= b { (a, b) } else { (b, a) };
        let max = max.max(Duration::from_nanos(1));
        ExponentialBackoff::try_new(min, max, jitter).expect("sorted bounds are valid")
    })
}

fn attempt() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..130, any::<u32>()]
}

proptest! {
    #[test]
    fn delay_is_within_min_and_max(b in valid_backoff(), n in attempt(), seed in any::<u64>()) {
        // Every attempt up to past the cap (a base below 2^94 ns reaches any max within 94
        // doublings), so the step just below the cap, where jitter could overshoot, is covered.
        for n in (0..=130).chain([n, u32::MAX]) {
            for rng in [&mut SmallRng::seed_from_u64(seed) as &mut dyn RngCore, &mut Fixed(u64::MAX), &mut Fixed(0)] {
                let d = b.delay(n, rng);
                prop_assert!(d >= b.min(), "delay({n}) = {d:?} below min for {b:?}");
                prop_assert!(d <= b.max(), "delay({n}) = {d:?} above max for {b:?}");
            }
        }
    }

    #[test]
    fn jitter_stays_within_ratio_of_base(b in valid_backoff(), n in attempt(), seed in any::<u64>()) {
        let base = b.base(n);
        let d = b.delay(n, &mut SmallRng::seed_from_u64(seed));
        prop_assert!(d >= base, "jitter must never shorten a delay: {d:?} < {base:?}");
        // f64 rounding may add a few nanoseconds at most.
        let limit = base.as_secs_f64() * (1.0 + b.jitter()) + 1e-9;
        prop_assert!(d.as_secs_f64() <= limit, "delay {d:?} exceeds base {base:?} * (1 + jitter)");
    }

    #[test]
    fn base_is_monotone_and_doubles_until_capped(b in valid_backoff(), n in attempt()) {
        let n = n.min(u32::MAX - 1);
        let (this, next) = (b.base(n), b.base(n + 1));
        prop_assert!(this >= b.min() && this <= b.max(), "base({n}) = {this:?} out of bounds");
        prop_assert!(this <= next, "base must not decrease: {this:?} then {next:?}");
        if next < b.max() {
            prop_assert_eq!(next, this * 2, "below the cap the base must double");
        }
        if n == 0 {
            prop_assert_eq!(this, b.min(), "the first base is min");
        }
    }

    #[test]
    fn validation_never_panics(
        min in duration(),
        max in duration(),
        jitter in prop_oneof![any::<f64>(), -2.0f64..2.0, Just(f64::NAN)],
    ) {
        let valid_jitter = jitter.is_finite() && (0.0..=1.0).contains(&jitter);
        match ExponentialBackoff::try_new(min, max, jitter) {
            Ok(b) => {
                prop_assert!(!max.is_zero() && min <= max && valid_jitter, "accepted {min:?} {max:?} {jitter}");
                prop_assert_eq!((b.min(), b.max()), (min, max), "accessors must return the inputs");
            }
            Err(e) => {
                prop_assert!(max.is_zero() || min > max || !valid_jitter, "rejected valid {min:?} {max:?} {jitter}");
                prop_assert_eq!(e.is_zero_max(), max.is_zero(), "zero max predicate");
                prop_assert_eq!(e.is_min_above_max(), !max.is_zero() && min > max, "min above max predicate");
                let msg = e.to_string();
                prop_assert!(!msg.is_empty() && msg.chars().next().is_some_and(char::is_lowercase) && !msg.ends_with('.'),
                    "error text must be lowercase without a trailing period: {msg}");
            }
        }
    }

    #[test]
    fn iterator_matches_delay_sequence(b in valid_backoff(), seed in any::<u64>()) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let expected: Vec<_> = (0..40).map(|n| b.delay(n, &mut rng)).collect();
        let got: Vec<_> = b.delays_with_rng(SmallRng::seed_from_u64(seed)).take(40).collect();
        prop_assert_eq!(got, expected, "the iterator must draw delay(0), delay(1), ...");
    }
}
