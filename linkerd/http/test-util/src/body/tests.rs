use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Wake;

use proptest::prelude::*;

use super::*;

/// A waker that counts how often it was woken.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// What one poll returned, in a comparable form.
#[derive(Debug, PartialEq, Eq)]
enum Polled {
    Data(Bytes),
    Trailers(HeaderMap),
    Error(String),
    End,
    Pending,
}

fn poll_once(body: &mut MockBody, waker: &Arc<CountingWaker>) -> Polled {
    let waker = std::task::Waker::from(waker.clone());
    let mut cx = Context::from_waker(&waker);
    match Pin::new(body).poll_frame(&mut cx) {
        Poll::Pending => Polled::Pending,
        Poll::Ready(None) => Polled::End,
        Poll::Ready(Some(Err(error))) => Polled::Error(error.to_string()),
        Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
            Ok(data) => Polled::Data(data),
            Err(frame) => Polled::Trailers(frame.into_trailers().expect("data or trailers")),
        },
    }
}

fn trailers(name: &'static str, value: &'static str) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(name, http::HeaderValue::from_static(value));
    map
}

#[test]
fn plays_the_script_in_order() {
    let waker = Arc::new(CountingWaker::default());
    let mut body = MockBody::new()
        .trailers(trailers("early", "1"))
        .data("a")
        .error("boom")
        .data("b")
        .pending()
        .trailers(trailers("late", "2"));
    let expected = [
        Polled::Trailers(trailers("early", "1")),
        Polled::Data(Bytes::from_static(b"a")),
        Polled::Error("boom".into()),
        Polled::Data(Bytes::from_static(b"b")),
        Polled::Pending,
        Polled::Trailers(trailers("late", "2")),
        Polled::End,
        Polled::End,
    ];
    for (i, want) in expected.into_iter().enumerate() {
        assert_eq!(
            poll_once(&mut body, &waker),
            want,
            "poll {i} must return the scripted step"
        );
    }
}

#[test]
fn pending_wakes_the_waker_once() {
    let waker = Arc::new(CountingWaker::default());
    let mut body = MockBody::new().pending().pending().data("x");
    assert_eq!(poll_once(&mut body, &waker), Polled::Pending);
    assert_eq!(
        waker.0.load(Ordering::SeqCst),
        1,
        "a scripted Pending must wake the task so polling resumes"
    );
    assert_eq!(poll_once(&mut body, &waker), Polled::Pending);
    assert_eq!(
        waker.0.load(Ordering::SeqCst),
        2,
        "each Pending step wakes once"
    );
    assert_eq!(
        poll_once(&mut body, &waker),
        Polled::Data(Bytes::from_static(b"x")),
        "the step after Pending is returned on the next poll"
    );
}

#[test]
fn hang_never_wakes_and_never_ends() {
    let waker = Arc::new(CountingWaker::default());
    let mut body = MockBody::new().data("x").hang().data("unreachable");
    assert_eq!(
        poll_once(&mut body, &waker),
        Polled::Data(Bytes::from_static(b"x"))
    );
    for _ in 0..3 {
        assert_eq!(
            poll_once(&mut body, &waker),
            Polled::Pending,
            "hang stays Pending"
        );
    }
    assert_eq!(
        waker.0.load(Ordering::SeqCst),
        0,
        "hang must not wake the task"
    );
    assert!(!body.is_end_stream(), "a hanging body is not at its end");
}

