use std::{fmt, time::Duration};

/// The error returned by [`ExponentialBackoff::try_new`](crate::ExponentialBackoff::try_new)
/// when the bounds or the jitter ratio cannot describe a backoff.
///
/// Use the `is_*` predicates to tell the cases apart; the `Display` text names the offending
/// value.
#[derive(Clone, Debug, PartialEq)]
pub struct InvalidBackoff {
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    MinAboveMax { min: Duration, max: Duration },
    ZeroMax,
    Jitter(f64),
}

// === impl InvalidBackoff ===

impl InvalidBackoff {
    pub(crate) const fn min_above_max(min: Duration, max: Duration) -> Self {
        Self {
            kind: Kind::MinAboveMax { min, max },
        }
    }

    pub(crate) const fn zero_max() -> Self {
        Self {
            kind: Kind::ZeroMax,
        }
    }

    pub(crate) const fn jitter(jitter: f64) -> Self {
        Self {
            kind: Kind::Jitter(jitter),
        }
    }

    /// Returns `true` if the minimum backoff was greater than the maximum.
    #[must_use]
    pub const fn is_min_above_max(&self) -> bool {
        matches!(self.kind, Kind::MinAboveMax { .. })
    }

    /// Returns `true` if the maximum backoff was zero.
    #[must_use]
    pub const fn is_zero_max(&self) -> bool {
        matches!(self.kind, Kind::ZeroMax)
    }

    /// Returns `true` if the jitter ratio was NaN, infinite, or outside `[0, 1]`.
    #[must_use]
    pub const fn is_invalid_jitter(&self) -> bool {
        matches!(self.kind, Kind::Jitter(_))
    }
}

impl fmt::Display for InvalidBackoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::MinAboveMax { min, max } => write!(
                f,
                "minimum backoff {min:?} is greater than maximum backoff {max:?}"
            ),
            Kind::ZeroMax => f.write_str("maximum backoff must be greater than zero"),
            Kind::Jitter(jitter) => write!(
                f,
                "backoff jitter {jitter} is not a finite ratio between 0 and 1"
            ),
        }
    }
}

impl std::error::Error for InvalidBackoff {}
