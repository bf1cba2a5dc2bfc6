//! The server edge (DESIGN.md section 3 step 1): accept, bounded protocol detection, one hyper
//! connection serving HTTP/1.1 or h2c, the response normaliser, graceful shutdown.

use crate::{
    BoxBody, BoxError,
    head_timeout::{BusyGuard, HeadWatch, WatchedBody, with_head_timeout},
};
use bytes::Bytes;
use futures_util::future::Either;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use linkerd_http_classify::{ProxyError, ProxyErrorKind, clock, to_proxy_error};
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::net::{TcpListener, TcpStream};
use tower::Service;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub use linkerd_http_access_log::ClientAddr;

/// Settings of the server edge.
#[derive(Clone, Debug)]
pub struct ServerParams {
    /// Bounds protocol detection and each HTTP/1.1 request head; zero: unbounded.
    pub header_read_timeout: Duration,
    /// HTTP/2 settings (validated: `apply_to_auto` must succeed).
    pub h2: linkerd_http_h2::ServerSettings,
    /// Told of every `RST_STREAM` sent to an HTTP/2 client for a failed answer.
    pub on_reset: Option<ResetObserver>,
    /// Told of every `RST_STREAM` an HTTP/2 client sends while the proxy reads its request
    /// body (the reset the body's error carries).
    pub on_client_reset: Option<ResetObserver>,
}

/// Called with the reason of each `RST_STREAM` the server sends an HTTP/2 client because the
/// stack's answer failed (its response future, or its response body after the headers): the
/// reason hyper puts in the frame, the first `h2::Reason` in the error's `source()` chain,
/// else `INTERNAL_ERROR` (for `http_stream_resets_total{direction="outbound"}`).
///
/// A thin pointer: each HTTP/2 request's future and body hold a clone.
#[derive(Clone)]
pub struct ResetObserver(Arc<ObserveFn>);

/// The observer's function, behind one thin pointer.
struct ObserveFn(Box<dyn Fn(h2::Reason) + Send + Sync>);

impl ResetObserver {
    /// An observer calling `f`.
    pub fn new(f: impl Fn(h2::Reason) + Send + Sync + 'static) -> Self {
        Self(Arc::new(ObserveFn(Box::new(f))))
    }

    /// Reports the reset a peer sent, if `error` is one (a remote `RST_STREAM`).
    fn received_in(&self, error: &(dyn std::error::Error + 'static)) {
        // An error chain is finite; the bound guards against a cyclic one.
        let h2 = linkerd_http_classify::chain(error)
            .take(32)
            .find_map(|e| e.downcast_ref::<h2::Error>());
        if let Some(h) = h2
            && h.is_reset()
            && h.is_remote()
            && let Some(reason) = h.reason()
        {
            (self.0.0)(reason);
        }
    }

    /// Reports the reset sent for `error`.
    pub(crate) fn sent_for(&self, error: &(dyn std::error::Error + 'static)) {
        let reason =
            linkerd_http_classify::find_h2_reason(error).unwrap_or(h2::Reason::INTERNAL_ERROR);
        (self.0.0)(reason);
    }
}

impl std::fmt::Debug for ResetObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResetObserver")
    }
}

