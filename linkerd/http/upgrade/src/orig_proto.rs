//! HTTP/1.x requests carried between two proxies over HTTP/2 (`l5d-orig-proto`).

use crate::{AbsoluteForm, headers};
use http::{
    HeaderValue, Method, Request, Response, Uri, Version, header,
    header::HeaderName,
    uri::{Authority, PathAndQuery, Scheme},
};
use linkerd_http_classify::{
    BoxError, Protocol, ProxyError, ProxyErrorKind, find_proxy_error, to_proxy_error,
};
use pin_project_lite::pin_project;
use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

/// The header recording an HTTP/1 request's original version between two proxies:
/// `HTTP/1.1` or `HTTP/1.0`, followed by `; absolute-form` when the client used it.
pub const L5D_ORIG_PROTO: HeaderName = HeaderName::from_static("l5d-orig-proto");

/// Applies [`OrigProtoUpgrade`].
#[derive(Clone, Debug, Default)]
pub struct OrigProtoUpgradeLayer(());

/// The sending side of orig-proto: turns HTTP/1.x requests into HTTP/2 requests for a peer
/// proxy, recording the original version in [`L5D_ORIG_PROTO`].
///
/// The inner service is an HTTP/2 client to a proxy running [`OrigProtoDowngrade`]. A request
/// is upgraded unless it is a tunnel (`CONNECT`, or an `Upgrade` request): those are passed
/// through unchanged, since they cannot be multiplexed as ordinary HTTP/2 streams.
/// Hop-by-hop headers are removed (HTTP/2 forbids them, RFC 9113 section 8.2.2); the URI gets
/// `http` and the `Host` authority when it has none (HTTP/2 needs `:scheme`).
///
/// # Errors
///
/// The HTTP/1 client cannot receive an HTTP/2 reset, so an upstream stream reset and a failed
/// connection are answered with `502` (`l5d-proxy-error: upstream reset (<REASON>)` or
/// `connect failed`). Other errors, including any that already carry a [`ProxyError`],
/// are returned as [`BoxError`] for the stack's error mapping.
#[derive(Clone, Debug)]
pub struct OrigProtoUpgrade<S> {
    inner: S,
}

/// Applies [`OrigProtoDowngrade`].
#[derive(Clone, Debug, Default)]
pub struct OrigProtoDowngradeLayer(());

/// The receiving side of orig-proto: turns an HTTP/2 request carrying [`L5D_ORIG_PROTO`]
/// back into the HTTP/1.x request it was, removing the header so the application never
/// sees it.
///
/// The request gets its original version and, if it was absolute-form, the [`AbsoluteForm`]
/// extension (so [`to_origin_form`](crate::to_origin_form) keeps it absolute). Requests
/// without the header pass through. A header that does not parse is answered with `400`
/// (`bad request: invalid l5d-orig-proto`). The response loses its hop-by-hop headers,
/// which an HTTP/2 response cannot carry.
#[derive(Clone, Debug)]
pub struct OrigProtoDowngrade<S> {
    inner: S,
}

pin_project! {
    /// The response future of [`OrigProtoUpgrade`].
    pub struct OrigProtoUpgradeFuture<F> {
        #[pin]
        fut: F,
        // The client's version, or `None` when the request was passed through.
        version: Option<Version>,
    }
}

pin_project! {
    /// The response future of [`OrigProtoDowngrade`].
    pub struct OrigProtoDowngradeFuture<F, B> {
        #[pin]
        state: DowngradeState<F, B>,
    }
}

pin_project! {
    #[project = DowngradeProj]
    enum DowngradeState<F, B> {
        Ready { rsp: Option<Response<B>> },
        Inner { #[pin] fut: F, downgraded: bool },
    }
}

// === impl OrigProtoUpgradeLayer ===

impl OrigProtoUpgradeLayer {
    /// The layer.
    #[must_use]
    pub const fn new() -> Self {
        Self(())
    }
}

impl<S> tower_layer::Layer<S> for OrigProtoUpgradeLayer {
    type Service = OrigProtoUpgrade<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OrigProtoUpgrade { inner }
    }
}

// === impl OrigProtoUpgrade ===

impl<S> OrigProtoUpgrade<S> {
    /// Wraps the HTTP/2 client `inner`.
    pub const fn new(inner: S) -> Self {
        Self { inner }
    }

    /// A layer: a shortcut for [`OrigProtoUpgradeLayer::new`].
    #[must_use]
    pub const fn layer() -> OrigProtoUpgradeLayer {
        OrigProtoUpgradeLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> tower_service::Service<Request<B>> for OrigProtoUpgrade<S>
where
    S: tower_service::Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = OrigProtoUpgradeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let version = req.version();
        let is_http1 = version == Version::HTTP_11 || version == Version::HTTP_10;
        let is_tunnel = req.method() == Method::CONNECT
            || (req.headers().contains_key(header::UPGRADE)
                && headers::connection_has(req.headers(), "upgrade"));
        if !is_http1 || is_tunnel {
            req.headers_mut().remove(L5D_ORIG_PROTO);
            return OrigProtoUpgradeFuture {
                fut: self.inner.call(req),
                version: None,
            };
        }
        let absolute = req.extensions().get::<AbsoluteForm>().is_some();
        let value = match (version == Version::HTTP_10, absolute) {
            (false, false) => "HTTP/1.1",
            (false, true) => "HTTP/1.1; absolute-form",
            (true, false) => "HTTP/1.0",
            (true, true) => "HTTP/1.0; absolute-form",
        };
        headers::strip(req.headers_mut(), false);
        req.headers_mut()
            .insert(L5D_ORIG_PROTO, HeaderValue::from_static(value));
        *req.version_mut() = Version::HTTP_2;
        if req.uri().scheme().is_none() {
            absolute_from_host(&mut req);
        }
        OrigProtoUpgradeFuture {
            fut: self.inner.call(req),
            version: Some(version),
        }
    }
}

