//! Success/failure classification of HTTP and gRPC responses, and the shared error types of
//! linkerd-http.
//!
//! This is the base crate of the workspace. Besides the classifiers it owns the types that
//! travel between the other crates (DESIGN.md section 2):
//!
//! - [`Protocol`] (request extension): HTTP/1, HTTP/2 or gRPC, for choosing how errors are
//!   answered;
//! - a per-request classifier ([`ResponseClassifier`] by default; request extension);
//! - [`FinalClass`] (response extension): the [`Class`] of the response, once its body ended;
//! - [`ProxyError`]: why the proxy answered on its own (status, gRPC code, metric label,
//!   `l5d-proxy-error` value), with [`to_proxy_error`] mapping any error to one and
//!   [`ProxyError::to_response`] answering it in the client's form;
//! - [`Deadline`] (request extension): the absolute deadline of a request across retries;
//! - [`IsTimeout`], [`find_h2_reason`] and [`client_reset_reason`];
//! - header parsers: [`retry_after`], [`grpc_retry_pushback`], [`parse_grpc_timeout`];
//! - [`clock`]: the time every layer reads, read once per synchronous step of a request.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use linkerd_http_classify::{ClassifyLayer, FinalClass, Protocol};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(ClassifyLayer::default())
//!     .service(service_fn(|req: Request<Full<Bytes>>| async move {
//!         assert_eq!(req.extensions().get::<Protocol>(), Some(&Protocol::Http1));
//!         let rsp = Response::builder().status(503).body(Full::new(Bytes::from("busy")))?;
//!         Ok::<_, http::Error>(rsp)
//!     }));
//! let rsp = svc.oneshot(Request::new(Full::default())).await.unwrap();
//! let class = rsp.extensions().get::<FinalClass>().cloned().unwrap();
//! rsp.into_body().collect().await.unwrap();
//! let class = class.get().expect("classified at the end of the body");
//! assert!(!class.is_success(), "5xx is a failure by default");
//! assert_eq!(class.http_status().map(|s| s.as_u16()), Some(503));
//! # }
//! ```
//!
//! # Configuration
//! [`DefaultClassify`] holds an [`HttpClassifier`] (failure statuses, default `500..=599`)
//! and a [`GrpcClassifier`] (failure codes, default `DATA_LOSS`, `DEADLINE_EXCEEDED`,
//! `INTERNAL`, `PERMISSION_DENIED`, `UNAVAILABLE`, `UNKNOWN`). Write your own by implementing
//! [`Classify`], [`ClassifyResponse`] and [`ClassifyEos`].
//!
//! # Extensions
//! Writes [`Protocol`] and `C::ClassifyResponse` on requests, [`FinalClass`] on responses.
//! Reads [`ProxyError`] on responses (a synthetic answer is classified by its reason).
//!
//! # Errors
//! The layer never fails on its own: inner errors pass through unchanged.
//!
//! # Readiness
//! `poll_ready` is forwarded.
//!
//! # Cancellation
//! Dropping the response body before its end records a `CANCEL` class. Layers that drop
//! unfinished work learn what it knew through [`dropped`].

mod body;
mod class;
pub mod clock;
pub mod dropped;
mod error;
mod grpc;
mod layer;
mod parse;
mod response;

pub use body::{ClassifyBody, FinalClass, Record};
pub use class::{
    Class, Classify, ClassifyEos, ClassifyResponse, DefaultClassify, EosClassifier, GrpcClassifier,
    HttpClassifier, PackedClassifier, Protocol, ResponseClassifier, StatusRanges, is_grpc,
};
pub use error::{
    BoxError, Deadline, IsTimeout, ProxyError, ProxyErrorKind, RequestStart, chain,
    client_reset_reason, find_h2_reason, find_proxy_error, is_connect_error, is_timeout,
    reason_name, to_proxy_error,
};
pub use grpc::{GrpcCode, InvalidGrpcCode};
pub use layer::{ClassifyLayer, ClassifyService, ResponseFuture};
pub use parse::{
    InvalidGrpcTimeout, Pushback, encode_grpc_timeout, grpc_retry_pushback, parse_grpc_timeout,
    retry_after,
};
pub use response::{L5D_PROXY_ERROR, grpc_message, grpc_status};

#[cfg(test)]
mod tests;
