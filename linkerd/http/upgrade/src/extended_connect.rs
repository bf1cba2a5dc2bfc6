//! Tunnels to an HTTP/2 upstream over extended CONNECT (RFC 8441).

use crate::{
    headers::{self, upgrade_protocols},
    websocket,
};
use http::{
    HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header,
    uri::{Authority, PathAndQuery, Scheme},
};
use hyper::rt::{Read, Write, bounds::Http2ClientConnExec};
use linkerd_http_classify::{Protocol, ProxyError};
use pin_project_lite::pin_project;
use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

/// Whether an HTTP/2 upstream connection advertises extended CONNECT
/// (`SETTINGS_ENABLE_CONNECT_PROTOCOL`, RFC 8441 section 3).
///
/// hyper only exposes the setting on its connection future, so drive the connection with
/// [`WatchConnectProtocol`], which keeps this flag up to date, and give a clone to
/// [`ExtendedConnectLayer`].
#[derive(Clone, Debug, Default)]
pub struct ConnectProtocolFlag(Arc<AtomicBool>);

pin_project! {
    /// Drives a `hyper::client::conn::http2::Connection` and records in a
    /// [`ConnectProtocolFlag`] whether the server advertises extended CONNECT.
    ///
    /// Spawn it in place of the bare connection future. hyper processes HTTP/2 frames in a
    /// task of its own and polls this future only when a request is sent, so until the
    /// server's setting has been seen (at most [`WatchConnectProtocol::REFRESHES`] times) it
    /// also re-reads the setting every [`WatchConnectProtocol::REFRESH_INTERVAL`]; a tunnel
    /// request sent before the server's first `SETTINGS` frame arrived is answered `502`.
    pub struct WatchConnectProtocol<T, B, E>
    where
        T: Read,
        T: Write,
        T: Unpin,
        B: http_body::Body,
        B: 'static,
        E: Http2ClientConnExec<B, T>,
        E: Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        #[pin]
        conn: hyper::client::conn::http2::Connection<T, B, E>,
        flag: ConnectProtocolFlag,
        #[pin]
        refresh: tokio::time::Sleep,
        refreshes_left: u32,
    }
}

/// Applies [`ExtendedConnect`]: place it right above the HTTP/2 client of one upstream
/// connection.
#[derive(Clone, Debug)]
pub struct ExtendedConnectLayer {
    flag: ConnectProtocolFlag,
}

/// Sends the proxy's HTTP/1.1-form tunnel requests to an HTTP/2 upstream.
///
/// [`Upgrade`](crate::Upgrade) hands every tunnel to its inner service in HTTP/1.1 form: a
/// `GET` with `Upgrade`/`Connection: upgrade` (and `Sec-WebSocket-Key` for WebSocket), or a
/// `CONNECT host:port`. An HTTP/1.1 upstream takes that as it is; this service rewrites it
/// for an HTTP/2 upstream:
///
/// - An upgrade becomes an extended CONNECT (RFC 8441 section 4) with `:protocol` set to the
///   first offered protocol, without `Sec-WebSocket-Key`; the upstream's `2xx` becomes a
///   `101` with `Upgrade`, `Connection: upgrade` and the `Sec-WebSocket-Accept` computed
///   from the client's key (RFC 8441 section 5, RFC 6455 section 4.2.2).
/// - A `CONNECT` is sent as an HTTP/2 CONNECT (RFC 9113 section 8.5).
/// - When the upstream does not advertise extended CONNECT, both answer `502` with
///   `l5d-proxy-error: upstream cannot tunnel` (DESIGN.md sections 4.1 and 5; a plain CONNECT
///   would not need the setting, but the proxy treats both alike so that a backend either
///   tunnels or does not).
///
/// Other requests pass through untouched. The inner client must be hyper's HTTP/2 client
/// (its `2xx` CONNECT responses carry the `OnUpgrade` that [`Upgrade`](crate::Upgrade) takes).
#[derive(Clone, Debug)]
pub struct ExtendedConnect<S> {
    inner: S,
    flag: ConnectProtocolFlag,
}

pin_project! {
    /// The response future of [`ExtendedConnect`].
    pub struct ExtendedConnectFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Ready { rsp: Option<Response<B>> },
        Inner {
            #[pin]
            fut: F,
            // `Some` when an upgrade was rewritten: the answer becomes a `101`.
            upgrade: Option<Rewritten>,
        },
    }
}

struct Rewritten {
    protocol: HeaderValue,
    key: Option<HeaderValue>,
}

// === impl ConnectProtocolFlag ===

impl ConnectProtocolFlag {
    /// A flag that says "not advertised" until set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the upstream advertised extended CONNECT (as of the connection's last poll).
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Records whether the upstream advertises extended CONNECT.
    pub fn set(&self, enabled: bool) {
        self.0.store(enabled, Ordering::Release);
    }
}

// === impl WatchConnectProtocol ===

impl<T, B, E> WatchConnectProtocol<T, B, E>
where
    T: Read + Write + Unpin,
    B: http_body::Body + 'static,
    E: Http2ClientConnExec<B, T> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// How often the setting is re-read while the server has not advertised it.
    pub const REFRESH_INTERVAL: Duration = Duration::from_millis(10);

    /// How many times the setting is re-read before relying on request polls alone.
    pub const REFRESHES: u32 = 300;

    /// Wraps `conn`, recording its extended CONNECT setting in `flag`.
    pub fn new(
        conn: hyper::client::conn::http2::Connection<T, B, E>,
        flag: ConnectProtocolFlag,
    ) -> Self {
        Self {
            conn,
            flag,
            refresh: tokio::time::sleep(Duration::ZERO),
            refreshes_left: Self::REFRESHES,
        }
    }
}

