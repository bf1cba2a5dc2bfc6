//! Scripted bodies, real HTTP servers and clients for the tests of the `linkerd-http` crates.
//!
//! ```
//! use linkerd_http_test_util::{HttpClient, TestServer, collect};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // A backend on 127.0.0.1:<ephemeral>, speaking HTTP/1.1 and h2c; stopped when dropped.
//! let backend = TestServer::backend().await.expect("bind");
//! let mut client = HttpClient::http2(backend.addr()).await.expect("connect");
//! let req = http::Request::get("/slow")
//!     .header("x-test-status", "503")
//!     .header("x-test-delay-ms", "10")
//!     .body(http_body_util::Empty::<bytes::Bytes>::new())
//!     .unwrap();
//! let rsp = client.send(req).await.expect("response");
//! assert_eq!(rsp.status(), 503, "the backend answers the status it was asked for");
//! assert_eq!(rsp.headers()["x-backend-version"], "HTTP/2.0");
//! collect(rsp.into_body()).await.expect("body");
//! assert_eq!(backend.request_count(), 1);
//! assert_eq!(backend.requests()[0].uri.path(), "/slow");
//! # }
//! ```
//!
//! # Contents
//!
//! - [`MockBody`]: a body that plays a script of data, trailers, errors, `Pending` and timed
//!   waits, with configurable `is_end_stream`/`size_hint`, for poll-level tests of body
//!   wrappers and as a request body. [`collect`] / [`collect_until_error`] read any body to
//!   its end; [`h2_reason`] finds an HTTP/2 reset reason in an error chain.
//! - [`TestServer`]: a real server on `127.0.0.1:0` ([`ServerProtocol`]: HTTP/1.1 + h2c
//!   auto-detected, HTTP/1.1 only, or HTTP/2 only), aborted when dropped. Either the scripted
//!   backend below ([`TestServer::backend`]) or any handler closure ([`TestServer::serve`]).
//!   It counts connections and requests; the backend also records each request in full
//!   ([`ReceivedRequest`]).
//! - [`HttpClient`]: one hyper `client::conn` connection (HTTP/1.1 or HTTP/2 prior
//!   knowledge). [`H2Client`]: a raw `h2` connection, to see RST_STREAM reasons and trailers
//!   ([`H2Response`]).
//!
//! # The backend
//!
//! [`TestServer::backend`] reads each request body in full, records the request, then answers
//! as the request's `x-test-*` headers ask (names in [`header`]); by default it echoes.
//!
//! | request header | effect |
//! | --- | --- |
//! | `x-test-status: 503` | response status (default 200) |
//! | `x-test-delay-ms: 50` | wait before the response headers (after reading the request body) |
//! | `x-test-body-len: 1000` | body of 1000 bytes of [`body_pattern`] instead of the echo |
//! | `x-test-drip: 5,100,20` | body of 5 data frames of 100 pattern bytes, each after a 20 ms wait |
//! | `x-test-trailers: a=1,b=2` | trailers after the body (and a `trailer: a, b` header) |
//! | `x-test-reset-before-headers: CANCEL` | no response: the service fails with `h2::Error::from(Reason::CANCEL)` |
//! | `x-test-reset-after-headers: CANCEL` | headers and body data, a 100 ms pause, then the body fails with that reason |
//! | `x-test-content-length: 7` | response `content-length: 7` whatever the body (a mismatch on purpose) |
//!
//! Without `x-test-body-len` or `x-test-drip` the response body is the request body. Every
//! response also carries `x-backend-addr` (the backend's address), `x-backend-method`,
//! `x-backend-uri`, `x-backend-version` (`HTTP/1.1` or `HTTP/2.0`), and every request header
//! echoed as `x-echo-<name>`. A malformed `x-test-*` header gets a 400 with an `x-test-error`
//! header and body that say why. Reasons are names (`REFUSED_STREAM`, any case) or numbers
//! ([`parse_reason`]).
//!
//! Protocol notes (hyper's behaviour, not the backend's): a reset over HTTP/1.1 closes the
//! connection (before headers) or aborts it mid-body; HTTP/1.1 trailers need the request to
//! carry `te: trailers` and are sent with chunked encoding. A body with trailers, a reset or a
//! drip has no length (chunked on HTTP/1.1); other bodies get a `content-length`. With
//! `x-test-content-length`, an HTTP/2 client (h2) resets the stream with `PROTOCOL_ERROR` on a
//! mismatch; an HTTP/1.1 client sees a short body as an incomplete-body error when the
//! backend closes the connection, and reads a long one only up to the declared length.
//!
//! The pause before a reset after headers exists because h2 discards a stream's unsent frames
//! (data, even response headers) when the stream is reset: without it the client would often
//! see a bare reset. Code under test that forwards data and then a reset faces the same rule.
//!
//! # Extensions
//!
//! This crate reads and writes no request or response extension types.
//!
//! # Errors
//!
//! Bodies fail with [`BoxError`] (`Box<dyn Error + Send + Sync>`), holding the scripted error
//! unchanged, so `h2::Error`s stay findable through `source()`. Servers and clients return
//! `io::Error` / [`BoxError`] for bind and connect failures, hyper's or h2's own errors for
//! requests, and never panic on bad input.
//!
//! # Cancellation
//!
//! Dropping a [`TestServer`] aborts its accept loop and every connection task; dropping a
//! client closes its connection. [`TestServer::shutdown`] stops gracefully instead.

mod backend;
mod body;
mod client;
mod server;

pub use backend::{MAX_GENERATED_BODY, body_pattern, header, parse_reason};
pub use body::{BoxError, Collected, MockBody, collect, collect_until_error, h2_reason};
pub use client::{H2Client, H2Response, HttpClient};
pub use server::{ReceivedRequest, ServerProtocol, TestServer};
