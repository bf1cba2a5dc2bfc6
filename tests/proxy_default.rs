//! `cargo run --release --example proxy` with no flags: the embedded default config and its
//! built-in demo backend answer `GET /` (here on ephemeral ports instead of 4140/4191).

mod support;

use linkerd_http_test_util::{HttpClient, collect};
use support::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_serves_the_demo_backend() {
    let proxy = Proxy::start_default(&[]);
    for mut client in [
        HttpClient::http1(proxy.addr).await.unwrap(),
        HttpClient::http2(proxy.addr).await.unwrap(),
    ] {
        let rsp = client.get("/").await.expect("response");
        assert_eq!(rsp.status(), 200, "the demo route answers");
        let body = collect(rsp.into_body()).await.unwrap();
        let text = String::from_utf8(body.data.to_vec()).unwrap();
        assert!(
            text.starts_with("hello from the linkerd-http demo backend"),
            "answered by the demo backend: {text:?}"
        );
    }
    let scrape = proxy
        .scrape_until(|s| {
            s.get(
                "outbound_http_route_request_statuses_total",
                &[
                    ("route_name", "demo"),
                    ("http_status", "200"),
                    ("grpc_status", ""),
                    ("error", ""),
                ],
            ) == Some(2.0)
        })
        .await;
    assert_eq!(
        scrape.get(
            "outbound_http_route_request_statuses_total",
            &[
                ("route_name", "demo"),
                ("http_status", "200"),
                ("grpc_status", ""),
                ("error", ""),
            ],
        ),
        Some(2.0),
        "both requests counted on the demo route"
    );
    // The admin server: GET and HEAD only; a 405 names them (RFC 9110 section 15.5.6).
    let mut admin = HttpClient::http1(proxy.admin).await.unwrap();
    for path in ["/live", "/ready", "/metrics"] {
        let rsp = admin.get(path).await.unwrap();
        assert_eq!(rsp.status(), 200, "{path}");
        collect(rsp.into_body()).await.unwrap();
        let post = http::Request::post(path)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let rsp = admin.send(post).await.unwrap();
        assert_eq!(rsp.status(), 405, "POST {path}");
        assert_eq!(rsp.headers()["allow"], "GET, HEAD", "POST {path}");
        collect(rsp.into_body()).await.unwrap();
    }
}

#[test]
fn embedded_default_passes_check() {
    let (code, stdout, stderr) = support::run_proxy(&["--check"]);
    assert_eq!(code, 0, "--check of the embedded default: {stdout}{stderr}");
    assert!(stdout.starts_with("config ok"), "{stdout}");
}
