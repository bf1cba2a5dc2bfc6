use linkerd_http_classify::{IsTimeout, ProxyError};
use std::{error::Error, fmt, time::Duration};

macro_rules! timeout_error {
    (
        $(#[$doc:meta])*
        $name:ident, $proxy:ident, $display:literal
    ) => {
        $(#[$doc])*
        ///
        /// Its [`source()`](Error::source) is the matching [`ProxyError`], whose own source is
        /// `h2::Error::from(h2::Reason::CANCEL)`: `linkerd_http_classify::to_proxy_error`
        /// finds the former, and hyper, which walks the chain for an `h2::Error`, resets an
        /// HTTP/2 client's stream with `CANCEL`.
        #[derive(Clone, Debug)]
        pub struct $name {
            timeout: Duration,
            source: ProxyError,
        }

        impl $name {
            pub(crate) fn new(timeout: Duration) -> Self {
                Self {
                    timeout,
                    source: ProxyError::$proxy()
                        .with_source(h2::Error::from(h2::Reason::CANCEL)),
                }
            }

            /// The timeout that expired.
            pub fn timeout(&self) -> Duration {
                self.timeout
            }

            /// The [`ProxyError`] the client is answered with.
            pub fn proxy_error(&self) -> &ProxyError {
                &self.source
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, $display, self.timeout)
            }
        }

        impl Error for $name {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.source)
            }
        }

        impl IsTimeout for $name {}
    };
}

timeout_error! {
    /// The [`lifetime`](crate::StreamTimeouts::lifetime) of the stream expired (possibly
    /// shortened by `grpc-timeout`): `request timeout`, 504, `DEADLINE_EXCEEDED`.
    LifetimeTimeout, request_timeout, "stream lifetime of {:?} exceeded"
}

timeout_error! {
    /// No response headers arrived within
    /// [`response_headers`](crate::StreamTimeouts::response_headers) of the end of the request
    /// body: `response headers timeout`, 504, `DEADLINE_EXCEEDED`.
    ResponseHeadersTimeout, response_headers_timeout,
    "no response headers within {:?} of the request end"
}

timeout_error! {
    /// The response did not end within [`response_end`](crate::StreamTimeouts::response_end)
    /// of the end of the request body: `response timeout`, 504, `DEADLINE_EXCEEDED`.
    ResponseTimeout, response_timeout, "response not complete within {:?} of the request end"
}

timeout_error! {
    /// No frame went either way for [`idle`](crate::StreamTimeouts::idle): `idle timeout`,
    /// 504, `DEADLINE_EXCEEDED`.
    IdleTimeout, idle_timeout, "stream idle for {:?}"
}
