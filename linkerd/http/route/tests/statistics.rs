//! Weights and injection ratios hold within 5 sigma over 10,000 seeded samples.

mod support;

use http::{Request, Response};
use linkerd_http_route::{BackendName, MirrorBody, RouteLayer, Rule, SharedRng, WeightedSplit};
use std::convert::Infallible;
use tower::{Layer, ServiceExt};

const N: u64 = 10_000;

/// Asserts `count` of `N` trials is within 5 sigma of probability `p`.
#[allow(clippy::cast_precision_loss)]
fn within_five_sigma(what: &str, count: u64, p: f64) {
    let n = N as f64;
    let mean = n * p;
    let sigma = (n * p * (1.0 - p)).sqrt();
    let got = count as f64;
    assert!(
        (got - mean).abs() <= 5.0 * sigma,
        "{what}: {count} of {N}, expected {mean} ± {}",
        5.0 * sigma
    );
}

fn backend(
    name: &'static str,
) -> tower::util::BoxCloneService<Request<()>, Response<&'static str>, Infallible> {
    tower::util::BoxCloneService::new(tower::service_fn(move |req: Request<()>| async move {
        assert_eq!(
            req.extensions()
                .get::<BackendName>()
                .map(BackendName::as_str),
            Some(name),
            "the request carries the picked backend's name"
        );
        Ok::<_, Infallible>(Response::new(name))
    }))
}

#[tokio::test]
async fn weighted_split_follows_weights() {
    let split = WeightedSplit::new(
        vec![
            (BackendName::new("web"), 90, backend("web")),
            (BackendName::new("canary"), 10, backend("canary")),
            (BackendName::new("off"), 0, backend("off")),
        ],
        SharedRng::seeded(42),
    )
    .expect("backends");
    let (mut web, mut canary) = (0, 0);
    for _ in 0..N {
        let rsp = split
            .clone()
            .oneshot(Request::new(()))
            .await
            .expect("infallible");
        let name = rsp
            .extensions()
            .get::<BackendName>()
            .expect("BackendName on the response");
        assert_eq!(
            name.as_str(),
            *rsp.body(),
            "the response names the backend that answered"
        );
        match *rsp.body() {
            "web" => web += 1,
            "canary" => canary += 1,
            other => panic!("weight 0 backend {other} was picked"),
        }
    }
    within_five_sigma("web (weight 90)", web, 0.9);
    within_five_sigma("canary (weight 10)", canary, 0.1);
    assert!(
        WeightedSplit::new(
            vec![(BackendName::new("a"), 0, backend("a"))],
            SharedRng::seeded(1)
        )
        .is_err(),
        "all weights 0 is NoBackends"
    );
}

type Ok200 =
    tower::util::BoxCloneService<Request<MirrorBody<String>>, Response<String>, Infallible>;

fn ok_service<P>(_: &Rule<P>) -> Ok200 {
    Ok200::new(tower::service_fn(|_req| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }))
}

#[tokio::test(start_paused = true)]
async fn injection_ratios_hold() {
    let t = support::table(
        r#"
routes:
  - name: r
    rules:
      - filters:
          - type: InjectFailure
            injectFailure: { status: 503, ratio: 0.1, delay: 1s, delayRatio: 0.05 }
        backendRefs: [{ name: web }]
"#,
    );
    let router = RouteLayer::new(t)
        .with_rng(SharedRng::seeded(7))
        .layer(ok_service);
    let (mut failed, mut delayed) = (0, 0);
    for _ in 0..N {
        let mut fut = tokio_test::task::spawn(
            router
                .clone()
                .oneshot(Request::get("http://x/").body(String::new()).expect("req")),
        );
        match fut.poll() {
            std::task::Poll::Ready(rsp) => {
                if rsp.expect("infallible").status() == 503 {
                    failed += 1;
                }
            }
            std::task::Poll::Pending => {
                // Delayed (by the paused clock): counted, then the failure draw is read after.
                delayed += 1;
                tokio::time::advance(std::time::Duration::from_secs(1)).await;
                if let std::task::Poll::Ready(rsp) = fut.poll() {
                    if rsp.expect("infallible").status() == 503 {
                        failed += 1;
                    }
                } else {
                    panic!("a delayed request completes after its delay");
                }
            }
        }
    }
    within_five_sigma("injected failures (ratio 0.1)", failed, 0.1);
    within_five_sigma("injected delays (ratio 0.05)", delayed, 0.05);
}
