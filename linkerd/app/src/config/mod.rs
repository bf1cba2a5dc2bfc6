//! The proxy's YAML config (DESIGN.md section 4): model, parsing and validation.
//!
//! Every error — syntax or meaning — names the file, line, column and field path, and all
//! errors of a file are reported at once (each top-level section and each list entry is
//! deserialized on its own, so one bad backend does not hide a bad route).

mod duration;
mod error;
mod yaml;

pub use duration::{GwDuration, InvalidDuration, format_duration, parse_duration};
pub use error::{ConfigError, ConfigErrors};

use serde::{Deserialize, Serialize};
use std::{
    collections::HashSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};
use yaml::Document;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4140";
/// The default admin address.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:4191";

/// A validated proxy config.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// Where the admin server listens.
    pub admin: SocketAddr,
    /// Access log settings.
    pub access_log: AccessLogConfig,
    /// Server settings.
    pub server: ServerConfig,
    /// Backends, by name.
    pub backends: Vec<BackendConfig>,
    /// HTTPRoutes (raw specs; validated against the backends).
    pub routes: Vec<crate::routes::HttpRouteConfig>,
    /// GRPCRoutes.
    pub grpc_routes: Vec<crate::routes::GrpcRouteConfig>,
    /// Warnings (accepted-and-ignored fields).
    pub warnings: Vec<String>,
}

/// `accessLog`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccessLogConfig {
    /// `json`, `apache`, or a template with `%field%` placeholders.
    #[serde(default = "default_log_format")]
    pub format: String,
    /// `stdout`, `stderr`, or a file path.
    #[serde(default = "default_log_output")]
    pub output: String,
}

/// `server`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerConfig {
    /// Bounds protocol detection and each HTTP/1.1 request head (also the HTTP/1.1 idle
    /// keep-alive timeout).
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: GwDuration,
    /// HTTP/2 server settings.
    #[serde(default)]
    pub http2: Http2ServerConfig,
    /// How long graceful shutdown waits for in-flight requests and tunnels.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_period: GwDuration,
}

/// `server.http2`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Http2ServerConfig {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` advertised to clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<u32>,
    /// BDP-based adaptive flow-control windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive_window: Option<bool>,
    /// Keep-alive PING interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive_interval: Option<GwDuration>,
    /// Keep-alive PING timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive_timeout: Option<GwDuration>,
}

/// `backends[]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendConfig {
    /// The name routes refer to.
    pub name: String,
    /// The protocol spoken to the backend's endpoints.
    #[serde(default)]
    pub protocol: BackendProtocol,
    /// Static endpoint addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<SocketAddr>>,
    /// A DNS name (`host:port`) resolved periodically instead of static endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    /// How often `dns` is re-resolved (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_refresh: Option<GwDuration>,
    /// Connect timeout per endpoint (default 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<GwDuration>,
    /// With no ready endpoint for this long, requests fail at once with 503 (default 3s;
    /// `0s`: never, requests wait for an endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_fast: Option<GwDuration>,
    /// Requests waiting for an endpoint; beyond it, 503 `unavailable` (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<usize>,
}

/// `backends[].protocol`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendProtocol {
    /// HTTP/1.1 (pooled connections).
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c), one multiplexed connection.
    Http2,
}

/// A serializable view of a [`Config`] (see [`Config::to_document`]).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigDocument<'a> {
    listen: String,
    admin: String,
    access_log: &'a AccessLogConfig,
    server: &'a ServerConfig,
    backends: &'a [BackendConfig],
    routes: &'a [crate::routes::HttpRouteConfig],
    grpc_routes: &'a [crate::routes::GrpcRouteConfig],
}

/// The top-level keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // Deserialized only to reject unknown top-level keys.
struct TopLevel {
    listen: Option<serde::de::IgnoredAny>,
    admin: Option<serde::de::IgnoredAny>,
    access_log: Option<serde::de::IgnoredAny>,
    server: Option<serde::de::IgnoredAny>,
    backends: Option<serde::de::IgnoredAny>,
    routes: Option<serde::de::IgnoredAny>,
    grpc_routes: Option<serde::de::IgnoredAny>,
}

fn default_log_format() -> String {
    "json".to_owned()
}

fn default_log_output() -> String {
    "stdout".to_owned()
}

