//! Upstream faults through the proxy subprocess (issue 12, item 1): backends that close the
//! connection mid-response, reset streams with every HTTP/2 reason, send GOAWAY mid-flight,
//! never answer, or refuse connections beside a healthy endpoint.
//!
//! The rule checked throughout: a client sees an error (HTTP/1: an incomplete body or a closed
//! connection; HTTP/2: RST_STREAM) and never a shorter body that looks complete, except the
//! limits DESIGN.md section 5 documents (a body of unknown length cut by `RST_STREAM(NO_ERROR)`,
//! a close-delimited body to an HTTP/1.0 client).

mod support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use linkerd_http_test_util::{
    H2Client, HttpClient, ServerProtocol, TestServer, collect_until_error,
};
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use support::{
    Proxy,
    reliability::{H2Backend, RawBackend, config, h2_respond, read_head, read_until_close},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The client-side deadline of every request: answers are expected long before.
const DEADLINE: Duration = Duration::from_secs(5);
const FULL: usize = 1000;
const HALF: usize = 500;

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path).body(Empty::new()).expect("request")
}

/// What an HTTP/1.1 or HTTP/2 (hyper) client read: status, body bytes, and whether the body
/// ended with an error.
async fn fetch(client: &mut HttpClient, path: &str) -> (StatusCode, Bytes, Option<String>) {
    tokio::time::timeout(DEADLINE, async {
        let rsp = client
            .send(get(path))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: no response headers: {e}"));
        let status = rsp.status();
        let (collected, error) = collect_until_error(rsp.into_body()).await;
        (status, collected.data, error.map(|e| e.to_string()))
    })
    .await
    .unwrap_or_else(|_| panic!("GET {path}: no complete answer within {DEADLINE:?}"))
}

