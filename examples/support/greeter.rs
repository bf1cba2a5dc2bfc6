//! A `greeter.Greeter/SayHello` gRPC service for examples and tests: messages with `prost`
//! derives (no `protoc`), a small prost codec for tonic, and a server that answers
//! `UNAVAILABLE` on every odd call. Shared by `examples/grpc_retry.rs` and the proxy's tonic
//! test through `#[path]`.

#![allow(dead_code, unreachable_pub)] // Each includer uses a different part.

use bytes::{Buf, BufMut};
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::{
    convert::Infallible,
    marker::PhantomData,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};
use tokio::net::TcpListener;
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};

/// `greeter.Greeter/SayHello` request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    /// Who to greet.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `greeter.Greeter/SayHello` reply.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    /// The greeting.
    #[prost(string, tag = "1")]
    pub message: String,
}

/// The method path.
pub const SAY_HELLO: &str = "/greeter.Greeter/SayHello";

/// Encodes `E` and decodes `D` with prost.
#[derive(Debug)]
pub struct ProstCodec<E, D>(PhantomData<fn(E) -> D>);

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
pub async fn serve(listener: TcpListener, calls: Arc<AtomicUsize>) {
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
