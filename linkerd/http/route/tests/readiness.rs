//! The router calls a rule's service at once when it is ready, and otherwise waits for it
//! with the caller's waker; a readiness failure is the request's error.

mod support;

use http::{Request, Response};
use linkerd_http_route::{MirrorBody, RouteLayer, Rule, config::RuleExtensions};
use std::{
    future::{Ready, ready},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};
use tower::{Layer, ServiceExt};

const ROUTES: &str = "
routes:
  - name: r
    rules:
      - backendRefs: [{ name: b }]
";

/// A rule service whose first `pending` readiness checks are not ready (each wakes the task
/// at once), then fails when `fail`, else answers with how many checks it took.
#[derive(Clone)]
struct Gate {
    pending: usize,
    fail: bool,
    checks: Arc<AtomicUsize>,
}

impl tower::Service<Request<MirrorBody<String>>> for Gate {
    type Response = Response<String>;
    type Error = &'static str;
    type Future = Ready<Result<Response<String>, &'static str>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let n = self.checks.fetch_add(1, Ordering::SeqCst);
        if n < self.pending {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.fail {
            return Poll::Ready(Err("not ready: failed"));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<MirrorBody<String>>) -> Self::Future {
        let checks = self.checks.load(Ordering::SeqCst);
        ready(Ok(Response::new(format!("checks={checks}"))))
    }
}

async fn send(pending: usize, fail: bool) -> (Result<String, &'static str>, usize) {
    let checks = Arc::new(AtomicUsize::new(0));
    let gate = Gate {
        pending,
        fail,
        checks: checks.clone(),
    };
    let router =
        RouteLayer::new(support::table(ROUTES)).layer(move |_: &Rule<RuleExtensions>| gate.clone());
    let req = Request::get("http://example.com/")
        .body(String::new())
        .expect("request");
    let result = router
        .oneshot(req)
        .await
        .map(|rsp| rsp.into_body().into_inner().unwrap_or_default());
    (result, checks.load(Ordering::SeqCst))
}

#[tokio::test]
async fn a_ready_rule_service_is_called_at_once() {
    let (result, checks) = send(0, false).await;
    assert_eq!(result, Ok("checks=1".to_owned()), "one readiness check");
    assert_eq!(checks, 1);

    // Within `call`, before the router's future is polled: the rule's future is built there.
    let checks = Arc::new(AtomicUsize::new(0));
    let gate = Gate {
        pending: 0,
        fail: false,
        checks: checks.clone(),
    };
    let mut router =
        RouteLayer::new(support::table(ROUTES)).layer(move |_: &Rule<RuleExtensions>| gate.clone());
    let req = Request::get("http://example.com/")
        .body(String::new())
        .expect("request");
    let future = tower::Service::call(router.ready().await.expect("ready"), req);
    assert_eq!(
        checks.load(Ordering::SeqCst),
        1,
        "checked before the first poll"
    );
    let rsp = future.await.expect("answered");
    assert_eq!(rsp.into_body().into_inner().as_deref(), Some("checks=1"));
}

#[tokio::test]
async fn a_rule_service_not_ready_at_once_is_waited_for() {
    let (result, checks) = send(3, false).await;
    assert_eq!(result, Ok("checks=4".to_owned()), "answered once ready");
    assert_eq!(checks, 4, "three pending checks, then ready");
}

#[tokio::test]
async fn a_readiness_failure_is_the_requests_error() {
    assert_eq!(send(0, true).await.0, Err("not ready: failed"), "at once");
    assert_eq!(
        send(2, true).await.0,
        Err("not ready: failed"),
        "after waiting"
    );
}
