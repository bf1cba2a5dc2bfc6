//! The admin server: `/metrics`, `/ready` (503 until the proxy is bound and configured, and
//! again once it is shutting down),
//! `/live`, and the dashboard (`/`, `/api/stats`, `/api/tap`; see [`crate::dashboard`]).

use crate::dashboard::Dashboard;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd_http_prom::MetricsService;
use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};
use tokio::net::TcpListener;

/// Whether the proxy is ready (bound and configured); shared with the admin server.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the proxy ready.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Marks the proxy not ready (it is shutting down: load balancers should stop sending).
    pub fn set_not_ready(&self) {
        self.0.store(false, Ordering::Release);
    }

    /// Whether the proxy is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Serves the admin endpoints on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    metrics: MetricsService,
    ready: Readiness,
    dashboard: Dashboard,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        let ready = ready.clone();
        let dashboard = dashboard.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let rsp = dashboard
                    .respond(&req)
                    .unwrap_or_else(|| respond(&req, &metrics, &ready).map(BodyExt::boxed_unsync));
                async move { Ok::<_, Infallible>(rsp) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn respond(
    req: &Request<Incoming>,
    metrics: &MetricsService,
    ready: &Readiness,
) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: &'static str| {
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("static response parts are valid")
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        // RFC 9110 section 15.5.6: a 405 names the methods that are allowed.
        let mut rsp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        rsp.headers_mut().insert(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD"),
        );
        return rsp;
    }
    match req.uri().path() {
        "/metrics" => metrics.respond(req.method(), req.headers()),
        "/ready" if ready.is_ready() => text(StatusCode::OK, "ready\n"),
        "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/live" => text(StatusCode::OK, "live\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}
