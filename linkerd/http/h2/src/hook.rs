/// Which way a stream reset went (the metric `direction` label, DESIGN.md section 6).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ResetDirection {
    /// Received from an upstream.
    Inbound,
    /// Sent (or about to be sent) to the client.
    Outbound,
}

/// Called for each stream reset an [`UpstreamBody`](crate::UpstreamBody) or
/// [`H2Reset`](crate::H2Reset) sees: once `Inbound` with the upstream's reason and once
/// `Outbound` with the reason chosen for the client.
///
/// Implemented by [`NoopReset`] and by closures `Fn(ResetDirection, h2::Reason)`.
pub trait OnReset {
    /// Records one reset.
    fn on_reset(&self, direction: ResetDirection, reason: h2::Reason);
}

/// An [`OnReset`] that records nothing (the default).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct NoopReset;

// === impl ResetDirection ===

impl ResetDirection {
    /// The lower-case metric label: `inbound` or `outbound`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

// === impl OnReset ===

impl OnReset for NoopReset {
    fn on_reset(&self, _: ResetDirection, _: h2::Reason) {}
}

impl<F> OnReset for F
where
    F: Fn(ResetDirection, h2::Reason),
{
    fn on_reset(&self, direction: ResetDirection, reason: h2::Reason) {
        self(direction, reason);
    }
}
