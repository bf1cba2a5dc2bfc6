//! The access log over real sockets and in memory: every JSON line parsed and checked, a
//! blocked writer under 10,000 requests, cancellation, failures and the tracing output.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd_http_access_log::{
    AccessLogLayer, AccessLogWriter, ClientAddr, Format, Output, RequestBody, ResponseInfo,
    WriterConfig,
};
use linkerd_http_classify::{ClassifyLayer, ProxyError};
use linkerd_http_test_util::{BoxError, MockBody, collect};
use serde_json::Value;
use std::{
    future::Future,
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// A body error implementing `Error` (the classify layer needs one), keeping the scripted
/// error as its source.
#[derive(Debug)]
struct TestError(BoxError);

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("body failed")
    }
}

impl std::error::Error for TestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

type TestBody = http_body_util::combinators::MapErr<MockBody, fn(BoxError) -> TestError>;

fn body(mock: MockBody) -> TestBody {
    mock.map_err(TestError as fn(BoxError) -> TestError)
}

/// An `io::Write` collecting lines in memory.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn json(&self) -> Vec<Value> {
        let bytes = self.0.lock().expect("lock").clone();
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("line {l:?} is not JSON: {e}"))
            })
            .collect()
    }
}

#[derive(Clone)]
struct Route(Arc<str>);
#[derive(Clone)]
struct Backend(Arc<str>);
#[derive(Clone)]
struct Attempts(u32);

fn extract(ext: &http::Extensions) -> ResponseInfo {
    ResponseInfo {
        route: ext.get::<Route>().map(|r| r.0.clone()),
        backend: ext.get::<Backend>().map(|b| b.0.clone()),
        attempts: ext.get::<Attempts>().map(|a| a.0),
    }
}

fn writer(lines: &Lines, capacity: usize) -> AccessLogWriter {
    let mut config = WriterConfig::new(Format::Json);
    config.capacity = capacity;
    AccessLogWriter::spawn(Output::Writer(Box::new(lines.clone())), config).expect("spawn")
}

fn flush(writer: &AccessLogWriter) {
    assert!(writer.flush_blocking(), "the writer thread is running");
}

const FIELDS: [&str; 18] = [
    "timestamp",
    "client_addr",
    "method",
    "uri",
    "host",
    "version",
    "status",
    "grpc_status",
    "route",
    "backend",
    "attempts",
    "request_bytes",
    "response_bytes",
    "duration_ms",
    "headers_ms",
    "user_agent",
    "trace_id",
    "error",
];

fn check_shape(v: &Value) {
    let obj = v.as_object().expect("an object");
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    let mut want = FIELDS.to_vec();
    want.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, want, "exactly the DESIGN.md section 7 fields");
    let ts = v["timestamp"].as_str().expect("timestamp is a string");
    assert_eq!(ts.len(), 27, "RFC 3339 with microseconds: {ts}");
    assert!(
        ts.ends_with('Z') && &ts[10..11] == "T" && &ts[19..20] == ".",
        "RFC 3339: {ts}"
    );
    assert!(v["status"].is_u64(), "status is a number");
    assert!(v["attempts"].is_u64() && v["request_bytes"].is_u64() && v["response_bytes"].is_u64());
    let d = v["duration_ms"].as_f64().expect("duration_ms is a number");
    let h = v["headers_ms"].as_f64().expect("headers_ms is a number");
    assert!(
        h >= 0.0 && d >= h,
        "headers come before the end: {h} <= {d}"
    );
    assert!(
        v["grpc_status"].is_null() || v["grpc_status"].is_u64(),
        "grpc_status number or null"
    );
    assert!(
        v["error"].is_null() || v["error"].is_string(),
        "error string or null"
    );
}

