//! The assembled linkerd-http proxy: config, listener, layer stack, backends, admin server.
//!
//! `examples/proxy.rs` is a thin wrapper around [`main_with_args`].

pub mod backend;
pub mod cli;
pub mod config;
pub mod demo;
pub mod routes;
pub mod server;

/// A boxed error.
pub type BoxError = linkerd_http_classify::BoxError;

/// The body type of the proxy's stack.
pub type BoxBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, BoxError>;

/// The discovery module, re-exported for config validation.
pub(crate) use backend as discovery;
