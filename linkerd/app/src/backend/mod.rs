//! Backends (DESIGN.md section 3 step 6): load shed -> bounded wait list -> fail-fast -> p2c
//! (PeakEwma, load counted until the response body ends) -> one endpoint service per address.

mod discovery;
mod endpoint;
mod h1pool;
mod h2conn;

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
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};
use tower::{
    Service, ServiceExt,
    balance::p2c::Balance,
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

/// A cloneable handle to a backend: requests go straight to the shared balancer when it has
/// a ready endpoint; otherwise they wait (at most `queue` of them; more are shed).
///
/// The balancer sits behind a mutex held only to poll its readiness and start a call, so a
/// request is dispatched on the caller's task: no queue worker, no hand-off per request.
/// Waiting requests are woken together whenever the balancer's state changes (an endpoint
/// becomes ready, discovery changes, a fail-fast timer fires) and race for it again.
#[derive(Clone)]
pub struct BackendHandle {
    shared: Arc<Shared>,
    states: Arc<EndpointStates>,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, BoxError>> + Send>>;

type SharedService = Box<
    dyn Service<
            Request<BoxBody>,
            Response = Response<BoxBody>,
            Error = BoxError,
            Future = BoxFuture,
        > + Send,
>;

struct Shared {
    balancer: Mutex<SharedService>,
    /// Wakes every waiting request; the waker the balancer is polled with.
    wake_all: Waker,
    waiters: Arc<Waiters>,
    /// Requests waiting for an endpoint.
    waiting: AtomicUsize,
    capacity: usize,
    /// The endpoint, when the backend has exactly one.
    sole: Arc<SoleEndpoint>,
}

/// The only endpoint of a backend that has exactly one: p2c over one endpoint always picks
/// it, and load tracking has nothing to compare, so a request finding it ready goes straight
/// to it (no balancer lock, no ready-cache bookkeeping, no completion tracking). When it is
/// not ready, requests take the balancer's path (waiting, fail-fast) as usual.
#[derive(Default)]
struct SoleEndpoint(std::sync::RwLock<Option<Endpoint>>);

impl SoleEndpoint {
    fn set(&self, ep: Option<Endpoint>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = ep;
    }

    /// Sends `req` (unwrapped by `open`) to the sole endpoint if there is one and it is
    /// ready; else gives it back as it was.
    #[allow(clippy::result_large_err)] // the request comes back as it was given
    fn send<R>(&self, req: R, open: fn(R) -> Request<BoxBody>) -> Result<BoxFuture, R> {
        let ep = self.0.read().unwrap_or_else(|e| e.into_inner());
        match ep.as_ref() {
            Some(ep) if ep.is_ready() => Ok(ep.send(open(req))),
            _ => Err(req),
        }
    }
}

#[derive(Default)]
struct Waiters(Mutex<Vec<Waker>>);

/// The response future of [`BackendHandle`].
pub struct DispatchFuture {
    state: Dispatch,
    shared: Arc<Shared>,
    /// Whether this request counts in `waiting`.
    counted: bool,
}

enum Dispatch {
    /// No endpoint took the request at `call`: it waits, boxed (the common case, a ready
    /// sole endpoint, sends at once and keeps every enclosing future small).
    Waiting(Option<Box<Request<BoxBody>>>),
    Called(BoxFuture),
    Done,
}

impl std::fmt::Debug for BackendHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendHandle")
            .field("ready", &self.states.ready())
            .field("pending", &self.states.pending())
            .field("waiting", &self.shared.waiting.load(Ordering::Relaxed))
            .finish()
    }
}

impl BackendHandle {
    /// Builds the backend and starts its discovery and endpoint probers.
    pub fn new(params: &BackendParams, discovery: Discovery) -> Self {
        let states = Arc::new(EndpointStates::default());
        let resolved = Arc::new(AtomicBool::new(false));
        // A static set is known at once; a DNS set only from its first answer on.
        let known = matches!(discovery, Discovery::Static(_));
        let addrs = discovery.spawn();
        let sole = Arc::new(SoleEndpoint::default());
        let changes = endpoint_changes(
            addrs,
            known,
            params.endpoint.clone(),
            states.clone(),
            resolved.clone(),
            sole.clone(),
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
        let waiters = Arc::new(Waiters::default());
        let shared = Arc::new(Shared {
            balancer: Mutex::new(Box::new(fail_fast)),
            wake_all: Waker::from(waiters.clone()),
            waiters,
            waiting: AtomicUsize::new(0),
            capacity: params.queue.max(1),
            sole,
        });
        Self { shared, states }
    }

    /// The endpoint state counts.
    pub fn states(&self) -> &Arc<EndpointStates> {
        &self.states
    }
}

impl Service<Request<BoxBody>> for BackendHandle {
    type Response = Response<BoxBody>;
    type Error = BoxError;
    type Future = DispatchFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness is decided per request: a full wait list sheds the request.
        Poll::Ready(Ok(()))
    }

    #[inline(always)]
    fn call(&mut self, req: Request<BoxBody>) -> DispatchFuture {
        let state = match self.shared.sole.send(req, std::convert::identity) {
            Ok(fut) => Dispatch::Called(fut),
            Err(req) => Dispatch::Waiting(Some(Box::new(req))),
        };
        DispatchFuture {
            state,
            shared: self.shared.clone(),
            counted: false,
        }
    }
}

// === impl Waiters ===

impl std::task::Wake for Waiters {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let waiting = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        for w in waiting {
            w.wake();
        }
    }
}

impl Waiters {
    fn push(&self, waker: &Waker) {
        let mut list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !list.iter().any(|w| w.will_wake(waker)) {
            list.push(waker.clone());
        }
    }
}

