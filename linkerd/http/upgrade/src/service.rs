//! The `Upgrade` service: target checks, hop-by-hop headers, Upgrade/CONNECT tunnels.

use crate::{
    Tunnels, authority,
    headers::{self, upgrade_protocols},
    websocket,
};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use hyper::upgrade::OnUpgrade;
use linkerd_http_classify::{Protocol, ProxyError};
use pin_project_lite::pin_project;
use std::{
    error::Error,
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

/// Applies [`Upgrade`] to a service.
///
/// All services built by one layer (and its clones) record their tunnels in the same
/// [`Tunnels`] handle.
#[derive(Clone, Debug, Default)]
pub struct UpgradeLayer {
    tunnels: Tunnels,
}

/// Checks request targets, strips hop-by-hop headers and tunnels HTTP/1.1 upgrades and
/// CONNECT requests (including HTTP/2 extended CONNECT) through the inner service.
///
/// See [the crate documentation](crate) for the rules it follows.
#[derive(Clone, Debug)]
pub struct Upgrade<S> {
    inner: S,
    tunnels: Tunnels,
}

pin_project! {
    /// The response future of [`Upgrade`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Ready { rsp: Option<Response<B>> },
        Inner {
            #[pin]
            fut: F,
            kind: Option<Kind>,
            protocol: Protocol,
            tunnels: Tunnels,
        },
    }
}

/// What the request asked for, decided before it is forwarded.
enum Kind {
    /// An ordinary request (or an `h2c` upgrade, which is forwarded as one).
    Plain,
    /// An ordinary gRPC request from an HTTP/1.1 client that accepts trailers (`te:
    /// trailers`): the answer declares gRPC's trailers, without which hyper's HTTP/1 server
    /// drops them (and the client its `grpc-status`).
    GrpcOverHttp1,
    /// An HTTP/1.1 `Upgrade` request: a `101` answer starts a tunnel.
    Upgrade { server: OnUpgrade },
    /// A `CONNECT`: a `2xx` answer starts a tunnel.
    Connect { server: OnUpgrade },
    /// An HTTP/2 extended CONNECT forwarded as an HTTP/1.1 upgrade: a `101` answer (with the
    /// expected `Sec-WebSocket-Accept` when one is set) starts a tunnel and the client gets
    /// `200`.
    Extended {
        server: OnUpgrade,
        accept: Option<HeaderValue>,
    },
}

/// The upstream answered a tunnel request but the connection could not be taken over.
#[derive(Debug)]
struct NoUpgrade(&'static str);

// === impl UpgradeLayer ===

impl UpgradeLayer {
    /// A layer whose services record their tunnels in `tunnels`.
    #[must_use]
    pub const fn new(tunnels: Tunnels) -> Self {
        Self { tunnels }
    }

    /// The tunnels of the services this layer builds.
    #[must_use]
    pub fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }
}

impl<S> tower_layer::Layer<S> for UpgradeLayer {
    type Service = Upgrade<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Upgrade::new(inner, self.tunnels.clone())
    }
}

// === impl Upgrade ===

impl<S> Upgrade<S> {
    /// Wraps `inner`, recording tunnels in `tunnels`.
    pub const fn new(inner: S, tunnels: Tunnels) -> Self {
        Self { inner, tunnels }
    }

    /// A layer: a shortcut for [`UpgradeLayer::new`].
    #[must_use]
    pub const fn layer(tunnels: Tunnels) -> UpgradeLayer {
        UpgradeLayer::new(tunnels)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> tower_service::Service<Request<B>> for Upgrade<S>
where
    S: tower_service::Service<Request<B>, Response = Response<RB>>,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline(always)]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let protocol = req
            .extensions()
            .get::<Protocol>()
            .copied()
            .unwrap_or_else(|| Protocol::of(&req));
        match prepare(&mut req) {
            Ok(mut kind) => {
                if matches!(kind, Kind::Plain)
                    && protocol.is_grpc()
                    && req.version() == Version::HTTP_11
                    && req.headers().contains_key(header::TE)
                {
                    // (`prepare` left `te` only when it asks for trailers.)
                    kind = Kind::GrpcOverHttp1;
                }
                ResponseFuture {
                    state: State::Inner {
                        fut: self.inner.call(req),
                        kind: Some(kind),
                        protocol,
                        tunnels: self.tunnels.clone(),
                    },
                }
            }
            Err(error) => ResponseFuture {
                state: State::Ready {
                    rsp: Some(error.to_response(protocol)),
                },
            },
        }
    }
}

/// Checks `req`, rewrites it into the form the inner service forwards, and says what a
/// tunnel answer will look like.
fn prepare<B>(req: &mut Request<B>) -> Result<Kind, ProxyError> {
    let extended =
        req.method() == Method::CONNECT && req.extensions().get::<hyper::ext::Protocol>().is_some();
    authority::normalize(req, extended).map_err(ProxyError::bad_request)?;

    if extended {
        let Some(server) = req.extensions_mut().remove::<OnUpgrade>() else {
            return Err(no_upgrade(
                "extended CONNECT without an upgradable connection",
            ));
        };
        let protocol = req
            .extensions_mut()
            .remove::<hyper::ext::Protocol>()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let Ok(token) = HeaderValue::from_str(&protocol) else {
            return Err(ProxyError::bad_request("invalid :protocol"));
        };
        // RFC 8441 section 5: the HTTP/1.1 form of the same request is a GET upgrade.
        *req.method_mut() = Method::GET;
        *req.version_mut() = Version::HTTP_11;
        let h = req.headers_mut();
        headers::strip(h, true);
        h.insert(header::UPGRADE, token);
        let accept = if protocol.eq_ignore_ascii_case("websocket") {
            let key = websocket::generate_key();
            let accept = websocket::websocket_accept(key.as_bytes());
            h.insert(header::SEC_WEBSOCKET_KEY, key);
            Some(accept)
        } else {
            None
        };
        return Ok(Kind::Extended { server, accept });
    }

    if req.method() == Method::CONNECT {
        let Some(server) = req.extensions_mut().remove::<OnUpgrade>() else {
            return Err(no_upgrade("CONNECT without an upgradable connection"));
        };
        *req.version_mut() = Version::HTTP_11;
        headers::strip(req.headers_mut(), false);
        return Ok(Kind::Connect { server });
    }

    // RFC 9110 section 7.8: `Upgrade` in an HTTP/1.0 request is ignored.
    if req.version() == Version::HTTP_11
        && let Some(protocols) = upgrade_protocols(req.headers())
        && let Some(server) = req.extensions_mut().remove::<OnUpgrade>()
    {
        let h = req.headers_mut();
        headers::strip(h, true);
        h.insert(header::UPGRADE, protocols);
        return Ok(Kind::Upgrade { server });
    }
    headers::strip(req.headers_mut(), false);
    Ok(Kind::Plain)
}

