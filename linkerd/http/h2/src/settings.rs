use hyper_util::rt::TokioTimer;
use std::{fmt, time::Duration};

/// The smallest `SETTINGS_MAX_FRAME_SIZE` RFC 9113 allows (and its initial value).
const MIN_FRAME_SIZE: u32 = 16_384;
/// The largest `SETTINGS_MAX_FRAME_SIZE` RFC 9113 allows.
const MAX_FRAME_SIZE: u32 = 16_777_215;
/// The largest flow-control window RFC 9113 allows.
const MAX_WINDOW: u32 = (1 << 31) - 1;

/// How HTTP/2 flow-control windows are sized.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FlowControl {
    /// Windows grow with the measured bandwidth-delay product (hyper's BDP estimator), from the
    /// protocol's 64 KiB. Good throughput on fast and slow links without a fixed memory
    /// reservation per stream.
    Adaptive,
    /// Fixed windows, in bytes (each at most 2^31 - 1).
    Fixed {
        /// `SETTINGS_INITIAL_WINDOW_SIZE`: what one stream may have in flight.
        stream: u32,
        /// The connection's window: what all streams together may have in flight.
        connection: u32,
    },
}

/// HTTP/2 PING keep-alive: detects a dead peer on an otherwise quiet connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct KeepAlive {
    /// How often a PING is sent.
    pub interval: Duration,
    /// How long to wait for its acknowledgement before closing the connection.
    pub timeout: Duration,
}

/// HTTP/2 settings for the proxy's server side (connections from clients).
///
/// Apply with [`apply_to_server`](Self::apply_to_server) (hyper's HTTP/2 server builder) or
/// [`apply_to_auto`](Self::apply_to_auto) (hyper-util's HTTP/1 + HTTP/2 auto builder). The
/// defaults are chosen for a proxy facing untrusted clients; see each field.
///
/// # Abuse protections
/// - **Rapid reset** (CVE-2023-44487): a client that opens streams and resets them before the
///   server accepts them gets `GOAWAY(ENHANCE_YOUR_CALM)` after
///   [`max_pending_accept_reset_streams`](Self::max_pending_accept_reset_streams) such streams
///   (h2's counter); streams the server had to reset because the client misbehaved are capped
///   by [`max_local_error_reset_streams`](Self::max_local_error_reset_streams) (RUSTSEC-2024-0003).
/// - **CONTINUATION flood** (CVE-2024-27316 family): h2 accepts at most
///   `max(5, 1.25 * max_header_list_size / max_frame_size)` CONTINUATION frames per header
///   block, then sends `GOAWAY(ENHANCE_YOUR_CALM)`; a header block decoding to more than
///   [`max_header_list_size`](Self::max_header_list_size) is refused, and a grossly oversized
///   one ends the connection.
/// - [`max_concurrent_streams`](Self::max_concurrent_streams) bounds the streams (and so the
///   request tasks) one connection can hold.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerSettings {
    /// Window sizing. Default: [`FlowControl::Adaptive`].
    pub flow_control: FlowControl,
    /// PING keep-alive. Default: every 10 s, 20 s to answer (hyper's default timeout).
    pub keep_alive: Option<KeepAlive>,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`. Default: 1,000 (hyper's is 200; a proxy
    /// multiplexes many clients' requests over few connections from other proxies). `None`:
    /// unlimited (not advised).
    pub max_concurrent_streams: Option<u32>,
    /// `SETTINGS_MAX_FRAME_SIZE`, 16,384 to 16,777,215. Default: 16,384 (the protocol's).
    pub max_frame_size: u32,
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`, in bytes of decoded headers. Default: 64 KiB
    /// (hyper's is 16 KiB; cookies and tokens in proxied traffic often need more).
    pub max_header_list_size: u32,
    /// Streams the client may reset before the server accepted them, before
    /// `GOAWAY(ENHANCE_YOUR_CALM)`: the rapid-reset guard. Default: 20 (h2's).
    pub max_pending_accept_reset_streams: usize,
    /// Streams the server may reset because of the client's protocol errors, before
    /// `GOAWAY(ENHANCE_YOUR_CALM)`. Default: 1,024 (hyper's). `None`: unlimited (not advised).
    pub max_local_error_reset_streams: Option<usize>,
    /// The most a stream may buffer for sending, in bytes (at most `u32::MAX`). Default:
    /// 400 KiB (hyper's).
    pub max_send_buf_size: usize,
    /// Advertise extended CONNECT (RFC 8441), for WebSockets over HTTP/2. Default: on.
    pub extended_connect: bool,
}

