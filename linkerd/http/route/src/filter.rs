use crate::{BackendName, RouteMatch, RoutePathKind};
use http::{
    HeaderMap, HeaderName, HeaderValue, StatusCode, Uri,
    uri::{Authority, PathAndQuery, Scheme},
};
use linkerd_http_classify::GrpcCode;
use std::{borrow::Cow, sync::Arc, time::Duration};

/// A rule's filter (Gateway API `filters[]`, plus the `InjectFailure` extension).
#[derive(Clone, Debug)]
pub enum Filter {
    /// Edits the request headers before forwarding.
    RequestHeaderModifier(HeaderModifier),
    /// Edits the headers of every response of the rule, synthetic ones included.
    ResponseHeaderModifier(HeaderModifier),
    /// Answers with a redirect instead of forwarding (HTTPRoute only).
    RequestRedirect(RequestRedirect),
    /// Rewrites the host and/or path before forwarding (HTTPRoute only).
    UrlRewrite(UrlRewrite),
    /// Sends a copy of a share of requests to another backend, fire-and-forget.
    RequestMirror(RequestMirror),
    /// Fails and/or delays a share of requests (not in the Gateway API).
    InjectFailure(InjectFailure),
}

/// Header edits, Gateway API semantics: `set` replaces every value of the header, `add`
/// appends a value (keeping existing ones), `remove` deletes the header. Applied in that
/// order: set, add, remove.
#[derive(Clone, Debug, Default)]
pub struct HeaderModifier {
    /// Headers to overwrite.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Headers to append to.
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Headers to delete.
    pub remove: Vec<HeaderName>,
}

/// How a redirect or rewrite changes the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathModifier {
    /// The whole path becomes this value (the query string is kept).
    ReplaceFullPath(Arc<str>),
    /// The part of the path the rule's `PathPrefix` matched becomes this value: with prefix
    /// `/foo`, `/foo/bar` becomes `/xyz/bar` for `/xyz` (or `/xyz/`), `/bar` for an empty value.
    ReplacePrefixMatch(Arc<str>),
}

/// Answers with a redirect: `Location` built from the request and these fields (DESIGN.md
/// section 4.1).
#[derive(Clone, Debug)]
pub struct RequestRedirect {
    /// The scheme (`http` or `https`), else the request's (`http` when unknown).
    pub scheme: Option<Scheme>,
    /// The host, else the request's host without port.
    pub hostname: Option<Arc<str>>,
    /// The port; else the scheme's well-known port when `scheme` is set, else the router's
    /// listen port, else the request's port. A port equal to the scheme's default is omitted.
    pub port: Option<u16>,
    /// How the path changes; `None` keeps it.
    pub path: Option<PathModifier>,
    /// 301, 302 (the default), 303, 307 or 308.
    pub status: StatusCode,
}

/// Rewrites the request before it is forwarded.
#[derive(Clone, Debug, Default)]
pub struct UrlRewrite {
    /// Replaces the `Host` header and the URI authority.
    pub hostname: Option<Arc<str>>,
    /// Rewrites the path (the query string is kept).
    pub path: Option<PathModifier>,
}

/// Mirrors a share of requests to `backend` (see [`MirrorService`](crate::MirrorService)).
#[derive(Clone, Debug)]
pub struct RequestMirror {
    /// The backend that receives the copies (set as the copy's [`BackendName`] extension).
    pub backend: BackendName,
    /// The share of requests mirrored, in `[0, 1]`.
    pub ratio: f64,
}

/// Fails and/or delays a share of requests.
///
/// Each request draws independently for the delay and for the abort; a request that draws both
/// is delayed, then failed.
#[derive(Clone, Debug, Default)]
pub struct InjectFailure {
    /// Answer with an error instead of forwarding.
    pub abort: Option<InjectAbort>,
    /// Wait before forwarding (or before the injected answer).
    pub delay: Option<InjectDelay>,
}

/// The failure half of [`InjectFailure`].
#[derive(Clone, Debug)]
pub struct InjectAbort {
    /// The HTTP status of the answer.
    pub status: StatusCode,
    /// The gRPC code for gRPC clients; `None` maps `status` as the gRPC spec does (503 ->
    /// `UNAVAILABLE`).
    pub grpc: Option<GrpcCode>,
    /// The `l5d-proxy-error` (and `grpc-message`) text; default `injected failure`.
    pub message: Option<Cow<'static, str>>,
    /// The share of requests failed, in `[0, 1]`.
    pub ratio: f64,
}

/// The latency half of [`InjectFailure`].
#[derive(Clone, Debug)]
pub struct InjectDelay {
    /// How long to wait.
    pub delay: Duration,
    /// The share of requests delayed, in `[0, 1]`.
    pub ratio: f64,
}

// === impl HeaderModifier ===

