use crate::{Budget, PerTryTimeout};
use http::{Extensions, HeaderMap, HeaderName, StatusCode, request};
use linkerd_exp_backoff::ExponentialBackoff;
use linkerd_http_classify::{
    GrpcCode, InvalidGrpcCode, ProxyErrorKind, Pushback, StatusRanges, chain, dropped::DropNote,
    find_h2_reason, find_proxy_error, grpc_retry_pushback, grpc_status, is_connect_error, is_grpc,
    retry_after,
};

/// What a request dropped during a backoff notes of its last attempt (see
/// [`Policy::note_last_attempt`]).
pub type NoteLastAttempt = fn(Result<&Extensions, &(dyn Error + 'static)>, &mut DropNote);
use std::{error::Error, fmt, sync::Arc, time::Duration, time::SystemTime};

/// The default cap on a replayable request body: 64 KiB (`maxRequestBytes`).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;

/// What a [`Policy`] makes of one attempt's result.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Return this result to the caller.
    Accept,
    /// Retry, if the limits allow it.
    Retry {
        /// A wait the server asked for (`Retry-After`, `grpc-retry-pushback-ms`), replacing
        /// the backoff delay; the retry layer clamps it to the backoff's maximum.
        after: Option<Duration>,
    },
}

/// A retry policy, read by [`Retry`](crate::Retry) from each request's extensions.
///
/// [`RetryPolicy`] is the ready-made implementation; implement this trait for other rules
/// (for example, to retry only idempotent methods). Every method has a documented default
/// except the limits and the response classification.
pub trait Policy: Clone + Send + Sync + 'static {
    /// The maximum number of retries (Gateway API `attempts`, GEP-1731): `0` never retries.
    fn max_retries(&self) -> u32;

    /// The wait before each retry: `backoff.delay(r)` before retry `r + 1`.
    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBackoff::DEFAULT
    }

    /// The largest request body kept for replays.
    fn max_request_bytes(&self) -> usize {
        DEFAULT_MAX_REQUEST_BYTES
    }

    /// A timeout for each attempt, until its response headers (`timeouts.backendRequest`).
    fn per_try_timeout(&self) -> Option<Duration> {
        None
    }

    /// The retry budget, if any.
    fn budget(&self) -> Option<&Budget> {
        None
    }

    /// A header set to the attempt number on retries (attempt 2 onwards).
    fn attempt_header(&self) -> Option<&HeaderName> {
        None
    }

    /// Whether responses to a request with these headers should have their trailers peeked
    /// (see [`PeekTrailersBody`](crate::PeekTrailersBody)) before [`classify_response`].
    ///
    /// [`classify_response`]: Self::classify_response
    fn peek_trailers(&self, request_headers: &HeaderMap) -> bool {
        let _ = request_headers;
        false
    }

    /// The request extensions that retried attempts carry (each also gets its own
    /// [`Attempt`](crate::Attempt)), from the original request's head. The retry layer keeps
    /// them, beside a copy of the head, for every request it may retry, so this runs once per
    /// request, retried or not. The default copies all of `head.extensions`; a policy that
    /// knows which extensions the services below the retry layer read can keep just those
    /// and save the copies.
    fn replay_extensions(&self, head: &request::Parts) -> Extensions {
        head.extensions.clone()
    }

    /// What a request dropped unfinished during a backoff (a client gone, a timer above)
    /// notes of its last attempt (see `linkerd_http_classify::dropped`), from that attempt's
    /// response extensions or its error: for example the backend it went to, which the
    /// service below noted only while the attempt was in flight. The default notes nothing.
    fn note_last_attempt(
        &self,
        last: Result<&Extensions, &(dyn Error + 'static)>,
        note: &mut DropNote,
    ) {
        let _ = (last, note);
    }

    /// Classifies a response from its status, headers and peeked trailers.
    fn classify_response(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        trailers: Option<&HeaderMap>,
    ) -> Decision;

    /// Classifies an error returned instead of a response. The default is
    /// [`is_retryable_error`].
    fn classify_error(&self, error: &(dyn Error + 'static)) -> Decision {
        if is_retryable_error(error) {
            Decision::Retry { after: None }
        } else {
            Decision::Accept
        }
    }
}

/// A shared policy: each request's future holds a reference count, not a copy.
impl<P: Policy> Policy for std::sync::Arc<P> {
    fn max_retries(&self) -> u32 {
        (**self).max_retries()
    }

    fn backoff(&self) -> ExponentialBackoff {
        (**self).backoff()
    }

    fn max_request_bytes(&self) -> usize {
        (**self).max_request_bytes()
    }

    fn per_try_timeout(&self) -> Option<Duration> {
        (**self).per_try_timeout()
    }

    fn budget(&self) -> Option<&Budget> {
        (**self).budget()
    }

    fn attempt_header(&self) -> Option<&HeaderName> {
        (**self).attempt_header()
    }

    fn peek_trailers(&self, request_headers: &HeaderMap) -> bool {
        (**self).peek_trailers(request_headers)
    }

    fn replay_extensions(&self, head: &request::Parts) -> Extensions {
        (**self).replay_extensions(head)
    }

    fn note_last_attempt(
        &self,
        last: Result<&Extensions, &(dyn Error + 'static)>,
        note: &mut DropNote,
    ) {
        (**self).note_last_attempt(last, note);
    }

    fn classify_response(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        trailers: Option<&HeaderMap>,
    ) -> Decision {
        (**self).classify_response(status, headers, trailers)
    }

    fn classify_error(&self, error: &(dyn Error + 'static)) -> Decision {
        (**self).classify_error(error)
    }
}

/// A set of gRPC status codes (those the gRPC spec defines, 0 to 16).
#[derive(Copy, Clone, Default, PartialEq, Eq, Hash)]
pub struct GrpcCodes(u32);

/// The ready-made [`Policy`]: the route `retry` block of the proxy's config (DESIGN.md 4.1).
///
/// Request extension: insert a `RetryPolicy` into a request's extensions to retry it; the
/// retry layer removes it (so an inner retry layer does not retry again). Cloning is cheap:
/// no allocation (the budget is shared through an [`Arc`]).
///
/// Retried: a response whose status is in [`codes`](Self::codes); a gRPC response whose
/// `grpc-status` (in the headers, or in peeked trailers) is in
/// [`grpc_codes`](Self::grpc_codes), unless it carries a negative `grpc-retry-pushback-ms`;
/// and the errors of [`is_retryable_error`] (connect failures, `REFUSED_STREAM`, per-try
/// timeouts), whatever the codes. `Retry-After` on a 429 or 503 and
/// `grpc-retry-pushback-ms` replace the backoff delay.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Maximum retries (`attempts`). Default 1.
    pub max_retries: u32,
    /// Retryable HTTP statuses (`codes`). Default none.
    pub codes: StatusRanges,
    /// Retryable gRPC codes (`codes` of a gRPC route). Default none.
    pub grpc_codes: GrpcCodes,
    /// Backoff between attempts (`backoff`, `maxBackoff`). Default 25 ms to 250 ms.
    pub backoff: ExponentialBackoff,
    /// Largest request body kept for replays (`maxRequestBytes`). Default 64 KiB.
    pub max_request_bytes: usize,
    /// Per-attempt timeout until response headers (`timeouts.backendRequest`). Default none.
    pub per_try_timeout: Option<Duration>,
    /// The retry budget shared by the route's requests. Default none.
    pub budget: Option<Arc<Budget>>,
    /// Attempt-count header on retries. Default none.
    pub attempt_header: Option<HeaderName>,
    /// The request extensions retried attempts carry ([`Policy::replay_extensions`]):
    /// `None` (the default) copies all of them.
    pub replay_extensions: Option<fn(&request::Parts) -> Extensions>,
    /// What a request dropped during a backoff notes of its last attempt
    /// ([`Policy::note_last_attempt`]). Default none.
    pub note_last_attempt: Option<NoteLastAttempt>,
}

/// Whether an error is worth another attempt: a connection failure
/// ([`is_connect_error`]), an HTTP/2 `REFUSED_STREAM` (the server did not process the
/// request), or a [`PerTryTimeout`]. Never a load shed or "no endpoints" (retrying a backend
/// that sheds load or has no endpoint adds load or fails the same way).
pub fn is_retryable_error(error: &(dyn Error + 'static)) -> bool {
    if let Some(p) = find_proxy_error(error)
        && matches!(
            p.kind(),
            ProxyErrorKind::LoadShed | ProxyErrorKind::NoEndpoints
        )
    {
        return false;
    }
    chain(error).any(|e| e.is::<PerTryTimeout>())
        || is_connect_error(error)
        || find_h2_reason(error) == Some(h2::Reason::REFUSED_STREAM)
}

// === impl RetryPolicy ===

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 1,
            codes: StatusRanges::empty(),
            grpc_codes: GrpcCodes::empty(),
            backoff: ExponentialBackoff::DEFAULT,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            per_try_timeout: None,
            budget: None,
            attempt_header: None,
            replay_extensions: None,
            note_last_attempt: None,
        }
    }
}