/// Called when a connection is detected as `"http1"` or `"http2"`; the guard it returns is
/// dropped when the connection closes (for `http_server_connections_open`).
pub type ConnectionObserver =
    Arc<dyn Fn(&'static str) -> Box<dyn std::any::Any + Send> + Send + Sync>;

/// Accepts connections on `listener` and serves them with `svc` until `shutdown` resolves;
/// then stops accepting (closing the listener), asks every connection to finish (HTTP/2
/// GOAWAY, HTTP/1 close after the current request) and waits up to `grace` for them.
pub async fn serve<S>(
    listener: TcpListener,
    svc: S,
    params: ServerParams,
    observer: ConnectionObserver,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    S: Service<Request<InboundBody>, Response = Response<BoxBody>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let drain = crate::drain::Drain::new();
    let params = Arc::new(params);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        let params = params.clone();
        let observer = observer.clone();
        let entry = drain.enter();
        tokio::spawn(async move {
            let Some(protocol) = detect(&stream, params.header_read_timeout).await else {
                tracing::debug!(%peer, "protocol detection timed out or failed");
                return;
            };
            let guard = observer(protocol);
            // HTTP/1.1 request heads (and so keep-alive idleness) are bounded by one timer
            // per connection (see `head_timeout`); HTTP/2 has no such timeout.
            let watch = (protocol != "http2").then(HeadWatch::new);
            let svc = ConnService {
                inner: std::cell::RefCell::new(svc),
                client: ClientAddr(peer),
                watch: watch.clone(),
                resets: if protocol == "http2" {
                    params.on_reset.clone()
                } else {
                    None
                },
                client_resets: if protocol == "http2" {
                    params.on_client_reset.clone()
                } else {
                    None
                },
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            if protocol == "http2" {
                builder = builder.http2_only();
            } else {
                builder = builder.http1_only();
            }
            builder
                .http1()
                .timer(TokioTimer::new())
                // Enforced by `with_head_timeout` below instead of a timer per request.
                .header_read_timeout(None::<Duration>)
                .keep_alive(true);
            if let Err(error) = params.h2.apply_to_auto(&mut builder) {
                tracing::error!(%error, "invalid HTTP/2 settings");
                drop(guard);
                return;
            }
            builder.http2().timer(FrozenTimer(TokioTimer::new()));
            // On HTTP/1 connections the first response write after each read waits one
            // scheduler round, so responses of connections ready together leave together
            // (see the module).
            let io = crate::deferred_write::DeferredWrite::new(
                TokioIo::new(stream),
                protocol != "http2",
            );
            let conn = FrozenPolls {
                inner: entry.watch(
                    builder.serve_connection_with_upgrades(io, svc).into_owned(),
                    |conn| conn.graceful_shutdown(),
                ),
            };
            let result = match &watch {
                Some(watch) if !params.header_read_timeout.is_zero() => {
                    with_head_timeout(conn, watch, params.header_read_timeout).await
                }
                // `0s` turns the timeout off (DESIGN.md section 4).
                _ => Some(conn.await),
            };
            match result {
                Some(Err(error)) => {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                Some(Ok(())) => {}
                None => tracing::debug!(%peer, "closed: no request head within the timeout"),
            }
            drop(guard);
        });
    }
    drop(listener);
    tokio::select! {
        () = drain.shutdown() => tracing::debug!("all connections drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!("graceful shutdown timed out"),
    }
}

pin_project_lite::pin_project! {
    /// Polls `inner` with the layers' clock read at most once per poll (`clock::frozen`):
    /// each poll of a connection is one synchronous step (an HTTP/1.1 connection's polls run
    /// its requests' whole stacks, calls and bodies; an HTTP/2 connection's start its streams'
    /// calls), and every layer in it reads the same instant instead of the clock each. A
    /// struct, not an `async fn` around `poll_fn`: that kept a second copy of the connection's
    /// future in the task (about 4 KiB more per idle HTTP/1.1 connection, 24.1 against 20.1).
    struct FrozenPolls<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for FrozenPolls<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let inner = self.project().inner;
        clock::frozen(|| inner.poll(cx))
    }
}

/// tokio's timer for hyper, except that `now` is the layers' clock (`clock::now`): hyper's
/// HTTP/2 keep-alive stamps every frame it reads with the time (two clock reads per h2c
/// request), and within a connection's poll that is the poll's one reading.
#[derive(Clone, Debug)]
struct FrozenTimer(TokioTimer);

// hyper's trait is written with std's `Instant`; the values come from and go to tokio's.
#[allow(clippy::disallowed_types)]
impl hyper::rt::Timer for FrozenTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.0.sleep(duration)
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.0.sleep_until(deadline)
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: std::time::Instant) {
        self.0.reset(sleep, new_deadline);
    }

    fn now(&self) -> std::time::Instant {
        clock::now().into_std()
    }
}

