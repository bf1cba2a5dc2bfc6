//! Tower layers recording the route, backend, retry, reset and connection metrics of
//! DESIGN.md section 6 into prometheus-client families.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Empty, Full};
//! use linkerd_http_metrics::Metrics;
//! use linkerd_http_prom::{MetricsService, Scrape};
//! use prometheus_client::registry::Registry;
//! use std::sync::Arc;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut registry = Registry::default();
//! let metrics = Metrics::register(&mut registry);
//! let admin = MetricsService::new(Arc::new(registry));
//!
//! // One stack per route, built once.
//! let route = ServiceBuilder::new()
//!     .layer(metrics.http.route_layer("web"))
//!     .layer(metrics.http.backend_layer("web", "svc-a"))
//!     .service(service_fn(|_req: Request<Empty<Bytes>>| async {
//!         Ok::<_, http::Error>(Response::builder().status(503).body(Full::new(Bytes::from("busy")))?)
//!     }));
//! let rsp = route.oneshot(Request::new(Empty::new())).await.unwrap();
//! rsp.into_body().collect().await.unwrap(); // recorded at the end of the body
//!
//! let rsp = admin.oneshot(Request::get("/metrics").body(()).unwrap()).await.unwrap();
//! let text = rsp.into_body().collect().await.unwrap().to_bytes();
//! let scrape = Scrape::parse(std::str::from_utf8(&text).unwrap()).unwrap();
//! let labels = [("route_name", "web"), ("http_status", "503"), ("grpc_status", ""), ("error", "")];
//! assert_eq!(scrape.get("outbound_http_route_request_statuses_total", &labels), Some(1.0));
//! assert_eq!(scrape.get("outbound_http_route_requests_in_flight", &[("route_name", "web")]), Some(0.0));
//! // Described before any traffic:
//! assert_eq!(scrape.family_type("outbound_grpc_route_retry_overflow"), Some("counter"));
//! # }
//! ```
//!
//! # Configuration
//! [`Metrics::register`] registers every family at start-up. Layers are built per route
//! ([`RouteFamilies::route_layer`]) and per backend ([`RouteFamilies::backend_layer`]) with
//! their labels, from [`Metrics::http`] or [`Metrics::grpc`] by the route's kind, so the
//! per-request cost is one status-family lookup and no label allocation. Label cardinality is
//! bounded: configured route and backend names, status codes, and the closed set of error
//! labels.
//!
//! # What is recorded
//! - Route: `request_duration_seconds` (arrival to end of response body, failure or
//!   cancellation), `request_statuses_total` (once per request), `requests_in_flight`
//!   (released when the body ends, not at headers), and from a [`RetrySummary`]
//!   (`retry_requests_total` += attempts - 1; `retry_successes_total`;
//!   `retry_limit_exceeded_total`; `retry_overflow_total`).
//! - Backend: `backend_requests_total`, `backend_response_duration_seconds`,
//!   `backend_response_statuses_total`.
//! - [`Metrics::record_reset`], [`Metrics::connection_opened`], [`Metrics::set_endpoints`] and
//!   [`Metrics::access_log_dropped`] for the server, the h2 reset hook, the balancer and the
//!   access log.
//!
//! Status labels: `http_status` is what the client receives. For an error returned instead
//! of a response it is computed with [`error_class`] from
//! [`to_proxy_error`](linkerd_http_classify::to_proxy_error), the function the proxy answers
//! with: an upstream reset answered by a reset (HTTP/2 and gRPC clients) has
//! `http_status=""`; gRPC clients get `200` and the error's gRPC code.
//!
//! # Extensions
//! Reads on requests: [`Protocol`](linkerd_http_classify::Protocol) and
//! [`ResponseClassifier`](linkerd_http_classify::ResponseClassifier) (computed from the
//! request when absent). Reads on responses, through an [`ExtractRetry`]: the retry outcome
//! (default [`ReadRetrySummary`] reads a [`RetrySummary`] extension; the application maps the
//! retry crate's `RetryOutcome` with a closure), and
//! [`ProxyError`](linkerd_http_classify::ProxyError) through the classifier. Writes nothing.
//!
//! # Errors
//! The layers add no failure; inner errors are converted into `BoxError` (they are read to
//! label the request) and passed on.
//!
//! # Readiness
//! `poll_ready` is forwarded.
//!
//! # Cancellation
//! A response future dropped before headers records `error="CANCEL"` with `http_status=""`;
//! a response body dropped before its end records `CANCEL` with the status sent.

mod families;
mod layer;
mod retry;

pub use families::{ConnectionGuard, Metrics, RouteFamilies};
pub use layer::{
    BackendMetrics, BackendMetricsLayer, Instrument, InstrumentLayer, ResponseBody, ResponseFuture,
    RouteMetrics, RouteMetricsLayer, client_error_class, error_class,
};
pub(crate) use layer::{Recorder, RetryCounters};
pub use retry::{ExtractRetry, ReadRetrySummary, RetryStopKind, RetrySummary};