impl Policy for RetryPolicy {
    fn max_retries(&self) -> u32 {
        self.max_retries
    }

    fn backoff(&self) -> ExponentialBackoff {
        self.backoff
    }

    fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }

    fn per_try_timeout(&self) -> Option<Duration> {
        self.per_try_timeout
    }

    fn budget(&self) -> Option<&Budget> {
        self.budget.as_deref()
    }

    fn attempt_header(&self) -> Option<&HeaderName> {
        self.attempt_header.as_ref()
    }

    fn peek_trailers(&self, request_headers: &HeaderMap) -> bool {
        !self.grpc_codes.is_empty() && is_grpc(request_headers)
    }

    fn replay_extensions(&self, head: &request::Parts) -> Extensions {
        match self.replay_extensions {
            Some(keep) => keep(head),
            None => head.extensions.clone(),
        }
    }

    fn note_last_attempt(
        &self,
        last: Result<&Extensions, &(dyn Error + 'static)>,
        note: &mut DropNote,
    ) {
        if let Some(note_last) = self.note_last_attempt {
            note_last(last, note);
        }
    }

    fn classify_response(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        trailers: Option<&HeaderMap>,
    ) -> Decision {
        if !self.grpc_codes.is_empty() && is_grpc(headers) {
            let code = grpc_status(headers).or_else(|| trailers.and_then(grpc_status));
            if code.is_some_and(|c| self.grpc_codes.contains(c)) {
                let pushback = trailers
                    .and_then(grpc_retry_pushback)
                    .or_else(|| grpc_retry_pushback(headers));
                return match pushback {
                    Some(Pushback::DoNotRetry) => Decision::Accept,
                    Some(Pushback::After(d)) => Decision::Retry { after: Some(d) },
                    None => Decision::Retry { after: None },
                };
            }
        }
        if self.codes.contains(status) {
            let after = retry_after(status, headers, SystemTime::now(), self.backoff.max());
            return Decision::Retry { after };
        }
        Decision::Accept
    }
}

