//! Builds the proxy's service stack from a validated config (DESIGN.md section 3):
//!
//! access-log -> tap -> classify -> error mapping -> upgrade -> router (filters, redirects, injected
//! failures) -> per rule: route metrics -> stream timeouts -> retry -> weighted split -> per
//! backend: backend metrics -> HTTP/2 reset mapping (`http2` backends only: an HTTP/1 backend
//! has no streams to reset) -> backend (load shed -> queue -> fail-fast -> p2c -> endpoints).

use crate::attempt::AttemptTimeout;
use crate::server::InboundBody;
use crate::{
    BoxBody, BoxError,
    backend::{BackendHandle, BackendParams, Discovery, EndpointParams, SystemResolver},
    config::{BackendConfig, BackendProtocol, Config},
    edge_metrics::{EdgeMetricsLayer, TagRouteErrorsLayer},
    errors::ErrorMapLayer,
    tap::{Tap, TapLayer},
};
use http::{Request, Response};
use http_body_util::BodyExt;
use linkerd_exp_backoff::ExponentialBackoff;
use linkerd_http_access_log::{AccessLogLayer, AccessLogWriter};
use linkerd_http_classify::{ClassifyLayer, ProxyError, StatusRanges};
use linkerd_http_metrics::Metrics;
use linkerd_http_retry::{Budget, GrpcCodes, PeekTrailersBody, RetryLayer, RetryPolicy};
use linkerd_http_route::{
    BackendName, MirrorBody, MirrorConfig, MirrorService, RouteLayer, RouteTable, Rule, SharedRng,
    WeightedSplit,
    config::{CompiledRoutes, RuleExtensions},
};
use linkerd_http_stream_timeouts::{StreamTimeouts, StreamTimeoutsLayer};
use linkerd_http_upgrade::{ConnectProtocolFlag, ExtendedConnect, Tunnels, UpgradeLayer};
use std::{
    collections::{HashMap, HashSet},
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tower::{
    Layer, Service, ServiceBuilder, ServiceExt,
    util::{BoxCloneService, Either},
};

/// The proxy's whole service in boxed form (`BoxCloneService::new(built.service)`), for a
/// caller that needs to name its type. [`build`] returns the concrete stack, whose futures
/// the server's connections hold without a box; the server clones it once per connection and
/// calls that copy for each of the connection's requests.
pub type ProxyService = BoxCloneService<Request<InboundBody>, Response<BoxBody>, BoxError>;

/// Calls `svc` at once when it is ready now (the proxy's stacks always are: their queues are
/// per request), so the response future holds neither a service clone nor a second move of
/// itself, as a `Oneshot` would; otherwise a clone is driven to readiness (or to its error)
/// by the returned future. Either future is boxed as it is made (one move of it, into its
/// box, where building an `Either` first and boxing that moved it twice).
#[allow(clippy::type_complexity)]
pub(crate) fn call_now_boxed<S, R>(
    svc: &mut S,
    req: R,
) -> futures_util::future::Either<Pin<Box<S::Future>>, Pin<Box<tower::util::Oneshot<S, R>>>>
where
    S: Service<R> + Clone,
{
    use futures_util::future::Either;
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => Either::Left(Box::pin(svc.call(req))),
        _ => Either::Right(Box::pin(svc.clone().oneshot(req))),
    }
}

/// A service whose response future is boxed. Each rule boxes the future of its retry layer
/// (about 500 bytes, most of it the attempt's future) with it: the layers above it in the
/// rule and at the edge carry a pointer instead, so building their futures and moving them
/// up copies a few hundred bytes less per layer (the rule's whole future was boxed at its top
/// before: the same one allocation per request, 1-1.5k fewer estimated cycles per HTTP/1.1
/// request with `benches/instructions.sh -c`, h2c unchanged).
///
/// The router calls each connection's copy of a rule's stack in place (see `Router`'s
/// "Service clones"), so the stack is cloned when a connection first uses the rule, not per
/// request.
#[derive(Clone)]
pub(crate) struct BoxFutureService<S>(S);

