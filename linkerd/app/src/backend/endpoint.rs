//! One endpoint: a client that dials one address whatever the request URI says, with a health
//! state that keeps `poll_ready` Pending (never Err) while the endpoint connects or backs off.

use super::{
    h1pool::{H1Pool, SendError},
    h2conn::H2Conn,
};
use crate::{BoxBody, BoxError};
use http::{Request, Response, StatusCode, Uri, Version, uri::Authority};
use http_body_util::BodyExt;
use hyper_util::{
    client::legacy::{Client, connect::Connected, connect::Connection},
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use linkerd_exp_backoff::ExponentialBackoff;
use linkerd_http_classify::{ProxyError, ProxyErrorKind, find_proxy_error, is_connect_error};
use linkerd_http_retry::PackedHead;
use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};
use tokio::{net::TcpStream, sync::Notify};

/// Counts a backend's endpoints by state (for `balancer_endpoints` and fail-fast), and
/// since when none has been ready.
#[derive(Debug)]
pub struct EndpointStates {
    ready: std::sync::atomic::AtomicI64,
    pending: std::sync::atomic::AtomicI64,
    /// When the last ready endpoint stopped being ready (the backend's creation at first).
    unready_since: std::sync::Mutex<tokio::time::Instant>,
}

impl Default for EndpointStates {
    fn default() -> Self {
        Self {
            ready: std::sync::atomic::AtomicI64::new(0),
            pending: std::sync::atomic::AtomicI64::new(0),
            unready_since: std::sync::Mutex::new(linkerd_http_classify::clock::now()),
        }
    }
}

impl EndpointStates {
    /// How long no endpoint has been ready; `None` while one is.
    pub fn none_ready_for(&self) -> Option<Duration> {
        if self.ready() > 0 {
            return None;
        }
        let since = *self.unready_since.lock().unwrap_or_else(|e| e.into_inner());
        Some(linkerd_http_classify::clock::now().saturating_duration_since(since))
    }

    /// One ready endpoint less (it failed or left): the start of a wait when it was the last.
    fn ready_lost(&self) {
        if self.ready.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.unready_since.lock().unwrap_or_else(|e| e.into_inner()) =
                linkerd_http_classify::clock::now();
        }
    }

    /// Endpoints currently ready.
    pub fn ready(&self) -> i64 {
        self.ready.load(Ordering::Relaxed)
    }

    /// Endpoints connecting or backing off.
    pub fn pending(&self) -> i64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// All endpoints.
    pub fn total(&self) -> i64 {
        self.ready() + self.pending()
    }
}

/// How an endpoint speaks to its address.
#[derive(Clone, Debug)]
pub struct EndpointParams {
    /// HTTP/2 prior knowledge instead of HTTP/1.1.
    pub http2: bool,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Reconnect backoff.
    pub backoff: ExponentialBackoff,
    /// Idle HTTP/1.1 connections kept per endpoint.
    pub max_idle: usize,
}

/// The endpoint service.
#[derive(Clone, Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    /// `addr` as a URI authority: the pool key of HTTP/1 requests.
    pool_key: Authority,
    http2: bool,
    client: Client<FixedConnector, BoxBody>,
    /// Plain HTTP/1.1 requests (not upgrades or CONNECT) use this pool instead of `client`.
    h1: Option<Arc<H1Pool>>,
    /// Plain HTTP/2 requests (not CONNECT) share this connection instead of `client`.
    h2: Option<Arc<H2Conn>>,
    health: Arc<Health>,
}

#[derive(Debug)]
struct Health {
    ready: AtomicBool,
    waker: Mutex<Option<Waker>>,
    failed: Arc<Notify>,
    closed: AtomicBool,
    states: Arc<EndpointStates>,
}

/// A connector that always dials one address.
#[derive(Clone, Debug)]
pub struct FixedConnector {
    addr: SocketAddr,
    timeout: Duration,
}

/// A connected TCP stream for hyper-util's client.
#[derive(Debug)]
pub struct Conn(TokioIo<TcpStream>);

// === impl Endpoint ===

