use super::*;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use linkerd_http_classify::{
    BoxError, Deadline, ProxyErrorKind, encode_grpc_timeout, find_h2_reason, is_timeout,
    to_proxy_error,
};
use linkerd_http_test_util::{MockBody, collect, collect_until_error};
use std::{future::Future, time::Duration};
use tokio::time::{Instant, sleep};
use tower::{Layer, ServiceExt, service_fn};

type Req = Request<RequestBody<MockBody>>;

/// The four timeout errors, for the checks they share.
trait Leaf: std::error::Error + 'static {
    fn timeout(&self) -> Duration;
}

macro_rules! leaf {
    ($($t:ty),*) => {
        $(impl Leaf for $t {
            fn timeout(&self) -> Duration {
                <$t>::timeout(self)
            }
        })*
    };
}

leaf!(
    LifetimeTimeout,
    ResponseHeadersTimeout,
    ResponseTimeout,
    IdleTimeout
);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A service with `timeouts` around `handler`, called once with `req`.
async fn call<F, Fut>(
    timeouts: StreamTimeouts,
    req: Request<MockBody>,
    handler: F,
) -> Result<Response<ResponseBody<MockBody>>, BoxError>
where
    F: FnMut(Req) -> Fut,
    Fut: Future<Output = Result<Response<MockBody>, BoxError>>,
{
    call_through(StreamTimeoutsLayer::new(timeouts), req, handler).await
}

/// Like [`call`], with [`StreamTimeoutsLayer::inner_enforces_deadline`].
async fn call_enforced<F, Fut>(
    timeouts: StreamTimeouts,
    req: Request<MockBody>,
    handler: F,
) -> Result<Response<ResponseBody<MockBody>>, BoxError>
where
    F: FnMut(Req) -> Fut,
    Fut: Future<Output = Result<Response<MockBody>, BoxError>>,
{
    call_through(
        StreamTimeoutsLayer::new(timeouts).inner_enforces_deadline(),
        req,
        handler,
    )
    .await
}

/// `layer` around `handler`, called once with `req`.
async fn call_through<F, Fut>(
    layer: StreamTimeoutsLayer,
    req: Request<MockBody>,
    handler: F,
) -> Result<Response<ResponseBody<MockBody>>, BoxError>
where
    F: FnMut(Req) -> Fut,
    Fut: Future<Output = Result<Response<MockBody>, BoxError>>,
{
    layer.layer(service_fn(handler)).oneshot(req).await
}

/// Reads the whole request body, as an upstream would before answering.
async fn drain(req: Req) -> Result<(), BoxError> {
    collect(req.into_body()).await.map(|_| ())
}

fn ok(body: MockBody) -> Result<Response<MockBody>, BoxError> {
    Ok(Response::new(body))
}

fn get() -> Request<MockBody> {
    Request::new(MockBody::new())
}

#[track_caller]
fn assert_timeout<E: Leaf>(err: &BoxError, timeout: Duration, label: &str) {
    let leaf = err
        .downcast_ref::<E>()
        .unwrap_or_else(|| panic!("expected a {}, got {err}", std::any::type_name::<E>()));
    assert!(is_timeout(&**err), "{err} must be recognised as a timeout");
    assert_eq!(
        find_h2_reason(&**err),
        Some(h2::Reason::CANCEL),
        "{err} must carry CANCEL for HTTP/2 clients"
    );
    assert_eq!(
        to_proxy_error(&**err).label(),
        label,
        "{err} maps to the wrong ProxyError"
    );
    assert!(
        std::error::Error::source(leaf).is_some(),
        "the ProxyError is the source"
    );
    assert_eq!(
        leaf.timeout(),
        timeout,
        "{err} reports the timeout that expired"
    );
}

// === pass-through ===

