//! Client connections' first write after a read waits one scheduler round.
//!
//! Under load the proxy's worker has many connections ready at once. Written as each request
//! completes, every response wakes its reader on another core, and a core that went idle in
//! between costs an interrupt (and, in a VM, an exit) to wake: the proxy's kernel time per
//! request is mostly that wake-up. Deferring the first write after a read to the back of the
//! run queue lets the other ready connections run first, so their responses leave close
//! together and a reader woken by the first finds the next ones waiting. Measured with
//! `benches/ab.sh` (HTTP/1.1, pinned as in `benches/load.sh`): about 10% less CPU per request,
//! the system time falling by more than the extra poll of the connection costs in user time.
//! When nothing else is ready the deferred write runs at the next poll, a few microseconds
//! later.
//!
//! Only the first write after a read is deferred: a long response, or a tunnel carrying data
//! one way, writes without waiting. Only HTTP/1 client connections defer. An HTTP/2
//! connection already writes the responses of its ready streams together; with hundreds of
//! stream tasks runnable, a connection sent to the back of the run queue after nearly every
//! read waited long enough to double the h2c p99 in two of the three `benches/load.sh` runs
//! made with it (110-122 ms, passthrough 59-67), and its CPU gain was within the noise of
//! full runs. Backend connections were tried too, with the same h2c tail.

use hyper::rt::{Read, ReadBufCursor, Write};
use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

/// An I/O wrapper deferring the first write after each read by one scheduler round (see
/// the module docs). Reads, flushes and shutdowns pass through.
#[derive(Debug)]
pub(crate) struct DeferredWrite<T> {
    inner: T,
    /// Whether writes are deferred at all.
    enabled: bool,
    /// A read completed since the last write was let through.
    armed: bool,
}

impl<T> DeferredWrite<T> {
    /// Defers the first write after each read when `enabled` (else passes everything through).
    pub(crate) fn new(inner: T, enabled: bool) -> Self {
        Self {
            inner,
            enabled,
            armed: false,
        }
    }

    /// Whether this write waits: the first after a read does, once. The task is woken at once,
    /// so it is polled again after the tasks already queued.
    fn defer(&mut self, cx: &Context<'_>) -> bool {
        if !self.armed {
            return false;
        }
        self.armed = false;
        cx.waker().wake_by_ref();
        true
    }
}

impl<T: Read + Unpin> Read for DeferredWrite<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            self.armed = self.enabled;
        }
        read
    }
}

impl<T: Write + Unpin> Write for DeferredWrite<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.defer(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.defer(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::DeferredWrite;
    use hyper::rt::{Read, ReadBuf, Write};
    use hyper_util::rt::TokioIo;
    use std::{
        pin::Pin,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::{Context, Poll, Wake, Waker},
    };

    /// Counts wake-ups.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn read_once<T: Read + Unpin>(io: &mut T, cx: &mut Context<'_>) -> usize {
        let mut storage = [std::mem::MaybeUninit::<u8>::uninit(); 64];
        let mut buf = ReadBuf::uninit(&mut storage);
        match Pin::new(io).poll_read(cx, buf.unfilled()) {
            Poll::Ready(Ok(())) => buf.filled().len(),
            other => panic!("read: {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_first_write_after_a_read_waits_one_wake_up() {
        let (ours, theirs) = tokio::io::duplex(1024);
        let mut io = DeferredWrite::new(TokioIo::new(ours), true);
        let mut peer = TokioIo::new(theirs);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);

        // Before any read, writes go straight through.
        assert!(matches!(
            Pin::new(&mut io).poll_write(&mut cx, b"hello"),
            Poll::Ready(Ok(5))
        ));
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "no wake-up");

        // A read arms the wrapper: the next write (plain or vectored) waits once and wakes
        // the task, then goes through; the one after it does not wait.
        assert!(matches!(
            Pin::new(&mut peer).poll_write(&mut cx, b"request"),
            Poll::Ready(Ok(7))
        ));
        assert_eq!(read_once(&mut io, &mut cx), 7);
        let bufs = [std::io::IoSlice::new(b"wor"), std::io::IoSlice::new(b"ld")];
        assert!(
            Pin::new(&mut io)
                .poll_write_vectored(&mut cx, &bufs)
                .is_pending()
        );
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken to run again");
        assert!(matches!(
            Pin::new(&mut io).poll_write_vectored(&mut cx, &bufs),
            Poll::Ready(Ok(5))
        ));
        assert!(matches!(
            Pin::new(&mut io).poll_write(&mut cx, b"!"),
            Poll::Ready(Ok(1))
        ));
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "one deferral per read");

        // The peer got every byte, in order.
        let mut got = Vec::new();
        while got.len() < 11 {
            let mut storage = [std::mem::MaybeUninit::<u8>::uninit(); 64];
            let mut buf = ReadBuf::uninit(&mut storage);
            match Pin::new(&mut peer).poll_read(&mut cx, buf.unfilled()) {
                Poll::Ready(Ok(())) => got.extend_from_slice(buf.filled()),
                other => panic!("peer read: {other:?}"),
            }
        }
        assert_eq!(got, b"helloworld!");
    }

    #[tokio::test]
    async fn disabled_it_never_defers() {
        let (ours, theirs) = tokio::io::duplex(1024);
        let mut io = DeferredWrite::new(TokioIo::new(ours), false);
        let mut peer = TokioIo::new(theirs);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            Pin::new(&mut peer).poll_write(&mut cx, b"request"),
            Poll::Ready(Ok(7))
        ));
        assert_eq!(read_once(&mut io, &mut cx), 7);
        assert!(matches!(
            Pin::new(&mut io).poll_write(&mut cx, b"response"),
            Poll::Ready(Ok(8))
        ));
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "no wake-up");
    }

    proptest::proptest! {
        /// Bytes cross the wrapper unchanged in both directions, whatever the chunking and
        /// however reads and writes interleave.
        #[test]
        fn bytes_arrive_identical_whatever_the_chunking(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 1..300), 1..20),
            replies in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 1..300), 1..20),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let (ours, mut theirs) = tokio::io::duplex(256);
                let io = TokioIo::new(DeferredWrite::new(TokioIo::new(ours), true));
                let (mut read_half, mut write_half) = tokio::io::split(io);
                let sent: Vec<u8> = chunks.concat();
                let replied: Vec<u8> = replies.concat();
                let (sent_len, replied_len) = (sent.len(), replied.len());
                let peer = tokio::spawn(async move {
                    let (mut r, mut w) = tokio::io::split(&mut theirs);
                    let writer = async {
                        for c in &chunks {
                            w.write_all(c).await.expect("peer write");
                        }
                    };
                    let reader = async {
                        let mut got = vec![0; replied_len];
                        r.read_exact(&mut got).await.expect("peer read");
                        got
                    };
                    tokio::join!(writer, reader).1
                });
                let writer = async {
                    for c in &replies {
                        write_half.write_all(c).await.expect("write");
                        write_half.flush().await.expect("flush");
                    }
                };
                let reader = async {
                    let mut got = vec![0; sent_len];
                    read_half.read_exact(&mut got).await.expect("read");
                    got
                };
                let ((), got) = tokio::join!(writer, reader);
                assert_eq!(got, sent, "client to proxy");
                assert_eq!(peer.await.expect("peer"), replied, "proxy to client");
            });
        }
    }
}
