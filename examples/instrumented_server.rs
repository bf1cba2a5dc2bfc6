//! A plain hyper server (no framework) instrumented with the access-log, metrics and
//! stream-timeout layers.
//!
//! ```text
//! cargo run --example instrumented_server                          # self-check, then exit
//! cargo run --example instrumented_server -- --serve 127.0.0.1:8080  # keep serving
//! curl 'http://127.0.0.1:8080/work?ms=20'; curl 'http://127.0.0.1:8080/work?ms=500'
//! curl http://127.0.0.1:8080/metrics
//! ```
//!
//! `GET /work?ms=N` answers after N milliseconds. The stack, outermost first:
//!
//! - access log: one JSON line per request on stdout, when the response body ends;
//! - error mapping: a layer error becomes the response a client should get (here a 504 with
//!   `l5d-proxy-error: response headers timeout`), so the access log sees the real status;
//! - route metrics (`outbound_http_route_*{route_name="work"}`), served at `/metrics`;
//! - stream timeouts: the response headers must come within 200 ms.
//!
//! Without `--serve`, the example sends three quick requests and one slow one to itself,
//! prints the access log and the route's metrics, and exits non-zero unless the slow one got
//! a 504 that the metrics counted with `error="RESPONSE_HEADERS_TIMEOUT"`.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use linkerd_http::{
    access_log::{AccessLogLayer, AccessLogWriter, Format, Output, WriterConfig},
    classify::{BoxError, Protocol, to_proxy_error},
    metrics::Metrics,
    prom::{MetricsService, Scrape, prometheus_client::registry::Registry},
    stream_timeouts::{StreamTimeouts, StreamTimeoutsLayer},
};
use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt, util::BoxCloneService};

type Body = UnsyncBoxBody<Bytes, BoxError>;
type App = BoxCloneService<Request<Incoming>, Response<Body>, BoxError>;

/// `/work?ms=N`: waits N ms (at most 10 s), then answers.
async fn work<B>(req: Request<B>) -> Result<Response<Full<Bytes>>, BoxError> {
    let ms = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("ms=")))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        .min(10_000);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(Response::new(Full::new(Bytes::from(format!(
        "worked {ms} ms\n"
    )))))
}

/// The instrumented `/work` stack.
fn app(metrics: &Metrics, access_log: AccessLogWriter) -> App {
    let timeouts = StreamTimeouts::new().with_response_headers(Some(Duration::from_millis(200)));
    let svc = ServiceBuilder::new()
        .layer(AccessLogLayer::new(access_log))
        // Errors become the answer the client gets; boxing gives both arms one body type.
        .map_result(|result: Result<Response<Body>, BoxError>| {
            Ok::<_, BoxError>(
                result.unwrap_or_else(|e| to_proxy_error(&*e).to_response(Protocol::Http1)),
            )
        })
        .map_response(|rsp: Response<_>| rsp.map(BodyExt::boxed_unsync))
        .layer(metrics.http.route_layer("work"))
        .layer(StreamTimeoutsLayer::new(timeouts))
        .service_fn(work);
    let svc = svc.map_response(|rsp: Response<_>| rsp.map(BodyExt::boxed_unsync));
    BoxCloneService::new(svc)
}

async fn serve(listener: TcpListener, app: App, metrics: MetricsService) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let app = app.clone();
                let metrics = metrics.clone();
                async move {
                    if req.uri().path() == "/metrics" {
                        let rsp = metrics.respond(req.method(), req.headers());
                        return Ok::<_, Infallible>(
                            rsp.map(|b| b.map_err(|never| match never {}).boxed_unsync()),
                        );
                    }
                    // The stack maps its errors to responses; anything else is a bug: 500.
                    Ok(app.oneshot(req).await.unwrap_or_else(|_| {
                        let mut rsp = Response::new(Body::default());
                        *rsp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        rsp
                    }))
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn get(addr: SocketAddr, path: &str) -> Result<(StatusCode, String), BoxError> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(http_body_util::Empty::<Bytes>::new())?;
    let rsp = send.send_request(req).await?;
    let status = rsp.status();
    let body = rsp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let serve_addr = match std::env::args().nth(1).as_deref() {
        Some("--serve") => Some(
            std::env::args()
                .nth(2)
                .ok_or("--serve needs an address")?
                .parse::<SocketAddr>()?,
        ),
        Some(other) => return Err(format!("unknown argument {other:?}").into()),
        None => None,
    };

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let mut log_config = WriterConfig::new(Format::Json);
    log_config.dropped = metrics.access_log_dropped.cell().clone();
    let access_log = AccessLogWriter::spawn(Output::Stdout, log_config)?;
    let listener = TcpListener::bind(serve_addr.unwrap_or(([127, 0, 0, 1], 0).into())).await?;
    let addr = listener.local_addr()?;
    let metrics_service = MetricsService::new(Arc::new(registry));
    let server = tokio::spawn(serve(
        listener,
        app(&metrics, access_log.clone()),
        metrics_service,
    ));
    eprintln!("listening on {addr}");
    if serve_addr.is_some() {
        tokio::signal::ctrl_c().await?;
        server.abort();
        return Ok(());
    }

    let mut statuses = Vec::new();
    for path in ["/work?ms=1", "/work?ms=5", "/work?ms=10", "/work?ms=5000"] {
        let (status, body) = get(addr, path).await?;
        eprintln!("GET {path} -> {status} {}", body.trim_end());
        statuses.push(status.as_u16());
    }
    let (_, text) = get(addr, "/metrics").await?;
    server.abort();
    // The writer flushes on its own thread; wait for it off the runtime's thread.
    let flushed = tokio::task::spawn_blocking(move || access_log.flush_blocking()).await?;

    let scrape = Scrape::parse(&text)?;
    for sample in scrape
        .samples
        .iter()
        .filter(|s| s.name == "outbound_http_route_request_statuses_total")
    {
        eprintln!(
            "metric {} {:?} = {}",
            sample.name, sample.labels, sample.value
        );
    }
    let labels = |status: &'static str, error: &'static str| {
        [
            ("route_name", "work"),
            ("http_status", status),
            ("grpc_status", ""),
            ("error", error),
        ]
    };
    let ok = scrape.get(
        "outbound_http_route_request_statuses_total",
        &labels("200", ""),
    );
    let timed_out = scrape.get(
        "outbound_http_route_request_statuses_total",
        &labels("504", "RESPONSE_HEADERS_TIMEOUT"),
    );
    if statuses != [200, 200, 200, 504] {
        return Err(format!("expected three 200s and a 504, got {statuses:?}").into());
    }
    if (ok, timed_out) != (Some(3.0), Some(1.0)) {
        return Err(format!("metrics disagree: 200s {ok:?}, timeouts {timed_out:?}").into());
    }
    if !flushed {
        return Err("the access log did not flush".into());
    }
    eprintln!("ok: 3 fast requests, 1 cut at 200 ms, all logged and counted");
    Ok(())
}
