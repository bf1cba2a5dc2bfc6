use crate::{InstrumentLayer, ReadRetrySummary, Recorder, RetryCounters, layer::StatusCounters};
use linkerd_http_prom::{
    BackendLabels, ConnectionLabels, ConnectionProtocol, CounterFamily, Direction, EndpointLabels,
    EndpointState, GaugeFamily, HistogramFamily, LATENCY_SECONDS, ResetLabels, RouteLabels,
    SharedCounter, StatusLabels, register_counter_family, register_gauge_family,
    register_histogram_family, register_shared_counter,
};
use prometheus_client::{metrics::gauge::Gauge, registry::Registry};
use std::sync::Arc;

/// Every metric family of DESIGN.md section 6, registered at once.
///
/// Cloning shares the families (handles are reference counted).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `outbound_http_route_*`.
    pub http: RouteFamilies,
    /// `outbound_grpc_route_*`.
    pub grpc: RouteFamilies,
    /// `http_stream_resets_total{direction,reason}`.
    pub stream_resets: CounterFamily<ResetLabels>,
    /// `http_server_connections_open{protocol}`.
    pub connections_open: GaugeFamily<ConnectionLabels>,
    /// `balancer_endpoints{backend_name,state}`.
    pub balancer_endpoints: GaugeFamily<EndpointLabels>,
    /// `access_log_dropped_total`: share [`SharedCounter::cell`] with the access-log writer.
    pub access_log_dropped: SharedCounter,
}

/// The families of one route kind (`outbound_http_route_*` or `outbound_grpc_route_*`).
#[derive(Clone, Debug)]
pub struct RouteFamilies {
    /// `..._request_duration_seconds{route_name}`.
    pub request_duration: HistogramFamily<RouteLabels>,
    /// `..._request_statuses_total{route_name,http_status,grpc_status,error}`.
    pub request_statuses: CounterFamily<(RouteLabels, StatusLabels)>,
    /// `..._requests_in_flight{route_name}`.
    pub requests_in_flight: GaugeFamily<RouteLabels>,
    /// `..._retry_requests_total{route_name}`: retries, not first attempts.
    pub retry_requests: CounterFamily<RouteLabels>,
    /// `..._retry_successes_total{route_name}`: retried requests that succeeded.
    pub retry_successes: CounterFamily<RouteLabels>,
    /// `..._retry_limit_exceeded_total{route_name}`.
    pub retry_limit_exceeded: CounterFamily<RouteLabels>,
    /// `..._retry_overflow_total{route_name}`.
    pub retry_overflow: CounterFamily<RouteLabels>,
    /// `..._backend_requests_total{route_name,backend_name}`.
    pub backend_requests: CounterFamily<BackendLabels>,
    /// `..._backend_response_duration_seconds{route_name,backend_name}`.
    pub backend_response_duration: HistogramFamily<BackendLabels>,
    /// `..._backend_response_statuses_total{route_name,backend_name,http_status,grpc_status,error}`.
    pub backend_response_statuses: CounterFamily<(BackendLabels, StatusLabels)>,
}

/// Counts an open server connection until dropped (`http_server_connections_open`).
#[derive(Debug)]
pub struct ConnectionGuard(Gauge);

// === impl Metrics ===

impl Metrics {
    /// Registers every family in `registry`; each appears (HELP/TYPE) before any traffic.
    pub fn register(registry: &mut Registry) -> Self {
        let http =
            RouteFamilies::register(registry.sub_registry_with_prefix("outbound_http_route"));
        let grpc =
            RouteFamilies::register(registry.sub_registry_with_prefix("outbound_grpc_route"));
        Self {
            http,
            grpc,
            stream_resets: register_counter_family(
                registry,
                "http_stream_resets",
                "HTTP/2 stream resets: inbound (received from upstreams or clients), outbound (sent)",
            ),
            connections_open: register_gauge_family(
                registry,
                "http_server_connections_open",
                "Open server connections, by protocol",
            ),
            balancer_endpoints: register_gauge_family(
                registry,
                "balancer_endpoints",
                "Endpoints of each backend's balancer, by state",
            ),
            access_log_dropped: register_shared_counter(
                registry,
                "access_log_dropped",
                "Access-log lines dropped because the writer's queue was full or the output failed",
            ),
        }
    }

    /// The families for a route: gRPC or HTTP.
    pub fn route_families(&self, grpc: bool) -> &RouteFamilies {
        if grpc { &self.grpc } else { &self.http }
    }

    /// Records one stream reset.
    pub fn record_reset(&self, direction: Direction, reason: h2::Reason) {
        self.stream_resets
            .get_or_create(&ResetLabels::new(direction, reason))
            .inc();
    }