/// Serves `svc` on 127.0.0.1:0 (HTTP/1.1 and h2c), inserting `ClientAddr`.
async fn serve<S>(svc: S) -> SocketAddr
where
    S: tower::Service<
            Request<hyper::body::Incoming>,
            Response = Response<linkerd_http_access_log::ResponseBody<Full<Bytes>>>,
            Error = BoxError,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        for _ in 0..8 {
            let Ok((io, peer)) = listener.accept().await else {
                return;
            };
            let svc = svc.clone();
            let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ClientAddr(peer));
                svc.clone().oneshot(req)
            });
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(io), svc).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn json_lines_over_a_real_server_with_streamed_bodies() {
    let lines = Lines::default();
    let writer = writer(&lines, 64);
    let svc = ServiceBuilder::new()
        .layer(AccessLogLayer::new(writer.clone()).with_extract(extract))
        .service(service_fn(
            |req: Request<RequestBody<hyper::body::Incoming>>| async move {
                // Read the streamed request body in full, then answer with 3 KiB.
                let n = req.into_body().collect().await?.to_bytes().len();
                let mut rsp = Response::new(Full::new(Bytes::from(vec![b'x'; 3 * 1024 + n % 2])));
                rsp.extensions_mut().insert(Route("web".into()));
                rsp.extensions_mut().insert(Backend("svc-a".into()));
                rsp.extensions_mut().insert(Attempts(2));
                Ok::<_, BoxError>(rsp)
            },
        ));
    let addr = serve(svc).await;

    let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    let local = io.inner().local_addr().expect("local addr");
    let (mut send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("handshake");
    tokio::spawn(conn);
    // A request body of 3 chunks (1000 bytes), with no content-length: chunked.
    let body = MockBody::new()
        .data(vec![b'a'; 400])
        .delay(Duration::from_millis(5))
        .data(vec![b'b'; 300])
        .data(vec![b'c'; 300]);
    let req = Request::post("/upload?x=1")
        .header("host", "example.test")
        .header("user-agent", "test-agent/1")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header("x-request-id", "ignored")
        .body(body)
        .expect("request");
    let rsp = send.send_request(req).await.expect("response");
    assert_eq!(rsp.status(), 200);
    let got = collect(rsp.into_body()).await.expect("body");
    assert_eq!(got.data.len(), 3 * 1024, "response body");
    flush(&writer);

    let records = lines.json();
    assert_eq!(records.len(), 1, "one line per request");
    let v = &records[0];
    check_shape(v);
    assert_eq!(
        v["client_addr"],
        local.to_string(),
        "client address from ClientAddr"
    );
    assert_eq!(v["method"], "POST");
    assert_eq!(v["uri"], "/upload?x=1");
    assert_eq!(v["host"], "example.test");
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(v["status"], 200);
    assert_eq!(v["grpc_status"], Value::Null, "not gRPC");
    assert_eq!(v["route"], "web");
    assert_eq!(v["backend"], "svc-a");
    assert_eq!(v["attempts"], 2);
    assert_eq!(v["request_bytes"], 1000, "request body bytes, streamed");
    assert_eq!(v["response_bytes"], 3 * 1024, "response body bytes");
    assert_eq!(v["user_agent"], "test-agent/1");
    assert_eq!(
        v["trace_id"], "0af7651916cd43dd8448eb211c80319c",
        "traceparent's trace id first"
    );
    assert_eq!(v["error"], Value::Null);
    assert!(
        v["duration_ms"].as_f64().expect("number") > 0.0,
        "some time passed"
    );
    assert_eq!(writer.dropped(), 0, "nothing dropped");
}

#[tokio::test(start_paused = true)]
async fn durations_bytes_and_grpc_trailers_of_a_streamed_response() {
    let lines = Lines::default();
    let writer = writer(&lines, 64);
    let svc = ServiceBuilder::new()
        .layer(AccessLogLayer::new(writer.clone()))
        .layer(ClassifyLayer::default())
        .service(service_fn(|_req: Request<_>| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("4"));
            let mock = MockBody::new()
                .data("abc")
                .delay(Duration::from_millis(30))
                .data("defg")
                .trailers(trailers);
            Ok::<_, BoxError>(Response::new(body(mock)))
        }));
    let req = Request::post("/pkg.Svc/Call")
        .version(http::Version::HTTP_2)
        .header("content-type", "application/grpc")
        .header("x-b3-traceid", "b3id")
        .body(Full::new(Bytes::from_static(b"12345")))
        .expect("request");
    let rsp = svc.oneshot(req).await.expect("response");
    let got = collect(rsp.into_body()).await.expect("body");
    assert_eq!(got.data, "abcdefg");
    flush(&writer);
    let records = lines.json();
    assert_eq!(records.len(), 1, "one record");
    let v = &records[0];
    check_shape(v);
    assert_eq!(v["version"], "HTTP/2.0");
    assert_eq!(v["grpc_status"], 4, "gRPC status from the trailers");
    assert_eq!(
        v["error"],
        Value::Null,
        "a gRPC error code is not a proxy error"
    );
    assert_eq!(v["response_bytes"], 7);
    assert_eq!(
        v["request_bytes"], 0,
        "the service never read the request body"
    );
    assert_eq!(v["trace_id"], "b3id");
    assert_eq!(v["client_addr"], Value::Null, "no ClientAddr extension");
    let h = v["headers_ms"].as_f64().expect("number");
    let d = v["duration_ms"].as_f64().expect("number");
    // Paused time: the clock moves only by the scripted sleeps.
    assert!(
        (20.0..21.0).contains(&h),
        "headers after the 20 ms sleep: {h}"
    );
    assert!((50.0..51.0).contains(&d), "end after another 30 ms: {d}");
}

