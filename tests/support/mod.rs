//! Starts `examples/proxy` as a subprocess with a YAML config and reads its startup line.

#![allow(dead_code, unreachable_pub)] // Each test file uses a different part of this module.

pub mod raw_h2;
pub mod reliability;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

/// A running proxy process; killed (by PID) when dropped.
pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempdir::TempDir,
    pub stderr: mpsc::Receiver<String>,
}

/// The path of the built `proxy` example, building it if needed.
pub fn proxy_bin() -> PathBuf {
    // target/<profile>/deps/<test> -> target/<profile>/examples/proxy
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executables live in target/<profile>/deps");
    let bin = profile_dir.join("examples").join("proxy");
    // `cargo test --test NAME` does not build examples: build (or confirm up to date) once per
    // test process, so a suite never runs a stale binary.
    static BUILT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--example", "proxy"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        cmd.status().is_ok_and(|s| s.success())
    });
    assert!(*built, "building the proxy example failed");
    bin
}

impl Proxy {
    /// Starts the proxy with `yaml` (listen and admin on ephemeral ports) and `extra` flags.
    pub fn start(yaml: &str, extra: &[&str]) -> Self {
        let dir = tempdir::TempDir::new();
        let config = dir.path().join("proxy.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let config = config.to_str().expect("UTF-8 temp path").to_owned();
        let mut args = vec!["--config", config.as_str()];
        args.extend_from_slice(extra);
        Self::spawn(dir, &args)
    }

    /// Starts the proxy with only `extra` flags (no `--config`: the embedded default), listen
    /// and admin on ephemeral ports.
    pub fn start_default(extra: &[&str]) -> Self {
        Self::spawn(tempdir::TempDir::new(), extra)
    }

    fn spawn(dir: tempdir::TempDir, args: &[&str]) -> Self {
        let mut cmd = Command::new(proxy_bin());
        cmd.args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn proxy");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = vec![];
        let (addr, admin) = loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("listening on ") {
                        let (a, b) = rest.split_once("; admin on ").expect("startup line format");
                        break (a.parse().unwrap(), b.parse().unwrap());
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("the proxy did not print its startup line; stderr: {seen:#?}");
                }
            }
        };
        Self {
            child,
            addr,
            admin,
            dir,
            stderr: rx,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// Sends SIGTERM with the `kill` command (no unsafe code, no signal crate).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits (bounded) for the process to exit; `None` if it is still running after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let steps = limit.as_millis() / 20 + 1;
        for _ in 0..steps {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
        None
    }

    /// Scrapes admin `/metrics` once and parses it.
    pub async fn scrape(&self) -> linkerd_http_prom::Scrape {
        let mut client = linkerd_http_test_util::HttpClient::http1(self.admin)
            .await
            .expect("connect to the admin server");
        let rsp = client.get("/metrics").await.expect("GET /metrics");
        assert_eq!(rsp.status(), 200, "GET /metrics status");
        let body = linkerd_http_test_util::collect(rsp.into_body())
            .await
            .expect("read /metrics");
        let text = String::from_utf8(body.data.to_vec()).expect("/metrics is UTF-8");
        linkerd_http_prom::Scrape::parse(&text).expect("/metrics parses")
    }

    /// Scrapes until `check` holds (metrics are recorded when response bodies end, which may
    /// be a moment after the client saw the end); returns the last scrape either way, so the
    /// caller's assertion reports the values.
    pub async fn scrape_until(
        &self,
        mut check: impl FnMut(&linkerd_http_prom::Scrape) -> bool,
    ) -> linkerd_http_prom::Scrape {
        let mut scrape = self.scrape().await;
        for _ in 0..100 {
            if check(&scrape) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            scrape = self.scrape().await;
        }
        scrape
    }

    /// Every stderr line printed so far (after the startup line).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }
}

/// Runs the proxy binary with `args` to completion; returns (exit code, stdout, stderr).
pub fn run_proxy(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(proxy_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run proxy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A temporary directory removed on drop (no extra dependency).
pub mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "linkerd-http-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            Self(dir)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