impl Endpoint {
    /// Creates the endpoint and starts its connectivity prober.
    pub fn new(addr: SocketAddr, params: &EndpointParams, states: Arc<EndpointStates>) -> Self {
        let connector = FixedConnector {
            addr,
            timeout: params.connect_timeout,
        };
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(params.max_idle)
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_only(params.http2)
            .build(connector);
        states.pending.fetch_add(1, Ordering::Relaxed);
        let health = Arc::new(Health {
            ready: AtomicBool::new(false),
            waker: Mutex::new(None),
            failed: Arc::new(Notify::new()),
            closed: AtomicBool::new(false),
            states,
        });
        tokio::spawn(probe(
            addr,
            params.connect_timeout,
            params.backoff,
            Arc::downgrade(&health),
        ));
        Self {
            addr,
            pool_key: Authority::try_from(addr.to_string())
                .expect("a socket address is an authority"),
            http2: params.http2,
            client,
            h1: (!params.http2).then(|| H1Pool::new(addr, params.connect_timeout, params.max_idle)),
            h2: params
                .http2
                .then(|| H2Conn::new(addr, params.connect_timeout)),
            health,
        }
    }

    /// The endpoint's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Removes the endpoint from its backend's counts and stops its prober (discovery removed
    /// it; the balancer drops its copy lazily).
    pub fn retire(&self) {
        self.health.retire();
    }

    /// Sends `req` to the endpoint (what `call` does; no readiness needed).
    pub fn send(
        &self,
        mut req: Request<BoxBody>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<BoxBody>, BoxError>> + Send>> {
        if let Some(pool) = &self.h1
            && req.method() != http::Method::CONNECT
            && !req.headers().contains_key(http::header::UPGRADE)
        {
            origin_form(&mut req, self.addr);
            let from_h2 = req.version() == Version::HTTP_2;
            if from_h2 {
                join_cookies(&mut req);
            }
            *req.version_mut() = Version::HTTP_11;
            if !from_h2 && matches!(*req.method(), http::Method::GET | http::Method::HEAD) {
                frame_bodied_get(&mut req);
            }
            let response = pool.clone().send_now(req);
            let health = self.health.clone();
            return Box::pin(async move {
                response
                    .await
                    .map(boxed_response)
                    .map_err(|error| send_error(&health, error))
            });
        }
        if let Some(conn) = &self.h2 {
            if req.method() == http::Method::CONNECT {
                return Box::pin(send_h2_tunnel(conn.clone(), self.health.clone(), req));
            }
            return Box::pin(send_h2(conn.clone(), self.health.clone(), req, self.addr));
        }
        absolute_uri(&mut req, self.addr);
        if !self.http2 && req.method() != http::Method::CONNECT {
            pool_by_endpoint(&mut req, &self.pool_key);
        }
        if !self.http2 && req.version() == Version::HTTP_2 {
            join_cookies(&mut req);
        }
        *req.version_mut() = if self.http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        // An HTTP/2 upstream shutting down gracefully refuses the streams that reach it after
        // its final GOAWAY; they were never processed (RFC 9113 section 6.8), so a bodiless
        // request is sent once more (on another connection).
        let replay = if self.http2 {
            Replay::of(&req)
        } else {
            Replay(None)
        };
        let client = self.client.clone();
        let health = self.health.clone();
        Box::pin(async move {
            let result = match client.request(req).await {
                Err(error) if refused_by_goaway(&error) => match replay.request() {
                    Some(again) => client.request(again).await,
                    None => Err(error),
                },
                result => result,
            };
            result
                .map(boxed_response)
                .map_err(|error| upstream_error(&health, error.into()))
        })
    }

    /// Whether the endpoint is connected (its `poll_ready` would be Ready).
    pub fn is_ready(&self) -> bool {
        self.health.ready.load(Ordering::Acquire)
    }
}

impl tower::Service<Request<BoxBody>> for Endpoint {
    type Response = Response<BoxBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.health.ready.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        *self.health.waker.lock().expect("endpoint waker lock") = Some(cx.waker().clone());
        // Re-check: the prober may have flipped the state before the waker was stored.
        if self.health.ready.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }

    fn call(&mut self, req: Request<BoxBody>) -> Self::Future {
        self.send(req)
    }
}