#[tokio::test(start_paused = true)]
async fn no_timeouts_passes_through() {
    let req = Request::new(MockBody::new().data("ping").with_exact_size(4));
    let rsp = call(StreamTimeouts::default(), req, |req: Req| async move {
        assert!(
            req.extensions().get::<Deadline>().is_none(),
            "no lifetime, no Deadline"
        );
        assert_eq!(
            req.body().size_hint().exact(),
            Some(4),
            "request size_hint forwarded"
        );
        assert!(
            !req.body().is_end_stream(),
            "request is_end_stream forwarded"
        );
        let got = collect(req.into_body()).await?;
        assert_eq!(got.data, "ping");
        sleep(secs(3600)).await;
        ok(MockBody::new().data("pong").with_exact_size(4))
    })
    .await
    .expect("no timeout can fire");
    assert_eq!(
        rsp.body().size_hint().exact(),
        Some(4),
        "response size_hint forwarded"
    );
    assert!(
        !rsp.body().is_end_stream(),
        "response is_end_stream forwarded"
    );
    let got = collect(rsp.into_body()).await.expect("body");
    assert_eq!(got.data, "pong");
}

#[tokio::test(start_paused = true)]
async fn bodies_forward_end_stream_and_size_hint_with_timeouts() {
    let timeouts = StreamTimeouts::new()
        .with_idle(Some(secs(1)))
        .with_lifetime(Some(secs(10)));
    let rsp = call(
        timeouts,
        Request::new(MockBody::new().data("abc").with_exact_size(3)),
        |req: Req| async move {
            assert_eq!(
                req.body().size_hint().exact(),
                Some(3),
                "request size_hint forwarded"
            );
            assert!(!req.body().is_end_stream());
            drain(req).await?;
            ok(MockBody::new().data("abcd").with_exact_size(4))
        },
    )
    .await
    .expect("response");
    assert_eq!(
        rsp.body().size_hint().exact(),
        Some(4),
        "response size_hint forwarded"
    );
    let mut body = std::pin::pin!(rsp.into_body());
    let frame = body.as_mut().frame().await.expect("a frame").expect("data");
    assert_eq!(frame.into_data().expect("data"), "abcd");
    assert!(
        body.is_end_stream(),
        "response is_end_stream forwarded after the last frame"
    );
    assert!(body.as_mut().frame().await.is_none(), "the body ends");
}

#[tokio::test(start_paused = true)]
async fn extension_overrides_and_is_removed() {
    let mut req = get();
    req.extensions_mut().insert(StreamTimeouts::new());
    let layer = StreamTimeouts::new().with_lifetime(Some(secs(1)));
    let rsp = call(layer, req, |req: Req| async move {
        assert!(
            req.extensions().get::<StreamTimeouts>().is_none(),
            "the layer consumes the extension"
        );
        assert!(
            req.extensions().get::<Deadline>().is_none(),
            "the override has no lifetime"
        );
        sleep(secs(5)).await;
        ok(MockBody::new().data("late"))
    })
    .await
    .expect("the extension disabled the layer's lifetime");
    collect(rsp.into_body()).await.expect("body");

    let mut req = get();
    req.extensions_mut()
        .insert(StreamTimeouts::new().with_response_headers(Some(ms(100))));
    let err = call(StreamTimeouts::new(), req, |_req: Req| async move {
        sleep(secs(5)).await;
        ok(MockBody::new())
    })
    .await
    .expect_err("the extension's timeout applies");
    assert_timeout::<ResponseHeadersTimeout>(&err, ms(100), "RESPONSE_HEADERS_TIMEOUT");
}

// === lifetime ===

#[tokio::test(start_paused = true)]
async fn lifetime_before_headers() {
    let start = Instant::now();
    let timeouts = StreamTimeouts::new().with_lifetime(Some(secs(10)));
    let err = call(timeouts, get(), |req: Req| async move {
        let Deadline(at) = *req
            .extensions()
            .get::<Deadline>()
            .expect("Deadline written");
        assert_eq!(
            at - start,
            secs(10),
            "the deadline is the call time plus the lifetime"
        );
        sleep(secs(20)).await;
        ok(MockBody::new())
    })
    .await
    .expect_err("the lifetime expires before the headers");
    assert_eq!(start.elapsed(), secs(10), "fails at the deadline");
    assert_timeout::<LifetimeTimeout>(&err, secs(10), "REQUEST_TIMEOUT");
    let leaf = err.downcast_ref::<LifetimeTimeout>().expect("leaf");
    assert_eq!(leaf.timeout(), secs(10));
    assert_eq!(leaf.proxy_error().kind(), ProxyErrorKind::RequestTimeout);
    assert_eq!(err.to_string(), "stream lifetime of 10s exceeded");
}

