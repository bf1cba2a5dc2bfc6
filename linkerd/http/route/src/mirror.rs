use crate::BackendName;
use bytes::{Buf, Bytes, BytesMut};
use http::Request;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::{
    fmt,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};
use tokio::sync::{Semaphore, mpsc};
use tower::ServiceExt;
use tower_service::Service;

/// The body of a mirrored request: the primary request's body, copied in full.
pub type MirrorRequestBody = http_body_util::Full<Bytes>;

/// Where `RequestMirror` copies go: a bounded queue in front of a mirror service, drained by a
/// background task.
///
/// Sending never waits: when the queue is full the copy is dropped and counted, so a slow or
/// broken mirror never delays the primary request, and its responses and errors are discarded
/// (never reach the client). Each copy carries the filter's [`BackendName`] as a request
/// extension, for a mirror service that serves several backends.
#[derive(Clone)]
pub struct MirrorService {
    tx: mpsc::Sender<Request<MirrorRequestBody>>,
    counters: Arc<Counters>,
    max_body_bytes: usize,
}

/// Limits of a [`MirrorService`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MirrorConfig {
    /// Copies waiting for the mirror service; more are dropped. Default 100.
    pub queue: usize,
    /// Copies in flight at the mirror service at once. Default 100.
    pub concurrency: usize,
    /// The largest request body copied; a request with a larger body is not mirrored (and is
    /// counted). Default 64 KiB.
    pub max_body_bytes: usize,
}

/// Counts of a [`MirrorService`]'s copies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MirrorStats {
    /// Copies queued for the mirror service.
    pub queued: u64,
    /// Copies dropped because the queue was full (or the mirror task had stopped).
    pub dropped_full: u64,
    /// Requests not mirrored because their body exceeded `max_body_bytes`.
    pub dropped_too_large: u64,
    /// Requests not mirrored because their body failed or was dropped before its end.
    pub dropped_incomplete: u64,
    /// Copies the mirror service failed (readiness or response errors).
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU64,
    dropped_full: AtomicU64,
    dropped_too_large: AtomicU64,
    dropped_incomplete: AtomicU64,
    failed: AtomicU64,
}

pin_project! {
    /// The router's request body for the inner service: the client's body, also copied for
    /// `RequestMirror` when the filter chose this request (otherwise it passes frames through
    /// untouched). The copy is sent once the body ends.
    pub struct MirrorBody<B> {
        #[pin]
        inner: B,
        tee: TeeGuard,
    }
}

/// Counts a copy abandoned because the body was dropped before its end.
struct TeeGuard(Option<Box<Tee>>);

/// The copy in progress: boxed so a body that is not mirrored stays small.
struct Tee {
    heads: Vec<Request<()>>,
    mirror: MirrorService,
    chunks: Vec<Bytes>,
    len: usize,
}

// === impl MirrorConfig ===

impl Default for MirrorConfig {
    fn default() -> Self {
        Self {
            queue: 100,
            concurrency: 100,
            max_body_bytes: 64 * 1024,
        }
    }
}

// === impl MirrorService ===

impl MirrorService {
    /// Spawns the task that feeds `service` from the queue (on the current tokio runtime).
    ///
    /// The task ends when every `MirrorService` clone is dropped, or when `service` fails
    /// readiness (later copies are then counted as dropped).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn<S>(service: S, config: &MirrorConfig) -> Self
    where
        S: Service<Request<MirrorRequestBody>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: fmt::Display,
    {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let counters = Arc::new(Counters::default());
        tokio::spawn(run(
            service,
            rx,
            Arc::new(Semaphore::new(config.concurrency.max(1))),
            counters.clone(),
        ));
        Self {
            tx,
            counters,
            max_body_bytes: config.max_body_bytes,
        }
    }

