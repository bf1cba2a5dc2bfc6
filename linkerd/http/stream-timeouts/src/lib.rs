//! Deadlines for every phase of an HTTP stream: response headers, response end, idle time and
//! the whole stream's lifetime.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use linkerd_http_classify::{Deadline, is_timeout, to_proxy_error};
//! use linkerd_http_stream_timeouts::{
//!     IdleTimeout, RequestBody, StreamTimeouts, StreamTimeoutsLayer,
//! };
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let timeouts = StreamTimeouts::new()
//!     .with_lifetime(Some(Duration::from_secs(10)))
//!     .with_idle(Some(Duration::from_secs(1)));
//! let svc = ServiceBuilder::new()
//!     .layer(StreamTimeoutsLayer::new(timeouts))
//!     .service(service_fn(|req: Request<RequestBody<Full<Bytes>>>| async move {
//!         // The retry layer reads this to start no retry after the deadline.
//!         assert!(req.extensions().get::<Deadline>().is_some());
//!         tokio::time::sleep(Duration::from_secs(5)).await;
//!         Ok::<_, http::Error>(Response::new(Full::new(Bytes::from("hello"))))
//!     }));
//!
//! // Nothing moves for 1s: the stream is idle.
//! let err = svc.clone().oneshot(Request::new(Full::default())).await.unwrap_err();
//! assert!(err.is::<IdleTimeout>());
//! assert!(is_timeout(&*err));
//! assert_eq!(to_proxy_error(&*err).message(), "idle timeout");
//!
//! // A request's own `StreamTimeouts` replaces the layer's.
//! let mut req = Request::new(Full::default());
//! req.extensions_mut()
//!     .insert(StreamTimeouts::new().with_lifetime(Some(Duration::from_secs(30))));
//! let rsp = svc.oneshot(req).await.expect("no idle timeout for this request");
//! assert_eq!(rsp.status(), 200);
//! # }
//! ```
//!
//! # Configuration
//! [`StreamTimeouts`] has four optional timeouts (all `None` by default):
//!
//! | field | runs from | to | error |
//! | --- | --- | --- | --- |
//! | `lifetime` | the call | the end of the response body | [`LifetimeTimeout`] |
//! | `response_headers` | the end of the request body | the response headers | [`ResponseHeadersTimeout`] |
//! | `response_end` | the end of the request body | the end of the response body | [`ResponseTimeout`] |
//! | `idle` | each frame, either direction | the next frame | [`IdleTimeout`] |
//!
//! Placed outside a retry layer, `lifetime` bounds all attempts and `response_headers` counts
//! once; inside it, they count per attempt. On a gRPC request (`content-type:
//! application/grpc*`), a valid `grpc-timeout` shortens `lifetime` (never lengthens it, and
//! applies even when `lifetime` is `None`), and the request's `grpc-timeout` is re-written with
//! the time that remains to the deadline (never longer than the client asked for), so the
//! upstream stops when the proxy does. A malformed `grpc-timeout` is ignored, logged at debug
//! level, and removed (a gRPC server can take it badly, also for the requests that follow it
//! on a shared connection). A request without a `grpc-timeout` gets none added.
//!
//! # Extensions
//! - Reads (and removes) [`StreamTimeouts`] from the request: it replaces the layer's
//!   timeouts for that request.
//! - Writes [`linkerd_http_classify::Deadline`] on the request when a lifetime applies: the
//!   call time plus the lifetime, or an earlier `Deadline` already present. The retry layer
//!   starts no attempt after it, and cuts an attempt still waiting at it; over such an inner
//!   layer, [`StreamTimeoutsLayer::inner_enforces_deadline`] saves this layer's timer until
//!   the response headers (one timer per request instead of two).
//!
//! # Errors
//! Each expiry has its own public error type, boxed ([`BoxError`](linkerd_http_classify::BoxError)):
//! [`LifetimeTimeout`], [`ResponseHeadersTimeout`], [`ResponseTimeout`], [`IdleTimeout`]. Each
//! implements [`IsTimeout`](linkerd_http_classify::IsTimeout), has its own `Display` text, and
//! carries its [`ProxyError`](linkerd_http_classify::ProxyError) as `source()`, whose own source
//! is `h2::Error::from(h2::Reason::CANCEL)`: the error mapping answers 504 /
//! `DEADLINE_EXCEEDED` before headers, and hyper resets an HTTP/2 client's stream with
//! `CANCEL` after them.
//!
//! Before the response headers, the error comes from the response future; after them, from the
//! response body ([`ResponseBody`]). When a timeout expires, the request body
//! ([`RequestBody`]) seen by the inner service fails with the same error on its next poll, so
//! the upstream request stops too. Inner errors are boxed unchanged.
//!
//! # Readiness
//! `poll_ready` is forwarded (errors boxed).
//!
//! # Cancellation
//! Dropping the response future or the response body drops its timers: nothing runs in the
//! background. Timers stop once the response body ends; a request body still streaming after
//! that is not timed.
//!
//! # Allocation
//! A request with no timeout (none configured, no extension, no `grpc-timeout`) passes through
//! without allocating. Otherwise one `Arc` per request holds the state the request body and
//! response share, only when `response_headers`, `response_end` or `idle` is set; timers live
//! inside the future and the body.
//!
//! [`ResponseFuture`] and [`ResponseBody`] hold their timer inline, so they are not `Unpin`
//! (pin them, e.g. with `std::pin::pin!`, to poll them by hand).
//!
//! # Panics
//! With a timeout set, the futures and bodies use tokio's timer: they must be polled inside a
//! tokio runtime with time enabled.

mod body;
mod config;
mod error;
mod service;
mod timer;

pub use body::{RequestBody, ResponseBody};
pub use config::StreamTimeouts;
pub use error::{IdleTimeout, LifetimeTimeout, ResponseHeadersTimeout, ResponseTimeout};
pub use service::{ResponseFuture, StreamTimeoutsLayer, StreamTimeoutsService};

#[cfg(test)]
mod tests;