/// Sends a plain HTTP/2 request on the endpoint's connection.
async fn send_h2(
    conn: Arc<H2Conn>,
    health: Arc<Health>,
    mut req: Request<BoxBody>,
    addr: SocketAddr,
) -> Result<Response<BoxBody>, BoxError> {
    absolute_uri(&mut req, addr);
    *req.version_mut() = Version::HTTP_2;
    let head = req.method() == http::Method::HEAD;
    // An HTTP/2 upstream shutting down gracefully refuses the streams that reach it after
    // its final GOAWAY; they were never processed (RFC 9113 section 6.8), so a bodiless
    // request is sent once more, on a new connection.
    let replay = Replay::of(&req);
    let result = match conn.clone().send(req).await {
        Err(SendError::Http(error)) if refused_by_goaway(&error) => match replay.request() {
            Some(again) => {
                conn.forget();
                conn.send(again).await
            }
            None => Err(SendError::Http(error)),
        },
        result => result,
    };
    result
        .map(|rsp| without_content(head, boxed_response(rsp.map(H2ResponseBody::new))))
        .map_err(|error| send_error(&health, error))
}

/// Sends a tunnel (a CONNECT, extended or plain) on the endpoint's HTTP/2 connection when its
/// upstream advertises extended CONNECT (DESIGN.md 4.1), else answers 502 `upstream cannot
/// tunnel`.
async fn send_h2_tunnel(
    conn: Arc<H2Conn>,
    health: Arc<Health>,
    mut req: Request<BoxBody>,
) -> Result<Response<BoxBody>, BoxError> {
    match conn.tunnels_enabled().await {
        Ok(true) => {}
        Ok(false) => return Err(ProxyError::upstream_cannot_tunnel().into()),
        Err(error) => return Err(send_error(&health, error)),
    }
    *req.version_mut() = Version::HTTP_2;
    conn.send(req)
        .await
        .map(boxed_response)
        .map_err(|error| send_error(&health, error))
}

/// An HTTP/2 upstream's answer that carries no content (to HEAD; 1xx, 204, 304) with an
/// empty body. Its END_STREAM may come in a frame of its own, later: the edge drops such a
/// body unread (DESIGN.md section 3), and every layer in between would count the drop as the
/// client going away (`CANCEL`). The headers (`content-length` included) stay.
fn without_content(head: bool, rsp: Response<BoxBody>) -> Response<BoxBody> {
    let status = rsp.status();
    let bodiless = head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless && !http_body::Body::is_end_stream(rsp.body()) {
        return rsp.map(|_| crate::server::empty_body());
    }
    rsp
}

/// An upstream response with the stack's body type.
fn boxed_response<B>(rsp: Response<B>) -> Response<BoxBody>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut rsp = rsp.map(|b| b.map_err(body_error).boxed_unsync());
    crate::presized::response(rsp.extensions_mut());
    rsp
}

pin_project_lite::pin_project! {
    /// An HTTP/2 upstream's response body that answers `is_end_stream` from what its last
    /// frame left. hyper's HTTP/2 body takes the connection's lock to answer it, and every
    /// layer above asks after each frame it forwards (about fourteen times per response):
    /// this asks once per frame.
    struct H2ResponseBody {
        #[pin]
        inner: hyper::body::Incoming,
        end: bool,
    }
}

impl H2ResponseBody {
    fn new(inner: hyper::body::Incoming) -> Self {
        let end = http_body::Body::is_end_stream(&inner);
        Self { inner, end }
    }
}

impl http_body::Body for H2ResponseBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let frame = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        // After an error the body is not at a clean end (hyper's own answer would be yes
        // for a reset stream); the layers above have the error.
        *this.end = match &frame {
            Some(Ok(_)) => this.inner.is_end_stream(),
            Some(Err(_)) => false,
            None => true,
        };
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.end
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The error a request that got no response reports (DESIGN.md section 5).
fn send_error(health: &Health, error: SendError) -> BoxError {
    match error {
        // Dial failures (refused, unreachable, timed out) are always connect failures.
        SendError::Connect(error) => {
            health.mark_failed();
            ProxyError::connect_failed().with_source(error).into()
        }
        SendError::Http(error) => upstream_error(health, error.into()),
        SendError::Polled => ProxyError::internal().with_source(error).into(),
    }
}