/// A deadline already passed when the response future is first polled (a zero lifetime, on
/// the real clock) still fails the request: the first poll arms the timer without reading
/// the clock, and the timer, already due, wakes the future to find the deadline passed.
#[tokio::test]
async fn a_deadline_passed_before_the_first_poll_fails_the_request() {
    let timeouts = StreamTimeouts::new().with_lifetime(Some(Duration::ZERO));
    let err = tokio::time::timeout(
        secs(5),
        call(timeouts, get(), |_req: Req| async move {
            sleep(secs(60)).await;
            ok(MockBody::new())
        }),
    )
    .await
    .expect("fails well before the response")
    .expect_err("the lifetime has passed");
    assert_timeout::<LifetimeTimeout>(&err, Duration::ZERO, "REQUEST_TIMEOUT");
}

/// With or without an inner service that enforces the deadline before the headers, the body
/// enforces the lifetime after them.
#[tokio::test(start_paused = true)]
async fn lifetime_after_headers() {
    for inner_deadline in [false, true] {
        lifetime_after_headers_with(inner_deadline).await;
    }
}

async fn lifetime_after_headers_with(inner_deadline: bool) {
    let start = Instant::now();
    let timeouts = StreamTimeouts::new().with_lifetime(Some(secs(10)));
    let handler = |_req: Req| async move {
        sleep(secs(4)).await;
        ok(MockBody::new().data("a").delay(secs(20)).data("b"))
    };
    let rsp = if inner_deadline {
        call_enforced(timeouts, get(), handler).await
    } else {
        call(timeouts, get(), handler).await
    }
    .expect("headers arrive in time");
    let (got, err) = collect_until_error(rsp.into_body()).await;
    let err = err.expect("the lifetime expires in the body");
    assert_eq!(got.data, "a", "data before the expiry is delivered");
    assert_eq!(
        start.elapsed(),
        secs(10),
        "the lifetime counts from the call"
    );
    assert_timeout::<LifetimeTimeout>(&err, secs(10), "REQUEST_TIMEOUT");
}

#[tokio::test(start_paused = true)]
async fn lifetime_covers_a_slow_request_body() {
    let start = Instant::now();
    let timeouts = StreamTimeouts::new().with_lifetime(Some(secs(3)));
    let req = Request::new(MockBody::new().data("a").delay(secs(10)).data("b"));
    let err = call(timeouts, req, |req: Req| async move {
        drain(req).await?;
        ok(MockBody::new())
    })
    .await
    .expect_err("the request body is too slow");
    assert_eq!(start.elapsed(), secs(3));
    assert_timeout::<LifetimeTimeout>(&err, secs(3), "REQUEST_TIMEOUT");
}

#[tokio::test(start_paused = true)]
async fn an_inner_deadline_leaves_the_headers_to_the_inner_service() {
    let start = Instant::now();
    let timeouts = StreamTimeouts::new().with_lifetime(Some(secs(10)));
    let rsp = call_enforced(timeouts, get(), |req: Req| async move {
        assert!(
            req.extensions().get::<Deadline>().is_some(),
            "Deadline written"
        );
        // An inner service that breaks its promise: only it could have timed this out.
        sleep(secs(20)).await;
        ok(MockBody::new().data("a").delay(secs(1)).data("b"))
    })
    .await
    .expect("no timer of the layer's own before the headers");
    assert_eq!(start.elapsed(), secs(20));
    // Past the deadline, the body fails as soon as it waits.
    let (got, err) = collect_until_error(rsp.into_body()).await;
    assert_eq!(got.data, "a", "a frame already there is delivered");
    assert_eq!(start.elapsed(), secs(20));
    assert_timeout::<LifetimeTimeout>(&err.expect("expired"), secs(10), "REQUEST_TIMEOUT");
}

