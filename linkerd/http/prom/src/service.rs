use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use prometheus_client::{encoding, registry::Registry};
use std::{
    convert::Infallible,
    fmt,
    future::{Ready, ready},
    sync::Arc,
    task::{Context, Poll},
};

/// The `Content-Type` of an OpenMetrics scrape.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `Content-Type` of a Prometheus text (0.0.4) scrape.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A text exposition format.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (the default).
    OpenMetrics,
    /// Prometheus text 0.0.4.
    Prometheus,
}

/// A tower service answering every `GET`/`HEAD` with the registry's samples (DESIGN.md
/// section 6); other methods get `405 Method Not Allowed`.
///
/// The format follows the request's `Accept` header: Prometheus text when `text/plain` is
/// preferred (a higher q-value) over `application/openmetrics-text`, OpenMetrics otherwise
/// (also without `Accept`, with `*/*`, or when neither is acceptable). Routing (serving it at
/// `/metrics` only) is the caller's job.
///
/// # Errors
/// Never fails (`Infallible`); a registry that fails to encode (a custom metric returning
/// `fmt::Error`) is answered with `500`.
///
/// # Readiness
/// Always ready.
#[derive(Clone)]
pub struct MetricsService {
    registry: Arc<Registry>,
}

// === impl Format ===

impl Format {
    /// The format a scraper asks for with `headers`' `Accept`.
    pub fn negotiate(headers: &HeaderMap) -> Self {
        let mut openmetrics = Preference::default();
        let mut text = Preference::default();
        for value in headers.get_all(header::ACCEPT) {
            let Ok(value) = value.to_str() else { continue };
            for range in value.split(',') {
                let mut parts = range.split(';');
                let media = parts.next().unwrap_or("").trim();
                let mut q = 1.0_f32;
                for param in parts {
                    if let Some((k, v)) = param.split_once('=')
                        && k.trim().eq_ignore_ascii_case("q")
                    {
                        q = v.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0);
                    }
                }
                openmetrics.offer(media, "application", "openmetrics-text", q);
                text.offer(media, "text", "plain", q);
            }
        }
        if text.q() > openmetrics.q() {
            Self::Prometheus
        } else {
            Self::OpenMetrics
        }
    }

    /// The response `Content-Type` of this format.
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Self::Prometheus => PROMETHEUS_CONTENT_TYPE,
        }
    }

    /// Encodes `registry` in this format.
    ///
    /// # Errors
    /// When a metric fails to encode itself.
    pub fn encode(self, registry: &Registry) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(4096);
        match self {
            Self::OpenMetrics => encoding::text::encode(&mut out, registry)?,
            Self::Prometheus => encoding::prometheus_text::encode(&mut out, registry)?,
        }
        Ok(out)
    }
}

/// The q-value of the most specific media range matching one media type (RFC 9110
/// section 12.5.1).
#[derive(Default)]
struct Preference {
    specificity: u8,
    q: f32,
}

impl Preference {
    fn offer(&mut self, range: &str, ty: &str, subtype: &str, q: f32) {
        let (rt, rs) = range.split_once('/').unwrap_or((range, ""));
        let specificity = if rt.eq_ignore_ascii_case(ty) && rs.eq_ignore_ascii_case(subtype) {
            3
        } else if rt.eq_ignore_ascii_case(ty) && rs == "*" {
            2
        } else if rt == "*" && rs == "*" {
            1
        } else {
            return;
        };
        if specificity > self.specificity || (specificity == self.specificity && q > self.q) {
            self.specificity = specificity;
            self.q = q;
        }
    }

    fn q(&self) -> f32 {
        self.q
    }
}

// === impl MetricsService ===

impl MetricsService {
    /// Serves `registry`; register every family before wrapping it in the `Arc`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    /// The registry served.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Builds the response to a request with `method` and `headers`.
    pub fn respond(&self, method: &Method, headers: &HeaderMap) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            let mut rsp = Response::new(Full::default());
            *rsp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            rsp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return rsp;
        }
        let format = Format::negotiate(headers);
        let Ok(text) = format.encode(&self.registry) else {
            let mut rsp = Response::new(Full::default());
            *rsp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return rsp;
        };
        let len = text.len();
        let body = if method == Method::HEAD {
            Full::default()
        } else {
            Full::new(Bytes::from(text))
        };
        let mut rsp = Response::new(body);
        let h = rsp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        rsp
    }
}

impl fmt::Debug for MetricsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsService").finish_non_exhaustive()
    }
}

impl<B> tower_service::Service<Request<B>> for MetricsService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ready(Ok(self.respond(req.method(), req.headers())))
    }
}
