//! Backends (DESIGN.md section 3 step 6): load shed -> bounded queue -> fail-fast -> p2c
//! (PeakEwma, load counted until the response body ends) -> one endpoint service per address.

mod discovery;
mod endpoint;
mod h1pool;

pub use discovery::{Discovery, Resolve, SystemResolver, split_host_port};
pub use endpoint::{Conn, Endpoint, EndpointParams, EndpointStates, FixedConnector};

use crate::{BoxBody, BoxError};
use futures_util::Stream;
use http::{Request, Response};
use http_body_util::BodyExt;
use linkerd_http_body_eos::EosBody;
use linkerd_http_classify::ProxyError;
use std::{
    collections::{BTreeSet, HashMap},
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};
use tower::{
    Service, ServiceExt,
    balance::p2c::Balance,
    buffer::Buffer,
    discover::Change,
    load::{PeakEwmaDiscover, TrackCompletion, peak_ewma::Handle},
};

/// A backend's service: clone it freely (it is a handle to a queue).
pub type BackendService = BackendHandle;

/// Settings of one backend.
#[derive(Clone, Debug)]
pub struct BackendParams {
    /// The backend's name.
    pub name: String,
    /// Endpoint client settings.
    pub endpoint: EndpointParams,
    /// No ready endpoint this long -> 503 `no endpoints` at once.
    pub fail_fast: Duration,
    /// Requests waiting for an endpoint; more are shed with 503 `unavailable`.
    pub queue: usize,
}

/// A cloneable handle to a backend's queue, shedding load when the queue is full.
#[derive(Clone)]
pub struct BackendHandle {
    buffer: Buffer<Request<BoxBody>, BoxFuture>,
    states: Arc<EndpointStates>,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, BoxError>> + Send>>;

impl std::fmt::Debug for BackendHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendHandle")
            .field("ready", &self.states.ready())
            .field("pending", &self.states.pending())
            .finish()
    }
}

impl BackendHandle {
    /// Builds the backend and starts its discovery, balancer and queue worker.
    pub fn new(params: &BackendParams, discovery: Discovery) -> Self {
        let states = Arc::new(EndpointStates::default());
        let resolved = Arc::new(AtomicBool::new(false));
        let addrs = discovery.spawn();
        let changes = endpoint_changes(
            addrs,
            params.endpoint.clone(),
            states.clone(),
            resolved.clone(),
        );
        let discover = PeakEwmaDiscover::new::<Request<BoxBody>>(
            changes,
            Duration::from_millis(30),
            Duration::from_secs(10),
            CompleteOnBodyEnd,
        );
        let balance = Balance::new(discover);
        let fail_fast = FailFast {
            inner: balance,
            timeout: params.fail_fast,
            sleep: None,
            failing: false,
            states: states.clone(),
            resolved,
            recheck: None,
        };
        let boxed = BoxFutures(fail_fast);
        let (buffer, worker) = Buffer::pair(boxed, params.queue.max(1));
        tokio::spawn(worker);
        Self { buffer, states }
    }

    /// The endpoint state counts.
    pub fn states(&self) -> &Arc<EndpointStates> {
        &self.states
    }
}

impl Service<Request<BoxBody>> for BackendHandle {
    type Response = Response<BoxBody>;
    type Error = BoxError;
    type Future = futures_util::future::Either<
        tower::buffer::future::ResponseFuture<BoxFuture>,
        std::future::Ready<Result<Response<BoxBody>, BoxError>>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness is decided per request in `call`: a full queue sheds the request.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<BoxBody>) -> Self::Future {
        use futures_util::future::Either;
        // Shed at once when the queue has no free slot.
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        match self.buffer.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => Either::Left(self.buffer.call(req)),
            Poll::Ready(Err(e)) => Either::Right(std::future::ready(Err(e))),
            Poll::Pending => Either::Right(std::future::ready(Err(ProxyError::load_shed().into()))),
        }
    }
}

