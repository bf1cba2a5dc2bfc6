use crate::{
    Filter, HeaderModifier, MirrorBody, MirrorService, RouteBody, RouteMatch, RouteTable, Rule,
    SharedRng, mirror::mirror_head, ready_call::ReadyCall,
};
use http::{HeaderValue, Request, Response, header};
use http_body::Body;
use linkerd_http_classify::{Protocol, ProxyError, RequestStart, clock};
use pin_project_lite::pin_project;
use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tower_service::Service;

/// Builds the inner service of each rule (called once per rule with backends, when the
/// [`RouteLayer`] wraps it).
///
/// Implemented by closures `FnMut(&Rule<P>) -> S`.
pub trait MakeRoute<P> {
    /// The per-rule service.
    type Service;

    /// The service for `rule`.
    fn make_route(&mut self, rule: &Rule<P>) -> Self::Service;
}

/// Builds a [`Router`] over a compiled [`RouteTable`] (see the crate docs).
pub struct RouteLayer<P> {
    table: Arc<RouteTable<P>>,
    listen_port: Option<u16>,
    mirror: Option<MirrorService>,
    rng: SharedRng,
    response_headers: bool,
    policy_extension: bool,
}

/// Matches each request against a [`RouteTable`] and dispatches it to its rule's service.
///
/// Per request: inserts the [`RouteMatch`] and the rule's policy `P` into the request
/// extensions, applies the rule's filters in order, answers redirects, injected failures, no
/// route (404) and no backends (500) itself, and otherwise calls the rule's service with a
/// [`MirrorBody`]. The response (synthetic or not) gets the `RouteMatch` extension and the
/// rule's `ResponseHeaderModifier`s.
///
/// # Service clones
///
/// Each rule's service is built once and shared. A clone of the `Router` (one per
/// connection, say) keeps its own clone of the last rule's service it called and calls it in
/// place while requests keep matching that rule: a run of requests to one rule clones the
/// service once, not once per request. A service that is not ready at once is cloned and the
/// clone driven to readiness in the response future, so one saturated rule never holds up
/// requests to another.
pub struct Router<P, S> {
    table: Arc<RouteTable<P>>,
    services: Arc<[Option<S>]>,
    /// This clone's copy of the service of the rule it called last, and that rule's id.
    current: Option<(usize, S)>,
    response_headers: Arc<[Arc<[HeaderModifier]>]>,
    listen_port: Option<u16>,
    mirror: Option<MirrorService>,
    rng: SharedRng,
    policy_extension: bool,
}

