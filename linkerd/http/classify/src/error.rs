use crate::GrpcCode;
use http::StatusCode;
use std::{borrow::Cow, error::Error, fmt, sync::Arc};

/// A boxed error, as tower and hyper pass them around.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// Why the proxy answered with a synthetic response or reset a stream (DESIGN.md section 5).
///
/// Each kind fixes the HTTP status, the gRPC code and the metric `error` label; the
/// `l5d-proxy-error` value lives in [`ProxyError`] since some kinds carry a message.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyErrorKind {
    /// No route matched the request: 404, `UNIMPLEMENTED`.
    NoRoute,
    /// The matched rule has no backends: 500, `INTERNAL`.
    NoBackends,
    /// A failure-injection filter fired: configured status and code.
    Injected,
    /// `timeouts.request` (the stream lifetime) expired: 504, `DEADLINE_EXCEEDED`.
    RequestTimeout,
    /// `timeouts.backendRequest` (the per-try timeout) expired: 504, `DEADLINE_EXCEEDED`.
    BackendRequestTimeout,
    /// The response-headers stream timeout expired: 504, `DEADLINE_EXCEEDED`.
    ResponseHeadersTimeout,
    /// The response-end stream timeout expired: 504, `DEADLINE_EXCEEDED`.
    ResponseTimeout,
    /// The idle stream timeout expired: 504, `DEADLINE_EXCEEDED`.
    IdleTimeout,
    /// The connection to the selected endpoint failed: 502, `UNAVAILABLE`.
    ConnectFailed,
    /// The upstream reset the stream with this reason: 502 for HTTP/1 clients, a reset for
    /// HTTP/2 clients.
    Reset(h2::Reason),
    /// An Upgrade/CONNECT was routed to an HTTP/2 backend without extended CONNECT: 502.
    UpstreamCannotTunnel,
    /// The backend has no endpoint, or none ready for the fail-fast period: 503, `UNAVAILABLE`.
    NoEndpoints,
    /// The backend's queue is full: 503, `UNAVAILABLE`.
    LoadShed,
    /// The request parses but cannot be proxied: 400, `INVALID_ARGUMENT`.
    BadRequest,
    /// The client went away (after response headers, or while the request was in flight).
    Cancel,
    /// Anything else: 500, `INTERNAL`.
    Internal,
}

/// A proxy-level failure: its kind, the HTTP status and gRPC code it is answered with, and the
/// `l5d-proxy-error` value.
///
/// Every error type in this project either is a `ProxyError` or carries one in its
/// [`source()`](Error::source) chain, so [`to_proxy_error`] finds it first. A `ProxyError`
/// may itself carry a source (for example `h2::Error::from(Reason::CANCEL)` for timeouts, so
/// that hyper resets an HTTP/2 client's stream with `CANCEL`).
#[derive(Clone)]
pub struct ProxyError {
    kind: ProxyErrorKind,
    status: StatusCode,
    grpc: GrpcCode,
    message: Cow<'static, str>,
    source: Option<Arc<dyn Error + Send + Sync + 'static>>,
}

/// A marker for timeout error types.
///
/// Every timeout error this project defines implements it (and carries its [`ProxyError`] in
/// its `source()` chain, so [`to_proxy_error`] classifies it precisely). Foreign timeouts
/// (tokio's and tower's `Elapsed`, `io::ErrorKind::TimedOut`, hyper's timeouts) are recognised
/// by [`is_timeout`].
pub trait IsTimeout: Error + Send + Sync + 'static {}

/// An absolute deadline for a whole request, across retries (request extension).
///
/// Written by `linkerd-http-stream-timeouts` (or the application); read by the retry layer,
/// which starts no retry after it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(pub tokio::time::Instant);

/// When a request entered the stack (request extension), for a layer that times the whole
/// request but runs after something else already held it.
///
/// Written by a layer that makes a request wait before the layers inside it see it (the
/// router's injected delay) or that times an answer on a request's behalf; read by the
/// route metrics layer, whose request duration counts from it when present (from its own
/// call otherwise).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestStart(pub tokio::time::Instant);

// === impl ProxyErrorKind ===

