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

/// A rule service that counts its clones and answers with its rule's name.
struct Counted {
    name: &'static str,
    clones: Arc<AtomicUsize>,
    ready: bool,
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::SeqCst);
        Self {
            name: self.name,
            clones: self.clones.clone(),
            ready: self.ready,
        }
    }
}

impl tower::Service<Request<MirrorBody<String>>> for Counted {
    type Response = Response<String>;
    type Error = &'static str;
    type Future = Ready<Result<Response<String>, &'static str>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready {
            return Poll::Ready(Ok(()));
        }
        // Not ready for its first check, ready for its clone's.
        self.ready = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn call(&mut self, _: Request<MirrorBody<String>>) -> Self::Future {
        ready(Ok(Response::new(self.name.to_owned())))
    }
}

const TWO_RULES: &str = "
routes:
  - name: r
    rules:
      - matches: [{ path: { type: PathPrefix, value: /a } }]
        backendRefs: [{ name: a }]
      - matches: [{ path: { type: PathPrefix, value: /b } }]
        backendRefs: [{ name: b }]
";

/// Sends `GET http://example.com{path}` through `router` (a router over [`Counted`] rule
/// services) and returns the name of the rule that answered.
async fn answer<S>(router: &mut S, path: &str) -> String
where
    S: tower::Service<
            Request<String>,
            Response = Response<linkerd_http_route::RouteBody<String>>,
            Error = &'static str,
        >,
{
    let req = Request::get(format!("http://example.com{path}"))
        .body(String::new())
        .expect("request");
    let rsp = tower::Service::call(router.ready().await.expect("ready"), req)
        .await
        .expect("answered");
    rsp.into_body().into_inner().unwrap_or_default()
}

#[tokio::test]
async fn a_router_clone_keeps_the_service_of_the_rule_it_called_last() {
    let clones = Arc::new(AtomicUsize::new(0));
    let make_clones = clones.clone();
    let layer = RouteLayer::new(support::table(TWO_RULES));
    let router = layer.layer(move |rule: &Rule<RuleExtensions>| Counted {
        name: if rule.backends()[0].name.as_str() == "a" {
            "a"
        } else {
            "b"
        },
        clones: make_clones.clone(),
        ready: true,
    });
    let mut conn = router.clone();
    assert_eq!(answer(&mut conn, "/a").await, "a");
    assert_eq!(clones.load(Ordering::SeqCst), 1, "cloned on first use");
    assert_eq!(answer(&mut conn, "/a/1").await, "a");
    assert_eq!(answer(&mut conn, "/a/2").await, "a");
    assert_eq!(clones.load(Ordering::SeqCst), 1, "called in place");
    assert_eq!(answer(&mut conn, "/b").await, "b");
    assert_eq!(answer(&mut conn, "/b").await, "b");
    assert_eq!(clones.load(Ordering::SeqCst), 2, "the other rule's, once");
    assert_eq!(answer(&mut conn, "/a").await, "a");
    assert_eq!(clones.load(Ordering::SeqCst), 3, "back to the first rule");

    // Another clone of the router starts without a current service.
    let mut other = router.clone();
    assert_eq!(answer(&mut other, "/a").await, "a");
    assert_eq!(clones.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_current_service_not_ready_is_kept_and_a_clone_waited_for() {
    let clones = Arc::new(AtomicUsize::new(0));
    let make_clones = clones.clone();
    let mut router =
        RouteLayer::new(support::table(ROUTES)).layer(move |_: &Rule<RuleExtensions>| Counted {
            name: "r",
            clones: make_clones.clone(),
            ready: false,
        });
    for expected_clones in [2, 2] {
        assert_eq!(answer(&mut router, "/").await, "r", "answered once ready");
        assert_eq!(clones.load(Ordering::SeqCst), expected_clones);
    }
}
