use super::*;
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use linkerd_http_classify::{
    BoxError, ProxyError, ProxyErrorKind, find_proxy_error, to_proxy_error,
};
use linkerd_http_test_util::{MockBody, collect, collect_until_error};
use proptest::prelude::*;
use std::{
    error::Error as _,
    sync::{Arc, Mutex},
};
use tower::{Layer, ServiceExt, service_fn};

type Seen = Arc<Mutex<Vec<(ResetDirection, h2::Reason)>>>;

fn recorder() -> (Seen, impl Fn(ResetDirection, h2::Reason) + Clone) {
    let seen = Seen::default();
    let hook = {
        let seen = seen.clone();
        move |d, r| seen.lock().expect("lock").push((d, r))
    };
    (seen, hook)
}

#[derive(Debug)]
struct Wrapped(BoxError);

impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("wrapped by an outer layer")
    }
}

impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Calls an `H2ResetLayer` around a service answering `rsp` to a `method` request.
async fn respond(
    method: Method,
    rsp: Result<Response<MockBody>, BoxError>,
) -> (
    Result<Response<UpstreamBody<MockBody, impl OnReset + Clone>>, BoxError>,
    Seen,
) {
    let (seen, hook) = recorder();
    let rsp = Mutex::new(Some(rsp));
    let svc = H2ResetLayer::with_hook(hook).layer(service_fn(move |_req: Request<()>| {
        let rsp = rsp.lock().expect("lock").take().expect("called once");
        async move { rsp }
    }));
    let req = Request::builder().method(method).body(()).expect("request");
    (svc.oneshot(req).await, seen)
}

fn with_length(len: &str, body: MockBody) -> Response<MockBody> {
    Response::builder()
        .header("content-length", len)
        .body(body)
        .expect("response")
}

// === settings ===

#[test]
fn default_settings_apply() {
    let exec = hyper_util::rt::TokioExecutor::new();
    let mut server = hyper::server::conn::http2::Builder::new(exec.clone());
    ServerSettings::default()
        .apply_to_server(&mut server)
        .expect("server defaults are valid");
    let mut auto = hyper_util::server::conn::auto::Builder::new(exec.clone());
    ServerSettings::default()
        .apply_to_auto(&mut auto)
        .expect("auto defaults are valid");
    let mut client = hyper::client::conn::http2::Builder::new(exec);
    ClientSettings::default()
        .apply_to_client(&mut client)
        .expect("client defaults are valid");
    let defaults = ServerSettings::default();
    assert!(
        defaults.extended_connect,
        "extended CONNECT is on by default"
    );
    assert_eq!(
        defaults.max_pending_accept_reset_streams, 20,
        "rapid-reset guard"
    );
    assert!(
        defaults.max_local_error_reset_streams.is_some(),
        "local resets are capped"
    );
    assert!(
        defaults.max_concurrent_streams.is_some(),
        "streams are capped"
    );
}

#[test]
fn invalid_settings_are_errors_not_panics() {
    let exec = hyper_util::rt::TokioExecutor::new();
    let mut server = hyper::server::conn::http2::Builder::new(exec.clone());
    let mut settings = ServerSettings {
        max_frame_size: 1024,
        ..ServerSettings::default()
    };
    let err = settings
        .apply_to_server(&mut server)
        .expect_err("too small");
    assert_eq!(err.field(), "max_frame_size");
    settings.max_frame_size = 1 << 24;
    assert!(settings.validate().is_err(), "too large");
    settings = ServerSettings {
        flow_control: FlowControl::Fixed {
            stream: u32::MAX,
            connection: 65_535,
        },
        ..ServerSettings::default()
    };
    assert_eq!(
        settings.validate().map_err(|e| e.field()),
        Err("flow_control.stream")
    );
    let client = ClientSettings {
        max_send_buf_size: usize::MAX,
        ..ClientSettings::default()
    };
    let mut builder = hyper::client::conn::http2::Builder::new(exec);
    let err = client.apply_to_client(&mut builder).expect_err("too big");
    assert_eq!(err.field(), "max_send_buf_size");
    assert!(!err.to_string().ends_with('.'));
    // Fixed windows and no keep-alive are valid too.
    let settings = ServerSettings {
        flow_control: FlowControl::Fixed {
            stream: 1 << 20,
            connection: 1 << 22,
        },
        keep_alive: None,
        extended_connect: false,
        ..ServerSettings::default()
    };
    let mut server = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    settings.apply_to_server(&mut server).expect("valid");
}

