use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use linkerd_http_classify::BoxError;
use std::{
    fmt,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError, TryLockError,
        atomic::{AtomicU8, Ordering},
    },
    task::{Context, Poll, ready},
};

#[cfg(test)]
mod tests;

/// A request body that can be sent again: it records what the first attempt reads so that
/// a clone (from [`try_clone`](Self::try_clone)) can replay it.
///
/// # How it buffers
///
/// Nothing is read ahead. While an attempt streams the body, each data chunk is converted to
/// [`Bytes`] with [`Buf::copy_to_bytes`] and a clone of that `Bytes` is kept. For bodies
/// whose data already is `Bytes` (hyper's `Incoming`, `Full<Bytes>`, ...) that conversion
/// and the clone are reference-count increments: a replay hands out the very same memory
/// and copies no byte. Other [`Buf`] types are copied once, by their `copy_to_bytes`.
///
/// A clone replays, in order: the buffered data chunks, then the trailers (if the original
/// body had sent them), then it continues reading the original body where the previous
/// attempt left off. Only one clone at a time can read: the state (the original body and its
/// buffer) moves to the clone that polls it and back to the shared slot when that clone is
/// dropped. Polling a clone while another, still alive, clone holds the state yields a
/// [`ReplayError`] (`is_busy`), never a panic or a hang.
///
/// # The cap
///
/// At most `max_bytes` bytes are buffered. A body of exactly `max_bytes` bytes stays
/// replayable; when a chunk would take the buffer past the cap, the buffer is freed, the
/// attempt reading the body keeps streaming unharmed, and the body reports itself
/// [capped](Self::is_capped) (not [replayable](Self::is_replayable)). A clone that then needs
/// data that is no longer buffered fails with a [`ReplayError`] (`is_capped`). A body whose
/// [`size_hint`](Body::size_hint) lower bound (for hyper, the `Content-Length`) is already
/// above the cap is known too large up front: [`new`](Self::new) then buffers nothing at all.
///
/// # Polling
///
/// The inner body must be [`Unpin`] (hyper's `Incoming` is); wrap other bodies in
/// `Pin<Box<B>>`. Data frames are [`Bytes`]; errors are [`BoxError`]: the inner body's
/// errors pass through unchanged (so an `h2::Error` stays findable through `source()`), and
/// this type's own failures are [`ReplayError`]s. Trailers are expected to be the last frame.
///
/// `is_end_stream` and `size_hint` are exact for every clone at every point: a clone that
/// does not hold the state consults the shared slot (without waiting for its lock). One
/// deliberate exception: while trailers are known and not yet replayed, `size_hint` has no
/// upper bound, so that an HTTP/1.1 client frames the replay as chunked (as it did the
/// original, whose trailers it could not foresee) and sends the trailers.
pub struct ReplayBody<B> {
    inner: Inner<B>,
}

/// Why a [`ReplayBody`] clone cannot produce its data.
///
/// Found in the body error chain (the body's error type is `BoxError`); a retry layer should
/// not hand out a clone that is not [replayable](ReplayBody::is_replayable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayError {
    kind: ReplayErrorKind,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum ReplayErrorKind {
    Busy,
    Capped,
    Failed,
}

enum Inner<B> {
    /// Never buffered: the body streams once.
    Passthrough {
        body: B,
        too_large: bool,
    },
    /// The body was complete when wrapped (most `GET`s): every clone is an empty body, and
    /// nothing is shared or allocated. The original keeps the body only to drop it.
    Empty {
        _body: Option<B>,
    },
    Replay(Replay<B>),
}

struct Replay<B> {
    shared: Arc<Shared<B>>,
    /// The state while this clone holds it.
    state: Option<State<B>>,
    /// How many buffered chunks, and bytes, this clone has yielded.
    chunk: usize,
    pos: u64,
    trailers_sent: bool,
}

struct Shared<B> {
    slot: Mutex<Option<State<B>>>,
    status: AtomicU8,
    max_bytes: u64,
    initial_hint: SizeHint,
}

/// The original body and what has been read from it so far.
struct State<B> {
    body: B,
    chunks: Vec<Bytes>,
    /// Bytes held in `chunks`.
    buffered: u64,
    /// Bytes read from `body` (equal to `buffered` until the cap is passed).
    read: u64,
    trailers: Option<HeaderMap>,
    ended: bool,
    capped: bool,
    failed: bool,
}

