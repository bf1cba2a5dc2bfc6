use super::*;
use bytes::Bytes;
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

/// One step of a scripted body.
#[derive(Debug)]
enum Step {
    Data(&'static str),
    Trailers,
    Error,
    Pending,
}

#[derive(Debug, PartialEq)]
struct TestError;

/// A body that replays a script; `exact` makes it report an exact size (so `is_end_stream`
/// turns true once the last data byte has been read).
#[derive(Debug)]
struct Scripted {
    steps: VecDeque<Step>,
    exact: Option<u64>,
}

impl Scripted {
    fn new(steps: Vec<Step>) -> Self {
        Self {
            steps: steps.into(),
            exact: None,
        }
    }

    fn exact(steps: Vec<Step>) -> Self {
        let len = steps
            .iter()
            .map(|s| match s {
                Step::Data(d) => d.len() as u64,
                _ => 0,
            })
            .sum();
        Self {
            steps: steps.into(),
            exact: Some(len),
        }
    }
}

impl Body for Scripted {
    type Data = Bytes;
    type Error = TestError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, TestError>>> {
        match self.steps.pop_front() {
            None => Poll::Ready(None),
            Some(Step::Pending) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Some(Step::Data(d)) => {
                if let Some(n) = self.exact.as_mut() {
                    *n -= d.len() as u64;
                }
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(d.as_bytes())))))
            }
            Some(Step::Trailers) => {
                let mut t = HeaderMap::new();
                t.insert("grpc-status", "0".parse().unwrap());
                Poll::Ready(Some(Ok(Frame::trailers(t))))
            }
            Some(Step::Error) => Poll::Ready(Some(Err(TestError))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.exact == Some(0) || (self.exact.is_none() && self.steps.is_empty())
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact {
            Some(n) => SizeHint::with_exact(n),
            None => {
                let mut h = SizeHint::new();
                h.set_lower(1);
                h.set_upper(1234);
                h
            }
        }
    }
}

type Seen = Arc<Mutex<Vec<(EosKind, Option<String>)>>>;

fn wrap(body: Scripted) -> (EosBody<Scripted, impl OnEos<TestError>>, Seen) {
    let seen: Seen = Default::default();
    let slot = seen.clone();
    let body = EosBody::new(body, move |eos: Eos<'_, TestError>| {
        let detail = eos
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .map(|v| v.to_str().unwrap().to_owned());
        slot.lock().unwrap().push((eos.kind(), detail));
    });
    (body, seen)
}

/// Polls the body to its end, counting `Pending`s; returns the frames' kinds.
fn drain<B: Body + Unpin>(body: &mut B) -> (Vec<&'static str>, usize) {
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut frames = vec![];
    let mut pendings = 0;
    for _ in 0..100 {
        match Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Pending => pendings += 1,
            Poll::Ready(None) => return (frames, pendings),
            Poll::Ready(Some(Ok(f))) if f.is_data() => frames.push("data"),
            Poll::Ready(Some(Ok(_))) => frames.push("trailers"),
            Poll::Ready(Some(Err(_))) => {
                frames.push("error");
                return (frames, pendings);
            }
        }
    }
    panic!("body never ended");
}

fn kinds(seen: &Seen) -> Vec<EosKind> {
    seen.lock().unwrap().iter().map(|(k, _)| *k).collect()
}

#[test]
fn fires_end_on_none_after_pending() {
    let (mut body, seen) = wrap(Scripted::new(vec![
        Step::Pending,
        Step::Data("a"),
        Step::Pending,
        Step::Data("b"),
    ]));
    let (frames, pendings) = drain(&mut body);
    assert_eq!(frames, ["data", "data"]);
    assert_eq!(pendings, 2, "pending polls must pass through");
    assert_eq!(kinds(&seen), [EosKind::End], "end fires once, on None");
    drop(body);
    assert_eq!(
        kinds(&seen),
        [EosKind::End],
        "drop after end must not fire again"
    );
}

#[test]
fn fires_end_when_data_reaches_exact_length() {
    let (mut body, seen) = wrap(Scripted::exact(vec![Step::Data("ab"), Step::Data("cd")]));
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    let _ = Pin::new(&mut body).poll_frame(&mut cx);
    assert!(
        kinds(&seen).is_empty(),
        "must not fire before the last byte"
    );
    let _ = Pin::new(&mut body).poll_frame(&mut cx);
    assert_eq!(
        kinds(&seen),
        [EosKind::End],
        "the last data frame of an exact-length body ends the stream"
    );
}

#[test]
fn fires_in_constructor_for_empty_body() {
    let (body, seen) = wrap(Scripted::exact(vec![]));
    assert_eq!(kinds(&seen), [EosKind::End], "an empty body ends at once");
    assert!(body.is_done());
    drop(body);
    assert_eq!(kinds(&seen), [EosKind::End]);
}

#[test]
fn fires_trailers_with_reference() {
    let (mut body, seen) = wrap(Scripted::new(vec![
        Step::Data("x"),
        Step::Pending,
        Step::Trailers,
    ]));
    let (frames, _) = drain(&mut body);
    assert_eq!(frames, ["data", "trailers"]);
    assert_eq!(
        *seen.lock().unwrap(),
        [(EosKind::Trailers, Some("0".to_owned()))],
        "trailers are passed to the callback"
    );
}

#[test]
fn fires_error() {
    let (mut body, seen) = wrap(Scripted::new(vec![
        Step::Data("x"),
        Step::Pending,
        Step::Error,
        Step::Data("never"),
    ]));
    let (frames, _) = drain(&mut body);
    assert_eq!(frames, ["data", "error"]);
    assert_eq!(kinds(&seen), [EosKind::Error]);
    drop(body);
    assert_eq!(kinds(&seen), [EosKind::Error], "error then drop fires once");
}