// === UpstreamBody ===

#[tokio::test]
async fn forwards_end_stream_and_size_hint() {
    let (rsp, seen) = respond(
        Method::GET,
        Ok(with_length(
            "4",
            MockBody::new().data("abcd").with_exact_size(4),
        )),
    )
    .await;
    let rsp = rsp.expect("response");
    assert_eq!(
        rsp.body().size_hint().exact(),
        Some(4),
        "size_hint forwarded"
    );
    assert!(!rsp.body().is_end_stream(), "is_end_stream forwarded");
    let got = collect(rsp.into_body()).await.expect("a complete body");
    assert_eq!(got.data, "abcd");
    assert!(seen.lock().expect("lock").is_empty(), "no reset");

    let body = UpstreamBody::new(MockBody::new(), None, NoopReset);
    assert!(body.is_end_stream(), "an empty body is at its end");
}

#[tokio::test]
async fn a_short_body_fails_instead_of_ending() {
    let (rsp, seen) = respond(
        Method::GET,
        Ok(with_length("10", MockBody::new().data("abcd"))),
    )
    .await;
    let body = rsp.expect("response").into_body();
    let mut body = std::pin::pin!(body);
    let frame = http_body_util::BodyExt::frame(&mut body)
        .await
        .expect("frame")
        .expect("data");
    assert_eq!(frame.into_data().expect("data"), "abcd");
    assert!(
        !body.is_end_stream(),
        "a short body must not claim its end, or hyper sends a clean END_STREAM"
    );
    let (_, err) = collect_until_error(body).await;
    let err = err.expect("the short body fails");
    let incomplete = err
        .downcast_ref::<IncompleteBody>()
        .expect("IncompleteBody");
    assert_eq!((incomplete.expected(), incomplete.received()), (10, 4));
    assert_eq!(find_h2_reason(&*err), Some(h2::Reason::INTERNAL_ERROR));
    assert_eq!(to_proxy_error(&*err).label(), "RESET");
    assert_eq!(err.to_string(), "upstream body ended after 4 of 10 bytes");
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![
            (ResetDirection::Inbound, h2::Reason::NO_ERROR),
            (ResetDirection::Outbound, h2::Reason::INTERNAL_ERROR)
        ]
    );
}

#[tokio::test]
async fn trailers_before_the_announced_length_fail() {
    let (rsp, _) = respond(
        Method::GET,
        Ok(with_length(
            "10",
            MockBody::new().data("ab").trailers(http::HeaderMap::new()),
        )),
    )
    .await;
    let err = collect(rsp.expect("response").into_body())
        .await
        .expect_err("trailers cannot end a short body");
    assert!(err.is::<IncompleteBody>());
}

#[tokio::test]
async fn bodiless_responses_are_not_checked() {
    for (method, status) in [
        (Method::HEAD, 200),
        (Method::GET, 204),
        (Method::GET, 304),
        (Method::CONNECT, 200),
    ] {
        let rsp = Response::builder()
            .status(status)
            .header("content-length", "100")
            .body(MockBody::new())
            .expect("response");
        let (rsp, _) = respond(method.clone(), Ok(rsp)).await;
        let got = collect(rsp.expect("response").into_body()).await;
        assert!(got.is_ok(), "{method} {status}: no body is expected");
    }
}

