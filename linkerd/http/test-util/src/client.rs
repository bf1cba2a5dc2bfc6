//! Clients for tests: hyper's `client::conn` (HTTP/1.1 or HTTP/2) and the raw `h2` crate.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::BoxError;

/// One hyper client connection (HTTP/1.1, or HTTP/2 with prior knowledge) to one address.
///
/// Requests may carry any body whose data is `Bytes` ([`MockBody`](crate::MockBody),
/// `http_body_util::Full`, a `hyper::body::Incoming` being forwarded, ...). On HTTP/1.1 the
/// connection carries one request at a time: read (or drop) a response body before sending
/// the next request. Dropping the client closes the connection. hyper sends request trailers
/// over HTTP/1.1 only when the request names them in a `trailer` header (and uses chunked
/// encoding, which it does for a body without an exact size hint).
///
/// ```
/// use linkerd_http_test_util::{HttpClient, TestServer, collect};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let server = TestServer::backend().await.expect("bind");
/// let mut client = HttpClient::http1(server.addr()).await.expect("connect");
/// let req = http::Request::post("/echo")
///     .header("x-test-status", "201")
///     .body(http_body_util::Full::new(bytes::Bytes::from_static(b"ping")))
///     .unwrap();
/// let rsp = client.send(req).await.expect("response");
/// assert_eq!(rsp.status(), 201);
/// assert_eq!(collect(rsp.into_body()).await.unwrap().data, "ping");
/// # }
/// ```
#[derive(Debug)]
pub struct HttpClient {
    addr: SocketAddr,
    sender: Sender,
    conn: JoinHandle<()>,
}

/// A raw HTTP/2 client connection made with the `h2` crate, for tests that must see or send
/// frames hyper hides: RST_STREAM reasons, trailers, streams reset on purpose.
///
/// ```
/// use linkerd_http_test_util::{H2Client, TestServer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let server = TestServer::backend().await.expect("bind");
/// let mut client = H2Client::connect(server.addr()).await.expect("connect");
/// let req = http::Request::get("/")
///     .header("x-test-reset-before-headers", "REFUSED_STREAM")
///     .body(bytes::Bytes::new())
///     .unwrap();
/// let error = client.request(req).await.expect_err("the stream is reset");
/// assert_eq!(error.reason(), Some(h2::Reason::REFUSED_STREAM));
/// # }
/// ```
#[derive(Debug)]
pub struct H2Client {
    addr: SocketAddr,
    send: h2::client::SendRequest<Bytes>,
    conn: JoinHandle<()>,
}

/// A response read to its end by [`H2Client`].
#[derive(Debug)]
#[non_exhaustive]
pub struct H2Response {
    /// The response status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body data received (before `body_error`, if any).
    pub data: Bytes,
    /// The trailers, if the stream ended with them.
    pub trailers: Option<HeaderMap>,
    /// The error that ended the body after the headers: a RST_STREAM from the server
    /// (`reset_reason()`), a GOAWAY, or the connection failing.
    pub body_error: Option<h2::Error>,
}

/// The request body type [`HttpClient`] sends: any body, boxed.
type ClientBody = UnsyncBoxBody<Bytes, BoxError>;

#[derive(Debug)]
enum Sender {
    Http1(http1::SendRequest<ClientBody>),
    Http2(http2::SendRequest<ClientBody>),
}

// === impl HttpClient ===

impl HttpClient {
    /// Connects and completes an HTTP/1.1 handshake.
    ///
    /// # Errors
    ///
    /// The TCP connection failed (its `io::Error` is in the box).
    pub async fn http1(addr: SocketAddr) -> Result<Self, BoxError> {
        let io = connect(addr).await?;
        let (sender, conn) = http1::handshake(io).await?;
        let conn = tokio::spawn(async move {
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%error, "test client connection failed");
            }
        });
        Ok(Self {
            addr,
            sender: Sender::Http1(sender),
            conn,
        })
    }

    /// Connects and completes an HTTP/2 (prior knowledge) handshake.
    ///
    /// # Errors
    ///
    /// The TCP connection or the HTTP/2 handshake failed.
    pub async fn http2(addr: SocketAddr) -> Result<Self, BoxError> {
        let io = connect(addr).await?;
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await?;
        let conn = tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "test client connection failed");
            }
        });
        Ok(Self {
            addr,
            sender: Sender::Http2(sender),
            conn,
        })
    }

    /// The address this client is connected to.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `req` once the connection is ready and waits for the response headers.
    ///
    /// A URI without an authority is completed with the server address: on HTTP/2 it becomes
    /// `http://<addr><path>`; on HTTP/1.1 a missing `host` header is set to `<addr>`. HTTP/2
    /// requests are sent with `Version::HTTP_2`.
    ///
    /// # Errors
    ///
    /// hyper's error: connection closed, stream reset (find the reason with
    /// [`h2_reason`](crate::h2_reason)), or the request body failed.
    pub async fn send<B>(&mut self, req: Request<B>) -> Result<Response<Incoming>, hyper::Error>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut req = req.map(|body| body.map_err(Into::into).boxed_unsync());
        match &mut self.sender {
            Sender::Http1(sender) => {
                if !req.headers().contains_key(HOST)
                    && let Ok(host) = HeaderValue::from_str(&self.addr.to_string())
                {
                    req.headers_mut().insert(HOST, host);
                }
                sender.ready().await?;
                sender.send_request(req).await
            }
            Sender::Http2(sender) => {
                *req.uri_mut() = absolute_uri(self.addr, req.uri());
                *req.version_mut() = Version::HTTP_2;
                sender.ready().await?;
                sender.send_request(req).await
            }
        }
    }

    /// Sends `GET path` with an empty body.
    ///
    /// # Errors
    ///
    /// `path` is not a valid URI, or [`send`](Self::send) failed.
    pub async fn get(&mut self, path: &str) -> Result<Response<Incoming>, BoxError> {
        let req = Request::get(path).body(Empty::<Bytes>::new())?;
        Ok(self.send(req).await?)
    }
}

