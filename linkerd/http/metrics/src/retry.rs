use http::Extensions;
use linkerd_http_retry::RetryOutcome;
use std::error::Error;

/// What the route metrics need from a retry layer: attempts made and why retries stopped.
///
/// A mirror of the retry crate's `RetryOutcome`, so this crate does not depend on it; the
/// application maps one to the other in its [`ExtractRetry`] (a closure will do).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RetrySummary {
    /// Attempts made, the first included.
    pub attempts: u32,
    /// Set when the last result was retryable but no retry was made.
    pub stopped: Option<RetryStopKind>,
}

/// Why retries stopped, grouped as the metrics count them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RetryStopKind {
    /// Attempts exhausted, or the deadline stopped further retries
    /// (`retry_limit_exceeded_total`).
    LimitExceeded,
    /// Budget exhausted, body over `maxRequestBytes`, or backend not ready
    /// (`retry_overflow_total`).
    Overflow,
}

/// Reads a [`RetrySummary`] from a response's extensions (or from an error).
///
/// Implemented for closures `Fn(&Extensions) -> Option<RetrySummary>`. The default,
/// [`ReadRetrySummary`], reads `linkerd-http-retry`'s `RetryOutcome` (response extension, or
/// its `RetryError` in an error's `source()` chain), else a `RetrySummary` extension.
pub trait ExtractRetry: Clone + Send + Sync + 'static {
    /// The retry summary carried by a response.
    fn retry_of_response(&self, extensions: &Extensions) -> Option<RetrySummary>;

    /// The retry summary carried by an error (none by default).
    fn retry_of_error(&self, _err: &(dyn Error + 'static)) -> Option<RetrySummary> {
        None
    }
}

/// The default [`ExtractRetry`]: reads `linkerd_http_retry::RetryOutcome` from response
/// extensions or from a `RetryError` in the error chain; else a [`RetrySummary`] response
/// extension (for retry layers other than `linkerd-http-retry`).
#[derive(Copy, Clone, Debug, Default)]
pub struct ReadRetrySummary;

impl ExtractRetry for ReadRetrySummary {
    fn retry_of_response(&self, extensions: &Extensions) -> Option<RetrySummary> {
        extensions
            .get::<RetryOutcome>()
            .map(|o| RetrySummary::from(*o))
            .or_else(|| extensions.get::<RetrySummary>().copied())
    }

    fn retry_of_error(&self, err: &(dyn Error + 'static)) -> Option<RetrySummary> {
        RetryOutcome::from_error(err).map(RetrySummary::from)
    }
}

impl From<RetryOutcome> for RetrySummary {
    fn from(o: RetryOutcome) -> Self {
        let stopped = o.stopped.and_then(|s| {
            if s.is_limit_exceeded() {
                Some(RetryStopKind::LimitExceeded)
            } else if s.is_overflow() {
                Some(RetryStopKind::Overflow)
            } else {
                None
            }
        });
        Self {
            attempts: o.attempts,
            stopped,
        }
    }
}

impl<F> ExtractRetry for F
where
    F: Fn(&Extensions) -> Option<RetrySummary> + Clone + Send + Sync + 'static,
{
    fn retry_of_response(&self, extensions: &Extensions) -> Option<RetrySummary> {
        self(extensions)
    }
}
