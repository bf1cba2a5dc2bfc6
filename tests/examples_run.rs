//! Runs the integration examples of `examples/` (built by `cargo test` with the tests) and
//! checks that each finishes its self-check.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

/// The built example `name`, building it when missing.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executables live in target/<profile>/deps");
    let bin = profile_dir.join("examples").join(name);
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --example");
        assert!(status.success(), "building the {name} example failed");
    }
    bin
}

/// Runs `name` to completion (killed by PID after a minute); returns (success, stdout, stderr).
fn run(name: &str) -> (bool, String, String) {
    let dir = std::env::temp_dir();
    let out_path = dir.join(format!(
        "linkerd-http-example-{name}-{}.out",
        std::process::id()
    ));
    let err_path = dir.join(format!(
        "linkerd-http-example-{name}-{}.err",
        std::process::id()
    ));
    let mut child = Command::new(example(name))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("create stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("create stderr file"))
        .spawn()
        .expect("start the example");
    let mut status = None;
    for _ in 0..600 {
        if let Some(s) = child.try_wait().expect("wait for the example") {
            status = Some(s);
            break;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let (out, err) = (read(&out_path), read(&err_path));
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    assert!(
        status.is_some(),
        "{name} did not finish within a minute; stderr:\n{err}"
    );
    (status.is_some_and(|s| s.success()), out, err)
}

#[test]
fn retry_client_replays_a_streamed_body() {
    let (ok, out, err) = run("retry_client");
    assert!(ok, "retry_client failed:\n{out}\n{err}");
    assert!(
        out.contains("client: 200 OK after 3 attempts"),
        "two 503s were retried:\n{out}"
    );
    assert_eq!(
        out.matches("same as sent: true").count(),
        3,
        "each attempt carried the streamed body:\n{out}"
    );
}

#[test]
fn instrumented_server_logs_counts_and_times_out() {
    let (ok, out, err) = run("instrumented_server");
    assert!(ok, "instrumented_server failed:\n{out}\n{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a JSON log line: {l}: {e}")))
        .collect();
    assert_eq!(lines.len(), 4, "one access-log line per request:\n{out}");
    let slow = lines
        .iter()
        .find(|l| l["uri"] == "/work?ms=5000")
        .expect("the slow request is logged");
    assert_eq!(slow["status"], 504, "the slow request was cut: {slow}");
    assert_eq!(
        slow["error"], "RESPONSE_HEADERS_TIMEOUT",
        "with its reason: {slow}"
    );
    assert!(
        err.lines().any(
            |l| l.starts_with("metric outbound_http_route_request_statuses_total")
                && l.contains("\"RESPONSE_HEADERS_TIMEOUT\"")
                && l.ends_with("= 1")
        ),
        "the metrics counted the timeout once:\n{err}"
    );
}

#[test]
fn grpc_retry_recovers_from_unavailable() {
    let (ok, out, err) = run("grpc_retry");
    assert!(ok, "grpc_retry failed:\n{out}\n{err}");
    assert!(
        out.contains("reply: hello, linkerd-http (call 2)"),
        "the second call answered:\n{out}"
    );
    assert!(
        out.contains("metrics: requests OK 1, retries 1, retry successes 1"),
        "one request, one retry, counted by the gRPC route metrics:\n{out}"
    );
}
