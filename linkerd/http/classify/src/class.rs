use crate::{GrpcCode, ProxyError, ProxyErrorKind, grpc_status, to_proxy_error};
use http::{HeaderMap, Request, Response, StatusCode};
use std::error::Error;

/// The protocol a request arrived with, as far as error answers are concerned (request
/// extension written by [`ClassifyLayer`](crate::ClassifyLayer)).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.0 or HTTP/1.1.
    Http1,
    /// HTTP/2, not gRPC.
    Http2,
    /// gRPC (`content-type: application/grpc*`), on any HTTP version.
    Grpc,
}

/// The final outcome of one request, as metrics and access logs record it.
///
/// `http_status` is the status the client received (`None` when it got a reset and no
/// response), `grpc_status` the gRPC code when the request was gRPC, `error` the reason when
/// the proxy or the stream failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Class {
    http_status: Option<StatusCode>,
    grpc_status: Option<GrpcCode>,
    error: Option<ProxyErrorKind>,
    success: bool,
}

/// Creates a response classifier for each request.
pub trait Classify {
    /// The per-request classifier, stored in request extensions.
    type ClassifyResponse: ClassifyResponse + Clone + Send + Sync + 'static;

    /// Returns the classifier for `req`.
    fn classify<B>(&self, req: &Request<B>) -> Self::ClassifyResponse;

    /// Returns the classifier for `req`, whose [`Protocol::of`] the caller has worked out
    /// already (the classify layer has). The default ignores `protocol` and calls
    /// [`classify`](Self::classify); a classifier that goes by the protocol can skip
    /// working it out again.
    fn classify_with_protocol<B>(
        &self,
        req: &Request<B>,
        protocol: Protocol,
    ) -> Self::ClassifyResponse {
        let _ = protocol;
        self.classify(req)
    }
}

/// Classifies a response at its headers (or an error in place of a response).
pub trait ClassifyResponse {
    /// Classifies the end of the stream.
    type ClassifyEos: ClassifyEos;

    /// Starts classifying `rsp`, at its headers.
    fn start<B>(self, rsp: &Response<B>) -> Self::ClassifyEos;

    /// Classifies an error returned instead of a response.
    fn error(self, err: &(dyn Error + 'static)) -> Class;
}

/// Classifies a response at the end of its body.
pub trait ClassifyEos {
    /// The body ended, with trailers or without.
    fn eos(self, trailers: Option<&HeaderMap>) -> Class;

    /// The body failed with `err`.
    fn error(self, err: &(dyn Error + 'static)) -> Class;

    /// The client went away before the body ended.
    fn cancelled(self) -> Class;
}

/// A set of HTTP status codes (100 to 999), cheap to copy.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct StatusRanges([u64; 15]);

/// The default HTTP classifier: a status in the failure set is a failure (default: 5xx).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HttpClassifier {
    failures: StatusRanges,
}

/// The default gRPC classifier: `grpc-status` from the headers (trailers-only responses) or
/// the trailers; codes in the failure set are failures (default: `DATA_LOSS`,
/// `DEADLINE_EXCEEDED`, `INTERNAL`, `PERMISSION_DENIED`, `UNAVAILABLE`, `UNKNOWN`).
///
/// A response that ends without `grpc-status` is a failure (Linkerd counts it as a success;
/// a gRPC call without a status did not complete). A non-200 HTTP status without
/// `grpc-status` is mapped through the gRPC spec's HTTP-to-gRPC table. Codes the spec does not
/// define, and unparsable values, count as `UNKNOWN`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct GrpcClassifier {
    failures: u32,
}

/// The default [`Classify`]: gRPC requests get the [`GrpcClassifier`], the rest the
/// [`HttpClassifier`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct DefaultClassify {
    /// For plain HTTP requests.
    pub http: HttpClassifier,
    /// For gRPC requests.
    pub grpc: GrpcClassifier,
}

/// The default per-request classifier (request extension).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ResponseClassifier {
    /// Plain HTTP.
    Http(HttpClassifier),
    /// gRPC.
    Grpc(GrpcClassifier),
}

