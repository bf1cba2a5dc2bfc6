//! A tonic client wrapped in the retry, stream-timeout and metrics layers, calling a flaky
//! tonic server that answers `UNAVAILABLE` once, then `OK`.
//!
//! ```text
//! cargo run --example grpc_retry
//! ```
//!
//! No `protoc`: the two messages are plain structs with `prost` derives, and a small codec
//! encodes them (tonic 0.14 moved its prost codec to another crate; a codec is a few lines).
//! The server is tonic's `Grpc::unary` behind a plain hyper HTTP/2 server. The client stack,
//! outermost first: route metrics (`outbound_grpc_route_*{route_name="greeter"}`) -> request
//! lifetime of 5 s (`StreamTimeouts`, which also honours `grpc-timeout`) -> retry on
//! `UNAVAILABLE` (the status arrives in trailers-only headers here; trailers after a body are
//! peeked too) -> a hyper-util HTTP/2 client.
//!
//! It prints the reply and the metrics, and exits non-zero unless the call succeeded after
//! exactly one retry.

use http::{Request, Response, Uri, uri::PathAndQuery};
use http_body_util::{BodyExt, combinators::UnsyncBoxBody};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use linkerd_http::{
    classify::{BoxError, GrpcCode},
    metrics::Metrics,
    prom::{Format, Scrape, prometheus_client::registry::Registry},
    retry::{RetryLayer, RetryOutcome, RetryPolicy},
    stream_timeouts::{StreamTimeouts, StreamTimeoutsLayer},
};
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::net::TcpListener;
use tower::ServiceBuilder;

#[path = "support/greeter.rs"]
mod greeter;

use greeter::{HelloReply, HelloRequest, ProstCodec, SAY_HELLO, serve};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let calls = Arc::new(AtomicUsize::new(0));
    let server = tokio::spawn(serve(listener, calls.clone()));

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);

    let mut policy = RetryPolicy::default();
    policy.grpc_codes = [GrpcCode::UNAVAILABLE].into_iter().collect();
    policy.max_retries = 2;

    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<UnsyncBoxBody<bytes::Bytes, BoxError>>();
    let stack = ServiceBuilder::new()
        .layer(metrics.grpc.route_layer("greeter"))
        .layer(StreamTimeoutsLayer::new(
            StreamTimeouts::new().with_lifetime(Some(Duration::from_secs(5))),
        ))
        .map_request(move |mut req: Request<_>| {
            req.extensions_mut().insert(policy.clone());
            req
        })
        .layer(RetryLayer::new())
        .map_request(|req: Request<_>| req.map(|b| BodyExt::map_err(b, Into::into).boxed_unsync()))
        .map_response(|rsp: Response<_>| rsp.map(BodyExt::boxed_unsync))
        .service(client);

    let origin: Uri = format!("http://{addr}").parse()?;
    let mut grpc = tonic::client::Grpc::with_origin(stack, origin);
    grpc.ready().await?;
    let mut request = tonic::Request::new(HelloRequest {
        name: "linkerd-http".into(),
    });
    request.set_timeout(Duration::from_secs(2));
    let reply = grpc
        .unary(
            request,
            PathAndQuery::from_static(SAY_HELLO),
            ProstCodec::<HelloRequest, HelloReply>::default(),
        )
        .await;
    let attempts = reply
        .as_ref()
        .ok()
        .and_then(|r| r.extensions().get::<RetryOutcome>().copied())
        .map(|o| o.attempts);
    server.abort();

    let text = Format::OpenMetrics.encode(&registry)?;
    let scrape = Scrape::parse(&text)?;
    let route = [("route_name", "greeter")];
    let ok = scrape.sum(
        "outbound_grpc_route_request_statuses_total",
        &[("route_name", "greeter"), ("grpc_status", "OK")],
    );
    let retries = scrape.sum("outbound_grpc_route_retry_requests_total", &route);
    let successes = scrape.sum("outbound_grpc_route_retry_successes_total", &route);

    let reply = reply.map_err(|s| format!("the call failed: {s}"))?;
    println!("reply: {}", reply.get_ref().message);
    println!("server calls: {}", calls.load(Ordering::SeqCst));
    println!("attempts: {}", attempts.unwrap_or(1));
    println!("metrics: requests OK {ok}, retries {retries}, retry successes {successes}");
    if calls.load(Ordering::SeqCst) != 2 || (ok, retries, successes) != (1.0, 1.0, 1.0) {
        return Err("expected UNAVAILABLE, one retry, then OK, all counted".into());
    }
    println!("ok: UNAVAILABLE then OK after one retry");
    Ok(())
}
