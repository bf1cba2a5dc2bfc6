//! The built-in demo backend started with the embedded default config, so that
//! `cargo run --release --example proxy` answers `curl http://127.0.0.1:4140/` on a fresh
//! machine.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::{convert::Infallible, net::SocketAddr};
use tokio::{net::TcpListener, task::JoinHandle};

/// The embedded default config. `DEMO_BACKEND_ADDR` is replaced with the demo backend's address.
pub const DEFAULT_CONFIG: &str = "\
# The embedded default: one route sending everything to the built-in demo backend.
listen: 127.0.0.1:4140
admin: 127.0.0.1:4191
accessLog: { format: json, output: stdout }
backends:
  - name: demo
    protocol: http1
    endpoints: [DEMO_BACKEND_ADDR]
routes:
  - name: demo
    rules:
      - matches: [{ path: { type: PathPrefix, value: / } }]
        backendRefs: [{ name: demo }]
";

/// A running demo backend; stops when dropped.
#[derive(Debug)]
pub struct DemoBackend {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl DemoBackend {
    /// Starts the demo backend on an ephemeral loopback port.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(handle);
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Self { addr, task })
    }

    /// The backend's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The default config text, pointing at this backend.
    pub fn config(&self) -> String {
        DEFAULT_CONFIG.replace("DEMO_BACKEND_ADDR", &self.addr.to_string())
    }
}

impl Drop for DemoBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let version = req.version();
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let text = format!(
        "hello from the linkerd-http demo backend\n{method} {uri} {version:?}, {bytes} body bytes\n"
    );
    let rsp = Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text)))
        .expect("static response parts are valid");
    Ok(rsp)
}
