//! A scripted body and helpers that read a body to its end.

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::fmt;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::Sleep;

#[cfg(test)]
mod tests;

/// The error type of [`MockBody`] and of the test servers' bodies.
///
/// Any error can be scripted, including `h2::Error::from(h2::Reason::CANCEL)`; it is stored
/// as-is (never re-wrapped), so code under test can find it by walking `source()` or by
/// downcasting.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// A body that plays back a script of frames, errors, waits and an end.
///
/// Steps are appended with the builder methods ([`data`](Self::data),
/// [`trailers`](Self::trailers), [`error`](Self::error), [`pending`](Self::pending),
/// [`delay`](Self::delay), [`hang`](Self::hang)) in any order and returned one per poll. When
/// the script runs out, `poll_frame` returns `Ready(None)`. Steps after an error are still
/// played, so a script can test what a wrapper does when polled after an error.
///
/// `MockBody` is `Send + Sync + Unpin`, so it also serves as a request body for hyper clients
/// (see [`HttpClient`](crate::HttpClient)).
///
/// # `is_end_stream` and `size_hint`
///
/// By default `is_end_stream()` is `true` exactly when no steps are left (a `MockBody::new()`
/// with no steps is already at its end, like an empty body), and `size_hint()` is
/// `SizeHint::default()` while steps remain and exactly 0 after. Both can be fixed so a test
/// can check that a wrapper forwards them:
/// [`with_exact_size`](Self::with_exact_size), [`with_size_hint`](Self::with_size_hint),
/// [`with_is_end_stream`](Self::with_is_end_stream).
///
/// # Example
///
/// ```
/// use linkerd_http_test_util::{MockBody, collect};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut trailers = http::HeaderMap::new();
/// trailers.insert("grpc-status", "0".parse().unwrap());
/// let body = MockBody::new()
///     .data("hello ")
///     .pending() // one Poll::Pending, with the waker woken
///     .data("world")
///     .trailers(trailers);
/// let collected = collect(body).await.expect("the script has no error");
/// assert_eq!(collected.data, "hello world");
/// assert_eq!(collected.trailers.unwrap()["grpc-status"], "0");
/// # }
/// ```
#[derive(Debug, Default)]
pub struct MockBody {
    steps: VecDeque<Step>,
    sleep: Option<Pin<Box<Sleep>>>,
    is_end_stream: Option<bool>,
    size_hint: SizeHintMode,
    data_yielded: u64,
}

/// What [`collect`] and [`collect_until_error`] read from a body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Collected {
    /// Every data frame's bytes, concatenated.
    pub data: Bytes,
    /// How many data frames the body yielded (empty ones included).
    pub data_frames: usize,
    /// The trailers, if the body sent any (several trailer frames are merged).
    pub trailers: Option<HeaderMap>,
}

#[derive(Debug)]
enum Step {
    Data(Bytes),
    Trailers(HeaderMap),
    Error(BoxError),
    Pending,
    Delay(Duration),
    Hang,
}

#[derive(Clone, Copy, Debug, Default)]
enum SizeHintMode {
    #[default]
    Script,
    Exact(u64),
    Fixed(SizeHint),
}

// === impl MockBody ===

impl MockBody {
    /// An empty script: the body is at its end before it is polled.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a data frame.
    #[must_use]
    pub fn data(mut self, data: impl Into<Bytes>) -> Self {
        self.steps.push_back(Step::Data(data.into()));
        self
    }

    /// Appends a trailers frame.
    #[must_use]
    pub fn trailers(mut self, trailers: HeaderMap) -> Self {
        self.steps.push_back(Step::Trailers(trailers));
        self
    }

    /// Appends an error, returned as `Ready(Some(Err(error)))`.
    ///
    /// For an HTTP/2 stream reset, pass `h2::Error::from(h2::Reason::CANCEL)` (or another
    /// reason): hyper resets the stream with that reason when a body it sends fails with it.
    #[must_use]
    pub fn error(mut self, error: impl Into<BoxError>) -> Self {
        self.steps.push_back(Step::Error(error.into()));
        self
    }

    /// Appends one `Poll::Pending`; the waker is woken at once, so the next poll moves on.
    #[must_use]
    pub fn pending(mut self) -> Self {
        self.steps.push_back(Step::Pending);
        self
    }

    /// Appends a wait on a `tokio::time::sleep(duration)`.
    ///
    /// With `#[tokio::test(start_paused = true)]` the wait is driven by the paused clock, so
    /// timer tests (idle timeouts, deadlines) run without real sleeps. Needs a tokio runtime
    /// with time enabled when polled.
    #[must_use]
    pub fn delay(mut self, duration: Duration) -> Self {
        self.steps.push_back(Step::Delay(duration));
        self
    }

    /// Appends a step that returns `Poll::Pending` forever without waking the waker.
    ///
    /// Useful for idle timeouts and for cancellation (the body is dropped while waiting).
    /// Steps after it are never reached.
    #[must_use]
    pub fn hang(mut self) -> Self {
        self.steps.push_back(Step::Hang);
        self
    }

