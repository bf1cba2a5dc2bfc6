use super::*;
use crate::{BoxBody, stack::box_body};
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;
use tower::{Layer, ServiceExt, service_fn};

fn ok_body(text: &'static str) -> BoxBody {
    box_body(Full::new(Bytes::from_static(text.as_bytes())).map_err(|e: Infallible| match e {}))
}

fn svc(
    tap: &Tap,
) -> impl tower::Service<
    Request<()>,
    Response = Response<TapBody<BoxBody>>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<TapBody<BoxBody>>, BoxError>>,
> + Clone {
    TapLayer::new(tap.clone()).layer(service_fn(|req: Request<()>| async move {
        let path = req.uri().path();
        if path == "/fail" {
            return Err::<Response<BoxBody>, BoxError>(ProxyError::load_shed().into());
        }
        let status = if path.ends_with("503") { 503 } else { 200 };
        Ok(Response::builder()
            .status(status)
            .body(ok_body("hello"))
            .expect("valid response"))
    }))
}

async fn send(tap: &Tap, path: &str) -> Result<(), BoxError> {
    let req = Request::get(format!("http://svc.test{path}?secret=1"))
        .body(())
        .expect("valid request");
    let rsp = svc(tap).oneshot(req).await?;
    rsp.into_body().collect().await?;
    Ok(())
}

fn all() -> Tap {
    Tap::new(TapConfig::new(16, None))
}

#[tokio::test]
async fn records_a_request_at_the_end_of_its_body() {
    let tap = all();
    send(&tap, "/items/42").await.expect("request succeeds");
    let events = tap.recent();
    assert_eq!(events.len(), 1, "one event per request");
    let e = &events[0];
    assert_eq!(e.method, "GET", "method recorded");
    assert_eq!(
        e.authority.as_deref(),
        Some("svc.test"),
        "authority recorded"
    );
    assert_eq!(e.path, "/items/42", "path recorded without the query");
    assert_eq!(e.status, 200, "status recorded");
    assert_eq!(e.attempts, 1, "one attempt without a retry outcome");
    assert_eq!(e.error, None, "no error");
    assert!(e.duration_ms >= 0.0, "a duration");
}

#[tokio::test]
async fn records_failures_and_cancellations() {
    let tap = all();
    send(&tap, "/503").await.expect("a 503 is a response");
    assert!(
        send(&tap, "/fail").await.is_err(),
        "the inner error is returned"
    );
    // A response whose body is dropped before its end.
    let req = Request::get("/cancelled").body(()).expect("valid request");
    let rsp = svc(&tap).oneshot(req).await.expect("response");
    drop(rsp.into_body());
    // A response future dropped before the response.
    let pending = TapLayer::new(tap.clone()).layer(service_fn(|_req: Request<()>| {
        std::future::pending::<Result<Response<BoxBody>, BoxError>>()
    }));
    let fut = pending.oneshot(Request::get("/never").body(()).expect("valid request"));
    let _ = tokio::time::timeout(Duration::from_millis(1), fut).await;

    let events = tap.recent();
    let by_path = |p: &str| {
        events
            .iter()
            .find(|e| e.path == p)
            .unwrap_or_else(|| panic!("an event for {p}: {events:?}"))
    };
    assert_eq!(
        by_path("/503").status,
        503,
        "a 503 is recorded with its status"
    );
    assert_eq!(
        (by_path("/fail").status, by_path("/fail").error),
        (0, Some("LOAD_SHED")),
        "an inner error has no status and its error label"
    );
    // `Full` is not at its end before it is read, so dropping it unread is a cancellation.
    assert_eq!(by_path("/cancelled").error, Some("CANCEL"), "dropped body");
    assert_eq!(
        (by_path("/never").status, by_path("/never").error),
        (0, Some("CANCEL")),
        "a dropped response future is a cancellation"
    );
    assert_eq!(tap.stats().recorded, 4, "four events recorded");
}