/// Turns the watched address set into discovery changes, one endpoint per address.
fn endpoint_changes(
    mut addrs: tokio::sync::watch::Receiver<BTreeSet<SocketAddr>>,
    params: EndpointParams,
    states: Arc<EndpointStates>,
    resolved: Arc<AtomicBool>,
) -> impl Stream<Item = Result<Change<SocketAddr, Endpoint>, Infallible>> + Send + Unpin + 'static {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut current: HashMap<SocketAddr, Endpoint> = HashMap::new();
        loop {
            let next: BTreeSet<SocketAddr> = addrs.borrow_and_update().clone();
            for gone in current
                .keys()
                .filter(|a| !next.contains(a))
                .copied()
                .collect::<Vec<_>>()
            {
                if let Some(ep) = current.remove(&gone) {
                    ep.retire();
                }
                if tx.send(Change::Remove(gone)).is_err() {
                    return;
                }
            }
            for addr in next {
                if let std::collections::hash_map::Entry::Vacant(slot) = current.entry(addr) {
                    let ep = Endpoint::new(addr, &params, states.clone());
                    slot.insert(ep.clone());
                    if tx.send(Change::Insert(addr, ep)).is_err() {
                        return;
                    }
                }
            }
            // From now on an empty set means "no endpoints", not "not known yet".
            resolved.store(true, Ordering::Release);
            tokio::select! {
                changed = addrs.changed() => if changed.is_err() { break },
                _ = tx.closed() => break,
            }
        }
        for ep in current.values() {
            ep.retire();
        }
    });
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|c| c.map(Ok)))
}

/// Counts a request as complete when its response body ends (not at headers), so PeakEwma
/// sees streaming responses as load.
#[derive(Copy, Clone, Debug, Default)]
pub struct CompleteOnBodyEnd;

impl TrackCompletion<Handle, Response<BoxBody>> for CompleteOnBodyEnd {
    type Output = Response<BoxBody>;

    fn track_completion(&self, handle: Handle, rsp: Response<BoxBody>) -> Response<BoxBody> {
        rsp.map(|body| {
            EosBody::new(body, move |_: linkerd_http_body_eos::Eos<'_, BoxError>| {
                drop(handle);
            })
            .boxed_unsync()
        })
    }
}

/// Fails requests fast with `no endpoints` when the inner balancer has had no ready endpoint
/// for `timeout`, or when the backend has no endpoint at all.
struct FailFast<S> {
    inner: S,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    failing: bool,
    states: Arc<EndpointStates>,
    /// Set once discovery's first set is counted in `states`: until then an empty count only
    /// means the endpoints are not created yet (requests right after start-up wait for them).
    resolved: Arc<AtomicBool>,
    /// While discovery has not resolved: when to look at `resolved` again.
    recheck: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// How often fail-fast looks for discovery's first answer.
const RECHECK: Duration = Duration::from_millis(5);

impl<S> Service<Request<BoxBody>> for FailFast<S>
where
    S: Service<Request<BoxBody>, Response = Response<BoxBody>>,
    S::Error: Into<BoxError> + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<BoxBody>;
    type Error = BoxError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                self.sleep = None;
                self.failing = false;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
            Poll::Pending => {
                if self.failing {
                    return Poll::Ready(Ok(()));
                }
                if self.states.total() == 0 {
                    if self.resolved.load(Ordering::Acquire) {
                        self.failing = true;
                        return Poll::Ready(Ok(()));
                    }
                    // Discovery has not reported its first set yet, and an empty first set
                    // wakes nobody: look again shortly rather than at the fail-fast deadline.
                    let recheck = self
                        .recheck
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(RECHECK)));
                    if recheck.as_mut().poll(cx).is_ready() {
                        self.recheck = None;
                        cx.waker().wake_by_ref();
                    }
                }
                let timeout = self.timeout;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if sleep.as_mut().poll(cx).is_ready() {
                    self.sleep = None;
                    self.failing = true;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            }
        }
    }

    fn call(&mut self, req: Request<BoxBody>) -> BoxFuture {
        if self.failing {
            return Box::pin(std::future::ready(Err(ProxyError::no_endpoints().into())));
        }
        Box::pin(futures_util::TryFutureExt::map_err(
            self.inner.call(req),
            Into::into,
        ))
    }
}

/// Boxes the inner future so the buffer's type is nameable.
struct BoxFutures<S>(S);

impl<S> Service<Request<BoxBody>> for BoxFutures<S>
where
    S: Service<
            Request<BoxBody>,
            Response = Response<BoxBody>,
            Error = BoxError,
            Future = BoxFuture,
        >,
{
    type Response = Response<BoxBody>;
    type Error = BoxError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<BoxBody>) -> BoxFuture {
        self.0.call(req)
    }
}

#[allow(dead_code)]
fn assert_send<T: Send>(_: &T) {}

#[allow(dead_code)]
async fn oneshot(svc: BackendHandle, req: Request<BoxBody>) -> Result<Response<BoxBody>, BoxError> {
    svc.oneshot(req).await
}