impl<S> std::fmt::Debug for BoxFutureService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxFutureService")
    }
}

impl<S, R> Service<R> for BoxFutureService<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<S::Future>>;

    #[inline(always)]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    #[inline(always)]
    fn call(&mut self, req: R) -> Self::Future {
        Box::pin(self.0.call(req))
    }
}

/// Everything built from a config.
#[derive(Debug)]
pub struct Built<S = ProxyService> {
    /// The service (its futures are not boxed; the server boxes each once).
    pub service: S,
    /// Open tunnels, for graceful shutdown.
    pub tunnels: Tunnels,
    /// The backends, by name (for the endpoint gauges).
    pub backends: Vec<(Arc<str>, BackendHandle)>,
}

/// Builds the stack. Must run inside a tokio runtime (backends start their tasks).
pub fn build(
    config: &Config,
    routes: &CompiledRoutes,
    metrics: &Arc<Metrics>,
    access_log: AccessLogWriter,
    tap: &Tap,
) -> Result<
    Built<
        impl Service<
            Request<InboundBody>,
            Response = Response<BoxBody>,
            Error = BoxError,
            Future: Send + 'static,
        >
        + Clone
        + Send
        + 'static
        + use<>,
    >,
    String,
> {
    let backends: HashMap<String, BackendHandle> = config
        .backends
        .iter()
        .map(|b| (b.name.clone(), backend(b)))
        .collect();

    // The router inserts the rule's policy into every request: an `Arc` makes that a
    // reference-count bump instead of a deep clone.
    let http = routes
        .http
        .iter()
        .map(|r| r.clone().map_policy(Arc::new))
        .collect();
    let grpc = routes
        .grpc
        .iter()
        .map(|r| r.clone().map_policy(Arc::new))
        .collect();
    let table = RouteTable::new(http, grpc).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;

    let mirror = MirrorService::spawn(
        MirrorTarget {
            backends: Arc::new(backends.clone()),
        },
        &MirrorConfig::default(),
    );

    let rng = SharedRng::from_entropy();
    let make_metrics = metrics.clone();
    let make_backends = backends.clone();
    let split_rng = rng.clone();
    let http2: HashSet<String> = config
        .backends
        .iter()
        .filter(|b| b.protocol == BackendProtocol::Http2)
        .map(|b| b.name.clone())
        .collect();
    // Each rule's stack is built with its policy: the router need not insert it per request.
    let router = RouteLayer::new(table)
        .without_policy_extension()
        .with_listen_port(config.listen.port())
        .with_mirror(mirror)
        .with_rng(rng)
        .layer(move |rule: &Rule<Arc<RuleExtensions>>| {
            rule_stack(rule, &make_metrics, &make_backends, &http2, &split_rng)
        });

    let tunnels = Tunnels::new();
    let service = ServiceBuilder::new()
        .map_response(|rsp: Response<_>| rsp.map(BoxBody::new))
        .layer(AccessLogLayer::new(access_log).with_extract(crate::edge_metrics::ReadAnswerInfo))
        .layer(TapLayer::new(tap.clone()))
        .layer(ClassifyLayer::default())
        .layer(ErrorMapLayer)
        .layer(EdgeMetricsLayer::new(metrics.clone()))
        .layer(UpgradeLayer::new(tunnels.clone()))
        .service(router);
    Ok(Built {
        service,
        tunnels,
        backends: backends
            .into_iter()
            .map(|(name, b)| (Arc::<str>::from(name), b))
            .collect(),
    })
}

/// Boxes any body into the stack's body type. Bodies whose errors already are `BoxError` are
/// boxed with `BoxBody::new` instead: no `MapErr` between the box and the body.
pub fn box_body<B>(body: B) -> BoxBody
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

