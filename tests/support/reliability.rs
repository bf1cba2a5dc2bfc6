//! Helpers for the reliability and soak tests: process resource watching (`/proc`), scripted
//! raw backends (HTTP/1 over bare TCP, HTTP/2 over the `h2` crate), raw client writes, raw
//! HTTP/2 frames, and a background "good client" that must keep succeeding.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Notify, watch},
    task::{JoinHandle, JoinSet},
};

/// The bound on RSS growth (issue 12).
pub const RSS_GROWTH_LIMIT_KIB: u64 = 64 * 1024;
/// How many file descriptors above the baseline are tolerated afterwards.
pub const FD_SLACK: usize = 2;

/// A proxy config with one backend `b` (`protocol`, `endpoints`) routed for every path, an
/// access log to /dev/null, `server` settings as given (YAML flow mapping body, may be empty)
/// and the extra rule keys in `rule` (YAML flow mapping entries, may be empty).
pub fn config(protocol: &str, endpoints: &[SocketAddr], server: &str, rule: &str) -> String {
    let eps = endpoints
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let rule = if rule.is_empty() {
        String::new()
    } else {
        format!(", {rule}")
    };
    format!(
        "accessLog: {{ format: json, output: /dev/null }}\n\
         server: {{ {server} }}\n\
         backends:\n  - {{ name: b, protocol: {protocol}, endpoints: [{eps}], failFast: 10s }}\n\
         routes:\n  - name: r\n    rules:\n      - {{ backendRefs: [{{ name: b }}]{rule} }}\n"
    )
}

// === /proc ===

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).expect("read /proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {path}"))
}

/// How many of `pid`'s TCP sockets are connected to port `peer_port` (on any address).
pub fn connections_to(pid: u32, peer_port: u16) -> usize {
    let suffix = format!(" -> {peer_port} ");
    describe_fds(pid)
        .iter()
        .filter(|d| d.contains(&suffix))
        .count()
}

/// The number of open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/<pid>/fd")
        .count()
}

/// A process's memory and file descriptors at a baseline, to compare with afterwards.
#[derive(Debug)]
pub struct Resources {
    pid: u32,
    rss_kib: u64,
    fds: usize,
    /// Connections to this backend port are pool state, not counted in `fds`, but bounded
    /// by the second number.
    pool: Option<(u16, usize)>,
}

impl Resources {
    /// Records the baseline now (call after a warm-up).
    pub fn baseline(pid: u32) -> Self {
        Self {
            pid,
            rss_kib: status_kib(pid, "VmRSS:"),
            fds: fd_count(pid),
            pool: None,
        }
    }

    /// Records the baseline now, leaving out the proxy's connections to the backend on
    /// `backend_port`: idle pooled connections stay open for the pool's idle timeout, and
    /// how many there are depends on the traffic's peak concurrency, not on a leak. They
    /// are checked against `max_pooled` instead.
    pub fn baseline_with_pool(pid: u32, backend_port: u16, max_pooled: usize) -> Self {
        let pooled = connections_to(pid, backend_port);
        Self {
            pid,
            rss_kib: status_kib(pid, "VmRSS:"),
            fds: fd_count(pid) - pooled,
            pool: Some((backend_port, max_pooled)),
        }
    }

    /// Open file descriptors now, less pooled backend connections when there is a pool.
    fn fds_now(&self) -> usize {
        let pooled = self
            .pool
            .map_or(0, |(port, _)| connections_to(self.pid, port));
        fd_count(self.pid).saturating_sub(pooled)
    }

    /// The baseline's open file descriptors.
    pub fn fds(&self) -> usize {
        self.fds
    }

    /// Peak RSS growth since the baseline, in KiB.
    pub fn peak_growth_kib(&self) -> u64 {
        status_kib(self.pid, "VmHWM:").saturating_sub(self.rss_kib)
    }