#[test]
fn fires_cancelled_on_early_drop() {
    let (mut body, seen) = wrap(Scripted::new(vec![Step::Data("x"), Step::Data("y")]));
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    let _ = Pin::new(&mut body).poll_frame(&mut cx);
    assert!(kinds(&seen).is_empty());
    drop(body);
    assert_eq!(kinds(&seen), [EosKind::Cancelled]);
}

#[test]
fn forwards_is_end_stream_and_size_hint() {
    let (mut body, _seen) = wrap(Scripted::exact(vec![Step::Data("abc"), Step::Data("de")]));
    assert_eq!(body.size_hint().exact(), Some(5));
    assert!(!body.is_end_stream());
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    let _ = Pin::new(&mut body).poll_frame(&mut cx);
    assert_eq!(
        body.size_hint().exact(),
        Some(2),
        "size hint after a partial read"
    );
    let _ = Pin::new(&mut body).poll_frame(&mut cx);
    assert!(body.is_end_stream(), "is_end_stream forwarded");

    let (body, _seen) = wrap(Scripted::new(vec![Step::Data("abc")]));
    assert_eq!(body.size_hint().lower(), 1);
    assert_eq!(
        body.size_hint().upper(),
        Some(1234),
        "inexact hints forwarded"
    );
}

#[tokio::test]
async fn works_with_collect() {
    use http_body_util::BodyExt;
    let (body, seen) = wrap(Scripted::new(vec![
        Step::Data("hel"),
        Step::Pending,
        Step::Data("lo"),
        Step::Trailers,
    ]));
    let collected = body.collect().await.expect("body must not fail");
    assert_eq!(
        collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .unwrap(),
        "0"
    );
    assert_eq!(collected.to_bytes(), "hello");
    assert_eq!(kinds(&seen), [EosKind::Trailers]);
}

/// The same paths with the shared scripted body of `linkerd-http-test-util`.
mod with_mock_body {
    use super::*;
    use linkerd_http_test_util::{BoxError, MockBody};

    fn wrap(body: MockBody) -> (EosBody<MockBody, impl OnEos<BoxError>>, Seen) {
        let seen: Seen = Default::default();
        let slot = seen.clone();
        let body = EosBody::new(body, move |eos: Eos<'_, BoxError>| {
            let detail = eos
                .error()
                .and_then(|e| e.downcast_ref::<h2::Error>())
                .and_then(h2::Error::reason)
                .map(|r| format!("{r:?}"));
            slot.lock().unwrap().push((eos.kind(), detail));
        });
        (body, seen)
    }

    #[test]
    fn pending_then_error_by_reference() {
        let (mut body, seen) = wrap(
            MockBody::new()
                .pending()
                .data("a")
                .pending()
                .error(h2::Error::from(h2::Reason::CANCEL)),
        );
        let (frames, pendings) = drain(&mut body);
        assert_eq!(frames, ["data", "error"]);
        assert_eq!(pendings, 2);
        assert_eq!(
            *seen.lock().unwrap(),
            [(EosKind::Error, Some("CANCEL".to_owned()))],
            "the error reaches the callback by reference, its reason intact"
        );
    }

    #[test]
    fn exact_size_ends_on_last_data_and_forwards_hints() {
        let (mut body, seen) = wrap(
            MockBody::new()
                .data("abc")
                .pending()
                .data("de")
                .with_exact_size(5),
        );
        assert_eq!(body.size_hint().exact(), Some(5));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let _ = Pin::new(&mut body).poll_frame(&mut cx);
        assert!(seen.lock().unwrap().is_empty());
        assert_eq!(
            body.size_hint().exact(),
            Some(2),
            "hint after a partial read"
        );
        let _ = Pin::new(&mut body).poll_frame(&mut cx); // Pending
        let _ = Pin::new(&mut body).poll_frame(&mut cx);
        assert!(body.is_end_stream());
        assert_eq!(kinds(&seen), [EosKind::End], "ends on the last data frame");
    }

    #[test]
    fn empty_mock_fires_in_constructor_and_drop_fires_cancel() {
        let (_body, seen) = wrap(MockBody::new());
        assert_eq!(kinds(&seen), [EosKind::End]);
        let (body, seen) = wrap(MockBody::new().data("x").trailers(HeaderMap::new()));
        drop(body);
        assert_eq!(kinds(&seen), [EosKind::Cancelled]);
    }
}

/// Like an HTTP/2 upstream's body whose announced length has been read but whose
/// END_STREAM has not arrived: exact size 0, not at its end.
struct LengthDone(Option<&'static str>);

impl Body for LengthDone {
    type Data = Bytes;
    type Error = TestError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, TestError>>> {
        match self.0.take() {
            Some(d) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(d.as_bytes()))))),
            None => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.map_or(0, |d| d.len() as u64))
    }
}

#[test]
fn a_drop_after_every_announced_byte_is_an_end() {
    let seen: Seen = Default::default();
    let record = seen.clone();
    let mut body = EosBody::new(LengthDone(Some("abc")), move |eos: Eos<'_, TestError>| {
        record.lock().unwrap().push((eos.kind(), None));
    });
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(Pin::new(&mut body).poll_frame(&mut cx).is_ready());
    assert!(
        Pin::new(&mut body).poll_frame(&mut cx).is_pending(),
        "no END_STREAM yet"
    );
    assert!(kinds(&seen).is_empty());
    drop(body);
    assert_eq!(kinds(&seen), [EosKind::End], "complete by its length");
}
