//! The retry layer over in-memory services and scripted bodies, on paused time.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Version};
use http_body::Body as _;
use http_body_util::Full;
use linkerd_exp_backoff::ExponentialBackoff;
use linkerd_http_classify::{
    BoxError, Deadline, ProxyError, ProxyErrorKind, StatusRanges,
    dropped::{self, CutShort},
    is_timeout, to_proxy_error,
};
use linkerd_http_retry::{
    Attempt, Budget, GrpcCodes, PeekTrailersBody, ReplayBody, Retry, RetryLayer, RetryOutcome,
    RetryPolicy, RetryStop,
};
use linkerd_http_test_util::{MockBody, collect};
use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

type Rsp = Response<MockBody>;
type Fut = Pin<Box<dyn Future<Output = Result<Rsp, BoxError>> + Send>>;

type Log = Arc<Mutex<Vec<Seen>>>;

/// The scripted inner service.
trait Inner:
    Service<Request<ReplayBody<MockBody>>, Response = Rsp, Error = BoxError, Future = Fut> + Clone
{
}

impl<S> Inner for S where
    S: Service<Request<ReplayBody<MockBody>>, Response = Rsp, Error = BoxError, Future = Fut>
        + Clone
{
}

/// What the inner service saw of one attempt.
#[derive(Clone, Debug)]
struct Seen {
    attempt: Option<u32>,
    at: Instant,
    method: http::Method,
    uri: http::Uri,
    version: Version,
    headers: HeaderMap,
    body: Result<Bytes, String>,
    trailers: Option<HeaderMap>,
}

/// A service that records each attempt (reading its body in full) and answers with
/// `reply(attempt_number)`.
fn scripted<F>(reply: F) -> (impl Inner, Log)
where
    F: Fn(u32) -> Fut + Send + Sync + 'static,
{
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let reply = Arc::new(reply);
    let svc = service_fn(move |req: Request<ReplayBody<MockBody>>| -> Fut {
        let log = log.clone();
        let reply = reply.clone();
        Box::pin(async move {
            let at = Instant::now();
            let attempt = req.extensions().get::<Attempt>().map(|a| a.0);
            let (parts, body) = req.into_parts();
            let (body, trailers) = match collect(body).await {
                Ok(c) => (Ok(c.data), c.trailers),
                Err(e) => (Err(e.to_string()), None),
            };
            let n = {
                let mut log = log.lock().unwrap();
                log.push(Seen {
                    attempt,
                    at,
                    method: parts.method,
                    uri: parts.uri,
                    version: parts.version,
                    headers: parts.headers,
                    body,
                    trailers,
                });
                u32::try_from(log.len()).unwrap()
            };
            reply(n).await
        })
    });
    (svc, seen)
}

fn status(code: u16) -> Fut {
    Box::pin(async move {
        Ok(Response::builder()
            .status(code)
            .body(MockBody::new().data("rsp"))
            .unwrap())
    })
}

fn fail(error: impl Into<BoxError>) -> Fut {
    let error = error.into();
    Box::pin(async move { Err(error) })
}

fn policy(codes: &[u16], retries: u32) -> RetryPolicy {
    let mut p = RetryPolicy::default();
    p.codes = codes
        .iter()
        .fold(StatusRanges::empty(), |r, c| r.with_range(*c, *c));
    p.max_retries = retries;
    p
}

fn request(body: MockBody, policy: Option<RetryPolicy>) -> Request<MockBody> {
    let mut req = Request::post("http://example.test/").body(body).unwrap();
    if let Some(p) = policy {
        req.extensions_mut().insert(p);
    }
    req
}

fn outcome<B>(rsp: &Response<B>) -> RetryOutcome {
    *rsp.extensions()
        .get::<RetryOutcome>()
        .expect("responses of requests with a policy carry a RetryOutcome")
}

#[tokio::test(start_paused = true)]
async fn no_policy_passes_through() {
    let (svc, seen) = scripted(|_| status(503));
    let svc = RetryLayer::new().layer(svc);
    let rsp = svc
        .oneshot(request(MockBody::new().data("x"), None))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 503, "no policy: no retry");
    assert!(
        rsp.extensions().get::<RetryOutcome>().is_none(),
        "no outcome without a policy"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].attempt, None,
        "no Attempt extension without a policy"
    );
    assert_eq!(seen[0].body.as_deref(), Ok(&b"x"[..]));
}

