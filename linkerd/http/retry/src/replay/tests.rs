use super::*;
use http_body_util::BodyExt;
use linkerd_http_test_util::MockBody;
use proptest::prelude::*;
use std::task::Waker;

/// Everything a body produced until its end or its first error.
#[derive(Debug, Default, PartialEq)]
struct Read {
    chunks: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    error: Option<String>,
}

impl Read {
    fn data(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }
}

/// Polls `body` to its end (or first error) with a no-op waker; the mock bodies used here
/// are never `Pending`.
fn read_all<B: Body<Data = Bytes, Error = BoxError> + Unpin>(body: &mut B) -> Read {
    let mut cx = Context::from_waker(Waker::noop());
    let mut read = Read::default();
    for _ in 0..10_000 {
        match Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Ready(None) => return read,
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => read.chunks.push(data),
                Err(frame) => read.trailers = frame.into_trailers().ok(),
            },
            Poll::Ready(Some(Err(e))) => {
                read.error = Some(e.to_string());
                return read;
            }
            Poll::Pending => panic!("scripted bodies in these tests are never pending"),
        }
    }
    panic!("body did not end within 10000 frames");
}

fn poll_one<B: Body<Data = Bytes, Error = BoxError> + Unpin>(
    body: &mut B,
) -> Option<Result<Frame<Bytes>, BoxError>> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(body).poll_frame(&mut cx) {
        Poll::Ready(f) => f,
        Poll::Pending => panic!("scripted bodies in these tests are never pending"),
    }
}

fn trailers(value: &'static str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("x-trailer", http::HeaderValue::from_static(value));
    t
}

fn replay_error(e: &BoxError) -> &ReplayError {
    e.downcast_ref::<ReplayError>()
        .expect("the error is the replay body's own")
}

#[test]
fn replays_data_and_trailers_sharing_memory() {
    let a = Bytes::from_static(b"hello ");
    let b = Bytes::from(vec![b'w'; 5]);
    let mut first = ReplayBody::new(
        MockBody::new()
            .data(a.clone())
            .data(b.clone())
            .trailers(trailers("t")),
        64,
    );
    let mut second = first.try_clone().expect("a fresh body is replayable");
    let read1 = read_all(&mut first);
    assert_eq!(
        read1.data(),
        b"hello wwwww",
        "the first attempt reads the body"
    );
    drop(first);
    let read2 = read_all(&mut second);
    assert_eq!(read1, read2, "the replay equals the first attempt");
    assert_eq!(
        read2.chunks[0].as_ptr(),
        a.as_ptr(),
        "replayed chunks point at the original memory: no copy"
    );
    assert_eq!(
        read2.chunks[1].as_ptr(),
        b.as_ptr(),
        "second chunk not copied either"
    );
    assert_eq!(read2.trailers, Some(trailers("t")), "trailers are replayed");
}

#[test]
fn replay_continues_an_unfinished_body() {
    let mut first = ReplayBody::new(MockBody::new().data("ab").data("cd").data("ef"), 64);
    let mut second = first.try_clone().unwrap();
    let frame = poll_one(&mut first).unwrap().unwrap();
    assert_eq!(
        frame.into_data().unwrap(),
        "ab",
        "first attempt reads one chunk"
    );
    drop(first);
    let read = read_all(&mut second);
    assert_eq!(
        read.data(),
        b"abcdef",
        "replay of ab, then the rest read live"
    );
    assert_eq!(read.error, None);
    let mut third = second.try_clone().unwrap();
    drop(second);
    assert_eq!(
        read_all(&mut third).data(),
        b"abcdef",
        "a third attempt also replays it all"
    );
}

#[test]
fn busy_clone_is_a_typed_error() {
    let mut first = ReplayBody::new(MockBody::new().data("ab").data("cd"), 64);
    let mut second = first.try_clone().unwrap();
    let _ = poll_one(&mut first);
    let err = poll_one(&mut second)
        .expect("a frame")
        .expect_err("the state is held by the first clone");
    assert!(replay_error(&err).is_busy(), "busy, not {err}");
    assert!(!second.is_end_stream(), "a busy clone is not at its end");
    drop(first);
    assert_eq!(
        read_all(&mut second).data(),
        b"abcd",
        "free once the holder is dropped"
    );
}

#[test]
fn exactly_the_cap_is_replayable() {
    let mut first = ReplayBody::new(MockBody::new().data("1234").data("5678"), 8);
    let mut second = first.try_clone().unwrap();
    assert_eq!(read_all(&mut first).data(), b"12345678");
    assert!(first.is_replayable(), "8 bytes fit a cap of 8");
    assert!(!first.is_capped());
    drop(first);
    assert_eq!(read_all(&mut second).data(), b"12345678");
}

