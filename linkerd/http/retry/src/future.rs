use crate::{
    Attempt, DeadlineExceeded, PeekTrailers, PeekTrailersBody, PerTryTimeout, Policy, ReplayBody,
    RetryError, RetryOutcome, RetryStop, head::PackedHead, policy::Decision, replay::ReplaySource,
};
use http::{Extensions, HeaderValue, Request, Response, Version, response};
use http_body::Body;
use linkerd_http_classify::{
    BoxError, Deadline, clock,
    dropped::{self, CutShort, DropNote},
    encode_grpc_timeout, grpc_status, to_proxy_error,
};

/// A gRPC request's deadline as its server is told it.
const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");
use pin_project_lite::pin_project;
use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

pin_project! {
    /// The response future of [`Retry`](crate::Retry).
    pub struct ResponseFuture<S, P, B, RspB>
    where
        P: Policy,
        S: Service<Request<ReplayBody<B>>, Response = Response<RspB>>,
        RspB: Body,
    {
        #[pin]
        state: State<S::Future, RspB>,
        // While an attempt runs: its per-try timeout or the request's deadline, whichever
        // comes first; the backoff between attempts.
        // Boxed: a timer is 112 bytes, and every layer above moves this future.
        timer: Option<Pin<Box<Sleep>>>,
        // `None` for requests without a policy.
        retry: Option<Retrying<S, P, B>>,
        // The last retryable result, kept during backoff in case no retry can start; boxed,
        // as only retried requests need it and it would triple the future's size.
        last: Option<Box<Result<Response<PeekTrailersBody<RspB>>, BoxError>>>,
    }

    impl<S, P, B, RspB> PinnedDrop for ResponseFuture<S, P, B, RspB>
    where
        P: Policy,
        S: Service<Request<ReplayBody<B>>, Response = Response<RspB>>,
        RspB: Body,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Dropped unfinished (a client gone, a timer above): a layer observing the drop
            // learns the attempts made so far (the retries are counted).
            if !matches!(*this.state, State::Done)
                && let Some(retry) = this.retry.as_ref()
            {
                let attempts = retry.attempts;
                // During a backoff no attempt is in flight to say where it went: the
                // policy reads the last one's result.
                let last = this.last.as_deref().filter(|_| matches!(*this.state, State::Backoff));
                dropped::note(|n| {
                    n.attempts_or(attempts);
                    if let Some(last) = last {
                        let last = match last {
                            Ok(rsp) => Ok(rsp.extensions()),
                            Err(e) => Err(&**e as &(dyn std::error::Error + 'static)),
                        };
                        retry.policy.note_last_attempt(last, n);
                    }
                });
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, RspB>
    where
        RspB: Body,
    {
        Called { #[pin] future: F },
        Peeking { peek: PeekTrailers<RspB>, parts: Option<response::Parts> },
        Backoff,
        Done,
    }
}

/// What a request with a policy needs for further attempts.
struct Retrying<S, P, B> {
    service: S,
    policy: P,
    /// What the next attempt is made of; `None` when the body cannot be replayed (or no
    /// retry is allowed).
    template: Option<Template<B>>,
    attempts: u32,
    deadline: Option<Instant>,
    peek: bool,
}

/// The request as its first attempt was sent: the head packed into one buffer (see
/// [`PackedHead`]), the extensions the policy replays, and the body's replay source. About
/// 40 bytes and one allocation of the head's size, where clones of the head and the body
/// would take over 400: every request with a policy writes this to memory the CPU has not
/// touched for a while, and almost none reads it back.
struct Template<B> {
    head: PackedHead,
    version: Version,
    extensions: Extensions,
    body: ReplaySource<B>,
}

enum Step<T> {
    Finish(Result<T, BoxError>, Option<RetryStop>),
    Backoff(Result<T, BoxError>, Duration),
}

// === impl ResponseFuture ===

impl<S, P, B, RspB> ResponseFuture<S, P, B, RspB>
where
    P: Policy,
    S: Service<Request<ReplayBody<B>>, Response = Response<RspB>>,
    RspB: Body,
{
    /// A request without a policy: one attempt, cut at the request's `deadline` if any.
    pub(crate) fn passthrough(future: S::Future, deadline: Option<Instant>) -> Self {
        Self {
            state: State::Called { future },
            timer: attempt_timer(None, deadline),
            retry: None,
            last: None,
        }
    }
}

impl<S, P, B, RspB> ResponseFuture<S, P, B, RspB>
where
    P: Policy,
    S: Service<Request<ReplayBody<B>>, Response = Response<RspB>>,
    B: Body,
    RspB: Body,
{
    /// Sends the first attempt on `service`, which must be ready.
    pub(crate) fn start(mut service: S, policy: P, req: Request<B>) -> Self {
        let deadline = req.extensions().get::<Deadline>().map(|d| d.0);
        if let Some(budget) = policy.budget() {
            budget.deposit();
        }
        let peek = policy.peek_trailers(req.headers());
        let (mut parts, body) = req.into_parts();
        let body = ReplayBody::new(body, policy.max_request_bytes());
        // Cloned before `Attempt(1)` goes in: each retry inserts its own number.
        let template = if policy.max_retries() > 0 {
            body.source().and_then(|body| {
                Some(Template {
                    head: PackedHead::pack(&parts.method, &parts.uri, &parts.headers)?,
                    version: parts.version,
                    extensions: policy.replay_extensions(&parts),
                    body,
                })
            })
        } else {
            None
        };
        parts.extensions.insert(Attempt(1));
        let timer = attempt_timer(policy.per_try_timeout(), deadline);
        let future = service.call(Request::from_parts(parts, body));
        Self {
            state: State::Called { future },
            timer,
            retry: Some(Retrying {
                service,
                policy,
                template,
                attempts: 1,
                deadline,
                peek,
            }),
            last: None,
        }
    }
}

impl<S, P, B, RspB> Future for ResponseFuture<S, P, B, RspB>
where
    P: Policy,
    S: Service<Request<ReplayBody<B>>, Response = Response<RspB>>,
    S::Error: Into<BoxError>,
    B: Body,
    RspB: Body + Unpin,
{
    type Output = Result<Response<PeekTrailersBody<RspB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // Each turn moves to a later state or returns, and a new attempt starts only after
        // a backoff timer fired or the attempt limit was checked, so this ends.
        loop {
            // What the attempt a timer cut knew (its backend): kept on the error if it is
            // the answer.
            let mut cut = None;
            let step = match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let result = match future.poll(cx) {
                        Poll::Ready(result) => result.map_err(Into::into),
                        Poll::Pending => match this.timer.as_mut() {
                            Some(timer) => {
                                ready!(timer.as_mut().poll(cx));
                                let error = match this.retry.as_ref() {
                                    Some(retry) => retry.timer_error(timer),
                                    // Without a policy the only timer is the deadline's.
                                    None => Box::new(DeadlineExceeded::new()) as BoxError,
                                };
                                // The attempt is over: dropped now, noting where it went
                                // (and telling it why: its backend's metrics say so).
                                let kind = to_proxy_error(&*error).kind();
                                cut = Some(dropped::observe_cut(kind, || {
                                    this.state.set(State::Done);
                                }));
                                Err(error)
                            }
                            None => return Poll::Pending,
                        },
                    };
                    *this.timer = None;
                    let Some(retry) = this.retry.as_mut() else {
                        this.state.set(State::Done);
                        let result = result.map_err(|e| with_note(cut, e));
                        return Poll::Ready(result.map(|r| r.map(PeekTrailersBody::passthrough)));
                    };
                    match result {
                        Ok(rsp) if retry.wants_peek(&rsp) => {
                            let (parts, body) = rsp.into_parts();
                            this.state.set(State::Peeking {
                                peek: PeekTrailersBody::peek(body),
                                parts: Some(parts),
                            });
                            continue;
                        }
                        Ok(rsp) => {
                            let rsp = rsp.map(PeekTrailersBody::passthrough);
                            let decision =
                                retry
                                    .policy
                                    .classify_response(rsp.status(), rsp.headers(), None);
                            retry.step(decision, Ok(rsp))
                        }
                        Err(error) => {
                            let decision = retry.policy.classify_error(&*error);
                            retry.step(decision, Err(error))
                        }
                    }
                }

                StateProj::Peeking { peek, parts } => {
                    let Some(retry) = this.retry.as_mut() else {
                        return Poll::Ready(Err("retry state lost while peeking".into()));
                    };
                    let body = match Pin::new(peek).poll(cx) {
                        Poll::Ready(body) => body,
                        Poll::Pending => {
                            // The per-try timeout (and the deadline) also bound the wait for
                            // the first frame.
                            let Some(timer) = this.timer.as_mut() else {
                                return Poll::Pending;
                            };
                            ready!(timer.as_mut().poll(cx));
                            let error = retry.timer_error(timer);
                            *this.timer = None;
                            let decision = retry.policy.classify_error(&*error);
                            let step = retry.step(decision, Err(error));
                            this.state.set(State::Done);
                            match step {
                                Step::Finish(r, s) => {
                                    return Poll::Ready(finish(this.retry.as_ref(), r, s));
                                }
                                Step::Backoff(r, delay) => {
                                    *this.last = Some(Box::new(r));
                                    *this.timer = Some(Box::pin(tokio::time::sleep(delay)));
                                    this.state.set(State::Backoff);
                                    continue;
                                }
                            }
                        }
                    };
                    let Some(parts) = parts.take() else {
                        return Poll::Ready(Err("retry state lost while peeking".into()));
                    };
                    let decision = retry.policy.classify_response(
                        parts.status,
                        &parts.headers,
                        body.peeked_trailers(),
                    );
                    *this.timer = None;
                    retry.step(decision, Ok(Response::from_parts(parts, body)))
                }

                StateProj::Backoff => {
                    if let Some(timer) = this.timer.as_mut() {
                        ready!(timer.as_mut().poll(cx));
                    }
                    *this.timer = None;
                    let last = this.last.take();
                    let Some(retry) = this.retry.as_mut() else {
                        return Poll::Ready(Err("retry state lost during backoff".into()));
                    };
                    match retry.next_attempt(cx) {
                        Ok(future) => {
                            drop(last);
                            *this.timer =
                                attempt_timer(retry.policy.per_try_timeout(), retry.deadline);
                            this.state.set(State::Called { future });
                            continue;
                        }
                        Err(stop) => match last {
                            Some(result) => Step::Finish(*result, Some(stop)),
                            None => Step::Finish(
                                Err("retry state lost during backoff".into()),
                                Some(stop),
                            ),
                        },
                    }
                }

                StateProj::Done => {
                    return Poll::Ready(Err("retry future polled after completion".into()));
                }
            };

            match step {
                Step::Finish(result, stopped) => {
                    this.state.set(State::Done);
                    let result = result.map_err(|e| with_note(cut, e));
                    return Poll::Ready(finish(this.retry.as_ref(), result, stopped));
                }
                Step::Backoff(result, delay) => {
                    *this.last = Some(Box::new(result));
                    *this.timer = Some(Box::pin(tokio::time::sleep(delay)));
                    this.state.set(State::Backoff);
                }
            }
        }
    }
}

impl<S, P, B, RspB> fmt::Debug for ResponseFuture<S, P, B, RspB>
where
    P: Policy,
    S: Service<Request<ReplayBody<B>>, Response = Response<RspB>>,
    RspB: Body,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Peeking { .. } => "peeking",
            State::Backoff => "backoff",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.retry.as_ref().map_or(1, |r| r.attempts))
            .finish_non_exhaustive()
    }
}

