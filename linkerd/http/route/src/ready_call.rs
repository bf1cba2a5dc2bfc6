//! A service call made at once when the service is ready now.

use pin_project_lite::pin_project;
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};
use tower::util::Oneshot;
use tower_service::Service;

pin_project! {
    /// The future of [`ReadyCall::new`]: the service's own future when it was ready at once
    /// (so the request is not carried into, and moved with, the caller's future as a `Oneshot`
    /// would carry it), its readiness error, or a `Oneshot` driving it to readiness with the
    /// caller's waker.
    #[project = ReadyCallProj]
    pub(crate) enum ReadyCall<S, R>
    where
        S: Service<R>,
    {
        Called { #[pin] future: S::Future },
        Failed { error: Option<S::Error> },
        // Boxed: a service not ready at once is the rare case, and the request would
        // otherwise make every caller's future larger.
        Waiting { call: Pin<Box<Oneshot<S, R>>> },
    }
}

impl<S: Service<R>, R> ReadyCall<S, R> {
    /// Calls `svc` with `req` now if its `poll_ready` (with a no-op waker) is ready;
    /// otherwise the returned future drives it to readiness, then calls it.
    #[inline(always)]
    pub(crate) fn new(mut svc: S, req: R) -> Self {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match svc.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => Self::Called {
                future: svc.call(req),
            },
            Poll::Ready(Err(error)) => Self::Failed { error: Some(error) },
            Poll::Pending => Self::Waiting {
                call: Box::pin(Oneshot::new(svc, req)),
            },
        }
    }
}

impl<S: Service<R> + Clone, R> ReadyCall<S, R> {
    /// As [`ReadyCall::new`] on `svc` itself, which stays with the caller for its next
    /// requests: called at once when ready now, else a clone is driven to readiness. The flag
    /// is `true` when `svc` failed its readiness check, and so must not be called again.
    #[inline(always)]
    pub(crate) fn in_place(svc: &mut S, req: R) -> (Self, bool) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match svc.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => (
                Self::Called {
                    future: svc.call(req),
                },
                false,
            ),
            Poll::Ready(Err(error)) => (Self::Failed { error: Some(error) }, true),
            Poll::Pending => (
                Self::Waiting {
                    call: Box::pin(Oneshot::new(svc.clone(), req)),
                },
                false,
            ),
        }
    }
}

impl<S: Service<R>, R> Future for ReadyCall<S, R> {
    type Output = Result<S::Response, S::Error>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ReadyCallProj::Called { future } => future.poll(cx),
            ReadyCallProj::Failed { error } => match error.take() {
                Some(error) => Poll::Ready(Err(error)),
                // Polled after completion: stay pending rather than panic.
                None => Poll::Pending,
            },
            ReadyCallProj::Waiting { call } => call.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReadyCall;
    use std::{
        future::Future,
        pin::pin,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::{Context, Poll, Waker},
    };
    use tower_service::Service;

    /// Ready after `pending` readiness checks (or fails them when `fail`); counts calls.
    #[derive(Clone)]
    struct Svc {
        pending: Arc<AtomicUsize>,
        calls: Arc<AtomicUsize>,
        fail: bool,
    }

    impl Service<u32> for Svc {
        type Response = u32;
        type Error = &'static str;
        type Future = std::future::Ready<Result<u32, &'static str>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            if self.fail {
                return Poll::Ready(Err("not ready"));
            }
            if self.pending.load(Ordering::SeqCst) > 0 {
                self.pending.fetch_sub(1, Ordering::SeqCst);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: u32) -> Self::Future {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(req + 1))
        }
    }

    fn svc(pending: usize, fail: bool) -> Svc {
        Svc {
            pending: Arc::new(AtomicUsize::new(pending)),
            calls: Arc::new(AtomicUsize::new(0)),
            fail,
        }
    }

    fn poll<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_ready_service_is_called_before_the_first_poll() {
        let s = svc(0, false);
        let mut fut = pin!(ReadyCall::new(s.clone(), 1));
        assert!(matches!(*fut, ReadyCall::Called { .. }));
        assert_eq!(s.calls.load(Ordering::SeqCst), 1, "called in new");
        assert_eq!(poll(fut.as_mut()), Poll::Ready(Ok(2)));
    }

    #[test]
    fn in_place_calls_the_callers_service_when_ready() {
        let mut s = svc(0, false);
        let (fut, failed) = ReadyCall::in_place(&mut s, 1);
        let mut fut = pin!(fut);
        assert!(!failed);
        assert!(matches!(*fut, ReadyCall::Called { .. }));
        assert_eq!(s.calls.load(Ordering::SeqCst), 1, "called in place");
        assert_eq!(poll(fut.as_mut()), Poll::Ready(Ok(2)));
    }

    #[test]
    fn in_place_drives_a_clone_of_a_pending_service() {
        let mut s = svc(2, false);
        let (fut, failed) = ReadyCall::in_place(&mut s, 1);
        let mut fut = pin!(fut);
        assert!(!failed);
        assert!(matches!(*fut, ReadyCall::Waiting { .. }));
        assert_eq!(s.calls.load(Ordering::SeqCst), 0);
        assert_eq!(poll(fut.as_mut()), Poll::Pending);
        assert_eq!(poll(fut.as_mut()), Poll::Ready(Ok(2)));
        assert_eq!(s.calls.load(Ordering::SeqCst), 1, "the clone was called");
    }

    #[test]
    fn in_place_reports_a_failed_service() {
        let mut s = svc(0, true);
        let (fut, failed) = ReadyCall::in_place(&mut s, 1);
        let mut fut = pin!(fut);
        assert!(failed, "the caller drops it");
        assert_eq!(poll(fut.as_mut()), Poll::Ready(Err("not ready")));
        assert_eq!(s.calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_pending_service_is_driven_to_readiness_by_the_future() {
        let s = svc(2, false);
        let mut fut = pin!(ReadyCall::new(s.clone(), 1));
        assert!(matches!(*fut, ReadyCall::Waiting { .. }));
        assert_eq!(s.calls.load(Ordering::SeqCst), 0);
        assert_eq!(poll(fut.as_mut()), Poll::Pending);
        assert_eq!(poll(fut.as_mut()), Poll::Ready(Ok(2)));
        assert_eq!(s.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_readiness_error_is_the_future_output_once() {
        let s = svc(0, true);
        let mut fut = pin!(ReadyCall::new(s.clone(), 1));
        assert_eq!(poll(fut.as_mut()), Poll::Ready(Err("not ready")));
        assert_eq!(
            poll(fut.as_mut()),
            Poll::Pending,
            "no panic after completion"
        );
        assert_eq!(s.calls.load(Ordering::SeqCst), 0);
    }
}