    /// Reports a body of exactly `len` bytes: `size_hint()` is exact and counts down as data
    /// frames are returned (`len` minus the bytes returned so far, never below 0), as hyper's
    /// body does for a `content-length` message.
    ///
    /// `len` need not match the scripted data, so a test can present a body that lies about
    /// its length.
    #[must_use]
    pub fn with_exact_size(mut self, len: u64) -> Self {
        self.size_hint = SizeHintMode::Exact(len);
        self
    }

    /// Makes `size_hint()` return `hint` on every call, whatever has been polled.
    #[must_use]
    pub fn with_size_hint(mut self, hint: SizeHint) -> Self {
        self.size_hint = SizeHintMode::Fixed(hint);
        self
    }

    /// Makes `is_end_stream()` return `value` on every call instead of "no steps left".
    ///
    /// `false` models a body that learns of its end only by being polled (a chunked body);
    /// `true` with steps left models a body that claims to be over early.
    #[must_use]
    pub fn with_is_end_stream(mut self, value: bool) -> Self {
        self.is_end_stream = Some(value);
        self
    }

    /// How many steps are left to play (`hang` counts as one, forever).
    #[must_use]
    pub fn remaining_steps(&self) -> usize {
        self.steps.len()
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        // Each iteration consumes one step, so the loop ends with the script.
        loop {
            let Some(step) = this.steps.pop_front() else {
                return Poll::Ready(None);
            };
            match step {
                Step::Data(data) => {
                    this.data_yielded = this
                        .data_yielded
                        .saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX));
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Step::Trailers(trailers) => {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Step::Error(error) => return Poll::Ready(Some(Err(error))),
                Step::Pending => {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Step::Hang => {
                    this.steps.push_front(Step::Hang);
                    return Poll::Pending;
                }
                Step::Delay(duration) => {
                    let sleep = this
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(duration)));
                    if sleep.as_mut().poll(cx).is_pending() {
                        this.steps.push_front(Step::Delay(duration));
                        return Poll::Pending;
                    }
                    this.sleep = None;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.is_end_stream.unwrap_or(self.steps.is_empty())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.size_hint {
            SizeHintMode::Script if self.steps.is_empty() => SizeHint::with_exact(0),
            SizeHintMode::Script => SizeHint::default(),
            SizeHintMode::Exact(len) => SizeHint::with_exact(len.saturating_sub(self.data_yielded)),
            SizeHintMode::Fixed(hint) => *hint,
        }
    }
}

// === impl Collected ===

impl fmt::Display for Collected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes in {} data frames",
            self.data.len(),
            self.data_frames
        )?;
        if let Some(trailers) = &self.trailers {
            write!(f, ", {} trailers", trailers.len())?;
        }
        Ok(())
    }
}

/// Reads `body` to its end: all data, concatenated, and the trailers.
///
/// # Errors
///
/// The body's first error; what was read before it is lost (use [`collect_until_error`] to
/// keep it).
pub async fn collect<B>(body: B) -> Result<Collected, B::Error>
where
    B: Body,
{
    match collect_until_error(body).await {
        (collected, None) => Ok(collected),
        (_, Some(error)) => Err(error),
    }
}

/// Reads `body` until its end or its first error, and returns what was read with the error.
///
/// Useful when a body fails after some data (an HTTP/2 reset after headers): the test checks
/// both the bytes that arrived and the error.
pub async fn collect_until_error<B>(body: B) -> (Collected, Option<B::Error>)
where
    B: Body,
{
    let mut body = pin!(body);
    let mut data = BytesMut::new();
    let mut collected = Collected::default();
    // A body yields a finite number of frames before `None`; a body that never ends is the
    // caller's to bound with a timeout.
    while let Some(frame) = body.as_mut().frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                collected.data = data.freeze();
                return (collected, Some(error));
            }
        };
        match frame.into_data() {
            Ok(mut chunk) => {
                collected.data_frames += 1;
                while chunk.has_remaining() {
                    let part = chunk.chunk();
                    data.extend_from_slice(part);
                    let n = part.len();
                    chunk.advance(n);
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    match &mut collected.trailers {
                        Some(all) => all.extend(trailers),
                        None => collected.trailers = Some(trailers),
                    }
                }
            }
        }
    }
    collected.data = data.freeze();
    (collected, None)
}

/// Finds the HTTP/2 reset reason in an error or anywhere in its `source()` chain.
///
/// Works on `hyper::Error` (whose source is the `h2::Error`), on a bare `h2::Error`, and on
/// any error that keeps its cause in `source()`. A test convenience; proxy code uses the
/// classify crate's helper.
#[must_use]
pub fn h2_reason(error: &(dyn StdError + 'static)) -> Option<h2::Reason> {
    let mut next = Some(error);
    // An error chain is finite; the bound guards against a (buggy) cyclic chain.
    for _ in 0..64 {
        let error = next?;
        if let Some(reason) = error
            .downcast_ref::<h2::Error>()
            .and_then(h2::Error::reason)
        {
            return Some(reason);
        }
        next = error.source();
    }
    None
}
