//! prometheus-client plumbing for linkerd-http: label sets, bucket presets, families that are
//! described before their first sample, and a service answering scrapes.
//!
//! ```
//! use http::Request;
//! use http_body_util::{BodyExt, Empty};
//! use linkerd_http_prom::{
//!     LATENCY_SECONDS, MetricsService, RouteLabels, Scrape, register_counter_family,
//!     register_histogram_family,
//! };
//! use prometheus_client::registry::Registry;
//! use std::sync::Arc;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut registry = Registry::default();
//! let prefixed = registry.sub_registry_with_prefix("outbound_http_route");
//! let requests = register_counter_family::<RouteLabels>(prefixed, "requests", "Requests.");
//! let _durations = register_histogram_family::<RouteLabels>(
//!     prefixed,
//!     "request_duration_seconds",
//!     "Request durations",
//!     LATENCY_SECONDS,
//! );
//! requests.get_or_create(&RouteLabels::new("web")).inc();
//!
//! let svc = MetricsService::new(Arc::new(registry));
//! let rsp = svc.oneshot(Request::get("/metrics").body(Empty::<bytes::Bytes>::new()).unwrap()).await.unwrap();
//! assert_eq!(
//!     rsp.headers()["content-type"],
//!     "application/openmetrics-text; version=1.0.0; charset=utf-8"
//! );
//! let text = rsp.into_body().collect().await.unwrap().to_bytes();
//! let scrape = Scrape::parse(std::str::from_utf8(&text).unwrap()).unwrap();
//! assert_eq!(scrape.get("outbound_http_route_requests_total", &[("route_name", "web")]), Some(1.0));
//! // Described although it has no sample yet.
//! assert_eq!(scrape.family_type("outbound_http_route_request_duration_seconds"), Some("histogram"));
//! # }
//! ```
//!
//! # Names and labels
//! Counters are registered without `_total` (the encoder appends it; the helpers strip a
//! trailing `_total` instead of panicking), `_seconds` histograms without a separate unit.
//! Label values whose case DESIGN.md section 6 fixes are written by hand: [`Direction`] and
//! [`EndpointState`] lower-case, `grpc_status` UPPER_SNAKE ([`grpc_label`]), `http_status`
//! decimal or empty ([`StatusLabels`]).
//!
//! # Never-empty families
//! prometheus-client 0.26 leaves a family without samples out of the exposition. Every
//! `register_*_family` helper registers the family wrapped in [`NeverEmpty`], so `# HELP` and
//! `# TYPE` appear from the first scrape.
//!
//! # Content negotiation
//! [`MetricsService`] answers in OpenMetrics text (`application/openmetrics-text;
//! version=1.0.0; charset=utf-8`) unless the scraper's `Accept` prefers `text/plain`, which
//! gets the Prometheus text format (`text/plain; version=0.0.4; charset=utf-8`).
//!
//! # Tests
//! [`Scrape::parse`] turns exposition text into [`Sample`]s (name, labels, value) for exact
//! assertions.

mod family;
mod labels;
mod scrape;
mod service;

pub use family::{
    Buckets, COARSE_SECONDS, CounterFamily, GaugeFamily, HistogramFamily, LATENCY_SECONDS,
    NeverEmpty, SharedCounter, register_counter, register_counter_family, register_gauge,
    register_gauge_family, register_histogram_family, register_shared_counter,
};
pub use labels::{
    BackendLabels, ConnectionLabels, ConnectionProtocol, Direction, EndpointLabels, EndpointState,
    ResetLabels, RouteLabels, StatusLabels, grpc_label,
};
pub use prometheus_client;
pub use scrape::{Sample, Scrape, ScrapeError};
pub use service::{Format, MetricsService, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};
