#![doc = include_str!("../README.md")]

pub use linkerd_exp_backoff as exp_backoff;
pub use linkerd_http_body_eos as body_eos;
pub use linkerd_http_classify as classify;
