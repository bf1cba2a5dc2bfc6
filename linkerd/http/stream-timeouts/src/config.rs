use std::time::Duration;

/// The timeouts of one HTTP stream (layer configuration and request extension).
///
/// Every field is optional; `None` disables that timeout. `Some(Duration::ZERO)` is a timeout
/// that has already expired when it starts (a configuration's `0s` meaning "disabled" should
/// be mapped to `None` by whoever reads the configuration).
///
/// Given to [`StreamTimeoutsLayer::new`](crate::StreamTimeoutsLayer::new) as the default of
/// every request; a `StreamTimeouts` in a request's extensions replaces it for that request
/// (as a whole, not field by field) and is removed from the request by the layer, so a second
/// stream-timeouts layer further in uses its own configuration.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct StreamTimeouts {
    /// From the end of the request body to the response headers.
    ///
    /// Per attempt when the layer sits inside a retry layer. Fails with
    /// [`ResponseHeadersTimeout`](crate::ResponseHeadersTimeout).
    pub response_headers: Option<Duration>,
    /// From the end of the request body to the end of the response body.
    ///
    /// Fails with [`ResponseTimeout`](crate::ResponseTimeout).
    pub response_end: Option<Duration>,
    /// The longest time without a frame in either direction (request body frames, response
    /// headers, response body frames), over the whole stream including the wait for response
    /// headers.
    ///
    /// Fails with [`IdleTimeout`](crate::IdleTimeout).
    pub idle: Option<Duration>,
    /// An absolute deadline for the whole exchange (request body, response headers, response
    /// body), counted from the moment the layer is called: across retries when the layer sits
    /// outside a retry layer. A gRPC request's `grpc-timeout` can shorten it.
    ///
    /// Fails with [`LifetimeTimeout`](crate::LifetimeTimeout).
    pub lifetime: Option<Duration>,
}

// === impl StreamTimeouts ===

impl StreamTimeouts {
    /// No timeout at all (the same as `Default`).
    pub const fn new() -> Self {
        Self {
            response_headers: None,
            response_end: None,
            idle: None,
            lifetime: None,
        }
    }

    /// Sets [`response_headers`](Self::response_headers).
    #[must_use]
    pub const fn with_response_headers(mut self, timeout: Option<Duration>) -> Self {
        self.response_headers = timeout;
        self
    }

    /// Sets [`response_end`](Self::response_end).
    #[must_use]
    pub const fn with_response_end(mut self, timeout: Option<Duration>) -> Self {
        self.response_end = timeout;
        self
    }

    /// Sets [`idle`](Self::idle).
    #[must_use]
    pub const fn with_idle(mut self, timeout: Option<Duration>) -> Self {
        self.idle = timeout;
        self
    }

    /// Sets [`lifetime`](Self::lifetime).
    #[must_use]
    pub const fn with_lifetime(mut self, timeout: Option<Duration>) -> Self {
        self.lifetime = timeout;
        self
    }

    /// Whether no timeout is set.
    pub const fn is_empty(&self) -> bool {
        self.response_headers.is_none()
            && self.response_end.is_none()
            && self.idle.is_none()
            && self.lifetime.is_none()
    }
}
