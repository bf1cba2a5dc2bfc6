//! The scripted backend over real sockets, on HTTP/1.1 and h2c.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{Empty, Full};
use linkerd_http_test_util::{
    H2Client, HttpClient, MockBody, ServerProtocol, TestServer, body_pattern, collect,
    collect_until_error, h2_reason, header,
};

/// Both client protocols the backend must serve on one listener.
const PROTOCOLS: [Version; 2] = [Version::HTTP_11, Version::HTTP_2];

async fn client(server: &TestServer, version: Version) -> HttpClient {
    let client = if version == Version::HTTP_2 {
        HttpClient::http2(server.addr()).await
    } else {
        HttpClient::http1(server.addr()).await
    };
    client.expect("the test server accepts connections")
}

fn get(path: &str, headers: &[(&str, &str)]) -> Request<Empty<Bytes>> {
    let mut req = Request::get(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Empty::new()).expect("valid test request")
}

fn version_text(version: Version) -> &'static str {
    if version == Version::HTTP_2 {
        "HTTP/2.0"
    } else {
        "HTTP/1.1"
    }
}

#[tokio::test]
async fn echoes_body_and_headers_and_records_the_request() {
    let server = TestServer::backend().await.expect("bind");
    for (i, version) in PROTOCOLS.into_iter().enumerate() {
        let mut client = client(&server, version).await;
        let req = Request::post("/echo/path?q=1")
            .header("x-custom", "one")
            .header("x-custom", "two")
            .body(Full::new(Bytes::from_static(b"hello backend")))
            .expect("valid request");
        let rsp = client.send(req).await.expect("response");
        assert_eq!(rsp.status(), StatusCode::OK, "{version:?}: default status");
        let headers = rsp.headers().clone();
        let echoed: Vec<_> = headers.get_all("x-echo-x-custom").iter().collect();
        assert_eq!(
            echoed,
            ["one", "two"],
            "{version:?}: every request header value is echoed in order"
        );
        assert_eq!(headers[header::BACKEND_METHOD], "POST");
        assert_eq!(headers[header::BACKEND_VERSION], version_text(version));
        assert_eq!(
            headers[header::BACKEND_ADDR],
            server.addr().to_string().as_str(),
            "{version:?}: the backend names its address"
        );
        assert!(
            headers[header::BACKEND_URI]
                .to_str()
                .expect("ascii")
                .ends_with("/echo/path?q=1"),
            "{version:?}: the backend reports the URI it saw"
        );
        assert_eq!(
            headers["content-length"], "13",
            "{version:?}: an echoed body has a known length"
        );
        let body = collect(rsp.into_body()).await.expect("body");
        assert_eq!(
            body.data, "hello backend",
            "{version:?}: the body is echoed"
        );

        assert_eq!(server.request_count(), i + 1, "{version:?}: counted");
        let record = server.requests().pop().expect("recorded");
        assert_eq!(record.method, http::Method::POST);
        assert_eq!(record.uri.path(), "/echo/path");
        assert_eq!(record.uri.query(), Some("q=1"));
        assert_eq!(record.version, version, "recorded version");
        assert_eq!(record.headers.get_all("x-custom").iter().count(), 2);
        assert_eq!(record.body, "hello backend", "recorded body");
        assert!(record.body_complete, "the body was read to its end");
        assert_eq!(record.body_error, None);
        assert_eq!(record.trailers, None);
    }
    assert_eq!(server.connection_count(), 2, "one connection per client");
}

#[tokio::test]
async fn records_request_trailers_and_streamed_bodies() {
    let server = TestServer::backend().await.expect("bind");
    for version in PROTOCOLS {
        let mut client = client(&server, version).await;
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "abc".parse().expect("value"));
        let body = MockBody::new()
            .data("part one, ")
            .pending()
            .data("part two")
            .trailers(trailers.clone());
        // HTTP/1.1 sends trailers only when the request announces them.
        let req = Request::post("/upload")
            .header("trailer", "x-checksum")
            .body(body)
            .expect("valid request");
        let rsp = client.send(req).await.expect("response");
        let echoed = collect(rsp.into_body()).await.expect("body");
        assert_eq!(echoed.data, "part one, part two", "{version:?}");
        let record = server.requests().pop().expect("recorded");
        assert_eq!(
            record.body, "part one, part two",
            "{version:?}: body recorded byte-identical"
        );
        assert_eq!(
            record.trailers,
            Some(trailers),
            "{version:?}: request trailers are recorded"
        );
    }
}