impl ProxyErrorKind {
    /// The metric `error` label (DESIGN.md section 6), e.g. `REQUEST_TIMEOUT`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::NoRoute => "NO_ROUTE",
            Self::NoBackends => "NO_BACKENDS",
            Self::Injected => "INJECTED",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::BackendRequestTimeout => "BACKEND_REQUEST_TIMEOUT",
            Self::ResponseHeadersTimeout => "RESPONSE_HEADERS_TIMEOUT",
            Self::ResponseTimeout => "RESPONSE_TIMEOUT",
            Self::IdleTimeout => "IDLE_TIMEOUT",
            Self::ConnectFailed => "CONNECT_FAILED",
            Self::Reset(_) => "RESET",
            Self::UpstreamCannotTunnel => "UNAVAILABLE",
            Self::NoEndpoints => "NO_ENDPOINTS",
            Self::LoadShed => "LOAD_SHED",
            Self::BadRequest => "BAD_REQUEST",
            Self::Cancel => "CANCEL",
            Self::Internal => "INTERNAL",
        }
    }

    /// Whether this kind is a timeout.
    pub const fn is_timeout(self) -> bool {
        matches!(
            self,
            Self::RequestTimeout
                | Self::BackendRequestTimeout
                | Self::ResponseHeadersTimeout
                | Self::ResponseTimeout
                | Self::IdleTimeout
        )
    }
}

// === impl ProxyError ===

impl ProxyError {
    fn new(
        kind: ProxyErrorKind,
        status: StatusCode,
        grpc: GrpcCode,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            kind,
            status,
            grpc,
            message: message.into(),
            source: None,
        }
    }

    /// No route matches: 404, `no route`.
    pub fn no_route() -> Self {
        Self::new(
            ProxyErrorKind::NoRoute,
            StatusCode::NOT_FOUND,
            GrpcCode::UNIMPLEMENTED,
            "no route",
        )
    }

    /// A rule without backendRefs: 500, `no backends`.
    pub fn no_backends() -> Self {
        Self::new(
            ProxyErrorKind::NoBackends,
            StatusCode::INTERNAL_SERVER_ERROR,
            GrpcCode::INTERNAL,
            "no backends",
        )
    }

    /// An injected failure with `status` and an optional explicit gRPC code (else the gRPC
    /// spec's mapping of `status`); `message` defaults to `injected failure`.
    pub fn injected(
        status: StatusCode,
        grpc: Option<GrpcCode>,
        message: Option<Cow<'static, str>>,
    ) -> Self {
        Self::new(
            ProxyErrorKind::Injected,
            status,
            grpc.unwrap_or_else(|| GrpcCode::from_http_status(status)),
            message.unwrap_or(Cow::Borrowed("injected failure")),
        )
    }

    /// `timeouts.request` expired: 504, `request timeout`.
    pub fn request_timeout() -> Self {
        Self::timeout(ProxyErrorKind::RequestTimeout, "request timeout")
    }

    /// `timeouts.backendRequest` expired: 504, `backend request timeout`.
    pub fn backend_request_timeout() -> Self {
        Self::timeout(
            ProxyErrorKind::BackendRequestTimeout,
            "backend request timeout",
        )
    }

    /// The response-headers stream timeout expired: 504, `response headers timeout`.
    pub fn response_headers_timeout() -> Self {
        Self::timeout(
            ProxyErrorKind::ResponseHeadersTimeout,
            "response headers timeout",
        )
    }

    /// The response-end stream timeout expired: 504, `response timeout`.
    pub fn response_timeout() -> Self {
        Self::timeout(ProxyErrorKind::ResponseTimeout, "response timeout")
    }

    /// The idle stream timeout expired: 504, `idle timeout`.
    pub fn idle_timeout() -> Self {
        Self::timeout(ProxyErrorKind::IdleTimeout, "idle timeout")
    }

    fn timeout(kind: ProxyErrorKind, message: &'static str) -> Self {
        Self::new(
            kind,
            StatusCode::GATEWAY_TIMEOUT,
            GrpcCode::DEADLINE_EXCEEDED,
            message,
        )
    }

    /// Connecting to the selected endpoint failed: 502, `connect failed`.
    pub fn connect_failed() -> Self {
        Self::new(
            ProxyErrorKind::ConnectFailed,
            StatusCode::BAD_GATEWAY,
            GrpcCode::UNAVAILABLE,
            "connect failed",
        )
    }

    /// The upstream reset the stream with `reason`: 502 `upstream reset (<REASON>)` for HTTP/1
    /// clients; HTTP/2 clients get a reset with [`client_reset_reason`]`(reason)`.
    pub fn reset(reason: h2::Reason) -> Self {
        Self::new(
            ProxyErrorKind::Reset(reason),
            StatusCode::BAD_GATEWAY,
            GrpcCode::UNAVAILABLE,
            format!("upstream reset ({})", reason_name(reason)),
        )
    }

    /// An Upgrade/CONNECT routed to an HTTP/2 backend without extended CONNECT: 502.
    pub fn upstream_cannot_tunnel() -> Self {
        Self::new(
            ProxyErrorKind::UpstreamCannotTunnel,
            StatusCode::BAD_GATEWAY,
            GrpcCode::UNAVAILABLE,
            "upstream cannot tunnel",
        )
    }

    /// No endpoint, or none ready for the fail-fast period: 503, `no endpoints`.
    pub fn no_endpoints() -> Self {
        Self::new(
            ProxyErrorKind::NoEndpoints,
            StatusCode::SERVICE_UNAVAILABLE,
            GrpcCode::UNAVAILABLE,
            "no endpoints",
        )
    }

    /// The backend queue is full: 503, `unavailable`.
    pub fn load_shed() -> Self {
        Self::new(
            ProxyErrorKind::LoadShed,
            StatusCode::SERVICE_UNAVAILABLE,
            GrpcCode::UNAVAILABLE,
            "unavailable",
        )
    }

    /// The request cannot be proxied: 400, `bad request: <why>`.
    pub fn bad_request(why: impl fmt::Display) -> Self {
        Self::new(
            ProxyErrorKind::BadRequest,
            StatusCode::BAD_REQUEST,
            GrpcCode::INVALID_ARGUMENT,
            format!("bad request: {why}"),
        )
    }

    /// The client went away. Never answered (nobody is listening); recorded as `CANCEL`.
    pub fn cancel() -> Self {
        Self::new(
            ProxyErrorKind::Cancel,
            StatusCode::BAD_GATEWAY,
            GrpcCode::CANCELLED,
            "cancelled",
        )
    }

    /// An unexpected internal error: 500, `internal error`.
    pub fn internal() -> Self {
        Self::new(
            ProxyErrorKind::Internal,
            StatusCode::INTERNAL_SERVER_ERROR,
            GrpcCode::INTERNAL,
            "internal error",
        )
    }

    /// Attaches a source error, returned by [`Error::source`].
    ///
    /// Timeouts attach `h2::Error::from(Reason::CANCEL)` so that hyper, which walks the chain
    /// for an `h2::Error`, resets an HTTP/2 client's stream with `CANCEL`.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(Arc::from(source.into()));
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ProxyErrorKind {
        self.kind
    }

    /// The HTTP status the client receives.
    pub fn http_status(&self) -> StatusCode {
        self.status
    }

    /// The gRPC code a gRPC client receives.
    pub fn grpc_code(&self) -> GrpcCode {
        self.grpc
    }

    /// The metric `error` label.
    pub fn label(&self) -> &'static str {
        self.kind.label()
    }

    /// The `l5d-proxy-error` header value (also the gRPC `grpc-message`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether an HTTP/2 client is answered with a stream reset instead of a response, and
    /// with which reason (DESIGN.md section 5: upstream resets).
    pub fn h2_reset_reason(&self) -> Option<h2::Reason> {
        match self.kind {
            ProxyErrorKind::Reset(reason) => Some(client_reset_reason(reason)),
            _ => None,
        }
    }
}