fn backend(b: &BackendConfig) -> BackendHandle {
    let params = BackendParams {
        name: b.name.clone(),
        endpoint: EndpointParams {
            http2: b.protocol == BackendProtocol::Http2,
            connect_timeout: b.connect_timeout(),
            backoff: ExponentialBackoff::try_new(
                Duration::from_millis(100),
                Duration::from_secs(5),
                0.5,
            )
            .expect("constant backoff bounds are valid"),
            // Idle HTTP/1.1 connections kept per endpoint (each closes after 90 s idle).
            // Above the concurrency a busy client brings (the h2c benchmark keeps 512
            // requests in flight): at 256, the connections returned past the bound were
            // closed and dialled again moments later, 2 per 1,000 requests.
            max_idle: 1024,
        },
        fail_fast: b.fail_fast(),
        queue: b.queue(),
    };
    let discovery = match (&b.endpoints, &b.dns) {
        (_, Some(dns)) => Discovery::Dns {
            target: dns.clone(),
            refresh: b.dns_refresh(),
            resolver: Arc::new(SystemResolver),
        },
        (Some(endpoints), None) => Discovery::Static(endpoints.clone()),
        (None, None) => Discovery::Static(vec![]),
    };
    BackendHandle::new(&params, discovery)
}

/// The per-rule stack: route metrics -> stream timeouts -> (per-try timeout) -> retry ->
/// weighted split over the rule's backends -> backend metrics -> (`http2` backends: reset
/// mapping) -> the backend.
fn rule_stack(
    rule: &Rule<Arc<RuleExtensions>>,
    metrics: &Arc<Metrics>,
    backends: &HashMap<String, BackendHandle>,
    http2: &HashSet<String>,
    rng: &SharedRng,
) -> impl Service<
    Request<MirrorBody<EdgeBody>>,
    Response = Response<BoxBody>,
    Error = BoxError,
    Future: Send + 'static,