/// HTTP/2 settings for the proxy's client side (connections to upstreams).
///
/// Apply with [`apply_to_client`](Self::apply_to_client) (hyper's HTTP/2 client builder).
/// The client builder's `max_concurrent_streams` concerns server push, which hyper's client
/// refuses, so it is not here; extended CONNECT is the server's to advertise.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientSettings {
    /// Window sizing. Default: [`FlowControl::Adaptive`].
    pub flow_control: FlowControl,
    /// PING keep-alive. Default: every 10 s, 20 s to answer.
    pub keep_alive: Option<KeepAlive>,
    /// Whether keep-alive PINGs are also sent while no stream is open. Default: on (an idle
    /// pooled connection to an upstream that vanished is found before a request uses it).
    pub keep_alive_while_idle: bool,
    /// How many streams may be opened before the server's SETTINGS arrive. Default: 100
    /// (hyper's).
    pub initial_max_send_streams: usize,
    /// `SETTINGS_MAX_FRAME_SIZE`, 16,384 to 16,777,215. Default: 16,384.
    pub max_frame_size: u32,
    /// `SETTINGS_MAX_HEADER_LIST_SIZE` for responses. Default: 64 KiB.
    pub max_header_list_size: u32,
    /// Locally reset streams remembered (to ignore their late frames) at once. Default: 50
    /// (h2's).
    pub max_concurrent_reset_streams: usize,
    /// How long a locally reset stream is remembered. Default: 1 s (h2's).
    pub reset_stream_duration: Duration,
    /// Server-pushed streams reset before being accepted, before `GOAWAY(ENHANCE_YOUR_CALM)`.
    /// Default: 20.
    pub max_pending_accept_reset_streams: usize,
    /// Streams reset because of the upstream's protocol errors, before
    /// `GOAWAY(ENHANCE_YOUR_CALM)`. Default: 1,024. `None`: unlimited (not advised).
    pub max_local_error_reset_streams: Option<usize>,
    /// The most a stream may buffer for sending, in bytes (at most `u32::MAX`). Default:
    /// 1 MiB (hyper's client default).
    pub max_send_buf_size: usize,
}

/// A setting outside what RFC 9113 or hyper accept (hyper and h2 would panic on it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSettings {
    field: &'static str,
    why: &'static str,
}

// === impl KeepAlive ===

impl Default for KeepAlive {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(20),
        }
    }
}

// === impl ServerSettings ===

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            flow_control: FlowControl::Adaptive,
            keep_alive: Some(KeepAlive::default()),
            max_concurrent_streams: Some(1_000),
            max_frame_size: MIN_FRAME_SIZE,
            max_header_list_size: 64 * 1024,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: Some(1_024),
            max_send_buf_size: 400 * 1024,
            extended_connect: true,
        }
    }
}

impl ServerSettings {
    /// Checks every value against the protocol's and hyper's limits.
    ///
    /// # Errors
    /// The first field out of range.
    pub fn validate(&self) -> Result<(), InvalidSettings> {
        let Self {
            flow_control,
            keep_alive: _,
            max_concurrent_streams: _,
            max_frame_size,
            max_header_list_size: _,
            max_pending_accept_reset_streams: _,
            max_local_error_reset_streams: _,
            max_send_buf_size,
            extended_connect: _,
        } = self;
        validate_flow_control(*flow_control)?;
        validate_frame_size(*max_frame_size)?;
        validate_send_buf(*max_send_buf_size)
    }

