//! Metrics + access log on the success path, against the bare service in the same run and a
//! loopback hyper round trip; prints ns and allocations per request and the ratios.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd_http_access_log::{AccessLogLayer, AccessLogWriter, Format, Output, WriterConfig};
use linkerd_http_classify::ClassifyLayer;
use linkerd_http_metrics::Metrics;
use prometheus_client::registry::Registry;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::{alloc::System, convert::Infallible, hint::black_box};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const N: u32 = 20_000;

async fn backend<B>(_req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"hello world"))))
}

async fn drive<S, B>(svc: &mut S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let req = Request::get("/bench")
        .header("user-agent", "bench")
        .body(Full::new(Bytes::from_static(b"ping")))
        .expect("request");
    let rsp = svc
        .ready()
        .await
        .expect("ready")
        .call(req)
        .await
        .expect("response");
    black_box(rsp.into_body().collect().await.expect("body"));
}

async fn round_trip(client: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>) {
    let req = Request::get("/bench")
        .header("user-agent", "bench")
        .body(Full::new(Bytes::from_static(b"ping")))
        .expect("request");
    client.ready().await.expect("ready");
    let rsp = client.send_request(req).await.expect("response");
    black_box(rsp.into_body().collect().await.expect("body"));
}

/// Runs `n` requests, returning (ns per request, allocations per request).
fn measure<S, B>(rt: &tokio::runtime::Runtime, svc: &mut S, n: u32) -> (f64, f64)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let region = Region::new(GLOBAL);
    let start = tokio::time::Instant::now();
    rt.block_on(async {
        for _ in 0..n {
            drive(svc).await;
        }
    });
    let ns = start.elapsed().as_nanos() as f64 / f64::from(n);
    let allocs = region.change().allocations as f64 / f64::from(n);
    (ns, allocs)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let mut config = WriterConfig::new(Format::Json);
    config.dropped = metrics.access_log_dropped.cell().clone();
    let writer =
        AccessLogWriter::spawn(Output::Writer(Box::new(std::io::sink())), config).expect("spawn");

    let mut bare = service_fn(backend);
    let mut stacked = ServiceBuilder::new()
        .layer(AccessLogLayer::new(writer.clone()))
        .layer(ClassifyLayer::default())
        .layer(metrics.http.route_layer("bench"))
        .layer(metrics.http.backend_layer("bench", "backend"))
        .service(service_fn(backend));

    // A loopback hyper server and an HTTP/1.1 client connection, as the round-trip baseline.
    let (addr, mut client) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let Ok((io, _)) = listener.accept().await else {
                return;
            };
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(io), hyper::service::service_fn(backend))
                .await;
        });
        let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        let (send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("handshake");
        tokio::spawn(conn);
        (addr, send)
    });
    let _ = addr;

    let mut group = c.benchmark_group("success_path");
    group.bench_function("bare", |b| b.iter(|| rt.block_on(drive(&mut bare))));
    group.bench_function("metrics+access_log", |b| {
        b.iter(|| rt.block_on(drive(&mut stacked)));
    });
    group.bench_function("loopback_round_trip", |b| {
        b.iter(|| rt.block_on(round_trip(&mut client)));
    });
    group.finish();

    let (bare_ns, bare_allocs) = measure(&rt, &mut bare, N);
    let (stack_ns, stack_allocs) = measure(&rt, &mut stacked, N);
    let start = tokio::time::Instant::now();
    rt.block_on(async {
        for _ in 0..N / 4 {
            round_trip(&mut client).await;
        }
    });
    let rt_ns = start.elapsed().as_nanos() as f64 / f64::from(N / 4);
    let overhead = stack_ns - bare_ns;
    println!(
        "per request: bare {bare_ns:.0} ns / {bare_allocs:.1} allocs; metrics+access_log \
         {stack_ns:.0} ns / {stack_allocs:.1} allocs; overhead {overhead:.0} ns, {:.1} allocs; \
         loopback round trip {rt_ns:.0} ns; overhead / round trip = {:.1}% (target < 10%); \
         access-log lines dropped {}",
        stack_allocs - bare_allocs,
        100.0 * overhead / rt_ns,
        writer.dropped(),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