/// The timer of an attempt: its per-try timeout or the request's deadline, whichever ends
/// first (none without either). While an attempt waits for its response, the deadline is
/// enforced here, so a lifetime timer above need not wait alongside (see
/// [`DeadlineExceeded`]).
fn attempt_timer(per_try: Option<Duration>, deadline: Option<Instant>) -> Option<Pin<Box<Sleep>>> {
    // A per-try timeout too long to represent never fires.
    let per_try_end = per_try.and_then(|d| clock::now().checked_add(d));
    let at = match (per_try_end, deadline) {
        (Some(end), Some(deadline)) => end.min(deadline),
        (end, deadline) => end.or(deadline)?,
    };
    Some(Box::pin(tokio::time::sleep_until(at)))
}

/// `error`, with what the attempt it cut noted when dropped (see [`dropped::observe`]).
fn with_note(cut: Option<DropNote>, error: BoxError) -> BoxError {
    match cut {
        Some(note) => CutShort::wrap(note, error),
        None => error,
    }
}

/// Records the outcome on the response, or wraps the error with it.
fn finish<S, P, B, T>(
    retry: Option<&Retrying<S, P, B>>,
    result: Result<Response<T>, BoxError>,
    stopped: Option<RetryStop>,
) -> Result<Response<T>, BoxError> {
    let attempts = retry.map_or(1, |r| r.attempts);
    let outcome = RetryOutcome { attempts, stopped };
    match result {
        Ok(mut rsp) => {
            rsp.extensions_mut().insert(outcome);
            Ok(rsp)
        }
        Err(error) => Err(Box::new(RetryError::new(outcome, error))),
    }
}

