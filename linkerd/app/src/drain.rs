//! Graceful shutdown of the server's connections: once shutdown begins, every connection is
//! asked to finish (hyper's `graceful_shutdown`: HTTP/1 closes after the response in flight,
//! or at once when idle; HTTP/2 sends GOAWAY and serves its open streams), and
//! [`Drain::shutdown`] resolves when the last one has ended.
//!
//! hyper-util's `GracefulShutdown` does the same with a `watch` channel whose `changed()`
//! future each connection polls on every wake-up: about a hundred instructions per poll, three
//! polls per HTTP/1.1 request. Here a connection's poll reads one flag; its task's waker is
//! stored once per connection (again only if the task's waker changes), so the shutdown can
//! wake connections that are waiting for their peer.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Waker},
};
use tokio::sync::Notify;

/// The set of connections to drain at shutdown.
#[derive(Debug, Default)]
pub(crate) struct Drain(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    closing: AtomicBool,
    state: Mutex<State>,
    drained: Notify,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    live: usize,
    wakers: HashMap<u64, Waker>,
}

/// One connection's place in a [`Drain`], from its accept on: shutdown waits for it until
/// it is dropped.
#[derive(Debug)]
pub(crate) struct Entry {
    shared: Arc<Shared>,
    id: u64,
}

pin_project_lite::pin_project! {
    /// A connection future tracked by a [`Drain`]: asks the connection to finish once
    /// shutdown begins, and counts as live until dropped.
    pub(crate) struct Watched<C> {
        #[pin]
        conn: C,
        finish: fn(Pin<&mut C>),
        entry: Entry,
        waker: Option<Waker>,
        finishing: bool,
    }
}

impl Drain {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A place for a connection just accepted: it counts as live until the entry (or the
    /// future [`Entry::watch`] makes of it) is dropped.
    pub(crate) fn enter(&self) -> Entry {
        let id = {
            let mut state = self.0.state();
            state.live += 1;
            state.next_id += 1;
            state.next_id
        };
        Entry {
            shared: self.0.clone(),
            id,
        }
    }

    /// Asks every connection (those watched later too) to finish, and resolves when none is
    /// left.
    pub(crate) async fn shutdown(self) {
        self.0.closing.store(true, Ordering::SeqCst);
        let wakers: Vec<Waker> = self.0.state().wakers.drain().map(|(_, w)| w).collect();
        // Each woken connection sees the flag in its next poll.
        wakers.into_iter().for_each(Waker::wake);
        loop {
            let drained = self.0.drained.notified();
            tokio::pin!(drained);
            // Registered before the count is read, so a drop after the read still wakes it.
            drained.as_mut().enable();
            if self.0.state().live == 0 {
                return;
            }
            drained.await;
        }
    }
}

impl Entry {
    /// Tracks `conn`; `finish` asks it to end gracefully (called at most once, from its
    /// own poll).
    pub(crate) fn watch<C>(self, conn: C, finish: fn(Pin<&mut C>)) -> Watched<C> {
        Watched {
            conn,
            finish,
            entry: self,
            waker: None,
            finishing: false,
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        state.live -= 1;
        state.wakers.remove(&self.id);
        if state.live == 0 {
            drop(state);
            self.shared.drained.notify_waiters();
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every update is a single field change: a panic cannot leave the state half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }
}

impl<C: Future> Future for Watched<C> {
    type Output = C::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        if !*this.finishing {
            let shared = &this.entry.shared;
            let mut closing = shared.closing();
            if !closing && !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                let waker = cx.waker().clone();
                shared.state().wakers.insert(this.entry.id, waker.clone());
                *this.waker = Some(waker);
                // Shutdown may have taken the wakers just before this one went in: the flag,
                // set before they were taken, says so.
                closing = shared.closing();
            }
            if closing {
                *this.finishing = true;
                (this.finish)(this.conn.as_mut());
            }
        }
        this.conn.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::oneshot;

    /// A connection that ends when told to finish (or when `end` fires).
    struct Conn {
        finished: Arc<AtomicBool>,
        end: oneshot::Receiver<()>,
    }

    impl Future for Conn {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.finished.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            Pin::new(&mut self.end).poll(cx).map(|_| ())
        }
    }

    // The signature `Entry::watch` takes.
    #[allow(clippy::needless_pass_by_value)]
    fn finish(conn: Pin<&mut Conn>) {
        conn.finished.store(true, Ordering::SeqCst);
    }

    fn conn() -> (Conn, Arc<AtomicBool>, oneshot::Sender<()>) {
        let finished = Arc::new(AtomicBool::new(false));
        let (tx, end) = oneshot::channel();
        let conn = Conn {
            finished: finished.clone(),
            end,
        };
        (conn, finished, tx)
    }

    #[tokio::test]
    async fn shutdown_wakes_waiting_connections_and_waits_for_them() {
        let drain = Drain::new();
        let (a, a_finished, _a_end) = conn();
        let (b, b_finished, _b_end) = conn();
        let a = tokio::spawn(drain.enter().watch(a, finish));
        let b = tokio::spawn(drain.enter().watch(b, finish));
        // Both are polled once and wait on their peers.
        tokio::task::yield_now().await;
        tokio::time::timeout(Duration::from_secs(5), drain.shutdown())
            .await
            .expect("shutdown ends once both connections ended");
        assert!(a_finished.load(Ordering::SeqCst) && b_finished.load(Ordering::SeqCst));
        a.await.unwrap();
        b.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_waits_for_a_connection_not_polled_yet() {
        let drain = Drain::new();
        let (a, a_finished, _a_end) = conn();
        let watched = drain.enter().watch(a, finish);
        let shutdown = tokio::spawn(drain.shutdown());
        tokio::task::yield_now().await;
        assert!(
            !shutdown.is_finished(),
            "a live connection holds the shutdown"
        );
        // Its first poll sees the shutdown and finishes.
        watched.await;
        assert!(a_finished.load(Ordering::SeqCst));
        tokio::time::timeout(Duration::from_secs(5), shutdown)
            .await
            .expect("shutdown ends")
            .unwrap();
    }

    #[tokio::test]
    async fn connections_that_end_by_themselves_are_not_waited_for_nor_finished() {
        let drain = Drain::new();
        let (a, a_finished, a_end) = conn();
        let a = tokio::spawn(drain.enter().watch(a, finish));
        tokio::task::yield_now().await;
        a_end.send(()).unwrap();
        a.await.unwrap();
        assert!(!a_finished.load(Ordering::SeqCst));
        assert!(drain.0.state().wakers.is_empty(), "the waker is forgotten");
        tokio::time::timeout(Duration::from_secs(5), drain.shutdown())
            .await
            .expect("nothing to wait for");
    }
}