fn default_header_read_timeout() -> GwDuration {
    GwDuration(Duration::from_secs(10))
}

fn default_shutdown_grace() -> GwDuration {
    GwDuration(Duration::from_secs(10))
}

// === impl defaults ===

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            format: default_log_format(),
            output: default_log_output(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: default_header_read_timeout(),
            http2: Http2ServerConfig::default(),
            shutdown_grace_period: default_shutdown_grace(),
        }
    }
}

impl BackendConfig {
    /// The connect timeout (default 1s).
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout.map_or(Duration::from_secs(1), |d| d.0)
    }

    /// The fail-fast period (default 3s).
    pub fn fail_fast(&self) -> Duration {
        self.fail_fast.map_or(Duration::from_secs(3), |d| d.0)
    }

    /// The queue bound (default 100).
    pub fn queue(&self) -> usize {
        self.queue.unwrap_or(100)
    }

    /// The DNS refresh interval (default 5s).
    pub fn dns_refresh(&self) -> Duration {
        self.dns_refresh.map_or(Duration::from_secs(5), |d| d.0)
    }
}

// === impl Config ===

impl Config {
    /// Reads and validates the config file at `path`.
    ///
    /// # Errors
    /// A missing or unreadable file is one error naming the path; otherwise every problem in
    /// the file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                line: 0,
                column: 0,
                path: String::new(),
                message: format!("cannot read config file: {e}"),
            }])
        })?;
        Self::from_yaml(path, &text)
    }

    /// Parses and validates `text`, naming `file` in errors.
    ///
    /// # Errors
    /// Every problem in the document.
    pub fn from_yaml(file: &Path, text: &str) -> Result<Self, ConfigErrors> {
        // A byte-order mark (some editors write one) is not part of the first key.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let doc = Document::parse(file, text).map_err(|e| ConfigErrors(vec![e]))?;
        let mut errors = vec![];
        if let Err(e) = doc.deserialize::<TopLevel>("") {
            errors.push(e);
        }

        let mut addr = |key: &str, default: &str| -> SocketAddr {
            match doc.node(key) {
                None => default.parse().expect("default addresses parse"),
                Some(_) => match doc.deserialize::<String>(key) {
                    Ok(s) => s.parse().unwrap_or_else(|_| {
                        errors.push(doc.error_at(
                            key,
                            format!("invalid socket address {s:?}: expected IP:PORT"),
                        ));
                        default.parse().expect("default addresses parse")
                    }),
                    Err(e) => {
                        errors.push(e);
                        default.parse().expect("default addresses parse")
                    }
                },
            }
        };
        let listen = addr("listen", DEFAULT_LISTEN);
        let admin = addr("admin", DEFAULT_ADMIN);

        let access_log: AccessLogConfig =
            section(&doc, "accessLog", &mut errors).unwrap_or_default();
        let server: ServerConfig = section(&doc, "server", &mut errors).unwrap_or_default();
        if server.http2.max_concurrent_streams == Some(0) {
            errors.push(doc.error_at(
                "server.http2.maxConcurrentStreams",
                "maxConcurrentStreams must be at least 1 (0 refuses every HTTP/2 request)",
            ));
        }
        let indexed: Vec<(usize, BackendConfig)> = list(&doc, "backends", &mut errors);
        let mut names = HashSet::new();
        for (i, b) in &indexed {
            let at = format!("backends[{i}]");
            if !names.insert(b.name.clone()) {
                errors.push(doc.error_at(
                    &format!("{at}.name"),
                    format!("duplicate backend name {:?}", b.name),
                ));
            }
            match (&b.endpoints, &b.dns) {
                (Some(_), Some(_)) => errors.push(doc.error_at(
                    &format!("{at}.dns"),
                    "set either `endpoints` or `dns`, not both",
                )),
                (None, None) => errors.push(doc.error_at(
                    &at,
                    "a backend needs `endpoints` (a list, may be empty) or `dns`",
                )),
                (None, Some(dns)) if crate::discovery::split_host_port(dns).is_none() => {
                    errors.push(doc.error_at(
                        &format!("{at}.dns"),
                        format!("invalid DNS target {dns:?}: expected HOST:PORT"),
                    ));
                }
                _ => {}
            }
            if b.queue == Some(0) {
                errors.push(doc.error_at(&format!("{at}.queue"), "queue must be at least 1"));
            }
            if b.dns_refresh.is_some_and(|d| d.0.is_zero()) {
                errors.push(doc.error_at(
                    &format!("{at}.dnsRefresh"),
                    "dnsRefresh is an interval: it must be longer than 0s",
                ));
            }
        }
        let backends: Vec<BackendConfig> = indexed.into_iter().map(|(_, b)| b).collect();
        if let Err(e) = crate::routes::validate_access_log_format(&access_log.format) {
            errors.push(doc.error_at("accessLog.format", e));
        }
        if let Err(e) = check_log_output(&access_log.output) {
            errors.push(doc.error_at("accessLog.output", e));
        }

        let mut warnings = vec![];
        let (routes, grpc_routes) = crate::routes::load(&doc, &names, &mut errors, &mut warnings);

        if errors.is_empty() {
            Ok(Self {
                listen,
                admin,
                access_log,
                server,
                backends,
                routes,
                grpc_routes,
                warnings,
            })
        } else {
            errors.sort_by_key(|e| (e.line, e.column));
            Err(ConfigErrors(errors))
        }
    }

    /// A one-paragraph summary, printed by `--check`.
    pub fn summary(&self) -> String {
        use crate::routes::RuleCount;
        let rules: usize = self.routes.iter().map(RuleCount::rule_count).sum();
        let grpc_rules: usize = self.grpc_routes.iter().map(RuleCount::rule_count).sum();
        format!(
            "config ok: listen {}, admin {}, {} backend(s), {} route(s) with {} rule(s), {} gRPC route(s) with {} rule(s), access log {} to {}",
            self.listen,
            self.admin,
            self.backends.len(),
            self.routes.len(),
            rules,
            self.grpc_routes.len(),
            grpc_rules,
            self.access_log.format,
            self.access_log.output,
        )
    }

    /// The config as a serializable document with the file's field names (JSON output is
    /// valid YAML and parses back to an equal `Config`).
    pub fn to_document(&self) -> ConfigDocument<'_> {
        ConfigDocument {
            listen: self.listen.to_string(),
            admin: self.admin.to_string(),
            access_log: &self.access_log,
            server: &self.server,
            backends: &self.backends,
            routes: &self.routes,
            grpc_routes: &self.grpc_routes,
        }
    }

    /// The backend named `name`.
    pub fn backend(&self, name: &str) -> Option<&BackendConfig> {
        self.backends.iter().find(|b| b.name == name)
    }
}

