use super::*;
use std::io;

#[derive(Debug)]
struct Wrapper(Box<dyn Error + Send + Sync>);

impl fmt::Display for Wrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("wrapper")
    }
}

impl Error for Wrapper {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}

fn map(e: impl Error + 'static) -> ProxyError {
    to_proxy_error(&e)
}

#[test]
fn proxy_error_in_chain_wins() {
    let timeout = ProxyError::idle_timeout().with_source(h2::Error::from(h2::Reason::CANCEL));
    let e = map(Wrapper(Box::new(timeout)));
    assert_eq!(
        e.kind(),
        ProxyErrorKind::IdleTimeout,
        "a ProxyError is found before the CANCEL reason it carries"
    );
    assert_eq!(e.http_status(), 504);
    assert_eq!(e.label(), "IDLE_TIMEOUT");
    let reason = find_h2_reason(&Wrapper(Box::new(
        ProxyError::idle_timeout().with_source(h2::Error::from(h2::Reason::CANCEL)),
    )));
    assert_eq!(
        reason,
        Some(h2::Reason::CANCEL),
        "hyper can still find CANCEL"
    );
}

#[test]
fn timeouts_before_resets() {
    let e = map(Wrapper(Box::new(io::Error::new(
        io::ErrorKind::TimedOut,
        "slow",
    ))));
    assert_eq!(e.kind(), ProxyErrorKind::BackendRequestTimeout);
}

#[test]
fn resets() {
    let e = map(Wrapper(Box::new(h2::Error::from(
        h2::Reason::REFUSED_STREAM,
    ))));
    assert_eq!(e.kind(), ProxyErrorKind::Reset(h2::Reason::REFUSED_STREAM));
    assert_eq!(e.message(), "upstream reset (REFUSED_STREAM)");
    assert_eq!(e.http_status(), 502);
    assert_eq!(e.h2_reset_reason(), Some(h2::Reason::REFUSED_STREAM));
    let e = ProxyError::reset(h2::Reason::PROTOCOL_ERROR);
    assert_eq!(
        e.h2_reset_reason(),
        Some(h2::Reason::INTERNAL_ERROR),
        "connection-level codes become INTERNAL_ERROR"
    );
}

#[test]
fn reset_reason_table() {
    use h2::Reason as R;
    for r in [
        R::CANCEL,
        R::REFUSED_STREAM,
        R::ENHANCE_YOUR_CALM,
        R::INTERNAL_ERROR,
    ] {
        assert_eq!(client_reset_reason(r), r, "{r:?} is forwarded");
    }
    for r in [
        R::NO_ERROR,
        R::PROTOCOL_ERROR,
        R::FLOW_CONTROL_ERROR,
        R::STREAM_CLOSED,
        R::COMPRESSION_ERROR,
        R::CONNECT_ERROR,
        R::HTTP_1_1_REQUIRED,
        R::from(0xff),
    ] {
        assert_eq!(client_reset_reason(r), R::INTERNAL_ERROR, "{r:?}");
    }
    assert_eq!(reason_name(R::from(0xff)), "UNKNOWN_255");
}

#[test]
fn connect_failures() {
    for kind in [
        io::ErrorKind::ConnectionRefused,
        io::ErrorKind::AddrNotAvailable,
        io::ErrorKind::HostUnreachable,
    ] {
        let e = map(Wrapper(Box::new(io::Error::from(kind))));
        assert_eq!(e.kind(), ProxyErrorKind::ConnectFailed, "{kind:?}");
        assert_eq!(e.http_status(), 502);
        assert_eq!(e.message(), "connect failed");
    }
}

#[test]
fn resets_of_established_connections_are_not_connect_failures() {
    for kind in [
        io::ErrorKind::ConnectionReset,
        io::ErrorKind::ConnectionAborted,
    ] {
        let e = map(Wrapper(Box::new(io::Error::from(kind))));
        assert_ne!(
            e.kind(),
            ProxyErrorKind::ConnectFailed,
            "{kind:?} may come after the request was sent: never a (retryable) connect failure"
        );
    }
}

#[test]
fn a_lost_upstream_connection_is_a_reset() {
    for kind in [
        io::ErrorKind::ConnectionReset,
        io::ErrorKind::ConnectionAborted,
        io::ErrorKind::BrokenPipe,
        io::ErrorKind::UnexpectedEof,
    ] {
        let e = map(Wrapper(Box::new(io::Error::from(kind))));
        assert_eq!(
            e.kind(),
            ProxyErrorKind::Reset(h2::Reason::INTERNAL_ERROR),
            "{kind:?}"
        );
        assert_eq!(e.label(), "RESET");
    }
}

#[test]
fn internal_otherwise() {
    let e = map(io::Error::other("boom"));
    assert_eq!(e.kind(), ProxyErrorKind::Internal);
    assert_eq!(e.http_status(), 500);
    assert_eq!(e.message(), "internal error");
}

#[test]
fn table_of_section_5() {
    let rows: [(ProxyError, u16, u32, &str, &str); 10] = [
        (ProxyError::no_route(), 404, 12, "no route", "NO_ROUTE"),
        (
            ProxyError::no_backends(),
            500,
            13,
            "no backends",
            "NO_BACKENDS",
        ),
        (
            ProxyError::request_timeout(),
            504,
            4,
            "request timeout",
            "REQUEST_TIMEOUT",
        ),
        (
            ProxyError::backend_request_timeout(),
            504,
            4,
            "backend request timeout",
            "BACKEND_REQUEST_TIMEOUT",
        ),
        (
            ProxyError::response_headers_timeout(),
            504,
            4,
            "response headers timeout",
            "RESPONSE_HEADERS_TIMEOUT",
        ),
        (
            ProxyError::connect_failed(),
            502,
            14,
            "connect failed",
            "CONNECT_FAILED",
        ),
        (
            ProxyError::upstream_cannot_tunnel(),
            502,
            14,
            "upstream cannot tunnel",
            "UNAVAILABLE",
        ),
        (
            ProxyError::no_endpoints(),
            503,
            14,
            "no endpoints",
            "NO_ENDPOINTS",
        ),
        (ProxyError::load_shed(), 503, 14, "unavailable", "LOAD_SHED"),
        (
            ProxyError::internal(),
            500,
            13,
            "internal error",
            "INTERNAL",
        ),
    ];
    for (e, status, grpc, msg, label) in rows {
        assert_eq!(e.http_status(), status, "{msg}");
        assert_eq!(e.grpc_code().as_u32(), grpc, "{msg}");
        assert_eq!(e.message(), msg);
        assert_eq!(e.label(), label, "{msg}");
    }
    let e = ProxyError::bad_request("no host");
    assert_eq!(
        (e.http_status().as_u16(), e.message()),
        (400, "bad request: no host")
    );
    assert_eq!(e.grpc_code(), GrpcCode::INVALID_ARGUMENT);
    let e = ProxyError::injected(http::StatusCode::SERVICE_UNAVAILABLE, None, None);
    assert_eq!(e.message(), "injected failure");
    assert_eq!(e.grpc_code(), GrpcCode::UNAVAILABLE);
    assert_eq!(e.label(), "INJECTED");
}