#[tokio::test(start_paused = true)]
async fn retries_with_the_same_body_then_succeeds() {
    let (svc, seen) = scripted(|n| status(if n == 1 { 503 } else { 200 }));
    let mut p = policy(&[503], 3);
    p.attempt_header = Some(HeaderName::from_static("x-attempt"));
    let mut trailers = HeaderMap::new();
    trailers.insert("x-t", HeaderValue::from_static("1"));
    let body = MockBody::new()
        .data("hel")
        .data("lo")
        .trailers(trailers.clone());
    let rsp = Retry::new(svc)
        .oneshot(request(body, Some(p)))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200, "the retry's answer is returned");
    assert_eq!(
        outcome(&rsp),
        RetryOutcome {
            attempts: 2,
            stopped: None
        },
        "one retry"
    );
    assert_eq!(outcome(&rsp).retries(), 1);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "two attempts");
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(
            s.attempt,
            Some(i as u32 + 1),
            "Attempt extension on attempt {}",
            i + 1
        );
        assert_eq!(
            s.body.as_deref(),
            Ok(&b"hello"[..]),
            "same body on attempt {}",
            i + 1
        );
        assert_eq!(
            s.trailers.as_ref(),
            Some(&trailers),
            "same trailers on attempt {}",
            i + 1
        );
    }
    assert!(
        seen[0].headers.get("x-attempt").is_none(),
        "no attempt header on the original"
    );
    assert_eq!(
        seen[1].headers["x-attempt"], "2",
        "attempt header on the retry"
    );
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_millis(25) && gap <= Duration::from_millis(250),
        "first retry waits between backoff min and max, waited {gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_sends_the_same_head_field_for_field() {
    let (svc, seen) = scripted(|n| status(if n == 1 { 503 } else { 200 }));
    let mut req = request(MockBody::new().data("x"), Some(policy(&[503], 1)));
    *req.method_mut() = http::Method::PUT;
    *req.uri_mut() = "http://example.test:8080/a/b?c=d&e".parse().unwrap();
    *req.version_mut() = Version::HTTP_2;
    let h = req.headers_mut();
    h.append("x-multi", HeaderValue::from_static("1"));
    h.append("content-type", HeaderValue::from_static("text/plain"));
    h.append("x-multi", HeaderValue::from_static(""));
    h.append(
        "x-multi",
        HeaderValue::from_bytes(b"\t\x80 obs-text \xff").unwrap(),
    );
    let mut secret = HeaderValue::from_static("Bearer s3cret");
    secret.set_sensitive(true);
    h.append("authorization", secret);
    let sent = h.clone();
    let rsp = Retry::new(svc).oneshot(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let fields = |m: &HeaderMap| {
        m.iter()
            .map(|(n, v)| (n.clone(), v.clone(), v.is_sensitive()))
            .collect::<Vec<_>>()
    };
    for s in seen.iter() {
        assert_eq!(s.method, http::Method::PUT);
        assert_eq!(s.uri, "http://example.test:8080/a/b?c=d&e");
        assert_eq!(s.version, Version::HTTP_2);
        assert_eq!(
            fields(&s.headers),
            fields(&sent),
            "every field, in order, sensitivity kept, on attempt {:?}",
            s.attempt
        );
    }
}

#[tokio::test(start_paused = true)]
async fn attempts_is_the_number_of_retries() {
    let (svc, seen) = scripted(|_| status(503));
    let rsp = Retry::new(svc)
        .oneshot(request(MockBody::new().data("x"), Some(policy(&[503], 2))))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 503, "the last answer is returned");
    assert_eq!(
        outcome(&rsp),
        RetryOutcome {
            attempts: 3,
            stopped: Some(RetryStop::LimitExceeded)
        },
        "2 retries, then the limit"
    );
    assert_eq!(seen.lock().unwrap().len(), 3, "1 + 2 attempts (GEP-1731)");
    let body = collect(rsp.into_body())
        .await
        .expect("the last response body is intact");
    assert_eq!(body.data, "rsp");
}

#[tokio::test(start_paused = true)]
async fn default_policy_applies_unless_the_request_carries_one() {
    let (svc, seen) = scripted(|_| status(503));
    let layer = RetryLayer::with_default(policy(&[503], 1));
    let rsp = layer
        .layer(svc.clone())
        .oneshot(request(MockBody::new().data("x"), None))
        .await
        .unwrap();
    assert_eq!(
        outcome(&rsp),
        RetryOutcome {
            attempts: 2,
            stopped: Some(RetryStop::LimitExceeded)
        },
        "no extension: the layer's default policy (1 retry) applies"
    );
    let rsp = layer
        .layer(svc)
        .oneshot(request(MockBody::new().data("x"), Some(policy(&[503], 3))))
        .await
        .unwrap();
    assert_eq!(
        outcome(&rsp).attempts,
        4,
        "the request's own policy (3 retries) wins over the default"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 6);
    assert!(seen.iter().all(|s| s.body.as_deref() == Ok(&b"x"[..])));
}

