use linkerd_http_classify::{BoxError, IsTimeout, ProxyError, chain};
use std::{error::Error, fmt, time::Duration};

/// Which attempt a request is (request extension): `Attempt(1)` for the original request,
/// `Attempt(n)` for retry `n - 1`.
///
/// The retry layer sets it on every attempt's request when a retry policy is present.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attempt(pub u32);

/// Why retries stopped while the policy still wanted one.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryStop {
    /// The policy's maximum number of retries was reached.
    LimitExceeded,
    /// The request body is larger than `max_request_bytes`, so it cannot be replayed.
    BodyTooLarge,
    /// The retry budget had no retry left.
    BudgetExhausted,
    /// The inner service was not ready for another attempt at once.
    NotReady,
    /// The request's [`Deadline`](linkerd_http_classify::Deadline) would have passed before
    /// the retry could start, or passed while an attempt was waiting for its response.
    DeadlinePassed,
}

/// What the retry layer did for one request (response extension; also carried by
/// [`RetryError`] when the request ended in an error).
///
/// Present on every response of a request that had a retry policy.
///
/// Metrics (DESIGN.md section 6) derive from it: `retry_requests` counts
/// [`retries`](Self::retries); `retry_successes` counts responses with at least one retry whose
/// final class is a success; `retry_limit_exceeded` counts
/// [`RetryStop::is_limit_exceeded`] and `retry_overflow` [`RetryStop::is_overflow`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct RetryOutcome {
    /// Attempts made, the original included (at least 1).
    pub attempts: u32,
    /// Set when the last attempt's result was retryable but no retry was made.
    pub stopped: Option<RetryStop>,
}

/// The error of a request with a retry policy: the last attempt's error (its
/// [`source`](Error::source)), with the [`RetryOutcome`].
///
/// It carries no [`ProxyError`] of its own, so
/// [`to_proxy_error`](linkerd_http_classify::to_proxy_error) and hyper see through it to the
/// attempt's error (a connect failure maps to 502, a reset keeps its `h2::Reason`).
#[derive(Debug)]
pub struct RetryError {
    outcome: RetryOutcome,
    source: BoxError,
}

/// A per-try timeout (`timeouts.backendRequest`) elapsed before the response headers.
///
/// Retryable; when it ends the request, its `source()` is
/// [`ProxyError::backend_request_timeout`] carrying `h2::Reason::CANCEL`, so the client gets a
/// 504 `backend request timeout` (or its HTTP/2 stream reset with `CANCEL`).
#[derive(Debug)]
pub struct PerTryTimeout {
    timeout: Duration,
    error: ProxyError,
}

/// The request's [`Deadline`](linkerd_http_classify::Deadline) passed while an attempt was
/// still waiting for its response (or, for a peeked gRPC response, its first body frame).
///
/// Not retried. Its `source()` is [`ProxyError::request_timeout`] carrying
/// `h2::Reason::CANCEL`: the client gets the 504 `request timeout` that a request-lifetime
/// timer above the retry layer (`linkerd-http-stream-timeouts`) would have produced at the
/// same instant, which lets that layer leave the wait for the headers to this one's timer.
#[derive(Debug)]
pub struct DeadlineExceeded {
    error: ProxyError,
}

// === impl RetryStop ===

impl RetryStop {
    /// Counted by `retry_overflow`: body too large, budget exhausted, or not ready.
    pub const fn is_overflow(self) -> bool {
        matches!(
            self,
            Self::BodyTooLarge | Self::BudgetExhausted | Self::NotReady
        )
    }

    /// Counted by `retry_limit_exceeded`: attempts exhausted, or the deadline stopped retries.
    pub const fn is_limit_exceeded(self) -> bool {
        matches!(self, Self::LimitExceeded | Self::DeadlinePassed)
    }

    /// A lower-case, space-separated description (`budget exhausted`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LimitExceeded => "retry limit exceeded",
            Self::BodyTooLarge => "request body too large to retry",
            Self::BudgetExhausted => "retry budget exhausted",
            Self::NotReady => "backend not ready for a retry",
            Self::DeadlinePassed => "deadline leaves no time to retry",
        }
    }
}

impl fmt::Display for RetryStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl RetryOutcome ===

impl RetryOutcome {
    /// Retries made: `attempts - 1`.
    pub const fn retries(&self) -> u32 {
        self.attempts.saturating_sub(1)
    }

    /// The outcome carried by a [`RetryError`] in `err`'s `source()` chain.
    pub fn from_error(err: &(dyn Error + 'static)) -> Option<Self> {
        chain(err).find_map(|e| e.downcast_ref::<RetryError>().map(RetryError::outcome))
    }
}

// === impl RetryError ===

impl RetryError {
    pub(crate) fn new(outcome: RetryOutcome, source: BoxError) -> Self {
        Self { outcome, source }
    }

    /// What the retry layer did before giving up.
    pub fn outcome(&self) -> RetryOutcome {
        self.outcome
    }

    /// The last attempt's error.
    pub fn into_source(self) -> BoxError {
        self.source
    }
}

impl fmt::Display for RetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.outcome.attempts;
        write!(
            f,
            "request failed after {n} attempt{}",
            if n == 1 { "" } else { "s" }
        )?;
        if let Some(stop) = self.outcome.stopped {
            write!(f, " ({stop})")?;
        }
        Ok(())
    }
}

impl Error for RetryError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

// === impl PerTryTimeout ===

impl PerTryTimeout {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            error: ProxyError::backend_request_timeout()
                .with_source(h2::Error::from(h2::Reason::CANCEL)),
        }
    }

    /// The per-try timeout that elapsed.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl fmt::Display for PerTryTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt timed out after {:?}", self.timeout)
    }
}

impl Error for PerTryTimeout {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.error)
    }
}

impl IsTimeout for PerTryTimeout {}

// === impl DeadlineExceeded ===

impl DeadlineExceeded {
    pub(crate) fn new() -> Self {
        Self {
            error: ProxyError::request_timeout().with_source(h2::Error::from(h2::Reason::CANCEL)),
        }
    }

    /// Whether `err`'s `source()` chain holds a `DeadlineExceeded`.
    pub fn is_in(err: &(dyn Error + 'static)) -> bool {
        chain(err).any(|e| e.is::<Self>())
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request's deadline passed before its response")
    }
}

impl Error for DeadlineExceeded {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.error)
    }
}

impl IsTimeout for DeadlineExceeded {}
