//! Flood tests against a hyper HTTP/2 server configured with `ServerSettings::default()`,
//! running in a subprocess so its memory can be read from `/proc/<pid>/status`.
//!
//! This executable is its own server: run with `LINKERD_H2_FLOOD_SERVER=1`, it serves on
//! 127.0.0.1:0, prints `listening <addr>` and serves until its stdin closes. Without it, it
//! runs the tests (no libtest harness; `harness = false` in Cargo.toml):
//!
//! - rapid reset: one connection opens and immediately resets up to 10,000 streams (raw
//!   frames) and must get `GOAWAY(ENHANCE_YOUR_CALM)`, while a second connection completes
//!   100 requests;
//! - CONTINUATION flood: one header block followed by up to 10,000 CONTINUATION frames must
//!   get `GOAWAY(ENHANCE_YOUR_CALM)`;
//! - the server's peak RSS grows by less than 32 MiB over both.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd_http_h2::ServerSettings;
use std::{
    io::{BufRead, BufReader, Read as _},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const SERVER_ENV: &str = "LINKERD_H2_FLOOD_SERVER";
const TESTS: [&str; 2] = ["rapid_reset_flood", "continuation_flood"];
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const MIB: u64 = 1024 * 1024;

fn main() {
    if std::env::var_os(SERVER_ENV).is_some() {
        serve();
        return;
    }
    // Honour a name filter (`cargo test -p linkerd-http-h2 -- rapid`): skip when no test
    // name contains it.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    if !TESTS.iter().any(|t| selected(t)) {
        println!("running 0 tests");
        return;
    }
    println!("running {} tests", TESTS.len());
    let server = ServerProcess::spawn();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        warm_up(server.addr).await;
        let baseline = server.status_kib("VmRSS:");
        rapid_reset_flood(server.addr).await;
        println!("test rapid_reset_flood ... ok");
        continuation_flood(server.addr).await;
        println!("test continuation_flood ... ok");
        // The server survived both and still answers.
        warm_up(server.addr).await;
        let peak = server.status_kib("VmHWM:");
        let growth = peak.saturating_sub(baseline) * 1024;
        println!(
            "server RSS: {} KiB before, {} KiB peak (growth {:.1} MiB)",
            baseline,
            peak,
            growth as f64 / MIB as f64
        );
        assert!(
            growth < 32 * MIB,
            "the floods must not grow the server's memory by 32 MiB or more (grew {growth} bytes)"
        );
    });
    drop(server);
    println!("test result: ok. {} passed; 0 failed", TESTS.len());
}

// === the server ===

fn serve() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("listening {}", listener.local_addr().expect("addr"));
        // Serve until the parent closes stdin (or kills this process).
        let stdin = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        });
        let accept = async {
            while let Ok((io, _)) = listener.accept().await {
                let _ = io.set_nodelay(true);
                let mut server = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                ServerSettings::default()
                    .apply_to_server(&mut server)
                    .expect("valid settings");
                let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"ok",
                    ))))
                });
                tokio::spawn(server.serve_connection(TokioIo::new(io), svc));
            }
        };
        tokio::select! {
            _ = stdin => {}
            () = accept => {}
        }
    });
}

/// The server subprocess; killed (by its PID) and reaped when dropped, also on panic.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn spawn() -> Self {
        let exe = std::env::current_exe().expect("current exe");
        let mut child = Command::new(exe)
            .env(SERVER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the server");
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            panic!("no stdout");
        };
        // Build the guard before reading so that a failure below still kills the child.
        let mut guard = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the server's address");
        guard.addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected server output {line:?}"));
        guard
    }

    /// A `kB` field of `/proc/<pid>/status`, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {path}"))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === raw frames ===

fn frame(buf: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("small frame");
    buf.extend_from_slice(&len.to_be_bytes()[1..]);
    buf.push(kind);
    buf.push(flags);
    buf.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    buf.extend_from_slice(payload);
}

/// `GET http://localhost/` in HPACK, using only the static table (no encoder state).
fn request_block() -> Vec<u8> {
    // :method GET, :scheme http, :path /, then :authority as a literal without indexing.
    let mut block = vec![0x82, 0x86, 0x84, 0x01, 9];
    block.extend_from_slice(b"localhost");
    block
}

/// Connects and sends the client preface and an empty SETTINGS frame.
async fn raw_connect(addr: SocketAddr) -> TcpStream {
    let mut io = TcpStream::connect(addr).await.expect("connect");
    io.set_nodelay(true).expect("nodelay");
    let mut buf = PREFACE.to_vec();
    frame(&mut buf, SETTINGS, 0, 0, &[]);
    io.write_all(&buf).await.expect("preface");
    io
}