/// Whether an access log file could be opened: its directory exists (the file is created at
/// start-up, not by `--check`) and it is not a directory itself.
fn check_log_output(output: &str) -> Result<(), String> {
    if output == "stdout" || output == "stderr" {
        return Ok(());
    }
    if output.is_empty() {
        return Err("expected stdout, stderr or a file path".to_owned());
    }
    let path = Path::new(output);
    if path.is_dir() {
        return Err(format!(
            "cannot write the access log to {output}: it is a directory"
        ));
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => Err(format!(
            "cannot write the access log to {output}: no directory {}",
            dir.display()
        )),
        _ => Ok(()),
    }
}

/// Deserializes an optional top-level mapping section.
fn section<T: serde::de::DeserializeOwned>(
    doc: &Document<'_>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    doc.node(key)?;
    match doc.deserialize(key) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// Deserializes each entry of an optional top-level list on its own, so every bad entry is
/// reported; returns the good entries with their index in the file.
pub(crate) fn list<T: serde::de::DeserializeOwned>(
    doc: &Document<'_>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<(usize, T)> {
    let Some(node) = doc.node(key) else {
        return vec![];
    };
    let Some(seq) = node.as_sequence() else {
        errors.push(doc.error_at(key, "expected a list"));
        return vec![];
    };
    (0..seq.len())
        .filter_map(|i| match doc.deserialize(&format!("{key}[{i}]")) {
            Ok(v) => Some((i, v)),
            Err(e) => {
                errors.push(e);
                None
            }
        })
        .collect()
}

pub(crate) use yaml::Document as YamlDocument;

/// The path given to errors of the embedded default config.
pub fn embedded_path() -> PathBuf {
    PathBuf::from("<embedded>")
}
