//! HTTP/2 settings for a proxy, and the adapter that forwards upstream stream resets to
//! clients with the right reason.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use linkerd_http_h2::{
//!     H2ResetLayer, IncompleteBody, ResetDirection, ServerSettings, StreamReset, find_h2_reason,
//! };
//! use std::sync::{Arc, Mutex};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Settings for the client-facing server.
//! let mut server = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
//! ServerSettings::default().apply_to_server(&mut server).expect("the defaults are valid");
//!
//! // Upstream resets reach the client with the reason table's reason, and are counted.
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let record = {
//!     let seen = seen.clone();
//!     move |dir: ResetDirection, reason: h2::Reason| seen.lock().unwrap().push((dir, reason))
//! };
//! let upstream = ServiceBuilder::new()
//!     .layer(H2ResetLayer::with_hook(record))
//!     .service(service_fn(|req: Request<Full<Bytes>>| async move {
//!         if req.uri().path() == "/reset" {
//!             // What a hyper client returns when the upstream resets the stream.
//!             return Err(h2::Error::from(h2::Reason::PROTOCOL_ERROR));
//!         }
//!         // A body cut short: 4 bytes of the 10 announced.
//!         Ok(Response::builder()
//!             .header("content-length", "10")
//!             .body(Full::new(Bytes::from("abcd")))
//!             .unwrap())
//!     }));
//!
//! let err = upstream.clone().oneshot(Request::get("/reset").body(Full::default()).unwrap())
//!     .await
//!     .unwrap_err();
//! assert!(err.is::<StreamReset>());
//! // PROTOCOL_ERROR describes the upstream connection: the client sees INTERNAL_ERROR.
//! assert_eq!(find_h2_reason(&*err), Some(h2::Reason::INTERNAL_ERROR));
//!
//! let rsp = upstream.oneshot(Request::get("/short").body(Full::default()).unwrap())
//!     .await
//!     .unwrap();
//! let err = rsp.into_body().collect().await.unwrap_err();
//! assert!(err.is::<IncompleteBody>(), "a short body is an error, not a clean end");
//! assert_eq!(find_h2_reason(&*err), Some(h2::Reason::INTERNAL_ERROR));
//! assert_eq!(seen.lock().unwrap().len(), 4, "two resets, each inbound and outbound");
//! # }
//! ```
//!
//! # Configuration
//! [`ServerSettings`] (client-facing connections) and [`ClientSettings`] (upstream
//! connections) hold every HTTP/2 knob the proxy sets, with defaults chosen for a proxy
//! (documented per field). Apply them with [`ServerSettings::apply_to_server`] (hyper's
//! `server::conn::http2::Builder`), [`ServerSettings::apply_to_auto`] (the HTTP/2 part of
//! hyper-util's `server::conn::auto::Builder`) and [`ClientSettings::apply_to_client`]
//! (hyper's `client::conn::http2::Builder`). Each destructures its settings exhaustively, so a
//! new field cannot be forgotten, and validates values that hyper or h2 would panic on
//! ([`InvalidSettings`]). Extended CONNECT (RFC 8441) is advertised by default.
//!
//! # Abuse protections
//! Rapid reset (CVE-2023-44487) and CONTINUATION floods are handled by h2 under the limits
//! the settings set; see [`ServerSettings`] for the numbers. Both end the connection with
//! `GOAWAY(ENHANCE_YOUR_CALM)`; the crate's flood tests run a server in a subprocess and
//! check it, and that the server's memory stays bounded while another connection is served.
//!
//! # Stream resets (DESIGN.md section 5)
//! [`H2ResetLayer`] wraps each upstream response body in an [`UpstreamBody`] and maps the
//! errors of the response future. An upstream reset becomes a [`StreamReset`] whose chain
//! carries `h2::Error::from(reason)` with the reason the client must see
//! ([`client_reset_reason`]: `CANCEL`, `REFUSED_STREAM`, `ENHANCE_YOUR_CALM` and
//! `INTERNAL_ERROR` are forwarded, any other code becomes `INTERNAL_ERROR`); hyper's server
//! resets the client's stream with it even when outer layers wrap the error, as long as they
//! keep it in `source()` (or skip a single level, as `io::Error::new` does). A body whose
//! `content-length` was not met ends with [`IncompleteBody`] (client reason
//! `INTERNAL_ERROR`) instead of cleanly, since hyper reads an upstream `RST_STREAM(NO_ERROR)`
//! as a clean end. A body without a known length cut that way cannot be told from a complete
//! one. [`find_h2_reason`] (re-exported from `linkerd-http-classify`) finds the reason in a
//! chain.
//!
//! The hook ([`OnReset`]) is called for each reset seen: [`ResetDirection::Inbound`] with the
//! upstream's reason (not for a reset h2 made on this side, `h2::Error::is_library`: the
//! upstream sent none), then [`ResetDirection::Outbound`] with the client's, for
//! `http_stream_resets_total{direction, reason}`.
//!
//! # Errors
//! Every error is boxed ([`BoxError`](linkerd_http_classify::BoxError)). Errors carrying a
//! `ProxyError` or a timeout pass through unchanged (a stream-timeouts expiry keeps its
//! `CANCEL`); errors without an HTTP/2 reason (connection failures) pass through too.
//!
//! # Extensions
//! None read or written.
//!
//! # Readiness
//! `poll_ready` is forwarded (errors boxed).
//!
//! # Cancellation
//! Dropping the response future or the body drops the upstream's; nothing runs in the
//! background. A client that goes away is not an upstream reset and is not counted here.

mod body;
mod error;
mod hook;
mod layer;
mod settings;

pub use body::UpstreamBody;
pub use error::{IncompleteBody, StreamReset};
pub use hook::{NoopReset, OnReset, ResetDirection};
pub use layer::{H2Reset, H2ResetLayer, ResponseFuture};
pub use linkerd_http_classify::{client_reset_reason, find_h2_reason};
pub use settings::{ClientSettings, FlowControl, InvalidSettings, KeepAlive, ServerSettings};

#[cfg(test)]
mod tests;