/// What a raw h2 client read (reset reasons visible).
async fn fetch_h2(
    addr: SocketAddr,
    path: &str,
) -> Result<linkerd_http_test_util::H2Response, h2::Error> {
    tokio::time::timeout(DEADLINE, async {
        let mut client = H2Client::connect(addr).await.expect("h2 connect");
        let req = Request::get(path).body(Bytes::new()).expect("request");
        client.request(req).await
    })
    .await
    .unwrap_or_else(|_| panic!("GET {path} over h2: no answer within {DEADLINE:?}"))
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Asserts that a cut response was not presented as complete.
fn assert_cut(what: &str, body: &Bytes, error: Option<&String>) {
    assert!(
        body.len() < FULL,
        "{what}: more bytes than the backend sent ({})",
        body.len()
    );
    assert_eq!(
        &body[..],
        &pattern(body.len())[..],
        "{what}: the bytes that arrived are the backend's"
    );
    assert!(
        error.is_some(),
        "{what}: a body cut after {} of {FULL} bytes ended cleanly",
        body.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_backend_closing_mid_response_is_an_error() {
    // `/cl`: content-length 1000, 500 bytes, close. `/chunked`: one 500-byte chunk, close
    // without the last chunk.
    let backend = RawBackend::start(|mut io: TcpStream| async move {
        let Some(head) = read_head(&mut io).await else {
            return;
        };
        let chunked = head.windows(8).any(|w| w == b"/chunked");
        let mut out = Vec::new();
        if chunked {
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
            out.extend_from_slice(format!("{HALF:x}\r\n").as_bytes());
            out.extend_from_slice(&pattern(HALF));
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(
                format!("HTTP/1.1 200 OK\r\ncontent-length: {FULL}\r\n\r\n").as_bytes(),
            );
            out.extend_from_slice(&pattern(HALF));
        }
        let _ = io.write_all(&out).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Dropping the stream closes the connection mid-response.
    })
    .await;
    let proxy = Proxy::start(&config("http1", &[backend.addr()], "", ""), &[]);

    for path in ["/cl", "/chunked"] {
        let mut h1 = HttpClient::http1(proxy.addr).await.expect("connect");
        let (status, body, error) = fetch(&mut h1, path).await;
        assert_eq!(
            status, 200,
            "{path} (HTTP/1.1 client): headers were forwarded"
        );
        assert_cut(
            &format!("{path} to an HTTP/1.1 client"),
            &body,
            error.as_ref(),
        );

        let mut h2 = HttpClient::http2(proxy.addr).await.expect("connect");
        let (status, body, error) = fetch(&mut h2, path).await;
        assert_eq!(
            status, 200,
            "{path} (HTTP/2 client): headers were forwarded"
        );
        assert_cut(
            &format!("{path} to an HTTP/2 client"),
            &body,
            error.as_ref(),
        );

        let rsp = fetch_h2(proxy.addr, path).await.expect("response headers");
        assert!(
            rsp.reset_reason().is_some(),
            "{path}: the HTTP/2 client's stream must be reset, got {:?}",
            rsp.body_error
        );
    }

    // HTTP/1.0 client: the proxy keeps the announced length, so the cut is visible.
    let mut io = TcpStream::connect(proxy.addr).await.expect("connect");
    io.write_all(b"GET /cl HTTP/1.0\r\nhost: test\r\n\r\n")
        .await
        .expect("write");
    let (bytes, closed) = read_until_close(&mut io, DEADLINE).await;
    assert!(closed, "the HTTP/1.0 connection closes");
    let text = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    assert!(
        head.contains(&format!("content-length: {FULL}")),
        "the HTTP/1.0 client is told the full length, so it can see the cut: {head}"
    );
    assert!(
        body.len() < FULL,
        "the HTTP/1.0 body is short ({} bytes)",
        body.len()
    );
}

/// An HTTP/1.1 backend that resets the connection (RST) after reading the request head and
/// before answering: the endpoint's connection failed (DESIGN.md section 5: "refused, reset,
/// connect timeout"), so HTTP/1.1 clients get a 502 `connect failed`, never a 500, after the
/// retries a `retry` block allows (section 4.1: connection failures are retried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_backend_resetting_before_response_is_a_connect_failure() {
    let heads = Arc::new(AtomicUsize::new(0));
    let seen = heads.clone();
    let backend = RawBackend::start(move |io: TcpStream| {
        let seen = seen.clone();
        async move {
            let mut io = io;
            if read_head(&mut io).await.is_none() {
                return;
            }
            seen.fetch_add(1, Ordering::SeqCst);
            // Linger 0: closing sends RST instead of FIN.
            let _ = io.set_zero_linger();
            drop(io);
        }
    })
    .await;
    let proxy = Proxy::start(
        &config(
            "http1",
            &[backend.addr()],
            "",
            "retry: { attempts: 2, backoff: 5ms }",
        ),
        &[],
    );
    for _ in 0..3 {
        let mut h1 = HttpClient::http1(proxy.addr).await.expect("connect");
        let rsp = h1.send(get("/")).await.expect("a response");
        let error = rsp
            .headers()
            .get("l5d-proxy-error")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        assert_eq!(rsp.status(), 502, "a reset before the response: {error:?}");
        assert_eq!(error.as_deref(), Some("connect failed"));
    }
    assert_eq!(
        heads.load(Ordering::SeqCst),
        9,
        "each request was tried three times (1 + 2 retries)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_backend_closing_mid_response_is_an_error() {
    // Paths: `/close-cl`, `/close-unknown`: 500 bytes, then the TCP connection closes.
    // `/rst-cl`: content-length 1000, 500 bytes, then RST_STREAM(NO_ERROR).
    // `/rst-unknown`: the same without content-length (the documented limit).
    let backend = H2Backend::start(|ctx, req, mut respond| async move {
        let path = req.uri().path().to_owned();
        let known = path.ends_with("-cl");
        let Some(mut stream) = h2_respond(&mut respond, known.then_some(FULL)) else {
            return;
        };
        let _ = stream.send_data(Bytes::from(pattern(HALF)), false);
        tokio::time::sleep(Duration::from_millis(100)).await;
        if path.starts_with("/close") {
            ctx.close.notify_one();
            // Keep the stream open until the connection is gone: dropping it here would queue
            // a RST_STREAM(CANCEL) that the connection may still write before it closes. The
            // proxy would then see this stream end while the connection looked alive, and the
            // test's next request could go out on it and be cut by the close (a 502: sent,
            // then the connection closed without an answer), which is the upstream's race,
            // not the behaviour under test.
            std::future::pending::<()>().await;
        } else {
            stream.send_reset(h2::Reason::NO_ERROR);
        }
    })
    .await;
    let proxy = Proxy::start(&config("http2", &[backend.addr()], "", ""), &[]);

    for path in ["/close-cl", "/close-unknown", "/rst-cl"] {
        let mut h1 = HttpClient::http1(proxy.addr).await.expect("connect");
        let (status, body, error) = fetch(&mut h1, path).await;
        assert_eq!(status, 200, "{path} (HTTP/1.1 client)");
        assert_cut(
            &format!("{path} to an HTTP/1.1 client"),
            &body,
            error.as_ref(),
        );

        let rsp = fetch_h2(proxy.addr, path).await.expect("response headers");
        assert_eq!(rsp.status, 200, "{path} (HTTP/2 client)");
        assert!(rsp.data.len() < FULL, "{path}: no more than was sent");
        let reason = rsp.reset_reason();
        if path == "/rst-cl" {
            // IncompleteBody: NO_ERROR maps to INTERNAL_ERROR (DESIGN.md section 5).
            assert_eq!(
                reason,
                Some(h2::Reason::INTERNAL_ERROR),
                "{path}: the HTTP/2 client's stream is reset with INTERNAL_ERROR"
            );
        } else {
            assert!(
                reason.is_some_and(|r| r != h2::Reason::NO_ERROR),
                "{path}: the HTTP/2 client's stream is reset with an error, got {:?}",
                rsp.body_error
            );
        }
    }

    // The documented limit: unknown length + RST_STREAM(NO_ERROR) reads as a clean end.
    // Only check that nothing was invented.
    let rsp = fetch_h2(proxy.addr, "/rst-unknown").await.expect("headers");
    assert_eq!(
        &rsp.data[..],
        &pattern(rsp.data.len())[..],
        "a prefix of what was sent"
    );
    println!(
        "rst-unknown (documented limit): {} bytes, error {:?}",
        rsp.data.len(),
        rsp.body_error
    );

    // Metrics: the connection closing mid-body is an upstream reset (DESIGN.md section 5,
    // "after response headers, failures are labelled RESET"), never INTERNAL.
    const STATUSES: &str = "outbound_http_route_request_statuses_total";
    let scrape = proxy
        .scrape_until(|s| s.sum(STATUSES, &[("error", "RESET")]) >= 6.0)
        .await;
    assert_eq!(
        scrape.sum(STATUSES, &[("error", "INTERNAL")]),
        0.0,
        "no cut is an internal error"
    );
}

/// The reason table of DESIGN.md section 5 for resets sent to HTTP/2 clients.
fn table(upstream: h2::Reason) -> h2::Reason {
    match upstream {
        h2::Reason::CANCEL
        | h2::Reason::REFUSED_STREAM
        | h2::Reason::ENHANCE_YOUR_CALM
        | h2::Reason::INTERNAL_ERROR => upstream,
        _ => h2::Reason::INTERNAL_ERROR,
    }
}

const NAMES: [&str; 14] = [
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upstream_reset_reason_maps_to_the_table() {
    let backend = TestServer::backend_with(ServerProtocol::Http2)
        .await
        .expect("backend");
    let proxy = Proxy::start(&config("http2", &[backend.addr()], "", ""), &[]);
    let mut client = H2Client::connect(proxy.addr).await.expect("connect");
    let mut h1 = HttpClient::http1(proxy.addr).await.expect("connect");

    for (code, name) in (0u32..).zip(NAMES) {
        let upstream = h2::Reason::from(code);
        let expected = table(upstream);

        // Before response headers: HTTP/2 client -> RST_STREAM, HTTP/1 client -> 502.
        let req = Request::get("/before")
            .header("x-test-reset-before-headers", code.to_string())
            .body(Bytes::new())
            .expect("request");
        let result = tokio::time::timeout(DEADLINE, client.request(req))
            .await
            .expect("answered in time");
        match result {
            Err(e) => assert_eq!(
                e.reason(),
                Some(expected),
                "{name} before headers: the HTTP/2 client's reset reason"
            ),
            Ok(rsp) => panic!(
                "{name} before headers: expected a reset, got {} {:?}",
                rsp.status, rsp.headers
            ),
        }
        let req = Request::get("/before")
            .header("x-test-reset-before-headers", code.to_string())
            .body(Empty::<Bytes>::new())
            .expect("request");
        let rsp = tokio::time::timeout(DEADLINE, h1.send(req))
            .await
            .expect("answered in time")
            .expect("an HTTP/1 client gets a response");
        assert_eq!(rsp.status(), 502, "{name} before headers: HTTP/1 client");
        assert_eq!(
            rsp.headers()
                .get("l5d-proxy-error")
                .map(|v| v.to_str().unwrap_or_default()),
            Some(format!("upstream reset ({name})").as_str()),
            "{name} before headers: l5d-proxy-error names the upstream reason"
        );
        rsp.into_body().collect().await.expect("502 body");

        // After response headers (body of unknown length): the stream is reset with the
        // table's reason; NO_ERROR is the documented limit (a clean end).
        let req = Request::get("/after")
            .header("x-test-reset-after-headers", code.to_string())
            .header("x-test-body-len", "100")
            .body(Bytes::new())
            .expect("request");
        let rsp = tokio::time::timeout(DEADLINE, client.request(req))
            .await
            .expect("answered in time")
            .unwrap_or_else(|e| panic!("{name} after headers: headers expected, got {e}"));
        assert_eq!(rsp.status, 200, "{name} after headers: status forwarded");
        if upstream == h2::Reason::NO_ERROR {
            println!(
                "NO_ERROR after headers (documented limit): {:?}",
                rsp.body_error
            );
        } else {
            assert_eq!(
                rsp.reset_reason(),
                Some(expected),
                "{name} after headers: the HTTP/2 client's reset reason"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_mid_flight_finishes_streams_and_moves_new_ones() {
    let (release, released) = tokio::sync::watch::channel(false);
    let backend = H2Backend::start(move |ctx, req, mut respond| {
        let mut released = released.clone();
        async move {
            if req.uri().path() == "/slow" {
                // Wait for the test (at most 10 s).
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), released.wait_for(|r| *r)).await;
            }
            let rsp = http::Response::builder()
                .header("x-conn", ctx.conn)
                .header("content-length", FULL)
                .body(())
                .expect("response");
            let Ok(mut stream) = respond.send_response(rsp, false) else {
                return;
            };
            let _ = stream.send_data(Bytes::from(pattern(FULL)), true);
        }
    })
    .await;
    let proxy = Proxy::start(&config("http2", &[backend.addr()], "", ""), &[]);

    let conn_of = |rsp: &http::Response<hyper::body::Incoming>| -> usize {
        rsp.headers()["x-conn"]
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .expect("x-conn")
    };
    let mut client = HttpClient::http1(proxy.addr).await.expect("connect");
    let rsp = client.send(get("/fast")).await.expect("first request");
    assert_eq!(conn_of(&rsp), 1, "the first request opens connection 1");
    rsp.into_body().collect().await.expect("body");

    // Five requests in flight on connection 1.
    let mut slow = vec![];
    for _ in 0..5 {
        let addr = proxy.addr;
        slow.push(tokio::spawn(async move {
            let mut c = HttpClient::http1(addr).await.expect("connect");
            let rsp = c.send(get("/slow")).await.expect("slow response");
            let conn = rsp.headers()["x-conn"]
                .to_str()
                .unwrap_or_default()
                .to_owned();
            let status = rsp.status();
            let body = rsp.into_body().collect().await.map(|b| b.to_bytes());
            (status, conn, body)
        }));
    }
    for _ in 0..500 {
        if backend.streams().len() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        backend.streams().len(),
        6,
        "five slow requests reached the backend"
    );

    backend.goaway();
    // New requests: all succeed, and soon arrive on a new connection.
    let mut moved = false;
    for i in 0..100 {
        let rsp = tokio::time::timeout(DEADLINE, client.send(get("/fast")))
            .await
            .expect("in time")
            .unwrap_or_else(|e| panic!("request {i} after GOAWAY failed: {e}"));
        assert_eq!(
            rsp.status(),
            200,
            "request {i} after GOAWAY: {:?}",
            rsp.headers().get("l5d-proxy-error")
        );
        let conn = conn_of(&rsp);
        rsp.into_body().collect().await.expect("body");
        if conn != 1 {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(moved, "new requests go to a new connection after GOAWAY");

    release.send_replace(true);
    for task in slow {
        let (status, conn, body) = tokio::time::timeout(DEADLINE, task)
            .await
            .expect("in-flight requests finish")
            .expect("task");
        assert_eq!(status, 200, "in-flight request status");
        assert_eq!(conn, "1", "in-flight requests stayed on connection 1");
        let body = body.expect("in-flight bodies complete");
        assert_eq!(body.len(), FULL, "in-flight bodies are complete");
    }
    assert!(backend.connections() >= 2, "a second connection was opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_never_answers_gets_504() {
    // Accepts, reads, never writes.
    let silent = || {
        RawBackend::start(|mut io: TcpStream| async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
    };
    let (h1_backend, h2_backend) = (silent().await, silent().await);
    let yaml = format!(
        "accessLog: {{ format: json, output: /dev/null }}\n\
         backends:\n\
         \x20 - {{ name: h1, protocol: http1, endpoints: [{}] }}\n\
         \x20 - {{ name: h2, protocol: http2, endpoints: [{}] }}\n\
         routes:\n\
         \x20 - name: r\n\
         \x20   rules:\n\
         \x20     - matches: [{{ path: {{ type: PathPrefix, value: /request }} }}]\n\
         \x20       backendRefs: [{{ name: h1 }}]\n\
         \x20       timeouts: {{ request: 100ms }}\n\
         \x20     - matches: [{{ path: {{ type: PathPrefix, value: /backend }} }}]\n\
         \x20       backendRefs: [{{ name: h1 }}]\n\
         \x20       timeouts: {{ backendRequest: 100ms }}\n\
         \x20     - matches: [{{ path: {{ type: PathPrefix, value: /h2 }} }}]\n\
         \x20       backendRefs: [{{ name: h2 }}]\n\
         \x20       timeouts: {{ request: 100ms }}\n",
        h1_backend.addr(),
        h2_backend.addr()
    );
    let proxy = Proxy::start(&yaml, &[]);
    let cases = [
        ("/request", "request timeout"),
        ("/backend", "backend request timeout"),
        ("/h2", "request timeout"),
    ];
    for (path, why) in cases {
        for http2 in [false, true] {
            let mut client = if http2 {
                HttpClient::http2(proxy.addr).await
            } else {
                HttpClient::http1(proxy.addr).await
            }
            .expect("connect");
            // The 5 s client deadline, not a stopwatch: a 504 must come well before it.
            let rsp = tokio::time::timeout(DEADLINE, client.send(get(path)))
                .await
                .unwrap_or_else(|_| panic!("{path} (http2 {http2}): no answer within 5s"))
                .expect("a response");
            assert_eq!(rsp.status(), 504, "{path} (http2 {http2})");
            assert_eq!(
                rsp.headers()
                    .get("l5d-proxy-error")
                    .and_then(|v| v.to_str().ok()),
                Some(why),
                "{path} (http2 {http2}): l5d-proxy-error"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_endpoint_beside_a_healthy_one_fails_few_requests() {
    const CLIENTS: usize = 4;
    const PER_CLIENT: usize = 50;
    // A bound on requests failed before the balancer noticed: each concurrent client may
    // have one request in flight to the dead endpoint, plus those that had already picked it.
    const BOUND: usize = 2 * CLIENTS;

    let a = TestServer::backend().await.expect("backend a");
    let b = TestServer::backend().await.expect("backend b");
    let proxy = Proxy::start(&config("http1", &[a.addr(), b.addr()], "", ""), &[]);

    let run = |per_client: usize| {
        let addr = proxy.addr;
        let order = Arc::new(AtomicUsize::new(0));
        async move {
            let mut tasks = vec![];
            for _ in 0..CLIENTS {
                let order = order.clone();
                tasks.push(tokio::spawn(async move {
                    let mut client = HttpClient::http1(addr).await.expect("connect");
                    let mut outcomes = vec![];
                    for _ in 0..per_client {
                        let r = tokio::time::timeout(DEADLINE, client.send(get("/")))
                            .await
                            .expect("answered in time");
                        let seq = order.fetch_add(1, Ordering::SeqCst);
                        match r {
                            Ok(rsp) => {
                                let status = rsp.status();
                                let err = rsp
                                    .headers()
                                    .get("l5d-proxy-error")
                                    .map(|v| v.to_str().unwrap_or_default().to_owned());
                                rsp.into_body().collect().await.expect("body");
                                outcomes.push((seq, status, err));
                            }
                            Err(e) => panic!("the proxy connection failed: {e}"),
                        }
                    }
                    outcomes
                }));
            }
            let mut all = vec![];
            for t in tasks {
                all.extend(t.await.expect("client task"));
            }
            all.sort_by_key(|o| o.0);
            all
        }
    };

    let warm = run(10).await;
    assert!(
        warm.iter().all(|(_, s, _)| *s == 200),
        "warm-up: every request succeeds: {warm:?}"
    );
    assert!(a.request_count() > 0, "warm-up reached endpoint a");
    assert!(b.request_count() > 0, "warm-up reached endpoint b");

    // Endpoint a goes away: its port now refuses connections.
    drop(a);
    let b_before = b.request_count();
    let outcomes = run(PER_CLIENT).await;
    let failed: Vec<_> = outcomes.iter().filter(|(_, s, _)| *s != 200).collect();
    println!(
        "{} of {} requests failed before the balancer noticed",
        failed.len(),
        outcomes.len()
    );
    assert!(
        failed.len() <= BOUND,
        "at most {BOUND} requests fail before the balancer notices: {failed:?}"
    );
    for (_, status, err) in &failed {
        assert_eq!(*status, 502, "a failure is a 502: {err:?}");
        // A new connection is refused; a request already handed to a pooled connection as
        // the endpoint went away sees the reset.
        assert!(
            err.as_deref() == Some("connect failed")
                || err
                    .as_deref()
                    .is_some_and(|e| e.starts_with("upstream reset")),
            "a failure is `connect failed` or `upstream reset`: {err:?}"
        );
    }
    // Once noticed, no more errors: every failure is among the first requests.
    if let Some((last, _, _)) = failed.last() {
        assert!(
            *last < 3 * BOUND,
            "failures happen only before the balancer notices (last at {last})"
        );
    }
    assert_eq!(
        b.request_count() - b_before,
        outcomes.len() - failed.len(),
        "every successful request went to b"
    );
}

/// Answers an HTTP/1 upstream could give that the proxy must fix up or refuse: an HTTP/1.0
/// answer (`/h10`: the client gets the proxy's own version, RFC 9110 section 2.5 and
/// DESIGN.md section 4.1 "answers in the client's HTTP version"), a 204 with a
/// `content-length` (`/s204`: RFC 9110 section 8.6 forbids it; HTTP/2 clients must not get
/// it either), and bytes that are not HTTP at all (`/garbage`: an invalid response from an
/// inbound server is a 502, RFC 9110 section 15.6.3, labelled like an upstream's protocol
/// error, never a 500 `internal error`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_http1_answers_are_fixed_up_or_refused() {
    let backend = RawBackend::start(|mut io: TcpStream| async move {
        while let Some(head) = read_head(&mut io).await {
            let has = |p: &[u8]| head.windows(p.len()).any(|w| w == p);
            let answer: &[u8] = if has(b"/h10") {
                b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nhi"
            } else if has(b"/s204") {
                b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
            } else {
                b"NOT HTTP AT ALL\r\n\r\n"
            };
            if io.write_all(answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    let proxy = Proxy::start(&config("http1", &[backend.addr()], "", ""), &[]);

    let mut io = TcpStream::connect(proxy.addr).await.expect("connect");
    io.write_all(b"GET /h10 HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("write");
    let head = read_head(&mut io).await.expect("a response head");
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 200"),
        "an HTTP/1.1 client is answered in HTTP/1.1: {head:?}"
    );

    let rsp = fetch_h2(proxy.addr, "/s204").await.expect("a response");
    assert_eq!(rsp.status, 204);
    assert!(
        !rsp.headers.contains_key("content-length"),
        "a 204 carries no content-length: {:?}",
        rsp.headers
    );

    let mut h1 = HttpClient::http1(proxy.addr).await.expect("connect");
    let rsp = tokio::time::timeout(DEADLINE, h1.send(get("/garbage")))
        .await
        .expect("an answer in time")
        .expect("a response");
    assert_eq!(
        rsp.status(),
        502,
        "an invalid upstream answer is a bad gateway"
    );
    assert_eq!(
        rsp.headers()["l5d-proxy-error"],
        "upstream reset (PROTOCOL_ERROR)"
    );
}

/// An HTTP/2 upstream that answers and resets the stream in one go (HEADERS, DATA and
/// RST_STREAM in one write): the client still gets the response head and the data, then the
/// error (HTTP/1: the connection closes without the final chunk; HTTP/2: RST_STREAM), so the
/// access log's `status` 200 is what the client saw. The head used to be lost with the
/// error: no response at all, logged as a 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_reset_at_once_still_delivers_its_head() {
    use support::reliability::{DATA, END_HEADERS, HEADERS, PING, RST_STREAM, SETTINGS, frame};
    // A raw HTTP/2 server: SETTINGS and PING are acknowledged; every request stream gets
    // HEADERS(:status 200), DATA("hello") and RST_STREAM(INTERNAL_ERROR) in one write.
    let backend = RawBackend::start(|mut io: TcpStream| async move {
        let mut preface = [0u8; 24];
        if io.read_exact(&mut preface).await.is_err() {
            return;
        }
        let mut out = Vec::new();
        frame(&mut out, SETTINGS, 0, 0, &[]);
        if io.write_all(&out).await.is_err() {
            return;
        }
        let mut head = [0u8; 9];
        while io.read_exact(&mut head).await.is_ok() {
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            if io.read_exact(&mut payload).await.is_err() {
                return;
            }
            let mut out = Vec::new();
            match kind {
                SETTINGS if flags & 1 == 0 => frame(&mut out, SETTINGS, 1, 0, &[]),
                PING if flags & 1 == 0 => frame(&mut out, PING, 1, 0, &payload),
                HEADERS => {
                    frame(&mut out, HEADERS, END_HEADERS, stream, &[0x88]);
                    frame(&mut out, DATA, 0, stream, b"hello");
                    frame(&mut out, RST_STREAM, 0, stream, &2u32.to_be_bytes());
                }
                _ => {}
            }
            if !out.is_empty() && io.write_all(&out).await.is_err() {
                return;
            }
        }
    })
    .await;
    let proxy = Proxy::start(&config("http2", &[backend.addr()], "", ""), &[]);
    for i in 0..5 {
        let mut io = TcpStream::connect(proxy.addr).await.expect("connect");
        io.write_all(b"GET /at-once HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .expect("write");
        let (bytes, closed) = read_until_close(&mut io, DEADLINE).await;
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.starts_with("HTTP/1.1 200"),
            "{i}: the HTTP/1.1 client gets the head: {text:?}"
        );
        assert!(closed, "{i}: then the connection closes");
        assert!(
            !text.ends_with("0\r\n\r\n"),
            "{i}: no final chunk: {text:?}"
        );

        let rsp = fetch_h2(proxy.addr, "/at-once").await.expect("the head");
        assert_eq!(rsp.status, 200, "{i}: the HTTP/2 client gets the head");
        assert!(
            rsp.reset_reason().is_some(),
            "{i}: then a reset: {:?}",
            rsp.body_error
        );
    }
}

/// An HTTP/2 upstream's first connection that takes the preface and the first request's
/// HEADERS, then answers with a graceful GOAWAY naming stream 0 as the last it processed: the
/// request was never processed (RFC 9113 section 6.8).
async fn refuse_with_goaway(mut tcp: TcpStream) {
    const SETTINGS: u8 = 0x4;
    const HEADERS: u8 = 0x1;
    let mut preface = [0u8; 24];
    if tcp.read_exact(&mut preface).await.is_err() {
        return;
    }
    // An empty SETTINGS frame.
    let _ = tcp.write_all(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]).await;
    loop {
        let mut head = [0u8; 9];
        if tcp.read_exact(&mut head).await.is_err() {
            return;
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        if tcp.read_exact(&mut payload).await.is_err() {
            return;
        }
        match head[3] {
            SETTINGS if head[4] & 1 == 0 => {
                let _ = tcp.write_all(&[0, 0, 0, SETTINGS, 1, 0, 0, 0, 0]).await;
            }
            HEADERS => break,
            _ => {}
        }
    }
    // GOAWAY: last stream 0, NO_ERROR.
    let goaway = [0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let _ = tcp.write_all(&goaway).await;
    let mut rest = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while matches!(tcp.read(&mut rest).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// A bodiless request an HTTP/2 upstream refused with a graceful GOAWAY (it never processed
/// it) is sent once more, on a new connection, and the client gets the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_by_a_graceful_goaway_is_sent_again() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let speaking = Arc::new(AtomicUsize::new(0));
    let counted = speaking.clone();
    let upstream = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                // The endpoint's readiness probe connects and closes without a word: only
                // connections that send the preface count.
                let mut first = [0u8; 1];
                if !matches!(tcp.peek(&mut first).await, Ok(1)) {
                    return;
                }
                if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                    return refuse_with_goaway(tcp).await;
                }
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(Bytes::from_static(b"second connection")),
                    ))
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    let proxy = Proxy::start(&config("http2", &[addr], "", ""), &[]);
    let mut client = HttpClient::http1(proxy.addr).await.expect("connect");
    let (status, body, error) = fetch(&mut client, "/").await;
    assert_eq!(status, StatusCode::OK, "the refused request was sent again");
    assert_eq!(&body[..], b"second connection");
    assert_eq!(error, None);
    assert_eq!(
        speaking.load(Ordering::SeqCst),
        2,
        "one refusing connection, one answering"
    );
    upstream.abort();
}

/// A request that ends (here by its `timeouts.request`) while the proxy is still writing its
/// body to an upstream that stopped reading leaves no connection behind: the upstream
/// connection is closed with the request (it held a socket and megabytes of send buffer for
/// as long as the upstream stalled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_ended_mid_body_closes_its_stalled_upstream_connection() {
    const REQUESTS: usize = 3;
    const BODY: usize = 64 << 20;
    // Reads the request head, then nothing, holding the connection for 20 s.
    let backend = RawBackend::start(|mut io: TcpStream| async move {
        if read_head(&mut io).await.is_some() {
            tokio::time::sleep(Duration::from_secs(20)).await;
        }
    })
    .await;
    let proxy = Proxy::start(
        &config(
            "http1",
            &[backend.addr()],
            "",
            "timeouts: { request: 300ms }",
        ),
        &[],
    );
    for i in 0..REQUESTS {
        let mut io = TcpStream::connect(proxy.addr).await.expect("connect");
        let head = format!("POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: {BODY}\r\n\r\n");
        io.write_all(head.as_bytes()).await.expect("head");
        let (mut rd, mut wr) = io.into_split();
        // The body, for as long as the proxy takes it (it stops when the upstream does).
        let writer = tokio::spawn(async move {
            let chunk = vec![b'x'; 1 << 16];
            for _ in 0..BODY / chunk.len() {
                if wr.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });
        let mut answer = vec![0u8; 1024];
        let n = tokio::time::timeout(DEADLINE, rd.read(&mut answer))
            .await
            .expect("answered in time")
            .expect("read");
        assert!(
            answer[..n].starts_with(b"HTTP/1.1 504"),
            "request {i}: {:?}",
            String::from_utf8_lossy(&answer[..n])
        );
        writer.abort();
    }
    let port = backend.addr().port();
    let mut held = usize::MAX;
    for _ in 0..100 {
        held = support::reliability::connections_to(proxy.pid(), port);
        if held == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        held,
        0,
        "connections to the stalled upstream: {:#?}",
        support::reliability::describe_fds(proxy.pid())
    );
}
