//! A layer without timeouts passes requests through without allocating.

use http::{Request, Response};
use http_body::Body;
use http_body_util::Empty;
use linkerd_http_stream_timeouts::{StreamTimeouts, StreamTimeoutsLayer};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::{
    alloc::System,
    convert::Infallible,
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};
use tower::{Layer, Service, service_fn};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

type Bytes = bytes::Bytes;

/// Allocations made by one call of `svc`, polling its future and body to the end.
fn allocations<S, B>(svc: &mut S) -> usize
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let req = Request::new(Empty::<Bytes>::new());
    let region = Region::new(GLOBAL);
    let fut = pin!(svc.call(req));
    let Poll::Ready(rsp) = fut.poll(&mut cx) else {
        panic!("the service is ready at once");
    };
    let body = pin!(rsp.expect("response").into_body());
    assert!(
        matches!(body.poll_frame(&mut cx), Poll::Ready(None)),
        "the empty body ends"
    );
    region.change().allocations
}

type Answer = std::future::Ready<Result<Response<Empty<Bytes>>, Infallible>>;

/// A service answering an empty response at once, for any request body.
fn bare<B>()
-> impl Service<Request<B>, Response = Response<Empty<Bytes>>, Error = Infallible, Future = Answer>
{
    service_fn(|_req: Request<B>| std::future::ready(Ok(Response::new(Empty::new()))))
}

#[test]
fn no_timeouts_no_allocation() {
    let mut plain = bare();
    let mut layered = StreamTimeoutsLayer::new(StreamTimeouts::default()).layer(bare());
    // The smallest of several runs, so that an allocation by another thread (the test
    // harness) cannot make it fail.
    let plain = (0..10).map(|_| allocations(&mut plain)).min();
    let layered = (0..10).map(|_| allocations(&mut layered)).min();
    assert_eq!(
        layered, plain,
        "without timeouts the layer must not allocate (bare service: {plain:?})"
    );

    // The measurement does see the layer's allocations when a timeout is set.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let idle = StreamTimeouts::new().with_idle(Some(std::time::Duration::from_secs(1)));
    let mut timed = StreamTimeoutsLayer::new(idle).layer(bare());
    let timed = (0..10).map(|_| allocations(&mut timed)).min();
    assert!(timed > plain, "an idle timeout allocates its shared state");
}
