//! A hyper-util client that retries a **streamed** POST body with `ReplayBody`.
//!
//! ```text
//! cargo run --example retry_client
//! ```
//!
//! The example starts a flaky server on 127.0.0.1 that answers the first two attempts of
//! every upload with 503 and the third with 200. The client streams the body from a channel
//! (chunked, no `content-length`), as an upload read from a file or a socket would be. The
//! retry layer wraps the body in a `ReplayBody`: the first attempt streams it as it arrives
//! while keeping a copy (up to `max_request_bytes`), and each retry replays that copy, so the
//! server receives the same bytes three times although the producer sent them once. (A
//! replay knows its length, so it goes out with a `content-length`; the first attempt is
//! chunked.)
//!
//! It prints each attempt the server saw and the outcome, and exits non-zero if anything
//! differs from that.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use linkerd_http::{
    classify::StatusRanges,
    exp_backoff::ExponentialBackoff,
    retry::{ReplayBody, RetryLayer, RetryOutcome, RetryPolicy},
};
use std::{
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};
use tokio::{net::TcpListener, sync::mpsc};
use tower::{ServiceBuilder, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body fed by a channel: each message is one data frame; the body ends when every
/// sender is dropped.
#[derive(Debug)]
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }

    fn size_hint(&self) -> SizeHint {
        // The length is not known in advance: hyper sends it chunked.
        SizeHint::default()
    }
}

/// What the server saw of one attempt.
#[derive(Clone, Debug)]
struct Seen {
    chunked: bool,
    body: Bytes,
}

/// Answers 503 to the first two attempts of each upload (counted by the server), 200 after.
async fn serve(listener: TcpListener, seen: Arc<Mutex<Vec<Seen>>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let seen = seen.clone();
                async move {
                    let chunked = req.headers().get(http::header::CONTENT_LENGTH).is_none();
                    let body = req.into_body().collect().await?.to_bytes();
                    let attempt = {
                        let mut seen = seen.lock().expect("lock");
                        seen.push(Seen {
                            chunked,
                            body: body.clone(),
                        });
                        seen.len()
                    };
                    let status = if attempt <= 2 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    };
                    let text = format!("attempt {attempt}: received {} bytes\n", body.len());
                    Ok::<_, hyper::Error>(
                        Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from(text)))
                            .expect("valid response"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(serve(listener, seen.clone()));

    // The client's body type is `ReplayBody<B>`: the retry layer wraps each request body.
    let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<ChannelBody>>();
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new())
        .service(client);

    // Retry 503s up to three times, 10-50 ms apart; keep up to 1 MiB of body for replays.
    let mut policy = RetryPolicy::default();
    policy.codes = StatusRanges::empty().with_range(503, 503);
    policy.max_retries = 3;
    policy.max_request_bytes = 1 << 20;
    policy.backoff =
        ExponentialBackoff::try_new(Duration::from_millis(10), Duration::from_millis(50), 0.5)?;

    // The producer streams 64 chunks of 1 KiB; the body ends when it drops its sender.
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let producer = tokio::spawn(async move {
        let mut sent = Vec::new();
        for i in 0..64u8 {
            let chunk = Bytes::from(vec![b'a' + i % 26; 1024]);
            sent.extend_from_slice(&chunk);
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
        sent
    });

    let mut req = Request::post(format!("http://{addr}/upload"))
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .body(ChannelBody(rx))?;
    req.extensions_mut().insert(policy);
    let rsp = svc.oneshot(req).await?;
    let status = rsp.status();
    let outcome = rsp.extensions().get::<RetryOutcome>().copied();
    let text = rsp.into_body().collect().await?.to_bytes();
    let sent = producer.await?;

    let seen = seen.lock().expect("lock").clone();
    for (i, s) in seen.iter().enumerate() {
        println!(
            "server: attempt {} carried {} bytes ({}), same as sent: {}",
            i + 1,
            s.body.len(),
            if s.chunked {
                "chunked"
            } else {
                "content-length"
            },
            s.body == sent
        );
    }
    println!(
        "client: {status} after {} attempts: {}",
        outcome.map_or(1, |o| o.attempts),
        String::from_utf8_lossy(&text).trim_end()
    );
    server.abort();

    if status != StatusCode::OK {
        return Err(format!("expected 200 after the retries, got {status}").into());
    }
    if outcome.map(|o| o.attempts) != Some(3) || seen.len() != 3 {
        return Err(format!("expected 3 attempts, saw {}", seen.len()).into());
    }
    if !seen.iter().all(|s| s.body == sent) {
        return Err("every attempt must carry the streamed body, byte for byte".into());
    }
    if !seen[0].chunked {
        return Err("the first attempt streams the body as it arrives (chunked)".into());
    }
    println!("ok: one streamed body, sent three times");
    Ok(())
}
