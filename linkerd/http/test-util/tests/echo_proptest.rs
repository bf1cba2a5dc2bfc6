//! Property: whatever bytes, chunking and trailers a client sends, the backend records and
//! echoes them unchanged, on HTTP/1.1 and h2c.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Version};
use linkerd_http_test_util::{HttpClient, MockBody, TestServer, collect};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

fn chunks() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2048), 0..8)
}

#[test]
fn echo_is_byte_identical_under_any_chunking() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = rt.block_on(TestServer::backend()).expect("bind");
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (chunks(), any::<bool>(), any::<bool>(), any::<bool>());
    let result = runner.run(&strategy, |(chunks, http2, with_trailers, exact)| {
        rt.block_on(async {
            let version = if http2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            };
            let mut client = if http2 {
                HttpClient::http2(server.addr()).await
            } else {
                HttpClient::http1(server.addr()).await
            }
            .map_err(|error| TestCaseError::fail(format!("connect: {error}")))?;

            let expected: Vec<u8> = chunks.concat();
            let mut body = MockBody::new();
            for chunk in &chunks {
                body = body.data(chunk.clone()).pending();
            }
            let mut trailers = HeaderMap::new();
            trailers.insert("x-sum", HeaderValue::from(expected.len()));
            let mut req = Request::post("/prop");
            if with_trailers {
                body = body.trailers(trailers.clone());
                req = req.header("trailer", "x-sum");
            } else if exact {
                body = body.with_exact_size(expected.len() as u64);
            }
            let req = req.body(body).expect("valid request");

            let rsp = client
                .send(req)
                .await
                .map_err(|error| TestCaseError::fail(format!("{version:?}: send: {error}")))?;
            let echoed = collect(rsp.into_body())
                .await
                .map_err(|error| TestCaseError::fail(format!("{version:?}: body: {error}")))?;
            prop_assert_eq!(
                &echoed.data,
                &Bytes::from(expected.clone()),
                "{:?}: echoed body",
                version
            );
            let record = server.requests().pop().expect("recorded");
            prop_assert_eq!(record.version, version);
            prop_assert_eq!(
                &record.body,
                &Bytes::from(expected),
                "{:?}: recorded body",
                version
            );
            prop_assert!(record.body_complete, "the body was read to its end");
            let want_trailers = with_trailers.then_some(trailers);
            prop_assert_eq!(record.trailers, want_trailers, "{:?}: trailers", version);
            Ok(())
        })
    });
    if let Err(error) = result {
        panic!("the backend must echo and record bodies unchanged: {error}");
    }
}