/// Waits until the first bytes tell HTTP/2 prior knowledge from HTTP/1, within `timeout`
/// (zero: however long it takes).
async fn detect(stream: &TcpStream, timeout: Duration) -> Option<&'static str> {
    let work = async {
        let mut buf = [0u8; 24];
        loop {
            let n = stream.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            if buf[..n] != H2_PREFACE[..n] {
                return Some("http1");
            }
            if n == H2_PREFACE.len() {
                return Some("http2");
            }
            // A partial preface: peek returns the same bytes at once until more arrive.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    if timeout.is_zero() {
        return work.await;
    }
    tokio::time::timeout(timeout, work).await.ok().flatten()
}

/// One connection's service: the stack, cloned once for the connection and called in place
/// for each of its requests (an adapter that clones the service per request would copy the
/// whole stack each time), plus the response normaliser: HEAD responses and 1xx/204/304
/// responses carry no body on any protocol (hyper's HTTP/2 server would send one, and h2
/// clients reset such streams); `content-length` is kept. Also records the client's address.
struct ConnService<S> {
    /// Borrowed only to start a call: requests of one connection are started by its task,
    /// one at a time (hyper calls the service from the connection's future, which owns this
    /// value and is never shared between threads), so no lock is needed.
    inner: std::cell::RefCell<S>,
    client: ClientAddr,
    /// HTTP/1.1: marked busy from each call until hyper drops the response body.
    watch: Option<Arc<HeadWatch>>,
    /// HTTP/2: told of the resets hyper sends for failed answers.
    resets: Option<ResetObserver>,
    /// HTTP/2: told of the resets clients send while their request bodies are read.
    client_resets: Option<ResetObserver>,
}

impl<S> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<InboundBody>, Response = Response<BoxBody>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<WatchedBody>;
    type Error = BoxError;
    type Future = NormalizeFuture<
        Either<
            Either<Pin<Box<S::Future>>, Pin<Box<tower::util::Oneshot<S, Request<InboundBody>>>>>,
            std::future::Ready<Result<Response<BoxBody>, BoxError>>,
        >,
    >;

    /// The stack's future (about 600 bytes: the edge layers' futures, down to a pointer to
    /// the rule's boxed retry future) is boxed once here: hyper's HTTP/2 server moves each
    /// stream's future into a task of its own, several copies deep (h2c: 58.6 -> 51.8 KB
    /// copied per request, as much as passthrough; HTTP/1.1 unchanged).
    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let body = match &self.client_resets {
            // Only a body still to come can be reset.
            Some(r) if !http_body::Body::is_end_stream(req.body()) => Some(r.clone()),
            _ => None,
        };
        let mut req = req.map(|inner| InboundBody {
            inner,
            resets: body,
        });
        crate::presized::request(req.extensions_mut());
        req.extensions_mut().insert(self.client);
        let head = req.method() == Method::HEAD;
        let http10 = req.version() == http::Version::HTTP_10;
        let busy = self.watch.as_ref().map(HeadWatch::busy);
        let inner = match self.inner.try_borrow_mut() {
            Ok(mut svc) => Either::Left(crate::stack::call_now_boxed(&mut *svc, req)),
            // A call from within a call, which hyper never makes.
            Err(_) => Either::Right(std::future::ready(Err(
                "connection service called re-entrantly".into(),
            ))),
        };
        NormalizeFuture {
            inner,
            head,
            http10,
            busy,
            resets: self.resets.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of the normaliser.
    #[derive(Debug)]
    pub struct NormalizeFuture<F> {
        #[pin]
        inner: F,
        head: bool,
        // An HTTP/1.0 client's request.
        http10: bool,
        busy: Option<BusyGuard>,
        resets: Option<ResetObserver>,
    }
}

