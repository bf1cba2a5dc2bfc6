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

use bytes::{Buf, BufMut};
use http::{Request, Response, Uri, uri::PathAndQuery};
use http_body_util::{BodyExt, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use linkerd_http::{
    classify::{BoxError, GrpcCode},
    metrics::Metrics,
    prom::{Format, Scrape, prometheus_client::registry::Registry},
    retry::{RetryLayer, RetryOutcome, RetryPolicy},
    stream_timeouts::{StreamTimeouts, StreamTimeoutsLayer},
};
use std::{
    convert::Infallible,
    marker::PhantomData,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::net::TcpListener;
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};
use tower::ServiceBuilder;

/// `greeter.Greeter/SayHello` request.
#[derive(Clone, PartialEq, prost::Message)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
}

/// `greeter.Greeter/SayHello` reply.
#[derive(Clone, PartialEq, prost::Message)]
struct HelloReply {
    #[prost(string, tag = "1")]
    message: String,
}

const SAY_HELLO: &str = "/greeter.Greeter/SayHello";

/// Encodes `E` and decodes `D` with prost.
#[derive(Debug)]
struct ProstCodec<E, D>(PhantomData<fn(E) -> D>);

impl<E, D> Default for ProstCodec<E, D> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<E, D> Codec for ProstCodec<E, D>
where
    E: prost::Message + Send + 'static,
    D: prost::Message + Default + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = ProstCodec<E, D>;
    type Decoder = ProstCodec<E, D>;

    fn encoder(&mut self) -> Self::Encoder {
        Self::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        Self::default()
    }
}

impl<E: prost::Message, D> Encoder for ProstCodec<E, D> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        let buf: &mut dyn BufMut = dst;
        item.encode(&mut &mut *buf)
            .map_err(|e| Status::internal(format!("encode: {e}")))
    }
}

impl<E, D: prost::Message + Default> Decoder for ProstCodec<E, D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        let len = src.remaining();
        D::decode(src.copy_to_bytes(len))
            .map(Some)
            .map_err(|e| Status::internal(format!("decode: {e}")))
    }
}

/// A Greeter that is `UNAVAILABLE` on every odd call.
async fn serve(listener: TcpListener, calls: Arc<AtomicUsize>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let calls = calls.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let calls = calls.clone();
                async move {
                    let greeter = tower::service_fn(move |req: tonic::Request<HelloRequest>| {
                        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                        async move {
                            if n % 2 == 1 {
                                return Err(Status::unavailable(format!("call {n}: warming up")));
                            }
                            let name = req.into_inner().name;
                            Ok(tonic::Response::new(HelloReply {
                                message: format!("hello, {name} (call {n})"),
                            }))
                        }
                    });
                    let rsp = if req.uri().path() == SAY_HELLO {
                        let mut grpc =
                            tonic::server::Grpc::new(
                                ProstCodec::<HelloReply, HelloRequest>::default(),
                            );
                        grpc.unary(greeter, req).await
                    } else {
                        Status::unimplemented("no such method").into_http()
                    };
                    Ok::<_, Infallible>(rsp)
                }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

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