impl HeaderModifier {
    /// Applies the edits to `headers`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

// === impl PathModifier ===

impl PathModifier {
    /// The new path for `path`, given the route match that selected the rule.
    pub fn apply(&self, path: &str, matched: &RouteMatch) -> String {
        match self {
            Self::ReplaceFullPath(p) => p.to_string(),
            Self::ReplacePrefixMatch(replacement) => {
                if matched.path_kind() != RoutePathKind::Prefix || matched.path_len() > path.len() {
                    // Validation forbids this; keep the path rather than guess.
                    return path.to_owned();
                }
                let rest = &path[matched.path_len()..];
                let replacement = replacement.strip_suffix('/').unwrap_or(replacement);
                let mut out = String::with_capacity(replacement.len() + rest.len() + 1);
                out.push_str(replacement);
                out.push_str(rest);
                if out.is_empty() {
                    out.push('/');
                }
                out
            }
        }
    }
}

fn with_query(path: String, uri: &Uri) -> String {
    match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

// === impl RequestRedirect ===

/// The request's host (URI authority, else `Host` header) without its port, and that port.
pub(crate) fn request_host(uri: &Uri, headers: &HeaderMap) -> Option<(String, Option<u16>)> {
    if let Some(a) = uri.authority() {
        return Some((a.host().to_owned(), a.port_u16()));
    }
    let host = headers.get(http::header::HOST)?.to_str().ok()?;
    let a: Authority = host.parse().ok()?;
    Some((a.host().to_owned(), a.port_u16()))
}

fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else {
        None
    }
}

impl RequestRedirect {
    /// A 302 redirect that keeps everything (configure fields to change parts).
    pub fn new() -> Self {
        Self {
            scheme: None,
            hostname: None,
            port: None,
            path: None,
            status: StatusCode::FOUND,
        }
    }

    /// The `Location` for a request with `uri` and `headers`, matched as `matched`;
    /// `listen_port` is the proxy's listening port, if known.
    pub fn location(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        matched: &RouteMatch,
        listen_port: Option<u16>,
    ) -> Option<HeaderValue> {
        let scheme = self
            .scheme
            .as_ref()
            .map(Scheme::as_str)
            .or_else(|| uri.scheme_str())
            .unwrap_or("http");
        let req_host = request_host(uri, headers);
        let host = match (&self.hostname, &req_host) {
            (Some(h), _) => h.to_string(),
            (None, Some((h, _))) => h.clone(),
            (None, None) => String::new(),
        };
        let port = self
            .port
            .or_else(|| self.scheme.as_ref().and_then(|s| default_port(s.as_str())))
            .or(listen_port)
            .or_else(|| req_host.as_ref().and_then(|(_, p)| *p));
        let path = match &self.path {
            Some(m) => m.apply(uri.path(), matched),
            None => uri.path().to_owned(),
        };
        let path = with_query(path, uri);
        let location = if host.is_empty() {
            // Without a host only a relative reference can be given (RFC 9110 section 10.2.2).
            path
        } else {
            match port {
                Some(p) if Some(p) != default_port(scheme) => {
                    format!("{scheme}://{host}:{p}{path}")
                }
                _ => format!("{scheme}://{host}{path}"),
            }
        };
        HeaderValue::try_from(location).ok()
    }
}

impl Default for RequestRedirect {
    fn default() -> Self {
        Self::new()
    }
}

// === impl UrlRewrite ===

impl UrlRewrite {
    /// Rewrites `req`'s host and path.
    pub fn apply<B>(&self, req: &mut http::Request<B>, matched: &RouteMatch) {
        if self.hostname.is_none() && self.path.is_none() {
            return;
        }
        let mut parts = req.uri().clone().into_parts();
        if let Some(host) = &self.hostname {
            if let Ok(v) = HeaderValue::from_str(host) {
                req.headers_mut().insert(http::header::HOST, v);
            }
            if parts.authority.is_some()
                && let Ok(a) = Authority::try_from(&**host)
            {
                parts.authority = Some(a);
            }
        }
        if let Some(modifier) = &self.path {
            let path = with_query(modifier.apply(req.uri().path(), matched), req.uri());
            if let Ok(pq) = PathAndQuery::try_from(path) {
                parts.path_and_query = Some(pq);
            }
        }
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

// === impl InjectAbort ===

impl InjectAbort {
    /// The error the router answers with.
    pub fn to_proxy_error(&self) -> linkerd_http_classify::ProxyError {
        linkerd_http_classify::ProxyError::injected(self.status, self.grpc, self.message.clone())
    }
}

/// The HTTP status an injected gRPC code is answered with for a non-gRPC client.
pub fn http_status_for_grpc(code: GrpcCode) -> StatusCode {
    match code {
        GrpcCode::OK => StatusCode::OK,
        GrpcCode::INVALID_ARGUMENT | GrpcCode::FAILED_PRECONDITION | GrpcCode::OUT_OF_RANGE => {
            StatusCode::BAD_REQUEST
        }
        GrpcCode::UNAUTHENTICATED => StatusCode::UNAUTHORIZED,
        GrpcCode::PERMISSION_DENIED => StatusCode::FORBIDDEN,
        GrpcCode::NOT_FOUND => StatusCode::NOT_FOUND,
        GrpcCode::ALREADY_EXISTS | GrpcCode::ABORTED => StatusCode::CONFLICT,
        GrpcCode::RESOURCE_EXHAUSTED => StatusCode::TOO_MANY_REQUESTS,
        GrpcCode::CANCELLED => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        GrpcCode::UNIMPLEMENTED => StatusCode::NOT_IMPLEMENTED,
        GrpcCode::UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
        GrpcCode::DEADLINE_EXCEEDED => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
