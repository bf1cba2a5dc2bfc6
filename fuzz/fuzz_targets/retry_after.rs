//! `Retry-After` and `grpc-retry-pushback-ms` parsing: never panics, and a delay is never
//! longer than the caller's cap.

#![no_main]

use http::{HeaderMap, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use linkerd_http_classify::{grpc_retry_pushback, retry_after};
use std::time::{Duration, SystemTime};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, value)) = data.split_first() else {
        return;
    };
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(http::header::RETRY_AFTER, value.clone());
    headers.insert("grpc-retry-pushback-ms", value);
    let status = match selector % 3 {
        0 => StatusCode::TOO_MANY_REQUESTS,
        1 => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let max = Duration::from_secs(u64::from(selector));
    match retry_after(status, &headers, now, max) {
        Some(d) => {
            assert!(
                d <= max,
                "a Retry-After delay {d:?} exceeds the cap {max:?}"
            );
            assert!(
                status != StatusCode::OK,
                "Retry-After is read for 429 and 503 only"
            );
        }
        None => {}
    }
    let _ = grpc_retry_pushback(&headers);
});