// === impl GrpcCodes ===

impl GrpcCodes {
    /// The empty set.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// Adds `code`; codes the gRPC spec does not define are ignored.
    #[must_use]
    pub const fn with(self, code: GrpcCode) -> Self {
        if code.is_defined() {
            Self(self.0 | 1 << code.as_u32())
        } else {
            self
        }
    }

    /// Whether `code` is in the set.
    pub const fn contains(&self, code: GrpcCode) -> bool {
        code.is_defined() && self.0 & (1 << code.as_u32()) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// Parses config names: lower-case kebab (`deadline-exceeded`), UPPER_SNAKE, or numbers.
    ///
    /// # Errors
    ///
    /// The first name [`GrpcCode::from_name`] rejects.
    pub fn from_names<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, InvalidGrpcCode> {
        names.into_iter().try_fold(Self::empty(), |set, name| {
            Ok(set.with(GrpcCode::from_name(name)?))
        })
    }
}

impl FromIterator<GrpcCode> for GrpcCodes {
    fn from_iter<I: IntoIterator<Item = GrpcCode>>(iter: I) -> Self {
        iter.into_iter().fold(Self::empty(), Self::with)
    }
}

impl fmt::Debug for GrpcCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(
                (0..=16)
                    .map(GrpcCode::from_u32)
                    .filter(|c| self.contains(*c)),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use linkerd_http_classify::ProxyError;

    fn grpc_headers(status: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        if let Some(s) = status {
            h.insert("grpc-status", HeaderValue::from_static(s));
        }
        h
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            codes: StatusRanges::empty().with_range(502, 504),
            grpc_codes: GrpcCodes::from_names(["unavailable", "cancelled"]).unwrap(),
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn statuses() {
        let p = policy();
        let none = HeaderMap::new();
        for (status, retry) in [
            (200, false),
            (500, false),
            (502, true),
            (503, true),
            (504, true),
        ] {
            let d = p.classify_response(StatusCode::from_u16(status).unwrap(), &none, None);
            assert_eq!(d != Decision::Accept, retry, "status {status}");
        }
    }

    #[test]
    fn retry_after_replaces_backoff() {
        let p = policy();
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("1"));
        assert_eq!(
            p.classify_response(StatusCode::SERVICE_UNAVAILABLE, &h, None),
            Decision::Retry {
                after: Some(p.backoff.max())
            },
            "Retry-After is clamped to the maximum backoff"
        );
    }

    #[test]
    fn grpc_codes_in_headers_and_trailers() {
        let p = policy();
        let ok = StatusCode::OK;
        assert_eq!(
            p.classify_response(ok, &grpc_headers(Some("14")), None),
            Decision::Retry { after: None },
            "trailers-only UNAVAILABLE"
        );
        let trailers = grpc_headers(Some("1"));
        assert_eq!(
            p.classify_response(ok, &grpc_headers(None), Some(&trailers)),
            Decision::Retry { after: None },
            "CANCELLED in trailers"
        );
        let trailers = grpc_headers(Some("0"));
        assert_eq!(
            p.classify_response(ok, &grpc_headers(None), Some(&trailers)),
            Decision::Accept,
            "OK is not retried"
        );
        let mut trailers = grpc_headers(Some("14"));
        trailers.insert("grpc-retry-pushback-ms", HeaderValue::from_static("-1"));
        assert_eq!(
            p.classify_response(ok, &grpc_headers(None), Some(&trailers)),
            Decision::Accept,
            "negative pushback means do not retry"
        );
        trailers.insert("grpc-retry-pushback-ms", HeaderValue::from_static("40"));
        assert_eq!(
            p.classify_response(ok, &grpc_headers(None), Some(&trailers)),
            Decision::Retry {
                after: Some(Duration::from_millis(40))
            },
        );
        assert!(
            p.peek_trailers(&grpc_headers(None)),
            "gRPC requests are peeked"
        );
        assert!(!p.peek_trailers(&HeaderMap::new()), "plain HTTP is not");
        assert!(
            !RetryPolicy::default().peek_trailers(&grpc_headers(None)),
            "no codes, no peek"
        );
    }

    #[test]
    fn errors() {
        assert!(is_retryable_error(&PerTryTimeout::new(
            Duration::from_secs(1)
        )));
        assert!(is_retryable_error(&h2::Error::from(
            h2::Reason::REFUSED_STREAM
        )));
        assert!(!is_retryable_error(&h2::Error::from(h2::Reason::CANCEL)));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(is_retryable_error(&refused), "connection refused");
        assert!(
            !is_retryable_error(&ProxyError::load_shed()),
            "never a load shed"
        );
        assert!(
            !is_retryable_error(&ProxyError::no_endpoints().with_source(refused)),
            "never no-endpoints, even over a connect error"
        );
        assert!(is_retryable_error(&ProxyError::connect_failed()));
    }

    #[test]
    fn grpc_code_sets() {
        let set = GrpcCodes::from_names(["deadline-exceeded", "RESOURCE_EXHAUSTED", "13"]).unwrap();
        assert!(set.contains(GrpcCode::DEADLINE_EXCEEDED));
        assert!(set.contains(GrpcCode::RESOURCE_EXHAUSTED));
        assert!(set.contains(GrpcCode::INTERNAL));
        assert!(!set.contains(GrpcCode::OK));
        assert!(
            !set.contains(GrpcCode::from_u32(99)),
            "undefined codes are never in a set"
        );
        assert!(GrpcCodes::from_names(["nope"]).is_err());
        assert_eq!(
            format!("{set:?}"),
            "{DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL}"
        );
    }
}