#[tokio::test(start_paused = true)]
async fn an_inner_error_at_the_deadline_is_the_lifetime_timeout() {
    let start = Instant::now();
    let timeouts = StreamTimeouts::new().with_lifetime(Some(secs(10)));
    let err = call_enforced(timeouts, get(), |req: Req| async move {
        let Deadline(at) = *req
            .extensions()
            .get::<Deadline>()
            .expect("Deadline written");
        tokio::time::sleep_until(at).await;
        Err::<Response<MockBody>, BoxError>("cut at the deadline".into())
    })
    .await
    .expect_err("the inner service fails at the deadline");
    assert_eq!(start.elapsed(), secs(10));
    assert_timeout::<LifetimeTimeout>(&err, secs(10), "REQUEST_TIMEOUT");

    // An error before the deadline is the inner service's own.
    let timeouts = StreamTimeouts::new().with_lifetime(Some(secs(10)));
    let err = call_enforced(timeouts, get(), |_req: Req| async move {
        sleep(secs(1)).await;
        Err::<Response<MockBody>, BoxError>("refused".into())
    })
    .await
    .expect_err("the inner service fails");
    assert_eq!(err.to_string(), "refused");
}

#[tokio::test(start_paused = true)]
async fn other_timeouts_keep_the_layer_timer_with_an_inner_deadline() {
    let start = Instant::now();
    let timeouts = StreamTimeouts::new()
        .with_lifetime(Some(secs(10)))
        .with_idle(Some(secs(60)));
    let err = call_enforced(timeouts, get(), |_req: Req| async move {
        sleep(secs(20)).await;
        ok(MockBody::new())
    })
    .await
    .expect_err("the layer's own timer runs");
    assert_eq!(start.elapsed(), secs(10));
    assert_timeout::<LifetimeTimeout>(&err, secs(10), "REQUEST_TIMEOUT");
}

#[tokio::test(start_paused = true)]
async fn an_earlier_deadline_is_kept() {
    let start = Instant::now();
    let mut req = get();
    req.extensions_mut().insert(Deadline(start + secs(2)));
    let timeouts = StreamTimeouts::new().with_lifetime(Some(secs(10)));
    let rsp = call(timeouts, req, |req: Req| async move {
        let Deadline(at) = *req.extensions().get::<Deadline>().expect("Deadline");
        assert_eq!(
            at - start,
            secs(2),
            "an earlier deadline is not pushed back"
        );
        ok(MockBody::new())
    })
    .await;
    assert!(rsp.is_ok(), "no timeout fired");
}

// === response_headers ===

#[tokio::test(start_paused = true)]
async fn response_headers_counts_from_the_request_end() {
    let timeouts = StreamTimeouts::new().with_response_headers(Some(secs(3)));
    // The request body ends at 5s; the answer comes 2s later: in time, although 7s passed.
    let req = Request::new(MockBody::new().delay(secs(5)).data("x"));
    let rsp = call(timeouts, req, |req: Req| async move {
        drain(req).await?;
        sleep(secs(2)).await;
        ok(MockBody::new())
    })
    .await;
    assert!(
        rsp.is_ok(),
        "response_headers must not count the request body's time"
    );

    let start = Instant::now();
    let req = Request::new(MockBody::new().delay(secs(5)).data("x"));
    let err = call(timeouts, req, |req: Req| async move {
        drain(req).await?;
        sleep(secs(60)).await;
        ok(MockBody::new())
    })
    .await
    .expect_err("no headers within 3s of the request end");
    assert_eq!(start.elapsed(), secs(8), "5s of request body + 3s");
    assert_timeout::<ResponseHeadersTimeout>(&err, secs(3), "RESPONSE_HEADERS_TIMEOUT");
    assert_eq!(
        err.to_string(),
        "no response headers within 3s of the request end"
    );
}

