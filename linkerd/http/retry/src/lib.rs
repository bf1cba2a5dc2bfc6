//! Body-aware HTTP retries for Tower: replayable request bodies, gRPC trailer peeking,
//! backoff, per-try timeouts, deadlines and retry budgets.
//!
//! ```
//! use bytes::Bytes;
//! use http::Request;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use linkerd_http_classify::StatusRanges;
//! use linkerd_http_retry::{ReplayBody, RetryLayer, RetryOutcome, RetryPolicy, RetryStop};
//! use linkerd_http_test_util::TestServer;
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // A backend that answers 503 to every request (it honours `x-test-status`).
//! let backend = TestServer::backend().await?;
//!
//! // The client sends `ReplayBody<B>`: the retry layer wraps each request body.
//! let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>();
//! let svc = ServiceBuilder::new().layer(RetryLayer::new()).service(client);
//!
//! // The policy travels with the request: requests without one pass through untouched.
//! let mut policy = RetryPolicy::default();
//! policy.codes = StatusRanges::empty().with_range(503, 503);
//! policy.max_retries = 2; // Gateway API `attempts`: retries, not attempts
//! let mut req = Request::post(format!("http://{}/orders", backend.addr()))
//!     .header("x-test-status", "503")
//!     .body(Full::new(Bytes::from_static(b"{\"item\": 1}")))?;
//! req.extensions_mut().insert(policy);
//!
//! let rsp = svc.oneshot(req).await?;
//! assert_eq!(rsp.status(), 503, "still failing after the retries: the last answer");
//! let outcome = *rsp.extensions().get::<RetryOutcome>().expect("set with a policy");
//! assert_eq!(outcome.attempts, 3);
//! assert_eq!(outcome.retries(), 2);
//! assert_eq!(outcome.stopped, Some(RetryStop::LimitExceeded));
//! // Every attempt carried the same body.
//! assert!(backend.requests().iter().all(|r| r.body == "{\"item\": 1}"));
//! # Ok(())
//! # }
//! ```
//!
//! # What is retried, and what is not
//!
//! Only requests that carry a policy in their extensions are retried; choosing which routes
//! get one is the application's job. Retrying sends the request again, so a policy belongs on
//! requests that are safe to repeat: idempotent methods, or APIs whose servers de-duplicate.
//! The layer itself does not look at the method.
//!
//! Retried, within the policy's limits:
//! - responses whose status the policy lists (`codes`), e.g. 502, 503, 504: the backend
//!   answered, but asked (or is known) to be asked again;
//! - gRPC responses whose `grpc-status`, in the headers or in trailers peeked as
//!   [`PeekTrailersBody`] describes, the policy lists (`cancelled`, `deadline-exceeded`,
//!   `internal`, `resource-exhausted`, `unavailable`, ...), unless the server sent a negative
//!   `grpc-retry-pushback-ms`;
//! - whenever a policy is present, whatever its codes: connection failures (the request never
//!   reached a server), HTTP/2 `REFUSED_STREAM` (the server guarantees it did not process the
//!   stream), and the per-try timeout ([`PerTryTimeout`]).
//!
//! Never retried:
//! - a load shed ([`ProxyErrorKind::LoadShed`](linkerd_http_classify::ProxyErrorKind)) or "no
//!   endpoints": retrying adds load exactly where there is none to spare, or fails the same way;
//! - other errors (resets with other reasons, protocol errors, errors of the request body);
//! - a request whose body passed `max_request_bytes` (default 64 KiB): it is sent once, in
//!   full, and not kept ([`RetryStop::BodyTooLarge`]);
//! - anything after the response headers (and peeked trailers) were returned: a response
//!   whose body fails midway, or a streaming response whose status arrives later, is the
//!   caller's. The decision is made on the headers (plus peeked trailers), so the response
//!   body is never buffered.
//!
//! # Configuration
//!
//! Per request, through the policy (see [`RetryPolicy`] for the ready-made one and
//! [`Policy`] to write others):
//! - `max_retries`: the maximum number of retries (GEP-1731 `attempts`);
//! - backoff: before retry `r` (from 1) the layer waits `backoff.delay(r - 1)` (so at least
//!   `min`, at most `max`: see [`linkerd_exp_backoff`]), or, instead, the server's
//!   `Retry-After` (on 429 and 503) or `grpc-retry-pushback-ms`, clamped to the backoff's
//!   `max`;
//! - `max_request_bytes`: the replay buffer cap ([`ReplayBody`]);
//! - `per_try_timeout`: bounds each attempt until its response headers (and peeked trailers);
//! - `budget`: a shared [`Budget`]; every original request deposits, every retry withdraws;
//! - `attempt_header`: a request header set to `n` on attempt `n > 1` (off by default).
//!
//! A [`Deadline`](linkerd_http_classify::Deadline) in the request extensions (written by
//! `linkerd-http-stream-timeouts`) bounds all attempts and backoff: a retry whose backoff
//! would end at or past the deadline does not start, and no backoff sleeps past it
//! ([`RetryStop::DeadlinePassed`]). An attempt still waiting for its response when the
//! deadline passes is cancelled and the request fails with [`DeadlineExceeded`] (504
//! `request timeout`, not retried; its outcome says `DeadlinePassed`): each attempt's timer ends at its per-try timeout or the
//! deadline, whichever comes first, so the stream-timeouts layer above need not run a timer of
//! its own until the response headers
//! (`StreamTimeoutsLayer::inner_enforces_deadline`).
//!
//! # Extensions
//!
//! Reads, on requests: the policy `P` (by default [`RetryPolicy`]), which it **removes** so
//! that a nested retry layer does not multiply attempts; [`Deadline`](linkerd_http_classify::Deadline).
//!
//! Writes: [`Attempt`] on each attempt's request (1 for the original); [`RetryOutcome`] on
//! the response (attempts made and, if retries stopped while the policy wanted one, why).
//! A retry of a request carrying `grpc-timeout` and a [`Deadline`](linkerd_http_classify::Deadline)
//! says the time left in its `grpc-timeout` (the first attempt's value would promise the
//! server more time than the request has).
//! Both only for requests with a policy: requests without one are passed through with no
//! buffering, no extension and no allocation.
//!
//! Metrics are derived from [`RetryOutcome`]: retries ([`RetryOutcome::retries`]), retry
//! successes (retries > 0, a successful final class and no stop reason), limit exceeded
//! ([`RetryStop::is_limit_exceeded`]) and overflow ([`RetryStop::is_overflow`]).
//!
//! # Errors
//!
//! The layer's error type is [`BoxError`](linkerd_http_classify::BoxError). Without a policy,
//! the inner error is returned unchanged. With one, the last attempt's error is wrapped in a
//! [`RetryError`] that carries the [`RetryOutcome`] and returns the attempt's error from
//! `source()`; it holds no [`ProxyError`](linkerd_http_classify::ProxyError) of its own, so
//! [`to_proxy_error`](linkerd_http_classify::to_proxy_error) maps a final connect failure to
//! 502 `connect failed`, a reset to its reason, and a final [`PerTryTimeout`] (whose source is
//! `ProxyError::backend_request_timeout()`) to 504 `backend request timeout`.
//!
//! # Readiness
//!
//! `poll_ready` forwards to the inner service. `call` takes the ready service for the first
//! attempt and leaves a clone in its place. Before each retry, the future polls its service's
//! `poll_ready` **once**: a retry only waits for the inner service if it is ready now;
//! otherwise (Pending, or an error) the retry is an overflow ([`RetryStop::NotReady`]) and the
//! last response is returned. In the proxy "not ready" means the backend is failing fast (no
//! ready endpoint), where waiting would only delay the answer the caller already has.
//!
//! While it backs off, the future keeps the last retryable response (its body unread), so it
//! can return it when no retry can start; that response is dropped when the retry is sent.
//! Per-try timeouts and backoff use the tokio timer: the layer must run inside a tokio
//! runtime with time enabled when a policy sets them.
//!
//! # Cancellation
//!
//! Dropping the response future drops the attempt in flight and any backoff timer; a budget
//! token already withdrawn for a retry that never started is not returned. Dropping a
//! [`ReplayBody`] clone returns its state to the others, so an attempt that dropped its
//! request body early never blocks the next one.
//!
//! # Costs
//!
//! Without a policy: none beyond moving the request (no allocation). With one: an `Arc` for
//! the replay buffer, the buffered chunks' bookkeeping (for `Bytes` data, reference counts:
//! the bytes themselves are not copied), and a copy of the request head for the next attempt
//! (made up front, since the inner service consumes the request). See `benches/`.

mod budget;
mod future;
mod head;
mod layer;
mod outcome;
mod peek;
mod policy;
mod replay;

pub use budget::{Budget, InvalidBudget};
pub use future::ResponseFuture;
pub use head::PackedHead;
pub use layer::{Retry, RetryLayer};
pub use outcome::{Attempt, DeadlineExceeded, PerTryTimeout, RetryError, RetryOutcome, RetryStop};
pub use peek::{PeekTrailers, PeekTrailersBody};
pub use policy::{
    DEFAULT_MAX_REQUEST_BYTES, Decision, GrpcCodes, NoteLastAttempt, Policy, RetryPolicy,
    is_retryable_error,
};
pub use replay::{ReplayBody, ReplayError};
