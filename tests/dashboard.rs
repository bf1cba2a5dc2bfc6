//! The admin dashboard through the real proxy: the page in headless Chromium, `/api/stats`
//! against `/metrics`, and the tap's bound under a burst with a viewer that never reads.
//!
//! Chromium: `.ci/run` installs Debian's `chromium` when it runs as root. Outside CI a missing
//! browser skips the browser test with a loud message; with `CI=true` it fails.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use linkerd_http_test_util::{HttpClient, TestServer};
use std::{
    io::Write,
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};
use support::Proxy;

fn config(backend: SocketAddr) -> String {
    format!(
        "accessLog: {{ format: json, output: stderr }}
backends:
  - name: web
    protocol: http1
    endpoints: [{backend}]
routes:
  - name: api
    rules:
      - matches: [{{ path: {{ type: PathPrefix, value: /api }} }}]
        backendRefs: [{{ name: web }}]
"
    )
}

/// `chromium` on the PATH, if any.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
}

/// Runs headless Chromium on `url` and returns the DOM after scripts ran (bounded: killed by
/// PID after two minutes).
fn dump_dom(browser: &PathBuf, url: &str) -> String {
    let profile = support::tempdir::TempDir::new();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=5000", "--dump-dom", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut { stdout }, &mut out);
        out
    });
    let mut exited = None;
    for _ in 0..1200 {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            exited = Some(status);
            break;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("chromium did not finish within two minutes");
    }
    reader.join().expect("reader thread")
}

/// The HTML of the first `<tr ...>` element whose start tag contains `marker`.
fn row<'a>(dom: &'a str, marker: &'a str) -> Option<&'a str> {
    rows(dom, marker).next()
}

/// The HTML of every `<tr ...>` element whose start tag contains `marker`.
fn rows<'a>(dom: &'a str, marker: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    dom.match_indices(marker).filter_map(move |(at, _)| {
        let start = dom[..at].rfind("<tr")?;
        let end = dom[at..].find("</tr>")? + at;
        Some(&dom[start..end])
    })
}

/// The text of the cell `data-field="field"` inside `html`.
fn field<'a>(html: &'a str, field: &str) -> Option<&'a str> {
    let at = html.find(&format!("data-field=\"{field}\""))?;
    let open = html[at..].find('>')? + at + 1;
    let close = html[open..].find("</td>")? + open;
    Some(&html[open..close])
}

async fn get(client: &mut HttpClient, path: &str, status: u16) -> u16 {
    let req = http::Request::get(path)
        .header("x-test-status", status.to_string())
        .body(Empty::<Bytes>::new())
        .expect("valid request");
    let rsp = client.send(req).await.expect("response from the proxy");
    let code = rsp.status().as_u16();
    rsp.into_body().collect().await.expect("response body");
    code
}