#[tokio::test(start_paused = true)]
async fn response_headers_does_not_limit_the_body() {
    let timeouts = StreamTimeouts::new().with_response_headers(Some(secs(1)));
    let rsp = call(timeouts, get(), |_req: Req| async move {
        ok(MockBody::new().delay(secs(30)).data("slow"))
    })
    .await
    .expect("headers at once");
    let got = collect(rsp.into_body())
        .await
        .expect("no timeout after headers");
    assert_eq!(got.data, "slow");
}

// === response_end ===

#[tokio::test(start_paused = true)]
async fn response_end_before_headers() {
    let start = Instant::now();
    let timeouts = StreamTimeouts::new().with_response_end(Some(secs(2)));
    let err = call(timeouts, get(), |_req: Req| async move {
        sleep(secs(10)).await;
        ok(MockBody::new())
    })
    .await
    .expect_err("response_end also bounds the wait for headers");
    assert_eq!(start.elapsed(), secs(2));
    assert_timeout::<ResponseTimeout>(&err, secs(2), "RESPONSE_TIMEOUT");
}

#[tokio::test(start_paused = true)]
async fn response_end_after_headers() {
    let start = Instant::now();
    let timeouts = StreamTimeouts::new().with_response_end(Some(secs(5)));
    let req = Request::new(MockBody::new().delay(secs(1)).data("x"));
    let rsp = call(timeouts, req, |req: Req| async move {
        drain(req).await?;
        ok(MockBody::new()
            .delay(secs(2))
            .data("a")
            .delay(secs(2))
            .data("b")
            .delay(secs(2))
            .data("c"))
    })
    .await
    .expect("headers in time");
    let (got, err) = collect_until_error(rsp.into_body()).await;
    let err = err.expect("the body is too slow");
    assert_eq!(got.data, "ab");
    assert_eq!(start.elapsed(), secs(6), "1s of request body + 5s");
    assert_timeout::<ResponseTimeout>(&err, secs(5), "RESPONSE_TIMEOUT");
    assert_eq!(
        err.to_string(),
        "response not complete within 5s of the request end"
    );
}

#[tokio::test(start_paused = true)]
async fn response_end_starts_when_a_streaming_request_ends_after_headers() {
    let start = Instant::now();
    let timeouts = StreamTimeouts::new().with_response_end(Some(secs(2)));
    // The request body ends at 10s, long after the headers; the response body ends at 11s.
    let req = Request::new(MockBody::new().delay(secs(10)).data("x"));
    let rsp = call(timeouts, req, |req: Req| async move {
        tokio::spawn(drain(req));
        ok(MockBody::new()
            .delay(secs(11))
            .data("done")
            .delay(secs(5))
            .data("late"))
    })
    .await
    .expect("headers");
    let (got, err) = collect_until_error(rsp.into_body()).await;
    let err = err.expect("the response outlives the request end by more than 2s");
    assert_eq!(
        got.data, "done",
        "frames within 2s of the request end are delivered"
    );
    assert_eq!(start.elapsed(), secs(12), "10s + 2s");
    assert_timeout::<ResponseTimeout>(&err, secs(2), "RESPONSE_TIMEOUT");
}

// === idle ===

#[tokio::test(start_paused = true)]
async fn idle_before_headers() {
    let start = Instant::now();
    let timeouts = StreamTimeouts::new().with_idle(Some(secs(1)));
    let err = call(timeouts, get(), |_req: Req| async move {
        sleep(secs(10)).await;
        ok(MockBody::new())
    })
    .await
    .expect_err("nothing moved for 1s");
    assert_eq!(start.elapsed(), secs(1));
    assert_timeout::<IdleTimeout>(&err, secs(1), "IDLE_TIMEOUT");
    assert_eq!(err.to_string(), "stream idle for 1s");
}