// === impl DispatchFuture ===

impl DispatchFuture {
    /// Polls the balancer's readiness and starts the call when it is ready.
    fn try_dispatch(&mut self, cx: &mut Context<'_>) -> Poll<Result<BoxFuture, BoxError>> {
        let shared = &*self.shared;
        if let Dispatch::Waiting(slot) = &mut self.state
            && let Some(req) = slot.take()
        {
            match shared.sole.send(req, |r| *r) {
                Ok(fut) => return Poll::Ready(Ok(fut)),
                Err(req) => *slot = Some(req),
            }
        }
        let mut balancer = shared.balancer.lock().unwrap_or_else(|e| e.into_inner());
        let mut shared_cx = Context::from_waker(&shared.wake_all);
        let mut ready = balancer.poll_ready(&mut shared_cx);
        if ready.is_pending() {
            // Register, then look once more: a change between the first look and the
            // registration has woken nobody, but shows now.
            shared.waiters.push(cx.waker());
            ready = balancer.poll_ready(&mut shared_cx);
        }
        match ready {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                let Dispatch::Waiting(req) = &mut self.state else {
                    return Poll::Ready(Err("backend dispatch polled after completion".into()));
                };
                match req.take() {
                    Some(req) => Poll::Ready(Ok(balancer.call(*req))),
                    None => Poll::Ready(Err("backend dispatch polled after completion".into())),
                }
            }
        }
    }

    fn uncount(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Future for DispatchFuture {
    type Output = Result<Response<BoxBody>, BoxError>;

    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                Dispatch::Called(fut) => {
                    let out = std::task::ready!(fut.as_mut().poll(cx));
                    this.state = Dispatch::Done;
                    return Poll::Ready(out);
                }
                Dispatch::Done => {
                    return Poll::Ready(Err("backend dispatch polled after completion".into()));
                }
                Dispatch::Waiting(_) => match this.try_dispatch(cx) {
                    Poll::Ready(Ok(fut)) => {
                        this.uncount();
                        this.state = Dispatch::Called(fut);
                    }
                    Poll::Ready(Err(e)) => {
                        this.uncount();
                        this.state = Dispatch::Done;
                        return Poll::Ready(Err(e));
                    }
                    Poll::Pending => {
                        if !this.counted {
                            // Shed at once when the wait list is full.
                            let waiting = this.shared.waiting.fetch_add(1, Ordering::AcqRel);
                            this.counted = true;
                            if waiting >= this.shared.capacity {
                                this.uncount();
                                this.state = Dispatch::Done;
                                return Poll::Ready(Err(ProxyError::load_shed().into()));
                            }
                        }
                        return Poll::Pending;
                    }
                },
            }
        }
    }
}

impl Drop for DispatchFuture {
    fn drop(&mut self) {
        self.uncount();
    }
}

impl std::fmt::Debug for DispatchFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            Dispatch::Waiting(_) => "waiting",
            Dispatch::Called(_) => "called",
            Dispatch::Done => "done",
        };
        f.debug_struct("DispatchFuture")
            .field("state", &state)
            .finish()
    }
}

/// Turns the watched address set into discovery changes, one endpoint per address.
fn endpoint_changes(
    mut addrs: tokio::sync::watch::Receiver<BTreeSet<SocketAddr>>,
    mut known: bool,
    params: EndpointParams,
    states: Arc<EndpointStates>,
    resolved: Arc<AtomicBool>,
    sole: Arc<SoleEndpoint>,
) -> impl Stream<Item = Result<Change<SocketAddr, Endpoint>, Infallible>> + Send + Unpin + 'static {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut current: HashMap<SocketAddr, Endpoint> = HashMap::new();
        loop {
            let next: BTreeSet<SocketAddr> = {
                let set = addrs.borrow_and_update();
                // A change seen here (before `changed()` below could report it) is discovery's
                // first answer too.
                known |= set.has_changed();
                set.clone()
            };
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
            sole.set(
                (current.len() == 1)
                    .then(|| current.values().next().cloned())
                    .flatten(),
            );
            if known {
                // From now on an empty set means "no endpoints", not "not known yet".
                resolved.store(true, Ordering::Release);
            }
            tokio::select! {
                changed = addrs.changed() => match changed {
                    Ok(()) => known = true,
                    Err(_) => break,
                },
                _ = tx.closed() => break,
            }
        }
        sole.set(None);
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
                // `resolved` first: discovery counts its endpoints before it sets `resolved`,
                // so a count read after seeing it set includes them. Read the other way round,
                // an empty count from before discovery ran could pair with `resolved` set
                // since, and fail requests with `no endpoints` right after start-up.
                let resolved = self.resolved.load(Ordering::Acquire);
                if self.states.total() == 0 {
                    if resolved {
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
                // `failFast: 0s` turns it off: requests wait for an endpoint (bounded by the
                // queue and the rule's timeouts).
                if self.timeout.is_zero() {
                    return Poll::Pending;
                }
                // The period counts from when the last endpoint stopped being ready (or the
                // backend started), not from this request: endpoints down for longer than it
                // fail requests at once (DESIGN.md section 3).
                let waited = self.states.none_ready_for().unwrap_or_default();
                let left = self.timeout.saturating_sub(waited);
                if left.is_zero() {
                    self.sleep = None;
                    self.failing = true;
                    return Poll::Ready(Ok(()));
                }
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(left)));
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

#[allow(dead_code)]
fn assert_send<T: Send>(_: &T) {}

#[allow(dead_code)]
async fn oneshot(svc: BackendHandle, req: Request<BoxBody>) -> Result<Response<BoxBody>, BoxError> {
    svc.oneshot(req).await
}