/// A [`ResponseClassifier`] in 16 bytes, for a future that holds one until the response
/// headers (and that every layer above moves by value): the default HTTP classifier and every
/// gRPC classifier inline, another HTTP classifier (whose status set is 120 bytes) boxed.
///
/// ```
/// use linkerd_http_classify::{HttpClassifier, PackedClassifier, ResponseClassifier, StatusRanges};
///
/// let default = ResponseClassifier::Http(HttpClassifier::DEFAULT);
/// assert_eq!(PackedClassifier::from(default).unpack(), default);
/// let custom = ResponseClassifier::Http(HttpClassifier::new(StatusRanges::empty().with_range(400, 599)));
/// assert_eq!(PackedClassifier::from(custom).unpack(), custom);
/// assert!(size_of::<PackedClassifier>() <= 16);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedClassifier(Packed);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Packed {
    DefaultHttp,
    Grpc(GrpcClassifier),
    Http(Box<HttpClassifier>),
}

/// The default end-of-stream classifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EosClassifier {
    /// Decided at the headers.
    Done(Class),
    /// A gRPC response waiting for `grpc-status` in trailers.
    Grpc {
        /// The HTTP status sent.
        status: StatusCode,
        /// The classifier.
        classifier: GrpcClassifier,
    },
}

const GRPC_UNDEFINED_BIT: u32 = 1 << 17;

// === impl Protocol ===

impl Protocol {
    /// The protocol of `req`: `Grpc` when its `content-type` starts with `application/grpc`,
    /// else by HTTP version.
    pub fn of<B>(req: &Request<B>) -> Self {
        Self::of_head(req.version(), req.headers())
    }

    /// [`Protocol::of`] a request head given by its parts.
    pub fn of_head(version: http::Version, headers: &HeaderMap) -> Self {
        if is_grpc(headers) {
            Self::Grpc
        } else if version == http::Version::HTTP_2 {
            Self::Http2
        } else {
            Self::Http1
        }
    }

    /// Whether the client speaks HTTP/2 (so failures after headers are stream resets).
    pub fn is_grpc(self) -> bool {
        self == Self::Grpc
    }
}

/// Whether `headers` carry a gRPC `content-type` (`application/grpc`, `application/grpc+proto`,
/// `application/grpc-web` is not gRPC over HTTP/2 and is excluded).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| {
            let v = v.as_bytes();
            v.len() >= 16
                && v[..16].eq_ignore_ascii_case(b"application/grpc")
                && (v.len() == 16 || v[16] == b'+' || v[16] == b';')
        })
        .unwrap_or(false)
}

// === impl Class ===

impl Class {
    /// A plain HTTP response.
    pub fn http(status: StatusCode, success: bool) -> Self {
        Self {
            http_status: Some(status),
            grpc_status: None,
            error: None,
            success,
        }
    }

    /// A gRPC response; `code` is `None` when the response carried no `grpc-status`.
    pub fn grpc(status: StatusCode, code: Option<GrpcCode>, success: bool) -> Self {
        Self {
            http_status: Some(status),
            grpc_status: code,
            error: None,
            success,
        }
    }

    /// A failure of kind `error`; `status` is what the client received (`None` for a reset
    /// without a response).
    pub fn failed(
        status: Option<StatusCode>,
        grpc: Option<GrpcCode>,
        error: ProxyErrorKind,
    ) -> Self {
        Self {
            http_status: status,
            grpc_status: grpc,
            error: Some(error),
            success: false,
        }
    }

    /// Whether the request succeeded.
    pub fn is_success(&self) -> bool {
        self.success
    }

    /// The HTTP status the client received, if it received a response.
    pub fn http_status(&self) -> Option<StatusCode> {
        self.http_status
    }

    /// The gRPC status, for gRPC requests that carried one.
    pub fn grpc_status(&self) -> Option<GrpcCode> {
        self.grpc_status
    }

    /// The failure kind, when the proxy or the stream failed.
    pub fn error(&self) -> Option<ProxyErrorKind> {
        self.error
    }

    /// The metric `error` label: empty when there was no error.
    pub fn error_label(&self) -> &'static str {
        self.error.map(ProxyErrorKind::label).unwrap_or("")
    }
}