#[tokio::test(start_paused = true)]
async fn idle_is_reset_by_request_frames() {
    let timeouts = StreamTimeouts::new().with_idle(Some(secs(1)));
    let mut body = MockBody::new();
    for _ in 0..8 {
        body = body.delay(ms(800)).data("x");
    }
    let start = Instant::now();
    let rsp = call(timeouts, Request::new(body), |req: Req| async move {
        drain(req).await?;
        ok(MockBody::new().data("ok"))
    })
    .await
    .expect("request frames every 800ms keep a 1s idle timeout from firing");
    assert_eq!(start.elapsed(), ms(6400));
    collect(rsp.into_body()).await.expect("body");

    // The same, then the upstream sits on the request for 2s.
    let mut body = MockBody::new();
    for _ in 0..3 {
        body = body.delay(ms(800)).data("x");
    }
    let start = Instant::now();
    let err = call(timeouts, Request::new(body), |req: Req| async move {
        drain(req).await?;
        sleep(secs(2)).await;
        ok(MockBody::new())
    })
    .await
    .expect_err("idle after the last request frame");
    assert_eq!(
        start.elapsed(),
        ms(3400),
        "1s after the last request frame at 2.4s"
    );
    assert_timeout::<IdleTimeout>(&err, secs(1), "IDLE_TIMEOUT");
}

#[tokio::test(start_paused = true)]
async fn idle_is_reset_by_response_frames() {
    let timeouts = StreamTimeouts::new().with_idle(Some(secs(1)));
    let mut body = MockBody::new();
    for _ in 0..8 {
        body = body.delay(ms(900)).data("x");
    }
    let rsp = call(timeouts, get(), move |_req: Req| {
        let body = std::mem::take(&mut body);
        async move { ok(body) }
    })
    .await
    .expect("headers");
    let got = collect(rsp.into_body())
        .await
        .expect("frames every 900ms keep the stream alive");
    assert_eq!(got.data, "xxxxxxxx");

    let start = Instant::now();
    let rsp = call(timeouts, get(), |_req: Req| async move {
        ok(MockBody::new()
            .delay(ms(900))
            .data("a")
            .delay(secs(3))
            .data("b"))
    })
    .await
    .expect("headers");
    let (got, err) = collect_until_error(rsp.into_body()).await;
    assert_eq!(got.data, "a");
    assert_eq!(start.elapsed(), ms(1900), "1s after the last frame at 0.9s");
    assert_timeout::<IdleTimeout>(&err.expect("idle in the body"), secs(1), "IDLE_TIMEOUT");
}

#[tokio::test(start_paused = true)]
async fn idle_after_headers_is_reset_by_request_frames() {
    let timeouts = StreamTimeouts::new().with_idle(Some(secs(1)));
    // Bidirectional streaming: the request keeps sending while the response waits 3s.
    let mut body = MockBody::new();
    for _ in 0..8 {
        body = body.delay(ms(500)).data("x");
    }
    let rsp = call(timeouts, Request::new(body), |req: Req| async move {
        tokio::spawn(drain(req));
        ok(MockBody::new().delay(secs(3)).data("reply"))
    })
    .await
    .expect("headers");
    let got = collect(rsp.into_body())
        .await
        .expect("request frames keep the stream alive while the response is quiet");
    assert_eq!(got.data, "reply");

    // Without request frames the same response is idle.
    let rsp = call(timeouts, get(), |_req: Req| async move {
        ok(MockBody::new().delay(secs(3)).data("reply"))
    })
    .await
    .expect("headers");
    let err = collect(rsp.into_body()).await.expect_err("idle for 1s");
    assert_timeout::<IdleTimeout>(&err, secs(1), "IDLE_TIMEOUT");
}

// === the request body side ===

