use linkerd_http_classify::{BoxError, ProxyError, client_reset_reason, reason_name};
use std::{error::Error, fmt};

/// The upstream reset the stream: the client's stream is reset with the reason DESIGN.md
/// section 5 prescribes ([`client_reset_reason`]).
///
/// Its [`source()`](Error::source) is `ProxyError::reset(upstream)`, whose own source is
/// `h2::Error::from(client_reason)`: hyper, which walks the chain for the first `h2::Error`,
/// resets the client's stream with the client reason, and the reason sits one level below
/// this error so that even a wrapper that skips a level (as `io::Error::new` does) keeps it
/// reachable. The upstream's original error is kept for logs
/// ([`upstream_error`](Self::upstream_error)) but is not in the chain.
#[derive(Debug)]
pub struct StreamReset {
    upstream: h2::Reason,
    client: h2::Reason,
    source: ProxyError,
    cause: Option<BoxError>,
}

/// The upstream's body ended (cleanly, as hyper reports an upstream `RST_STREAM(NO_ERROR)`)
/// before the bytes its `content-length` announced.
///
/// The client's stream is reset with `INTERNAL_ERROR` (the reason table's mapping of
/// `NO_ERROR`), never ended cleanly, so the client cannot take the short body for a complete
/// one. Its `source()` is `ProxyError::reset(NO_ERROR)` carrying
/// `h2::Error::from(INTERNAL_ERROR)`.
#[derive(Debug)]
pub struct IncompleteBody {
    expected: u64,
    received: u64,
    source: ProxyError,
}

// === impl StreamReset ===

impl StreamReset {
    /// The error for an upstream reset with `upstream`, keeping the original error `cause`.
    pub fn new(upstream: h2::Reason, cause: Option<BoxError>) -> Self {
        let client = client_reset_reason(upstream);
        Self {
            upstream,
            client,
            source: ProxyError::reset(upstream).with_source(h2::Error::from(client)),
            cause,
        }
    }

    /// The reason the upstream reset the stream with.
    pub fn upstream_reason(&self) -> h2::Reason {
        self.upstream
    }

    /// The reason the client's stream is reset with.
    pub fn client_reason(&self) -> h2::Reason {
        self.client
    }

    /// The [`ProxyError`] (`RESET`) this maps to.
    pub fn proxy_error(&self) -> &ProxyError {
        &self.source
    }

    /// The error the upstream connection reported, if any.
    pub fn upstream_error(&self) -> Option<&(dyn Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }
}

impl fmt::Display for StreamReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "upstream reset the stream ({}); resetting the client's with {}",
            reason_name(self.upstream),
            reason_name(self.client)
        )
    }
}

impl Error for StreamReset {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

// === impl IncompleteBody ===

impl IncompleteBody {
    pub(crate) fn new(expected: u64, received: u64) -> Self {
        let client = client_reset_reason(h2::Reason::NO_ERROR);
        Self {
            expected,
            received,
            source: ProxyError::reset(h2::Reason::NO_ERROR).with_source(h2::Error::from(client)),
        }
    }

    /// The length the upstream announced.
    pub fn expected(&self) -> u64 {
        self.expected
    }

    /// The bytes that arrived.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The reason the client's stream is reset with (`INTERNAL_ERROR`).
    pub fn client_reason(&self) -> h2::Reason {
        client_reset_reason(h2::Reason::NO_ERROR)
    }

    /// The [`ProxyError`] (`RESET`) this maps to.
    pub fn proxy_error(&self) -> &ProxyError {
        &self.source
    }
}

impl fmt::Display for IncompleteBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "upstream body ended after {} of {} bytes",
            self.received, self.expected
        )
    }
}

impl Error for IncompleteBody {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}
