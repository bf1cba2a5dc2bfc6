//! HTTP/2 settings for a proxy.
