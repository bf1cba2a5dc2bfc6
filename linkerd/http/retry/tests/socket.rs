//! The retry layer in front of a hyper-util client, against real hyper servers on loopback.
//! Real time, wide margins: outcomes are asserted, not durations (except lower bounds).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use linkerd_exp_backoff::ExponentialBackoff;
use linkerd_http_classify::{BoxError, Deadline, ProxyErrorKind, StatusRanges, to_proxy_error};
use linkerd_http_retry::{
    Budget, GrpcCodes, PeekTrailersBody, ReplayBody, Retry, RetryOutcome, RetryPolicy, RetryStop,
};
use linkerd_http_test_util::{MockBody, ServerProtocol, TestServer, collect};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::time::Instant;
use tower::ServiceExt;

type HttpClient = Client<HttpConnector, ReplayBody<MockBody>>;
type Svc = Retry<HttpClient>;

const ATTEMPT: &str = "x-attempt";

/// One request as the server read it.
#[derive(Clone, Debug)]
struct Received {
    attempt: Option<String>,
    at: Instant,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

type Log = Arc<Mutex<Vec<Received>>>;

fn client(http2: bool) -> Svc {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build_http();
    Retry::new(client)
}

/// Starts a server that reads each request in full, records it, and answers with
/// `reply(attempt header value)`.
async fn start<F>(protocol: ServerProtocol, reply: F) -> (TestServer, Log)
where
    F: Fn(Option<&str>) -> (Response<MockBody>, Option<Duration>) + Send + Sync + 'static,
{
    let log: Log = Arc::default();
    let record = log.clone();
    let reply = Arc::new(reply);
    let server = TestServer::serve(protocol, move |req: Request<Incoming>| {
        let record = record.clone();
        let reply = reply.clone();
        async move {
            let at = Instant::now();
            let attempt = req
                .headers()
                .get(ATTEMPT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = collect(req.into_body()).await?;
            record.lock().unwrap().push(Received {
                attempt: attempt.clone(),
                at,
                body: body.data,
                trailers: body.trailers,
            });
            let (rsp, delay) = reply(attempt.as_deref());
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, BoxError>(rsp)
        }
    })
    .await
    .expect("bind a test server");
    (server, log)
}

fn status(code: u16) -> (Response<MockBody>, Option<Duration>) {
    let rsp = Response::builder()
        .status(code)
        .body(MockBody::new().data("answer"))
        .expect("a valid response");
    (rsp, None)
}

fn policy(codes: &[u16], retries: u32) -> RetryPolicy {
    let mut p = RetryPolicy::default();
    p.codes = codes
        .iter()
        .fold(StatusRanges::empty(), |r, c| r.with_range(*c, *c));
    p.max_retries = retries;
    p.attempt_header = Some(HeaderName::from_static(ATTEMPT));
    p
}

fn request(server: &TestServer, body: MockBody, policy: RetryPolicy) -> Request<MockBody> {
    let mut req = Request::post(format!("http://{}/upload", server.addr()))
        .body(body)
        .expect("a valid request");
    req.extensions_mut().insert(policy);
    req
}

fn outcome<B>(rsp: &Response<B>) -> RetryOutcome {
    *rsp.extensions()
        .get::<RetryOutcome>()
        .expect("every response with a policy has an outcome")
}

async fn body_of(rsp: Response<PeekTrailersBody<Incoming>>) -> Bytes {
    collect(rsp.into_body()).await.expect("response body").data
}

/// Cuts `data` at random points into a scripted body.
fn random_body(rng: &mut SmallRng, data: &Bytes, known_length: bool, trailers: bool) -> MockBody {
    let mut body = MockBody::new();
    let mut start = 0;
    while start < data.len() {
        let len = rng.random_range(1..=4096).min(data.len() - start);
        body = body.data(data.slice(start..start + len));
        start += len;
    }
    if trailers {
        let mut t = HeaderMap::new();
        t.insert("x-checksum", HeaderValue::from(data.len()));
        body = body.trailers(t);
    }
    if known_length {
        body = body.with_exact_size(data.len() as u64);
    }
    body
}

#[tokio::test]
async fn post_503_then_200_reaches_the_backend_byte_identical() {
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    for (protocol, http2) in [
        (ServerProtocol::Http1, false),
        (ServerProtocol::Http2, true),
    ] {
        let (server, log) = start(protocol, |attempt| {
            status(if attempt.is_none() { 503 } else { 200 })
        })
        .await;
        let svc = client(http2);
        for known_length in [false, true] {
            // HTTP/1.1 request trailers need chunked encoding: only without a length.
            for trailers in [false, true] {
                if trailers && known_length {
                    continue;
                }
                log.lock().unwrap().clear();
                let len = rng.random_range(0..40_000);
                let data: Bytes = (0..len)
                    .map(|_| rng.random::<u8>())
                    .collect::<Vec<_>>()
                    .into();
                let body = random_body(&mut rng, &data, known_length, trailers);
                let mut req = request(&server, body, policy(&[503], 2));
                if known_length {
                    req.headers_mut()
                        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(data.len()));
                }
                if trailers {
                    // hyper's HTTP/1.1 client sends only the trailers a `trailer` header names.
                    req.headers_mut().insert(
                        http::header::TRAILER,
                        HeaderValue::from_static("x-checksum"),
                    );
                }
                let case =
                    format!("http2={http2} length={known_length} trailers={trailers} len={len}");
                let rsp = svc.clone().oneshot(req).await.expect(&case);
                assert_eq!(rsp.status(), 200, "{case}: the retry succeeds");
                assert_eq!(
                    outcome(&rsp),
                    RetryOutcome {
                        attempts: 2,
                        stopped: None
                    },
                    "{case}"
                );
                assert_eq!(body_of(rsp).await, "answer");
                let log = log.lock().unwrap();
                assert_eq!(log.len(), 2, "{case}: two attempts reached the backend");
                assert_eq!(
                    log[0].attempt, None,
                    "{case}: no attempt header on the original"
                );
                assert_eq!(
                    log[1].attempt.as_deref(),
                    Some("2"),
                    "{case}: attempt header"
                );
                for (i, r) in log.iter().enumerate() {
                    assert!(r.body == data, "{case}: attempt {} body differs", i + 1);
                    if trailers {
                        assert_eq!(
                            r.trailers.as_ref().and_then(|t| t.get("x-checksum")),
                            Some(&HeaderValue::from(data.len())),
                            "{case}: attempt {} trailers",
                            i + 1
                        );
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn body_over_the_cap_reaches_the_backend_once() {
    for (protocol, http2) in [
        (ServerProtocol::Http1, false),
        (ServerProtocol::Http2, true),
    ] {
        let (server, log) = start(protocol, |_| status(503)).await;
        let svc = client(http2);
        let data: Bytes = (0..10_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        for known_length in [false, true] {
            log.lock().unwrap().clear();
            let mut rng = SmallRng::seed_from_u64(7);
            let body = random_body(&mut rng, &data, known_length, false);
            let mut p = policy(&[503], 3);
            p.max_request_bytes = 4096;
            let mut req = request(&server, body, p);
            if known_length {
                req.headers_mut()
                    .insert(http::header::CONTENT_LENGTH, HeaderValue::from(data.len()));
            }
            let rsp = svc.clone().oneshot(req).await.expect("a response");
            assert_eq!(rsp.status(), 503, "the only answer is returned");
            assert_eq!(
                outcome(&rsp),
                RetryOutcome {
                    attempts: 1,
                    stopped: Some(RetryStop::BodyTooLarge)
                },
                "http2={http2} length={known_length}: not retried"
            );
            let log = log.lock().unwrap();
            assert_eq!(log.len(), 1, "one attempt");
            assert!(log[0].body == data, "the body arrived intact");
        }
    }
}

fn grpc(body: MockBody) -> (Response<MockBody>, Option<Duration>) {
    let rsp = Response::builder()
        .header("content-type", "application/grpc")
        .body(body)
        .expect("a valid response");
    (rsp, None)
}

fn grpc_status(code: &'static str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static(code));
    t
}

fn grpc_request(server: &TestServer, policy: RetryPolicy) -> Request<MockBody> {
    let mut req = request(server, MockBody::new().data(&b"\0\0\0\0\x02hi"[..]), policy);
    req.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    req.headers_mut()
        .insert("te", HeaderValue::from_static("trailers"));
    req
}

fn grpc_policy() -> RetryPolicy {
    let mut p = policy(&[], 2);
    p.grpc_codes = GrpcCodes::from_names(["unavailable", "cancelled"]).expect("valid names");
    p
}

#[tokio::test]
async fn grpc_unavailable_in_trailers_is_retried_ok_is_not() {
    let (server, log) = start(ServerProtocol::Http2, |attempt| {
        grpc(if attempt.is_none() {
            MockBody::new().trailers(grpc_status("14"))
        } else {
            MockBody::new().data("reply").trailers(grpc_status("0"))
        })
    })
    .await;
    let svc = client(true);
    let rsp = svc
        .clone()
        .oneshot(grpc_request(&server, grpc_policy()))
        .await
        .expect("a response");
    assert_eq!(
        outcome(&rsp),
        RetryOutcome {
            attempts: 2,
            stopped: None
        },
        "UNAVAILABLE in trailers was retried"
    );
    let body = collect(rsp.into_body()).await.expect("body");
    assert_eq!(body.data, "reply");
    assert_eq!(
        body.trailers,
        Some(grpc_status("0")),
        "trailers reach the caller"
    );
    assert_eq!(log.lock().unwrap().len(), 2);

    let (server, log) = start(ServerProtocol::Http2, |_| {
        grpc(MockBody::new().data("reply").trailers(grpc_status("0")))
    })
    .await;
    let rsp = svc
        .oneshot(grpc_request(&server, grpc_policy()))
        .await
        .expect("a response");
    assert_eq!(
        outcome(&rsp),
        RetryOutcome {
            attempts: 1,
            stopped: None
        },
        "OK is final"
    );
    assert_eq!(
        log.lock().unwrap().len(),
        1,
        "OK in trailers is not retried"
    );
}

#[tokio::test]
async fn budget_exhaustion_stops_retries() {
    let (server, log) = start(ServerProtocol::Auto, |_| status(503)).await;
    let mut p = policy(&[503], 3);
    p.budget = Some(Arc::new(Budget::new(0.0, 0).expect("valid budget")));
    let rsp = client(false)
        .oneshot(request(&server, MockBody::new().data("x"), p))
        .await
        .expect("a response");
    assert_eq!(
        outcome(&rsp),
        RetryOutcome {
            attempts: 1,
            stopped: Some(RetryStop::BudgetExhausted)
        },
        "an empty budget allows no retry"
    );
    assert_eq!(log.lock().unwrap().len(), 1);
}

fn retry_after(secs: &'static str) -> (Response<MockBody>, Option<Duration>) {
    let rsp = Response::builder()
        .status(503)
        .header("retry-after", secs)
        .body(MockBody::new())
        .expect("a valid response");
    (rsp, None)
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (server, log) = start(ServerProtocol::Auto, |attempt| {
        if attempt.is_none() {
            retry_after("1")
        } else {
            status(200)
        }
    })
    .await;
    let mut p = policy(&[503], 1);
    p.backoff = ExponentialBackoff::try_new(Duration::from_millis(1), Duration::from_secs(60), 0.0)
        .expect("valid backoff");
    let rsp = client(false)
        .oneshot(request(&server, MockBody::new(), p.clone()))
        .await
        .expect("a response");
    assert_eq!(
        outcome(&rsp),
        RetryOutcome {
            attempts: 2,
            stopped: None
        }
    );
    let log = log.lock().unwrap().clone();
    // A sleep never ends early, so this lower bound holds on any machine; the 1 ms backoff
    // would have retried at once.
    assert!(
        log[1].at - log[0].at >= Duration::from_millis(900),
        "the retry waited for Retry-After: 1"
    );

    // A Retry-After beyond the deadline: no retry at all.
    let (server, log) = start(ServerProtocol::Auto, |_| retry_after("30")).await;
    let mut req = request(&server, MockBody::new(), p);
    req.extensions_mut()
        .insert(Deadline(Instant::now() + Duration::from_secs(5)));
    let rsp = client(false).oneshot(req).await.expect("a response");
    assert_eq!(
        outcome(&rsp),
        RetryOutcome {
            attempts: 1,
            stopped: Some(RetryStop::DeadlinePassed)
        },
        "a 30 s Retry-After does not fit a 5 s deadline"
    );
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn per_try_timeout_is_retried() {
    for (protocol, http2) in [
        (ServerProtocol::Http1, false),
        (ServerProtocol::Http2, true),
    ] {
        let (server, log) = start(protocol, |attempt| {
            if attempt.is_none() {
                let (rsp, _) = status(200);
                (rsp, Some(Duration::from_secs(5)))
            } else {
                status(200)
            }
        })
        .await;
        let mut p = policy(&[], 1);
        p.per_try_timeout = Some(Duration::from_millis(100));
        let rsp = client(http2)
            .oneshot(request(&server, MockBody::new().data("payload"), p))
            .await
            .expect("the retry answers");
        assert_eq!(rsp.status(), 200);
        assert_eq!(
            outcome(&rsp),
            RetryOutcome {
                attempts: 2,
                stopped: None
            },
            "http2={http2}: the slow first attempt was cut and retried"
        );
        let log = log.lock().unwrap();
        assert!(
            log.iter().all(|r| r.body == "payload"),
            "both attempts got the body"
        );
    }
}

#[tokio::test]
async fn per_try_timeout_without_retries_maps_to_504() {
    let (server, _log) = start(ServerProtocol::Auto, |_| {
        let (rsp, _) = status(200);
        (rsp, Some(Duration::from_secs(5)))
    })
    .await;
    let mut p = policy(&[], 0);
    p.per_try_timeout = Some(Duration::from_millis(100));
    let err = client(false)
        .oneshot(request(&server, MockBody::new(), p))
        .await
        .expect_err("the only attempt times out");
    assert_eq!(
        to_proxy_error(&*err).kind(),
        ProxyErrorKind::BackendRequestTimeout,
        "504 backend request timeout: {err}"
    );
}

#[tokio::test]
async fn deadline_stops_retries() {
    let (server, log) = start(ServerProtocol::Auto, |_| status(503)).await;
    let mut p = policy(&[503], 5);
    p.backoff = ExponentialBackoff::try_new(Duration::from_secs(2), Duration::from_secs(10), 0.0)
        .expect("valid backoff");
    let mut req = request(&server, MockBody::new(), p);
    req.extensions_mut()
        .insert(Deadline(Instant::now() + Duration::from_millis(500)));
    let rsp = client(false).oneshot(req).await.expect("a response");
    assert_eq!(rsp.status(), 503);
    assert_eq!(
        outcome(&rsp),
        RetryOutcome {
            attempts: 1,
            stopped: Some(RetryStop::DeadlinePassed)
        },
        "a 2 s backoff does not fit a 500 ms deadline"
    );
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn connect_errors_are_retried_then_map_to_502() {
    // A port that was just free: connections are refused.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let mut p = policy(&[], 2);
    p.backoff =
        ExponentialBackoff::try_new(Duration::from_millis(1), Duration::from_millis(5), 0.0)
            .expect("valid backoff");
    let mut req = Request::get(format!("http://{addr}/"))
        .body(MockBody::new())
        .expect("a valid request");
    req.extensions_mut().insert(p);
    let err = client(false)
        .oneshot(req)
        .await
        .expect_err("nothing listens");
    assert_eq!(
        RetryOutcome::from_error(&*err),
        Some(RetryOutcome {
            attempts: 3,
            stopped: Some(RetryStop::LimitExceeded)
        }),
        "connection failures are retried: {err}"
    );
    assert_eq!(
        to_proxy_error(&*err).kind(),
        ProxyErrorKind::ConnectFailed,
        "the final error maps to 502 connect failed"
    );
}
