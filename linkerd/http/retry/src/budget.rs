use linkerd_http_classify::clock;
use std::{
    fmt,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::time::Instant;

/// A retry budget: retries allowed as a ratio of recent original requests, plus a minimum
/// per second, over a sliding window of `ttl`.
///
/// Every original request [deposits](Self::deposit); every retry
/// [withdraws](Self::try_withdraw). A withdrawal succeeds when, counting only the deposits
/// and withdrawals of the window,
///
/// ```text
/// (withdrawals + 1) <= effective_ratio * deposits + min_per_second * ttl_seconds
/// ```
///
/// The arithmetic is exact: integers in millionths of a retry, no truncation of the ratio
/// (tower's `TpsBudget` turns any ratio in (0.5, 1] into 100%). The
/// [effective ratio](Self::effective_ratio) is the configured ratio rounded to the nearest
/// millionth. Bad configuration is an [`InvalidBudget`] error, never a panic.
///
/// # The window
///
/// Time is cut into 10 slots of `ttl / 10`; the window is the current slot and the 9 before
/// it, so it spans between `0.9 * ttl` and `ttl`. Events older than that expire.
///
/// # Concurrency
///
/// Deposits (one per request, the hot path) are lock-free: one compare-and-swap on the
/// current slot's counter. Withdrawals (one per retry) take a short mutex, so that two retries
/// can never both spend the last token; a deposit racing with a withdrawal can only be counted
/// late, which denies a retry rather than allowing an extra one. So over any window the bound
/// above holds exactly.
pub struct Budget {
    ratio_ppm: u64,
    reserve_ppm: u64,
    ttl: Duration,
    slot_nanos: u64,
    start: Instant,
    deposits: [AtomicU64; SLOTS],
    withdrawals: Mutex<[(u32, u64); SLOTS]>,
}

/// A [`Budget`] configuration that was rejected.
#[derive(Clone, Debug, PartialEq)]
pub struct InvalidBudget(Invalid);

#[derive(Clone, Debug, PartialEq)]
enum Invalid {
    Ratio(f64),
    Ttl(Duration),
}

const SLOTS: usize = 10;
/// One retry, in millionths.
const UNIT: u64 = 1_000_000;
/// The largest ratio accepted: 1000 retries per request.
const MAX_RATIO: f64 = 1000.0;
const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(3600);

// === impl Budget ===

impl Budget {
    /// The window used by [`new`](Self::new): 10 seconds, as Linkerd's retry budgets.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

    /// A budget of `ratio` retries per original request plus `min_per_second` retries per
    /// second, over a 10 second window.
    ///
    /// # Errors
    ///
    /// See [`with_ttl`](Self::with_ttl).
    pub fn new(ratio: f64, min_per_second: u32) -> Result<Self, InvalidBudget> {
        Self::with_ttl(ratio, min_per_second, Self::DEFAULT_TTL)
    }

    /// A budget of `ratio` retries per original request plus `min_per_second` retries per
    /// second, over a window of `ttl`.
    ///
    /// # Errors
    ///
    /// [`InvalidBudget`] if `ratio` is NaN, infinite, negative or above 1000, or if `ttl` is
    /// under 1 second or over 1 hour.
    pub fn with_ttl(ratio: f64, min_per_second: u32, ttl: Duration) -> Result<Self, InvalidBudget> {
        if !ratio.is_finite() || !(0.0..=MAX_RATIO).contains(&ratio) {
            return Err(InvalidBudget(Invalid::Ratio(ratio)));
        }
        if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
            return Err(InvalidBudget(Invalid::Ttl(ttl)));
        }
        // Both are in range: ratio * 10^6 <= 10^9, ttl <= 3.6 * 10^12 ns.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ratio_ppm = (ratio * UNIT as f64).round() as u64;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        // min_per_second * ttl_seconds retries, in millionths: min * ttl_ms * 1000.
        let reserve_ppm = u64::from(min_per_second)
            .saturating_mul(ttl_ms)
            .saturating_mul(1000);
        let slot_nanos = u64::try_from(ttl.as_nanos() / SLOTS as u128).unwrap_or(u64::MAX);
        Ok(Self {
            ratio_ppm,
            reserve_ppm,
            ttl,
            slot_nanos: slot_nanos.max(1),
            start: clock::now(),
            deposits: Default::default(),
            withdrawals: Mutex::new([(0, 0); SLOTS]),
        })
    }

    /// The ratio actually applied: the configured one rounded to a millionth.
    pub fn effective_ratio(&self) -> f64 {
        self.ratio_ppm as f64 / UNIT as f64
    }

    /// The window length.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Records an original request.
    pub fn deposit(&self) {
        self.deposit_at(clock::now());
    }

    /// Takes one retry from the budget; `false` when none is left.
    pub fn try_withdraw(&self) -> bool {
        let mut withdrawals = self
            .withdrawals
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Read the clock under the lock, so withdrawals are recorded in time order.
        self.withdraw_locked(&mut withdrawals, clock::now())
    }

    /// How many retries a withdrawal could take right now.
    pub fn available(&self) -> u64 {
        let withdrawals = self
            .withdrawals
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let epoch = self.epoch(clock::now());
        let credit = self.credit(epoch);
        let spent =
            u128::from(Self::window_count(epoch, withdrawals.iter().copied())) * u128::from(UNIT);
        u64::try_from(credit.saturating_sub(spent) / u128::from(UNIT)).unwrap_or(u64::MAX)
    }

    fn epoch(&self, now: Instant) -> u32 {
        let nanos = now.saturating_duration_since(self.start).as_nanos();
        // Epochs wrap after 2^32 slots; window checks use wrapping differences.
        #[allow(clippy::cast_possible_truncation)]
        let epoch = (nanos / u128::from(self.slot_nanos)) as u32;
        epoch
    }

    fn deposit_at(&self, now: Instant) {
        let epoch = self.epoch(now);
        let slot = &self.deposits[epoch as usize % SLOTS];
        let mut current = slot.load(Ordering::Acquire);
        // Each failed exchange means another deposit landed: bounded by concurrent callers.
        loop {
            let (e, n) = unpack(current);
            let next = if e == epoch {
                pack(epoch, n.saturating_add(1))
            } else if epoch.wrapping_sub(e) < u32::MAX / 2 {
                // The slot holds an expired epoch: start it afresh.
                pack(epoch, 1)
            } else {
                // This caller's clock reading is older than the slot's: its deposit belongs
                // to a window that has already moved on. Dropping it only denies retries.
                return;
            };
            match slot.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    fn withdraw_locked(&self, withdrawals: &mut [(u32, u64); SLOTS], now: Instant) -> bool {
        let epoch = self.epoch(now);
        let spent = Self::window_count(epoch, withdrawals.iter().copied());
        let debit = (u128::from(spent) + 1) * u128::from(UNIT);
        if debit > self.credit(epoch) {
            return false;
        }
        let slot = &mut withdrawals[epoch as usize % SLOTS];
        if slot.0 == epoch {
            slot.1 += 1;
        } else {
            *slot = (epoch, 1);
        }
        true
    }

    /// Deposits of the window, as retry credit in millionths, plus the reserve.
    fn credit(&self, epoch: u32) -> u128 {
        let deposits = Self::window_count(
            epoch,
            self.deposits
                .iter()
                .map(|d| unpack(d.load(Ordering::Acquire)))
                .map(|(e, n)| (e, u64::from(n))),
        );
        u128::from(deposits) * u128::from(self.ratio_ppm) + u128::from(self.reserve_ppm)
    }

    fn window_count(epoch: u32, slots: impl Iterator<Item = (u32, u64)>) -> u64 {
        slots
            .filter(|(e, _)| (epoch.wrapping_sub(*e) as usize) < SLOTS)
            .map(|(_, n)| n)
            .sum()
    }
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("ratio", &self.effective_ratio())
            .field("min_per_second_ppm_ttl", &self.reserve_ppm)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn pack(epoch: u32, count: u32) -> u64 {
    (u64::from(epoch) << 32) | u64::from(count)
}

fn unpack(v: u64) -> (u32, u32) {
    // Truncation splits the two halves on purpose.
    #[allow(clippy::cast_possible_truncation)]
    let parts = ((v >> 32) as u32, v as u32);
    parts
}

// === impl InvalidBudget ===

impl fmt::Display for InvalidBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Invalid::Ratio(r) => write!(f, "retry budget ratio {r} is not a number in [0, 1000]"),
            Invalid::Ttl(t) => write!(f, "retry budget window {t:?} is not between 1s and 1h"),
        }
    }
}