#[tokio::test]
async fn answers_the_requested_status_and_length() {
    let server = TestServer::backend().await.expect("bind");
    for version in PROTOCOLS {
        let mut client = client(&server, version).await;
        let rsp = client
            .send(get(
                "/",
                &[(header::STATUS, "503"), (header::BODY_LEN, "100000")],
            ))
            .await
            .expect("response");
        assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE, "{version:?}");
        assert_eq!(rsp.headers()["content-length"], "100000", "{version:?}");
        let body = collect(rsp.into_body()).await.expect("body");
        assert_eq!(
            body.data,
            body_pattern(100_000),
            "{version:?}: generated body"
        );
    }
}

#[tokio::test]
async fn delays_the_response_headers() {
    let server = TestServer::backend().await.expect("bind");
    for version in PROTOCOLS {
        let mut client = client(&server, version).await;
        let slow = tokio::time::timeout(
            Duration::from_millis(100),
            client.send(get("/", &[(header::DELAY_MS, "5000")])),
        )
        .await;
        assert!(
            slow.is_err(),
            "{version:?}: a 5s delay must outlast a 100ms timeout"
        );

        let mut client = self::client(&server, version).await;
        let rsp = tokio::time::timeout(
            Duration::from_secs(5),
            client.send(get("/", &[(header::DELAY_MS, "20")])),
        )
        .await
        .expect("a 20ms delay ends well within 5s")
        .expect("response");
        assert_eq!(rsp.status(), StatusCode::OK, "{version:?}");
    }
}

#[tokio::test]
async fn sends_trailers() {
    let server = TestServer::backend().await.expect("bind");
    for version in PROTOCOLS {
        let mut client = client(&server, version).await;
        let rsp = client
            .send(get(
                "/",
                &[
                    (header::TRAILERS, "grpc-status=0, grpc-message=ok"),
                    (header::BODY_LEN, "5"),
                    ("te", "trailers"),
                ],
            ))
            .await
            .expect("response");
        assert_eq!(rsp.headers()["trailer"], "grpc-status, grpc-message");
        let body = collect(rsp.into_body()).await.expect("body");
        assert_eq!(body.data, "abcde", "{version:?}: data before trailers");
        let trailers = body.trailers.expect("trailers are sent");
        assert_eq!(trailers["grpc-status"], "0", "{version:?}");
        assert_eq!(trailers["grpc-message"], "ok", "{version:?}");
    }
}

#[tokio::test]
async fn drips_the_body() {
    let server = TestServer::backend().await.expect("bind");
    for version in PROTOCOLS {
        let mut client = client(&server, version).await;
        let rsp = client
            .send(get("/", &[(header::DRIP, "4,3,5")]))
            .await
            .expect("response");
        assert!(
            !rsp.headers().contains_key("content-length"),
            "{version:?}: a dripped body has no length"
        );
        let body = collect(rsp.into_body()).await.expect("body");
        assert_eq!(body.data, body_pattern(12), "{version:?}: 4 chunks of 3");

        // Headers come at once; the body waits for each interval.
        let mut client = self::client(&server, version).await;
        let rsp = tokio::time::timeout(
            Duration::from_secs(5),
            client.send(get("/", &[(header::DRIP, "2,10,5000")])),
        )
        .await
        .expect("headers are not delayed by the drip")
        .expect("response");
        let body = tokio::time::timeout(Duration::from_millis(100), collect(rsp.into_body())).await;
        assert!(
            body.is_err(),
            "{version:?}: a body dripping every 5s is not done in 100ms"
        );
    }
}