    /// Applies every setting to hyper's HTTP/2 server builder, including a tokio timer when
    /// keep-alive is on (hyper panics without one).
    ///
    /// # Errors
    /// A value out of range ([`validate`](Self::validate)); the builder is left untouched.
    pub fn apply_to_server<E>(
        &self,
        builder: &mut hyper::server::conn::http2::Builder<E>,
    ) -> Result<(), InvalidSettings> {
        self.validate()?;
        // Destructured so that a new field fails to compile until it is applied here.
        let Self {
            flow_control,
            keep_alive,
            max_concurrent_streams,
            max_frame_size,
            max_header_list_size,
            max_pending_accept_reset_streams,
            max_local_error_reset_streams,
            max_send_buf_size,
            extended_connect,
        } = self;
        match *flow_control {
            FlowControl::Adaptive => builder.adaptive_window(true),
            FlowControl::Fixed { stream, connection } => builder
                .adaptive_window(false)
                .initial_stream_window_size(stream)
                .initial_connection_window_size(connection),
        };
        match keep_alive {
            Some(KeepAlive { interval, timeout }) => builder
                .timer(TokioTimer::new())
                .keep_alive_interval(*interval)
                .keep_alive_timeout(*timeout),
            None => builder.keep_alive_interval(None),
        };
        builder
            .max_concurrent_streams(*max_concurrent_streams)
            .max_frame_size(*max_frame_size)
            .max_header_list_size(*max_header_list_size)
            .max_pending_accept_reset_streams(*max_pending_accept_reset_streams)
            .max_local_error_reset_streams(*max_local_error_reset_streams)
            .max_send_buf_size(*max_send_buf_size);
        if *extended_connect {
            builder.enable_connect_protocol();
        }
        Ok(())
    }

    /// Applies every setting to the HTTP/2 part of hyper-util's auto (HTTP/1.1 + HTTP/2)
    /// server builder, including a tokio timer when keep-alive is on.
    ///
    /// # Errors
    /// A value out of range ([`validate`](Self::validate)); the builder is left untouched.
    pub fn apply_to_auto<E>(
        &self,
        builder: &mut hyper_util::server::conn::auto::Builder<E>,
    ) -> Result<(), InvalidSettings> {
        self.validate()?;
        let mut h2 = builder.http2();
        let Self {
            flow_control,
            keep_alive,
            max_concurrent_streams,
            max_frame_size,
            max_header_list_size,
            max_pending_accept_reset_streams,
            max_local_error_reset_streams,
            max_send_buf_size,
            extended_connect,
        } = self;
        match *flow_control {
            FlowControl::Adaptive => h2.adaptive_window(true),
            FlowControl::Fixed { stream, connection } => h2
                .adaptive_window(false)
                .initial_stream_window_size(stream)
                .initial_connection_window_size(connection),
        };
        match keep_alive {
            Some(KeepAlive { interval, timeout }) => h2
                .timer(TokioTimer::new())
                .keep_alive_interval(*interval)
                .keep_alive_timeout(*timeout),
            None => h2.keep_alive_interval(None),
        };
        h2.max_concurrent_streams(*max_concurrent_streams)
            .max_frame_size(*max_frame_size)
            .max_header_list_size(*max_header_list_size)
            .max_pending_accept_reset_streams(*max_pending_accept_reset_streams)
            .max_local_error_reset_streams(*max_local_error_reset_streams)
            .max_send_buf_size(*max_send_buf_size);
        if *extended_connect {
            h2.enable_connect_protocol();
        }
        Ok(())
    }
}

// === impl ClientSettings ===

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            flow_control: FlowControl::Adaptive,
            keep_alive: Some(KeepAlive::default()),
            keep_alive_while_idle: true,
            initial_max_send_streams: 100,
            max_frame_size: MIN_FRAME_SIZE,
            max_header_list_size: 64 * 1024,
            max_concurrent_reset_streams: 50,
            reset_stream_duration: Duration::from_secs(1),
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: Some(1_024),
            max_send_buf_size: 1024 * 1024,
        }
    }
}