/// Gives an origin-form URI `http` and the `Host` authority, as HTTP/2 needs `:scheme`.
fn absolute_from_host<B>(req: &mut Request<B>) {
    let Some(authority) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
    else {
        return;
    };
    let mut parts = req.uri().clone().into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

impl<F, B, E> Future for OrigProtoUpgradeFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Default,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.fut.poll(cx));
        let Some(version) = *this.version else {
            return Poll::Ready(res.map_err(Into::into));
        };
        match res {
            Ok(mut rsp) => {
                rsp.headers_mut().remove(L5D_ORIG_PROTO);
                *rsp.version_mut() = version;
                Poll::Ready(Ok(rsp))
            }
            Err(error) => {
                let error: BoxError = error.into();
                if find_proxy_error(&*error).is_some() {
                    return Poll::Ready(Err(error));
                }
                let mapped = to_proxy_error(&*error);
                match mapped.kind() {
                    ProxyErrorKind::Reset(_) | ProxyErrorKind::ConnectFailed => {
                        tracing::debug!(%error, "orig-proto request failed");
                        Poll::Ready(Ok(mapped.to_response(Protocol::Http1)))
                    }
                    _ => Poll::Ready(Err(error)),
                }
            }
        }
    }
}

impl<F> fmt::Debug for OrigProtoUpgradeFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrigProtoUpgradeFuture")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

// === impl OrigProtoDowngradeLayer ===

impl OrigProtoDowngradeLayer {
    /// The layer.
    #[must_use]
    pub const fn new() -> Self {
        Self(())
    }
}

impl<S> tower_layer::Layer<S> for OrigProtoDowngradeLayer {
    type Service = OrigProtoDowngrade<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OrigProtoDowngrade { inner }
    }
}

// === impl OrigProtoDowngrade ===

impl<S> OrigProtoDowngrade<S> {
    /// Wraps `inner`, which receives the downgraded HTTP/1.x requests.
    pub const fn new(inner: S) -> Self {
        Self { inner }
    }

    /// A layer: a shortcut for [`OrigProtoDowngradeLayer::new`].
    #[must_use]
    pub const fn layer() -> OrigProtoDowngradeLayer {
        OrigProtoDowngradeLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> tower_service::Service<Request<B>> for OrigProtoDowngrade<S>
where
    S: tower_service::Service<Request<B>, Response = Response<RB>>,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = OrigProtoDowngradeFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let Some(value) = req.headers_mut().remove(L5D_ORIG_PROTO) else {
            return OrigProtoDowngradeFuture {
                state: DowngradeState::Inner {
                    fut: self.inner.call(req),
                    downgraded: false,
                },
            };
        };
        let Some((version, absolute)) = parse_orig_proto(&value) else {
            let protocol = Protocol::of(&req);
            let rsp = ProxyError::bad_request("invalid l5d-orig-proto").to_response(protocol);
            return OrigProtoDowngradeFuture {
                state: DowngradeState::Ready { rsp: Some(rsp) },
            };
        };
        *req.version_mut() = version;
        if absolute {
            req.extensions_mut().insert(AbsoluteForm);
        }
        if !req.headers().contains_key(header::HOST)
            && let Some(host) = req
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            req.headers_mut().insert(header::HOST, host);
        }
        OrigProtoDowngradeFuture {
            state: DowngradeState::Inner {
                fut: self.inner.call(req),
                downgraded: true,
            },
        }
    }
}

/// Parses `HTTP/1.1` / `HTTP/1.0`, optionally followed by `; absolute-form`.
fn parse_orig_proto(value: &HeaderValue) -> Option<(Version, bool)> {
    let mut parts = value.to_str().ok()?.split(';').map(str::trim);
    let version = match parts.next()? {
        "HTTP/1.1" => Version::HTTP_11,
        "HTTP/1.0" => Version::HTTP_10,
        _ => return None,
    };
    let mut absolute = false;
    for flag in parts {
        if flag.eq_ignore_ascii_case("absolute-form") {
            absolute = true;
        } else if !flag.is_empty() {
            return None;
        }
    }
    Some((version, absolute))
}

impl<F, B, E> Future for OrigProtoDowngradeFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            DowngradeProj::Ready { rsp } => match rsp.take() {
                Some(rsp) => Poll::Ready(Ok(rsp)),
                None => Poll::Pending,
            },
            DowngradeProj::Inner { fut, downgraded } => {
                let mut rsp = std::task::ready!(fut.poll(cx))?;
                if *downgraded {
                    headers::strip(rsp.headers_mut(), false);
                    rsp.headers_mut().remove(L5D_ORIG_PROTO);
                    *rsp.version_mut() = Version::HTTP_2;
                }
                Poll::Ready(Ok(rsp))
            }
        }
    }
}

impl<F, B> fmt::Debug for OrigProtoDowngradeFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrigProtoDowngradeFuture")
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_orig_proto_values() {
        let cases = [
            ("HTTP/1.1", Some((Version::HTTP_11, false))),
            ("HTTP/1.0", Some((Version::HTTP_10, false))),
            ("HTTP/1.1; absolute-form", Some((Version::HTTP_11, true))),
            ("HTTP/1.0;absolute-form", Some((Version::HTTP_10, true))),
            ("HTTP/2", None),
            ("HTTP/1.1; bogus", None),
            ("", None),
        ];
        for (value, want) in cases {
            assert_eq!(
                parse_orig_proto(&HeaderValue::from_static(value)),
                want,
                "parsing {value:?}"
            );
        }
    }
}