#[tokio::test]
async fn raw_h2_sees_reset_before_headers_with_its_reason() {
    let server = TestServer::backend().await.expect("bind");
    let mut client = H2Client::connect(server.addr()).await.expect("connect");
    for reason in [
        h2::Reason::REFUSED_STREAM,
        h2::Reason::CANCEL,
        h2::Reason::INTERNAL_ERROR,
        h2::Reason::ENHANCE_YOUR_CALM,
    ] {
        let req = Request::get("/")
            .header(header::RESET_BEFORE_HEADERS, u32::from(reason).to_string())
            .body(Bytes::new())
            .expect("valid request");
        let error = client
            .request(req)
            .await
            .expect_err("the stream is reset before headers");
        assert!(
            error.is_reset() && error.is_remote(),
            "a RST_STREAM from the server: {error}"
        );
        assert_eq!(
            error.reason(),
            Some(reason),
            "the RST_STREAM carries the chosen reason"
        );
    }
    // The resets are per stream: the connection still serves requests.
    let ok = client
        .request(Request::get("/").body(Bytes::new()).expect("valid"))
        .await
        .expect("the connection survives stream resets");
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn raw_h2_sees_reset_after_headers_with_data_first() {
    let server = TestServer::backend().await.expect("bind");
    let mut client = H2Client::connect(server.addr()).await.expect("connect");
    let req = Request::post("/")
        .header(header::RESET_AFTER_HEADERS, "CANCEL")
        .header(header::TRAILERS, "never=sent")
        .body(Bytes::from_static(b"some data"))
        .expect("valid request");
    let rsp = client.request(req).await.expect("headers arrive");
    assert_eq!(rsp.status, StatusCode::OK);
    assert_eq!(rsp.data, "some data", "data arrives before the reset");
    assert_eq!(
        rsp.reset_reason(),
        Some(h2::Reason::CANCEL),
        "the body ends with RST_STREAM(CANCEL)"
    );
    assert_eq!(rsp.trailers, None, "a reset stream has no trailers");
}

#[tokio::test]
async fn hyper_client_sees_resets_on_h2_and_closes_on_http1() {
    let server = TestServer::backend().await.expect("bind");

    let mut h2 = client(&server, Version::HTTP_2).await;
    let error = h2
        .send(get(
            "/",
            &[(header::RESET_BEFORE_HEADERS, "REFUSED_STREAM")],
        ))
        .await
        .expect_err("reset before headers");
    assert_eq!(h2_reason(&error), Some(h2::Reason::REFUSED_STREAM));

    let rsp = h2
        .send(get(
            "/",
            &[
                (header::RESET_AFTER_HEADERS, "INTERNAL_ERROR"),
                (header::BODY_LEN, "6"),
            ],
        ))
        .await
        .expect("headers arrive");
    let (body, error) = collect_until_error(rsp.into_body()).await;
    assert_eq!(body.data, "abcdef", "data before the reset");
    let error = error.expect("the body fails");
    assert_eq!(h2_reason(&error), Some(h2::Reason::INTERNAL_ERROR));

    let mut h1 = client(&server, Version::HTTP_11).await;
    let error = h1
        .send(get("/", &[(header::RESET_BEFORE_HEADERS, "CANCEL")]))
        .await
        .expect_err("HTTP/1.1: the connection closes without a response");
    assert_eq!(h2_reason(&error), None, "no HTTP/2 reason over HTTP/1.1");

    let mut h1 = client(&server, Version::HTTP_11).await;
    let rsp = h1
        .send(get(
            "/",
            &[
                (header::RESET_AFTER_HEADERS, "CANCEL"),
                (header::BODY_LEN, "6"),
            ],
        ))
        .await
        .expect("headers arrive");
    let (_, error) = collect_until_error(rsp.into_body()).await;
    assert!(
        error.is_some(),
        "HTTP/1.1: the body is cut off with an error"
    );
}

#[tokio::test]
async fn content_length_mismatch_is_an_error_for_the_client() {
    let server = TestServer::backend().await.expect("bind");
    for version in PROTOCOLS {
        let mut client = client(&server, version).await;
        let result = client
            .send(get(
                "/",
                &[(header::CONTENT_LENGTH, "10"), (header::BODY_LEN, "3")],
            ))
            .await;
        let failed = match result {
            Err(_) => true,
            Ok(rsp) => collect(rsp.into_body()).await.is_err(),
        };
        assert!(
            failed,
            "{version:?}: a body shorter than its content-length fails"
        );
    }
}

#[tokio::test]
async fn malformed_script_headers_get_a_400() {
    let server = TestServer::backend().await.expect("bind");
    let mut client = client(&server, Version::HTTP_11).await;
    for (name, value) in [
        (header::STATUS, "abc"),
        (header::STATUS, "100"),
        (header::DELAY_MS, "-1"),
        (header::BODY_LEN, "999999999999"),
        (header::DRIP, "1,2"),
        (header::DRIP, "100000,100000,1"),
        (header::TRAILERS, "novalue"),
        (header::RESET_BEFORE_HEADERS, "SOMETIMES"),
        (header::CONTENT_LENGTH, "ten"),
    ] {
        let rsp = client
            .send(get("/", &[(name, value)]))
            .await
            .expect("response");
        assert_eq!(
            rsp.status(),
            StatusCode::BAD_REQUEST,
            "{name}: {value} is rejected"
        );
        let why = rsp.headers()[header::ERROR]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(why.contains(name), "the error names the header: {why}");
        collect(rsp.into_body()).await.expect("body");
    }
}

#[tokio::test]
async fn custom_handlers_and_protocol_modes() {
    let handler = |req: Request<hyper::body::Incoming>| async move {
        let text = format!("{:?} {}", req.version(), req.uri().path());
        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(text))))
    };
    for (mode, accepts) in [
        (ServerProtocol::Auto, [true, true]),
        (ServerProtocol::Http1, [true, false]),
        (ServerProtocol::Http2, [false, true]),
    ] {
        let server = TestServer::serve(mode, handler).await.expect("bind");
        for (version, accepted) in PROTOCOLS.into_iter().zip(accepts) {
            let outcome = async {
                let mut client = match version {
                    Version::HTTP_2 => HttpClient::http2(server.addr()).await?,
                    _ => HttpClient::http1(server.addr()).await?,
                };
                let rsp = client.get("/custom").await?;
                Ok::<_, linkerd_http_test_util::BoxError>(collect(rsp.into_body()).await?)
            };
            let outcome = tokio::time::timeout(Duration::from_secs(5), outcome)
                .await
                .expect("a refused protocol fails fast, not hangs");
            match outcome {
                Ok(body) => {
                    assert!(accepted, "{mode:?} must refuse {version:?}");
                    assert_eq!(
                        body.data,
                        format!("{version:?} /custom"),
                        "{mode:?}: the custom handler answers"
                    );
                }
                Err(error) => assert!(!accepted, "{mode:?} must serve {version:?}: {error}"),
            }
        }
        assert!(
            server.requests().is_empty(),
            "custom handlers do not record requests"
        );
    }
}

