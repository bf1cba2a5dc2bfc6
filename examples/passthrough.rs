//! The benchmark floor: a bare hyper server + pooled hyper-util client forwarding every request
//! to one upstream, with no layers. Serves HTTP/1.1 and h2c like the proxy; TCP_NODELAY on.
//!
//! `cargo run --release --example passthrough -- --listen 127.0.0.1:4150 --upstream 127.0.0.1:8080 [--upstream-http2]`

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use std::net::SocketAddr;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;

struct Args {
    listen: SocketAddr,
    upstream: SocketAddr,
    http2: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let mut upstream = None;
    let mut http2 = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--listen" => listen = it.next(),
            "--upstream" => upstream = it.next(),
            "--upstream-http2" => http2 = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let parse = |v: Option<String>, name: &str| -> Result<SocketAddr, String> {
        v.ok_or_else(|| format!("{name} is required"))?
            .parse()
            .map_err(|e| format!("{name}: {e}"))
    };
    Ok(Args {
        listen: parse(listen, "--listen")?,
        upstream: parse(upstream, "--upstream")?,
        http2,
    })
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\nusage: passthrough --listen ADDR --upstream ADDR [--upstream-http2]");
            std::process::exit(2);
        }
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .http2_only(args.http2)
        .build(connector);
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot bind {}: {e}", args.listen);
            std::process::exit(2);
        }
    };
    let local = listener
        .local_addr()
        .expect("bound listener has an address");
    eprintln!("listening on {local}");
    let upstream = args.upstream;
    let http2 = args.http2;
    // SIGINT or SIGTERM ends the process through `exit`, which runs the exit handlers: an
    // instrumented build (`benches/pgo.sh`) writes its profile there. A default signal
    // disposition would end the process without them.
    tokio::spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            std::process::exit(0);
        }
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                forward(client.clone(), upstream, http2, req)
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn forward(
    client: Client<HttpConnector, Body>,
    upstream: SocketAddr,
    http2: bool,
    req: Request<Incoming>,
) -> Result<Response<Body>, BoxError> {
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = Uri::try_from(format!("http://{upstream}{path}"))?;
    parts.version = if http2 {
        http::Version::HTTP_2
    } else {
        http::Version::HTTP_11
    };
    let req = Request::from_parts(parts, body.map_err(BoxError::from).boxed_unsync());
    let rsp = client.request(req).await?;
    Ok(rsp.map(|b| b.map_err(BoxError::from).boxed_unsync()))
}