#[tokio::test]
async fn failures_cancellations_and_synthetic_answers() {
    let lines = Lines::default();
    let writer = writer(&lines, 64);
    let svc = ServiceBuilder::new()
        .layer(AccessLogLayer::new(writer.clone()))
        .layer(ClassifyLayer::default())
        .service(service_fn(|req: Request<_>| async move {
            match req.uri().path() {
                "/reset" => Err::<Response<TestBody>, BoxError>(Box::new(h2::Error::from(
                    h2::Reason::REFUSED_STREAM,
                ))),
                "/shed" => Ok(ProxyError::load_shed()
                    .to_response::<MockBody>(linkerd_http_classify::Protocol::Http1)
                    .map(body)),
                "/mid-body" => Ok(Response::new(body(MockBody::new().data("partial").error(
                    ProxyError::idle_timeout().with_source(h2::Error::from(h2::Reason::CANCEL)),
                )))),
                _ => Ok(Response::new(body(
                    MockBody::new().data("never read").hang(),
                ))),
            }
        }));
    let req = |path: &str| {
        Request::get(path)
            .body(Full::<Bytes>::default())
            .expect("request")
    };

    let err = svc
        .clone()
        .oneshot(req("/reset"))
        .await
        .expect_err("the service fails");
    assert!(
        linkerd_http_classify::find_h2_reason(&*err).is_some(),
        "the error passes unchanged"
    );

    let rsp = svc.clone().oneshot(req("/shed")).await.expect("response");
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
    collect(rsp.into_body()).await.expect("empty body");

    let rsp = svc
        .clone()
        .oneshot(req("/mid-body"))
        .await
        .expect("headers");
    assert!(collect(rsp.into_body()).await.is_err(), "the body fails");

    let rsp = svc.clone().oneshot(req("/hang")).await.expect("headers");
    drop(rsp);

    // A response future dropped before the headers.
    let mut ready = svc.clone();
    let fut = tower::Service::call(ready.ready().await.expect("ready"), req("/reset"));
    drop(fut);

    flush(&writer);
    let records = lines.json();
    assert_eq!(
        records.len(),
        5,
        "one record per request, whatever happened: {records:?}"
    );
    for v in &records {
        check_shape(v);
    }
    let by_uri = |uri: &str| {
        records
            .iter()
            .filter(|v| v["uri"] == uri)
            .collect::<Vec<_>>()
    };
    let reset = by_uri("/reset");
    assert_eq!(reset.len(), 2, "the failure and the cancellation");
    assert!(
        reset
            .iter()
            .any(|v| v["status"] == 0 && v["error"] == "RESET"),
        "a service failure is status 0 with the mapped error: {reset:?}"
    );
    assert!(
        reset
            .iter()
            .any(|v| v["status"] == 0 && v["error"] == "CANCEL"),
        "a dropped response future is a cancellation: {reset:?}"
    );
    let shed = by_uri("/shed")[0];
    assert_eq!(
        (shed["status"].clone(), shed["error"].clone()),
        (Value::from(503), Value::from("LOAD_SHED")),
        "synthetic answer"
    );
    let mid = by_uri("/mid-body")[0];
    assert_eq!(mid["status"], 200, "the status sent before the failure");
    assert_eq!(mid["error"], "IDLE_TIMEOUT", "the body error's label");
    assert_eq!(mid["response_bytes"], 7, "bytes sent before the failure");
    let hang = by_uri("/hang")[0];
    assert_eq!(
        (hang["status"].clone(), hang["error"].clone()),
        (Value::from(200), Value::from("CANCEL")),
        "body dropped"
    );
}

