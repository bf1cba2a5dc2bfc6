//! `Retry` on the success path (the first attempt answers 200): against the inner service
//! alone, and against a loopback hyper round trip (hyper-util client to a hyper server).
//!
//! Before the criterion runs it prints absolute figures: nanoseconds and allocations per
//! request (allocations counted by `stats_alloc`; for the loopback they include the server's
//! and the client's own work, on both sides of the socket), and the loopback ratio.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use linkerd_http_classify::StatusRanges;
use linkerd_http_retry::{ReplayBody, Retry, RetryPolicy};
use linkerd_http_test_util::{ServerProtocol, TestServer};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::{
    alloc::System,
    convert::Infallible,
    future::{Future, Ready, ready},
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
};
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

type Req = Request<ReplayBody<Empty<Bytes>>>;
type Ok200 = Result<Response<Empty<Bytes>>, Infallible>;

fn inner()
-> impl Service<Req, Response = Response<Empty<Bytes>>, Error = Infallible, Future = Ready<Ok200>>
+ Clone {
    service_fn(|_: Req| ready(Ok(Response::new(Empty::new()))))
}

fn policy() -> RetryPolicy {
    let mut p = RetryPolicy::default();
    p.codes = StatusRanges::empty().with_range(502, 504);
    p.max_retries = 2;
    p
}

fn request<B>(body: B, policy: Option<&RetryPolicy>) -> Request<B> {
    let mut req = Request::new(body);
    if let Some(p) = policy {
        req.extensions_mut().insert(p.clone());
    }
    req
}

/// Polls a future that needs no runtime (in-memory services) to completion.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    // The in-memory services answer at once; bounded anyway.
    for _ in 0..16 {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("an in-memory bench future did not complete");
}

/// Time (ns) and allocations of one call of `run`.
fn once(run: impl FnOnce()) -> (u128, usize) {
    let region = Region::new(GLOBAL);
    let start = Instant::now();
    run();
    let elapsed = start.elapsed();
    let stats = region.change();
    (elapsed.as_nanos(), stats.allocations + stats.reallocations)
}

/// Time and allocations per call of `run`, over `n` calls.
fn measure(n: u32, mut run: impl FnMut()) -> (f64, f64) {
    let region = Region::new(GLOBAL);
    let start = Instant::now();
    for _ in 0..n {
        run();
    }
    let elapsed = start.elapsed();
    let stats = region.change();
    (
        elapsed.as_nanos() as f64 / f64::from(n),
        (stats.allocations + stats.reallocations) as f64 / f64::from(n),
    )
}

fn report_in_memory(p: &RetryPolicy) {
    let (mut svc_a, mut svc_b) = (inner(), inner());
    let (mut retry_a, mut retry_b) = (Retry::new(inner()), Retry::new(inner()));
    const N: u32 = 100_000;
    let cases: [(&str, &mut dyn FnMut()); 4] = [
        ("inner alone", &mut || {
            let req = request(ReplayBody::passthrough(Empty::new()), None);
            black_box(now(svc_a.call(req)).ok());
        }),
        ("inner alone, request with a policy", &mut || {
            let req = request(ReplayBody::passthrough(Empty::new()), Some(p));
            black_box(now(svc_b.call(req)).ok());
        }),
        ("Retry, no policy (pass-through)", &mut || {
            let req = request(Empty::new(), None);
            black_box(now(retry_a.call(req)).ok());
        }),
        ("Retry, policy, first attempt 200", &mut || {
            let req = request(Empty::new(), Some(p));
            black_box(now(retry_b.call(req)).ok());
        }),
    ];
    eprintln!("in memory, per request:");
    for (name, run) in cases {
        let (ns, allocs) = measure(N, run);
        eprintln!("  {name:<38} {ns:>8.0} ns {allocs:>6.1} allocations");
    }
}

type HttpClient = Client<HttpConnector, ReplayBody<Empty<Bytes>>>;

async fn round_trip(client: &HttpClient, uri: &http::Uri) {
    let req = Request::get(uri.clone())
        .body(ReplayBody::passthrough(Empty::new()))
        .expect("valid request");
    let rsp = client.request(req).await.expect("loopback response");
    drain(rsp).await;
}

async fn retry_round_trip(retry: &Retry<HttpClient>, uri: &http::Uri, p: &RetryPolicy) {
    let mut req = Request::get(uri.clone())
        .body(Empty::new())
        .expect("valid request");
    req.extensions_mut().insert(p.clone());
    let rsp = retry.clone().oneshot(req).await.expect("loopback response");
    let (parts, body) = rsp.into_parts();
    drop(parts);
    body.collect().await.expect("loopback body");
}

async fn drain(rsp: Response<Incoming>) {
    rsp.into_body().collect().await.expect("loopback body");
}

fn bench(c: &mut Criterion) {
    let p = policy();
    report_in_memory(&p);

    let mut svc = inner();
    let mut retry = Retry::new(inner());
    let mut group = c.benchmark_group("retry_in_memory");
    group.bench_function("inner_alone", |b| {
        b.iter(|| {
            let req = request(ReplayBody::passthrough(Empty::new()), Some(&p));
            now(svc.call(req)).ok()
        });
    });
    group.bench_function("retry_no_policy", |b| {
        b.iter(|| now(retry.call(request(Empty::new(), None))).ok());
    });
    group.bench_function("retry_policy_success", |b| {
        b.iter(|| now(retry.call(request(Empty::new(), Some(&p)))).ok());
    });
    group.finish();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (server, client, uri) = rt.block_on(async {
        let server = TestServer::serve(ServerProtocol::Http1, |_req| async {
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        })
        .await
        .expect("bind");
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        let uri: http::Uri = format!("http://{}/", server.addr()).parse().expect("uri");
        (server, client, uri)
    });
    let retry = Retry::new(client.clone());

    // Alternate one bare and one retried request, so drift on a shared machine (other
    // builds, frequency changes) hits both sides alike.
    const N: u32 = 5_000;
    let (mut bare, mut with_retry) = ((0u128, 0usize), (0u128, 0usize));
    for _ in 0..N {
        let (ns, allocs) = once(|| rt.block_on(round_trip(&client, &uri)));
        bare = (bare.0 + ns, bare.1 + allocs);
        let (ns, allocs) = once(|| rt.block_on(retry_round_trip(&retry, &uri, &p)));
        with_retry = (with_retry.0 + ns, with_retry.1 + allocs);
    }
    let per =
        |(ns, allocs): (u128, usize)| (ns as f64 / f64::from(N), allocs as f64 / f64::from(N));
    let (bare, with_retry) = (per(bare), per(with_retry));
    eprintln!("loopback HTTP/1.1 round trip (client + server, one runtime), per request:");
    eprintln!(
        "  hyper-util client alone      {:>8.0} ns {:>6.1} allocations",
        bare.0, bare.1
    );
    eprintln!(
        "  Retry(client), policy, 200   {:>8.0} ns {:>6.1} allocations",
        with_retry.0, with_retry.1
    );
    eprintln!(
        "  Retry overhead: {:+.0} ns ({:+.2}% of the round trip), {:+.1} allocations",
        with_retry.0 - bare.0,
        (with_retry.0 / bare.0 - 1.0) * 100.0,
        with_retry.1 - bare.1
    );

    let mut group = c.benchmark_group("retry_loopback_http1");
    group.bench_function("client_alone", |b| {
        b.iter(|| rt.block_on(round_trip(&client, &uri)));
    });
    group.bench_function("retry_policy_success", |b| {
        b.iter(|| rt.block_on(retry_round_trip(&retry, &uri, &p)));
    });
    group.finish();
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
