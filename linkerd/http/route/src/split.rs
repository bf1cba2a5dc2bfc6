use crate::{BackendName, SharedRng};
use http::{Request, Response};
use linkerd_http_classify::BoxError;
use pin_project_lite::pin_project;
use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tower::util::Oneshot;
use tower_service::Service;

/// Sends each request to one of a rule's backends, picked at random in proportion to the
/// `backendRefs` weights (weight 0 never picked).
///
/// Placed inside a retry layer, each attempt gets a fresh pick. The picked [`BackendName`] is
/// inserted into the request's extensions (for the backend's stack) and the response's (for
/// outer metrics and the access log).
///
/// # Readiness
///
/// Always ready: the picked backend's service is cloned and driven to readiness in the
/// response future (as tower's `Oneshot` does), so backends should be cheap to clone (for
/// example a `tower::buffer::Buffer` handle) and apply their own back-pressure there.
pub struct WeightedSplit<S> {
    // One reference count for the whole split: the retry layer clones it per request.
    inner: Arc<Split<S>>,
}

struct Split<S> {
    backends: Box<[(BackendName, S)]>,
    /// Running sums of the weights, aligned with `backends`.
    cumulative: Box<[u64]>,
    rng: SharedRng,
}

/// The error of a picked backend, with the backend's name: its [`source`] is the backend's
/// error, so error mapping and classification (which walk `source()` chains) see through it,
/// and the access log can name the backend of a request that got no response from it.
///
/// [`source`]: std::error::Error::source
#[derive(Debug)]
pub struct BackendError {
    backend: BackendName,
    source: BoxError,
}

/// [`WeightedSplit::new`] was given no backend with a non-zero weight: the router answers
/// such a rule with 500 `no backends` itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoBackends(());

pin_project! {
    /// The [`WeightedSplit`]'s response future: the picked backend's response, with its
    /// [`BackendName`].
    pub struct SplitFuture<S, R>
    where
        S: Service<R>,
    {
        #[pin]
        call: Oneshot<S, R>,
        backend: Option<BackendName>,
    }

    impl<S, R> PinnedDrop for SplitFuture<S, R>
    where
        S: Service<R>,
    {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before the backend answered (a timeout, a client gone): a layer
            // observing the drop learns where the request went.
            if let Some(name) = this.project().backend.take() {
                linkerd_http_classify::dropped::note(|n| n.backend_or(name.as_arc()));
            }
        }
    }
}

impl<S> WeightedSplit<S> {
    /// A split over `(name, weight, service)` triples.
    ///
    /// # Errors
    ///
    /// [`NoBackends`] when every weight is 0 (or the list is empty).
    pub fn new(backends: Vec<(BackendName, u32, S)>, rng: SharedRng) -> Result<Self, NoBackends> {
        let mut sum = 0u64;
        let mut cumulative = Vec::with_capacity(backends.len());
        let mut kept = Vec::with_capacity(backends.len());
        for (name, weight, svc) in backends {
            if weight == 0 {
                continue;
            }
            sum += u64::from(weight);
            cumulative.push(sum);
            kept.push((name, svc));
        }
        if kept.is_empty() {
            return Err(NoBackends(()));
        }
        Ok(Self {
            inner: Arc::new(Split {
                backends: kept.into(),
                cumulative: cumulative.into(),
                rng,
            }),
        })
    }

    /// The index (among backends with a non-zero weight) of the next pick.
    pub fn pick(&self) -> usize {
        let split = &*self.inner;
        if split.cumulative.len() == 1 {
            // A sole backend: no draw (it would only advance the shared random source).
            return 0;
        }
        let total = split.cumulative.last().copied().unwrap_or(0);
        let r = split.rng.below(total);
        split.cumulative.partition_point(|&c| c <= r)
    }

    /// The backends that can be picked, in the order given.
    pub fn backends(&self) -> impl Iterator<Item = &BackendName> {
        self.inner.backends.iter().map(|(n, _)| n)
    }
}

