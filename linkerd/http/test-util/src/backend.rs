//! The scripted backend: what it answers is chosen by request headers.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HeaderName, HeaderValue, TRAILER};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::server::State;
use crate::{BoxError, MockBody, collect_until_error};

/// Names of the headers that script the backend ([`TestServer::backend`](crate::TestServer::backend)).
///
/// Request headers (`x-test-*`) choose the answer; response headers (`x-backend-*`,
/// `x-echo-*`) report what the backend saw. See [the crate docs](crate#the-backend).
pub mod header {
    /// Request: the response status, e.g. `503` (default `200`).
    pub const STATUS: &str = "x-test-status";
    /// Request: milliseconds to wait before the response headers.
    pub const DELAY_MS: &str = "x-test-delay-ms";
    /// Request: answer with this many bytes of [`body_pattern`](crate::body_pattern) instead
    /// of echoing the request body.
    pub const BODY_LEN: &str = "x-test-body-len";
    /// Request: `<chunks>,<bytes>,<interval-ms>`: send the body as `chunks` data frames of
    /// `bytes` bytes of [`body_pattern`](crate::body_pattern), each after an `interval-ms`
    /// wait (the headers go out at once).
    pub const DRIP: &str = "x-test-drip";
    /// Request: `name=value[,name=value...]`: trailers to send after the body. Over HTTP/1.1
    /// hyper sends them only if the request carried `te: trailers`.
    pub const TRAILERS: &str = "x-test-trailers";
    /// Request: a reason (`CANCEL`, `REFUSED_STREAM`, ... or a number): the service fails with
    /// `h2::Error::from(reason)` before any response headers, so hyper resets the HTTP/2
    /// stream with it. Over HTTP/1.1 hyper closes the connection.
    pub const RESET_BEFORE_HEADERS: &str = "x-test-reset-before-headers";
    /// Request: a reason: the response headers and body data go out, then after a 100 ms pause
    /// (h2 discards a stream's unsent frames when it is reset, so the data leaves first) the
    /// body fails with `h2::Error::from(reason)` and hyper resets the HTTP/2 stream with it (no
    /// trailers are sent). Over HTTP/1.1 hyper aborts the connection mid-body.
    pub const RESET_AFTER_HEADERS: &str = "x-test-reset-after-headers";
    /// Request: a `content-length` value for the response whatever its body is, to produce a
    /// length mismatch; the body is then sent without a length hint.
    pub const CONTENT_LENGTH: &str = "x-test-content-length";

    /// Response: the backend's own address (`127.0.0.1:port`), to tell backends apart.
    pub const BACKEND_ADDR: &str = "x-backend-addr";
    /// Response: the request method the backend saw.
    pub const BACKEND_METHOD: &str = "x-backend-method";
    /// Response: the request URI the backend saw.
    pub const BACKEND_URI: &str = "x-backend-uri";
    /// Response: the request version the backend saw: `HTTP/1.1` or `HTTP/2.0`.
    pub const BACKEND_VERSION: &str = "x-backend-version";
    /// Response: prefix of the echoed request headers: request header `foo: bar` comes back as
    /// `x-echo-foo: bar` (every value, in order).
    pub const ECHO_PREFIX: &str = "x-echo-";
    /// Response: on a 400 for a malformed `x-test-*` header, says which one and why.
    pub const ERROR: &str = "x-test-error";
}

/// The largest body the backend generates for `x-test-body-len` or `x-test-drip` (64 MiB).
pub const MAX_GENERATED_BODY: u64 = 64 * 1024 * 1024;

/// The pause between the body data and the error for `x-test-reset-after-headers`.
const RESET_PAUSE: Duration = Duration::from_millis(100);

/// The deterministic bytes the backend sends for `x-test-body-len` and `x-test-drip`: byte `i`
/// is `b'a' + i % 26`, so a truncated or reordered body does not compare equal.
///
/// ```
/// assert_eq!(linkerd_http_test_util::body_pattern(28), "abcdefghijklmnopqrstuvwxyzab");
/// ```
#[must_use]
pub fn body_pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| b'a' + u8::try_from(i % 26).unwrap_or(0))
        .collect::<Vec<u8>>()
        .into()
}