// === impl Retrying ===

impl<S, P, B> Retrying<S, P, B>
where
    P: Policy,
{
    /// The error of an attempt whose `timer` fired: the request's deadline (not retried:
    /// no retry starts past it) or, when that is later, the per-try timeout.
    fn timer_error(&self, timer: &Pin<Box<Sleep>>) -> BoxError {
        if self.deadline.is_some_and(|d| timer.deadline() >= d) {
            return Box::new(DeadlineExceeded::new());
        }
        Box::new(PerTryTimeout::new(
            self.policy.per_try_timeout().unwrap_or_default(),
        ))
    }

    fn wants_peek<RspB: Body>(&self, rsp: &Response<RspB>) -> bool {
        self.peek
            && rsp.version() == Version::HTTP_2
            && grpc_status(rsp.headers()).is_none()
            && !rsp.body().is_end_stream()
    }

    /// Applies the policy's decision on one attempt's result: finish, or back off and retry.
    fn step<T>(&mut self, decision: Decision, result: Result<T, BoxError>) -> Step<T> {
        if let Err(e) = &result
            && e.is::<DeadlineExceeded>()
        {
            // The request's deadline cut the attempt: it stops the retries.
            return Step::Finish(result, Some(RetryStop::DeadlinePassed));
        }
        let Decision::Retry { after } = decision else {
            return Step::Finish(result, None);
        };
        if self.attempts > self.policy.max_retries() {
            return Step::Finish(result, Some(RetryStop::LimitExceeded));
        }
        match &self.template {
            Some(t) if t.body.is_replayable() => {}
            Some(t) if !t.body.is_capped() => {
                // The original body failed: the attempt's own result says why.
                return Step::Finish(result, None);
            }
            _ => return Step::Finish(result, Some(RetryStop::BodyTooLarge)),
        }
        let backoff = self.policy.backoff();
        let delay = match after {
            Some(after) => after.min(backoff.max()),
            None => backoff.delay(self.attempts - 1, &mut rand::rng()),
        };
        if let Some(deadline) = self.deadline
            && clock::now() + delay >= deadline
        {
            return Step::Finish(result, Some(RetryStop::DeadlinePassed));
        }
        if let Some(budget) = self.policy.budget()
            && !budget.try_withdraw()
        {
            return Step::Finish(result, Some(RetryStop::BudgetExhausted));
        }
        Step::Backoff(result, delay)
    }
}

