//! Tunnels: the byte copy between two upgraded connections, and their tracking for shutdown.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::{fmt, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::watch,
};

/// A shared handle on the tunnels a set of [`Upgrade`](crate::Upgrade) services started.
///
/// Clone it into the [`UpgradeLayer`](crate::UpgradeLayer) and keep a clone for graceful
/// shutdown: [`drain`](Self::drain) waits a bounded time for open tunnels to end and then
/// closes the rest.
///
/// # Example
///
/// ```
/// use linkerd_http_upgrade::{Tunnels, UpgradeLayer};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let tunnels = Tunnels::new();
/// let layer = UpgradeLayer::new(tunnels.clone());
/// # drop(layer);
/// // ... serve connections with `layer` in the stack; then, on SIGTERM:
/// let closed = tunnels.drain(Duration::from_secs(10)).await;
/// assert_eq!(closed, 0, "no tunnel was open");
/// # }
/// ```
#[derive(Clone)]
pub struct Tunnels {
    state: Arc<watch::Sender<State>>,
}

#[derive(Copy, Clone, Debug, Default)]
struct State {
    active: usize,
    closing: bool,
}

/// Counts one tunnel while alive.
struct Guard {
    state: Arc<watch::Sender<State>>,
}

// === impl Tunnels ===

impl Tunnels {
    /// A handle with no tunnel open.
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: Arc::new(watch::Sender::new(State::default())),
        }
    }

    /// How many tunnels are open (counted from the upstream's `101`/`2xx` answer until both
    /// directions of the copy ended).
    #[must_use]
    pub fn active(&self) -> usize {
        self.state.borrow().active
    }

    /// Resolves once no tunnel is open.
    ///
    /// # Cancellation
    ///
    /// Cancel safe: dropping the future has no effect.
    pub async fn idle(&self) {
        let mut rx = self.state.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail.
        let _ = rx.wait_for(|s| s.active == 0).await;
    }

    /// Closes every open tunnel now (both connections of each), and every tunnel started
    /// afterwards as soon as it starts.
    pub fn close_all(&self) {
        self.state.send_modify(|s| s.closing = true);
    }

    /// Waits up to `timeout` for the open tunnels to end, then closes the rest with
    /// [`close_all`](Self::close_all). Returns how many had to be closed.
    ///
    /// # Cancellation
    ///
    /// Dropping the future before `timeout` closes nothing.
    pub async fn drain(&self, timeout: Duration) -> usize {
        if tokio::time::timeout(timeout, self.idle()).await.is_ok() {
            return 0;
        }
        let left = self.active();
        self.close_all();
        left
    }

    /// Starts a tunnel between the two upgrades, counted until it ends.
    pub(crate) fn spawn(&self, server: OnUpgrade, client: OnUpgrade) {
        self.state.send_modify(|s| s.active += 1);
        let guard = Guard {
            state: self.state.clone(),
        };
        let mut closing = self.state.subscribe();
        tokio::spawn(async move {
            let run = async {
                let (server, client) = futures_util::future::try_join(server, client).await?;
                let mut server = TokioIo::new(server);
                let mut client = TokioIo::new(client);
                copy(&mut server, &mut client).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            };
            tokio::select! {
                res = run => match res {
                    Ok(()) => tracing::debug!("tunnel closed"),
                    Err(error) => tracing::debug!(%error, "tunnel failed"),
                },
                _ = closing.wait_for(|s| s.closing) => tracing::debug!("tunnel closed by shutdown"),
            }
            drop(guard);
        });
    }
}

impl Default for Tunnels {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = *self.state.borrow();
        f.debug_struct("Tunnels")
            .field("active", &s.active)
            .field("closing", &s.closing)
            .finish()
    }
}

// === impl Guard ===

impl Drop for Guard {
    fn drop(&mut self) {
        self.state.send_modify(|s| s.active -= 1);
    }
}

/// Copies bytes both ways until both directions reached end of stream.
///
/// An end of stream read from one side is passed on by shutting down the other side's write
/// half (TCP FIN, or HTTP/2 END_STREAM), and the opposite direction keeps flowing
/// (half-close). The first error on either side ends the copy; the caller then drops both
/// connections, which closes them (HTTP/2 streams are reset).
pub(crate) async fn copy<A, B>(a: &mut A, b: &mut B) -> std::io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::io::copy_bidirectional(a, b).await
}
