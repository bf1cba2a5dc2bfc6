//! Classification tables, including property tests over every status and `grpc-status`.

use crate::*;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use proptest::prelude::*;

fn grpc_request() -> Request<()> {
    Request::builder()
        .header("content-type", "application/grpc+proto")
        .version(http::Version::HTTP_2)
        .body(())
        .unwrap()
}

#[test]
fn the_default_classifier_goes_by_the_protocol_it_is_given() {
    let c = DefaultClassify::default();
    // Same answers as `classify` for the request's own protocol...
    for req in [grpc_request(), Request::new(())] {
        assert_eq!(
            c.classify_with_protocol(&req, Protocol::of(&req)),
            c.classify(&req)
        );
    }
    // ...and the protocol given wins: it is not worked out again from the headers.
    assert_eq!(
        c.classify_with_protocol(&grpc_request(), Protocol::Http2),
        c.classify_protocol(Protocol::Http2)
    );
    assert_eq!(
        c.classify_with_protocol(&Request::new(()), Protocol::Grpc),
        c.classify_protocol(Protocol::Grpc)
    );
}

#[test]
fn detects_protocol() {
    assert_eq!(Protocol::of(&grpc_request()), Protocol::Grpc);
    let h2 = Request::builder()
        .version(http::Version::HTTP_2)
        .body(())
        .unwrap();
    assert_eq!(Protocol::of(&h2), Protocol::Http2);
    assert_eq!(Protocol::of(&Request::new(())), Protocol::Http1);
    let web = Request::builder()
        .header("content-type", "application/grpc-web")
        .body(())
        .unwrap();
    assert_eq!(Protocol::of(&web), Protocol::Http1, "grpc-web is not gRPC");
}

#[test]
fn grpc_trailers() {
    let c = DefaultClassify::default().classify(&grpc_request());
    let eos = c.start(&Response::new(()));
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static("14"));
    let class = eos.clone().eos(Some(&t));
    assert!(!class.is_success());
    assert_eq!(class.grpc_status(), Some(GrpcCode::UNAVAILABLE));
    t.insert("grpc-status", HeaderValue::from_static("0"));
    assert!(eos.clone().eos(Some(&t)).is_success());
    let missing = eos.eos(None);
    assert!(
        !missing.is_success(),
        "a gRPC response without grpc-status failed"
    );
    assert_eq!(missing.grpc_status(), None);
}

#[test]
fn grpc_non_200_mapped() {
    let c = DefaultClassify::default().classify(&grpc_request());
    let rsp = Response::builder().status(404).body(()).unwrap();
    let class = c.start(&rsp).eos(None);
    assert_eq!(class.grpc_status(), Some(GrpcCode::UNIMPLEMENTED));
    assert!(
        class.is_success(),
        "UNIMPLEMENTED is not a failure code by default"
    );
}

#[test]
fn synthetic_responses_keep_their_reason() {
    let c = DefaultClassify::default().classify(&Request::new(()));
    let rsp: Response<()> = ProxyError::no_route().to_response(Protocol::Http1);
    let class = c.start(&rsp).eos(None);
    assert_eq!(class.error_label(), "NO_ROUTE");
    assert_eq!(class.http_status(), Some(StatusCode::NOT_FOUND));
    assert!(!class.is_success());
}

#[test]
fn errors_and_cancellation() {
    let c = DefaultClassify::default().classify(&grpc_request());
    let class = c.error(&h2::Error::from(h2::Reason::REFUSED_STREAM));
    assert_eq!(class.http_status(), None, "a reset has no status");
    assert_eq!(class.error_label(), "RESET");
    let c = DefaultClassify::default().classify(&Request::new(()));
    let eos = c.start(&Response::new(()));
    let class = eos.cancelled();
    assert_eq!(class.error_label(), "CANCEL");
    assert_eq!(class.http_status(), Some(StatusCode::OK));
}

proptest! {
    #[test]
    fn http_table(status in 100u16..=999, lo in 100u16..=999, len in 0u16..200) {
        let status = StatusCode::from_u16(status).unwrap();
        let default = HttpClassifier::default();
        prop_assert_eq!(default.is_failure(status), (500..=599).contains(&status.as_u16()));
        let hi = lo.saturating_add(len).min(999);
        let custom = HttpClassifier::new(StatusRanges::empty().with_range(lo, hi));
        prop_assert_eq!(custom.is_failure(status), (lo..=hi).contains(&status.as_u16()));
        let c = ResponseClassifier::Http(default);
        let rsp = Response::builder().status(status).body(()).unwrap();
        let class = c.start(&rsp).eos(None);
        prop_assert_eq!(class.is_success(), !(500..=599).contains(&status.as_u16()));
        prop_assert_eq!(class.http_status(), Some(status));
    }

    #[test]
    fn grpc_table(value in proptest::collection::vec(any::<u8>(), 0..12), in_headers in any::<bool>()) {
        let Ok(hv) = HeaderValue::from_bytes(&value) else { return Ok(()) };
        // The documented table: digits 0..=16 are that code; any other value is UNKNOWN.
        let expected = match std::str::from_utf8(&value).ok().filter(|s| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit())).and_then(|s| s.parse::<u64>().ok()) {
            Some(n) if n <= u64::from(u32::MAX) => GrpcCode::from_u32(n as u32),
            _ => GrpcCode::UNKNOWN,
        };
        let failing = [2u32, 4, 7, 13, 14, 15];
        let defined = expected.as_u32() <= 16;
        let expect_success = defined && !failing.contains(&expected.as_u32());
        let c = DefaultClassify::default().classify(&grpc_request());
        let mut h = HeaderMap::new();
        h.insert("grpc-status", hv);
        let class = if in_headers {
            let mut rsp = Response::new(());
            *rsp.headers_mut() = h;
            c.start(&rsp).eos(None)
        } else {
            c.start(&Response::new(())).eos(Some(&h))
        };
        prop_assert_eq!(class.grpc_status(), Some(expected));
        prop_assert_eq!(class.is_success(), expect_success, "code {:?}", expected);
    }
}