>
+ Clone
+ Send
+ Sync
+ 'static
+ use<> {
    let route_name = rule.route_name().clone();
    let families = metrics.route_families(rule.is_grpc());
    let policy = rule.policy();

    // One concrete type per rule, its future boxed once (below the stream timeouts): every
    // nested box would cost an allocation per request (the retry layer clones its inner
    // service per request, and a router clone the rule's whole stack when it first calls it).
    let split_backends: Vec<_> = rule
        .backends()
        .iter()
        .filter_map(|r| {
            let handle = backends.get(r.name.as_str())?.clone();
            // An `http2` backend: its resets are mapped (DESIGN.md section 5) and counted.
            // Tunnels to it become extended CONNECT streams on the endpoint's connection,
            // which answers 502 `upstream cannot tunnel` when its upstream does not advertise
            // extended CONNECT (DESIGN.md 4.1). An `http1` backend has no streams to
            // reset, and hyper's HTTP/1 client already fails a body shorter than its
            // `content-length`, which is all the reset layer would check on it: without the
            // layer, its errors and bodies reach the layers above unchanged, for 1-3k fewer
            // estimated cycles per h2c request (benches/instructions.sh -c; BENCHMARKS.md).
            let handle = if http2.contains(r.name.as_str()) {
                Either::Left(
                    ServiceBuilder::new()
                        .map_response(|rsp: Response<_>| rsp.map(http_body_util::Either::Left))
                        .layer(linkerd_http_h2::H2ResetLayer::with_hook(ResetHook(
                            metrics.clone(),
                        )))
                        .service(ExtendedConnect::new(handle, tunnels_always())),
                )
            } else {
                Either::Right(
                    ServiceBuilder::new()
                        .map_response(|rsp: Response<_>| rsp.map(http_body_util::Either::Right))
                        .service(handle),
                )
            };
            let svc = ServiceBuilder::new()
                .layer(families.backend_layer(route_name.clone(), r.name.as_str()))
                .service(handle);
            Some((r.name.clone(), r.weight, svc))
        })
        .collect();
    let Ok(split) = WeightedSplit::new(split_backends, rng.clone()) else {
        // The router answers rules without backends itself; this is never called.
        return Either::Right(tower::service_fn(|_req: Request<MirrorBody<EdgeBody>>| {
            std::future::ready(Err::<Response<BoxBody>, BoxError>(
                ProxyError::no_backends().into(),
            ))
        }));
    };

    let timeouts = policy.timeouts.clone().unwrap_or_default();
    let nonzero = |d: Option<Duration>| d.filter(|d| !d.is_zero());
    let backend_request = nonzero(timeouts.backend_request);
    let mut stream = StreamTimeouts::default();
    stream.lifetime = nonzero(timeouts.request);
    if let Some(st) = &policy.stream_timeouts {
        stream.response_headers = nonzero(st.response_headers);
        stream.response_end = nonzero(st.response);
        stream.idle = nonzero(st.idle);
    }

    let retry = policy
        .retry
        .as_ref()
        .map(|r| retry_policy(r, backend_request));

    // `backendRequest` bounds each attempt to the end of its response body; until the
    // headers, the retry layer's per-try timer does it when there is one.
    let attempt = match backend_request {
        Some(timeout) => Either::Left(AttemptTimeout::new(split, timeout, retry.is_none())),
        None => Either::Right(
            ServiceBuilder::new()
                .map_response(crate::attempt::unbounded)
                .service(split),
        ),
    };
    // The retry layer cuts an attempt at the request's `Deadline` (per-try timers end there
    // too), so the stream-timeouts layer needs no timer of its own until the headers: one
    // timer per request instead of two.
    let mut stream_layer = StreamTimeoutsLayer::new(stream);
    if retry.is_some() {
        stream_layer = stream_layer.inner_enforces_deadline();
    }
    let retried = match retry {
        // Both branches answer with a `PeekTrailersBody` over the backend's body (a
        // pass-through one without retries), so no body box is needed to unify them.
        Some(policy) => Either::Left(
            ServiceBuilder::new()
                .layer(RetryLayer::with_default(Arc::new(policy)))
                .map_request(|req: Request<_>| req.map(BoxBody::new))
                .service(attempt),
        ),
        None => Either::Right(
            ServiceBuilder::new()
                .map_response(|rsp: Response<_>| rsp.map(PeekTrailersBody::passthrough))
                .map_request(|req: Request<RuleBody>| req.map(BoxBody::new))
                .service(attempt),
        ),
    };

    let svc = ServiceBuilder::new()
        .layer(TagRouteErrorsLayer)
        .map_response(|rsp: Response<_>| rsp.map(BoxBody::new))
        .layer(families.route_layer(route_name))
        .layer(stream_layer)
        .service(BoxFutureService(retried));
    Either::Left(svc)
}

/// The request body the edge hands the router: the server's, counted by the access log. Not
/// boxed there: it is boxed once, below the retry layer, for the backends.
type EdgeBody = linkerd_http_access_log::RequestBody<InboundBody>;

/// The request body inside a rule's stack (after stream timeouts).
type RuleBody = linkerd_http_stream_timeouts::RequestBody<MirrorBody<EdgeBody>>;

/// The retry policy of a rule's `retry` block; `backendRequest` is its per-try timeout.
fn retry_policy(
    r: &linkerd_http_route::config::Retry,
    backend_request: Option<Duration>,
) -> RetryPolicy {
    let mut p = RetryPolicy::default();
    p.max_retries = r.attempts.unwrap_or(1);
    p.codes = r.http_codes.iter().fold(StatusRanges::empty(), |s, c| {
        s.with_range(c.as_u16(), c.as_u16())
    });
    p.grpc_codes = r.grpc_codes.iter().copied().collect::<GrpcCodes>();
    let min = r.backoff.unwrap_or(Duration::from_millis(25));
    let max = r.max_backoff.unwrap_or(Duration::from_millis(250)).max(min);
    if let Ok(b) = ExponentialBackoff::try_new(min, max, 0.5) {
        p.backoff = b;
    }
    if let Some(n) = r.max_request_bytes {
        p.max_request_bytes = usize::try_from(n).unwrap_or(usize::MAX);
    }
    p.per_try_timeout = backend_request;
    p.replay_extensions = Some(replay_extensions);
    p.note_last_attempt = Some(note_last_backend);
    if r.budget_ratio.is_some() || r.budget_min_per_second.is_some() {
        let ratio = r.budget_ratio.unwrap_or(0.2);
        let min = r.budget_min_per_second.unwrap_or(10);
        p.budget = Budget::new(ratio, min).ok().map(Arc::new);
    }
    p
}