/// Notes a route, backend and attempts when dropped, like the route, split and retry
/// futures of a request in flight.
struct InFlight;

impl Drop for InFlight {
    fn drop(&mut self) {
        linkerd_http_classify::dropped::note(|n| {
            n.route_or(&Arc::from("r"));
            n.backend_or(&Arc::from("b"));
            n.attempts_or(3);
        });
    }
}

#[tokio::test]
async fn a_cancelled_request_logs_what_the_work_below_knew() {
    let lines = Lines::default();
    let writer = writer(&lines, 64);
    let mut svc = ServiceBuilder::new()
        .layer(AccessLogLayer::new(writer.clone()))
        .service(service_fn(|_: Request<_>| {
            let guard = InFlight;
            async move {
                std::future::pending::<()>().await;
                drop(guard);
                Ok::<_, BoxError>(Response::new(Full::<Bytes>::default()))
            }
        }));
    let req = Request::get("/gone")
        .body(Full::<Bytes>::default())
        .unwrap();
    let mut fut = Box::pin(tower::Service::call(svc.ready().await.expect("ready"), req));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(
        fut.as_mut().poll(&mut cx).is_pending(),
        "the inner future waits"
    );
    drop(fut);
    flush(&writer);
    let records = lines.json();
    assert_eq!(records.len(), 1, "{records:?}");
    let v = &records[0];
    check_shape(v);
    assert_eq!(v["status"], 0);
    assert_eq!(v["error"], "CANCEL");
    assert_eq!(v["route"], "r", "{v}");
    assert_eq!(v["backend"], "b", "{v}");
    assert_eq!(v["attempts"], 3, "{v}");
}

/// An output that, at its first write, reports that it is blocked and then blocks until
/// released.
struct Blocked {
    entered: mpsc::Sender<()>,
    release: Option<mpsc::Receiver<()>>,
    lines: Lines,
}