impl<S, P, B> Retrying<S, P, B>
where
    P: Policy,
    S: Service<Request<ReplayBody<B>>>,
    B: Body,
{
    /// Starts the next attempt if the service is ready at once and the body can be replayed.
    fn next_attempt(&mut self, cx: &mut Context<'_>) -> Result<S::Future, RetryStop> {
        if self.deadline.is_some_and(|d| clock::now() >= d) {
            return Err(RetryStop::DeadlinePassed);
        }
        match self.service.poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            // A failed service cannot take the retry either; the last result stands.
            Poll::Ready(Err(_)) | Poll::Pending => return Err(RetryStop::NotReady),
        }
        let Some(template) = &self.template else {
            return Err(RetryStop::BodyTooLarge);
        };
        // Unpacking cannot fail (see `PackedHead::unpack`); if it did, the request could
        // not be sent again, as if its body could not.
        let Some((method, uri, headers)) = template.head.unpack() else {
            return Err(RetryStop::BodyTooLarge);
        };
        // The previous attempt may still be streaming the body and pass the cap meanwhile.
        let Some(body) = template.body.try_clone() else {
            return Err(RetryStop::BodyTooLarge);
        };
        self.attempts += 1;
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = method;
        parts.uri = uri;
        parts.version = template.version;
        parts.headers = headers;
        parts.extensions = template.extensions.clone();
        parts.extensions.insert(Attempt(self.attempts));
        if let Some(name) = self.policy.attempt_header() {
            parts
                .headers
                .insert(name.clone(), HeaderValue::from(self.attempts));
        }
        if let Some(deadline) = self.deadline
            && parts.headers.contains_key(&GRPC_TIMEOUT)
        {
            // A gRPC server is told the time left, not the time the first attempt had.
            let left = deadline.saturating_duration_since(clock::now());
            parts
                .headers
                .insert(GRPC_TIMEOUT, encode_grpc_timeout(left));
        }
        Ok(self.service.call(Request::from_parts(parts, body)))
    }
}
