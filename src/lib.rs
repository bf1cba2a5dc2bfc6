#![doc = include_str!("../README.md")]

pub use linkerd_exp_backoff as exp_backoff;
pub use linkerd_http_access_log as access_log;
pub use linkerd_http_body_eos as body_eos;
pub use linkerd_http_classify as classify;
pub use linkerd_http_h2 as h2;
pub use linkerd_http_metrics as metrics;
pub use linkerd_http_prom as prom;
pub use linkerd_http_retry as retry;
pub use linkerd_http_route as route;
pub use linkerd_http_stream_timeouts as stream_timeouts;
pub use linkerd_http_upgrade as upgrade;
