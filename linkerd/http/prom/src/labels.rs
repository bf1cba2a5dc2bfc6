use http::StatusCode;
use linkerd_http_classify::{Class, GrpcCode, reason_name};
use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder,
};
use std::{fmt::Write, sync::Arc};

/// The `route_name` label.
///
/// Route names come from configuration, so the label's cardinality is bounded by the config.
/// Cloning is a reference-count increment.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RouteLabels {
    /// The route's configured name.
    pub route_name: Arc<str>,
}

/// The `route_name` and `backend_name` labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackendLabels {
    /// The route's configured name.
    pub route_name: Arc<str>,
    /// The backend's configured name.
    pub backend_name: Arc<str>,
}

/// The `http_status`, `grpc_status` and `error` labels of a finished request (DESIGN.md
/// section 6).
///
/// - `http_status`: the decimal status the client received, or empty when the client got a
///   reset and no response;
/// - `grpc_status`: the UPPER_SNAKE gRPC code name (`DEADLINE_EXCEEDED`), empty for plain
///   HTTP; codes the gRPC spec does not define are written `UNKNOWN`;
/// - `error`: empty, or the closed set of [`ProxyErrorKind`](linkerd_http_classify::ProxyErrorKind)
///   labels (`REQUEST_TIMEOUT`, `CANCEL`, `RESET`, ...).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct StatusLabels {
    /// The HTTP status sent to the client, if a response was sent.
    pub http_status: Option<StatusCode>,
    /// The gRPC status, for gRPC requests.
    pub grpc_status: Option<GrpcCode>,
    /// The metric `error` label; empty when there was no error.
    pub error: &'static str,
}

/// The `direction` label of `http_stream_resets_total`: written lower-case.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Resets received: from upstreams, or from clients through request-body errors.
    Inbound,
    /// Resets the proxy sends.
    Outbound,
}

/// The `direction` and `reason` labels of `http_stream_resets_total`; `reason` is the
/// RFC 9113 name (`REFUSED_STREAM`), or `UNKNOWN_<n>` for unassigned codes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResetLabels {
    /// Which way the reset went.
    pub direction: Direction,
    /// The HTTP/2 error code, as a number (`h2::Reason` is not `Hash`).
    pub reason: u32,
}

/// The `protocol` label of `http_server_connections_open`: `http1` or `http2`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionProtocol {
    /// HTTP/1.x.
    Http1,
    /// HTTP/2 (h2c prior knowledge).
    Http2,
}

/// The labels of `http_server_connections_open`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionLabels {
    /// The protocol the connection speaks.
    pub protocol: ConnectionProtocol,
}

/// The `state` label of `balancer_endpoints`: written lower-case.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum EndpointState {
    /// The endpoint accepts requests.
    Ready,
    /// The endpoint is connecting or backing off.
    Pending,
}

/// The `backend_name` and `state` labels of `balancer_endpoints`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EndpointLabels {
    /// The backend's configured name.
    pub backend_name: Arc<str>,
    /// The endpoints' state.
    pub state: EndpointState,
}

// === impl RouteLabels ===

impl RouteLabels {
    /// Labels for the route named `route_name`.
    pub fn new(route_name: impl Into<Arc<str>>) -> Self {
        Self {
            route_name: route_name.into(),
        }
    }
}

impl EncodeLabelSet for RouteLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        label(encoder, "route_name", &&*self.route_name)
    }
}

// === impl BackendLabels ===

impl BackendLabels {
    /// Labels for `backend_name` of `route_name`.
    pub fn new(route_name: impl Into<Arc<str>>, backend_name: impl Into<Arc<str>>) -> Self {
        Self {
            route_name: route_name.into(),
            backend_name: backend_name.into(),
        }
    }
}

impl EncodeLabelSet for BackendLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        label(encoder, "route_name", &&*self.route_name)?;
        label(encoder, "backend_name", &&*self.backend_name)
    }
}

// === impl StatusLabels ===

impl StatusLabels {
    /// The labels of a finished request's [`Class`].
    pub fn from_class(class: &Class) -> Self {
        Self {
            http_status: class.http_status(),
            grpc_status: class.grpc_status(),
            error: class.error_label(),
        }
    }
}

impl From<&Class> for StatusLabels {
    fn from(class: &Class) -> Self {
        Self::from_class(class)
    }
}

impl EncodeLabelSet for StatusLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        label(encoder, "http_status", &HttpStatusValue(self.http_status))?;
        label(encoder, "grpc_status", &GrpcStatusValue(self.grpc_status))?;
        label(encoder, "error", &self.error)
    }
}

/// Writes an HTTP status as decimal digits, or nothing.
struct HttpStatusValue(Option<StatusCode>);

impl EncodeLabelValue for HttpStatusValue {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        match self.0 {
            Some(s) => encoder.write_str(s.as_str()),
            None => Ok(()),
        }
    }
}

/// Writes a gRPC code by its UPPER_SNAKE name, or nothing.
struct GrpcStatusValue(Option<GrpcCode>);

impl EncodeLabelValue for GrpcStatusValue {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        match self.0 {
            Some(code) => encoder.write_str(grpc_label(code)),
            None => Ok(()),
        }
    }
}

/// The `grpc_status` label value of `code`: its UPPER_SNAKE name, `UNKNOWN` for codes the
/// gRPC spec does not define.
pub fn grpc_label(code: GrpcCode) -> &'static str {
    code.name().unwrap_or("UNKNOWN")
}

// === impl Direction ===

impl Direction {
    /// The label value: `inbound` or `outbound`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

// === impl ResetLabels ===

impl ResetLabels {
    /// Labels for a reset going `direction` with `reason`.
    pub fn new(direction: Direction, reason: h2::Reason) -> Self {
        Self {
            direction,
            reason: u32::from(reason),
        }
    }
}

impl EncodeLabelSet for ResetLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        label(encoder, "direction", &self.direction.as_str())?;
        label(
            encoder,
            "reason",
            &reason_name(h2::Reason::from(self.reason)),
        )
    }
}

// === impl ConnectionProtocol ===

impl ConnectionProtocol {
    /// The label value: `http1` or `http2`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::Http2 => "http2",
        }
    }
}

impl EncodeLabelSet for ConnectionLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        label(encoder, "protocol", &self.protocol.as_str())
    }
}

// === impl EndpointState ===

impl EndpointState {
    /// The label value: `ready` or `pending`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Pending => "pending",
        }
    }
}

impl EndpointLabels {
    /// Labels for `backend_name`'s endpoints in `state`.
    pub fn new(backend_name: impl Into<Arc<str>>, state: EndpointState) -> Self {
        Self {
            backend_name: backend_name.into(),
            state,
        }
    }
}

impl EncodeLabelSet for EndpointLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        label(encoder, "backend_name", &&*self.backend_name)?;
        label(encoder, "state", &self.state.as_str())
    }
}

/// Encodes one `key="value"` pair.
fn label(
    encoder: &mut LabelSetEncoder<'_>,
    key: &str,
    value: &impl EncodeLabelValue,
) -> Result<(), std::fmt::Error> {
    let mut label = encoder.encode_label();
    let mut k = label.encode_label_key()?;
    k.write_str(key)?;
    let mut v = k.encode_label_value()?;
    value.encode(&mut v)?;
    v.finish()
}