    /// Queues `req` without waiting; `false` (and counted) when the queue is full.
    pub fn try_send(&self, req: Request<MirrorRequestBody>) -> bool {
        if self.tx.try_send(req).is_ok() {
            self.counters.queued.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// The largest body copied.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The counts so far.
    pub fn stats(&self) -> MirrorStats {
        let c = &self.counters;
        MirrorStats {
            queued: c.queued.load(Ordering::Relaxed),
            dropped_full: c.dropped_full.load(Ordering::Relaxed),
            dropped_too_large: c.dropped_too_large.load(Ordering::Relaxed),
            dropped_incomplete: c.dropped_incomplete.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }

    fn count_too_large(&self) {
        self.counters
            .dropped_too_large
            .fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for MirrorService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorService")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

async fn run<S>(
    mut service: S,
    mut rx: mpsc::Receiver<Request<MirrorRequestBody>>,
    limit: Arc<Semaphore>,
    counters: Arc<Counters>,
) where
    S: Service<Request<MirrorRequestBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: fmt::Display,
{
    while let Some(req) = rx.recv().await {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let svc = match service.ready().await {
            Ok(svc) => svc,
            Err(error) => {
                tracing::warn!(%error, "mirror service failed; mirroring stops");
                counters.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let fut = svc.call(req);
        let counters = counters.clone();
        tokio::spawn(async move {
            if let Err(error) = fut.await {
                tracing::debug!(%error, "mirrored request failed");
                counters.failed.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        });
    }
}

/// A copy of `req`'s head (method, URI, version, headers) for the mirror, tagged with
/// `backend`.
pub(crate) fn mirror_head<B>(req: &Request<B>, backend: &BackendName) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = req.method().clone();
    *head.uri_mut() = req.uri().clone();
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();
    head.extensions_mut().insert(backend.clone());
    head
}

/// Mirrors a request whose body the proxy will not read (it answers itself): sent when the
/// body is already complete, else counted as incomplete.
pub(crate) fn mirror_unread<B: Body>(body: &B, heads: Vec<Request<()>>, mirror: &MirrorService) {
    if heads.is_empty() {
        return;
    }
    if body.is_end_stream() {
        for head in heads {
            send(mirror, head, Bytes::new());
        }
    } else {
        mirror
            .counters
            .dropped_incomplete
            .fetch_add(heads.len() as u64, Ordering::Relaxed);
    }
}

fn send(mirror: &MirrorService, head: Request<()>, body: Bytes) {
    let (parts, ()) = head.into_parts();
    mirror.try_send(Request::from_parts(parts, http_body_util::Full::new(body)));
}

// === impl MirrorBody ===

impl<B> MirrorBody<B> {
    /// A body that is not mirrored.
    pub const fn passthrough(inner: B) -> Self {
        Self {
            inner,
            tee: TeeGuard(None),
        }
    }

    /// The client's body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The client's body (the copy, if any, is abandoned).
    pub fn into_inner(self) -> B {
        let Self { inner, tee } = self;
        drop(tee);
        inner
    }
}

impl<B: Body> MirrorBody<B> {
    /// A body whose bytes are copied for each of `heads`, sent to `mirror` when the body ends.
    ///
    /// A body already complete is sent at once; one known to exceed the mirror's cap is not
    /// copied (and is counted).
    pub(crate) fn mirrored(inner: B, heads: Vec<Request<()>>, mirror: &MirrorService) -> Self {
        if heads.is_empty() {
            return Self::passthrough(inner);
        }
        if inner.is_end_stream() {
            for head in heads {
                send(mirror, head, Bytes::new());
            }
            return Self::passthrough(inner);
        }
        if usize::try_from(inner.size_hint().lower()).map_or(true, |n| n > mirror.max_body_bytes) {
            for _ in &heads {
                mirror.count_too_large();
            }
            return Self::passthrough(inner);
        }
        Self {
            inner,
            tee: TeeGuard(Some(Box::new(Tee {
                heads,
                mirror: mirror.clone(),
                chunks: Vec::new(),
                len: 0,
            }))),
        }
    }
}

impl Tee {
    fn finish(self) {
        let body = match self.chunks.len() {
            0 => Bytes::new(),
            1 => self.chunks.into_iter().next().unwrap_or_default(),
            _ => {
                let mut buf = BytesMut::with_capacity(self.len);
                for c in &self.chunks {
                    buf.extend_from_slice(c);
                }
                buf.freeze()
            }
        };
        for head in self.heads {
            send(&self.mirror, head, body.clone());
        }
    }

    fn abandon_too_large(self) {
        for _ in &self.heads {
            self.mirror.count_too_large();
        }
    }

    fn abandon_incomplete(self) {
        self.mirror
            .counters
            .dropped_incomplete
            .fetch_add(self.heads.len() as u64, Ordering::Relaxed);
    }
}

impl Drop for TeeGuard {
    fn drop(&mut self) {
        if let Some(tee) = self.0.take() {
            tee.abandon_incomplete();
        }
    }
}

impl<B> Body for MirrorBody<B>
where
    B: Body,
    B::Data: Clone,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        let frame = std::task::ready!(inner.as_mut().poll_frame(cx));
        if this.tee.0.is_some() {
            match &frame {
                Some(Ok(f)) => {
                    if let (Some(data), Some(tee)) = (f.data_ref(), this.tee.0.as_mut()) {
                        let n = data.remaining();
                        if tee.len + n <= tee.mirror.max_body_bytes {
                            let mut copy = data.clone();
                            tee.chunks.push(copy.copy_to_bytes(n));
                            tee.len += n;
                        } else if let Some(tee) = this.tee.0.take() {
                            tee.abandon_too_large();
                        }
                    }
                    if inner.is_end_stream()
                        && let Some(tee) = this.tee.0.take()
                    {
                        tee.finish();
                    }
                }
                None => {
                    if let Some(tee) = this.tee.0.take() {
                        tee.finish();
                    }
                }
                Some(Err(_)) => {
                    if let Some(tee) = this.tee.0.take() {
                        tee.abandon_incomplete();
                    }
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: fmt::Debug> fmt::Debug for MirrorBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorBody")
            .field("inner", &self.inner)
            .field("mirroring", &self.tee.0.is_some())
            .finish()
    }
}
