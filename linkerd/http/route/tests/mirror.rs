//! RequestMirror: copies with bodies reach the mirror, a full queue drops (and never delays
//! the primary), bodies over the cap are not mirrored and are counted.

mod support;

use http::{Request, Response};
use http_body_util::BodyExt;
use linkerd_http_route::{
    BackendName, MirrorBody, MirrorConfig, MirrorRequestBody, MirrorService, RouteLayer, Rule,
    SharedRng,
};
use std::convert::Infallible;
use tokio::sync::mpsc;
use tower::{Layer, ServiceExt};

const YAML: &str = r"
routes:
  - name: r
    rules:
      - filters:
          - type: RequestMirror
            requestMirror: { backendRef: { name: shadow } }
        backendRefs: [{ name: web }]
";

type Primary =
    tower::util::BoxCloneService<Request<MirrorBody<String>>, Response<String>, Infallible>;

/// The primary reads the whole body and echoes it.
fn primary<P>(_: &Rule<P>) -> Primary {
    Primary::new(tower::service_fn(
        |req: Request<MirrorBody<String>>| async move {
            let body = req.into_body().collect().await.expect("body").to_bytes();
            Ok::<_, Infallible>(Response::new(
                String::from_utf8(body.to_vec()).expect("utf8"),
            ))
        },
    ))
}

fn config(queue: usize, max_body_bytes: usize) -> MirrorConfig {
    let mut c = MirrorConfig::default();
    c.queue = queue;
    c.concurrency = 1;
    c.max_body_bytes = max_body_bytes;
    c
}

fn post(body: &str) -> Request<String> {
    Request::post("http://example.com/submit?x=1")
        .header("x-test", "1")
        .body(body.to_owned())
        .expect("request")
}

#[tokio::test]
async fn copies_reach_the_mirror_with_their_body() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mirror = MirrorService::spawn(
        tower::service_fn(move |req: Request<MirrorRequestBody>| {
            let tx = tx.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.expect("full body").to_bytes();
                tx.send((parts, body)).expect("test alive");
                Ok::<_, Infallible>(Response::new(()))
            }
        }),
        &config(10, 1024),
    );
    let router = RouteLayer::new(support::table(YAML))
        .with_mirror(mirror.clone())
        .with_rng(SharedRng::seeded(1))
        .layer(primary);
    let rsp = router
        .oneshot(post("hello mirror"))
        .await
        .expect("infallible");
    assert_eq!(
        rsp.into_body().into_inner().as_deref(),
        Some("hello mirror"),
        "primary answered"
    );
    let (parts, body) = rx.recv().await.expect("a copy arrives");
    assert_eq!(parts.method, http::Method::POST, "method copied");
    assert_eq!(parts.uri, "http://example.com/submit?x=1", "uri copied");
    assert_eq!(parts.headers["x-test"], "1", "headers copied");
    assert_eq!(&body[..], b"hello mirror", "body copied");
    assert_eq!(
        parts
            .extensions
            .get::<BackendName>()
            .map(BackendName::as_str),
        Some("shadow"),
        "the copy names the mirror backend"
    );
    assert_eq!(mirror.stats().queued, 1, "one copy queued");
}

#[tokio::test]
async fn a_stuck_mirror_never_delays_the_primary() {
    // The mirror never answers: one copy in flight, one waiting, the rest dropped.
    let mirror = MirrorService::spawn(
        tower::service_fn(|_req: Request<MirrorRequestBody>| async {
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(Response::new(()))
        }),
        &config(1, 1024),
    );
    let router = RouteLayer::new(support::table(YAML))
        .with_mirror(mirror.clone())
        .with_rng(SharedRng::seeded(1))
        .layer(primary);
    for i in 0..20 {
        let body = format!("request {i}");
        let rsp = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            router.clone().oneshot(post(&body)),
        )
        .await
        .expect("the primary is never held up by the mirror")
        .expect("infallible");
        assert_eq!(rsp.into_body().into_inner(), Some(body), "primary answered");
        tokio::task::yield_now().await;
    }
    let stats = mirror.stats();
    assert!(
        stats.dropped_full >= 17,
        "copies beyond the queue are dropped: {stats:?}"
    );
    assert_eq!(
        stats.queued + stats.dropped_full,
        20,
        "every copy is accounted for: {stats:?}"
    );
}

#[tokio::test]
async fn bodies_over_the_cap_are_not_mirrored() {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mirror = MirrorService::spawn(
        tower::service_fn(move |_req: Request<MirrorRequestBody>| {
            let tx = tx.clone();
            async move {
                tx.send(()).expect("test alive");
                Ok::<_, Infallible>(Response::new(()))
            }
        }),
        &config(10, 4),
    );
    let router = RouteLayer::new(support::table(YAML))
        .with_mirror(mirror.clone())
        .with_rng(SharedRng::seeded(1))
        .layer(primary);
    let rsp = router
        .clone()
        .oneshot(post("more than four bytes"))
        .await
        .expect("infallible");
    assert_eq!(
        rsp.into_body().into_inner().as_deref(),
        Some("more than four bytes"),
        "the primary still gets the whole body"
    );
    assert_eq!(
        mirror.stats().dropped_too_large,
        1,
        "the oversized copy is counted"
    );
    let rsp = router.oneshot(post("tiny")).await.expect("infallible");
    assert_eq!(
        rsp.into_body().into_inner().as_deref(),
        Some("tiny"),
        "primary answered"
    );
    rx.recv().await.expect("a small body is mirrored");
    assert_eq!(mirror.stats().queued, 1, "only the small copy was queued");
}

#[tokio::test]
async fn mirror_body_forwards_end_stream_and_size_hint() {
    use http_body::Body;
    let body = MirrorBody::passthrough(String::from("abc"));
    assert_eq!(body.size_hint().exact(), Some(3), "size hint forwarded");
    assert!(!body.is_end_stream(), "not at end");
    let empty = MirrorBody::passthrough(String::new());
    assert!(empty.is_end_stream(), "end of stream forwarded");
    let rb = linkerd_http_route::RouteBody::<String>::empty();
    assert!(rb.is_end_stream(), "the synthetic body is empty");
    assert_eq!(rb.size_hint().exact(), Some(0), "with a zero size hint");
    let rb = linkerd_http_route::RouteBody::new(String::from("abcd"));
    assert_eq!(
        rb.size_hint().exact(),
        Some(4),
        "route body forwards size hints"
    );
}