#[tokio::test]
async fn dropping_the_server_closes_everything() {
    let server = TestServer::backend().await.expect("bind");
    let addr = server.addr();
    let mut h2 = client(&server, Version::HTTP_2).await;
    let pending = tokio::spawn(async move {
        let rsp = h2.send(get("/", &[(header::DELAY_MS, "5000")])).await;
        rsp.map(|rsp| rsp.status())
    });
    // Wait (bounded) until the backend has the request, then drop it.
    for _ in 0..500 {
        if server.request_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.request_count(), 1, "the request reached the backend");
    drop(server);
    let result = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the in-flight request ends when the server is dropped")
        .expect("task");
    assert!(
        result.is_err(),
        "the connection is aborted, not answered: {result:?}"
    );
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the listener is closed");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    for version in PROTOCOLS {
        let server = TestServer::backend().await.expect("bind");
        let addr = server.addr();
        let mut client = client(&server, version).await;
        let in_flight = tokio::spawn(async move {
            let rsp = client
                .send(get(
                    "/",
                    &[(header::DELAY_MS, "200"), (header::BODY_LEN, "3")],
                ))
                .await?;
            let status = rsp.status();
            let body = collect(rsp.into_body()).await?;
            Ok::<_, hyper::Error>((status, body.data))
        });
        for _ in 0..500 {
            if server.request_count() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::timeout(Duration::from_secs(5), server.shutdown())
            .await
            .expect("shutdown completes once the request is answered");
        let (status, body) = in_flight
            .await
            .expect("task")
            .expect("the in-flight request completes");
        assert_eq!(status, StatusCode::OK, "{version:?}");
        assert_eq!(body, "abc", "{version:?}: the whole body is delivered");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "{version:?}: no new connections after shutdown"
        );
    }
}

#[tokio::test]
async fn raw_h2_sends_and_reads_trailers() {
    let server = TestServer::backend().await.expect("bind");
    let mut client = H2Client::connect(server.addr()).await.expect("connect");
    let mut trailers = HeaderMap::new();
    trailers.insert("x-req-trailer", "yes".parse().expect("value"));
    let req = Request::post("/grpc")
        .header(header::TRAILERS, "grpc-status=14")
        .body(Bytes::from_static(b"payload"))
        .expect("valid request");
    let rsp = client
        .request_with_trailers(req, Some(trailers.clone()))
        .await
        .expect("response");
    assert_eq!(rsp.data, "payload", "echoed body");
    let rsp_trailers = rsp.trailers.expect("response trailers arrive");
    assert_eq!(rsp_trailers["grpc-status"], "14");
    assert!(rsp.body_error.is_none(), "a clean end");
    let record = server.requests().pop().expect("recorded");
    assert_eq!(
        record.trailers,
        Some(trailers),
        "request trailers sent by the raw client reach the backend"
    );
}

#[tokio::test]
async fn client_reset_is_recorded_as_a_body_error() {
    let server = TestServer::backend().await.expect("bind");
    let mut client = H2Client::connect(server.addr()).await.expect("connect");
    let req = Request::post("/upload").body(()).expect("valid request");
    let (_response, mut stream) = client.send_request(req, false).await.expect("stream opens");
    stream
        .send_data(Bytes::from_static(b"partial"), false)
        .expect("data is queued");
    // Wait (bounded) until the backend has the request, then cancel it.
    for _ in 0..500 {
        if server.request_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stream.send_reset(h2::Reason::CANCEL);
    let mut record = None;
    for _ in 0..500 {
        record = server
            .requests()
            .pop()
            .filter(|record| record.body_error.is_some());
        if record.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let record = record.expect("the backend records the failed body");
    assert!(!record.body_complete, "a reset body is not complete");
    assert_eq!(
        record.body_reset,
        Some(h2::Reason::CANCEL),
        "the client's reset reason is recorded: {:?}",
        record.body_error
    );
}
