//! `server.headerReadTimeout` on HTTP/1.1 connections, with one timer per connection.
//!
//! The timeout bounds each request head, so it is also the keep-alive idle timeout: from the
//! moment a connection starts waiting for a head (accepted, or its last response handed to
//! hyper in full) until the head is complete (the stack is called). hyper's own
//! `header_read_timeout` arms a new boxed timer for every request of a keep-alive connection
//! and registers it with the runtime (about 1.8k instructions per HTTP/1.1 request, 3% of the
//! proxy's). Here each connection has one timer that sleeps for the whole timeout and is only
//! re-armed when it fires: a request marks the connection busy and its response body, when
//! hyper drops it, stamps the time the connection became idle again. When the timer fires on
//! a connection that has been idle for the whole timeout, the connection is dropped (closed
//! without a response, as hyper does); otherwise the timer is set to the earliest moment that
//! could be true.

use crate::{BoxBody, server::ResetObserver};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use linkerd_http_classify::clock;
use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};
use tokio::time::Instant;

/// What one HTTP/1.1 connection's timer reads: whether a request is in the stack or its
/// response body still with hyper, and since when the connection has been idle.
///
/// Atomics rather than a lock: a request marks and unmarks the connection with one
/// read-modify-write each, where a mutex took two.
#[derive(Debug)]
pub(crate) struct HeadWatch {
    /// When the connection started: `idle_since` counts from here.
    start: Instant,
    /// Requests in the stack, or whose response body hyper still holds.
    busy: AtomicUsize,
    /// Nanoseconds from `start` to when a request last ended (so to when `busy` last fell
    /// to 0, once it is 0).
    idle_since: AtomicU64,
}

/// Marks its connection busy from the stack's call until dropped (with the response body,
/// or with the response future when the request fails or is cancelled).
#[derive(Debug)]
pub(crate) struct BusyGuard(Arc<HeadWatch>);

pin_project_lite::pin_project! {
    /// A response body that keeps its connection busy until hyper drops it. Forwards
    /// `is_end_stream` and `size_hint`.
    #[derive(Debug)]
    pub struct WatchedBody {
        #[pin]
        inner: BoxBody,
        guard: Option<BusyGuard>,
        // HTTP/2: told of the reset hyper sends when the body fails.
        resets: Option<ResetObserver>,
        // A body error held back until its timer fires (see `poll_frame`).
        deferred: Option<(crate::BoxError, Pin<Box<tokio::time::Sleep>>)>,
    }
}

// === impl HeadWatch ===

impl HeadWatch {
    /// A connection that starts waiting for its first head now.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            start: clock::now(),
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
        })
    }

    /// Marks the connection busy (a head is complete) until the guard drops.
    pub(crate) fn busy(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::Relaxed);
        BusyGuard(self.clone())
    }

    /// The instant at which the connection will have waited `timeout` for a head, if it is
    /// waiting for one (`None` while a request is in flight).
    fn deadline(&self, timeout: Duration) -> Option<Instant> {
        // Acquire: the stamp of the request that brought `busy` to 0 is visible.
        if self.busy.load(Ordering::Acquire) != 0 {
            return None;
        }
        let idle = Duration::from_nanos(self.idle_since.load(Ordering::Relaxed));
        Some(self.start + idle + timeout)
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let watch = &*self.0;
        // Stamped before `busy` falls, so a reader that sees 0 sees this stamp (or a later
        // one). A stamp from a request that was not the last one is harmless: `idle_since`
        // is only read while `busy` is 0, and the last request to end stamps again.
        let nanos = clock::since(watch.start).as_nanos();
        watch
            .idle_since
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Relaxed);
        watch.busy.fetch_sub(1, Ordering::Release);
    }
}

// === impl WatchedBody ===

impl WatchedBody {
    pub(crate) fn new(
        inner: BoxBody,
        guard: Option<BusyGuard>,
        resets: Option<ResetObserver>,
    ) -> Self {
        Self {
            inner,
            guard,
            resets,
            deferred: None,
        }
    }
}