#[tokio::test(start_paused = true)]
async fn a_shared_policy_retries_like_its_copy() {
    // Every attempt answers 503 with its own number in a header: the response that stands
    // after the last backoff is the last attempt's.
    let (svc, seen) = scripted(|n| {
        Box::pin(async move {
            Ok(Response::builder()
                .status(503)
                .header("x-attempt", n.to_string())
                .body(MockBody::new().data("rsp"))
                .unwrap())
        })
    });
    let shared = Arc::new(policy(&[503], 2));
    let rsp = RetryLayer::with_default(shared.clone())
        .layer(svc)
        .oneshot(request(MockBody::new().data("x"), None))
        .await
        .unwrap();
    assert_eq!(
        outcome(&rsp),
        RetryOutcome {
            attempts: 3,
            stopped: Some(RetryStop::LimitExceeded)
        },
        "an Arc<RetryPolicy> is a policy with the same limits"
    );
    assert_eq!(
        rsp.headers()["x-attempt"],
        "3",
        "the last attempt's response"
    );
    assert_eq!(collect(rsp.into_body()).await.unwrap().data, "rsp");
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert_eq!(
        Arc::strong_count(&shared),
        1,
        "no copy outlives the request"
    );
}

#[tokio::test(start_paused = true)]
async fn zero_retries_and_unlisted_statuses_are_not_retried() {
    let (svc, seen) = scripted(|_| status(503));
    let rsp = Retry::new(svc.clone())
        .oneshot(request(MockBody::new(), Some(policy(&[503], 0))))
        .await
        .unwrap();
    assert_eq!(
        outcome(&rsp).stopped,
        Some(RetryStop::LimitExceeded),
        "0 retries allowed"
    );
    let rsp = Retry::new(svc)
        .oneshot(request(MockBody::new(), Some(policy(&[502], 3))))
        .await
        .unwrap();
    assert_eq!(
        outcome(&rsp),
        RetryOutcome {
            attempts: 1,
            stopped: None
        },
        "503 is not in the codes"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_and_retry_after_replaces_it() {
    let (svc, seen) = scripted(|n| {
        if n == 1 {
            Box::pin(async {
                Ok(Response::builder()
                    .status(503)
                    .header("retry-after", "2")
                    .body(MockBody::new())
                    .unwrap())
            })
        } else {
            status(503)
        }
    });
    let mut p = policy(&[503], 3);
    p.backoff =
        ExponentialBackoff::try_new(Duration::from_millis(100), Duration::from_secs(10), 0.0)
            .unwrap();
    let rsp = Retry::new(svc)
        .oneshot(request(MockBody::new(), Some(p)))
        .await
        .unwrap();
    assert_eq!(outcome(&rsp).attempts, 4);
    let seen = seen.lock().unwrap();
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert_eq!(
        gaps,
        [
            Duration::from_secs(2),
            Duration::from_millis(200),
            Duration::from_millis(400)
        ],
        "Retry-After replaces the first delay; then backoff(1), backoff(2)"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_clamped_to_max_backoff() {
    let (svc, seen) = scripted(|n| {
        if n == 1 {
            Box::pin(async {
                Ok(Response::builder()
                    .status(429)
                    .header("retry-after", "3600")
                    .body(MockBody::new())
                    .unwrap())
            })
        } else {
            status(200)
        }
    });
    let rsp = Retry::new(svc)
        .oneshot(request(MockBody::new(), Some(policy(&[429], 1))))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[1].at - seen[0].at,
        Duration::from_millis(250),
        "clamped to maxBackoff"
    );
}

#[tokio::test(start_paused = true)]
async fn per_try_timeout_is_retried() {
    let (svc, seen) = scripted(|n| {
        if n == 1 {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                status(200).await
            })
        } else {
            status(200)
        }
    });
    let mut p = policy(&[], 1);
    p.per_try_timeout = Some(Duration::from_secs(1));
    let rsp = Retry::new(svc)
        .oneshot(request(MockBody::new().data("b"), Some(p)))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200, "the second attempt answers");
    assert_eq!(
        outcome(&rsp),
        RetryOutcome {
            attempts: 2,
            stopped: None
        }
    );
    let seen = seen.lock().unwrap();
    assert!(
        seen[1].at - seen[0].at >= Duration::from_secs(1),
        "after the per-try timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn per_try_timeout_without_retries_left_is_a_backend_request_timeout() {
    let (svc, _) = scripted(|_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            status(200).await
        })
    });
    let mut p = policy(&[], 1);
    p.per_try_timeout = Some(Duration::from_millis(500));
    let err = Retry::new(svc)
        .oneshot(request(MockBody::new(), Some(p)))
        .await
        .expect_err("both attempts time out");
    let proxy = to_proxy_error(&*err);
    assert_eq!(
        proxy.kind(),
        ProxyErrorKind::BackendRequestTimeout,
        "maps to 504: {err}"
    );
    assert!(is_timeout(&*err), "a timeout");
    assert_eq!(
        linkerd_http_classify::find_h2_reason(&*err),
        Some(h2::Reason::CANCEL),
        "HTTP/2 clients get CANCEL"
    );
    assert_eq!(
        RetryOutcome::from_error(&*err),
        Some(RetryOutcome {
            attempts: 2,
            stopped: Some(RetryStop::LimitExceeded)
        }),
        "the outcome travels with the error"
    );
}

