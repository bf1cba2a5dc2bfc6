//! A tonic client and a tonic server (messages written by hand with prost derives) through the
//! proxy: the server answers `UNAVAILABLE` then `OK`; the proxy's gRPC route retries on
//! `unavailable`, so the client sees one successful call, and the route metrics count the retry.

mod support;

#[path = "../examples/support/greeter.rs"]
mod greeter;

use bytes::Bytes;
use greeter::{HelloReply, HelloRequest, ProstCodec, SAY_HELLO};
use http::{Uri, uri::PathAndQuery};
use http_body_util::{BodyExt, combinators::UnsyncBoxBody};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use support::Proxy;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_call_is_retried_by_the_grpc_route() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let server = tokio::spawn(greeter::serve(listener, calls.clone()));

    let proxy = Proxy::start(
        &format!(
            "backends:
  - name: greeter
    protocol: http2
    endpoints: [{backend}]
grpcRoutes:
  - name: greeter
    rules:
      - matches: [{{ method: {{ type: Exact, service: greeter.Greeter, method: SayHello }} }}]
        backendRefs: [{{ name: greeter }}]
        retry: {{ codes: [unavailable], attempts: 2, backoff: 10ms }}
"
        ),
        &[],
    );

    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<UnsyncBoxBody<Bytes, BoxError>>();
    let client = tower::ServiceBuilder::new()
        .map_request(|req: http::Request<tonic::body::Body>| {
            req.map(|b| b.map_err(BoxError::from).boxed_unsync())
        })
        .service(client);
    let origin: Uri = format!("http://{}", proxy.addr).parse().unwrap();
    let mut grpc = tonic::client::Grpc::with_origin(client, origin);
    grpc.ready().await.expect("client ready");
    let reply = grpc
        .unary(
            tonic::Request::new(HelloRequest {
                name: "proxy".into(),
            }),
            PathAndQuery::from_static(SAY_HELLO),
            ProstCodec::<HelloRequest, HelloReply>::default(),
        )
        .await
        .expect("the proxy retried UNAVAILABLE and the second call succeeded");
    assert_eq!(reply.get_ref().message, "hello, proxy (call 2)");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the server saw the first attempt and one retry"
    );

    let route = [("route_name", "greeter")];
    let scrape = proxy
        .scrape_until(|s| s.sum("outbound_grpc_route_retry_requests_total", &route) == 1.0)
        .await;
    assert_eq!(
        scrape.sum("outbound_grpc_route_retry_requests_total", &route),
        1.0,
        "one retry counted on the gRPC route"
    );
    assert_eq!(
        scrape.sum(
            "outbound_grpc_route_request_statuses_total",
            &[("route_name", "greeter"), ("grpc_status", "OK")]
        ),
        1.0,
        "the request ended OK"
    );
    server.abort();
}