#[tokio::test]
async fn proxy_errors_and_timeouts_pass_through() {
    let timeout = ProxyError::idle_timeout().with_source(h2::Error::from(h2::Reason::CANCEL));
    let (rsp, seen) = respond(Method::GET, Err(Box::new(timeout.clone()))).await;
    let err = rsp.expect_err("fails");
    assert_eq!(
        find_proxy_error(&*err).map(ProxyError::kind),
        Some(ProxyErrorKind::IdleTimeout),
        "a timeout keeps its meaning"
    );
    assert_eq!(
        find_h2_reason(&*err),
        Some(h2::Reason::CANCEL),
        "and its CANCEL"
    );
    assert!(
        seen.lock().expect("lock").is_empty(),
        "not counted as a reset"
    );

    let (rsp, _) = respond(
        Method::GET,
        Ok(Response::new(MockBody::new().data("a").error(timeout))),
    )
    .await;
    let err = collect(rsp.expect("response").into_body())
        .await
        .expect_err("fails");
    assert!(
        !err.is::<StreamReset>(),
        "a timeout in the body is not an upstream reset"
    );

    let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    let (rsp, _) = respond(Method::GET, Err(Box::new(io))).await;
    let err = rsp.expect_err("fails");
    assert!(
        err.is::<std::io::Error>(),
        "errors without a reason pass through"
    );
}

fn reason() -> impl Strategy<Value = h2::Reason> {
    prop_oneof![0u32..=0xd, any::<u32>()].prop_map(h2::Reason::from)
}

proptest! {
    /// Every upstream reason, before or after headers, maps as the reason table says, and the
    /// client reason survives wrappers that keep the chain or skip one level.
    #[test]
    fn resets_map_as_the_table_says(upstream in reason(), after_headers in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let (err, seen) = rt.block_on(async {
            let cause: BoxError = Box::new(h2::Error::from(upstream));
            if after_headers {
                let (rsp, seen) =
                    respond(Method::GET, Ok(Response::new(MockBody::new().data("x").error(cause)))).await;
                let err = collect(rsp.expect("response").into_body()).await.expect_err("reset");
                (err, seen)
            } else {
                let (rsp, seen) = respond(Method::GET, Err(cause)).await;
                (rsp.expect_err("reset"), seen)
            }
        });
        let expected = client_reset_reason(upstream);
        let reset = err.downcast_ref::<StreamReset>().expect("StreamReset");
        prop_assert_eq!(reset.upstream_reason(), upstream);
        prop_assert_eq!(reset.client_reason(), expected);
        prop_assert!(reset.upstream_error().is_some());
        prop_assert_eq!(find_h2_reason(&*err), Some(expected));
        prop_assert_eq!(to_proxy_error(&*err).label(), "RESET");
        prop_assert_eq!(to_proxy_error(&*err).h2_reset_reason(), Some(expected));
        let wrapped = Wrapped(err);
        prop_assert_eq!(find_h2_reason(&wrapped), Some(expected));
        let io = std::io::Error::other(wrapped.0);
        prop_assert_eq!(
            find_h2_reason(io.source().expect("io hides one level")),
            Some(expected)
        );
        prop_assert_eq!(
            seen.lock().expect("lock").clone(),
            vec![(ResetDirection::Inbound, upstream), (ResetDirection::Outbound, expected)]
        );
    }
}

#[test]
fn table_reasons() {
    use h2::Reason as R;
    for (upstream, client) in [
        (R::CANCEL, R::CANCEL),
        (R::REFUSED_STREAM, R::REFUSED_STREAM),
        (R::ENHANCE_YOUR_CALM, R::ENHANCE_YOUR_CALM),
        (R::INTERNAL_ERROR, R::INTERNAL_ERROR),
        (R::PROTOCOL_ERROR, R::INTERNAL_ERROR),
        (R::NO_ERROR, R::INTERNAL_ERROR),
        (R::FLOW_CONTROL_ERROR, R::INTERNAL_ERROR),
    ] {
        let e = StreamReset::new(upstream, None);
        assert_eq!(e.client_reason(), client, "{upstream:?}");
        assert!(!e.to_string().ends_with('.'));
    }
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<StreamReset>();
    send_sync::<IncompleteBody>();
    send_sync::<UpstreamBody<MockBody>>();
    let _ = Bytes::new();
}