#[tokio::test(start_paused = true)]
async fn deadline_stops_retries() {
    let (svc, seen) = scripted(|_| status(503));
    let mut p = policy(&[503], 5);
    p.backoff =
        ExponentialBackoff::try_new(Duration::from_millis(100), Duration::from_secs(1), 0.0)
            .unwrap();
    let mut req = request(MockBody::new(), Some(p));
    req.extensions_mut()
        .insert(Deadline(Instant::now() + Duration::from_millis(350)));
    let rsp = Retry::new(svc).oneshot(req).await.unwrap();
    // Attempts at 0, 100 ms, 300 ms; the next would start at 700 ms > 350 ms.
    assert_eq!(
        outcome(&rsp),
        RetryOutcome {
            attempts: 3,
            stopped: Some(RetryStop::DeadlinePassed)
        },
        "no retry starts past the deadline"
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert!(
        Instant::now() < seen.lock().unwrap()[0].at + Duration::from_millis(350),
        "no backoff sleeps past the deadline"
    );
}

/// A service whose attempts never answer (within the tests' minutes).
fn hanging() -> (impl Inner, Log) {
    scripted(|_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(600)).await;
            status(200).await
        })
    })
}

/// Asserts that `err` is the deadline's 504 `request timeout` after `attempts` attempts.
fn assert_deadline_error(err: &BoxError, attempts: u32) {
    assert!(
        linkerd_http_retry::DeadlineExceeded::is_in(&**err),
        "the deadline's error: {err}"
    );
    assert_eq!(
        to_proxy_error(&**err).kind(),
        ProxyErrorKind::RequestTimeout,
        "maps to 504 request timeout: {err}"
    );
    assert!(is_timeout(&**err), "a timeout");
    assert_eq!(
        linkerd_http_classify::find_h2_reason(&**err),
        Some(h2::Reason::CANCEL),
        "HTTP/2 clients get CANCEL"
    );
    assert_eq!(
        RetryOutcome::from_error(&**err),
        Some(RetryOutcome {
            attempts,
            stopped: Some(RetryStop::DeadlinePassed)
        }),
        "not retried past the deadline, which stopped the retries (retry_limit_exceeded)"
    );
}

#[tokio::test(start_paused = true)]
async fn deadline_cuts_the_attempt_in_flight() {
    let (svc, seen) = hanging();
    let start = Instant::now();
    let mut req = request(MockBody::new(), Some(policy(&[503], 3)));
    req.extensions_mut()
        .insert(Deadline(start + Duration::from_secs(1)));
    let err = Retry::new(svc)
        .oneshot(req)
        .await
        .expect_err("the attempt outlives the deadline");
    assert_eq!(
        Instant::now() - start,
        Duration::from_secs(1),
        "failed at the deadline, without a per-try timeout"
    );
    assert_deadline_error(&err, 1);
    assert_eq!(seen.lock().unwrap().len(), 1, "no retry after the deadline");
}