    /// Asserts that peak RSS grew by less than 64 MiB over the baseline and that the open file
    /// descriptors come back within [`FD_SLACK`] of it within `settle` (polled every 50 ms).
    pub async fn assert_recovered(&self, what: &str, settle: Duration) {
        let growth = self.peak_growth_kib();
        println!(
            "{what}: peak RSS growth {growth} KiB, fds {} at baseline",
            self.fds
        );
        assert!(
            growth < RSS_GROWTH_LIMIT_KIB,
            "{what}: the proxy's peak RSS grew by {growth} KiB (limit {RSS_GROWTH_LIMIT_KIB})"
        );
        let rounds = settle.as_millis() / 50 + 1;
        let mut now = self.fds_now();
        for _ in 0..rounds {
            if now <= self.fds + FD_SLACK {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            now = self.fds_now();
        }
        if let Some((port, max)) = self.pool {
            let pooled = connections_to(self.pid, port);
            assert!(
                pooled <= max,
                "{what}: the proxy holds {pooled} connections to its backend (at most {max} \
                 expected): {:#?}",
                describe_fds(self.pid)
            );
        }
        assert!(
            now <= self.fds + FD_SLACK,
            "{what}: the proxy holds {now} fds, baseline {} (+{FD_SLACK} allowed) after {settle:?}: \
             {:#?}",
            self.fds,
            describe_fds(self.pid)
        );
    }
}

/// Each open fd of `pid`: its link, and for TCP sockets the local and remote ports.
pub fn describe_fds(pid: u32) -> Vec<String> {
    let tcp = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let port = |hex: &str| {
        hex.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
            .unwrap_or(0)
    };
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return vec![];
    };
    dir.filter_map(Result::ok)
        .map(|e| {
            let link = std::fs::read_link(e.path())
                .map(|l| l.display().to_string())
                .unwrap_or_default();
            let inode = link
                .strip_prefix("socket:[")
                .and_then(|l| l.strip_suffix(']'));
            let sock = inode.and_then(|inode| {
                tcp.lines().skip(1).find_map(|line| {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    (f.get(9) == Some(&inode)).then(|| {
                        format!(
                            "tcp {} -> {} state {}",
                            port(f[1]),
                            port(f[2]),
                            f.get(3).copied().unwrap_or("?")
                        )
                    })
                })
            });
            format!("{link} {}", sock.unwrap_or_default())
        })
        .collect()
}

// === a background client that must keep succeeding ===

/// Sends requests (alternating an HTTP/1.1 and an HTTP/2 connection) until stopped and counts
/// successes; every failure is recorded.
#[derive(Debug)]
pub struct GoodTraffic {
    stop: Arc<AtomicBool>,
    task: JoinHandle<(usize, Vec<String>)>,
}

