//! The config's `routes` and `grpcRoutes`: deserialized into `linkerd-http-route`'s config
//! types (one entry at a time, so every bad entry is reported), compiled and validated against
//! the configured backends, with each error's field path mapped to its line and column.

use crate::config::{Config, ConfigError, YamlDocument};
use linkerd_http_route::config::{
    CompiledRoutes, GrpcRouteConfig as GrpcSpec, HttpRouteConfig as HttpSpec, RoutesConfig,
};
use std::collections::HashSet;

/// An HTTPRoute entry (name + Gateway API HTTPRoute spec).
pub type HttpRouteConfig = HttpSpec;

/// A GRPCRoute entry (name + Gateway API GRPCRoute spec).
pub type GrpcRouteConfig = GrpcSpec;

/// Counts rules, for the `--check` summary.
pub trait RuleCount {
    /// The number of rules.
    fn rule_count(&self) -> usize;
}

impl RuleCount for HttpSpec {
    fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

impl RuleCount for GrpcSpec {
    fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

/// Checks an access-log format: `json`, `apache` or a template whose `%field%` names exist.
///
/// # Errors
/// An empty format, or a template placeholder naming an unknown field.
pub fn validate_access_log_format(format: &str) -> Result<(), String> {
    if format.trim().is_empty() {
        return Err("empty access log format: expected json, apache or a %field% template".into());
    }
    format
        .parse::<linkerd_http_access_log::Format>()
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Deserializes and validates the routes of `doc`; errors and warnings are appended.
pub(crate) fn load(
    doc: &YamlDocument<'_>,
    backends: &HashSet<String>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> (Vec<HttpSpec>, Vec<GrpcSpec>) {
    let before = errors.len();
    let http: Vec<(usize, HttpSpec)> = crate::config::list(doc, "routes", errors);
    let grpc: Vec<(usize, GrpcSpec)> = crate::config::list(doc, "grpcRoutes", errors);
    if errors.len() > before {
        // Some entries did not parse, so list positions no longer match file positions:
        // validate each parsed entry on its own and put its file index back in the paths.
        for (i, r) in &http {
            let one = RoutesConfig {
                routes: vec![r.clone()],
                grpc_routes: vec![],
            };
            push_errors(
                doc,
                &one,
                backends,
                errors,
                "routes[0]",
                &format!("routes[{i}]"),
            );
        }
        for (i, r) in &grpc {
            let one = RoutesConfig {
                routes: vec![],
                grpc_routes: vec![r.clone()],
            };
            push_errors(
                doc,
                &one,
                backends,
                errors,
                "grpcRoutes[0]",
                &format!("grpcRoutes[{i}]"),
            );
        }
    }
    let config = RoutesConfig {
        routes: http.into_iter().map(|(_, r)| r).collect(),
        grpc_routes: grpc.into_iter().map(|(_, r)| r).collect(),
    };
    if errors.len() == before {
        for path in config.ignored_fields() {
            let path = path.to_string();
            let at = doc.error_at(&path, "accepted and ignored");
            warnings.push(format!(
                "{}:{}:{}: {path}: field is accepted and ignored",
                at.file.display(),
                at.line,
                at.column
            ));
        }
        push_errors(doc, &config, backends, errors, "", "");
    }
    (config.routes, config.grpc_routes)
}

/// Compiles `config` and appends its errors, with the path prefix `from` replaced by `to`.
fn push_errors(
    doc: &YamlDocument<'_>,
    config: &RoutesConfig,
    backends: &HashSet<String>,
    errors: &mut Vec<ConfigError>,
    from: &str,
    to: &str,
) {
    if let Err(errs) = config.compile(|name| backends.contains(name)) {
        for e in errs {
            let path = e.path().to_string();
            let path = match path.strip_prefix(from) {
                Some(rest) if !from.is_empty() => format!("{to}{rest}"),
                _ => path,
            };
            errors.push(doc.error_at(&path, e.message()));
        }
    }
}

/// Compiles the (already validated) routes of `config`.
///
/// # Errors
/// Only if the config was not validated by [`Config::from_yaml`].
pub fn compile(config: &Config) -> Result<CompiledRoutes, String> {
    let routes = RoutesConfig {
        routes: config.routes.clone(),
        grpc_routes: config.grpc_routes.clone(),
    };
    routes
        .compile(|name| config.backend(name).is_some())
        .map_err(|errs| {
            errs.iter()
                .map(|e| format!("{}: {}", e.path(), e.message()))
                .collect::<Vec<_>>()
                .join("; ")
        })
}
