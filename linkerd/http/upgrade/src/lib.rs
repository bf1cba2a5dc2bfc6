//! HTTP/1.1 Upgrade and CONNECT tunnels, HTTP/2 extended CONNECT, hop-by-hop header removal
//! and HTTP/1 carried over HTTP/2 between proxies, as Tower middleware.
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Empty;
//! use bytes::Bytes;
//! use linkerd_http_upgrade::{Tunnels, UpgradeLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let tunnels = Tunnels::new();
//! let svc = ServiceBuilder::new()
//!     .layer(UpgradeLayer::new(tunnels.clone()))
//!     .service(service_fn(|req: Request<Empty<Bytes>>| async move {
//!         // The backend never sees hop-by-hop headers, and always sees one authority.
//!         assert!(req.headers().get("x-foo").is_none());
//!         assert_eq!(req.uri(), "http://example.com/a");
//!         Ok::<_, std::convert::Infallible>(Response::new(Empty::<Bytes>::new()))
//!     }));
//!
//! let req = Request::get("/a")
//!     .header("host", "example.com")
//!     .header("connection", "close, x-foo")
//!     .header("x-foo", "hop-by-hop")
//!     .body(Empty::new())
//!     .unwrap();
//! let rsp = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(rsp.status(), StatusCode::OK);
//!
//! // A non-CONNECT request in authority-form cannot be proxied.
//! let req = Request::get("example.com:80").header("host", "example.com")
//!     .body(Empty::new()).unwrap();
//! let rsp = svc.oneshot(req).await.unwrap();
//! assert_eq!(rsp.status(), StatusCode::BAD_REQUEST);
//! assert_eq!(
//!     rsp.headers()["l5d-proxy-error"],
//!     "bad request: authority-form target is only valid for CONNECT",
//! );
//! # }
//! ```
//!
//! # What [`Upgrade`] does to every request
//!
//! - **Target checks** (RFC 9112 section 3.2): a `CONNECT` must be authority-form with a port
//!   (RFC 9110 section 9.3.6); another method in authority-form, `*` on anything but
//!   `OPTIONS`, an HTTP/1.1 request without exactly one valid `Host` are answered `400` with
//!   `l5d-proxy-error: bad request: <why>` (through
//!   [`ProxyError::bad_request`](linkerd_http_classify::ProxyError::bad_request), in the
//!   client's form: gRPC clients get trailers-only `INVALID_ARGUMENT`).
//! - **One authority**: an absolute-form target keeps its authority and `Host` is replaced
//!   by it (RFC 9112 section 3.2.2; marked with the [`AbsoluteForm`] extension); an
//!   origin-form target gets scheme `http` and the `Host` authority, so the router and an
//!   HTTP/2 upstream (which needs `:scheme` and `:authority`) see the same name. Requests sent
//!   to an HTTP/1 upstream through `hyper::client::conn` (which writes the URI it is given)
//!   should go through [`to_origin_form`] first; hyper-util's legacy client does that itself.
//! - **Userinfo** in the target (`http://user:pw@host/`, `:authority: user@host`) is answered
//!   `400` (RFC 9110 section 4.2.4: a recipient should treat it as an error).
//! - **Dot segments** (`.`, `..`, also written `%2e`) are removed from the path (RFC 3986
//!   section 5.2.4), so routing and the upstream see the path the upstream would resolve:
//!   `/public/../admin` goes on as `/admin`.
//! - **Hop-by-hop headers** (RFC 9110 section 7.6.1) are removed from requests and responses:
//!   `Connection` and the headers it names, `Keep-Alive`, `Proxy-Connection`, `TE` unless it
//!   asks for `trailers`, `Transfer-Encoding`, `HTTP2-Settings`, and `Upgrade` unless the
//!   message is upgrading (see [`strip_hop_by_hop`]). A `2xx` answer to `CONNECT` also loses
//!   `Content-Length` (RFC 9110 section 9.3.6).
//! - **gRPC over HTTP/1.1**: an answer to a gRPC request (`content-type: application/grpc*`)
//!   from an HTTP/1.1 client that accepts trailers (`te: trailers`) declares gRPC's
//!   trailers (`Trailer: grpc-status, grpc-message, grpc-status-details-bin`) when it
//!   declares none, has no `Content-Length` and no `grpc-status` among its headers: an
//!   HTTP/2 upstream need not declare them, and hyper's HTTP/1 server sends only declared
//!   trailers.
//! - **`h2c`** (RFC 7540 section 3.2, obsoleted by RFC 9113 section 3.1): an upgrade to
//!   `h2c` is not forwarded; the request goes on as a plain request without it. `Upgrade` in
//!   an HTTP/1.0 request is ignored (RFC 9110 section 7.8).
//!
//! # Tunnels
//!
//! An HTTP/1.1 upgrade (`Upgrade` + `Connection: upgrade`, RFC 9110 section 7.8) or a
//! `CONNECT` is forwarded to the inner service, which reaches the routed backend: the proxy
//! never dials a CONNECT target itself. When the backend answers `101` (upgrade) or `2xx`
//! (CONNECT), both connections are taken over with hyper's upgrade API and bytes are copied
//! both ways. An end of stream in one direction is passed on (TCP FIN, or HTTP/2
//! `END_STREAM`) while the other direction keeps flowing; an error on either side closes both.
//! Any other answer is an ordinary response.
//!
//! An HTTP/2 extended CONNECT (RFC 8441; the hyper server needs `enable_connect_protocol`)
//! is forwarded as the equivalent HTTP/1.1 upgrade (RFC 8441 section 5): `GET` with
//! `Upgrade: <:protocol>`, and for WebSocket a generated `Sec-WebSocket-Key`. The backend's
//! `101` must carry the matching `Sec-WebSocket-Accept` (RFC 6455 section 4.2.2), else the
//! client gets `502` `upstream cannot tunnel`; the HTTP/2 client is answered `200`.
//!
//! So the inner service always sees tunnels in HTTP/1.1 form. For an HTTP/2 upstream, put
//! [`ExtendedConnect`] over its client: it sends an upgrade as extended CONNECT when the
//! upstream advertises it ([`ConnectProtocolFlag`], kept up to date by
//! [`WatchConnectProtocol`]), and answers `502` `upstream cannot tunnel` otherwise.
//!
//! Tunnels are counted in a shared [`Tunnels`] handle: graceful shutdown calls
//! [`Tunnels::drain`] to wait for them for a bounded time and close the rest.
//!
//! # Orig-proto
//!
//! [`OrigProtoUpgrade`] (sending proxy) and [`OrigProtoDowngrade`] (receiving proxy) carry
//! HTTP/1.x requests over one multiplexed HTTP/2 connection between two proxies, recording
//! the original version and absolute-form in the [`L5D_ORIG_PROTO`] header, which the
//! receiving side removes before the application sees the request and the sending side
//! removes from responses. HTTP/2 resets and connection failures become `502` for the HTTP/1
//! client.
//!
//! # Requirements on the stack
//!
//! - The server must keep hyper's `OnUpgrade` in the request extensions: HTTP/1.1 connections
//!   served with `serve_connection_with_upgrades` (or hyper-util's auto builder with
//!   upgrades), HTTP/2 with `enable_connect_protocol` for extended CONNECT.
//! - The inner service's response to a tunnel request must be the upstream hyper client's
//!   response, carrying its `OnUpgrade` extension (hyper's HTTP/1 client connections driven
//!   with `.with_upgrades()`, or hyper's HTTP/2 client for CONNECT); layers between may wrap
//!   the body but must keep the extensions. A `101`/`2xx` tunnel answer without it, or a tunnel
//!   request without the server's `OnUpgrade`, is answered `500` `internal error`.
//! - A tokio runtime: each tunnel runs in its own spawned task.
//!
//! # Configuration
//!
//! [`UpgradeLayer::new`] takes the [`Tunnels`] handle; nothing else is configurable.
//!
//! # Errors
//!
//! [`Upgrade`] and [`ExtendedConnect`] add no error: they answer with responses (`400`,
//! `500`, `502`) built by `linkerd-http-classify` and keep the inner service's error type.
//! Tunnel failures after the `101`/`2xx` are logged at debug level and close both sides.
//! [`OrigProtoUpgrade`] returns [`BoxError`](linkerd_http_classify::BoxError).
//!
//! # Readiness
//!
//! Every service forwards `poll_ready` to its inner service. A request answered locally
//! (`400`, `502`) does not use the inner service's readiness.
//!
//! # Cancellation
//!
//! Dropping a response future drops the inner call; no tunnel has started yet then. A
//! started tunnel is independent of the request: it ends when both directions have ended,
//! when either side fails, or when [`Tunnels::close_all`] / [`Tunnels::drain`] closes it.
//!
//! # Extensions
//!
//! | type | read | written |
//! | --- | --- | --- |
//! | [`Protocol`](linkerd_http_classify::Protocol) (request) | the form of error answers (derived from the request when absent) | — |
//! | `hyper::upgrade::OnUpgrade` (request and response) | taken to start a tunnel | — |
//! | `hyper::ext::Protocol` (request) | HTTP/2 extended CONNECT `:protocol` (removed) | by [`ExtendedConnect`] |
//! | [`AbsoluteForm`] (request) | [`to_origin_form`], [`OrigProtoUpgrade`] | [`Upgrade`], [`OrigProtoDowngrade`] |
//!
//! # Allocation
//!
//! An origin-form HTTP/1 request costs one allocation to build its URI authority from
//! `Host`; `Host` is rewritten (one allocation) only when it disagrees with the authority.
//! A `Connection` header naming other headers costs one small vector.

mod authority;
mod extended_connect;
mod headers;
mod orig_proto;
mod service;
mod tunnel;
mod websocket;

pub use authority::{AbsoluteForm, to_origin_form};
pub use extended_connect::{
    ConnectProtocolFlag, ExtendedConnect, ExtendedConnectFuture, ExtendedConnectLayer,
    WatchConnectProtocol,
};
pub use headers::strip_hop_by_hop;
pub use orig_proto::{
    L5D_ORIG_PROTO, OrigProtoDowngrade, OrigProtoDowngradeFuture, OrigProtoDowngradeLayer,
    OrigProtoUpgrade, OrigProtoUpgradeFuture, OrigProtoUpgradeLayer,
};
pub use service::{ResponseFuture, Upgrade, UpgradeLayer};
pub use tunnel::Tunnels;
pub use websocket::websocket_accept;

#[cfg(test)]
mod tests;
