//! Malformed and hostile clients against the proxy subprocess (issue 12, item 2).
//!
//! Every test runs its own proxy, warms it up, records its RSS and open file descriptors,
//! attacks it while a well-behaved client keeps sending requests ([`GoodTraffic`]), and then
//! asserts that every good request succeeded, that peak RSS grew by less than 64 MiB and that
//! the open file descriptors came back within 2 of the baseline.

mod support;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use linkerd_http_test_util::{HttpClient, ServerProtocol, TestServer};
use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use support::{
    Proxy,
    reliability::{
        CONTINUATION, END_HEADERS, GoodTraffic, HEADERS, RST_STREAM, Resources, config, frame,
        get_block, raw_exchange, raw_h2_connect, read_goaway, read_until_close, response_count,
        status_of,
    },
};
use tokio::{io::AsyncWriteExt, net::TcpStream};

const SETTLE: Duration = Duration::from_secs(5);
const MIB: u64 = 1024 * 1024;

/// A proxy (header-read timeout 1 s) in front of the scripted backend, warmed up, with its
/// resource baseline.
async fn setup(backend: &TestServer) -> (Proxy, Resources) {
    let proxy = Proxy::start(
        &config("http1", &[backend.addr()], "headerReadTimeout: 1s", ""),
        &[],
    );
    // Warm-up: both protocols, a few connections, so that lazily allocated state exists.
    for _ in 0..3 {
        for mut client in [
            HttpClient::http1(proxy.addr).await.expect("connect"),
            HttpClient::http2(proxy.addr).await.expect("connect"),
        ] {
            for _ in 0..5 {
                let rsp = client.get("/warm").await.expect("warm-up request");
                assert_eq!(rsp.status(), 200, "warm-up");
                rsp.into_body().collect().await.expect("warm-up body");
            }
        }
    }
    // Let the warm-up connections close on the proxy's side.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let baseline = Resources::baseline(proxy.pid());
    (proxy, baseline)
}

