//! The assembled linkerd-http proxy: config, listener, layer stack, backends, admin server.
//!
//! `examples/proxy.rs` is a thin wrapper around [`main_with_args`]; the config format and the
//! CLI are described in DESIGN.md section 4 and in the README.

pub mod admin;
mod attempt;
pub mod backend;
pub mod cli;
pub mod config;
pub mod dashboard;
mod deferred_write;
pub mod demo;
pub(crate) mod drain;
pub mod edge_metrics;
pub mod errors;
mod head_timeout;
mod presized;
pub mod routes;
pub mod server;
pub mod stack;
pub mod tap;

use cli::{Args, USAGE};
use config::{Config, embedded_path};
use linkerd_http_access_log::{AccessLogWriter, Format, Output, WriterConfig};
use linkerd_http_metrics::Metrics;
use linkerd_http_prom::MetricsService;
use std::{ffi::OsString, sync::Arc, time::Duration};

/// A boxed error.
pub type BoxError = linkerd_http_classify::BoxError;

/// The body type of the proxy's stack.
pub type BoxBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, BoxError>;

/// The body of the router's answers as the edge layers between it and the access log see
/// them: a rule stack's boxed body, or the empty body of an answer the router, the upgrade
/// layer or error mapping made. Kept unboxed up to the access log, where the whole response
/// is boxed once: a second box here cost an allocation and a dynamic call per poll.
pub type RouterBody = linkerd_http_route::RouteBody<BoxBody>;

/// The discovery module, re-exported for config validation.
pub(crate) use backend as discovery;

/// Runs the proxy with command-line `args` (without the program name); returns the exit code:
/// 0 after a clean shutdown or a successful `--check`, 2 for usage and config errors, 1 when
/// the proxy cannot start (e.g. an address is in use).
pub fn main_with_args<I, S>(args: I) -> i32
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let args = match Args::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return 2;
        }
    };
    if args.help {
        print!("{USAGE}");
        return 0;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    let mut access_log = None;
    let code = rt.block_on(run(args, &mut access_log));
    // Connections still open after the grace period, and their requests, end with the
    // runtime: each request's access-log line is queued as its future is dropped, and
    // written before the process exits.
    rt.shutdown_timeout(Duration::from_secs(1));
    if let Some(log) = access_log {
        log.flush_blocking();
    }
    code
}

/// `access_log` receives the access log's writer once it runs, for `main_with_args` to flush
/// after the runtime is gone.
async fn run(args: Args, access_log: &mut Option<AccessLogWriter>) -> i32 {
    // The embedded default starts the demo backend (not for --check, which validates only).
    let mut demo = None;
    let loaded = match &args.config {
        Some(path) => Config::from_file(path),
        None if args.check => Config::from_yaml(
            &embedded_path(),
            &demo::DEFAULT_CONFIG.replace("DEMO_BACKEND_ADDR", "127.0.0.1:0"),
        ),
        None => match demo::DemoBackend::start().await {
            Ok(d) => {
                let text = d.config();
                demo = Some(d);
                Config::from_yaml(&embedded_path(), &text)
            }
            Err(e) => {
                eprintln!("error: cannot start the demo backend: {e}");
                return 1;
            }
        },
    };
    let mut config = match loaded {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{} error(s) in the config", errors.0.len());
            return 2;
        }
    };
    if let Some(a) = args.listen {
        config.listen = a;
    }
    if let Some(a) = args.admin {
        config.admin = a;
    }
    if let Some(f) = &args.access_log {
        if let Err(e) = routes::validate_access_log_format(f) {
            eprintln!("error: --access-log: {e}");
            return 2;
        }
        config.access_log.format.clone_from(f);
    }
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    if args.check {
        println!("{}", config.summary());
        return 0;
    }
    let code = serve(config, access_log).await;
    drop(demo);
    code
}

