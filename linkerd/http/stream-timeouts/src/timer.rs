//! The deadline bookkeeping shared by the response future, the response body and the request
//! body of one stream.

use crate::{
    IdleTimeout, LifetimeTimeout, ResponseHeadersTimeout, ResponseTimeout, StreamTimeouts,
};
use linkerd_http_classify::BoxError;
use linkerd_http_classify::clock;
use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
    time::Duration,
};
use tokio::time::{Instant, Sleep};

/// Which timeout expired, with its configured duration.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expired {
    Lifetime(Duration),
    ResponseHeaders(Duration),
    ResponseEnd(Duration),
    Idle(Duration),
}

/// What the request body and the response side of a stream both see: the last activity, when
/// the request body ended, and whether a timeout already expired.
///
/// Allocated once per request, and only when a timeout that depends on the request body
/// (`response_headers`, `response_end`, `idle`) is set.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    last_activity: Instant,
    request_end: Option<Instant>,
    expired: Option<Expired>,
    /// The response side waiting for the request body's end to start its timers.
    response_waker: Option<Waker>,
    /// The request body waiting on its inner body, to be failed when a timeout expires.
    request_waker: Option<Waker>,
}

/// The timeouts of one stream, resolved against the time the layer was called.
///
/// Moved from the response future into the response body when the headers arrive.
#[derive(Debug)]
pub(crate) struct Deadlines {
    lifetime: Option<(Instant, Duration)>,
    response_headers: Option<Duration>,
    response_end: Option<Duration>,
    idle: Option<Duration>,
    shared: Option<Arc<Shared>>,
}

// === impl Expired ===

impl Expired {
    pub(crate) fn into_error(self) -> BoxError {
        match self {
            Self::Lifetime(d) => Box::new(LifetimeTimeout::new(d)),
            Self::ResponseHeaders(d) => Box::new(ResponseHeadersTimeout::new(d)),
            Self::ResponseEnd(d) => Box::new(ResponseTimeout::new(d)),
            Self::Idle(d) => Box::new(IdleTimeout::new(d)),
        }
    }
}