impl ClientSettings {
    /// Checks every value against the protocol's and hyper's limits.
    ///
    /// # Errors
    /// The first field out of range.
    pub fn validate(&self) -> Result<(), InvalidSettings> {
        validate_flow_control(self.flow_control)?;
        validate_frame_size(self.max_frame_size)?;
        validate_send_buf(self.max_send_buf_size)
    }

    /// Applies every setting to hyper's HTTP/2 client builder, including a tokio timer when
    /// keep-alive is on.
    ///
    /// # Errors
    /// A value out of range ([`validate`](Self::validate)); the builder is left untouched.
    pub fn apply_to_client<E: Clone>(
        &self,
        builder: &mut hyper::client::conn::http2::Builder<E>,
    ) -> Result<(), InvalidSettings> {
        self.validate()?;
        // Destructured so that a new field fails to compile until it is applied here.
        let Self {
            flow_control,
            keep_alive,
            keep_alive_while_idle,
            initial_max_send_streams,
            max_frame_size,
            max_header_list_size,
            max_concurrent_reset_streams,
            reset_stream_duration,
            max_pending_accept_reset_streams,
            max_local_error_reset_streams,
            max_send_buf_size,
        } = self;
        match *flow_control {
            FlowControl::Adaptive => builder.adaptive_window(true),
            FlowControl::Fixed { stream, connection } => builder
                .adaptive_window(false)
                .initial_stream_window_size(stream)
                .initial_connection_window_size(connection),
        };
        match keep_alive {
            Some(KeepAlive { interval, timeout }) => builder
                .timer(TokioTimer::new())
                .keep_alive_interval(*interval)
                .keep_alive_timeout(*timeout),
            None => builder.keep_alive_interval(None),
        };
        builder
            .keep_alive_while_idle(*keep_alive_while_idle)
            .initial_max_send_streams(*initial_max_send_streams)
            .max_frame_size(*max_frame_size)
            .max_header_list_size(*max_header_list_size)
            .max_concurrent_reset_streams(*max_concurrent_reset_streams)
            .reset_stream_duration(*reset_stream_duration)
            .max_pending_accept_reset_streams(*max_pending_accept_reset_streams)
            .max_local_error_reset_streams(*max_local_error_reset_streams)
            .max_send_buf_size(*max_send_buf_size);
        Ok(())
    }
}

// === impl InvalidSettings ===

impl InvalidSettings {
    /// The offending field's name.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for InvalidSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid HTTP/2 setting {}: {}", self.field, self.why)
    }
}

impl std::error::Error for InvalidSettings {}

// === validation ===

fn validate_flow_control(flow: FlowControl) -> Result<(), InvalidSettings> {
    if let FlowControl::Fixed { stream, connection } = flow {
        if stream > MAX_WINDOW {
            return Err(InvalidSettings {
                field: "flow_control.stream",
                why: "a window is at most 2^31 - 1 bytes",
            });
        }
        if connection > MAX_WINDOW {
            return Err(InvalidSettings {
                field: "flow_control.connection",
                why: "a window is at most 2^31 - 1 bytes",
            });
        }
    }
    Ok(())
}

fn validate_frame_size(size: u32) -> Result<(), InvalidSettings> {
    if (MIN_FRAME_SIZE..=MAX_FRAME_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(InvalidSettings {
            field: "max_frame_size",
            why: "must be between 16,384 and 16,777,215",
        })
    }
}

fn validate_send_buf(size: usize) -> Result<(), InvalidSettings> {
    if u32::try_from(size).is_ok() {
        Ok(())
    } else {
        Err(InvalidSettings {
            field: "max_send_buf_size",
            why: "must fit in 32 bits",
        })
    }
}