#[tokio::test(start_paused = true)]
async fn without_a_policy_the_deadline_still_cuts_the_request() {
    let (svc, seen) = hanging();
    let start = Instant::now();
    let mut req = request(MockBody::new(), None);
    req.extensions_mut()
        .insert(Deadline(start + Duration::from_secs(1)));
    let err = Retry::new(svc)
        .oneshot(req)
        .await
        .expect_err("the request outlives the deadline");
    assert_eq!(Instant::now() - start, Duration::from_secs(1));
    assert!(linkerd_http_retry::DeadlineExceeded::is_in(&*err), "{err}");
    assert_eq!(to_proxy_error(&*err).kind(), ProxyErrorKind::RequestTimeout);
    assert_eq!(
        RetryOutcome::from_error(&*err),
        None,
        "no outcome without a policy"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn per_try_timeout_ends_at_the_deadline() {
    let (svc, seen) = hanging();
    let mut p = policy(&[], 3);
    p.per_try_timeout = Some(Duration::from_secs(10));
    let start = Instant::now();
    let mut req = request(MockBody::new(), Some(p));
    req.extensions_mut()
        .insert(Deadline(start + Duration::from_secs(2)));
    let err = Retry::new(svc)
        .oneshot(req)
        .await
        .expect_err("the attempt outlives the deadline");
    assert_eq!(Instant::now() - start, Duration::from_secs(2));
    assert_deadline_error(&err, 1);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_retry_in_flight_is_cut_at_the_deadline() {
    let (svc, seen) = hanging();
    let mut p = policy(&[], 3);
    p.per_try_timeout = Some(Duration::from_secs(1));
    p.backoff =
        ExponentialBackoff::try_new(Duration::from_millis(100), Duration::from_secs(1), 0.0)
            .unwrap();
    let start = Instant::now();
    let mut req = request(MockBody::new(), Some(p));
    req.extensions_mut()
        .insert(Deadline(start + Duration::from_millis(1500)));
    let err = Retry::new(svc)
        .oneshot(req)
        .await
        .expect_err("the retry outlives the deadline");
    // Attempt 1 times out at 1 s, attempt 2 starts at 1.1 s and is cut at 1.5 s.
    assert_eq!(Instant::now() - start, Duration::from_millis(1500));
    assert_deadline_error(&err, 2);
    assert_eq!(seen.lock().unwrap().len(), 2);
}

/// Notes `backend` when dropped, like the route crate's split does for an attempt in flight.
struct NotesBackend(Arc<str>);

impl Drop for NotesBackend {
    fn drop(&mut self) {
        dropped::note(|n| n.backend_or(&self.0));
    }
}

/// A service whose attempts never answer and note backend `b{attempt}` when dropped.
fn hanging_noting() -> (impl Inner, Log) {
    scripted(|n| {
        let guard = NotesBackend(Arc::from(format!("b{n}")));
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(600)).await;
            drop(guard);
            status(200).await
        })
    })
}

#[tokio::test(start_paused = true)]
async fn a_timer_cut_keeps_what_the_attempt_knew() {
    // The deadline cuts the second attempt: its backend is on the error; the first
    // attempt's (cut by its per-try timeout and retried) is not.
    let (svc, _) = hanging_noting();
    let mut p = policy(&[], 3);
    p.per_try_timeout = Some(Duration::from_secs(1));
    let mut req = request(MockBody::new(), Some(p));
    req.extensions_mut()
        .insert(Deadline(Instant::now() + Duration::from_millis(1500)));
    let err = Retry::new(svc).oneshot(req).await.expect_err("cut");
    assert_deadline_error(&err, 2);
    let note = CutShort::find(&*err).expect("the cut attempt's note");
    assert_eq!(note.backend.as_deref(), Some("b2"), "{note:?}");

    // The same without a policy, and for a per-try timeout with no retries left.
    let (svc, _) = hanging_noting();
    let mut req = request(MockBody::new(), None);
    req.extensions_mut()
        .insert(Deadline(Instant::now() + Duration::from_secs(1)));
    let err = Retry::new(svc).oneshot(req).await.expect_err("cut");
    assert!(linkerd_http_retry::DeadlineExceeded::is_in(&*err), "{err}");
    let note = CutShort::find(&*err).expect("the cut request's note");
    assert_eq!(note.backend.as_deref(), Some("b1"));

    let (svc, _) = hanging_noting();
    let mut p = policy(&[], 1);
    p.per_try_timeout = Some(Duration::from_millis(500));
    let err = Retry::new(svc)
        .oneshot(request(MockBody::new(), Some(p)))
        .await
        .expect_err("both attempts time out");
    assert_eq!(
        to_proxy_error(&*err).kind(),
        ProxyErrorKind::BackendRequestTimeout
    );
    let note = CutShort::find(&*err).expect("the last attempt's note");
    assert_eq!(note.backend.as_deref(), Some("b2"));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_retry_notes_its_attempts() {
    // Attempt 1 answers 503, attempt 2 hangs: dropped then, the future notes 2 attempts.
    let (svc, seen) = scripted(|n| {
        if n == 1 {
            status(503)
        } else {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(600)).await;
                status(200).await
            })
        }
    });
    let mut p = policy(&[503], 3);
    p.backoff =
        ExponentialBackoff::try_new(Duration::from_millis(10), Duration::from_millis(10), 0.0)
            .unwrap();
    let mut future = Some(Box::pin(
        Retry::new(svc).oneshot(request(MockBody::new(), Some(p))),
    ));
    let polled = tokio::time::timeout(Duration::from_secs(1), future.as_mut().unwrap()).await;
    assert!(polled.is_err(), "the second attempt hangs");
    assert_eq!(seen.lock().unwrap().len(), 2);
    let note = dropped::observe(|| future = None);
    assert_eq!(note.attempts, Some(2), "{note:?}");

    // A finished future notes nothing.
    let (svc, _) = scripted(|_| status(200));
    let rsp = Retry::new(svc)
        .oneshot(request(MockBody::new(), Some(policy(&[503], 3))))
        .await
        .unwrap();
    let note = dropped::observe(|| drop(rsp));
    assert!(note.is_empty(), "{note:?}");
}