const REPLAYABLE: u8 = 0;
const CAPPED: u8 = 1;
const FAILED: u8 = 2;

// === impl ReplayBody ===

impl<B: Body> ReplayBody<B> {
    /// Wraps `body`, buffering up to `max_bytes` bytes for replays.
    ///
    /// If the body's `size_hint` lower bound is already above `max_bytes`, nothing will ever
    /// be buffered: the result streams `body` once and is neither replayable nor clonable.
    pub fn new(body: B, max_bytes: usize) -> Self {
        if body.is_end_stream() {
            return Self {
                inner: Inner::Empty { _body: Some(body) },
            };
        }
        let max_bytes = u64::try_from(max_bytes).unwrap_or(u64::MAX);
        let initial_hint = body.size_hint();
        if initial_hint.lower() > max_bytes {
            return Self {
                inner: Inner::Passthrough {
                    body,
                    too_large: true,
                },
            };
        }
        let state = State {
            body,
            chunks: Vec::new(),
            buffered: 0,
            read: 0,
            trailers: None,
            ended: false,
            capped: false,
            failed: false,
        };
        Self {
            inner: Inner::Replay(Replay {
                shared: Arc::new(Shared {
                    slot: Mutex::new(None),
                    status: AtomicU8::new(REPLAYABLE),
                    max_bytes,
                    initial_hint,
                }),
                // The original holds the state from the start, so its polls take no lock.
                state: Some(state),
                chunk: 0,
                pos: 0,
                trailers_sent: false,
            }),
        }
    }
}

impl<B> ReplayBody<B> {
    /// Wraps `body` without any buffering: it streams once, allocates nothing, and cannot
    /// be cloned. The retry layer uses this for requests without a retry policy.
    pub const fn passthrough(body: B) -> Self {
        Self {
            inner: Inner::Passthrough {
                body,
                too_large: false,
            },
        }
    }

    /// Whether a clone can still replay the whole body: it is buffering, has not passed its
    /// cap, and the original body has not failed.
    pub fn is_replayable(&self) -> bool {
        match &self.inner {
            Inner::Passthrough { .. } => false,
            Inner::Empty { .. } => true,
            Inner::Replay(r) => r.shared.status.load(Ordering::Acquire) == REPLAYABLE,
        }
    }

    /// Whether the body is known to exceed the cap: from its size hint up front, or because
    /// more than `max_bytes` bytes have been read.
    pub fn is_capped(&self) -> bool {
        match &self.inner {
            Inner::Passthrough { too_large, .. } => *too_large,
            Inner::Empty { .. } => false,
            Inner::Replay(r) => r.shared.status.load(Ordering::Acquire) == CAPPED,
        }
    }

    /// Returns a clone that replays the body from its start, or `None` when the body is not
    /// [replayable](Self::is_replayable).
    ///
    /// The clone shares the buffer; it reads nothing until it is polled.
    pub fn try_clone(&self) -> Option<Self> {
        self.source()?.try_clone()
    }

    /// What later clones are made from: the shared buffer (nothing for an empty body), or
    /// `None` when the body is not [replayable](Self::is_replayable). Smaller than a clone,
    /// for the retry layer to keep while an attempt runs.
    pub(crate) fn source(&self) -> Option<ReplaySource<B>> {
        match &self.inner {
            Inner::Empty { .. } => Some(ReplaySource(None)),
            Inner::Replay(r) if self.is_replayable() => Some(ReplaySource(Some(r.shared.clone()))),
            _ => None,
        }
    }
}

/// Makes clones of a [`ReplayBody`]: its shared buffer, or `None` for an empty body.
pub(crate) struct ReplaySource<B>(Option<Arc<Shared<B>>>);

impl<B> ReplaySource<B> {
    fn status(&self) -> u8 {
        self.0
            .as_ref()
            .map_or(REPLAYABLE, |s| s.status.load(Ordering::Acquire))
    }

    /// As [`ReplayBody::is_replayable`].
    pub(crate) fn is_replayable(&self) -> bool {
        self.status() == REPLAYABLE
    }