impl fmt::Debug for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyError")
            .field("kind", &self.kind)
            .field("status", &self.status.as_u16())
            .field("grpc", &self.grpc)
            .field("message", &self.message)
            .finish()
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for ProxyError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

impl PartialEq for ProxyError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.status == other.status
            && self.grpc == other.grpc
            && self.message == other.message
    }
}

impl Eq for ProxyError {}

// === functions ===

/// Iterates over `err` and its `source()` chain.
pub fn chain<'a>(
    err: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn Error + 'static)| (*e).source())
}

/// Finds the first `h2::Reason` in `err`'s `source()` chain (an `h2::Error` with a reason).
pub fn find_h2_reason(err: &(dyn Error + 'static)) -> Option<h2::Reason> {
    chain(err).find_map(|e| e.downcast_ref::<h2::Error>().and_then(h2::Error::reason))
}

/// The reason an HTTP/2 client's stream is reset with when the upstream reset it with
/// `upstream` (DESIGN.md section 5): `CANCEL`, `REFUSED_STREAM`, `ENHANCE_YOUR_CALM` and
/// `INTERNAL_ERROR` are forwarded; every other code describes the upstream connection, not
/// this stream, and becomes `INTERNAL_ERROR`.
pub fn client_reset_reason(upstream: h2::Reason) -> h2::Reason {
    match upstream {
        h2::Reason::CANCEL
        | h2::Reason::REFUSED_STREAM
        | h2::Reason::ENHANCE_YOUR_CALM
        | h2::Reason::INTERNAL_ERROR => upstream,
        _ => h2::Reason::INTERNAL_ERROR,
    }
}

/// The RFC 9113 name of an HTTP/2 error code (`REFUSED_STREAM`), or `UNKNOWN_<n>`.
pub fn reason_name(reason: h2::Reason) -> Cow<'static, str> {
    let name = match u32::from(reason) {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        other => return Cow::Owned(format!("UNKNOWN_{other}")),
    };
    Cow::Borrowed(name)
}