/// Parses an HTTP/2 error code: a name such as `CANCEL` or `REFUSED_STREAM` (any case), or a
/// decimal number.
///
/// ```
/// use linkerd_http_test_util::parse_reason;
/// assert_eq!(parse_reason("cancel"), Some(h2::Reason::CANCEL));
/// assert_eq!(parse_reason("7"), Some(h2::Reason::REFUSED_STREAM));
/// assert_eq!(parse_reason("nope"), None);
/// ```
#[must_use]
pub fn parse_reason(value: &str) -> Option<h2::Reason> {
    use h2::Reason;
    let value = value.trim();
    if let Ok(code) = value.parse::<u32>() {
        return Some(Reason::from(code));
    }
    let reason = match value.to_ascii_uppercase().as_str() {
        "NO_ERROR" => Reason::NO_ERROR,
        "PROTOCOL_ERROR" => Reason::PROTOCOL_ERROR,
        "INTERNAL_ERROR" => Reason::INTERNAL_ERROR,
        "FLOW_CONTROL_ERROR" => Reason::FLOW_CONTROL_ERROR,
        "SETTINGS_TIMEOUT" => Reason::SETTINGS_TIMEOUT,
        "STREAM_CLOSED" => Reason::STREAM_CLOSED,
        "FRAME_SIZE_ERROR" => Reason::FRAME_SIZE_ERROR,
        "REFUSED_STREAM" => Reason::REFUSED_STREAM,
        "CANCEL" => Reason::CANCEL,
        "COMPRESSION_ERROR" => Reason::COMPRESSION_ERROR,
        "CONNECT_ERROR" => Reason::CONNECT_ERROR,
        "ENHANCE_YOUR_CALM" => Reason::ENHANCE_YOUR_CALM,
        "INADEQUATE_SECURITY" => Reason::INADEQUATE_SECURITY,
        "HTTP_1_1_REQUIRED" => Reason::HTTP_1_1_REQUIRED,
        _ => return None,
    };
    Some(reason)
}

/// What the `x-test-*` headers of one request ask for.
#[derive(Debug, Default)]
struct Script {
    status: Option<StatusCode>,
    delay: Option<Duration>,
    body_len: Option<usize>,
    drip: Option<Drip>,
    trailers: Option<HeaderMap>,
    reset_before_headers: Option<h2::Reason>,
    reset_after_headers: Option<h2::Reason>,
    content_length: Option<HeaderValue>,
}

#[derive(Debug)]
struct Drip {
    chunks: usize,
    chunk_len: usize,
    interval: Duration,
}

/// A malformed `x-test-*` header: which one, and why.
#[derive(Debug)]
struct BadHeader {
    name: &'static str,
    reason: &'static str,
}