// === impl Shared ===

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding the lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a request body frame at `now`; `end` when it was the last one.
    pub(crate) fn request_frame(&self, now: Instant, end: bool) {
        let waker = {
            let mut state = self.lock();
            state.last_activity = state.last_activity.max(now);
            if end && state.request_end.is_none() {
                state.request_end = Some(now);
                state.response_waker.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Records a response frame (headers, data or trailers) at `now`.
    fn response_frame(&self, now: Instant) {
        let mut state = self.lock();
        state.last_activity = state.last_activity.max(now);
    }

    /// The expiry, if a timeout expired; else registers the request body's waker so that a
    /// later expiry fails it.
    pub(crate) fn poll_expired(&self, cx: &Context<'_>) -> Option<Expired> {
        let mut state = self.lock();
        if state.expired.is_some() {
            return state.expired;
        }
        match &mut state.request_waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        None
    }

    /// The expiry, if a timeout expired.
    pub(crate) fn expired(&self) -> Option<Expired> {
        self.lock().expired
    }

    fn expire(&self, expired: Expired) {
        let waker = {
            let mut state = self.lock();
            state.expired.get_or_insert(expired);
            state.request_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

// === impl Deadlines ===

impl Deadlines {
    /// The deadlines for a request called at `now` whose lifetime (after `grpc-timeout`) is
    /// `lifetime`; `None` when no timeout applies, so the stream passes through untouched.
    pub(crate) fn new(
        timeouts: &StreamTimeouts,
        lifetime: Option<Duration>,
        now: Instant,
        request_ended: bool,
    ) -> Option<Self> {
        let StreamTimeouts {
            response_headers,
            response_end,
            idle,
            lifetime: _,
        } = *timeouts;
        // A lifetime too long to represent never expires.
        let lifetime = lifetime.and_then(|d| Some((now.checked_add(d)?, d)));
        let needs_shared = response_headers.is_some() || response_end.is_some() || idle.is_some();
        if lifetime.is_none() && !needs_shared {
            return None;
        }
        let shared = needs_shared.then(|| {
            Arc::new(Shared {
                state: Mutex::new(State {
                    last_activity: now,
                    request_end: request_ended.then_some(now),
                    expired: None,
                    response_waker: None,
                    request_waker: None,
                }),
            })
        });
        Some(Self {
            lifetime,
            response_headers,
            response_end,
            idle,
            shared,
        })
    }

    /// The lifetime's expiry when its deadline has passed (reads the clock).
    pub(crate) fn lifetime_passed(&self) -> Option<Expired> {
        let (at, d) = self.lifetime?;
        (clock::now() >= at).then_some(Expired::Lifetime(d))
    }

    pub(crate) fn shared(&self) -> Option<&Arc<Shared>> {
        self.shared.as_ref()
    }

    /// Records response activity (headers or a body frame).
    /// Records response activity now (for the idle timeout); reads the clock only when a
    /// timeout needs it.
    pub(crate) fn response_frame(&self) {
        if let Some(shared) = &self.shared {
            shared.response_frame(clock::now());
        }
    }

    /// The timeout that has expired at `now`, or the next instant one could expire.
    ///
    /// When several have expired, the earliest deadline wins; on a tie: lifetime, response
    /// headers, response end, idle.
    /// The next deadline, or the one that passed by `now` (`None`: report none as passed).
    fn check(
        &self,
        now: Option<Instant>,
        headers_received: bool,
        cx: &Context<'_>,
    ) -> Result<Option<Instant>, Expired> {
        let mut next: Option<(Instant, Expired)> = None;
        let mut consider = |at: Option<Instant>, expired: Expired| {
            if let Some(at) = at
                && next.is_none_or(|(n, _)| at < n)
            {
                next = Some((at, expired));
            }
        };
        if let Some((at, d)) = self.lifetime {
            consider(Some(at), Expired::Lifetime(d));
        }
        if let Some(shared) = &self.shared {
            let mut state = shared.lock();
            let mut awaits_request_end = false;
            if !headers_received && let Some(d) = self.response_headers {
                match state.request_end {
                    Some(end) => consider(end.checked_add(d), Expired::ResponseHeaders(d)),
                    None => awaits_request_end = true,
                }
            }
            if let Some(d) = self.response_end {
                match state.request_end {
                    Some(end) => consider(end.checked_add(d), Expired::ResponseEnd(d)),
                    None => awaits_request_end = true,
                }
            }
            if let Some(d) = self.idle {
                consider(state.last_activity.checked_add(d), Expired::Idle(d));
            }
            if awaits_request_end {
                match &mut state.response_waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
            }
        }
        match next {
            Some((at, expired)) if now.is_some_and(|now| at <= now) => Err(expired),
            Some((at, _)) => Ok(Some(at)),
            None => Ok(None),
        }
    }

    /// Drives `sleep` towards the next deadline; `Ready` with the expiry once one passed.
    ///
    /// Also tells the request body, through the shared state, so it fails too.
    pub(crate) fn poll_expired(
        &self,
        sleep: &mut Option<Pin<Box<Sleep>>>,
        cx: &mut Context<'_>,
        headers_received: bool,
    ) -> Poll<Expired> {
        // The second round only runs when the timer fired but activity moved the deadline
        // (idle); the new deadline lies in the future, so its sleep is pending.
        for round in 0..2 {
            // Arming the first timer needs no clock reading: a deadline already passed makes
            // the new timer fire at once, and the next round reads the clock.
            let now = (round > 0 || sleep.is_some()).then(clock::now);
            let at = match self.check(now, headers_received, cx) {
                Err(expired) => {
                    if let Some(shared) = &self.shared {
                        shared.expire(expired);
                    }
                    *sleep = None;
                    return Poll::Ready(expired);
                }
                Ok(None) => {
                    *sleep = None;
                    return Poll::Pending;
                }
                Ok(Some(at)) => at,
            };
            // Boxed: the futures and bodies that hold a timer are moved between layers, and
            // a box also lets the response body take over the response future's timer.
            let timer = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            if timer.deadline() != at {
                timer.as_mut().reset(at);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        // A timer fired before the clock reached its deadline: try again on the next turn.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