impl std::error::Error for InvalidBudget {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn withdraw_at(b: &Budget, now: Instant) -> bool {
        let mut w = b.withdrawals.lock().unwrap();
        b.withdraw_locked(&mut w, now)
    }

    #[test]
    fn rejects_bad_config() {
        for ratio in [f64::NAN, f64::INFINITY, -0.1, 1000.5] {
            assert!(
                Budget::new(ratio, 1).is_err(),
                "ratio {ratio} must be rejected"
            );
        }
        for ttl in [
            Duration::ZERO,
            Duration::from_millis(999),
            Duration::from_secs(3601),
        ] {
            assert!(
                Budget::with_ttl(0.2, 1, ttl).is_err(),
                "ttl {ttl:?} must be rejected"
            );
        }
        let err = Budget::new(-1.0, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "retry budget ratio -1 is not a number in [0, 1000]"
        );
    }

    #[test]
    fn ratio_is_not_truncated() {
        // tower's TpsBudget would allow one retry per request for any ratio in (0.5, 1].
        let b = Budget::new(0.6, 0).unwrap();
        let now = b.start;
        for _ in 0..10 {
            b.deposit_at(now);
        }
        let allowed = (0..20).filter(|_| withdraw_at(&b, now)).count();
        assert_eq!(allowed, 6, "0.6 x 10 requests is 6 retries");
        assert!((b.effective_ratio() - 0.6).abs() < 1e-9, "effective ratio");
    }