    /// As [`ReplayBody::is_capped`].
    pub(crate) fn is_capped(&self) -> bool {
        self.status() == CAPPED
    }

    /// As [`ReplayBody::try_clone`].
    pub(crate) fn try_clone(&self) -> Option<ReplayBody<B>> {
        let inner = match &self.0 {
            None => Inner::Empty { _body: None },
            Some(shared) if self.is_replayable() => Inner::Replay(Replay {
                shared: shared.clone(),
                state: None,
                chunk: 0,
                pos: 0,
                trailers_sent: false,
            }),
            Some(_) => return None,
        };
        Some(ReplayBody { inner })
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().inner {
            Inner::Passthrough { body, .. } => {
                let frame = ready!(Pin::new(body).poll_frame(cx));
                Poll::Ready(frame.map(|f| f.map(|f| f.map_data(into_bytes)).map_err(Into::into)))
            }
            Inner::Empty { .. } => Poll::Ready(None),
            Inner::Replay(r) => r.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Passthrough { body, .. } => body.is_end_stream(),
            Inner::Empty { .. } => true,
            Inner::Replay(r) => r.with_state(|r, s| s.is_some_and(|s| r.is_end(s))),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Passthrough { body, .. } => body.size_hint(),
            Inner::Empty { .. } => SizeHint::with_exact(0),
            Inner::Replay(r) => r.with_state(|r, s| match s {
                Some(s) => r.size_hint(s),
                // Held by another clone: polling would fail. A clone that has not started
                // yet would produce the whole body.
                None if r.pos == 0 => r.shared.initial_hint,
                None => SizeHint::default(),
            }),
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Passthrough { too_large, .. } => f
                .debug_struct("ReplayBody")
                .field("replayable", &false)
                .field("capped", too_large)
                .finish_non_exhaustive(),
            Inner::Empty { .. } => f
                .debug_struct("ReplayBody")
                .field("replayable", &true)
                .field("empty", &true)
                .finish_non_exhaustive(),
            Inner::Replay(r) => f
                .debug_struct("ReplayBody")
                .field("replayable", &self.is_replayable())
                .field("capped", &self.is_capped())
                .field("holds_state", &r.state.is_some())
                .field("position", &r.pos)
                .field("max_bytes", &r.shared.max_bytes)
                .finish_non_exhaustive(),
        }
    }
}

fn into_bytes<D: Buf>(mut data: D) -> Bytes {
    // For `Bytes` this is `split_to(len)`: no copy.
    let len = data.remaining();
    data.copy_to_bytes(len)
}

// === impl Replay ===

impl<B> Replay<B> {
    /// Runs `f` with the state, held by this clone or waiting in the shared slot (`None` when
    /// another clone holds it).
    fn with_state<T>(&self, f: impl FnOnce(&Self, Option<&State<B>>) -> T) -> T {
        if let Some(state) = &self.state {
            return f(self, Some(state));
        }
        match self.shared.slot.try_lock() {
            Ok(slot) => f(self, slot.as_ref()),
            Err(TryLockError::Poisoned(p)) => f(self, p.into_inner().as_ref()),
            // Only held for a few instructions by another clone's bookkeeping; treat as busy.
            Err(TryLockError::WouldBlock) => f(self, None),
        }
    }

    fn acquire(&mut self) -> bool {
        if self.state.is_none() {
            self.state = match self.shared.slot.try_lock() {
                Ok(mut slot) => slot.take(),
                Err(TryLockError::Poisoned(p)) => p.into_inner().take(),
                Err(TryLockError::WouldBlock) => None,
            };
        }
        self.state.is_some()
    }
}

impl<B: Body> Replay<B> {
    fn is_end(&self, s: &State<B>) -> bool {
        if self.pos < s.read {
            return false;
        }
        match &s.trailers {
            Some(_) => self.trailers_sent,
            None => s.ended || (!s.failed && s.body.is_end_stream()),
        }
    }