#[tokio::test(start_paused = true)]
async fn delay_waits_on_the_tokio_clock() {
    let waker = Arc::new(CountingWaker::default());
    let mut body = MockBody::new().delay(Duration::from_secs(5)).data("late");
    assert_eq!(
        poll_once(&mut body, &waker),
        Polled::Pending,
        "the delay has not elapsed"
    );
    tokio::time::advance(Duration::from_secs(4)).await;
    assert_eq!(
        poll_once(&mut body, &waker),
        Polled::Pending,
        "4s of a 5s delay"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(
        waker.0.load(Ordering::SeqCst) >= 1,
        "the timer wakes the task when the delay ends"
    );
    assert_eq!(
        poll_once(&mut body, &waker),
        Polled::Data(Bytes::from_static(b"late")),
        "the step after the delay comes once it elapsed"
    );
}

#[test]
fn is_end_stream_follows_the_script_or_the_override() {
    let waker = Arc::new(CountingWaker::default());
    assert!(
        MockBody::new().is_end_stream(),
        "an empty script is already at its end"
    );
    let mut body = MockBody::new().data("x");
    assert!(!body.is_end_stream(), "steps left: not at the end");
    poll_once(&mut body, &waker);
    assert!(
        body.is_end_stream(),
        "the last data frame leaves the body at its end"
    );

    let mut never = MockBody::new().data("x").with_is_end_stream(false);
    poll_once(&mut never, &waker);
    assert!(
        !never.is_end_stream(),
        "the override holds after the script ends"
    );
    assert!(
        MockBody::new()
            .data("x")
            .with_is_end_stream(true)
            .is_end_stream(),
        "the override holds while steps remain"
    );
}

#[test]
fn size_hint_modes() {
    let waker = Arc::new(CountingWaker::default());
    let mut body = MockBody::new().data("abc");
    assert_eq!(body.size_hint().exact(), None, "unknown by default");
    assert_eq!(body.size_hint().lower(), 0);
    poll_once(&mut body, &waker);
    assert_eq!(body.size_hint().exact(), Some(0), "exactly 0 once finished");

    let mut exact = MockBody::new().data("abc").data("de").with_exact_size(5);
    assert_eq!(exact.size_hint().exact(), Some(5));
    poll_once(&mut exact, &waker);
    assert_eq!(
        exact.size_hint().exact(),
        Some(2),
        "the exact hint counts down"
    );
    poll_once(&mut exact, &waker);
    assert_eq!(exact.size_hint().exact(), Some(0));

    let mut hint = SizeHint::new();
    hint.set_lower(7);
    hint.set_upper(9);
    let mut fixed = MockBody::new().data("abc").with_size_hint(hint);
    poll_once(&mut fixed, &waker);
    assert_eq!(
        (fixed.size_hint().lower(), fixed.size_hint().upper()),
        (7, Some(9)),
        "a fixed hint never changes"
    );
}

#[test]
fn scripted_h2_error_keeps_its_reason() {
    let mut body = MockBody::new().error(h2::Error::from(h2::Reason::REFUSED_STREAM));
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    let Poll::Ready(Some(Err(error))) = Pin::new(&mut body).poll_frame(&mut cx) else {
        panic!("the scripted error must come first");
    };
    assert!(
        error.downcast_ref::<h2::Error>().is_some(),
        "the error is stored unwrapped"
    );
    assert_eq!(h2_reason(&*error), Some(h2::Reason::REFUSED_STREAM));
}

#[test]
fn h2_reason_walks_the_source_chain() {
    #[derive(Debug)]
    struct Outer(h2::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer")
        }
    }
    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }
    let error = Outer(h2::Error::from(h2::Reason::CANCEL));
    assert_eq!(h2_reason(&error), Some(h2::Reason::CANCEL));
    let plain = std::io::Error::other("no reason");
    assert_eq!(h2_reason(&plain), None, "no h2 error in the chain");
}

#[tokio::test]
async fn collect_reads_data_and_trailers() {
    let body = MockBody::new()
        .data("a")
        .pending()
        .data("")
        .data("bc")
        .trailers(trailers("t", "1"));
    let collected = collect(body).await.expect("no error scripted");
    assert_eq!(collected.data, "abc");
    assert_eq!(
        collected.data_frames, 3,
        "empty data frames are counted too"
    );
    assert_eq!(collected.trailers, Some(trailers("t", "1")));
    assert_eq!(
        collected.to_string(),
        "3 bytes in 3 data frames, 1 trailers"
    );
}

#[tokio::test]
async fn collect_until_error_keeps_the_partial_body() {
    let body = MockBody::new()
        .data("ab")
        .error(h2::Error::from(h2::Reason::CANCEL))
        .data("never read");
    let (collected, error) = collect_until_error(body).await;
    assert_eq!(
        collected.data, "ab",
        "data before the error is kept and reading stops at it"
    );
    let error = error.expect("the scripted error is returned");
    assert_eq!(h2_reason(&*error), Some(h2::Reason::CANCEL));

    let error = collect(MockBody::new().data("x").error("boom"))
        .await
        .expect_err("collect fails on the first error");
    assert_eq!(error.to_string(), "boom");
}

proptest! {
    /// Any chunking of any bytes, with `Pending` steps between chunks, collects to the same
    /// bytes; an exact size hint counts down to 0 and the body then reports its end.
    #[test]
    fn collects_any_chunking(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16),
        pending_every in 1usize..4,
    ) {
        let total: usize = chunks.iter().map(Vec::len).sum();
        let mut body = MockBody::new().with_exact_size(total as u64);
        for (i, chunk) in chunks.iter().enumerate() {
            if i % pending_every == 0 {
                body = body.pending();
            }
            body = body.data(chunk.clone());
        }
        let waker = Arc::new(CountingWaker::default());
        let mut data = Vec::new();
        let mut frames = 0;
        // Each poll consumes a step, so the script ends within chunks + pendings + 1 polls.
        for _ in 0..=(2 * chunks.len() + 1) {
            match poll_once(&mut body, &waker) {
                Polled::Data(chunk) => {
                    frames += 1;
                    data.extend_from_slice(&chunk);
                    prop_assert_eq!(
                        body.size_hint().exact(),
                        Some((total - data.len()) as u64),
                        "the exact hint is the bytes not yet returned"
                    );
                }
                Polled::Pending => {}
                Polled::End => break,
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        prop_assert_eq!(data, chunks.concat(), "bytes come back in order, unchanged");
        prop_assert_eq!(frames, chunks.len(), "one frame per scripted chunk");
        prop_assert!(body.is_end_stream(), "the body is at its end after the script");
    }
}
