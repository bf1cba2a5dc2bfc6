//! Endpoint discovery: static addresses, or a DNS name re-resolved periodically through a
//! [`Resolve`] trait that tests replace. Discovery never yields an error: a failed lookup keeps
//! the last set.

use std::{
    collections::BTreeSet, future::Future, io, net::SocketAddr, pin::Pin, sync::Arc, time::Duration,
};
use tokio::sync::watch;

/// Resolves a `host:port` name to addresses.
pub trait Resolve: Send + Sync + 'static {
    /// Looks `target` up.
    fn resolve(
        &self,
        target: &str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'static>>;
}

/// The system resolver (`tokio::net::lookup_host`).
#[derive(Copy, Clone, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(
        &self,
        target: &str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'static>> {
        let target = target.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host(target).await?.collect()) })
    }
}

/// Splits `host:port`, checking the port.
pub fn split_host_port(target: &str) -> Option<(&str, u16)> {
    let (host, port) = target.rsplit_once(':')?;
    if host.is_empty() {
        return None;
    }
    Some((host, port.parse().ok()?))
}

/// Where a backend's endpoints come from.
#[derive(Clone)]
pub enum Discovery {
    /// A fixed set.
    Static(Vec<SocketAddr>),
    /// A DNS name, re-resolved every `refresh`.
    Dns {
        /// `host:port`.
        target: String,
        /// Refresh interval.
        refresh: Duration,
        /// The resolver.
        resolver: Arc<dyn Resolve>,
    },
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Static(a) => f.debug_tuple("Static").field(a).finish(),
            Self::Dns {
                target, refresh, ..
            } => f
                .debug_struct("Dns")
                .field("target", target)
                .field("refresh", refresh)
                .finish(),
        }
    }
}

impl Discovery {
    /// Starts discovery; the watch holds the current set. DNS discovery runs in a task that
    /// ends when every receiver is gone.
    pub fn spawn(self) -> watch::Receiver<BTreeSet<SocketAddr>> {
        match self {
            Self::Static(addrs) => {
                let (tx, rx) = watch::channel(addrs.into_iter().collect());
                // Keep the sender alive as long as a receiver exists, so the set never "ends".
                tokio::spawn(async move { tx.closed().await });
                rx
            }
            Self::Dns {
                target,
                refresh,
                resolver,
            } => {
                let (tx, rx) = watch::channel(BTreeSet::new());
                tokio::spawn(async move {
                    // The first lookup always notifies, even when it found nothing or failed:
                    // from then on the set is known (empty: `no endpoints` at once, DESIGN.md
                    // section 3), not "not resolved yet".
                    let mut first = true;
                    loop {
                        match resolver.resolve(&target).await {
                            Ok(addrs) => {
                                let set: BTreeSet<_> = addrs.into_iter().collect();
                                tx.send_if_modified(|cur| {
                                    if *cur == set && !first {
                                        false
                                    } else {
                                        *cur = set;
                                        true
                                    }
                                });
                            }
                            Err(error) => {
                                tracing::warn!(%target, %error, "DNS lookup failed; keeping the last endpoints");
                                if first {
                                    tx.send_modify(|_| {});
                                }
                            }
                        }
                        first = false;
                        tokio::select! {
                            _ = tokio::time::sleep(refresh) => {}
                            _ = tx.closed() => return,
                        }
                    }
                });
                rx
            }
        }
    }
}