#[test]
fn one_byte_over_the_cap_drops_the_buffer() {
    let mut first = ReplayBody::new(MockBody::new().data("1234").data("56789"), 8);
    let mut second = first.try_clone().unwrap();
    let read = read_all(&mut first);
    assert_eq!(
        read.data(),
        b"123456789",
        "the live attempt streams unharmed"
    );
    assert_eq!(read.error, None, "the live attempt does not fail");
    assert!(first.is_capped(), "9 bytes pass a cap of 8");
    assert!(!first.is_replayable(), "a capped body is not replayable");
    assert!(first.try_clone().is_none(), "no clones of a capped body");
    drop(first);
    let err = poll_one(&mut second)
        .unwrap()
        .expect_err("the buffer is gone");
    assert!(replay_error(&err).is_capped(), "capped, not {err}");
}

#[test]
fn size_hint_above_cap_buffers_nothing() {
    let body = ReplayBody::new(MockBody::new().data("123456789").with_exact_size(9), 8);
    assert!(
        body.is_capped(),
        "a known length over the cap is seen up front"
    );
    assert!(!body.is_replayable());
    assert!(body.try_clone().is_none());
    assert!(
        matches!(body.inner, Inner::Passthrough { .. }),
        "no buffer was set up"
    );
    let mut body = body;
    assert_eq!(read_all(&mut body).data(), b"123456789", "it still streams");
}

#[test]
fn failed_original_is_not_replayable() {
    let mut first = ReplayBody::new(
        MockBody::new()
            .data("ab")
            .error(h2::Error::from(h2::Reason::CANCEL)),
        64,
    );
    let mut second = first.try_clone().unwrap();
    let read = read_all(&mut first);
    assert_eq!(read.data(), b"ab");
    assert!(read.error.is_some(), "the inner error is returned");
    assert!(!first.is_replayable(), "a failed body cannot be replayed");
    drop(first);
    let err = poll_one(&mut second)
        .unwrap()
        .expect_err("nothing to replay");
    assert!(replay_error(&err).is_failed(), "failed, not {err}");
}

#[test]
fn inner_errors_pass_through_unchanged() {
    let mut body = ReplayBody::new(
        MockBody::new().error(h2::Error::from(h2::Reason::CANCEL)),
        64,
    );
    let err = poll_one(&mut body).unwrap().expect_err("scripted error");
    assert_eq!(
        linkerd_http_classify::find_h2_reason(&*err),
        Some(h2::Reason::CANCEL),
        "the h2 reason is still findable"
    );
}

#[test]
fn end_stream_and_size_hint_are_exact() {
    let mut first = ReplayBody::new(
        MockBody::new().data("abc").data("de").with_exact_size(5),
        64,
    );
    let second = first.try_clone().unwrap();
    assert_eq!(first.size_hint().exact(), Some(5), "before any read");
    assert_eq!(second.size_hint().exact(), Some(5), "clone before any read");
    assert!(!first.is_end_stream());
    let _ = poll_one(&mut first);
    assert_eq!(first.size_hint().exact(), Some(2), "after a partial read");
    assert_eq!(
        second.size_hint().exact(),
        Some(5),
        "the state is held elsewhere: a fresh clone reports the original hint"
    );
    drop(first);
    assert_eq!(
        second.size_hint().exact(),
        Some(5),
        "replay of 3 plus 2 live, read from the shared slot"
    );
    let mut second = second;
    let _ = poll_one(&mut second);
    assert_eq!(second.size_hint().exact(), Some(2), "replayed 3, 2 left");
    let _ = poll_one(&mut second);
    assert_eq!(second.size_hint().exact(), Some(0));
    assert!(second.is_end_stream(), "all data read, the mock says end");
    let third = second.try_clone().unwrap();
    drop(second);
    assert!(!third.is_end_stream(), "a replay has data to send");
    assert_eq!(
        third.size_hint().exact(),
        Some(5),
        "the whole body, replayed"
    );
}

#[test]
fn empty_body_is_end_stream() {
    let body = ReplayBody::new(MockBody::new(), 64);
    assert!(body.is_end_stream(), "an empty body is at its end");
    let clone = body.try_clone().unwrap();
    drop(body);
    assert!(clone.is_end_stream(), "so is its replay");
    assert_eq!(clone.size_hint().exact(), Some(0));
}

#[test]
fn trailers_end_the_stream() {
    let mut body = ReplayBody::new(MockBody::new().data("a").trailers(trailers("x")), 64);
    let _ = poll_one(&mut body);
    assert!(!body.is_end_stream(), "trailers still to come");
    let _ = poll_one(&mut body);
    assert!(body.is_end_stream(), "trailers are the last frame");
    let clone = body.try_clone().unwrap();
    drop(body);
    let mut clone = clone;
    let read = read_all(&mut clone);
    assert_eq!(read.trailers, Some(trailers("x")));
    assert!(clone.is_end_stream());
}

