use crate::{GrpcCode, Protocol, ProxyError};
use http::{HeaderValue, Response, StatusCode, header};

/// The response header naming the proxy's reason for a synthetic answer.
pub const L5D_PROXY_ERROR: &str = "l5d-proxy-error";

// === impl ProxyError ===

impl ProxyError {
    /// Builds the response a client of `protocol` receives for this error (DESIGN.md
    /// section 5), with an empty body `B::default()`:
    ///
    /// - HTTP: the error's status, `l5d-proxy-error: <message>` and `content-length: 0`;
    /// - gRPC: `200 OK`, trailers-only: `content-type: application/grpc`, `grpc-status`,
    ///   `grpc-message` (percent-encoded per the gRPC spec) and `l5d-proxy-error`.
    ///
    /// The `ProxyError` itself is inserted into the response extensions so outer layers
    /// (metrics, access log) can read the reason.
    ///
    /// Upstream resets are answered by resetting an HTTP/2 client's stream instead (see
    /// [`ProxyError::h2_reset_reason`]); callers decide that before calling this.
    pub fn to_response<B: Default>(&self, protocol: Protocol) -> Response<B> {
        let mut rsp = Response::new(B::default());
        let message = header_value(self.message());
        if protocol == Protocol::Grpc {
            *rsp.status_mut() = StatusCode::OK;
            let h = rsp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            h.insert("grpc-status", self.grpc_code().to_header_value());
            h.insert("grpc-message", grpc_message(self.message()));
            h.insert(L5D_PROXY_ERROR, message);
        } else {
            *rsp.status_mut() = self.http_status();
            let h = rsp.headers_mut();
            h.insert(L5D_PROXY_ERROR, message);
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        rsp.extensions_mut().insert(self.clone());
        rsp
    }
}

/// A header value from arbitrary text: characters a header value cannot carry are replaced
/// by `?`, so a configured message never makes the answer fail.
fn header_value(text: &str) -> HeaderValue {
    let clean: String = text
        .chars()
        .map(|c| {
            if c == '\t' || (' '..='~').contains(&c) {
                c
            } else {
                '?'
            }
        })
        .collect();
    HeaderValue::try_from(clean).unwrap_or_else(|_| HeaderValue::from_static("proxy error"))
}

/// Percent-encodes a `grpc-message` value per the gRPC HTTP/2 spec: bytes outside
/// `0x20..=0x7E`, and `%` itself, become `%XX`.
pub fn grpc_message(text: &str) -> HeaderValue {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::try_from(out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Reads `grpc-status` from a header map (response headers or trailers).
///
/// A value that is not a number is reported as `UNKNOWN`, as the gRPC spec asks clients to
/// treat unknown codes; `None` when the header is absent.
pub fn grpc_status(headers: &http::HeaderMap) -> Option<GrpcCode> {
    const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
    headers
        .get(GRPC_STATUS)
        .map(|v| GrpcCode::from_header(v.as_bytes()).unwrap_or(GrpcCode::UNKNOWN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_form() {
        let rsp: Response<()> = ProxyError::no_route().to_response(Protocol::Http1);
        assert_eq!(rsp.status(), 404);
        assert_eq!(rsp.headers()[L5D_PROXY_ERROR], "no route");
        assert_eq!(rsp.headers()[header::CONTENT_LENGTH], "0");
        assert_eq!(
            rsp.extensions().get::<ProxyError>(),
            Some(&ProxyError::no_route()),
            "the error travels on the response"
        );
    }

    #[test]
    fn grpc_form() {
        let rsp: Response<()> = ProxyError::load_shed().to_response(Protocol::Grpc);
        assert_eq!(rsp.status(), 200, "gRPC errors are trailers-only 200s");
        assert_eq!(rsp.headers()["grpc-status"], "14");
        assert_eq!(rsp.headers()["grpc-message"], "unavailable");
        assert_eq!(rsp.headers()[L5D_PROXY_ERROR], "unavailable");
        assert_eq!(rsp.headers()[header::CONTENT_TYPE], "application/grpc");
    }

    #[test]
    fn odd_messages_never_fail() {
        let e = ProxyError::injected(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            Some("bad\nnews 100% ü".into()),
        );
        let rsp: Response<()> = e.to_response(Protocol::Http2);
        assert_eq!(rsp.headers()[L5D_PROXY_ERROR], "bad?news 100% ?");
        let rsp: Response<()> = e.to_response(Protocol::Grpc);
        assert_eq!(rsp.headers()["grpc-message"], "bad%0Anews 100%25 %C3%BC");
        assert_eq!(
            rsp.headers()["grpc-status"],
            "14",
            "503 maps to UNAVAILABLE"
        );
    }

    #[test]
    fn reads_grpc_status() {
        let mut h = http::HeaderMap::new();
        assert_eq!(grpc_status(&h), None);
        h.insert("grpc-status", HeaderValue::from_static("5"));
        assert_eq!(grpc_status(&h), Some(GrpcCode::NOT_FOUND));
        h.insert("grpc-status", HeaderValue::from_static("x"));
        assert_eq!(grpc_status(&h), Some(GrpcCode::UNKNOWN));
    }
}