/// How long a response body's error waits for the connection to write what came before it.
const HOLD_BODY_ERROR: Duration = Duration::from_millis(1);

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = crate::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        // An HTTP/2 stream's task polls this: one clock reading for the layers' bodies (their
        // end-of-stream durations) per poll.
        let this = self.project();
        if let Some((error, mut timer)) = this.deferred.take() {
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Err(error)));
            }
            *this.deferred = Some((error, timer));
            return Poll::Pending;
        }
        match clock::frozen(|| this.inner.poll_frame(cx)) {
            Poll::Ready(Some(Err(error))) => {
                if let Some(resets) = this.resets.take() {
                    resets.sent_for(&*error);
                }
                // A body error right behind the head (an upstream that answers and fails at
                // once) must not take the head with it: hyper's HTTP/1 server closes the
                // connection without writing what it has buffered (and its first write after
                // a read waits a round in `DeferredWrite`), and HTTP/2 drops a stream's frames
                // still queued when it resets the stream: the client would see no response at
                // all. The error waits for the next tick of the timer (a millisecond or two),
                // in which the connection writes what it has; then the close or the reset.
                let mut timer = Box::pin(tokio::time::sleep(HOLD_BODY_ERROR));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(error)));
                }
                *this.deferred = Some((error, timer));
                Poll::Pending
            }
            frame => frame,
        }
    }

    fn is_end_stream(&self) -> bool {
        // A held-back error is still to come: not the end (hyper would end the body cleanly).
        self.deferred.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Drives `conn` (an HTTP/1.1 connection whose requests are watched by `watch`) until it
/// ends, or until it has waited `timeout` for a request head: then it is dropped, which
/// closes it, and `None` is returned.
pub(crate) async fn with_head_timeout<F: Future>(
    conn: F,
    watch: &HeadWatch,
    timeout: Duration,
) -> Option<F::Output> {
    tokio::pin!(conn);
    let sleep = tokio::time::sleep(timeout);
    tokio::pin!(sleep);
    // Once polled, the timer wakes this task when it fires; until then each wake-up of the
    // connection only checks its flag instead of polling it.
    let mut armed = false;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = conn.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        loop {
            if armed && !sleep.is_elapsed() {
                return Poll::Pending;
            }
            if sleep.as_mut().poll(cx).is_pending() {
                armed = true;
                return Poll::Pending;
            }
            let now = clock::now();
            let next = match watch.deadline(timeout) {
                Some(deadline) if deadline <= now => return Poll::Ready(None),
                Some(deadline) => deadline,
                // Busy: it cannot time out before a full timeout from now.
                None => now + timeout,
            };
            sleep.as_mut().reset(next);
            armed = false;
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_cut_a_timeout_after_it_became_idle() {
        let watch = HeadWatch::new();
        let start = Instant::now();
        let cut = with_head_timeout(
            std::future::pending::<()>(),
            &watch,
            Duration::from_secs(10),
        );
        assert!(cut.await.is_none());
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_is_not_cut_and_the_timeout_restarts_when_it_is_idle() {
        let watch = HeadWatch::new();
        let start = Instant::now();
        let guard = watch.busy();
        let release = async move {
            // Busy for 25 s (longer than two timeouts), then idle.
            tokio::time::sleep(Duration::from_secs(25)).await;
            drop(guard);
            std::future::pending::<()>().await;
        };
        let cut = with_head_timeout(release, &watch, Duration::from_secs(10));
        assert!(cut.await.is_none());
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(35),
            "a full timeout after the response"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_ends_first_returns_its_output() {
        let watch = HeadWatch::new();
        let conn = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            7
        };
        assert_eq!(
            with_head_timeout(conn, &watch, Duration::from_secs(10)).await,
            Some(7)
        );
    }
}