#[tokio::test(start_paused = true)]
async fn request_body_fails_once_a_timeout_expired() {
    let timeouts = StreamTimeouts::new().with_idle(Some(secs(1)));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    let req = Request::new(MockBody::new().data("a").hang());
    let err = call(timeouts, req, move |req: Req| {
        let tx = tx.take();
        async move {
            // An upstream connection task reads the request body on its own.
            let reader = tokio::spawn(collect_until_error(req.into_body()));
            if let Some(tx) = tx {
                let _ = tx.send(reader);
            }
            std::future::pending::<()>().await;
            ok(MockBody::new())
        }
    })
    .await
    .expect_err("the request body hangs");
    assert_timeout::<IdleTimeout>(&err, secs(1), "IDLE_TIMEOUT");
    let reader = rx.await.expect("the handler ran");
    let (got, body_err) = tokio::time::timeout(secs(1), reader)
        .await
        .expect("the waiting request body is woken")
        .expect("reader task");
    assert_eq!(got.data, "a");
    let body_err = body_err.expect("the request body fails with the timeout");
    assert_timeout::<IdleTimeout>(&body_err, secs(1), "IDLE_TIMEOUT");
}

// === grpc-timeout ===

fn grpc_request(timeout: &'static str) -> Request<MockBody> {
    let mut req = get();
    req.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    req.headers_mut()
        .insert("grpc-timeout", HeaderValue::from_static(timeout));
    req
}

/// The Deadline and upstream `grpc-timeout` a request gets.
async fn grpc_outcome(
    lifetime: Option<Duration>,
    req: Request<MockBody>,
) -> (Option<Duration>, Option<HeaderValue>) {
    let start = Instant::now();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    let rsp = call(
        StreamTimeouts::new().with_lifetime(lifetime),
        req,
        move |req: Req| {
            let deadline = req
                .extensions()
                .get::<Deadline>()
                .map(|Deadline(at)| *at - start);
            let header = req.headers().get("grpc-timeout").cloned();
            if let Some(tx) = tx.take() {
                let _ = tx.send((deadline, header));
            }
            async move { ok(MockBody::new()) }
        },
    )
    .await;
    assert!(
        rsp.is_ok(),
        "a grpc-timeout never fails a request by itself"
    );
    rx.await.expect("the handler ran")
}