pin_project! {
    /// The [`Router`]'s response future.
    pub struct ResponseFuture<S, R, RB>
    where
        S: Service<R>,
    {
        #[pin]
        state: State<S, R, RB>,
        matched: Option<RouteMatch>,
        response_headers: Option<Arc<[HeaderModifier]>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, R, RB>
    where
        S: Service<R>,
    {
        // The router's own answers and injected delays are boxed: every request's future
        // (and every layer's above it) would otherwise carry their size, moved by value.
        Respond { rsp: Option<Box<Response<RouteBody<RB>>>> },
        Delay { sleep: Pin<Box<tokio::time::Sleep>>, then: Option<Box<Then<S, R, RB>>> },
        // The rule's service, called at once when it was ready.
        Call { #[pin] call: ReadyCall<S, R> },
    }
}

enum Then<S, R, RB> {
    Respond(Response<RouteBody<RB>>),
    Call(S, R),
}

/// What a request leads to once the filters ran, before a service is picked.
enum Next<R, RB> {
    Respond(Response<RouteBody<RB>>),
    Call(R),
}

// === impl MakeRoute ===

impl<P, S, F> MakeRoute<P> for F
where
    F: FnMut(&Rule<P>) -> S,
{
    type Service = S;

    fn make_route(&mut self, rule: &Rule<P>) -> S {
        self(rule)
    }
}

// === impl RouteLayer ===

impl<P> RouteLayer<P> {
    /// A layer routing with `table`, with a random seed from the OS and no mirror.
    pub fn new(table: impl Into<Arc<RouteTable<P>>>) -> Self {
        Self {
            table: table.into(),
            listen_port: None,
            mirror: None,
            rng: SharedRng::from_entropy(),
            response_headers: true,
            policy_extension: true,
        }
    }

    /// Does not insert the rule's policy `P` into each request: for applications whose
    /// per-rule services already hold their policy (built by [`MakeRoute`] from the rule),
    /// which saves an extension allocation per request. The [`RouteMatch`] is still inserted.
    #[must_use]
    pub fn without_policy_extension(mut self) -> Self {
        self.policy_extension = false;
        self
    }

    /// Leaves `ResponseHeaderModifier` filters to a
    /// [`ResponseHeaderModifierLayer`](crate::ResponseHeaderModifierLayer) in each rule's stack
    /// (so they apply to every retry attempt's response) instead of applying them to the final
    /// response.
    #[must_use]
    pub fn without_response_headers(mut self) -> Self {
        self.response_headers = false;
        self
    }

    /// The port the proxy listens on: the port of redirects that set neither a port nor a
    /// scheme (else the request's port is used).
    #[must_use]
    pub fn with_listen_port(mut self, port: u16) -> Self {
        self.listen_port = Some(port);
        self
    }

    /// Where `RequestMirror` copies go; without one, mirror filters do nothing.
    #[must_use]
    pub fn with_mirror(mut self, mirror: MirrorService) -> Self {
        self.mirror = Some(mirror);
        self
    }

    /// The random source of mirror and failure-injection ratios (seed it in tests).
    #[must_use]
    pub fn with_rng(mut self, rng: SharedRng) -> Self {
        self.rng = rng;
        self
    }

    /// The route table.
    pub fn table(&self) -> &Arc<RouteTable<P>> {
        &self.table
    }
}

impl<P> Clone for RouteLayer<P> {
    fn clone(&self) -> Self {
        Self {
            table: self.table.clone(),
            listen_port: self.listen_port,
            mirror: self.mirror.clone(),
            rng: self.rng.clone(),
            response_headers: self.response_headers,
            policy_extension: self.policy_extension,
        }
    }
}

impl<P> fmt::Debug for RouteLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteLayer")
            .field("table", &self.table)
            .field("listen_port", &self.listen_port)
            .field("mirror", &self.mirror)
            .finish_non_exhaustive()
    }
}

impl<P, M: MakeRoute<P>> tower_layer::Layer<M> for RouteLayer<P> {
    type Service = Router<P, M::Service>;