impl<T, B, E> Future for WatchConnectProtocol<T, B, E>
where
    T: Read + Write + Unpin + 'static,
    B: http_body::Body + Unpin + 'static,
    B::Data: Send,
    E: Http2ClientConnExec<B, T> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = hyper::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let out = this.conn.as_mut().poll(cx);
        let enabled = this
            .conn
            .as_ref()
            .get_ref()
            .is_extended_connect_protocol_enabled();
        this.flag.set(enabled);
        if out.is_pending() && !enabled {
            while *this.refreshes_left > 0 {
                if this.refresh.as_mut().poll(cx).is_pending() {
                    break;
                }
                *this.refreshes_left -= 1;
                let next = tokio::time::Instant::now() + Self::REFRESH_INTERVAL;
                this.refresh.as_mut().reset(next);
            }
        }
        out
    }
}

impl<T, B, E> fmt::Debug for WatchConnectProtocol<T, B, E>
where
    T: Read + Write + Unpin,
    B: http_body::Body + 'static,
    E: Http2ClientConnExec<B, T> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchConnectProtocol")
            .field("flag", &self.flag)
            .finish_non_exhaustive()
    }
}

// === impl ExtendedConnectLayer ===

impl ExtendedConnectLayer {
    /// A layer for the upstream connection whose setting `flag` tracks.
    #[must_use]
    pub const fn new(flag: ConnectProtocolFlag) -> Self {
        Self { flag }
    }
}

impl<S> tower_layer::Layer<S> for ExtendedConnectLayer {
    type Service = ExtendedConnect<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ExtendedConnect::new(inner, self.flag.clone())
    }
}

// === impl ExtendedConnect ===

impl<S> ExtendedConnect<S> {
    /// Wraps the HTTP/2 client `inner`, whose connection's setting `flag` tracks.
    pub const fn new(inner: S, flag: ConnectProtocolFlag) -> Self {
        Self { inner, flag }
    }

    /// A layer: a shortcut for [`ExtendedConnectLayer::new`].
    #[must_use]
    pub const fn layer(flag: ConnectProtocolFlag) -> ExtendedConnectLayer {
        ExtendedConnectLayer::new(flag)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> tower_service::Service<Request<B>> for ExtendedConnect<S>
where
    S: tower_service::Service<Request<B>, Response = Response<RB>>,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ExtendedConnectFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let is_connect = req.method() == Method::CONNECT;
        let upgrade = if is_connect || req.version() != Version::HTTP_11 {
            None
        } else {
            upgrade_protocols(req.headers())
        };
        if !is_connect && upgrade.is_none() {
            return ExtendedConnectFuture::inner(self.inner.call(req), None);
        }
        if !self.flag.is_enabled() {
            let protocol = req
                .extensions()
                .get::<Protocol>()
                .copied()
                .unwrap_or_else(|| Protocol::of(&req));
            let rsp = ProxyError::upstream_cannot_tunnel().to_response(protocol);
            return ExtendedConnectFuture {
                state: State::Ready { rsp: Some(rsp) },
            };
        }
        *req.version_mut() = Version::HTTP_2;
        let Some(protocols) = upgrade else {
            return ExtendedConnectFuture::inner(self.inner.call(req), None);
        };

        let first = headers::tokens(&protocols)
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let key = req.headers_mut().remove(header::SEC_WEBSOCKET_KEY);
        headers::strip(req.headers_mut(), false);
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from(first.as_str()));
        *req.method_mut() = Method::CONNECT;
        absolute_uri(&mut req);
        let rewritten = Rewritten {
            protocol: HeaderValue::from_str(&first).unwrap_or_else(|_| protocols.clone()),
            key: key.filter(|_| first == "websocket"),
        };
        ExtendedConnectFuture::inner(self.inner.call(req), Some(rewritten))
    }
}

/// Extended CONNECT needs `:scheme`, `:authority` and `:path` (RFC 8441 section 4).
fn absolute_uri<B>(req: &mut Request<B>) {
    if req.uri().scheme().is_some() {
        return;
    }
    let authority = req
        .headers()
        .get(header::HOST)
        .and_then(|h| Authority::try_from(h.as_bytes()).ok());
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = authority;
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    let path = parts.path_and_query.clone();
    *req.uri_mut() = Uri::from_parts(parts)
        .ok()
        .or_else(|| path.map(Uri::from))
        .unwrap_or_default();
}

// === impl ExtendedConnectFuture ===

impl<F, B> ExtendedConnectFuture<F, B> {
    fn inner(fut: F, upgrade: Option<Rewritten>) -> Self {
        Self {
            state: State::Inner { fut, upgrade },
        }
    }
}

impl<F, B, E> Future for ExtendedConnectFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Ready { rsp } => match rsp.take() {
                Some(rsp) => Poll::Ready(Ok(rsp)),
                None => Poll::Pending,
            },
            StateProj::Inner { fut, upgrade } => {
                let mut rsp = std::task::ready!(fut.poll(cx))?;
                if let Some(up) = upgrade.take()
                    && rsp.status().is_success()
                {
                    *rsp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                    *rsp.version_mut() = Version::HTTP_11;
                    let h = rsp.headers_mut();
                    h.remove(header::CONTENT_LENGTH);
                    h.insert(header::UPGRADE, up.protocol);
                    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                    if let Some(key) = up.key {
                        h.insert(
                            header::SEC_WEBSOCKET_ACCEPT,
                            websocket::websocket_accept(key.as_bytes()),
                        );
                    }
                }
                Poll::Ready(Ok(rsp))
            }
        }
    }
}

impl<F, B> fmt::Debug for ExtendedConnectFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtendedConnectFuture")
            .finish_non_exhaustive()
    }
}