#[tokio::test(start_paused = true)]
async fn grpc_timeout_units() {
    let cases = [
        ("1H", secs(3600)),
        ("10S", secs(10)),
        ("2M", secs(120)),
        ("500m", ms(500)),
        ("100u", Duration::from_micros(100)),
        ("5n", Duration::from_nanos(5)),
    ];
    for (value, expected) in cases {
        let (deadline, header) = grpc_outcome(None, grpc_request(value)).await;
        assert_eq!(
            deadline,
            Some(expected),
            "grpc-timeout {value} sets the deadline"
        );
        assert_eq!(
            header,
            Some(encode_grpc_timeout(expected)),
            "grpc-timeout {value} is re-written with the remaining time"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn grpc_timeout_shortens_never_lengthens() {
    let (deadline, header) = grpc_outcome(Some(secs(30)), grpc_request("10S")).await;
    assert_eq!(deadline, Some(secs(10)), "a shorter grpc-timeout wins");
    assert_eq!(header, Some(encode_grpc_timeout(secs(10))));

    let (deadline, header) = grpc_outcome(Some(secs(2)), grpc_request("10S")).await;
    assert_eq!(
        deadline,
        Some(secs(2)),
        "a longer grpc-timeout does not lengthen the lifetime"
    );
    assert_eq!(
        header,
        Some(encode_grpc_timeout(secs(2))),
        "the upstream learns the proxy's shorter deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn invalid_grpc_timeouts_are_ignored_and_removed() {
    for value in [
        "",
        "S",
        "10",
        "10x",
        "-5S",
        "1.5S",
        "123456789S",
        "10s0",
        " 10S",
    ] {
        let (deadline, header) = grpc_outcome(None, grpc_request(value)).await;
        assert_eq!(deadline, None, "{value:?} must be ignored");
        assert_eq!(
            header, None,
            "{value:?} goes no further (a gRPC server can take it badly)"
        );
        let (deadline, _) = grpc_outcome(Some(secs(7)), grpc_request(value)).await;
        assert_eq!(
            deadline,
            Some(secs(7)),
            "{value:?} leaves the lifetime alone"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn grpc_timeout_only_on_grpc_requests() {
    let mut req = get();
    req.headers_mut()
        .insert("grpc-timeout", HeaderValue::from_static("1S"));
    let (deadline, header) = grpc_outcome(None, req).await;
    assert_eq!(deadline, None, "not a gRPC request");
    assert_eq!(header, Some(HeaderValue::from_static("1S")));
}

#[tokio::test(start_paused = true)]
async fn grpc_timeout_is_enforced() {
    let start = Instant::now();
    let err = call(
        StreamTimeouts::new(),
        grpc_request("500m"),
        |_req: Req| async move {
            sleep(secs(5)).await;
            ok(MockBody::new())
        },
    )
    .await
    .expect_err("the client's deadline passed");
    assert_eq!(start.elapsed(), ms(500));
    assert_timeout::<LifetimeTimeout>(&err, ms(500), "REQUEST_TIMEOUT");
    let leaf = err.downcast_ref::<LifetimeTimeout>().expect("leaf");
    assert_eq!(
        leaf.timeout(),
        ms(500),
        "the effective lifetime is reported"
    );
}

// === errors ===

#[test]
fn errors_are_send_sync_and_distinct() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<LifetimeTimeout>();
    send_sync::<ResponseHeadersTimeout>();
    send_sync::<ResponseTimeout>();
    send_sync::<IdleTimeout>();
    send_sync::<StreamTimeoutsLayer>();
    let d = secs(1);
    let texts = [
        LifetimeTimeout::new(d).to_string(),
        ResponseHeadersTimeout::new(d).to_string(),
        ResponseTimeout::new(d).to_string(),
        IdleTimeout::new(d).to_string(),
    ];
    for (i, a) in texts.iter().enumerate() {
        assert!(!a.ends_with('.'), "{a}: no trailing period");
        assert_eq!(a.to_lowercase(), *a, "{a}: lowercase");
        for b in &texts[i + 1..] {
            assert_ne!(a, b, "each timeout has its own Display");
        }
    }
}

#[test]
fn errors_are_found_behind_wrappers() {
    #[derive(Debug)]
    struct Wrapper(BoxError);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.0)
        }
    }
    let err = Wrapper(Box::new(IdleTimeout::new(secs(1))));
    let found = linkerd_http_classify::chain(&err).any(|e| e.is::<IdleTimeout>());
    assert!(found, "the leaf type is findable through source()");
    assert_eq!(to_proxy_error(&err).label(), "IDLE_TIMEOUT");
    // io::Error::new hides one level of the chain: the reason is one level deeper, so it
    // survives.
    let io = std::io::Error::other(ResponseTimeout::new(secs(1)));
    assert_eq!(
        find_h2_reason(&io),
        Some(h2::Reason::CANCEL),
        "CANCEL survives io::Error"
    );
}

/// Notes backend `b` when dropped, like the route crate's split with an attempt in flight.
struct InFlight;

impl Drop for InFlight {
    fn drop(&mut self) {
        linkerd_http_classify::dropped::note(|n| n.backend_or(&std::sync::Arc::from("b")));
    }
}

/// A timer here that cuts the request drops the work below at once, and the error keeps
/// what that work noted (the backend the access log names).
#[tokio::test(start_paused = true)]
async fn a_cut_request_keeps_what_the_work_below_knew() {
    use linkerd_http_classify::dropped::CutShort;
    for timeouts in [
        StreamTimeouts::new().with_lifetime(Some(secs(1))),
        StreamTimeouts::new().with_response_headers(Some(secs(1))),
    ] {
        let err = call(timeouts, get(), |_: Req| async move {
            let guard = InFlight;
            sleep(secs(20)).await;
            drop(guard);
            ok(MockBody::new())
        })
        .await
        .expect_err("cut before the headers");
        let note = CutShort::find(&*err).expect("the note of the dropped work");
        assert_eq!(note.backend.as_deref(), Some("b"), "{timeouts:?}");
        assert!(is_timeout(&*err), "still a timeout: {err}");
    }
}