impl Write for Blocked {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(rx) = self.release.take() {
            let _ = self.entered.send(());
            // Blocks the writer thread (never a request) until the test releases it.
            let _ = rx.recv();
        }
        self.lines.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_blocked_writer_never_blocks_requests_and_counts_every_lost_line() {
    const REQUESTS: u64 = 10_000;
    const CAPACITY: usize = 100;
    let lines = Lines::default();
    let (release, blocked) = mpsc::channel();
    let (entered_tx, entered) = mpsc::channel();
    let output = Blocked {
        entered: entered_tx,
        release: Some(blocked),
        lines: lines.clone(),
    };
    let mut config = WriterConfig::new(Format::Json);
    config.capacity = CAPACITY;
    let writer = AccessLogWriter::spawn(Output::Writer(Box::new(output)), config).expect("spawn");
    let svc = ServiceBuilder::new()
        .layer(AccessLogLayer::new(writer.clone()))
        .service(service_fn(
            |_req: Request<RequestBody<Full<Bytes>>>| async {
                Ok::<_, BoxError>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            },
        ));
    let send = |i: u64| {
        let svc = svc.clone();
        async move {
            let req = Request::get(format!("/{i}"))
                .body(Full::<Bytes>::default())
                .expect("request");
            let rsp = svc.oneshot(req).await.expect("every request completes");
            rsp.into_body().collect().await.expect("body");
        }
    };
    // The first record reaches the output, which then blocks for good.
    send(0).await;
    entered
        .recv()
        .expect("the writer thread reaches the output");
    let mut max_queued = 0;
    for i in 1..REQUESTS {
        send(i).await;
        max_queued = max_queued.max(writer.queued());
    }
    assert_eq!(
        max_queued, CAPACITY,
        "the queue fills up to its bound and no further"
    );
    let lost = REQUESTS - 1 - CAPACITY as u64;
    assert_eq!(
        writer.dropped(),
        lost,
        "every record that found the queue full is counted"
    );
    release.send(()).expect("release the writer");
    flush(&writer);
    let written = lines.json().len() as u64;
    assert_eq!(
        written + writer.dropped(),
        REQUESTS,
        "dropped ({}) is exactly the number of lines lost",
        writer.dropped()
    );
    assert_eq!(
        written,
        1 + CAPACITY as u64,
        "the blocked line and the queue are written"
    );
    assert_eq!(
        writer.written(),
        written,
        "written count matches the output"
    );
}

mod tracing_output {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tracing::{
        Event, Metadata, Subscriber,
        field::{Field, Visit},
        span,
    };

    /// A minimal subscriber recording `access_log` event messages.
    #[derive(Clone, Default)]
    struct Capture {
        messages: Arc<Mutex<Vec<String>>>,
        ids: Arc<AtomicUsize>,
    }

    struct Message<'a>(&'a mut String);
    impl Visit for Message<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                *self.0 = format!("{value:?}");
            }
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(self.ids.fetch_add(1, Ordering::Relaxed) as u64 + 1)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, event: &Event<'_>) {
            if event.metadata().target() == "access_log" {
                let mut m = String::new();
                event.record(&mut Message(&mut m));
                self.messages.lock().expect("lock").push(m);
            }
        }
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }

    #[tokio::test]
    async fn records_become_tracing_events() {
        let capture = Capture::default();
        let dispatch = tracing::Dispatch::new(capture.clone());
        let writer = tracing::dispatcher::with_default(&dispatch, || {
            AccessLogWriter::spawn(
                Output::Tracing,
                WriterConfig::new("%method% %uri% %status%".parse().expect("template")),
            )
            .expect("spawn")
        });
        let svc = ServiceBuilder::new()
            .layer(AccessLogLayer::new(writer.clone()))
            .service(service_fn(
                |_req: Request<RequestBody<Full<Bytes>>>| async {
                    Ok::<_, BoxError>(
                        Response::builder()
                            .status(204)
                            .body(Full::<Bytes>::default())?,
                    )
                },
            ));
        let rsp = svc
            .oneshot(
                Request::delete("/thing")
                    .body(Full::default())
                    .expect("request"),
            )
            .await
            .expect("response");
        rsp.into_body().collect().await.expect("body");
        flush(&writer);
        assert_eq!(
            *capture.messages.lock().expect("lock"),
            vec!["DELETE /thing 204".to_owned()],
            "one event per record, with the formatted line"
        );
    }
}