/// Answers one request as its headers say; records it in `state` first.
pub(crate) async fn respond(
    req: Request<Incoming>,
    addr: SocketAddr,
    state: Arc<State>,
) -> Result<Response<MockBody>, BoxError> {
    let (parts, body) = req.into_parts();
    let index = state.record_head(&parts);
    let (collected, error) = collect_until_error(body).await;
    let error_text = error
        .as_ref()
        .map(|error| (error_chain(error), crate::h2_reason(error)));
    state.finish_body(
        index,
        collected.data.clone(),
        collected.trailers.clone(),
        error_text,
    );
    if let Some(error) = error {
        // The request stream is already broken; failing keeps the client's reason visible.
        return Err(error.into());
    }

    let script = match Script::parse(&parts.headers) {
        Ok(script) => script,
        Err(bad) => return Ok(bad_request(&bad)),
    };
    if let Some(delay) = script.delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(reason) = script.reset_before_headers {
        return Err(h2::Error::from(reason).into());
    }

    let mut rsp = Response::new(MockBody::new());
    *rsp.status_mut() = script.status.unwrap_or(StatusCode::OK);
    let headers = rsp.headers_mut();
    headers.insert(header::BACKEND_ADDR, value_of(&addr.to_string()));
    headers.insert(header::BACKEND_METHOD, value_of(parts.method.as_str()));
    headers.insert(header::BACKEND_URI, value_of(&parts.uri.to_string()));
    headers.insert(
        header::BACKEND_VERSION,
        value_of(&format!("{:?}", parts.version)),
    );
    for (name, value) in &parts.headers {
        let echo = format!("{}{}", header::ECHO_PREFIX, name.as_str());
        if let Ok(echo) = HeaderName::from_bytes(echo.as_bytes()) {
            headers.append(echo, value.clone());
        }
    }

    let mut body = MockBody::new();
    let mut len = 0;
    if let Some(drip) = &script.drip {
        let all = body_pattern(drip.chunks * drip.chunk_len);
        for chunk in 0..drip.chunks {
            let start = chunk * drip.chunk_len;
            body = body
                .delay(drip.interval)
                .data(all.slice(start..start + drip.chunk_len));
        }
        len = all.len();
    } else if let Some(body_len) = script.body_len {
        if body_len > 0 {
            body = body.data(body_pattern(body_len));
        }
        len = body_len;
    } else if !collected.data.is_empty() {
        len = collected.data.len();
        body = body.data(collected.data);
    }

    let mut length_known = script.drip.is_none() && script.content_length.is_none();
    if let Some(reason) = script.reset_after_headers {
        // h2 drops a stream's queued frames when it is reset: pause so the data leaves first.
        body = body.delay(RESET_PAUSE).error(h2::Error::from(reason));
        length_known = false;
    } else if let Some(trailers) = script.trailers {
        let names = trailers
            .keys()
            .map(HeaderName::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        headers.insert(TRAILER, value_of(&names));
        body = body.trailers(trailers);
        length_known = false;
    }
    if let Some(content_length) = script.content_length {
        headers.insert(CONTENT_LENGTH, content_length);
    }
    if length_known {
        body = body.with_exact_size(u64::try_from(len).unwrap_or(u64::MAX));
    }
    *rsp.body_mut() = body;
    Ok(rsp)
}

fn bad_request(bad: &BadHeader) -> Response<MockBody> {
    let text = format!("invalid {}: {}", bad.name, bad.reason);
    let mut rsp = Response::new(MockBody::new());
    *rsp.status_mut() = StatusCode::BAD_REQUEST;
    rsp.headers_mut().insert(header::ERROR, value_of(&text));
    let len = u64::try_from(text.len()).unwrap_or(u64::MAX);
    *rsp.body_mut() = MockBody::new().data(text).with_exact_size(len);
    rsp
}

/// A header value from text the backend built itself; falls back to an empty value.
fn value_of(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    // Bounded: error chains are short; the cap guards a cyclic one.
    for _ in 0..16 {
        let Some(source) = next else { break };
        let _ = write!(text, ": {source}");
        next = source.source();
    }
    text
}

// === impl Script ===

impl Script {
    fn parse(headers: &HeaderMap) -> Result<Self, BadHeader> {
        let mut script = Script::default();
        if let Some(text) = header_text(headers, header::STATUS)? {
            let status = text.parse::<u16>().ok().and_then(|code| {
                StatusCode::from_u16(code)
                    .ok()
                    .filter(|status| !status.is_informational())
            });
            script.status = Some(status.ok_or(BadHeader {
                name: header::STATUS,
                reason: "not a final status code (200-999)",
            })?);
        }
        if let Some(text) = header_text(headers, header::DELAY_MS)? {
            let ms = number(header::DELAY_MS, text)?;
            script.delay = Some(Duration::from_millis(ms));
        }
        if let Some(text) = header_text(headers, header::BODY_LEN)? {
            let len = number(header::BODY_LEN, text)?;
            script.body_len = Some(generated_len(header::BODY_LEN, len)?);
        }
        if let Some(text) = header_text(headers, header::DRIP)? {
            script.drip = Some(Drip::parse(text)?);
        }
        if let Some(text) = header_text(headers, header::TRAILERS)? {
            script.trailers = Some(parse_trailers(text)?);
        }
        if let Some(text) = header_text(headers, header::RESET_BEFORE_HEADERS)? {
            script.reset_before_headers = Some(reason(header::RESET_BEFORE_HEADERS, text)?);
        }
        if let Some(text) = header_text(headers, header::RESET_AFTER_HEADERS)? {
            script.reset_after_headers = Some(reason(header::RESET_AFTER_HEADERS, text)?);
        }
        if let Some(text) = header_text(headers, header::CONTENT_LENGTH)? {
            number(header::CONTENT_LENGTH, text)?;
            script.content_length = Some(value_of(text));
        }
        Ok(script)
    }
}

impl Drip {
    fn parse(text: &str) -> Result<Self, BadHeader> {
        let bad = BadHeader {
            name: header::DRIP,
            reason: "expected <chunks>,<bytes>,<interval-ms>",
        };
        let mut parts = text.split(',').map(str::trim);
        let (Some(chunks), Some(chunk_len), Some(interval), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad);
        };
        let (Ok(chunks), Ok(chunk_len), Ok(interval)) = (
            chunks.parse::<u64>(),
            chunk_len.parse::<u64>(),
            interval.parse::<u64>(),
        ) else {
            return Err(bad);
        };
        let total = chunks.saturating_mul(chunk_len);
        generated_len(header::DRIP, total)?;
        Ok(Self {
            chunks: generated_len(header::DRIP, chunks)?,
            chunk_len: generated_len(header::DRIP, chunk_len)?,
            interval: Duration::from_millis(interval),
        })
    }
}

fn header_text<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
) -> Result<Option<&'a str>, BadHeader> {
    headers
        .get(name)
        .map(|value| {
            value.to_str().map(str::trim).map_err(|_| BadHeader {
                name,
                reason: "not visible ASCII",
            })
        })
        .transpose()
}

fn number(name: &'static str, text: &str) -> Result<u64, BadHeader> {
    text.parse().map_err(|_| BadHeader {
        name,
        reason: "not a non-negative integer",
    })
}

fn generated_len(name: &'static str, len: u64) -> Result<usize, BadHeader> {
    let too_large = BadHeader {
        name,
        reason: "generated body larger than 64 MiB",
    };
    if len > MAX_GENERATED_BODY {
        return Err(too_large);
    }
    usize::try_from(len).map_err(|_| too_large)
}

fn reason(name: &'static str, text: &str) -> Result<h2::Reason, BadHeader> {
    parse_reason(text).ok_or(BadHeader {
        name,
        reason: "not an HTTP/2 error code name or number",
    })
}

fn parse_trailers(text: &str) -> Result<HeaderMap, BadHeader> {
    let bad = BadHeader {
        name: header::TRAILERS,
        reason: "expected name=value[,name=value...] with valid header names and values",
    };
    let mut trailers = HeaderMap::new();
    for pair in text.split(',').filter(|pair| !pair.trim().is_empty()) {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(bad);
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) else {
            return Err(bad);
        };
        trailers.append(name, value);
    }
    Ok(trailers)
}