// === impl StatusRanges ===

impl StatusRanges {
    /// An empty set.
    pub const fn empty() -> Self {
        Self([0; 15])
    }

    /// Adds `lo..=hi` (clamped to 100..=999).
    #[must_use]
    pub const fn with_range(mut self, lo: u16, hi: u16) -> Self {
        let mut s = if lo < 100 { 100 } else { lo };
        let hi = if hi > 999 { 999 } else { hi };
        while s <= hi {
            let i = (s - 100) as usize;
            self.0[i / 64] |= 1 << (i % 64);
            s += 1;
        }
        self
    }

    /// Whether `status` is in the set.
    pub const fn contains(&self, status: StatusCode) -> bool {
        let s = status.as_u16();
        if s < 100 || s > 999 {
            return false;
        }
        let i = (s - 100) as usize;
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

impl std::fmt::Debug for StatusRanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        let mut s = 100u16;
        while s <= 999 {
            if self.contains(StatusCode::from_u16(s).expect("100..=999 are valid")) {
                let start = s;
                while s < 999 && self.contains(StatusCode::from_u16(s + 1).expect("valid")) {
                    s += 1;
                }
                list.entry(&(start..=s));
            }
            s += 1;
        }
        list.finish()
    }
}

// === impl HttpClassifier ===

impl HttpClassifier {
    /// The default: 5xx statuses fail. A constant, so building it costs nothing per request
    /// (adding a range sets its statuses one by one).
    pub const DEFAULT: Self = Self::new(StatusRanges::empty().with_range(500, 599));

    /// A classifier with the given failure statuses.
    pub const fn new(failures: StatusRanges) -> Self {
        Self { failures }
    }

    /// Whether `status` is a failure.
    pub const fn is_failure(&self, status: StatusCode) -> bool {
        self.failures.contains(status)
    }
}

impl Default for HttpClassifier {
    fn default() -> Self {
        Self::DEFAULT
    }
}

// === impl GrpcClassifier ===

impl GrpcClassifier {
    /// The default failure codes (a constant, like [`HttpClassifier::DEFAULT`]).
    pub const DEFAULT: Self = Self::none()
        .with_failure(GrpcCode::DATA_LOSS)
        .with_failure(GrpcCode::DEADLINE_EXCEEDED)
        .with_failure(GrpcCode::INTERNAL)
        .with_failure(GrpcCode::PERMISSION_DENIED)
        .with_failure(GrpcCode::UNAVAILABLE)
        .with_failure(GrpcCode::UNKNOWN);

    /// A classifier with no failure codes.
    pub const fn none() -> Self {
        Self { failures: 0 }
    }

    /// Adds `code` to the failure set (undefined codes are treated as `UNKNOWN`).
    #[must_use]
    pub const fn with_failure(mut self, code: GrpcCode) -> Self {
        self.failures |= Self::bit(code);
        self
    }

    const fn bit(code: GrpcCode) -> u32 {
        if code.is_defined() {
            1 << code.as_u32()
        } else {
            GRPC_UNDEFINED_BIT | (1 << GrpcCode::UNKNOWN.as_u32())
        }
    }

    /// Whether `code` is a failure.
    pub const fn is_failure(&self, code: GrpcCode) -> bool {
        let code = if code.is_defined() {
            code
        } else {
            GrpcCode::UNKNOWN
        };
        self.failures & (1 << code.as_u32()) != 0
    }

    fn class(&self, status: StatusCode, code: Option<GrpcCode>) -> Class {
        match code {
            Some(code) => Class::grpc(status, Some(code), !self.is_failure(code)),
            None => Class::grpc(status, None, false),
        }
    }
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        Self::DEFAULT
    }
}

// === impl DefaultClassify ===

impl Classify for DefaultClassify {
    type ClassifyResponse = ResponseClassifier;

    fn classify<B>(&self, req: &Request<B>) -> ResponseClassifier {
        self.classify_protocol(Protocol::of(req))
    }

    fn classify_with_protocol<B>(&self, _: &Request<B>, protocol: Protocol) -> ResponseClassifier {
        self.classify_protocol(protocol)
    }
}

