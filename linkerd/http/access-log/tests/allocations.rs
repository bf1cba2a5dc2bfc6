//! Allocations of the writer in a steady state (its own test binary: the counting allocator
//! sees every thread, so no other test may run beside it).

use linkerd_http_access_log::{AccessLogWriter, Format, Output, Record, WriterConfig};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn sending_and_writing_batches_allocates_nothing_once_warm() {
    let writer = AccessLogWriter::spawn(
        Output::Writer(Box::new(std::io::sink())),
        WriterConfig::new(Format::Json),
    )
    .expect("spawn");
    let uri: http::Uri = "/a/path?q=1".parse().expect("uri");
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::HOST, "example.com".parse().expect("host"));
    headers.insert(http::header::USER_AGENT, "test/1".parse().expect("ua"));
    let record = Record::from_request(
        std::time::SystemTime::now(),
        &http::Method::GET,
        &uri,
        http::Version::HTTP_11,
        &headers,
    );
    let batch = |n: usize| {
        for _ in 0..n {
            assert!(writer.send(&record), "room for every line");
        }
        assert!(writer.flush_blocking(), "written");
    };
    // Warm up: the sending thread's scratch buffer, the pending buffer and the spare one it is
    // swapped with all grow to the largest batch written (the writer thread may take part of
    // a batch before the flush takes the rest, so the measured batches are smaller).
    batch(1_000);
    batch(1_000);
    batch(1_000);
    let region = Region::new(GLOBAL);
    batch(100);
    batch(100);
    batch(100);
    let change = region.change();
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "a steady state reuses the buffers: {change:?}"
    );
    assert_eq!(writer.written(), 3_300);
}