    fn layer(&self, mut make: M) -> Self::Service {
        let services: Vec<Option<M::Service>> = self
            .table
            .rules()
            .iter()
            .map(|rule| rule.has_backends().then(|| make.make_route(rule)))
            .collect();
        let response_headers: Vec<Arc<[HeaderModifier]>> = self
            .table
            .rules()
            .iter()
            .map(|rule| {
                rule.filters()
                    .iter()
                    .filter_map(|f| match f {
                        Filter::ResponseHeaderModifier(m) if self.response_headers => {
                            Some(m.clone())
                        }
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        Router {
            table: self.table.clone(),
            services: services.into(),
            current: None,
            response_headers: response_headers.into(),
            listen_port: self.listen_port,
            mirror: self.mirror.clone(),
            rng: self.rng.clone(),
            policy_extension: self.policy_extension,
        }
    }
}

// === impl Router ===

impl<P> Router<P, ()> {
    /// A shortcut for [`RouteLayer::new`].
    pub fn layer(table: impl Into<Arc<RouteTable<P>>>) -> RouteLayer<P> {
        RouteLayer::new(table)
    }
}

impl<P, S> Router<P, S> {
    /// The route table.
    pub fn table(&self) -> &Arc<RouteTable<P>> {
        &self.table
    }

    /// The cached service of each rule (`None` for rules without backends), in
    /// [`RouteTable::rules`] order.
    pub fn services(&self) -> &[Option<S>] {
        &self.services
    }
}

impl<P, S> Clone for Router<P, S> {
    /// A router over the same table and services, without this one's current service.
    fn clone(&self) -> Self {
        Self {
            table: self.table.clone(),
            services: self.services.clone(),
            current: None,
            response_headers: self.response_headers.clone(),
            listen_port: self.listen_port,
            mirror: self.mirror.clone(),
            rng: self.rng.clone(),
            policy_extension: self.policy_extension,
        }
    }
}

impl<P, S> fmt::Debug for Router<P, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("table", &self.table)
            .field("listen_port", &self.listen_port)
            .field("mirror", &self.mirror)
            .finish_non_exhaustive()
    }
}

fn synthetic<RB>(err: &ProxyError, protocol: Protocol) -> Response<RouteBody<RB>> {
    err.to_response::<RouteBody<RB>>(protocol)
}

fn redirect<RB>(location: HeaderValue, status: http::StatusCode) -> Response<RouteBody<RB>> {
    let mut rsp = Response::new(RouteBody::empty());
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(header::LOCATION, location);
    rsp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    rsp
}

impl<P, S, B, RB> Service<Request<B>> for Router<P, S>
where
    P: Clone + Send + Sync + 'static,
    S: Service<Request<MirrorBody<B>>, Response = Response<RB>> + Clone,
    B: Body,
{
    type Response = Response<RouteBody<RB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<MirrorBody<B>>, RB>;

    /// Always ready: a rule's service that is not ready when a request for it arrives is
    /// cloned and driven to readiness inside the response future, so one saturated rule never
    /// blocks the others.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    #[inline(always)]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let protocol = req
            .extensions()
            .get::<Protocol>()
            .copied()
            .unwrap_or_else(|| Protocol::of(&req));
        let Some(matched) = self.table.find(&req) else {
            return ResponseFuture::new(
                State::Respond {
                    rsp: Some(Box::new(synthetic(&ProxyError::no_route(), protocol))),
                },
                None,
                None,
            );
        };
        let id = RouteTable::<P>::rule_id(&matched);
        let rule = &self.table.rules()[id];
        // Most rules have no response header modifiers: nothing to carry to the response.
        let response_headers = Some(&self.response_headers[id])
            .filter(|m| !m.is_empty())
            .cloned();
        req.extensions_mut().insert(matched.clone());
        if self.policy_extension {
            req.extensions_mut().insert(rule.policy().clone());
        }

        let mut delay = Duration::ZERO;
        let mut answer = None;
        let mut mirror_heads = Vec::new();
        for filter in rule.filters() {
            match filter {
                Filter::RequestHeaderModifier(m) => m.apply(req.headers_mut()),
                Filter::ResponseHeaderModifier(_) => {}
                Filter::UrlRewrite(r) => r.apply(&mut req, &matched),
                Filter::RequestRedirect(r) => {
                    let location = r.location(req.uri(), req.headers(), &matched, self.listen_port);
                    answer = Some(match location {
                        Some(l) => redirect(l, r.status),
                        None => synthetic(&ProxyError::internal(), protocol),
                    });
                    break;
                }
                Filter::RequestMirror(m) => {
                    if self.mirror.is_some() && self.rng.chance(m.ratio) {
                        mirror_heads.push(mirror_head(&req, &m.backend));
                    }
                }
                Filter::InjectFailure(inj) => {
                    if let Some(d) = &inj.delay
                        && self.rng.chance(d.ratio)
                    {
                        delay += d.delay;
                    }
                    if let Some(a) = &inj.abort
                        && self.rng.chance(a.ratio)
                    {
                        answer = Some(synthetic(&a.to_proxy_error(), protocol));
                        break;
                    }
                }
            }
        }

        let next = match answer {
            Some(rsp) => {
                // A proxy answer reads no body: only a request already complete is mirrored.
                if let Some(mirror) = &self.mirror {
                    crate::mirror::mirror_unread(req.body(), mirror_heads, mirror);
                }
                Next::Respond(rsp)
            }
            None if self.services[id].is_some() => {
                let (parts, body) = req.into_parts();
                let body = match &self.mirror {
                    Some(mirror) => MirrorBody::mirrored(body, mirror_heads, mirror),
                    None => MirrorBody::passthrough(body),
                };
                Next::Call(Request::from_parts(parts, body))
            }
            None => Next::Respond(synthetic(&ProxyError::no_backends(), protocol)),
        };
        let state = match next {
            Next::Respond(rsp) if delay.is_zero() => State::Respond {
                rsp: Some(Box::new(rsp)),
            },
            Next::Call(req) if delay.is_zero() => self.call_rule(id, req, protocol),
            next => {
                // The rule's service is called once the delay ends: a clone of its own.
                let then = match next {
                    Next::Respond(mut rsp) => {
                        // The answer's metrics count the request from now, with the delay.
                        rsp.extensions_mut().insert(RequestStart(clock::now()));
                        Then::Respond(rsp)
                    }
                    Next::Call(mut req) => match self.services[id].clone() {
                        Some(svc) => {
                            // The rule's metrics count the request from now, not from the
                            // end of the delay (an earlier start set further out stays).
                            if req.extensions().get::<RequestStart>().is_none() {
                                req.extensions_mut().insert(RequestStart(clock::now()));
                            }
                            Then::Call(svc, req)
                        }
                        None => Then::Respond(synthetic(&ProxyError::no_backends(), protocol)),
                    },
                };
                State::Delay {
                    sleep: Box::pin(tokio::time::sleep(delay)),
                    then: Some(Box::new(then)),
                }
            }
        };
        ResponseFuture::new(state, Some(matched), response_headers)
    }
}

impl<P, S> Router<P, S> {
    /// Calls the service of rule `id` (which has one) with `req`: this router's current
    /// service when it is that rule's, else a fresh clone of the rule's service, kept as the
    /// current one.
    #[inline(always)]
    fn call_rule<R, RB>(&mut self, id: usize, req: R, protocol: Protocol) -> State<S, R, RB>
    where
        S: Service<R, Response = Response<RB>> + Clone,
    {
        if !matches!(&self.current, Some((current, _)) if *current == id) {
            self.current = self.services[id].clone().map(|svc| (id, svc));
        }
        let Some((_, svc)) = self.current.as_mut() else {
            return State::Respond {
                rsp: Some(Box::new(synthetic(&ProxyError::no_backends(), protocol))),
            };
        };
        let (call, failed) = ReadyCall::in_place(svc, req);
        if failed {
            // A service that failed its readiness check is done: the next request clones
            // the rule's service again.
            self.current = None;
        }
        State::Call { call }
    }
}

// === impl ResponseFuture ===

impl<S, R, RB> ResponseFuture<S, R, RB>
where
    S: Service<R>,
{
    fn new(
        state: State<S, R, RB>,
        matched: Option<RouteMatch>,
        response_headers: Option<Arc<[HeaderModifier]>>,
    ) -> Self {
        Self {
            state,
            matched,
            response_headers,
        }
    }
}

impl<S, R, RB> Future for ResponseFuture<S, R, RB>
where
    S: Service<R, Response = Response<RB>>,
{
    type Output = Result<Response<RouteBody<RB>>, S::Error>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut rsp = loop {
            match this.state.as_mut().project() {
                StateProj::Respond { rsp } => match rsp.take() {
                    Some(rsp) => break *rsp,
                    // Polled after completion: stay pending rather than panic.
                    None => return Poll::Pending,
                },
                StateProj::Delay { sleep, then } => {
                    std::task::ready!(sleep.as_mut().poll(cx));
                    let next = match then.take().map(|then| *then) {
                        Some(Then::Respond(rsp)) => State::Respond {
                            rsp: Some(Box::new(rsp)),
                        },
                        Some(Then::Call(svc, req)) => State::Call {
                            call: ReadyCall::new(svc, req),
                        },
                        None => State::Respond { rsp: None },
                    };
                    this.state.set(next);
                }
                StateProj::Call { call } => {
                    break std::task::ready!(call.poll(cx))?.map(RouteBody::new);
                }
            }
        };
        if let Some(m) = this.matched.take() {
            rsp.extensions_mut().insert(m);
        }
        if let Some(mods) = this.response_headers.take() {
            for m in mods.iter() {
                m.apply(rsp.headers_mut());
            }
        }
        Poll::Ready(Ok(rsp))
    }
}

impl<S, R, RB> fmt::Debug for ResponseFuture<S, R, RB>
where
    S: Service<R>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("matched", &self.matched)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;
    use std::convert::Infallible;

    type Body = Empty<bytes::Bytes>;
    type BoxFuture =
        std::pin::Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;
    type Svc = tower::util::ServiceFn<fn(Request<Body>) -> BoxFuture>;

    /// The future carries neither the request (a service not ready at once, an injected
    /// delay) nor the router's own answer inline: every layer above moves it by value.
    #[test]
    fn the_future_is_smaller_than_what_it_rarely_holds() {
        let future = size_of::<ResponseFuture<Svc, Request<Body>, Body>>();
        assert!(future < size_of::<Request<Body>>(), "{future} bytes");
        assert!(
            future < size_of::<Response<RouteBody<Body>>>() + size_of::<RouteMatch>(),
            "{future} bytes"
        );
    }
}