impl<F> Future for NormalizeFuture<F>
where
    F: Future<Output = Result<Response<BoxBody>, BoxError>>,
{
    type Output = Result<Response<WatchedBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // An HTTP/2 stream's task polls this: one clock reading for the layers per poll.
        let rsp = match std::task::ready!(clock::frozen(|| this.inner.poll(cx))) {
            Ok(rsp) => rsp,
            Err(error) => {
                if let Some(resets) = this.resets.take()
                    && to_proxy_error(&*error).kind() != ProxyErrorKind::Cancel
                {
                    // (A client that went away reset its stream itself: nothing is sent.)
                    resets.sent_for(&*error);
                }
                return Poll::Ready(Err(error));
            }
        };
        let busy = this.busy.take();
        let resets = this.resets.take();
        let mut rsp = normalize(*this.head, rsp);
        if *this.http10 && http_body::Body::size_hint(rsp.body()).exact().is_none() {
            // An HTTP/1.0 client reads a body of unknown length up to the close: hyper
            // closes the connection after it, but answers a `keep-alive` request with
            // `connection: keep-alive` unless the response is itself HTTP/1.0 (then it
            // leaves keep-alive off). Not promised.
            *rsp.version_mut() = http::Version::HTTP_10;
        }
        Poll::Ready(Ok(rsp.map(|body| WatchedBody::new(body, busy, resets))))
    }
}

/// Empties the body of a response that must not have one, and drops the `content-length` a
/// 1xx or 204 response must not carry (RFC 9110 section 8.6; a 304's, which tells the length
/// of the representation, stays). The response goes out in the client's HTTP version: hyper
/// writes an HTTP/1 response's version as it finds it (an HTTP/1.0 upstream's answer would
/// reach an HTTP/1.1 client as `HTTP/1.0`) and lowers it itself for HTTP/1.0 clients.
pub fn normalize(head: bool, mut rsp: Response<BoxBody>) -> Response<BoxBody> {
    *rsp.version_mut() = http::Version::HTTP_11;
    let status = rsp.status();
    if status.is_informational() || status == StatusCode::NO_CONTENT {
        rsp.headers_mut().remove(http::header::CONTENT_LENGTH);
    }
    let bodiless = head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if !bodiless {
        return rsp;
    }
    let (parts, _body) = rsp.into_parts();
    Response::from_parts(parts, empty_body())
}

pin_project_lite::pin_project! {
    /// A request body as the stack gets it: hyper's, reporting the `RST_STREAM` an HTTP/2
    /// client sends while it is read (to `http_stream_resets_total{direction="inbound"}`,
    /// DESIGN.md section 6: "client resets seen through request-body errors").
    ///
    /// A reset can also end the request before anything polls the body again (hyper drops
    /// the stream's answer): a body dropped before its end looks once more, without waiting,
    /// and reports a reset it finds there.
    #[derive(Debug)]
    pub struct InboundBody {
        #[pin]
        inner: Incoming,
        resets: Option<ResetObserver>,
    }

    impl PinnedDrop for InboundBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // (Not `is_end_stream` first: a reset stream's body says it is at its end.)
            if let Some(resets) = this.resets.take() {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut inner = this.inner;
                // Data the client sent before its reset comes first; a bounded look.
                for _ in 0..64 {
                    match http_body::Body::poll_frame(inner.as_mut(), &mut cx) {
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(Some(Err(error))) => {
                            resets.received_in(&error);
                            break;
                        }
                        Poll::Ready(None) | Poll::Pending => break,
                    }
                }
            }
        }
    }
}

impl http_body::Body for InboundBody {
    type Data = Bytes;
    type Error = BoxError;

    /// A failure of the client's request body (a reset, a connection closed mid-body) is the
    /// client going away: the error says so (`CANCEL`, DESIGN.md section 5), so the upstream
    /// request it fails is not taken for the upstream's failure.
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match std::task::ready!(this.inner.poll_frame(cx)) {
            Some(Err(error)) => {
                if let Some(resets) = this.resets.take() {
                    resets.received_in(&error);
                }
                Poll::Ready(Some(Err(ProxyError::cancel().with_source(error).into())))
            }
            frame => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// An empty body of the stack's body type.
pub fn empty_body() -> BoxBody {
    http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    #[test]
    fn the_timer_reads_the_layers_clock() {
        let timer = FrozenTimer(TokioTimer::new());
        clock::frozen(|| {
            let layers = clock::now();
            // Real time: wait until the clock has moved, so a fresh reading would differ.
            while tokio::time::Instant::now() == layers {
                std::hint::spin_loop();
            }
            assert_eq!(timer.now(), layers.into_std());
        });
    }
}
