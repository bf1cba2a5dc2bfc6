use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

/// A seedable random source shared by clones, for the router's ratios (mirror, failure
/// injection) and [`WeightedSplit`](crate::WeightedSplit)'s picks.
///
/// Each draw advances one shared atomic counter and mixes it with SplitMix64, so clones used
/// from many tasks neither lock nor repeat each other's draws, and a fixed seed replays the
/// same sequence in a single-threaded test.
#[derive(Clone, Debug)]
pub struct SharedRng(Arc<AtomicU64>);

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl SharedRng {
    /// A source that replays the same sequence for the same seed.
    pub fn seeded(seed: u64) -> Self {
        Self(Arc::new(AtomicU64::new(seed)))
    }

    /// A source seeded from the operating system's randomness.
    pub fn from_entropy() -> Self {
        Self::seeded(rand::random())
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform value in `[0, 1)`.
    pub fn next_f64(&self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly.
        #[allow(clippy::cast_precision_loss)]
        let v = (self.next_u64() >> 11) as f64;
        v * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform value in `[0, n)` (0 when `n` is 0).
    pub fn below(&self, n: u64) -> u64 {
        // Lemire's multiply-shift: the bias is below 2^-64 * n, far under any test's reach.
        let wide = u128::from(self.next_u64()) * u128::from(n);
        u64::try_from(wide >> 64).unwrap_or(0)
    }

    /// `true` with probability `ratio` (no draw when `ratio` is 0 or 1).
    pub fn chance(&self, ratio: f64) -> bool {
        if ratio >= 1.0 {
            true
        } else if ratio > 0.0 {
            self.next_f64() < ratio
        } else {
            false
        }
    }
}

impl Default for SharedRng {
    fn default() -> Self {
        Self::from_entropy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_sequences_replay_and_stay_in_range() {
        let a = SharedRng::seeded(7);
        let b = SharedRng::seeded(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64(), "same seed, same sequence");
        }
        for _ in 0..1000 {
            let f = a.next_f64();
            assert!((0.0..1.0).contains(&f), "f64 in [0, 1): {f}");
            assert!(a.below(10) < 10, "below stays below its bound");
        }
        assert_eq!(a.below(0), 0, "below(0) is 0");
        assert!(
            !a.chance(0.0) && a.chance(1.0),
            "ratios 0 and 1 are certain"
        );
    }
}
