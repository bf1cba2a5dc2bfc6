//! `grpc-timeout` parsing: never panics; a parsed value re-encodes to a valid value that is
//! no longer than it (a propagated deadline may shrink, never grow).

#![no_main]

use libfuzzer_sys::fuzz_target;
use linkerd_http_classify::{encode_grpc_timeout, parse_grpc_timeout};

fuzz_target!(|data: &[u8]| {
    let Ok(d) = parse_grpc_timeout(data) else {
        return;
    };
    let encoded = encode_grpc_timeout(d);
    let again = parse_grpc_timeout(encoded.as_bytes()).expect("an encoded timeout parses");
    assert!(again <= d, "re-encoding {d:?} grew it to {again:?}");
});