/// An upstream response body's error: a stream reset hyper sent itself (the request body it
/// was sending failed: the client went away, after the response headers) is the client's
/// `CANCEL`, not an upstream reset.
fn body_error<E: Into<BoxError>>(error: E) -> BoxError {
    let error = error.into();
    if reset_by_us(&*error) {
        return ProxyError::cancel().with_source(error).into();
    }
    error
}

/// Whether the chain holds an HTTP/2 stream reset this side sent (not the upstream, not the
/// h2 library on a protocol violation): hyper's client does so when a request body fails.
fn reset_by_us(error: &(dyn std::error::Error + 'static)) -> bool {
    linkerd_http_classify::chain(error)
        .filter_map(|e| e.downcast_ref::<h2::Error>())
        .any(|h2| h2.is_reset() && !h2.is_remote() && !h2.is_library())
}

/// Maps an upstream client's error (hyper's or hyper-util's) to what the client sees.
fn upstream_error(health: &Health, error: BoxError) -> BoxError {
    if find_proxy_error(&*error).is_some_and(|p| p.kind() == ProxyErrorKind::Cancel) {
        // The client's request body failed (the client went away): not the upstream's doing.
        return error;
    }
    if reset_by_us(&*error) {
        // hyper's HTTP/2 client resets the upstream stream itself (INTERNAL_ERROR) when the
        // request body it sends fails, and answers with that reset: the body is the client's,
        // which went away; the upstream did nothing.
        return ProxyError::cancel().with_source(error).into();
    }
    if is_connect_error(&*error) {
        health.mark_failed();
        return ProxyError::connect_failed().with_source(error).into();
    }
    if closed_before_response(&*error) {
        // The HTTP/1 connection was reset or closed under the request, before a response:
        // the endpoint's connection failed (DESIGN.md section 5: "refused, reset, connect
        // timeout" -> 502 `connect failed`), which a `retry` block retries (section 4.1). The
        // dial worked, so the endpoint is not marked failed.
        return ProxyError::connect_failed().with_source(error).into();
    }
    if invalid_response(&*error) {
        // The upstream's answer did not parse as HTTP/1: a protocol violation on the
        // upstream's side, answered as an HTTP/2 upstream's would be (its client resets the
        // stream with PROTOCOL_ERROR): 502 `upstream reset (PROTOCOL_ERROR)` for HTTP/1
        // clients (RFC 9110 section 15.6.3: an invalid response from an inbound server),
        // `RESET` in metrics and logs; not an internal error of the proxy.
        let reason = h2::Reason::PROTOCOL_ERROR;
        return ProxyError::reset(reason).with_source(error).into();
    }
    if refused_by_goaway(&*error) {
        // Not processed, so safe to retry: REFUSED_STREAM (retried by retry policies; an
        // HTTP/2 client gets RST_STREAM(REFUSED_STREAM)).
        let refused = h2::Reason::REFUSED_STREAM;
        return ProxyError::reset(refused)
            .with_source(h2::Error::from(refused))
            .into();
    }
    error
}

/// HTTP/1.1 requests travel in origin-form (`/path?query`) with a `Host` header: the
/// authority moves to `Host` when that is missing (the endpoint's address when the request
/// names none).
fn origin_form<B>(req: &mut Request<B>, addr: SocketAddr) {
    if !req.headers().contains_key(http::header::HOST) {
        let value = match req.uri().host() {
            Some(host) => {
                let default = if req.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
                    443
                } else {
                    80
                };
                match req.uri().port_u16() {
                    Some(port) if port != default => format!("{host}:{port}"),
                    _ => host.to_owned(),
                }
            }
            None => addr.to_string(),
        };
        if let Ok(value) = http::HeaderValue::try_from(value) {
            req.headers_mut().insert(http::header::HOST, value);
        }
    }
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
    }
}