#[tokio::test(start_paused = true)]
async fn budget_exhaustion() {
    let (svc, seen) = scripted(|_| status(503));
    let budget = Arc::new(Budget::new(0.5, 0).unwrap());
    let mut p = policy(&[503], 1);
    p.budget = Some(budget);
    let svc = Retry::new(svc);
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        let rsp = svc
            .clone()
            .oneshot(request(MockBody::new(), Some(p.clone())))
            .await
            .unwrap();
        outcomes.push(outcome(&rsp).stopped);
    }
    // Deposits 1, 2, 3, 4 allow 0.5, 1, 1.5, 2 retries in total.
    assert_eq!(
        outcomes,
        [
            Some(RetryStop::BudgetExhausted),
            Some(RetryStop::LimitExceeded),
            Some(RetryStop::BudgetExhausted),
            Some(RetryStop::LimitExceeded),
        ],
        "every other request may retry at a ratio of 0.5"
    );
    assert_eq!(seen.lock().unwrap().len(), 6, "4 originals + 2 retries");
}

#[tokio::test(start_paused = true)]
async fn body_over_the_cap_is_not_retried() {
    let (svc, seen) = scripted(|_| status(503));
    let mut p = policy(&[503], 3);
    p.max_request_bytes = 4;
    let rsp = Retry::new(svc.clone())
        .oneshot(request(
            MockBody::new().data("123").data("45"),
            Some(p.clone()),
        ))
        .await
        .unwrap();
    assert_eq!(
        outcome(&rsp),
        RetryOutcome {
            attempts: 1,
            stopped: Some(RetryStop::BodyTooLarge)
        },
        "5 bytes read: over the cap of 4"
    );
    let rsp = Retry::new(svc)
        .oneshot(request(
            MockBody::new().data("12345").with_exact_size(5),
            Some(p),
        ))
        .await
        .unwrap();
    assert_eq!(
        outcome(&rsp).stopped,
        Some(RetryStop::BodyTooLarge),
        "known too large up front"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|s| s.body.as_deref() == Ok(&b"12345"[..])),
        "the live attempt got the whole body"
    );
}

#[tokio::test(start_paused = true)]
async fn retryable_and_final_errors() {
    let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    let (svc, seen) = scripted(move |n| {
        if n == 1 {
            fail(h2::Error::from(h2::Reason::REFUSED_STREAM))
        } else {
            fail(refused())
        }
    });
    let err = Retry::new(svc)
        .oneshot(request(MockBody::new(), Some(policy(&[], 2))))
        .await
        .expect_err("every attempt fails");
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "refused stream and connect errors are retried"
    );
    assert_eq!(
        to_proxy_error(&*err).kind(),
        ProxyErrorKind::ConnectFailed,
        "the last error maps to 502 connect failed: {err}"
    );

    let (svc, seen) = scripted(|_| fail(ProxyError::load_shed()));
    let err = Retry::new(svc)
        .oneshot(request(MockBody::new(), Some(policy(&[503], 2))))
        .await
        .expect_err("load shed");
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "a load shed is never retried"
    );
    assert_eq!(to_proxy_error(&*err).kind(), ProxyErrorKind::LoadShed);
    assert_eq!(
        RetryOutcome::from_error(&*err),
        Some(RetryOutcome {
            attempts: 1,
            stopped: None
        })
    );
}

/// A service that is ready only for its first call.
#[derive(Clone)]
struct ReadyOnce<S> {
    inner: S,
    calls: Arc<Mutex<u32>>,
}

impl<S, B> Service<Request<B>> for ReadyOnce<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if *self.calls.lock().unwrap() > 0 {
            return Poll::Pending;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> S::Future {
        *self.calls.lock().unwrap() += 1;
        self.inner.call(req)
    }
}