    #[test]
    fn reserve_and_expiry() {
        let b = Budget::with_ttl(0.0, 2, Duration::from_secs(10)).unwrap();
        let t0 = b.start;
        let allowed = (0..100).filter(|_| withdraw_at(&b, t0)).count();
        assert_eq!(allowed, 20, "2 per second over a 10 s window");
        let later = t0 + Duration::from_secs(5);
        assert!(!withdraw_at(&b, later), "withdrawals still in the window");
        let after = t0 + Duration::from_secs(11);
        assert!(withdraw_at(&b, after), "old withdrawals expired");
    }

    #[test]
    fn deposits_expire() {
        let b = Budget::with_ttl(1.0, 0, Duration::from_secs(10)).unwrap();
        let t0 = b.start;
        for _ in 0..5 {
            b.deposit_at(t0);
        }
        assert!(
            withdraw_at(&b, t0 + Duration::from_secs(8)),
            "deposit still counts"
        );
        assert!(
            !withdraw_at(&b, t0 + Duration::from_secs(11)),
            "deposits older than the window no longer count"
        );
    }

    #[test]
    fn concurrent_withdrawals_never_overdraw() {
        let b = std::sync::Arc::new(Budget::new(0.5, 0).unwrap());
        for _ in 0..100 {
            b.deposit();
        }
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..100).filter(|_| b.try_withdraw()).count())
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 50, "exactly ratio x deposits across threads");
    }

    proptest! {
        /// Within one window, retries never exceed ratio x originals + min x ttl, and when
        /// every deposit comes first, exactly the floor of that is allowed.
        #[test]
        fn retries_are_bounded(
            ratio_milli in 0u32..3000,
            min_per_second in 0u32..5,
            ttl_s in 1u64..20,
            ops in proptest::collection::vec((any::<bool>(), 0u64..100), 0..400),
        ) {
            let ratio = f64::from(ratio_milli) / 1000.0;
            let ttl = Duration::from_secs(ttl_s);
            let b = Budget::with_ttl(ratio, min_per_second, ttl).unwrap();
            let t0 = b.start;
            // Spread the ops over the first slot so they share one window.
            let slot = ttl / 10;
            let (mut deposits, mut retries) = (0u64, 0u64);
            for (deposit, at) in &ops {
                let now = t0 + slot.mul_f64(*at as f64 / 101.0);
                if *deposit {
                    b.deposit_at(now);
                    deposits += 1;
                } else if withdraw_at(&b, now) {
                    retries += 1;
                }
                let bound = ratio * deposits as f64 + f64::from(min_per_second) * ttl_s as f64;
                prop_assert!(retries as f64 <= bound + 1e-9, "{} retries > bound {}", retries, bound);
            }
            // Now spend everything that is left: the total reaches the bound exactly.
            let end = t0 + slot.mul_f64(0.999);
            while withdraw_at(&b, end) {
                retries += 1;
            }
            let exact = (u128::from(deposits) * u128::from(ratio_milli) * 1000
                + u128::from(min_per_second) * u128::from(ttl_s) * 1_000_000) / 1_000_000;
            prop_assert_eq!(u128::from(retries), exact, "the budget is spent exactly");
        }

        /// Across windows: at every granted retry, the retries of the window (the current
        /// slot and the 9 before it) stay within its deposits x ratio + the reserve.
        #[test]
        fn sliding_window_bound(
            ops in proptest::collection::vec((any::<bool>(), 0u64..3000), 0..300),
        ) {
            let ttl = Duration::from_secs(10);
            let slot = ttl / 10;
            let b = Budget::with_ttl(0.25, 1, ttl).unwrap();
            let t0 = b.start;
            let mut now = t0;
            let mut events: Vec<(Instant, bool)> = Vec::new();
            for (deposit, step_ms) in ops {
                now += Duration::from_millis(step_ms);
                if deposit {
                    b.deposit_at(now);
                    events.push((now, true));
                } else if withdraw_at(&b, now) {
                    events.push((now, false));
                    let idx = now.duration_since(t0).as_nanos() / slot.as_nanos();
                    let first = u32::try_from(idx.saturating_sub(9)).unwrap();
                    let window_start = t0 + slot * first;
                    let (d, w) = events
                        .iter()
                        .filter(|(t, _)| *t >= window_start)
                        .fold((0u64, 0u64), |(d, w), (_, dep)| {
                            if *dep { (d + 1, w) } else { (d, w + 1) }
                        });
                    let bound = 0.25 * d as f64 + 10.0;
                    prop_assert!(w as f64 <= bound, "{} retries in the window > {}", w, bound);
                }
            }
        }
    }
}