impl Drop for HttpClient {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

// === impl H2Client ===

impl H2Client {
    /// Connects and completes an HTTP/2 handshake with default `h2` settings.
    ///
    /// # Errors
    ///
    /// The TCP connection or the HTTP/2 handshake failed.
    pub async fn connect(addr: SocketAddr) -> Result<Self, BoxError> {
        let io = TcpStream::connect(addr).await?;
        io.set_nodelay(true)?;
        let (send, conn) = h2::client::handshake(io).await?;
        let conn = tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "test h2 client connection failed");
            }
        });
        Ok(Self { addr, send, conn })
    }

    /// The address this client is connected to.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens a stream and returns its two halves, for tests that drive a stream by hand (send
    /// data slowly, reset it with `send_reset`, send trailers).
    ///
    /// The URI is completed to `http://<addr><path>` if it has no authority. Read the response
    /// with [`H2Response::read`] or by awaiting the `ResponseFuture`.
    ///
    /// # Errors
    ///
    /// The connection is closed or refused new streams.
    pub async fn send_request(
        &mut self,
        req: Request<()>,
        end_of_stream: bool,
    ) -> Result<(h2::client::ResponseFuture, h2::SendStream<Bytes>), h2::Error> {
        let (mut parts, ()) = req.into_parts();
        parts.uri = absolute_uri(self.addr, &parts.uri);
        parts.version = Version::HTTP_2;
        let mut send = self.send.clone().ready().await?;
        send.send_request(Request::from_parts(parts, ()), end_of_stream)
    }

    /// Sends `req` with its body and reads the whole response.
    ///
    /// # Errors
    ///
    /// The stream failed before response headers: `error.reason()` is the RST_STREAM reason
    /// when the server reset it. A failure after headers is in
    /// [`H2Response::body_error`] instead.
    pub async fn request(&mut self, req: Request<Bytes>) -> Result<H2Response, h2::Error> {
        self.request_with_trailers(req, None).await
    }

    /// Sends `req` with its body, then `trailers` if given, and reads the whole response.
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request).
    pub async fn request_with_trailers(
        &mut self,
        req: Request<Bytes>,
        trailers: Option<HeaderMap>,
    ) -> Result<H2Response, h2::Error> {
        let (parts, body) = req.into_parts();
        let empty = body.is_empty() && trailers.is_none();
        let (response, mut stream) = self
            .send_request(Request::from_parts(parts, ()), empty)
            .await?;
        // Send errors mean the server already reset or answered the stream; the response
        // future reports what happened, so it decides the result.
        if !body.is_empty() {
            let _ = stream.send_data(body, trailers.is_none());
        }
        if let Some(trailers) = trailers {
            let _ = stream.send_trailers(trailers);
        }
        H2Response::read(response).await
    }
}

impl Drop for H2Client {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

// === impl H2Response ===

impl H2Response {
    /// Waits for the response headers, then reads the body and trailers to the end, releasing
    /// flow-control capacity as data arrives.
    ///
    /// # Errors
    ///
    /// The stream failed before response headers (a reset, a GOAWAY, the connection closed).
    pub async fn read(response: h2::client::ResponseFuture) -> Result<Self, h2::Error> {
        let (parts, mut body) = response.await?.into_parts();
        let mut data = BytesMut::new();
        let mut body_error = None;
        let mut trailers = None;
        // The stream yields a finite number of frames before it ends or fails.
        while let Some(chunk) = body.data().await {
            match chunk {
                Ok(chunk) => {
                    let _ = body.flow_control().release_capacity(chunk.len());
                    data.extend_from_slice(&chunk);
                }
                Err(error) => {
                    body_error = Some(error);
                    break;
                }
            }
        }
        if body_error.is_none() {
            match body.trailers().await {
                Ok(received) => trailers = received,
                Err(error) => body_error = Some(error),
            }
        }
        Ok(Self {
            status: parts.status,
            headers: parts.headers,
            data: data.freeze(),
            trailers,
            body_error,
        })
    }

    /// The RST_STREAM (or GOAWAY) reason that ended the body, if one did.
    #[must_use]
    pub fn reset_reason(&self) -> Option<h2::Reason> {
        self.body_error.as_ref().and_then(h2::Error::reason)
    }
}

// === helpers ===

async fn connect(addr: SocketAddr) -> std::io::Result<TokioIo<TcpStream>> {
    let io = TcpStream::connect(addr).await?;
    io.set_nodelay(true)?;
    Ok(TokioIo::new(io))
}

/// `uri` as is if it has an authority, else `http://<addr>` plus its path and query.
fn absolute_uri(addr: SocketAddr, uri: &Uri) -> Uri {
    if uri.authority().is_some() {
        return uri.clone();
    }
    let mut parts = uri.clone().into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Authority::try_from(addr.to_string()).ok();
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}
