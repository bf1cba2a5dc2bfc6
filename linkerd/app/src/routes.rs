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
/// A template naming an unknown field, or an unterminated placeholder.
pub fn validate_access_log_format(format: &str) -> Result<(), String> {
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
    let mut bad = false;
    let before = errors.len();
    let routes: Vec<HttpSpec> = crate::config::list(doc, "routes", errors)
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    let grpc_routes: Vec<GrpcSpec> = crate::config::list(doc, "grpcRoutes", errors)
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    if errors.len() > before {
        // Indices of later entries would shift: validate meaning only when every entry parsed.
        bad = true;
    }
    let config = RoutesConfig {
        routes,
        grpc_routes,
    };
    if !bad {
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
        if let Err(errs) = config.compile(|name| backends.contains(name)) {
            for e in errs {
                errors.push(doc.error_at(&e.path().to_string(), e.message()));
            }
        }
    }
    (config.routes, config.grpc_routes)
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