/// An HTTP/2 request's `cookie` fields as one, for HTTP/1.1 (RFC 9113 section 8.2.3: split
/// cookie fields "MUST be concatenated into a single field line using the two-octet
/// delimiter of 0x3b, 0x20" before an HTTP/1.1 hop, whose servers may read only the first).
fn join_cookies<B>(req: &mut Request<B>) {
    use http::header::COOKIE;
    let headers = req.headers();
    if headers.get_all(COOKIE).iter().nth(1).is_none() {
        return;
    }
    let mut joined = Vec::new();
    for value in headers.get_all(COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    if let Ok(value) = http::HeaderValue::from_bytes(&joined) {
        req.headers_mut().insert(COOKIE, value);
    }
}

/// An HTTP/1.1 client's `GET` or `HEAD` with a chunked body goes chunked: hyper's HTTP/1
/// client sends such a request without its body unless told its framing (it takes a body of
/// unknown length for an empty one). Not for HTTP/2 clients: a `GET` whose HEADERS frame
/// left the stream open usually ends with an empty DATA frame, and would reach the upstream
/// as an (empty) chunked request.
fn frame_bodied_get(req: &mut Request<BoxBody>) {
    use http_body::Body;
    let body = req.body();
    if body.is_end_stream()
        || body.size_hint().exact().is_some()
        || req.headers().contains_key(http::header::CONTENT_LENGTH)
    {
        return;
    }
    req.headers_mut().insert(
        http::header::TRANSFER_ENCODING,
        http::HeaderValue::from_static("chunked"),
    );
}

/// A bodiless request's head, kept to send it once more if a graceful GOAWAY refuses it.
///
/// Packed into one buffer rather than cloned: a clone of the header map allocates and takes
/// a reference on every value, and is walked again when dropped, unread, after the answer
/// (nearly always). `None` for a request with a body, or one whose head cannot be packed
/// (a string over 4 GiB).
struct Replay(Option<(PackedHead, Version)>);

impl Replay {
    fn of(req: &Request<BoxBody>) -> Self {
        if !http_body::Body::is_end_stream(req.body()) {
            return Self(None);
        }
        Self(PackedHead::pack(req.method(), req.uri(), req.headers()).map(|h| (h, req.version())))
    }

    /// The request again, with an empty body.
    fn request(self) -> Option<Request<BoxBody>> {
        let (head, version) = self.0?;
        let (method, uri, headers) = head.unpack()?;
        let mut req = Request::new(crate::server::empty_body());
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.version_mut() = version;
        *req.headers_mut() = headers;
        Some(req)
    }
}

/// Whether `error` says the upstream's HTTP/1 response head did not parse.
fn invalid_response(error: &(dyn std::error::Error + 'static)) -> bool {
    // An error chain is finite; the bound guards against a cyclic one.
    linkerd_http_classify::chain(error).take(32).any(|e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
    })
}

/// Whether an HTTP/1 upstream closed or reset the connection under a request, before a
/// response.
fn closed_before_response(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind as K;
    let mut next = Some(error);
    // An error chain is finite; the bound guards against a cyclic one.
    for _ in 0..32 {
        let Some(e) = next else { return false };
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && h.is_incomplete_message()
        {
            return true;
        }
        // The connection reset (RST) or broke under the request on an established
        // connection: an upstream reset (DESIGN.md section 5), not an internal error.
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof
            )
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// Whether the upstream refused the stream with a graceful GOAWAY (`NO_ERROR`) naming a lower
/// last stream id: the request was not processed.
fn refused_by_goaway(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    // An error chain is finite; the bound guards against a cyclic one.
    for _ in 0..32 {
        let Some(e) = next else { return false };
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR);
        }
        next = e.source();
    }
    false
}

/// Gives the request an absolute URI (hyper-util's client needs one) with the authority the
/// request already names (URI authority, else `Host`), falling back to the endpoint address.
fn absolute_uri<B>(req: &mut Request<B>, addr: SocketAddr) {
    if req.uri().scheme().is_some() && req.uri().authority().is_some() {
        return;
    }
    let authority = req
        .uri()
        .authority()
        .cloned()
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        })
        .unwrap_or_else(|| {
            Authority::try_from(addr.to_string()).expect("a socket address is an authority")
        });
    let mut parts = req.uri().clone().into_parts();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