    fn size_hint(&self, s: &State<B>) -> SizeHint {
        let live = if s.ended || s.trailers.is_some() || s.failed {
            SizeHint::with_exact(0)
        } else {
            s.body.size_hint()
        };
        let replay = s.read.saturating_sub(self.pos);
        if replay > 0 && s.capped {
            // The next poll fails.
            return SizeHint::default();
        }
        let mut hint = SizeHint::new();
        hint.set_lower(live.lower().saturating_add(replay));
        // Trailers still to send: never claim an exact length, or an HTTP/1.1 client would
        // frame the replay with `content-length`, where trailers cannot go.
        let trailers_pending = s.trailers.is_some() && !self.trailers_sent;
        if let (Some(upper), false) = (live.upper(), trailers_pending) {
            hint.set_upper(upper.saturating_add(replay));
        }
        hint
    }
}

impl<B> Replay<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if !self.acquire() {
            return Poll::Ready(Some(Err(ReplayError::new(ReplayErrorKind::Busy).into())));
        }
        let max_bytes = self.shared.max_bytes;
        let Some(state) = self.state.as_mut() else {
            return Poll::Ready(Some(Err(ReplayError::new(ReplayErrorKind::Busy).into())));
        };

        // 1. Data an earlier attempt read.
        if self.pos < state.read {
            if state.failed {
                return Poll::Ready(Some(Err(ReplayError::new(ReplayErrorKind::Failed).into())));
            }
            let chunk = if state.capped {
                None
            } else {
                state.chunks.get(self.chunk).cloned()
            };
            let Some(chunk) = chunk else {
                return Poll::Ready(Some(Err(ReplayError::new(ReplayErrorKind::Capped).into())));
            };
            self.chunk += 1;
            self.pos += chunk.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }

        // 2. Trailers an earlier attempt read: the end of the body.
        if let Some(trailers) = &state.trailers {
            if self.trailers_sent {
                return Poll::Ready(None);
            }
            self.trailers_sent = true;
            return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
        }
        if state.ended {
            return Poll::Ready(None);
        }
        if state.failed {
            return Poll::Ready(Some(Err(ReplayError::new(ReplayErrorKind::Failed).into())));
        }

        // 3. The rest of the original body.
        loop {
            let frame = match ready!(Pin::new(&mut state.body).poll_frame(cx)) {
                None => {
                    state.ended = true;
                    return Poll::Ready(None);
                }
                Some(Err(error)) => {
                    state.failed = true;
                    state.chunks = Vec::new();
                    self.shared.status.store(FAILED, Ordering::Release);
                    return Poll::Ready(Some(Err(error.into())));
                }
                Some(Ok(frame)) => frame,
            };
            let frame = match frame.into_data() {
                Ok(data) => {
                    let data = into_bytes(data);
                    let len = data.len() as u64;
                    state.read += len;
                    self.pos += len;
                    if !state.capped {
                        if state.buffered + len > max_bytes {
                            // Free the buffer now: this body will never be replayed.
                            state.capped = true;
                            state.chunks = Vec::new();
                            self.shared.status.store(CAPPED, Ordering::Release);
                        } else if len > 0 {
                            state.buffered += len;
                            state.chunks.push(data.clone());
                        }
                        self.chunk = state.chunks.len();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Err(frame) => frame,
            };
            if let Ok(trailers) = frame.into_trailers() {
                state.trailers = Some(trailers.clone());
                self.trailers_sent = true;
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            // A frame kind http-body does not define yet: skip it.
        }
    }
}

impl<B> Drop for Replay<B> {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            let mut slot = self
                .shared
                .slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *slot = Some(state);
        }
    }
}

// === impl ReplayError ===

impl ReplayError {
    const fn new(kind: ReplayErrorKind) -> Self {
        Self { kind }
    }

    /// Another clone of the body is alive and holds it (an earlier attempt's request was not
    /// dropped yet).
    pub fn is_busy(&self) -> bool {
        self.kind == ReplayErrorKind::Busy
    }

    /// The body passed its cap, so the data this clone needs was not kept.
    pub fn is_capped(&self) -> bool {
        self.kind == ReplayErrorKind::Capped
    }

    /// The original body failed during an earlier attempt, so its end was never read.
    pub fn is_failed(&self) -> bool {
        self.kind == ReplayErrorKind::Failed
    }
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            ReplayErrorKind::Busy => "request body is held by another attempt",
            ReplayErrorKind::Capped => "request body exceeded the replay buffer",
            ReplayErrorKind::Failed => "request body failed during an earlier attempt",
        })
    }
}

impl std::error::Error for ReplayError {}