#[tokio::test(start_paused = true)]
async fn samples_at_most_max_per_second() {
    let tap = Tap::new(TapConfig::new(1000, Some(10)));
    for i in 0..100 {
        send(&tap, &format!("/{i}")).await.expect("request");
    }
    let stats = tap.stats();
    assert_eq!(stats.seen, 100, "every request is seen");
    assert_eq!(
        stats.recorded, 10,
        "only max_per_second are recorded in one second"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    send(&tap, "/next-second").await.expect("request");
    assert_eq!(tap.stats().recorded, 11, "a new second admits again");
}

/// A viewer that never reads: 5,000 requests later the tap holds no more than its capacity,
/// and the viewer learns how many it missed when it reads at last.
#[tokio::test]
async fn a_stalled_viewer_keeps_the_tap_bounded() {
    const CAPACITY: usize = 64;
    const REQUESTS: u64 = 5_000;
    let tap = Tap::new(TapConfig::new(CAPACITY, None));
    let mut viewer = tap.subscribe(TapFilter::default());
    let mut max_buffered = 0;
    for i in 0..REQUESTS {
        send(&tap, &format!("/burst/{i}")).await.expect("request");
        max_buffered = max_buffered.max(tap.buffered());
    }
    assert_eq!(
        max_buffered, CAPACITY,
        "the ring fills up to its capacity and no further"
    );
    let stats = tap.stats();
    assert_eq!(stats.recorded, REQUESTS, "every request was recorded");
    assert_eq!(stats.viewers, 1, "the stalled viewer is connected");

    let chunk = viewer.next_chunk().await;
    let text = std::str::from_utf8(&chunk).expect("SSE text is UTF-8");
    let missed = REQUESTS - CAPACITY as u64;
    assert!(
        text.starts_with(&format!(
            "event: dropped\ndata: {{\"dropped\":{missed}}}\n\n"
        )),
        "the viewer is told what it missed: {}",
        &text[..80.min(text.len())]
    );
    assert_eq!(viewer.dropped(), missed, "missed events are counted");
    assert_eq!(
        tap.stats().viewer_dropped,
        missed,
        "and summed in the stats"
    );
    assert_eq!(
        text.matches("event: request\n").count(),
        CAPACITY.min(MAX_BATCH),
        "then the oldest events still held, one batch"
    );
    assert!(
        text.contains(&format!("\"path\":\"/burst/{missed}\"")),
        "starting from the oldest held event"
    );
    drop(viewer);
    assert_eq!(
        tap.stats().viewers,
        0,
        "a dropped viewer is no longer counted"
    );
}

#[tokio::test]
async fn a_viewer_wakes_for_new_events_and_filters_them() {
    let tap = all();
    let filter = TapFilter::from_query(Some("route=&path=%2Fapi&status=5xx")).expect("valid");
    let mut viewer = tap.subscribe(filter);
    let waiting = tokio::spawn(async move { viewer.next_chunk().await });
    tokio::task::yield_now().await;
    send(&tap, "/other").await.expect("request");
    send(&tap, "/api/ok").await.expect("request");
    send(&tap, "/api/503").await.expect("request");
    let chunk = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the viewer wakes up")
        .expect("the viewer task did not panic");
    let text = std::str::from_utf8(&chunk).expect("UTF-8");
    assert!(
        text.contains("\"path\":\"/api/503\""),
        "the 5xx under /api passes: {text}"
    );
    assert!(!text.contains("/api/ok"), "a 200 is filtered out: {text}");
    assert!(
        !text.contains("/other"),
        "another path is filtered out: {text}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_viewer_gets_heartbeats() {
    let tap = all();
    let mut viewer = tap.subscribe(TapFilter::default());
    let chunk = viewer.next_chunk().await;
    assert_eq!(
        &chunk[..],
        b": keep-alive\n\n",
        "an SSE comment after the heartbeat period"
    );
}

#[test]
fn filter_parsing() {
    let f = TapFilter::from_query(Some("route=api&path=%2Fa+b&status=4XX&x=1")).expect("valid");
    assert_eq!(f.route.as_deref(), Some("api"), "route");
    assert_eq!(
        f.path_prefix.as_deref(),
        Some("/a b"),
        "percent and plus decoding"
    );
    assert_eq!(
        f.status,
        Some(StatusClass::ClientError),
        "status class, any case"
    );
    assert_eq!(
        TapFilter::from_query(None).expect("no query"),
        TapFilter::default(),
        "no query: no filter"
    );
    assert!(
        TapFilter::from_query(Some("status=600")).is_err(),
        "unknown class"
    );
    assert!(
        TapFilter::from_query(Some("path=%zz")).is_err(),
        "bad escape"
    );
    assert!(
        TapFilter::from_query(Some("path=%ff")).is_err(),
        "not UTF-8"
    );

    let event = |status, error| TapEvent {
        id: 0,
        timestamp_ms: 0,
        method: "GET".into(),
        authority: None,
        path: "/api/x".into(),
        route: Some("api".into()),
        backend: None,
        status,
        grpc_status: None,
        attempts: 1,
        duration_ms: 1.0,
        error,
    };
    let errors = TapFilter {
        status: Some(StatusClass::Error),
        ..TapFilter::default()
    };
    assert!(errors.matches(&event(0, None)), "no status is an error");
    assert!(
        errors.matches(&event(504, Some("REQUEST_TIMEOUT"))),
        "an error label is an error"
    );
    assert!(
        !errors.matches(&event(503, None)),
        "a plain 503 is 5xx, not an error"
    );
    let route = TapFilter {
        route: Some("web".into()),
        ..TapFilter::default()
    };
    assert!(
        !route.matches(&event(200, None)),
        "another route is filtered out"
    );
}