#[tokio::test(start_paused = true)]
async fn not_ready_is_an_overflow() {
    let (svc, seen) = scripted(|_| status(503));
    let svc = ReadyOnce {
        inner: svc,
        calls: Arc::default(),
    };
    let rsp = Retry::new(svc)
        .oneshot(request(MockBody::new(), Some(policy(&[503], 2))))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 503, "the last response is returned");
    assert_eq!(
        outcome(&rsp),
        RetryOutcome {
            attempts: 1,
            stopped: Some(RetryStop::NotReady)
        },
        "the retry does not wait for readiness"
    );
    assert!(outcome(&rsp).stopped.unwrap().is_overflow());
    assert_eq!(seen.lock().unwrap().len(), 1);
}

fn grpc_response(body: MockBody) -> Rsp {
    Response::builder()
        .version(Version::HTTP_2)
        .header("content-type", "application/grpc")
        .body(body)
        .unwrap()
}

fn grpc_trailers(code: &'static str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static(code));
    t
}

#[tokio::test(start_paused = true)]
async fn grpc_status_in_peeked_trailers() {
    let (svc, seen) = scripted(|n| {
        let body = if n == 1 {
            MockBody::new().trailers(grpc_trailers("14"))
        } else {
            MockBody::new().data("msg").trailers(grpc_trailers("0"))
        };
        Box::pin(async move { Ok(grpc_response(body)) })
    });
    let mut p = policy(&[], 2);
    p.grpc_codes = GrpcCodes::from_names(["unavailable"]).unwrap();
    let mut req = request(MockBody::new().data("call"), Some(p));
    req.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    let rsp = Retry::new(svc).oneshot(req).await.unwrap();
    assert_eq!(
        outcome(&rsp),
        RetryOutcome {
            attempts: 2,
            stopped: None
        },
        "UNAVAILABLE in trailers retried, OK in trailers accepted"
    );
    assert_eq!(
        rsp.body().peeked_trailers().map(|t| &t["grpc-status"]),
        Some(&HeaderValue::from_static("0")),
        "the accepted response's trailers were peeked"
    );
    let body = collect(rsp.into_body()).await.unwrap();
    assert_eq!(body.data, "msg", "peeked frames are returned in order");
    assert_eq!(body.trailers, Some(grpc_trailers("0")));
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn streaming_grpc_response_is_not_held_back() {
    let (svc, _) = scripted(|_| {
        Box::pin(async {
            Ok(grpc_response(
                MockBody::new()
                    .data("first")
                    .delay(Duration::from_secs(30))
                    .data("second")
                    .trailers(grpc_trailers("14")),
            ))
        })
    });
    let mut p = policy(&[], 2);
    p.grpc_codes = GrpcCodes::from_names(["unavailable"]).unwrap();
    let mut req = request(MockBody::new(), Some(p));
    req.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    let start = Instant::now();
    let rsp = Retry::new(svc).oneshot(req).await.unwrap();
    assert_eq!(
        Instant::now(),
        start,
        "returned after the first frame, not the trailers"
    );
    assert_eq!(
        outcome(&rsp),
        RetryOutcome {
            attempts: 1,
            stopped: None
        }
    );
    assert!(
        rsp.body().peeked_trailers().is_none(),
        "trailers were not ready"
    );
}

#[tokio::test(start_paused = true)]
async fn peek_body_forwards_hints() {
    let body = MockBody::new()
        .data("abc")
        .trailers(grpc_trailers("0"))
        .with_exact_size(3);
    let peeked = PeekTrailersBody::peek(body).await;
    assert_eq!(
        peeked.size_hint().exact(),
        Some(3),
        "held data counts in the hint"
    );
    assert!(!peeked.is_end_stream(), "held frames are not the end");
    assert!(peeked.peeked_trailers().is_some());
    let empty = PeekTrailersBody::peek(MockBody::new()).await;
    assert!(empty.is_end_stream(), "an empty body stays at its end");
}

#[tokio::test(start_paused = true)]
async fn replay_error_when_an_attempt_still_holds_the_body() {
    // The first attempt answers before reading the body and keeps the body alive: the
    // retry's clone finds it busy. That must be an error, never a panic.
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    let calls = Arc::new(Mutex::new(0u32));
    let svc = service_fn(move |req: Request<ReplayBody<MockBody>>| {
        let keep = keep.clone();
        let calls = calls.clone();
        async move {
            let n = {
                let mut c = calls.lock().unwrap();
                *c += 1;
                *c
            };
            if n == 1 {
                keep.lock().unwrap().push(req.into_body());
                return Ok::<_, BoxError>(
                    Response::builder()
                        .status(503)
                        .body(Full::new(Bytes::new()))?,
                );
            }
            let err = collect(req.into_body())
                .await
                .expect_err("the body is busy");
            let replay = linkerd_http_classify::chain(&*err)
                .find_map(|e| e.downcast_ref::<linkerd_http_retry::ReplayError>())
                .expect("a ReplayError");
            assert!(replay.is_busy(), "busy");
            Ok(Response::new(Full::new(Bytes::from_static(b"saw busy"))))
        }
    });
    let rsp = Retry::new(svc)
        .oneshot(request(
            MockBody::new().data("abc"),
            Some(policy(&[503], 1)),
        ))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(held.lock().unwrap().len(), 1);
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<linkerd_http_retry::RetryError>();
    send_sync::<linkerd_http_retry::PerTryTimeout>();
    send_sync::<linkerd_http_retry::ReplayError>();
    send_sync::<RetryOutcome>();
    send_sync::<RetryPolicy>();
    send_sync::<Budget>();
    send_sync::<ReplayBody<MockBody>>();
    send_sync::<PeekTrailersBody<MockBody>>();
    let (svc, _) = scripted(|_| status(200));
    let fut = Retry::new(svc).call(request(MockBody::new(), Some(policy(&[], 1))));
    send(&fut);
    assert!(
        std::mem::size_of::<linkerd_http_retry::ReplayError>() <= 8,
        "the replay error is a small value"
    );
}

/// Request extensions for the extension-replay test.
#[derive(Clone, Debug, PartialEq)]
struct Kept(u32);
#[derive(Clone, Debug, PartialEq)]
struct Dropped(u32);

/// Which of the test extensions each attempt carried.
type ExtLog = Arc<Mutex<Vec<(Option<u32>, Option<Kept>, Option<Dropped>)>>>;

fn extension_recorder(log: ExtLog) -> impl Inner {
    service_fn(move |req: Request<ReplayBody<MockBody>>| -> Fut {
        let attempt = req.extensions().get::<Attempt>().map(|a| a.0);
        let mut log = log.lock().unwrap();
        log.push((
            attempt,
            req.extensions().get::<Kept>().cloned(),
            req.extensions().get::<Dropped>().cloned(),
        ));
        status(if log.len() == 1 { 503 } else { 200 })
    })
}

#[tokio::test(start_paused = true)]
async fn retried_attempts_carry_the_extensions_the_policy_replays() {
    fn keep_only_kept(head: &http::request::Parts) -> http::Extensions {
        let mut kept = http::Extensions::new();
        if let Some(k) = head.extensions.get::<Kept>() {
            kept.insert(k.clone());
        }
        kept
    }
    for (replay, want_dropped_on_retry) in [
        (None, Some(Dropped(2))),
        (
            Some(keep_only_kept as fn(&http::request::Parts) -> http::Extensions),
            None,
        ),
    ] {
        let log = ExtLog::default();
        let mut p = policy(&[503], 1);
        p.replay_extensions = replay;
        let mut req = request(MockBody::new(), Some(p));
        req.extensions_mut().insert(Kept(1));
        req.extensions_mut().insert(Dropped(2));
        let rsp = RetryLayer::new()
            .layer(extension_recorder(log.clone()))
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200, "the retry answered");
        let log = log.lock().unwrap();
        assert_eq!(
            log[0],
            (Some(1), Some(Kept(1)), Some(Dropped(2))),
            "the first attempt carries every extension"
        );
        assert_eq!(
            log[1],
            (Some(2), Some(Kept(1)), want_dropped_on_retry.clone()),
            "a retry carries what the policy replays ({replay:?})"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_tells_a_grpc_server_the_time_left() {
    // Attempt 1 answers 503 after 2 s; the retry starts at 2.1 s of a 10 s deadline.
    let (svc, seen) = scripted(|n| {
        if n == 1 {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                status(503).await
            })
        } else {
            status(200)
        }
    });
    let mut p = policy(&[503], 1);
    p.backoff =
        ExponentialBackoff::try_new(Duration::from_millis(100), Duration::from_millis(100), 0.0)
            .unwrap();
    let mut req = request(MockBody::new(), Some(p));
    req.headers_mut()
        .insert("grpc-timeout", HeaderValue::from_static("10S"));
    req.extensions_mut()
        .insert(Deadline(Instant::now() + Duration::from_secs(10)));
    let rsp = Retry::new(svc)
        .oneshot(req)
        .await
        .expect("the retry answers");
    assert_eq!(rsp.status(), 200);
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0].headers["grpc-timeout"], "10S",
        "the first attempt as sent"
    );
    assert_eq!(
        seen[1].headers["grpc-timeout"],
        linkerd_http_classify::encode_grpc_timeout(Duration::from_millis(7900)),
        "the retry: the time left"
    );
}