/// A request dropped during its backoff (a client gone, a timer above) says where its last
/// attempt went: the backend on the attempt's response, or in its error (the weighted
/// split's), for the access log.
fn note_last_backend(
    last: Result<&http::Extensions, &(dyn std::error::Error + 'static)>,
    note: &mut linkerd_http_classify::dropped::DropNote,
) {
    let backend = match last {
        Ok(ext) => ext.get::<linkerd_http_route::BackendName>(),
        Err(error) => linkerd_http_route::BackendError::find(error),
    };
    if let Some(backend) = backend {
        note.backend_or(backend.as_arc());
    }
}

/// The request extensions a retried attempt carries: those the stack below the retry layer
/// reads, and of those only the ones it could not work out from the request itself.
///
/// Below the retry layer, the backend metrics read the protocol and the response
/// classifier (falling back to what the request's version and `content-type` give, which is
/// what the classify layer inserted unless the request changed since), the extended CONNECT
/// check reads the protocol (same fallback), and the endpoint reads `AbsoluteForm` (a
/// request that arrived in absolute-form goes upstream in it). The rest (the client
/// address, the route match, the deadline) are read above the retry layer, or by it from
/// the original request. So an ordinary request keeps no extensions at all: copying them
/// for every retryable request cost about 3% of the proxy's CPU per request.
fn replay_extensions(head: &http::request::Parts) -> http::Extensions {
    use linkerd_http_classify::{DefaultClassify, Protocol, ResponseClassifier};
    let mut replay = http::Extensions::new();
    let ext = &head.extensions;
    let derived = Protocol::of_head(head.version, &head.headers);
    if let Some(protocol) = ext.get::<Protocol>()
        && *protocol != derived
    {
        replay.insert(*protocol);
    }
    if let Some(classifier) = ext.get::<ResponseClassifier>()
        && *classifier != DefaultClassify::default().classify_protocol(derived)
    {
        replay.insert(*classifier);
    }
    if ext.get::<linkerd_http_upgrade::AbsoluteForm>().is_some() {
        replay.insert(linkerd_http_upgrade::AbsoluteForm);
    }
    replay
}

/// The extended CONNECT flag the rules' `http2` backends are wrapped with: always on, as the
/// endpoint decides, on the connection it sends the tunnel on (its upstream's setting, read
/// there; 502 `upstream cannot tunnel` when it is off).
fn tunnels_always() -> ConnectProtocolFlag {
    let flag = ConnectProtocolFlag::new();
    flag.set(true);
    flag
}

/// Records the resets received from HTTP/2 upstreams in `http_stream_resets_total`
/// (`direction="inbound"`, one per attempt that saw one). The reset layer also reports the
/// reason it chose for the client, but whether the client gets a reset at all (not after a
/// retry, not on HTTP/1) is known only at the server edge, which counts the resets it sends
/// (`server::ResetObserver`).
#[derive(Clone, Debug)]
struct ResetHook(Arc<Metrics>);

impl linkerd_http_h2::OnReset for ResetHook {
    fn on_reset(&self, direction: linkerd_http_h2::ResetDirection, reason: h2::Reason) {
        if let linkerd_http_h2::ResetDirection::Inbound = direction {
            self.0
                .record_reset(linkerd_http_prom::Direction::Inbound, reason);
        }
    }
}

/// Sends mirrored requests to the backend their `BackendName` extension names.
#[derive(Clone)]
struct MirrorTarget {
    backends: Arc<HashMap<String, BackendHandle>>,
}

impl Service<Request<linkerd_http_route::MirrorRequestBody>> for MirrorTarget {
    type Response = Response<BoxBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<linkerd_http_route::MirrorRequestBody>) -> Self::Future {
        let backend = req
            .extensions()
            .get::<BackendName>()
            .and_then(|name| self.backends.get(name.as_str()))
            .cloned();
        let req = req.map(box_body);
        match backend {
            Some(b) => Box::pin(b.oneshot(req)),
            None => Box::pin(std::future::ready(Err(ProxyError::no_backends().into()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::replay_extensions;
    use linkerd_http_classify::{
        Classify, Deadline, DefaultClassify, HttpClassifier, Protocol, ResponseClassifier,
        StatusRanges,
    };
    use linkerd_http_upgrade::AbsoluteForm;

    fn head(content_type: &str, version: http::Version) -> http::request::Parts {
        http::Request::post("http://svc.test/pkg.Svc/Call")
            .version(version)
            .header("content-type", content_type)
            .body(())
            .expect("request")
            .into_parts()
            .0
    }

    /// Below the retry layer, a missing protocol or classifier is worked out from the
    /// request the same way, so a retried attempt sees the same values either way.
    fn as_seen_below_retry(
        replayed: &http::Extensions,
        head: &http::request::Parts,
    ) -> (Protocol, ResponseClassifier) {
        (
            replayed
                .get::<Protocol>()
                .copied()
                .unwrap_or_else(|| Protocol::of_head(head.version, &head.headers)),
            replayed
                .get::<ResponseClassifier>()
                .copied()
                .unwrap_or_else(|| {
                    DefaultClassify::default()
                        .classify_protocol(Protocol::of_head(head.version, &head.headers))
                }),
        )
    }

    #[test]
    fn retries_replay_what_the_backend_stack_reads() {
        // As the edge leaves an ordinary gRPC request: nothing to replay.
        let mut grpc = head("application/grpc", http::Version::HTTP_2);
        let req = http::Request::from_parts(grpc.clone(), ());
        let classifier = DefaultClassify::default().classify(&req);
        grpc.extensions.insert(Protocol::of(&req));
        grpc.extensions.insert(classifier);
        grpc.extensions.insert(linkerd_http_access_log::ClientAddr(
            "127.0.0.1:1".parse().expect("addr"),
        ));
        grpc.extensions
            .insert(Deadline(tokio::time::Instant::now()));
        let replay = replay_extensions(&grpc);
        assert!(
            replay.is_empty(),
            "nothing a retry could not work out again"
        );
        assert_eq!(
            as_seen_below_retry(&replay, &grpc),
            (Protocol::Grpc, classifier)
        );

        // The request changed after the edge classified it (a filter rewrote its
        // `content-type`, or the upgrade layer its version): the edge's values go along.
        let mut changed = head("text/plain", http::Version::HTTP_11);
        let custom = ResponseClassifier::Http(HttpClassifier::new(StatusRanges::empty()));
        changed.extensions.insert(Protocol::Http2);
        changed.extensions.insert(custom);
        changed.extensions.insert(AbsoluteForm);
        let replay = replay_extensions(&changed);
        assert_eq!(replay.get::<Protocol>(), Some(&Protocol::Http2));
        assert_eq!(replay.get::<ResponseClassifier>(), Some(&custom));
        assert!(
            replay.get::<AbsoluteForm>().is_some(),
            "absolute-form stays"
        );
        assert_eq!(replay.len(), 3);
        assert_eq!(
            as_seen_below_retry(&replay, &changed),
            (Protocol::Http2, custom)
        );
    }
}
