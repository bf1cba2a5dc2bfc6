//! The load-test backend for `benches/load.sh`: a small, fast hyper server answering every
//! request with a fixed small body. Serves HTTP/1.1 and h2c (prior knowledge) on one port,
//! TCP_NODELAY on, single-threaded (the harness pins it to one core).
//!
//! ```text
//! cargo run --release --example bench_backend -- --listen 127.0.0.1:18080
//! ```
//!
//! A request whose path starts with `/delay/<ms>` (or which carries `x-delay-ms: <ms>`) is
//! answered after that many milliseconds (capped at 60 s): the memory benchmark uses it to keep
//! streams in flight. Once bound it prints `listening on <addr>` to stderr.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use std::{convert::Infallible, net::SocketAddr, time::Duration};

/// The answer to every request.
static BODY: &[u8] = b"hello from the bench backend\n";

/// The longest delay a request may ask for.
const MAX_DELAY: Duration = Duration::from_secs(60);

fn parse_args() -> Result<SocketAddr, String> {
    let mut listen = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--listen" => listen = it.next(),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    listen
        .ok_or_else(|| "--listen is required".to_owned())?
        .parse()
        .map_err(|e| format!("--listen: {e}"))
}

/// The delay a request asks for, from `/delay/<ms>` or `x-delay-ms`.
fn requested_delay(req: &Request<Incoming>) -> Option<Duration> {
    let from_path = req
        .uri()
        .path()
        .strip_prefix("/delay/")
        .map(|rest| rest.split('/').next().unwrap_or(rest));
    let from_header = req
        .headers()
        .get("x-delay-ms")
        .and_then(|v| v.to_str().ok());
    let ms: u64 = from_path.or(from_header)?.parse().ok()?;
    Some(Duration::from_millis(ms).min(MAX_DELAY))
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(delay) = requested_delay(&req) {
        tokio::time::sleep(delay).await;
    }
    let mut rsp = Response::new(Full::new(Bytes::from_static(BODY)));
    rsp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(rsp)
}

fn main() {
    let listen = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\nusage: bench_backend --listen ADDR");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(serve(listen));
}

async fn serve(listen: SocketAddr) {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot bind {listen}: {e}");
            std::process::exit(2);
        }
    };
    match listener.local_addr() {
        Ok(local) => eprintln!("listening on {local}"),
        Err(e) => eprintln!("listening (address unknown: {e})"),
    }
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Enough concurrent streams per connection for the in-flight memory benchmark.
    builder.http2().max_concurrent_streams(10_000);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(answer);
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