impl GoodTraffic {
    /// Starts sending `GET path` to `addr` (at most 100,000 requests); returns once the first
    /// request succeeded (within 5 s), so that whatever follows overlaps with good traffic.
    pub async fn start(addr: SocketAddr, path: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let succeeded = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (stop.clone(), succeeded.clone());
        let task = tokio::spawn(async move {
            let mut failures = vec![];
            let mut h1 = linkerd_http_test_util::HttpClient::http1(addr).await.ok();
            let mut h2 = linkerd_http_test_util::HttpClient::http2(addr).await.ok();
            for i in 0..100_000usize {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let slot = if i % 2 == 0 { &mut h1 } else { &mut h2 };
                let result = match slot {
                    Some(client) => one_get(client, path).await,
                    None => Err("could not connect".to_owned()),
                };
                match result {
                    Ok(()) => {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        failures.push(format!("request {i}: {e}"));
                        // Reconnect (a failed connection stays failed).
                        *slot = if i % 2 == 0 {
                            linkerd_http_test_util::HttpClient::http1(addr).await.ok()
                        } else {
                            linkerd_http_test_util::HttpClient::http2(addr).await.ok()
                        };
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (count.load(Ordering::SeqCst), failures)
        });
        for _ in 0..500 {
            if succeeded.load(Ordering::SeqCst) > 0 || task.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Self { stop, task }
    }

    /// Stops and asserts that at least one request was sent and that every one succeeded.
    pub async fn finish(self, what: &str) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let (ok, failures) = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the good client stops within 10s")
            .expect("the good client task");
        assert!(
            failures.is_empty(),
            "{what}: other clients' requests failed meanwhile ({ok} succeeded): {failures:#?}"
        );
        assert!(ok > 0, "{what}: the good client sent no request");
        ok
    }
}

async fn one_get(
    client: &mut linkerd_http_test_util::HttpClient,
    path: &str,
) -> Result<(), String> {
    let work = async {
        let req = Request::get(path)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let rsp = client.send(req).await.map_err(|e| e.to_string())?;
        let status = rsp.status();
        let body = rsp.into_body().collect().await.map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("status {status}"));
        }
        drop(body);
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .unwrap_or_else(|_| Err("no answer within 5s".to_owned()))
}

// === raw clients ===

/// Writes `bytes` on a fresh connection to `addr`, then reads until the peer closes or `wait`
/// passes. Returns what was read and whether the peer closed the connection.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> (Vec<u8>, bool) {
    let mut io = TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    // The proxy may answer and close before everything is written: not an error here.
    let _ = io.write_all(bytes).await;
    read_until_close(&mut io, wait).await
}

/// Reads from `io` until EOF (or a read error: the peer reset) or `wait` passes.
pub async fn read_until_close(io: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let mut out = vec![];
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + wait;
    // Each iteration reads at least one byte or ends; the deadline bounds the rest.
    loop {
        match tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// The status code of the first HTTP/1 response in `bytes`, if it starts with one.
pub fn status_of(bytes: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(bytes.get(..12)?).ok()?;
    let rest = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))?;
    rest.get(..3)?.parse().ok()
}

/// How many HTTP/1 status lines `bytes` holds (responses on one connection).
pub fn response_count(bytes: &[u8]) -> usize {
    let text = String::from_utf8_lossy(bytes);
    text.matches("HTTP/1.1 ").count() + text.matches("HTTP/1.0 ").count()
}

// === raw HTTP/2 frames ===

/// The HTTP/2 client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frame types.
pub const HEADERS: u8 = 0x1;
/// Frame type DATA.
pub const DATA: u8 = 0x0;
/// Frame type PING.
pub const PING: u8 = 0x6;
/// Frame type RST_STREAM.
pub const RST_STREAM: u8 = 0x3;
/// Frame type SETTINGS.
pub const SETTINGS: u8 = 0x4;
/// Frame type GOAWAY.
pub const GOAWAY: u8 = 0x7;
/// Frame type CONTINUATION.
pub const CONTINUATION: u8 = 0x9;
/// Flag END_STREAM.
pub const END_STREAM: u8 = 0x1;
/// Flag END_HEADERS.
pub const END_HEADERS: u8 = 0x4;

/// Appends one frame to `buf`.
pub fn frame(buf: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("small frame");
    buf.extend_from_slice(&len.to_be_bytes()[1..]);
    buf.push(kind);
    buf.push(flags);
    buf.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    buf.extend_from_slice(payload);
}

/// An HPACK block for `GET http://localhost/` using only the static table.
pub fn get_block() -> Vec<u8> {
    // :method GET (2), :scheme http (6), :path / (4), :authority literal without indexing.
    let mut block = vec![0x82, 0x86, 0x84, 0x01, 9];
    block.extend_from_slice(b"localhost");
    block
}

/// Connects, sends the preface and an empty SETTINGS frame.
pub async fn raw_h2_connect(addr: SocketAddr) -> TcpStream {
    let mut io = TcpStream::connect(addr).await.expect("connect");
    io.set_nodelay(true).expect("nodelay");
    let mut buf = PREFACE.to_vec();
    frame(&mut buf, SETTINGS, 0, 0, &[]);
    io.write_all(&buf).await.expect("preface");
    io
}

/// Reads frames until a GOAWAY (returns its error code) or the end of the connection (`None`).
/// The caller bounds it with a timeout.
pub async fn read_goaway(mut rd: tokio::net::tcp::OwnedReadHalf) -> Option<u32> {
    let mut head = [0u8; 9];
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

// === scripted backends ===

/// A bare TCP backend: each accepted connection is handed to a closure (which reads and
/// writes raw bytes). Stops (aborting every connection) when dropped.
#[derive(Debug)]
pub struct RawBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl RawBackend {
    /// Binds 127.0.0.1:0 and serves each connection with `f`.
    pub async fn start<F, Fut>(f: F) -> Self
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((io, _)) = accepted else { continue };
                        count.fetch_add(1, Ordering::SeqCst);
                        conns.spawn(f(io));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far (including the proxy's connectivity probes).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads an HTTP/1 request head (up to the blank line) from `io`; `None` on EOF first.
pub async fn read_head(io: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = vec![];
    let mut byte = [0u8; 1];
    // Bounded by the head size limit below.
    while head.len() < 64 * 1024 {
        match io.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
        if head.ends_with(b"\r\n\r\n") {
            return Some(head);
        }
    }
    None
}

/// What an HTTP/2 backend stream handler gets besides the request.
#[derive(Debug, Clone)]
pub struct StreamCtx {
    /// The connection's number (1 for the first connection that completed a handshake).
    pub conn: usize,
    /// Notify to drop the connection at once (TCP close, no GOAWAY).
    pub close: Arc<Notify>,
}

/// An HTTP/2 backend on the `h2` crate: every stream goes to a handler; connections can be
/// closed abruptly (per connection) or gracefully with GOAWAY (all open ones).
#[derive(Debug)]
pub struct H2Backend {
    addr: SocketAddr,
    goaway: watch::Sender<u64>,
    handshakes: Arc<AtomicUsize>,
    streams: Arc<Mutex<Vec<usize>>>,
    task: JoinHandle<()>,
}

impl H2Backend {
    /// Binds 127.0.0.1:0 and serves each stream with `f`.
    pub async fn start<F, Fut>(f: F) -> Self
    where
        F: Fn(StreamCtx, Request<h2::RecvStream>, h2::server::SendResponse<Bytes>) -> Fut
            + Send
            + Sync
            + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (goaway, goaway_rx) = watch::channel(0u64);
        let handshakes = Arc::new(AtomicUsize::new(0));
        let streams = Arc::new(Mutex::new(vec![]));
        let f = Arc::new(f);
        let (hs, st) = (handshakes.clone(), streams.clone());
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((io, _)) = accepted else { continue };
                        conns.spawn(h2_conn(io, f.clone(), goaway_rx.clone(), hs.clone(), st.clone()));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Self {
            addr,
            goaway,
            handshakes,
            streams,
            task,
        }
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections that completed the HTTP/2 handshake.
    pub fn connections(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// The connection number of every stream received, in order.
    pub fn streams(&self) -> Vec<usize> {
        self.streams.lock().expect("streams lock").clone()
    }

    /// Starts a graceful shutdown (GOAWAY) of every connection open now; the listener keeps
    /// accepting new ones.
    pub fn goaway(&self) {
        self.goaway.send_modify(|g| *g += 1);
    }
}

impl Drop for H2Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn h2_conn<F, Fut>(
    io: TcpStream,
    f: Arc<F>,
    mut goaway: watch::Receiver<u64>,
    handshakes: Arc<AtomicUsize>,
    streams: Arc<Mutex<Vec<usize>>>,
) where
    F: Fn(StreamCtx, Request<h2::RecvStream>, h2::server::SendResponse<Bytes>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    goaway.borrow_and_update();
    // The proxy's connectivity probes connect and close at once: no handshake.
    let Ok(mut conn) = h2::server::handshake(io).await else {
        return;
    };
    let conn_id = handshakes.fetch_add(1, Ordering::SeqCst) + 1;
    let close = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    let mut shutting_down = false;
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((req, respond))) => {
                    streams.lock().expect("streams lock").push(conn_id);
                    let ctx = StreamCtx { conn: conn_id, close: close.clone() };
                    tasks.spawn(f(ctx, req, respond));
                }
                // Closed (after a graceful shutdown, once every stream is done) or failed.
                _ => break,
            },
            () = close.notified() => return,
            changed = goaway.changed(), if !shutting_down => {
                if changed.is_ok() {
                    conn.graceful_shutdown();
                }
                shutting_down = true;
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    // Every stream is done (graceful close) or the connection failed: stop the handlers.
    tasks.abort_all();
}

/// Sends a response with `headers` and then `data` chunks; returns the send stream (open).
pub fn h2_respond(
    respond: &mut h2::server::SendResponse<Bytes>,
    content_length: Option<usize>,
) -> Option<h2::SendStream<Bytes>> {
    let mut rsp = Response::builder().status(200);
    if let Some(n) = content_length {
        rsp = rsp.header("content-length", n);
    }
    respond
        .send_response(rsp.body(()).expect("response"), false)
        .ok()
}