fn paths_seen(backend: &TestServer, path: &str) -> usize {
    backend
        .requests()
        .iter()
        .filter(|r| r.uri.path() == path)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http1_requests_are_rejected() {
    let backend = TestServer::backend().await.expect("backend");
    let (proxy, baseline) = setup(&backend).await;
    let good = GoodTraffic::start(proxy.addr, "/good").await;

    let many_headers: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
    let huge_header = format!("x-big: {}\r\n", "a".repeat(512 * 1024));
    let long_uri = format!("/evil?{}", "a".repeat(70_000));
    let head = |extra: &str| format!("GET /evil HTTP/1.1\r\nhost: test\r\n{extra}\r\n");
    // (case, request bytes, acceptable statuses)
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), &[400]),
        ("no version", b"GET /evil\r\nhost: test\r\n\r\n".to_vec(), &[400]),
        ("unknown version", b"GET /evil HTTP/9.9\r\nhost: test\r\n\r\n".to_vec(), &[400, 505]),
        ("space in target", b"GET /ev il HTTP/1.1\r\nhost: test\r\n\r\n".to_vec(), &[400]),
        ("NUL in target", b"GET /evil\0 HTTP/1.1\r\nhost: test\r\n\r\n".to_vec(), &[400]),
        ("bad method token", b"G(T /evil HTTP/1.1\r\nhost: test\r\n\r\n".to_vec(), &[400]),
        ("space in header name", head("bad name: 1\r\n").into_bytes(), &[400]),
        ("space before colon", head("x-a : 1\r\n").into_bytes(), &[400]),
        ("header without colon", head("x-a 1\r\n").into_bytes(), &[400]),
        ("control byte in value", head("x-a: a\x01b\r\n").into_bytes(), &[400]),
        ("obs-fold", head("x-a: a\r\n b\r\n").into_bytes(), &[400]),
        ("101 headers", head(&many_headers).into_bytes(), &[431]),
        ("512 KiB header", head(&huge_header).into_bytes(), &[431]),
        (
            "70,000-byte URI",
            format!("GET {long_uri} HTTP/1.1\r\nhost: test\r\n\r\n").into_bytes(),
            &[414],
        ),
        (
            "conflicting Content-Length",
            b"POST /evil HTTP/1.1\r\nhost: test\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!"
                .to_vec(),
            &[400],
        ),
        (
            "negative Content-Length",
            b"POST /evil HTTP/1.1\r\nhost: test\r\ncontent-length: -1\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "Transfer-Encoding not ending in chunked",
            b"POST /evil HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked, gzip\r\n\r\n"
                .to_vec(),
            &[400],
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            b"POST /evil HTTP/1.0\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
            &[400],
        ),
    ];
    for (case, bytes, statuses) in &cases {
        let (rsp, closed) = raw_exchange(proxy.addr, bytes, Duration::from_secs(5)).await;
        let status = status_of(&rsp);
        assert!(
            status.is_some_and(|s| statuses.contains(&s)),
            "{case}: expected one of {statuses:?}, got {:?}",
            String::from_utf8_lossy(&rsp[..rsp.len().min(200)])
        );
        assert!(closed, "{case}: the connection closes after the error");
        assert_eq!(response_count(&rsp), 1, "{case}: exactly one response");
    }
    assert_eq!(
        paths_seen(&backend, "/evil"),
        0,
        "no malformed request reached the backend"
    );

    good.finish("malformed requests").await;
    baseline
        .assert_recovered("malformed requests", SETTLE)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_not_smuggled() {
    let backend = TestServer::backend().await.expect("backend");
    let (proxy, baseline) = setup(&backend).await;
    let good = GoodTraffic::start(proxy.addr, "/good").await;

    let smuggled = "GET /smuggled HTTP/1.1\r\nhost: test\r\n\r\n";
    let orders = [
        "content-length: 4\r\ntransfer-encoding: chunked\r\n",
        "transfer-encoding: chunked\r\ncontent-length: 4\r\n",
        "content-length: 50\r\ntransfer-encoding: chunked\r\n",
    ];
    for (i, framing) in orders.iter().enumerate() {
        let req = format!(
            "POST /cl-te-{i} HTTP/1.1\r\nhost: test\r\n{framing}\r\n5\r\nhello\r\n0\r\n\r\n{smuggled}"
        );
        let (rsp, closed) = raw_exchange(proxy.addr, req.as_bytes(), Duration::from_secs(5)).await;
        let text = String::from_utf8_lossy(&rsp).to_string();
        assert_eq!(status_of(&rsp), Some(200), "{framing:?}: answered: {text}");
        assert_eq!(
            response_count(&rsp),
            1,
            "{framing:?}: exactly one response: {text}"
        );
        assert!(
            closed,
            "{framing:?}: the connection closes after the response"
        );
        let seen: Vec<_> = backend
            .requests()
            .into_iter()
            .filter(|r| r.uri.path() == format!("/cl-te-{i}"))
            .collect();
        assert_eq!(
            seen.len(),
            1,
            "{framing:?}: the request reached the backend once"
        );
        assert!(
            !seen[0].headers.contains_key("content-length"),
            "{framing:?}: the backend never sees a Content-Length: {:?}",
            seen[0].headers
        );
        assert_eq!(seen[0].body, "hello", "{framing:?}: chunked framing wins");
    }
    assert_eq!(
        paths_seen(&backend, "/smuggled"),
        0,
        "no request was smuggled"
    );

    good.finish("CL + TE").await;
    baseline.assert_recovered("CL + TE", SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_and_authority_form_never_reach_other_targets() {
    let backend = TestServer::backend().await.expect("backend");
    let (proxy, baseline) = setup(&backend).await;
    let good = GoodTraffic::start(proxy.addr, "/good").await;
    // A listener the requests name as their target: the proxy must never dial it.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind trap");
    let t = trap.local_addr().expect("trap addr");

    let cases: Vec<(&str, String, &[u16])> = vec![
        (
            "absolute-form naming another host",
            format!("GET http://{t}/abs HTTP/1.1\r\nhost: other\r\nconnection: close\r\n\r\n"),
            &[200],
        ),
        (
            "absolute-form with userinfo",
            format!(
                "GET http://user:pw@{t}/abs HTTP/1.1\r\nhost: other\r\nconnection: close\r\n\r\n"
            ),
            // RFC 9110 section 4.2.4: userinfo in the target is an error.
            &[400],
        ),
        (
            "absolute-form with another scheme",
            format!("GET ftp://{t}/abs HTTP/1.1\r\nhost: other\r\nconnection: close\r\n\r\n"),
            &[200, 400],
        ),
        (
            "absolute-form without authority",
            "GET http:///abs HTTP/1.1\r\nhost: other\r\nconnection: close\r\n\r\n".to_owned(),
            &[400],
        ),
        (
            "authority-form GET",
            format!("GET {t} HTTP/1.1\r\nhost: {t}\r\n\r\n"),
            &[400],
        ),
        (
            "asterisk-form GET",
            "GET * HTTP/1.1\r\nhost: test\r\n\r\n".to_owned(),
            &[400, 404],
        ),
        // CONNECT is routed to the backend like any request; the proxy never dials the target.
        (
            "CONNECT",
            format!("CONNECT {t} HTTP/1.1\r\nhost: {t}\r\n\r\n"),
            &[200, 400, 404, 405, 502],
        ),
    ];
    for (case, req, statuses) in &cases {
        let (rsp, _) = raw_exchange(proxy.addr, req.as_bytes(), Duration::from_secs(1)).await;
        let status = status_of(&rsp);
        assert!(
            status.is_some_and(|s| statuses.contains(&s)),
            "{case}: expected one of {statuses:?}, got {:?}",
            String::from_utf8_lossy(&rsp[..rsp.len().min(300)])
        );
    }
    // Many distinct authorities (absolute-form and Host): the proxy pools its connections
    // per endpoint, so they do not each open and keep a backend connection.
    for i in 0..20 {
        for req in [
            format!("GET http://h{i}.example/many HTTP/1.1\r\nconnection: close\r\n\r\n"),
            format!("GET /many HTTP/1.1\r\nhost: v{i}.example:8{i}\r\nconnection: close\r\n\r\n"),
        ] {
            let (rsp, _) = raw_exchange(proxy.addr, req.as_bytes(), Duration::from_secs(5)).await;
            assert_eq!(
                status_of(&rsp),
                Some(200),
                "authority {i}: routed to the backend"
            );
        }
    }
    // HTTP/2 with an :authority naming the trap.
    let mut h2 = HttpClient::http2(proxy.addr).await.expect("connect");
    let req = Request::get(format!("http://{t}/abs-h2"))
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let rsp = h2.send(req).await.expect("h2 response");
    assert_eq!(
        rsp.status(),
        200,
        ":authority naming another host is routed to the backend"
    );
    rsp.into_body().collect().await.expect("h2 body");
    drop(h2);

    let abs = backend
        .requests()
        .into_iter()
        .find(|r| r.uri.path() == "/abs")
        .expect("the absolute-form request reached the configured backend");
    assert_eq!(
        abs.headers.get("host").and_then(|h| h.to_str().ok()),
        Some(t.to_string().as_str()),
        "absolute-form: Host is replaced by the URI authority (RFC 9112 section 3.2.2)"
    );
    let accepted = tokio::time::timeout(Duration::from_millis(100), trap.accept()).await;
    assert!(
        accepted.is_err(),
        "the proxy never dialed the target a request named"
    );

    good.finish("request-target abuse").await;
    baseline
        .assert_recovered("request-target abuse", SETTLE)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_flood() {
    const STREAMS: u32 = 10_000;
    const PER_BATCH: u32 = 100;
    let backend = TestServer::backend().await.expect("backend");
    let (proxy, baseline) = setup(&backend).await;
    let good = GoodTraffic::start(proxy.addr, "/good").await;

    let io = raw_h2_connect(proxy.addr).await;
    let (rd, mut wr) = io.into_split();
    let reader = tokio::spawn(read_goaway(rd));
    let block = get_block();
    let mut sent = 0;
    for b in 0..STREAMS / PER_BATCH {
        let mut buf = Vec::new();
        for i in 0..PER_BATCH {
            let id = 2 * (b * PER_BATCH + i) + 1;
            frame(&mut buf, HEADERS, END_HEADERS | 0x1, id, &block);
            frame(&mut buf, RST_STREAM, 0, id, &8u32.to_be_bytes()); // CANCEL
        }
        if wr.write_all(&buf).await.is_err() {
            break;
        }
        sent += PER_BATCH;
        tokio::task::yield_now().await;
    }
    drop(wr);
    let goaway = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the flood connection ends within 20s")
        .expect("reader");
    println!("rapid reset: {sent} streams sent, GOAWAY {goaway:?}");
    assert!(
        goaway == Some(u32::from(h2::Reason::ENHANCE_YOUR_CALM)) || goaway.is_none(),
        "the flood ends with GOAWAY(ENHANCE_YOUR_CALM) or a closed connection, got {goaway:?}"
    );

    good.finish("rapid reset").await;
    baseline.assert_recovered("rapid reset", SETTLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_continuation_flood() {
    const FRAMES: u32 = 10_000;
    const PER_BATCH: u32 = 100;
    let backend = TestServer::backend().await.expect("backend");
    let (proxy, baseline) = setup(&backend).await;
    let good = GoodTraffic::start(proxy.addr, "/good").await;

    let io = raw_h2_connect(proxy.addr).await;
    let (rd, mut wr) = io.into_split();
    let reader = tokio::spawn(read_goaway(rd));
    // `x-flood: aaaa` as a literal with a new name, repeated: a header block that never ends.
    let mut field = vec![0x00, 7];
    field.extend_from_slice(b"x-flood");
    field.push(4);
    field.extend_from_slice(b"aaaa");
    let chunk = field.repeat(8);
    let mut first = Vec::new();
    frame(&mut first, HEADERS, 0, 1, &get_block());
    let mut written = 0;
    if wr.write_all(&first).await.is_ok() {
        for _ in 0..FRAMES / PER_BATCH {
            let mut buf = Vec::new();
            for _ in 0..PER_BATCH {
                frame(&mut buf, CONTINUATION, 0, 1, &chunk);
            }
            if wr.write_all(&buf).await.is_err() {
                break;
            }
            written += PER_BATCH;
            tokio::task::yield_now().await;
        }
    }
    drop(wr);
    let goaway = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the flood connection ends within 20s")
        .expect("reader");
    println!("continuation flood: {written} frames written, GOAWAY {goaway:?}");
    assert!(
        goaway.is_some_and(|g| g != u32::from(h2::Reason::NO_ERROR)) || written < FRAMES,
        "the flood is cut off with an error GOAWAY or a closed connection, got {goaway:?} \
         after {written} frames"
    );

    good.finish("continuation flood").await;
    baseline
        .assert_recovered("continuation flood", SETTLE)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_by_the_header_read_timeout() {
    const TRICKLERS: usize = 30;
    const IDLE: usize = 30;
    let backend = TestServer::backend().await.expect("backend");
    let (proxy, baseline) = setup(&backend).await;
    let good = GoodTraffic::start(proxy.addr, "/good").await;
    let addr = proxy.addr;

    // Slowloris: a request head one byte every 100 ms (it would take 10 s); 1 s allowed.
    let trickle = |addr: SocketAddr| async move {
        let mut io = TcpStream::connect(addr).await.expect("connect");
        let head = b"GET /slow HTTP/1.1\r\nhost: test\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        for byte in head {
            if io.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    // Connections that send nothing, or half an HTTP/2 preface.
    let idle = |addr: SocketAddr, bytes: &'static [u8]| async move {
        let mut io = TcpStream::connect(addr).await.expect("connect");
        io.write_all(bytes).await.expect("write");
        read_until_close(&mut io, Duration::from_secs(5)).await.1
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TRICKLERS {
        tasks.spawn(async move { ("trickle", trickle(addr).await) });
    }
    for i in 0..IDLE {
        let bytes: &'static [u8] = if i % 2 == 0 {
            b""
        } else {
            b"PRI * HTTP/2.0\r\n"
        };
        tasks.spawn(async move { ("idle", idle(addr, bytes).await) });
    }
    let results = tokio::time::timeout(Duration::from_secs(15), tasks.join_all())
        .await
        .expect("all slow clients end within 15s");
    for (kind, cut) in &results {
        assert!(cut, "a {kind} connection was closed by the proxy");
    }
    assert_eq!(
        paths_seen(&backend, "/slow"),
        0,
        "no slow request reached the backend"
    );

    good.finish("slow clients").await;
    baseline.assert_recovered("slow clients", SETTLE).await;
}

/// The header read timeout also bounds keep-alive idleness and every later request head of
/// a connection, counted from when its previous response was handed over in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_connections_are_bounded_by_the_header_read_timeout() {
    let backend = TestServer::backend().await.expect("backend");
    let (proxy, baseline) = setup(&backend).await;
    let addr = proxy.addr;
    let first = b"GET /kept HTTP/1.1\r\nhost: test\r\n\r\n";

    // Idle after one exchange: closed about a timeout (1 s) after the response.
    let idle = async move {
        let mut io = TcpStream::connect(addr).await.expect("connect");
        io.write_all(first).await.expect("write");
        let started = tokio::time::Instant::now();
        let (bytes, closed) = read_until_close(&mut io, Duration::from_secs(5)).await;
        (status_of(&bytes), closed, started.elapsed())
    };
    // A second head trickled one byte every 100 ms (it would take about 4 s).
    let trickle = async move {
        let mut io = TcpStream::connect(addr).await.expect("connect");
        io.write_all(first).await.expect("write");
        let mut buf = [0u8; 4096];
        let n = tokio::io::AsyncReadExt::read(&mut io, &mut buf)
            .await
            .expect("first response");
        let status = status_of(&buf[..n]);
        let second = b"GET /trickled HTTP/1.1\r\nhost: test\r\nx-pad: aaaaaaaaaaaa\r\n\r\n";
        let mut cut = false;
        for byte in second {
            if io.write_all(&[*byte]).await.is_err() {
                cut = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !cut {
            cut = read_until_close(&mut io, Duration::from_secs(2)).await.1;
        }
        (status, cut)
    };
    // A request whose answer takes longer than the timeout: in flight, not idle.
    let slow = async move {
        let mut io = TcpStream::connect(addr).await.expect("connect");
        io.write_all(b"GET /kept HTTP/1.1\r\nhost: test\r\nx-test-delay-ms: 1500\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 4096];
        let n = tokio::io::AsyncReadExt::read(&mut io, &mut buf)
            .await
            .unwrap_or(0);
        status_of(&buf[..n])
    };
    let ((idle_status, idle_closed, idle_after), (trickle_status, trickle_cut), slow_status) =
        tokio::time::timeout(Duration::from_secs(15), async {
            tokio::join!(idle, trickle, slow)
        })
        .await
        .expect("all end within 15 s");
    assert_eq!(
        slow_status,
        Some(200),
        "a response slower than the timeout is not cut"
    );
    assert_eq!(idle_status, Some(200), "the first request is answered");
    assert!(idle_closed, "an idle kept-alive connection is closed");
    assert!(
        idle_after >= Duration::from_millis(900) && idle_after < Duration::from_secs(4),
        "closed about a timeout after the response: {idle_after:?}"
    );
    assert_eq!(trickle_status, Some(200));
    assert!(trickle_cut, "a trickled second head is cut off");
    assert_eq!(
        paths_seen(&backend, "/trickled"),
        0,
        "the trickled request never reached the backend"
    );
    baseline
        .assert_recovered("kept-alive timeouts", SETTLE)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_bounded_by_flow_control() {
    const CHUNK: usize = 64 * 1024;
    const LIMIT: u64 = 256 * MIB;
    // A backend streaming up to 256 MiB as fast as it is read; counts what it produced.
    let produced = Arc::new(AtomicU64::new(0));
    let counter = produced.clone();
    let backend = TestServer::serve(ServerProtocol::Http1, move |req: Request<_>| {
        let counter = counter.clone();
        // Only `/big` is big; everything else gets an empty body.
        let limit = if req.uri().path() == "/big" { LIMIT } else { 0 };
        async move {
            drop(req);
            let chunks = futures_util::stream::unfold(0u64, move |sent| {
                let counter = counter.clone();
                async move {
                    if sent >= limit {
                        return None;
                    }
                    counter.fetch_add(CHUNK as u64, Ordering::Relaxed);
                    let frame = hyper::body::Frame::data(Bytes::from(vec![b'x'; CHUNK]));
                    Some((Ok::<_, Infallible>(frame), sent + CHUNK as u64))
                }
            });
            Ok::<_, Infallible>(Response::new(StreamBody::new(chunks)))
        }
    })
    .await
    .expect("backend");
    let proxy = Proxy::start(&config("http1", &[backend.addr()], "", ""), &[]);
    // Warm-up: read a little of one big response over each protocol, then drop it.
    for mut client in [
        HttpClient::http1(proxy.addr).await.expect("connect"),
        HttpClient::http2(proxy.addr).await.expect("connect"),
    ] {
        let rsp = client.get("/big").await.expect("warm-up");
        let mut body = rsp.into_body();
        let _ = body.frame().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = Resources::baseline(proxy.pid());
    let before = produced.load(Ordering::Relaxed);

    // HTTP/1.1: send the request, never read.
    let mut h1 = TcpStream::connect(proxy.addr).await.expect("connect");
    h1.write_all(b"GET /big HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("write");
    // HTTP/2: get the response headers, never read the body (no WINDOW_UPDATE).
    let mut h2_client = linkerd_http_test_util::H2Client::connect(proxy.addr)
        .await
        .expect("connect");
    let (rsp, _) = h2_client
        .send_request(Request::get("/big").body(()).expect("request"), true)
        .await
        .expect("stream");
    let rsp = tokio::time::timeout(Duration::from_secs(5), rsp)
        .await
        .expect("headers in time")
        .expect("headers");
    assert_eq!(rsp.status(), 200, "the big response starts");

    // Give the data every chance to pile up somewhere.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let moved = produced.load(Ordering::Relaxed) - before;
    println!("stalled readers: the backend produced {} KiB", moved / 1024);
    assert!(
        moved < 64 * MIB,
        "flow control stops the backend: it produced {moved} bytes for two stalled readers"
    );
    let growth = baseline.peak_growth_kib();
    assert!(
        growth < 64 * 1024,
        "the proxy's RSS grew by {growth} KiB for two stalled readers"
    );

    // Other clients are served meanwhile.
    let good = GoodTraffic::start(proxy.addr, "/good").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    good.finish("stalled readers").await;

    drop(rsp);
    drop(h2_client);
    drop(h1);
    baseline.assert_recovered("stalled readers", SETTLE).await;
    // The upstream requests were cancelled: the backend stops producing.
    let after_close = produced.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        produced.load(Ordering::Relaxed),
        after_close,
        "the backend stops producing once the clients are gone"
    );
}

/// `server.headerReadTimeout: 0s` turns the timeout off (DESIGN.md section 4: "`0s` disables
/// a timeout"): a client may wait before its first request and between keep-alive requests.
/// It closed such connections at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_read_timeout_of_zero_is_off() {
    let backend = TestServer::backend().await.expect("backend");
    let proxy = Proxy::start(
        &config("http1", &[backend.addr()], "headerReadTimeout: 0s", ""),
        &[],
    );
    let mut io = TcpStream::connect(proxy.addr).await.expect("connect");
    for i in 0..2 {
        // Before the first request (protocol detection), then idle on keep-alive.
        tokio::time::sleep(Duration::from_millis(300)).await;
        io.write_all(b"GET /late HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .expect("write");
        let head = support::reliability::read_head(&mut io)
            .await
            .unwrap_or_else(|| panic!("request {i}: the connection was closed"));
        assert_eq!(status_of(&head), Some(200), "request {i}");
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let len: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().expect("a length"));
        let mut body = vec![0; len];
        tokio::io::AsyncReadExt::read_exact(&mut io, &mut body)
            .await
            .expect("the body");
    }
}