#[tokio::test]
async fn bodies_forward_size_hint_and_end_of_stream() {
    use http_body::Body as _;
    let lines = Lines::default();
    let writer = writer(&lines, 8);
    let svc = ServiceBuilder::new()
        .layer(AccessLogLayer::new(writer.clone()))
        .service(service_fn(
            |req: Request<RequestBody<Full<Bytes>>>| async move {
                let body = req.body();
                assert_eq!(
                    body.size_hint().exact(),
                    Some(3),
                    "request size_hint forwarded"
                );
                assert!(!body.is_end_stream(), "request is_end_stream forwarded");
                let len = if req.uri().path() == "/empty" { 0 } else { 5 };
                Ok::<_, BoxError>(Response::new(Full::new(Bytes::from(vec![b'z'; len]))))
            },
        ));
    let req = |p: &str| {
        Request::get(p)
            .body(Full::new(Bytes::from_static(b"abc")))
            .expect("request")
    };
    let rsp = svc.clone().oneshot(req("/full")).await.expect("response");
    assert_eq!(
        rsp.body().size_hint().exact(),
        Some(5),
        "response size_hint forwarded"
    );
    assert!(
        !rsp.body().is_end_stream(),
        "response is_end_stream forwarded"
    );
    rsp.into_body().collect().await.expect("body");
    let rsp = svc.oneshot(req("/empty")).await.expect("response");
    assert!(rsp.body().is_end_stream(), "an empty body is at its end");
    // Never polled (as hyper does with an empty body), yet logged, and only once.
    drop(rsp);
    flush(&writer);
    let records = lines.json();
    assert_eq!(
        records.len(),
        2,
        "the empty body's record is written without a poll"
    );
    assert_eq!(records[1]["uri"], "/empty");
    assert_eq!(
        records[1]["error"],
        Value::Null,
        "an empty body is a complete response"
    );
}

/// A bodiless request body that counts how often it is asked whether it has ended.
struct Asked(Arc<std::sync::atomic::AtomicUsize>);

impl http_body::Body for Asked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        std::task::Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        true
    }
}

#[tokio::test]
async fn a_request_body_at_its_end_answers_is_end_stream_itself() {
    use http_body::Body as _;
    let lines = Lines::default();
    let writer = writer(&lines, 8);
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(AccessLogLayer::new(writer.clone()))
        .service(service_fn(|req: Request<RequestBody<Asked>>| async move {
            for _ in 0..3 {
                assert!(req.body().is_end_stream());
            }
            Ok::<_, BoxError>(Response::new(Full::new(Bytes::new())))
        }));
    let req = Request::get("/")
        .body(Asked(asked.clone()))
        .expect("request");
    svc.oneshot(req).await.expect("response");
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "asked once, when the request arrived"
    );
}

#[test]
fn lines_sent_from_many_threads_arrive_whole_and_once() {
    const THREADS: usize = 4;
    const EACH: usize = 2_000;
    let lines = Lines::default();
    let writer = writer(&lines, THREADS * EACH);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let writer = writer.clone();
            s.spawn(move || {
                for i in 0..EACH {
                    let uri: http::Uri = format!("/t{t}/{i}").parse().expect("uri");
                    let record = linkerd_http_access_log::Record::from_request(
                        std::time::SystemTime::now(),
                        &http::Method::GET,
                        &uri,
                        http::Version::HTTP_11,
                        &http::HeaderMap::new(),
                    );
                    assert!(writer.send(record), "room for every line");
                }
            });
        }
    });
    flush(&writer);
    let json = lines.json();
    assert_eq!(json.len(), THREADS * EACH, "every line, each parsed whole");
    let mut paths: Vec<String> = json
        .iter()
        .map(|v| v["uri"].as_str().expect("uri").to_owned())
        .collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), THREADS * EACH, "each line once");
    assert_eq!(writer.written(), (THREADS * EACH) as u64);
    assert_eq!(writer.dropped(), 0);
}