async fn serve(mut config: Config, exit_log: &mut Option<AccessLogWriter>) -> i32 {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));

    let format = match config.access_log.format.parse::<Format>() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: accessLog.format: {e}");
            return 2;
        }
    };
    let output = match config.access_log.output.as_str() {
        "stdout" => Output::Stdout,
        "stderr" => Output::Stderr,
        path => Output::File(path.into()),
    };
    let mut writer_config = WriterConfig::new(format);
    writer_config.dropped = metrics.access_log_dropped.cell().clone();
    let access_log = match AccessLogWriter::spawn(output, writer_config) {
        Ok(w) => w,
        Err(e) => {
            eprintln!(
                "error: accessLog.output: cannot open {}: {e}",
                config.access_log.output
            );
            return 2;
        }
    };
    *exit_log = Some(access_log.clone());

    let compiled = match routes::compile(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };

    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", config.listen);
            return 2;
        }
    };
    let admin_listener = match tokio::net::TcpListener::bind(config.admin).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {} (admin): {e}", config.admin);
            return 2;
        }
    };
    let (Ok(listen), Ok(admin)) = (listener.local_addr(), admin_listener.local_addr()) else {
        eprintln!("error: cannot read the bound addresses");
        return 1;
    };
    // Redirects name the bound port (`--listen 127.0.0.1:0` binds an ephemeral one).
    config.listen = listen;
    let tap = tap::Tap::new(tap::TapConfig::default());
    let built = match stack::build(&config, &compiled, &metrics, access_log.clone(), &tap) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };

    let ready = admin::Readiness::default();
    // The dashboard reads the registry `/metrics` serves: one source of truth.
    let registry = Arc::new(registry);
    let dashboard = dashboard::Dashboard::new(registry.clone(), Some(tap));
    let sampler = dashboard.spawn_sampler();
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        MetricsService::new(registry),
        ready.clone(),
        dashboard,
    ));

    // Endpoint gauges follow the balancers' endpoint states.
    let gauges = {
        let metrics = metrics.clone();
        let backends = built.backends.clone();
        tokio::spawn(async move {
            loop {
                for (name, b) in &backends {
                    let s = b.states();
                    metrics.set_endpoints(
                        name,
                        u64::try_from(s.ready()).unwrap_or(0),
                        u64::try_from(s.pending()).unwrap_or(0),
                    );
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let reset_metrics = metrics.clone();
    let client_reset_metrics = metrics.clone();
    let params = server::ServerParams {
        header_read_timeout: config.server.header_read_timeout.0,
        h2: server_h2_settings(&config),
        on_reset: Some(server::ResetObserver::new(move |reason| {
            reset_metrics.record_reset(linkerd_http_prom::Direction::Outbound, reason);
        })),
        on_client_reset: Some(server::ResetObserver::new(move |reason| {
            client_reset_metrics.record_reset(linkerd_http_prom::Direction::Inbound, reason);
        })),
    };
    let conn_metrics = metrics.clone();
    let observer: server::ConnectionObserver = Arc::new(move |protocol| {
        let p = if protocol == "http2" {
            linkerd_http_prom::ConnectionProtocol::Http2
        } else {
            linkerd_http_prom::ConnectionProtocol::Http1
        };
        Box::new(conn_metrics.connection_opened(p))
    });

    eprintln!("listening on {listen}; admin on {admin}");
    ready.set_ready();
    let grace = config.server.shutdown_grace_period.0;
    let draining = ready.clone();
    let signalled = Arc::new(std::sync::OnceLock::new());
    let at = signalled.clone();
    let signal = async move {
        shutdown_signal().await;
        let _ = at.set(tokio::time::Instant::now());
        // Draining: `/ready` answers 503 so load balancers stop sending new requests.
        draining.set_not_ready();
    };
    server::serve(listener, built.service, params, observer, signal, grace).await;
    // One grace period for connections and tunnels together: an HTTP/2 connection carrying a
    // tunnel stays open until the tunnel ends, so the server's wait may have used it all.
    let left = signalled.get().map_or(grace, |at: &tokio::time::Instant| {
        grace.saturating_sub(at.elapsed())
    });
    built.tunnels.drain(left).await;
    access_log.flush_blocking();
    gauges.abort();
    sampler.abort();
    admin_task.abort();
    0
}

fn server_h2_settings(config: &Config) -> linkerd_http_h2::ServerSettings {
    let mut s = linkerd_http_h2::ServerSettings::default();
    let h2 = &config.server.http2;
    if let Some(n) = h2.max_concurrent_streams {
        s.max_concurrent_streams = Some(n);
    }
    if h2.adaptive_window == Some(false) {
        s.flow_control = linkerd_http_h2::FlowControl::Fixed {
            stream: 65_535,
            connection: 1 << 20,
        };
    }
    if let Some(interval) = h2.keep_alive_interval {
        let timeout = h2
            .keep_alive_timeout
            .map_or(Duration::from_secs(20), |d| d.0);
        s.keep_alive = if interval.0.is_zero() {
            None
        } else {
            Some(linkerd_http_h2::KeepAlive {
                interval: interval.0,
                timeout,
            })
        };
    }
    s
}

/// Resolves on SIGTERM or ctrl-c.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