    /// Counts a connection speaking `protocol` as open until the guard is dropped.
    pub fn connection_opened(&self, protocol: ConnectionProtocol) -> ConnectionGuard {
        let gauge = self
            .connections_open
            .get_or_create_owned(&ConnectionLabels { protocol });
        gauge.inc();
        ConnectionGuard(gauge)
    }

    /// Sets `balancer_endpoints` for `backend_name`: `ready + pending` is its endpoint count.
    pub fn set_endpoints(&self, backend_name: &Arc<str>, ready: u64, pending: u64) {
        for (state, n) in [
            (EndpointState::Ready, ready),
            (EndpointState::Pending, pending),
        ] {
            let labels = EndpointLabels::new(backend_name.clone(), state);
            self.balancer_endpoints
                .get_or_create(&labels)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

// === impl RouteFamilies ===

impl RouteFamilies {
    /// Registers the families in `registry` (already prefixed, e.g. `outbound_http_route`).
    pub fn register(registry: &mut Registry) -> Self {
        Self {
            request_duration: register_histogram_family(
                registry,
                "request_duration_seconds",
                "Time from a request's arrival to the end of its response body, or its failure",
                LATENCY_SECONDS,
            ),
            request_statuses: register_counter_family(
                registry,
                "request_statuses",
                "Finished requests by the status the client received and the error label",
            ),
            requests_in_flight: register_gauge_family(
                registry,
                "requests_in_flight",
                "Requests whose response body has not ended",
            ),
            retry_requests: register_counter_family(
                registry,
                "retry_requests",
                "Retries sent (first attempts excluded)",
            ),
            retry_successes: register_counter_family(
                registry,
                "retry_successes",
                "Retried requests that succeeded",
            ),
            retry_limit_exceeded: register_counter_family(
                registry,
                "retry_limit_exceeded",
                "Requests not retried further: attempts exhausted or deadline reached",
            ),
            retry_overflow: register_counter_family(
                registry,
                "retry_overflow",
                "Requests not retried: budget exhausted, body too large, or backend not ready",
            ),
            backend_requests: register_counter_family(
                registry,
                "backend_requests",
                "Requests sent to each backend (each attempt counts)",
            ),
            backend_response_duration: register_histogram_family(
                registry,
                "backend_response_duration_seconds",
                "Time from an attempt's dispatch to the end of the backend's response body",
                LATENCY_SECONDS,
            ),
            backend_response_statuses: register_counter_family(
                registry,
                "backend_response_statuses",
                "Backend responses by status and error label",
            ),
        }
    }

    /// The layer recording a route's metrics, reading retry summaries with the default
    /// [`ReadRetrySummary`].
    pub fn route_layer(&self, route_name: impl Into<Arc<str>>) -> InstrumentLayer<RouteLabels> {
        self.route_layer_with(route_name, ReadRetrySummary)
    }

    /// The layer recording a route's metrics, reading retry summaries with `extract`.
    pub fn route_layer_with<X>(
        &self,
        route_name: impl Into<Arc<str>>,
        extract: X,
    ) -> InstrumentLayer<RouteLabels, X> {
        let labels = RouteLabels::new(route_name);
        InstrumentLayer::new(
            Arc::new(Recorder {
                duration: self.request_duration.get_or_create_owned(&labels),
                statuses: StatusCounters::new(self.request_statuses.clone()),
                in_flight: Some(self.requests_in_flight.get_or_create_owned(&labels)),
                requests: None,
                retries: Some(RetryCounters {
                    requests: self.retry_requests.get_or_create_owned(&labels),
                    successes: self.retry_successes.get_or_create_owned(&labels),
                    limit_exceeded: self.retry_limit_exceeded.get_or_create_owned(&labels),
                    overflow: self.retry_overflow.get_or_create_owned(&labels),
                }),
                from_request_start: true,
                unread_is_discarded: false,
                labels,
            }),
            extract,
        )
    }

    /// The layer recording one backend's metrics on a route.
    pub fn backend_layer(
        &self,
        route_name: impl Into<Arc<str>>,
        backend_name: impl Into<Arc<str>>,
    ) -> InstrumentLayer<BackendLabels> {
        let labels = BackendLabels::new(route_name, backend_name);
        InstrumentLayer::new(
            Arc::new(Recorder {
                duration: self.backend_response_duration.get_or_create_owned(&labels),
                statuses: StatusCounters::new(self.backend_response_statuses.clone()),
                in_flight: None,
                requests: Some(self.backend_requests.get_or_create_owned(&labels)),
                retries: None,
                from_request_start: false,
                unread_is_discarded: true,
                labels,
            }),
            ReadRetrySummary,
        )
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