impl<S> Clone for WeightedSplit<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S> fmt::Debug for WeightedSplit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&BackendName> = self.backends().collect();
        f.debug_struct("WeightedSplit")
            .field("backends", &names)
            .field("cumulative", &self.inner.cumulative)
            .finish_non_exhaustive()
    }
}

impl<S, B, RB> Service<Request<B>> for WeightedSplit<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = SplitFuture<S, Request<B>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    #[inline(always)]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let i = self.pick().min(self.inner.backends.len() - 1);
        let (name, svc) = &self.inner.backends[i];
        req.extensions_mut().insert(name.clone());
        SplitFuture {
            call: Oneshot::new(svc.clone(), req),
            backend: Some(name.clone()),
        }
    }
}

impl<S, R, RB> Future for SplitFuture<S, R>
where
    S: Service<R, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<RB>, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.call.poll(cx));
        let backend = this.backend.take();
        Poll::Ready(match (result, backend) {
            (Ok(mut rsp), Some(name)) => {
                rsp.extensions_mut().insert(name);
                Ok(rsp)
            }
            (Ok(rsp), None) => Ok(rsp),
            (Err(e), Some(backend)) => Err(Box::new(BackendError {
                backend,
                source: e.into(),
            })),
            (Err(e), None) => Err(e.into()),
        })
    }
}

// === impl BackendError ===

impl BackendError {
    /// The backend that failed.
    pub fn backend(&self) -> &BackendName {
        &self.backend
    }

    /// The backend named by the first `BackendError` in `error`'s `source()` chain.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BackendName> {
        linkerd_http_classify::chain(error)
            .find_map(|e| e.downcast_ref::<Self>())
            .map(Self::backend)
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

impl<S, R> fmt::Debug for SplitFuture<S, R>
where
    S: Service<R>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SplitFuture")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for NoBackends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no backend with a non-zero weight")
    }
}

impl std::error::Error for NoBackends {}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_backend_error_names_the_backend() {
        let failing = tower::service_fn(|_: Request<()>| async {
            Err::<Response<()>, BoxError>("refused".into())
        });
        let split = WeightedSplit::new(
            vec![(BackendName::new("web"), 1, failing)],
            SharedRng::seeded(1),
        )
        .expect("a backend");
        let error = split.oneshot(Request::new(())).await.expect_err("fails");
        assert_eq!(
            BackendError::find(&*error)
                .map(BackendName::as_arc)
                .map(|n| &**n),
            Some("web")
        );
        assert_eq!(error.to_string(), "refused", "displays the backend's error");
        let source = std::error::Error::source(&*error).expect("the backend's error");
        assert_eq!(source.to_string(), "refused");
    }

    #[tokio::test]
    async fn an_unfinished_pick_notes_its_backend_when_dropped() {
        use linkerd_http_classify::dropped;
        let never = tower::service_fn(|_: Request<()>| {
            std::future::pending::<Result<Response<()>, BoxError>>()
        });
        let answers =
            tower::service_fn(|_: Request<()>| async { Ok::<_, BoxError>(Response::new(())) });
        let mut pending = WeightedSplit::new(
            vec![(BackendName::new("slow"), 1, never)],
            SharedRng::seeded(1),
        )
        .expect("a backend");
        let mut future = Some(pending.call(Request::new(())));
        let note = dropped::observe(|| future = None);
        assert_eq!(note.backend.as_deref(), Some("slow"));

        let mut split = WeightedSplit::new(
            vec![(BackendName::new("fast"), 1, answers)],
            SharedRng::seeded(1),
        )
        .expect("a backend");
        let mut future = Box::pin(split.call(Request::new(())));
        let rsp = future.as_mut().await.expect("answered");
        assert!(rsp.extensions().get::<BackendName>().is_some());
        let note = dropped::observe(|| drop(future));
        assert!(note.is_empty(), "a finished pick notes nothing: {note:?}");
    }
}