impl DefaultClassify {
    /// The classifier of a request of `protocol` (what [`Classify::classify`] returns for a
    /// request whose [`Protocol::of`] is `protocol`).
    pub fn classify_protocol(&self, protocol: Protocol) -> ResponseClassifier {
        if protocol.is_grpc() {
            ResponseClassifier::Grpc(self.grpc)
        } else {
            ResponseClassifier::Http(self.http)
        }
    }
}

// === impl ResponseClassifier ===

impl ClassifyResponse for ResponseClassifier {
    type ClassifyEos = EosClassifier;

    fn start<B>(self, rsp: &Response<B>) -> EosClassifier {
        let status = rsp.status();
        let grpc = matches!(self, Self::Grpc(_));
        if let Some(err) = rsp.extensions().get::<ProxyError>() {
            let code = grpc.then(|| grpc_status(rsp.headers()).unwrap_or(err.grpc_code()));
            return EosClassifier::Done(Class::failed(Some(status), code, err.kind()));
        }
        match self {
            Self::Http(c) => EosClassifier::Done(Class::http(status, !c.is_failure(status))),
            Self::Grpc(c) => {
                if let Some(code) = grpc_status(rsp.headers()) {
                    EosClassifier::Done(c.class(status, Some(code)))
                } else if status != StatusCode::OK {
                    EosClassifier::Done(c.class(status, Some(GrpcCode::from_http_status(status))))
                } else {
                    EosClassifier::Grpc {
                        status,
                        classifier: c,
                    }
                }
            }
        }
    }

    fn error(self, err: &(dyn Error + 'static)) -> Class {
        let e = to_proxy_error(err);
        let grpc = matches!(self, Self::Grpc(_)).then(|| e.grpc_code());
        let status = e.h2_reset_reason().is_none().then(|| e.http_status());
        Class::failed(status, grpc, e.kind())
    }
}

// === impl PackedClassifier ===

impl PackedClassifier {
    /// The classifier.
    pub fn unpack(&self) -> ResponseClassifier {
        match &self.0 {
            Packed::DefaultHttp => ResponseClassifier::Http(HttpClassifier::DEFAULT),
            Packed::Grpc(c) => ResponseClassifier::Grpc(*c),
            Packed::Http(c) => ResponseClassifier::Http(**c),
        }
    }
}

impl From<ResponseClassifier> for PackedClassifier {
    fn from(c: ResponseClassifier) -> Self {
        Self(match c {
            ResponseClassifier::Grpc(c) => Packed::Grpc(c),
            ResponseClassifier::Http(c) if c == HttpClassifier::DEFAULT => Packed::DefaultHttp,
            ResponseClassifier::Http(c) => Packed::Http(Box::new(c)),
        })
    }
}

impl ClassifyResponse for PackedClassifier {
    type ClassifyEos = EosClassifier;

    fn start<B>(self, rsp: &Response<B>) -> EosClassifier {
        self.unpack().start(rsp)
    }

    fn error(self, err: &(dyn Error + 'static)) -> Class {
        self.unpack().error(err)
    }
}

// === impl EosClassifier ===

impl ClassifyEos for EosClassifier {
    fn eos(self, trailers: Option<&HeaderMap>) -> Class {
        match self {
            Self::Done(class) => class,
            Self::Grpc { status, classifier } => {
                classifier.class(status, trailers.and_then(grpc_status))
            }
        }
    }

    fn error(self, err: &(dyn Error + 'static)) -> Class {
        let kind = to_proxy_error(err).kind();
        let (status, grpc) = match &self {
            Self::Done(c) => (c.http_status, c.grpc_status),
            Self::Grpc { status, .. } => (Some(*status), None),
        };
        Class::failed(status, grpc, kind)
    }

    fn cancelled(self) -> Class {
        let (status, grpc) = match &self {
            Self::Done(c) => (c.http_status, c.grpc_status),
            Self::Grpc { status, .. } => (Some(*status), None),
        };
        Class::failed(status, grpc, ProxyErrorKind::Cancel)
    }
}