#[test]
fn passthrough_forwards() {
    let mut body = ReplayBody::passthrough(MockBody::new().data("abc").with_exact_size(3));
    assert_eq!(body.size_hint().exact(), Some(3));
    assert!(!body.is_replayable() && !body.is_capped());
    assert!(
        body.try_clone().is_none(),
        "pass-through bodies are not clonable"
    );
    assert_eq!(read_all(&mut body).data(), b"abc");
    assert!(body.is_end_stream());
}

#[tokio::test]
async fn works_with_body_ext() {
    let body = ReplayBody::new(http_body_util::Full::new(Bytes::from_static(b"full")), 64);
    let clone = body.try_clone().unwrap();
    let first = body.collect().await.expect("no error").to_bytes();
    let second = clone.collect().await.expect("no error").to_bytes();
    assert_eq!(first, second, "Full bodies replay");
}

fn chunked(data: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([data.len()]) {
        chunks.push(Bytes::copy_from_slice(&data[start..cut]));
        start = cut;
    }
    chunks
}

proptest! {
    #[test]
    fn every_replay_is_the_original_or_capped(
        data in proptest::collection::vec(any::<u8>(), 0..512),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        with_trailers in any::<bool>(),
        cap in 0usize..600,
        first_reads in 0usize..12,
        known_length in any::<bool>(),
    ) {
        let chunks = chunked(&data, &cuts);
        let mut mock = MockBody::new();
        for c in &chunks {
            mock = mock.data(c.clone());
        }
        if with_trailers {
            mock = mock.trailers(trailers("p"));
        }
        if known_length {
            mock = mock.with_exact_size(data.len() as u64);
        }
        let expected_trailers = with_trailers.then(|| trailers("p"));
        let mut first = ReplayBody::new(mock, cap);
        let known_too_large = known_length && data.len() > cap;
        prop_assert_eq!(first.is_capped(), known_too_large, "capped up front iff known too large");

        // The first attempt reads some frames (possibly all, possibly none).
        let mut clone = first.try_clone();
        let mut seen = Vec::new();
        for _ in 0..first_reads {
            match poll_one(&mut first) {
                Some(Ok(f)) => if let Ok(d) = f.into_data() { seen.extend_from_slice(&d) },
                Some(Err(e)) => prop_assert!(false, "the first attempt failed: {}", e),
                None => break,
            }
        }
        prop_assert!(data.starts_with(&seen), "the first attempt reads a prefix");
        prop_assert_eq!(
            first.is_replayable(),
            !known_too_large && seen.len() <= cap,
            "replayable until the bytes read pass the cap"
        );
        drop(first);

        // Up to three further attempts.
        for attempt in 2..=4 {
            let Some(mut body) = clone.take() else {
                prop_assert!(data.len() > cap, "only a body over the cap cannot be cloned");
                break;
            };
            let hint = body.size_hint();
            let next = body.try_clone();
            let read = read_all(&mut body);
            match &read.error {
                None => {
                    prop_assert_eq!(read.data(), data.clone(), "attempt {} bytes", attempt);
                    prop_assert_eq!(&read.trailers, &expected_trailers, "attempt {} trailers", attempt);
                    prop_assert!(body.is_end_stream(), "end after reading everything");
                    prop_assert!(hint.lower() <= data.len() as u64, "hint lower bound");
                    if known_length && !with_trailers {
                        prop_assert_eq!(hint.exact(), Some(data.len() as u64), "exact hint");
                    }
                }
                Some(_) => {
                    // The documented capped outcome: only when the body passed the cap
                    // during an earlier attempt.
                    prop_assert!(data.len() > cap, "failed although {} <= cap {}", data.len(), cap);
                    prop_assert!(body.is_capped(), "a failed replay reports the cap");
                }
            }
            if data.len() > cap {
                prop_assert!(!body.is_replayable(), "over the cap after a full read");
            }
            clone = next;
        }
    }
}

#[test]
fn a_body_complete_when_wrapped_replays_as_empty_without_sharing() {
    let mut original = ReplayBody::new(MockBody::new(), 1024);
    assert!(original.is_end_stream(), "an empty mock body is at its end");
    assert!(
        matches!(original.inner, Inner::Empty { .. }),
        "no shared state"
    );
    assert!(original.is_replayable() && !original.is_capped());
    let mut clones: Vec<_> = (0..3)
        .map(|_| original.try_clone().expect("always clonable"))
        .collect();
    assert_eq!(read_all(&mut original), Read::default());
    for clone in &mut clones {
        assert!(clone.is_end_stream());
        assert_eq!(clone.size_hint().exact(), Some(0));
        assert_eq!(
            read_all(clone),
            Read::default(),
            "each clone is the same empty body"
        );
    }
    // A body with data (or only trailers) still buffers.
    let with_trailers = ReplayBody::new(MockBody::new().trailers(HeaderMap::new()), 1024);
    assert!(matches!(with_trailers.inner, Inner::Replay(_)));
}