/// Reads frames until a GOAWAY (its error code) or the end of the connection (`None`).
async fn read_goaway(mut rd: tokio::net::tcp::OwnedReadHalf) -> Option<u32> {
    let mut head = [0u8; 9];
    // Each iteration reads one frame; the server closes the connection after a GOAWAY, and
    // the caller bounds the whole read with a timeout.
    loop {
        rd.read_exact(&mut head).await.ok()?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0; len];
        rd.read_exact(&mut payload).await.ok()?;
        if head[3] == GOAWAY && payload.len() >= 8 {
            return Some(u32::from_be_bytes([
                payload[4], payload[5], payload[6], payload[7],
            ]));
        }
    }
}

/// Writes `batches` of frames until the server closes the connection; how many were sent.
async fn write_batches(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    batches: impl Iterator<Item = Vec<u8>>,
) -> usize {
    let mut sent = 0;
    for batch in batches {
        if wr.write_all(&batch).await.is_err() {
            break;
        }
        sent += 1;
        tokio::task::yield_now().await;
    }
    sent
}

// === tests ===

async fn warm_up(addr: SocketAddr) {
    let mut client = linkerd_http_test_util::HttpClient::http2(addr)
        .await
        .expect("connect");
    let rsp = client.get("/").await.expect("the server answers");
    assert_eq!(rsp.status(), 200);
}

async fn rapid_reset_flood(addr: SocketAddr) {
    const STREAMS: u32 = 10_000;
    const PER_BATCH: u32 = 100;
    let io = raw_connect(addr).await;
    let (rd, wr) = io.into_split();
    let block = request_block();
    let batches = (0..STREAMS / PER_BATCH).map(move |b| {
        let mut buf = Vec::new();
        for i in 0..PER_BATCH {
            let id = 2 * (b * PER_BATCH + i) + 1;
            frame(&mut buf, HEADERS, END_HEADERS, id, &block);
            frame(&mut buf, RST_STREAM, 0, id, &8u32.to_be_bytes()); // CANCEL
        }
        buf
    });
    // Meanwhile, a well-behaved connection.
    let good = async {
        let mut client = linkerd_http_test_util::HttpClient::http2(addr)
            .await
            .expect("connect the good client");
        for i in 0..100 {
            let req = Request::get("/")
                .body(Empty::<Bytes>::new())
                .expect("request");
            let rsp = client
                .send(req)
                .await
                .unwrap_or_else(|e| panic!("good request {i} failed during the flood: {e}"));
            assert_eq!(rsp.status(), 200);
            rsp.into_body().collect().await.expect("body");
        }
    };
    let flood = async {
        let reader = tokio::spawn(read_goaway(rd));
        let sent = write_batches(wr, batches).await;
        (reader.await.expect("reader"), sent)
    };
    let ((goaway, sent), ()) =
        tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(flood, good) })
            .await
            .expect("the flood and the good connection finish within 60s");
    println!(
        "rapid reset: GOAWAY {goaway:?} after at most {} of {STREAMS} streams",
        sent * PER_BATCH as usize
    );
    assert_eq!(
        goaway,
        Some(u32::from(h2::Reason::ENHANCE_YOUR_CALM)),
        "a rapid-reset flood must be cut off with GOAWAY(ENHANCE_YOUR_CALM)"
    );
}

async fn continuation_flood(addr: SocketAddr) {
    const FRAMES: u32 = 10_000;
    const PER_BATCH: u32 = 100;
    let io = raw_connect(addr).await;
    let (rd, wr) = io.into_split();
    // A header field `x-flood: aaaa` (literal, new name, no indexing), repeated: valid HPACK
    // that never ends the header block.
    let mut field = vec![0x00, 7];
    field.extend_from_slice(b"x-flood");
    field.push(4);
    field.extend_from_slice(b"aaaa");
    let chunk: Vec<u8> = field
        .iter()
        .copied()
        .cycle()
        .take(field.len() * 8)
        .collect();
    let first = {
        let mut buf = Vec::new();
        frame(&mut buf, HEADERS, 0, 1, &request_block());
        buf
    };
    let rest = (0..FRAMES / PER_BATCH).map(move |_| {
        let mut buf = Vec::new();
        for _ in 0..PER_BATCH {
            frame(&mut buf, CONTINUATION, 0, 1, &chunk);
        }
        buf
    });
    let reader = tokio::spawn(read_goaway(rd));
    let sent = write_batches(wr, std::iter::once(first).chain(rest));
    let (goaway, sent) = tokio::time::timeout(Duration::from_secs(60), async {
        let sent = sent.await;
        (reader.await.expect("reader"), sent)
    })
    .await
    .expect("the flood finishes within 60s");
    println!(
        "continuation flood: GOAWAY {goaway:?} after at most {} of {FRAMES} frames",
        sent.saturating_sub(1) * PER_BATCH as usize
    );
    assert_eq!(
        goaway,
        Some(u32::from(h2::Reason::ENHANCE_YOUR_CALM)),
        "a CONTINUATION flood must be cut off with GOAWAY(ENHANCE_YOUR_CALM)"
    );
}
