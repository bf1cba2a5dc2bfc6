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
const ROUNDS: usize = 7;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn backend<B>(_req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"hello world"))))
}

/// hyper hands out URIs and header values that share its read buffer, so cloning them (as
/// the access log does) is a reference-count increment; static values model that, where
/// values parsed from `&str` would be copied on their first clone.
fn request() -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(Bytes::from_static(b"ping")));
    *req.uri_mut() = http::Uri::from_static("/bench");
    req.headers_mut().insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static("bench"),
    );
    req
}

async fn drive<S, B>(svc: &mut S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let req = request();
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
    let req = request();
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

    // `PROFILE_ONLY=1`: run the stacked service only, a million times, for `perf record`.
    if std::env::var_os("PROFILE_ONLY").is_some() {
        measure(&rt, &mut stacked, 1_000_000);
        return;
    }
    let mut group = c.benchmark_group("success_path");
    group.bench_function("bare", |b| b.iter(|| rt.block_on(drive(&mut bare))));
    group.bench_function("metrics+access_log", |b| {
        b.iter(|| rt.block_on(drive(&mut stacked)));
    });
    group.bench_function("loopback_round_trip", |b| {
        b.iter(|| rt.block_on(round_trip(&mut client)));
    });
    group.finish();

    // Interleaved rounds, so drift on a noisy machine hits every figure alike; medians.
    let mut bare_r = Vec::new();
    let mut stack_r = Vec::new();
    let mut rt_r = Vec::new();
    let mut ratio_r = Vec::new();
    let (mut bare_allocs, mut stack_allocs) = (0.0, 0.0);
    for _ in 0..ROUNDS {
        let (b_ns, b_allocs) = measure(&rt, &mut bare, N);
        let (s_ns, s_allocs) = measure(&rt, &mut stacked, N);
        let start = tokio::time::Instant::now();
        rt.block_on(async {
            for _ in 0..N / 4 {
                round_trip(&mut client).await;
            }
        });
        let r_ns = start.elapsed().as_nanos() as f64 / f64::from(N / 4);
        ratio_r.push(100.0 * (s_ns - b_ns) / r_ns);
        bare_r.push(b_ns);
        stack_r.push(s_ns);
        rt_r.push(r_ns);
        (bare_allocs, stack_allocs) = (b_allocs, s_allocs);
    }
    let (bare_ns, stack_ns, rt_ns, ratio) = (
        median(bare_r),
        median(stack_r),
        median(rt_r),
        median(ratio_r),
    );

    // Per-layer breakdown, each layer alone over the bare service.
    let mut only_log = ServiceBuilder::new()
        .layer(AccessLogLayer::new(writer.clone()))
        .service(service_fn(backend));
    let mut only_classify = ServiceBuilder::new()
        .layer(ClassifyLayer::default())
        .service(service_fn(backend));
    let mut only_route = ServiceBuilder::new()
        .layer(metrics.http.route_layer("bench"))
        .service(service_fn(backend));
    let mut only_backend = ServiceBuilder::new()
        .layer(metrics.http.backend_layer("bench", "backend"))
        .service(service_fn(backend));
    for (name, (ns, allocs)) in [
        ("access_log", measure(&rt, &mut only_log, N)),
        ("classify", measure(&rt, &mut only_classify, N)),
        ("route_metrics", measure(&rt, &mut only_route, N)),
        ("backend_metrics", measure(&rt, &mut only_backend, N)),
    ] {
        println!(
            "layer {name}: +{:.0} ns, +{:.1} allocs per request",
            ns - bare_ns,
            allocs - bare_allocs
        );
    }
    let overhead = stack_ns - bare_ns;
    println!(
        "per request: bare {bare_ns:.0} ns / {bare_allocs:.1} allocs; metrics+access_log \
         {stack_ns:.0} ns / {stack_allocs:.1} allocs; overhead {overhead:.0} ns, {:.1} allocs; \
         loopback round trip {rt_ns:.0} ns; overhead / round trip = {ratio:.1}% (median of \
         {ROUNDS} interleaved rounds; target < 10%); access-log lines dropped {}",
        stack_allocs - bare_allocs,
        writer.dropped(),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