async fn admin_text(admin: SocketAddr, path: &str) -> String {
    let mut client = HttpClient::http1(admin).await.expect("connect to admin");
    let rsp = client.get(path).await.expect("admin response");
    assert_eq!(rsp.status(), 200, "GET {path} on the admin server");
    let bytes = rsp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

const OK_PATH: &str = "/api/orders/42";
const FAIL_PATH: &str = "/api/orders/503-probe";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_success_rate_and_tapped_requests() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but chromium is not installed: .ci/run installs it (apt-get install chromium)"
        );
        // Written to the process's stderr directly: the test harness captures `eprintln!`, and
        // a skip must be seen.
        let _ = std::io::stderr().write_all(
            b"\n\n!!!!!!!! SKIPPED: chromium is not installed; the dashboard browser test did not \
              run (apt-get install chromium) !!!!!!!!\n\n",
        );
        return;
    };
    let backend = TestServer::backend().await.expect("backend");
    let proxy = Proxy::start(&config(backend.addr()), &[]);
    let mut client = HttpClient::http1(proxy.addr).await.expect("connect");
    for _ in 0..30 {
        assert_eq!(
            get(&mut client, OK_PATH, 200).await,
            200,
            "200 through the proxy"
        );
    }
    for _ in 0..10 {
        assert_eq!(
            get(&mut client, FAIL_PATH, 503).await,
            503,
            "503 through the proxy"
        );
    }

    // One source of truth: the JSON agrees with /metrics.
    let metrics = linkerd_http_prom::Scrape::parse(&admin_text(proxy.admin, "/metrics").await)
        .expect("metrics parse");
    let base = [("route_name", "api"), ("grpc_status", ""), ("error", "")];
    let count = |status: &str| {
        let mut labels = base.to_vec();
        labels.push(("http_status", status));
        metrics.get("outbound_http_route_request_statuses_total", &labels)
    };
    assert_eq!(
        (count("200"), count("503")),
        (Some(30.0), Some(10.0)),
        "metrics count the mix"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&admin_text(proxy.admin, "/api/stats").await).expect("JSON");
    let api = stats["routes"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "api"))
        .expect("route api in /api/stats");
    assert_eq!(
        api["requests"], 40.0,
        "stats count what metrics count: {api}"
    );
    assert_eq!(api["success_rate"], 0.75, "30 of 40: {api}");

    let dom = dump_dom(&browser, &format!("http://{}/", proxy.admin));
    let route = row(&dom, "data-route=\"api\" data-kind=\"http\"")
        .unwrap_or_else(|| panic!("the page has a row for route api; DOM:\n{dom}"));
    let rate = field(route, "success_rate").expect("a success-rate cell");
    let percent: f64 = rate
        .trim_end_matches('%')
        .parse()
        .unwrap_or_else(|_| panic!("success rate is a percentage: {rate:?}"));
    assert!(
        (percent - 75.0).abs() <= 1.0,
        "route api shows a 75% success rate, got {rate}"
    );

    let tap_rows: Vec<&str> = rows(&dom, "class=\"tap-row\"").collect();
    let failed = tap_rows
        .iter()
        .find(|r| field(r, "path") == Some(FAIL_PATH))
        .unwrap_or_else(|| panic!("a tap row with path {FAIL_PATH}; rows: {tap_rows:#?}"));
    assert_eq!(field(failed, "status"), Some("503"), "the tapped status");
    assert_eq!(field(failed, "route"), Some("api"), "the tapped route");
    assert_eq!(field(failed, "backend"), Some("web"), "the tapped backend");
    assert!(
        tap_rows.iter().any(|r| field(r, "path") == Some(OK_PATH)),
        "a tap row with path {OK_PATH}"
    );
}

/// A tap viewer that connects and never reads, during a burst of 5,000 requests: the tap
/// holds no more than its capacity and the proxy keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tap_viewer_keeps_the_tap_bounded() {
    const REQUESTS: usize = 5_000;
    const CONNECTIONS: usize = 16;
    let backend = TestServer::backend().await.expect("backend");
    let proxy = Proxy::start(&config(backend.addr()), &[]);

    let mut stalled = TcpStream::connect(proxy.admin).expect("connect to admin");
    write!(
        stalled,
        "GET /api/tap HTTP/1.1\r\nhost: admin\r\naccept: text/event-stream\r\n\r\n"
    )
    .expect("send the tap request");

    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut client = HttpClient::http1(addr).await.expect("connect");
            let mut ok = 0;
            for i in (c..REQUESTS).step_by(CONNECTIONS) {
                if get(&mut client, &format!("/api/burst/{i}"), 200).await == 200 {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.expect("client task");
    }
    assert_eq!(ok, REQUESTS, "every request of the burst succeeded");

    let stats: serde_json::Value =
        serde_json::from_str(&admin_text(proxy.admin, "/api/stats").await).expect("JSON");
    let tap = &stats["tap"];
    let capacity = tap["capacity"].as_u64().expect("capacity");
    let buffered = tap["buffered"].as_u64().expect("buffered");
    assert!(capacity > 0, "the tap has a capacity: {tap}");
    assert!(
        buffered <= capacity,
        "the tap holds at most its capacity: {tap}"
    );
    assert!(
        tap["seen"].as_u64().expect("seen") >= REQUESTS as u64,
        "the tap saw the burst: {tap}"
    );
    assert_eq!(
        tap["viewers"], 1,
        "the stalled viewer is still connected: {tap}"
    );
    drop(stalled);
}
