//! One access-log record per HTTP request, written when the response body ends, through a
//! bounded writer that never blocks a request.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use linkerd_http_access_log::{AccessLogLayer, AccessLogWriter, Format, Output, WriterConfig};
//! use std::{io::Write, sync::{Arc, Mutex}};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! #[derive(Clone, Default)]
//! struct Lines(Arc<Mutex<Vec<u8>>>);
//! impl Write for Lines {
//!     fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
//!         self.0.lock().unwrap().extend_from_slice(buf);
//!         Ok(buf.len())
//!     }
//!     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let lines = Lines::default();
//! let writer = AccessLogWriter::spawn(
//!     Output::Writer(Box::new(lines.clone())),
//!     WriterConfig::new("%method% %uri% %status% %response_bytes%".parse::<Format>().unwrap()),
//! )
//! .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(AccessLogLayer::new(writer.clone()))
//!     .service(service_fn(|_req: Request<_>| async {
//!         Ok::<_, http::Error>(Response::new(Full::new(Bytes::from_static(b"hello"))))
//!     }));
//! let req = Request::get("/greet").body(Full::<Bytes>::default()).unwrap();
//! let rsp = svc.oneshot(req).await.unwrap();
//! rsp.into_body().collect().await.unwrap();
//! writer.flush_blocking();
//! assert_eq!(String::from_utf8(lines.0.lock().unwrap().clone()).unwrap(), "GET /greet 200 5\n");
//! # }
//! ```
//!
//! # Records
//! A [`Record`] has the fields of DESIGN.md section 7. It is written when the response body
//! ends (data or trailers), fails, or is dropped; when the inner service fails (`status` 0:
//! the client gets a reset or a closed connection); or when the response future is dropped
//! (`status` 0, `error` `CANCEL`). `headers_ms` is the time to the response headers (or to the
//! failure), `duration_ms` the time to the record. Byte counts are body bytes.
//!
//! # Configuration
//! [`WriterConfig`]: the [`Format`] ([`Format::Json`], [`Format::Apache`] for the combined log
//! format, or a [`Template`] with `%field%` placeholders; `str::parse` accepts `json`,
//! `apache` or a template), the queue's capacity, and the dropped counter to share with
//! metrics (`access_log_dropped_total`). [`Output`]: stdout, stderr, a file, a `tracing`
//! event per record, or any `io::Write`.
//!
//! # Extensions
//! Reads on requests: [`ClientAddr`] (or a bare `std::net::SocketAddr`) for `client_addr`;
//! `traceparent`, `x-b3-traceid`, `x-request-id` headers for `trace_id`. Reads on responses:
//! `linkerd_http_classify::FinalClass` (the final gRPC status and error, when a classify
//! layer sits inside), `linkerd_http_classify::ProxyError` (synthetic answers), and through
//! an [`ExtractInfo`] the route, backend and attempts (by default [`ReadRouteInfo`]: the route
//! crate's `RouteMatch`/`BackendName` and the retry crate's `RetryOutcome`). Writes nothing.
//!
//! # Errors
//! The layer adds no failure. Inner errors are converted into `BoxError` (the layer has to
//! read them to label the record) and returned unchanged in content; body errors likewise.
//!
//! # Readiness
//! `poll_ready` is forwarded.
//!
//! # Cancellation
//! Dropping the response future or the response body writes the record with `error`
//! `CANCEL`. A dropped response future drops the inner one first, observing what it knew
//! (`linkerd_http_classify::dropped`: the route, backend and attempts the layers below
//! note when dropped unfinished) for the record's `route`, `backend` and `attempts`. Logging never waits: a full queue drops the record and counts it
//! ([`AccessLogWriter::dropped`]).
//!
//! # Cost
//! Per request: one `Arc` shared by the request-body counter and the record (the end-of-stream
//! slot); header values and the URI are shared with the request, not copied; formatting
//! happens on the writer thread.

mod format;
mod layer;
mod record;
mod writer;

pub use format::{Format, Template, TemplateError};
pub use layer::{
    AccessLog, AccessLogLayer, ExtractInfo, NoInfo, ReadRouteInfo, RequestBody, ResponseBody,
    ResponseFuture, ResponseInfo,
};
pub use record::{ClientAddr, FIELDS, Record, TraceHeader};
pub use writer::{AccessLogWriter, Output, WriterConfig};