/// HTTP/1 requests travel in origin-form with a `Host` header, so their URI authority only
/// serves as hyper-util's pool key. Making it the endpoint's address pools connections per
/// endpoint: otherwise every distinct authority (a client-chosen `Host`) would open and keep
/// its own idle connections. The authority moves to `Host` when that is missing.
fn pool_by_endpoint<B>(req: &mut Request<B>, key: &Authority) {
    if !req.headers().contains_key(http::header::HOST)
        && let Some(host) = req.uri().host()
    {
        let default = if req.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
            443
        } else {
            80
        };
        let value = match req.uri().port_u16() {
            Some(port) if port != default => format!("{host}:{port}"),
            _ => host.to_owned(),
        };
        if let Ok(value) = http::HeaderValue::try_from(value) {
            req.headers_mut().insert(http::header::HOST, value);
        }
    }
    let mut parts = req.uri().clone().into_parts();
    parts.authority = Some(key.clone());
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

// === impl Health ===

impl Health {
    fn set_ready(&self, ready: bool) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let was = self.ready.swap(ready, Ordering::AcqRel);
        if was != ready {
            if ready {
                self.states.ready.fetch_add(1, Ordering::AcqRel);
                self.states.pending.fetch_sub(1, Ordering::Relaxed);
            } else {
                self.states.pending.fetch_add(1, Ordering::Relaxed);
                self.states.ready_lost();
            }
        }
        if ready && let Some(w) = self.waker.lock().expect("endpoint waker lock").take() {
            w.wake();
        }
    }

    fn mark_failed(&self) {
        self.set_ready(false);
        self.failed.notify_one();
    }
}

impl Health {
    /// Leaves the endpoint set: stops counting this endpoint and stops its prober. Idempotent.
    fn retire(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.ready.load(Ordering::Acquire) {
            self.states.ready_lost();
        } else {
            self.states.pending.fetch_sub(1, Ordering::Relaxed);
        }
        self.failed.notify_one();
    }
}

impl Drop for Health {
    fn drop(&mut self) {
        self.retire();
    }
}

/// Keeps an endpoint's health: connect; once connected the endpoint is ready until a request
/// fails to connect; then reconnect with backoff. Ends when the endpoint is dropped.
async fn probe(
    addr: SocketAddr,
    timeout: Duration,
    backoff: ExponentialBackoff,
    health: std::sync::Weak<Health>,
) {
    let mut attempt = 0u32;
    let mut rng = rand::rngs::SmallRng::from_os_rng();
    loop {
        let ok = dial(addr, timeout).await.is_ok();
        let Some(h) = health.upgrade() else { return };
        if ok {
            attempt = 0;
            h.set_ready(true);
            // Wait until a request reports a connection failure (or the endpoint goes away).
            let failed = h.failed.clone();
            drop(h);
            tokio::select! {
                _ = failed.notified() => {}
                _ = closed(&health) => return,
            }
            if health
                .upgrade()
                .is_none_or(|h| h.closed.load(Ordering::Acquire))
            {
                return;
            }
        } else {
            h.set_ready(false);
            drop(h);
            let delay = backoff.delay(attempt, &mut rng);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = closed(&health) => return,
            }
        }
    }
}

/// Resolves once the endpoint's health is gone (polled every second while waiting).
async fn closed(health: &std::sync::Weak<Health>) {
    loop {
        match health.upgrade() {
            None => return,
            Some(h) if h.closed.load(Ordering::Acquire) => return,
            Some(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

use rand::SeedableRng;

/// Opens a TCP connection to `addr` within `timeout`, with `TCP_NODELAY` set: every
/// backend connection (pooled HTTP/1.1, shared HTTP/2, the legacy client's) is dialled here.
pub(crate) async fn dial(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

// === impl FixedConnector ===

impl tower::Service<Uri> for FixedConnector {
    type Response = Conn;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Conn>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let (addr, timeout) = (self.addr, self.timeout);
        Box::pin(async move { Ok(Conn(TokioIo::new(dial(addr, timeout).await?))) })
    }
}

// === impl Conn ===

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }
}