fn no_upgrade(why: &'static str) -> ProxyError {
    ProxyError::internal().with_source(NoUpgrade(why))
}

/// Turns the inner service's answer into the client's answer, starting a tunnel when the
/// upstream agreed to one.
fn finish<B: Default>(
    kind: Kind,
    mut rsp: Response<B>,
    protocol: Protocol,
    tunnels: &Tunnels,
) -> Response<B> {
    let status = rsp.status();
    match kind {
        Kind::Plain => {
            headers::strip_response(rsp.headers_mut(), false);
            rsp
        }
        Kind::GrpcOverHttp1 => {
            let h = rsp.headers_mut();
            headers::strip_response(h, false);
            // A body of known length goes without chunks, so without trailers; a
            // trailers-only answer has its status in the headers.
            if !h.contains_key(header::TRAILER)
                && !h.contains_key(header::CONTENT_LENGTH)
                && !h.contains_key("grpc-status")
            {
                h.insert(
                    header::TRAILER,
                    HeaderValue::from_static("grpc-status, grpc-message, grpc-status-details-bin"),
                );
            }
            rsp
        }
        Kind::Upgrade { server } if status == StatusCode::SWITCHING_PROTOCOLS => {
            let Some(client) = rsp.extensions_mut().remove::<OnUpgrade>() else {
                return no_upgrade("the upstream response cannot be upgraded")
                    .to_response(protocol);
            };
            headers::strip_response(rsp.headers_mut(), true);
            tunnels.spawn(server, client);
            rsp
        }
        Kind::Connect { server } if status.is_success() => {
            let Some(client) = rsp.extensions_mut().remove::<OnUpgrade>() else {
                return no_upgrade("the upstream response cannot be upgraded")
                    .to_response(protocol);
            };
            let h = rsp.headers_mut();
            headers::strip_response(h, false);
            // RFC 9110 section 9.3.6: a 2xx answer to CONNECT has no content.
            h.remove(header::CONTENT_LENGTH);
            tunnels.spawn(server, client);
            rsp
        }
        Kind::Extended { server, accept } if status == StatusCode::SWITCHING_PROTOCOLS => {
            if let Some(expected) = accept
                && rsp.headers().get(header::SEC_WEBSOCKET_ACCEPT) != Some(&expected)
            {
                return ProxyError::upstream_cannot_tunnel()
                    .with_source(NoUpgrade("the upstream's Sec-WebSocket-Accept is wrong"))
                    .to_response(protocol);
            }
            let Some(client) = rsp.extensions_mut().remove::<OnUpgrade>() else {
                return no_upgrade("the upstream response cannot be upgraded")
                    .to_response(protocol);
            };
            let (mut parts, body) = rsp.into_parts();
            headers::strip_response(&mut parts.headers, false);
            parts.headers.remove(header::SEC_WEBSOCKET_ACCEPT);
            parts.headers.remove(header::CONTENT_LENGTH);
            // RFC 8441 section 5: the HTTP/2 side is answered 200, not 101.
            parts.status = StatusCode::OK;
            parts.version = Version::HTTP_2;
            tunnels.spawn(server, client);
            // The upstream's (empty) body stays: the answer is still the upstream's, which
            // layers above tell from one this layer made up.
            Response::from_parts(parts, body)
        }
        Kind::Extended { .. } if status.is_success() => {
            // The HTTP/1 upstream declined the upgrade with a 2xx, which would tell an HTTP/2
            // client that its extended CONNECT succeeded (RFC 8441 section 5): no tunnel can
            // be made of it.
            ProxyError::upstream_cannot_tunnel()
                .with_source(NoUpgrade("the upstream declined the upgrade with a 2xx"))
                .to_response(protocol)
        }
        Kind::Upgrade { .. } | Kind::Connect { .. } | Kind::Extended { .. } => {
            // The upstream declined: an ordinary response, and the client's connection
            // carries on (hyper drops the unused upgrade).
            headers::strip_response(rsp.headers_mut(), false);
            rsp
        }
    }
}

// === impl ResponseFuture ===

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Ready { rsp } => match rsp.take() {
                Some(rsp) => Poll::Ready(Ok(rsp)),
                None => Poll::Pending,
            },
            StateProj::Inner {
                fut,
                kind,
                protocol,
                tunnels,
            } => {
                let rsp = std::task::ready!(fut.poll(cx))?;
                let kind = kind.take().unwrap_or(Kind::Plain);
                Poll::Ready(Ok(finish(kind, rsp, *protocol, tunnels)))
            }
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

// === impl NoUpgrade ===

impl fmt::Display for NoUpgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Error for NoUpgrade {}