/// Whether `err`'s chain holds a timeout: a timeout [`ProxyError`], tokio's or tower's
/// `Elapsed`, an `io::ErrorKind::TimedOut`, or a hyper timeout.
pub fn is_timeout(err: &(dyn Error + 'static)) -> bool {
    chain(err).any(|e| {
        if let Some(p) = e.downcast_ref::<ProxyError>() {
            return p.kind.is_timeout();
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::TimedOut;
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            return h.is_timeout();
        }
        e.is::<tokio::time::error::Elapsed>()
    })
}

/// Maps any error to the [`ProxyError`] the client is answered with (DESIGN.md section 2):
///
/// 1. a [`ProxyError`] anywhere in the `source()` chain (every error type of this project
///    carries one), the outermost first;
/// 2. a timeout ([`is_timeout`]): `backend request timeout` (a foreign timeout inside the
///    proxy is a per-attempt timeout);
/// 3. an `h2::Reason` in the chain: an upstream reset;
/// 4. a connect failure: hyper-util's `is_connect`, or an `io::Error` of kind
///    `ConnectionRefused`, `AddrNotAvailable`, `HostUnreachable` or `NetworkUnreachable`
///    (a reset of an established connection is not one: the request may have been sent);
/// 5. an established connection breaking (an `h2::Error` from I/O, or an `io::Error` of kind
///    `ConnectionReset`, `ConnectionAborted`, `BrokenPipe` or `UnexpectedEof`): an upstream
///    reset (`INTERNAL_ERROR`);
/// 6. otherwise `internal error`.
///
/// Timeouts carry `h2::Reason::CANCEL` for the client's sake, which is why the reason is
/// checked only after them.
pub fn to_proxy_error(err: &(dyn Error + 'static)) -> ProxyError {
    if let Some(p) = chain(err).find_map(|e| e.downcast_ref::<ProxyError>()) {
        return p.clone();
    }
    if is_timeout(err) {
        return ProxyError::backend_request_timeout();
    }
    if let Some(reason) = find_h2_reason(err) {
        return ProxyError::reset(reason);
    }
    if is_connect_error(err) {
        return ProxyError::connect_failed();
    }
    if is_connection_lost(err) {
        // An established upstream connection broke under the stream (an HTTP/2 upstream's
        // connection closing mid-body carries no reason): the stream was cut as a reset
        // would cut it (DESIGN.md section 5: `RESET`), not an internal error of the proxy.
        return ProxyError::reset(h2::Reason::INTERNAL_ERROR);
    }
    ProxyError::internal()
}

/// Whether the chain holds an established connection breaking: an `h2::Error` from I/O, or an
/// I/O error of a reset, aborted, broken or ended connection.
fn is_connection_lost(err: &(dyn Error + 'static)) -> bool {
    use std::io::ErrorKind as K;
    chain(err).any(|e| {
        if let Some(h) = e.downcast_ref::<h2::Error>() {
            return h.is_io();
        }
        e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof
            )
        })
    })
}

/// Whether the chain holds a connection failure (see [`to_proxy_error`]).
pub fn is_connect_error(err: &(dyn Error + 'static)) -> bool {
    use std::io::ErrorKind as K;
    chain(err).any(|e| {
        if let Some(p) = e.downcast_ref::<ProxyError>() {
            return p.kind == ProxyErrorKind::ConnectFailed;
        }
        if let Some(h) = e.downcast_ref::<hyper_util::client::legacy::Error>()
            && h.is_connect()
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // Only failures to establish a connection: a reset or abort on an established
            // connection may come after the request was sent, and must not look retryable.
            return matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::AddrNotAvailable
                    | K::HostUnreachable
                    | K::NetworkUnreachable
            );
        }
        false
    })
}

/// Finds a [`ProxyError`] in `err`'s chain, without falling back.
pub fn find_proxy_error<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a ProxyError> {
    chain(err).find_map(|e| e.downcast_ref::<ProxyError>())
}

#[cfg(test)]
mod tests;
