//! `ReplayBody` against the plain body it wraps, over a 1 MiB request in 16 KiB chunks:
//! time, allocations and bytes copied per request (counted by `stats_alloc`, printed before
//! the criterion runs as absolute figures).

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body::{Body, Frame, SizeHint};
use linkerd_http_retry::ReplayBody;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::{
    alloc::System,
    convert::Infallible,
    hint::black_box,
    pin::Pin,
    task::{Context, Poll, Waker},
};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const TOTAL: usize = 1024 * 1024;
const CHUNK: usize = 16 * 1024;

/// A body of pre-made `Bytes` chunks, as hyper's `Incoming` hands them out.
struct Chunks {
    chunks: Vec<Bytes>,
    next: usize,
    left: u64,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let Some(chunk) = self.chunks.get(self.next).cloned() else {
            return Poll::Ready(None);
        };
        self.next += 1;
        self.left -= chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

fn source() -> Vec<Bytes> {
    let data = Bytes::from(vec![0xa5u8; TOTAL]);
    (0..TOTAL / CHUNK)
        .map(|i| data.slice(i * CHUNK..(i + 1) * CHUNK))
        .collect()
}

fn body(chunks: &[Bytes]) -> Chunks {
    Chunks {
        chunks: chunks.to_vec(),
        next: 0,
        left: TOTAL as u64,
    }
}

/// Reads `body` to its end; returns the data chunks.
fn drain<B>(mut body: B, out: &mut Vec<Bytes>)
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    // Bounded: the body has TOTAL / CHUNK frames.
    for _ in 0..=TOTAL / CHUNK + 1 {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    out.push(data);
                }
            }
            Poll::Ready(None) => return,
            Poll::Ready(Some(Err(e))) => panic!("bench body failed: {e:?}"),
            Poll::Pending => panic!("bench bodies are never pending"),
        }
    }
}

fn replay_twice(chunks: &[Bytes], out: &mut Vec<Bytes>) {
    let first = ReplayBody::new(body(chunks), TOTAL);
    let second = first.try_clone().expect("replayable");
    drain(first, out);
    drain(second, out);
}

fn copied(source: &[Bytes], read: &[Bytes]) -> usize {
    read.iter()
        .filter(|c| !source.iter().any(|s| s.as_ptr() == c.as_ptr()))
        .map(Bytes::len)
        .sum()
}

type Case<'a> = (&'a str, &'a dyn Fn(&mut Vec<Bytes>));

fn report(chunks: &[Bytes]) {
    let mut out = Vec::with_capacity(2 * TOTAL / CHUNK);
    let cases: [Case<'_>; 4] = [
        ("plain body", &|out| drain(body(chunks), out)),
        ("ReplayBody::passthrough", &|out| {
            drain(ReplayBody::passthrough(body(chunks)), out);
        }),
        ("ReplayBody first attempt", &|out| {
            drain(ReplayBody::new(body(chunks), TOTAL), out);
        }),
        ("ReplayBody first attempt + replay", &|out| {
            replay_twice(chunks, out);
        }),
    ];
    eprintln!("per 1 MiB request in 16 KiB chunks:");
    for (name, run) in cases {
        out.clear();
        let region = Region::new(GLOBAL);
        run(&mut out);
        let stats = region.change();
        let read: usize = out.iter().map(Bytes::len).sum();
        eprintln!(
            "  {name:<36} {:>3} allocations, {:>7} bytes allocated, {:>7} of {read} bytes copied",
            stats.allocations + stats.reallocations,
            stats.bytes_allocated,
            copied(chunks, &out),
        );
    }
}

fn bench(c: &mut Criterion) {
    let chunks = source();
    report(&chunks);
    let mut out = Vec::with_capacity(2 * TOTAL / CHUNK);
    let mut group = c.benchmark_group("replay_1MiB_16KiB_chunks");
    group.throughput(Throughput::Bytes(TOTAL as u64));
    group.bench_function("plain_body", |b| {
        b.iter(|| {
            out.clear();
            drain(body(black_box(&chunks)), &mut out);
        });
    });
    group.bench_function("replay_body_first_attempt", |b| {
        b.iter(|| {
            out.clear();
            drain(ReplayBody::new(body(black_box(&chunks)), TOTAL), &mut out);
        });
    });
    group.bench_function("replay_body_first_attempt_and_replay", |b| {
        b.iter(|| {
            out.clear();
            replay_twice(black_box(&chunks), &mut out);
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
