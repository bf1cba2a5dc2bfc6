//! Config types for the `routes` and `grpcRoutes` of the proxy's YAML (DESIGN.md section 4),
//! with the Gateway API field names (`requestHeaderModifier`, `backendRefs`, `queryParams`).
//!
//! Deserializing checks only the shape: unknown fields are errors, except `parentRefs`,
//! `rules[].name` and `backendRefs[].port|kind|group|namespace`, which are accepted and ignored
//! ([`RoutesConfig::ignored_fields`] lists them, for a warning). [`RoutesConfig::compile`] then
//! checks every value (regexes, header names, durations, statuses, filter combinations,
//! backend names) and reports every problem as a [`ConfigError`] whose [`FieldPath`]
//! (`routes[0].rules[1].backendRefs[0].name`) a span-aware YAML parser maps to a line and
//! column.
//!
//! ```
//! use linkerd_http_route::config::RoutesConfig;
//!
//! let yaml = r#"
//! routes:
//!   - name: api
//!     hostnames: [api.example.com]
//!     rules:
//!       - matches: [{ path: { type: PathPrefix, value: /api } }]
//!         backendRefs: [{ name: web }]
//!       - backendRefs: [{ name: nope }]
//! "#;
//! let config: RoutesConfig = marked_yaml::from_yaml(0, yaml).unwrap();
//! let errors = config.compile(|name| name == "web").unwrap_err();
//! assert_eq!(errors[0].path().to_string(), "routes[0].rules[1].backendRefs[0].name");
//! assert_eq!(errors[0].message(), "unknown backend \"nope\"");
//! ```

use crate::{
    BackendName, BackendRef, ConfigError, FieldPath, Filter, GrpcNameMatch, GrpcRequestMatch,
    GrpcRoute, GrpcRule, HeaderMatch, HeaderModifier, Hostname, HttpRequestMatch, HttpRoute,
    HttpRule, InjectAbort, InjectDelay, InjectFailure, InvalidValue, PathMatch, PathModifier,
    Pattern, QueryParamMatch, RequestMirror, RequestRedirect, UrlRewrite, http_status_for_grpc,
    model::{header_name, header_value},
};
use http::{Method, StatusCode};
use linkerd_http_classify::GrpcCode;
use serde::{Deserialize, Serialize, de::IgnoredAny};
use std::{borrow::Cow, time::Duration};

/// The `routes` and `grpcRoutes` lists of the config file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutesConfig {
    /// HTTPRoutes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<HttpRouteConfig>,
    /// GRPCRoutes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grpc_routes: Vec<GrpcRouteConfig>,
}

/// One `routes[]` entry: `name` plus an HTTPRoute spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteConfig {
    /// The route's name.
    pub name: String,
    /// Accepted and ignored.
    #[serde(default, skip_serializing)]
    pub parent_refs: Option<IgnoredAny>,
    /// Hostnames (`api.example.com`, `*.example.com`); none means any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<HttpRuleConfig>,
}

/// One `routes[].rules[]` entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRuleConfig {
    /// Accepted and ignored.
    #[serde(default, skip_serializing)]
    pub name: Option<IgnoredAny>,
    /// Matches (any one); none means `PathPrefix /`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatchConfig>,
    /// Filters, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterConfig>,
    /// Backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<BackendRefConfig>,
    /// GEP-1742 timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<TimeoutsConfig>,
    /// GEP-1731 retry (plus extensions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// Stream timeouts (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_timeouts: Option<StreamTimeoutsConfig>,
}

/// One `matches[]` entry of an HTTPRoute rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatchConfig {
    /// The path condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatchConfig>,
    /// Header conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatchConfig>,
    /// Query parameter conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<ValueMatchConfig>,
    /// The method (`GET`, `POST`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// `path: { type, value }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathMatchConfig {
    /// `Exact`, `PathPrefix` (default) or `RegularExpression`.
    #[serde(rename = "type", default)]
    pub kind: PathMatchType,
    /// The path or pattern (default `/`).
    #[serde(default = "root_path")]
    pub value: String,
}

/// The `type` of a path match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathMatchType {
    /// `Exact`.
    Exact,
    /// `PathPrefix`.
    #[default]
    PathPrefix,
    /// `RegularExpression`.
    RegularExpression,
}

/// A header or query parameter condition: `{ type, name, value }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValueMatchConfig {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(rename = "type", default)]
    pub kind: ValueMatchType,
    /// The header or parameter name.
    pub name: String,
    /// The value or pattern.
    pub value: String,
}

/// The `type` of a header, query parameter or gRPC method match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueMatchType {
    /// `Exact`.
    #[default]
    Exact,
    /// `RegularExpression`.
    RegularExpression,
}

/// One `filters[]` entry: `type` and the field named after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterConfig {
    /// Which filter.
    #[serde(rename = "type")]
    pub kind: FilterType,
    /// For `RequestHeaderModifier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifierConfig>,
    /// For `ResponseHeaderModifier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifierConfig>,
    /// For `RequestRedirect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<RequestRedirectConfig>,
    /// For `URLRewrite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<UrlRewriteConfig>,
    /// For `RequestMirror`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<RequestMirrorConfig>,
    /// For `InjectFailure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_failure: Option<InjectFailureConfig>,
}

/// A filter's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilterType {
    /// `RequestHeaderModifier`.
    RequestHeaderModifier,
    /// `ResponseHeaderModifier`.
    ResponseHeaderModifier,
    /// `RequestRedirect`.
    RequestRedirect,
    /// `URLRewrite`.
    #[serde(rename = "URLRewrite")]
    UrlRewrite,
    /// `RequestMirror`.
    RequestMirror,
    /// `InjectFailure` (extension).
    InjectFailure,
}

impl FilterType {
    /// The name the config file gives the type.
    pub fn name(self) -> &'static str {
        match self {
            Self::RequestHeaderModifier => "RequestHeaderModifier",
            Self::ResponseHeaderModifier => "ResponseHeaderModifier",
            Self::RequestRedirect => "RequestRedirect",
            Self::UrlRewrite => "URLRewrite",
            Self::RequestMirror => "RequestMirror",
            Self::InjectFailure => "InjectFailure",
        }
    }
}

/// `{ set, add, remove }`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderModifierConfig {
    /// Headers overwritten.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HeaderConfig>,
    /// Headers appended to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HeaderConfig>,
    /// Header names removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// `{ name, value }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderConfig {
    /// The header name.
    pub name: String,
    /// The value.
    pub value: String,
}

/// `requestRedirect: { scheme, hostname, port, statusCode, path }`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestRedirectConfig {
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// 301, 302 (default), 303, 307 or 308.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u32>,
    /// The path change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifierConfig>,
}

/// `urlRewrite: { hostname, path }`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UrlRewriteConfig {
    /// The new host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The path change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifierConfig>,
}

/// `path: { type: ReplaceFullPath, replaceFullPath }` or
/// `{ type: ReplacePrefixMatch, replacePrefixMatch }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathModifierConfig {
    /// Which change.
    #[serde(rename = "type")]
    pub kind: PathModifierType,
    /// For `ReplaceFullPath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,
    /// For `ReplacePrefixMatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}

/// A path modifier's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathModifierType {
    /// `ReplaceFullPath`.
    ReplaceFullPath,
    /// `ReplacePrefixMatch`.
    ReplacePrefixMatch,
}

/// `requestMirror: { backendRef, percent | fraction }` (default: every request).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestMirrorConfig {
    /// The backend receiving the copies (a reference without `weight`).
    pub backend_ref: BackendRefConfig,
    /// Percentage of requests mirrored, 0-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    /// Share of requests mirrored as a fraction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<FractionConfig>,
}

/// `{ numerator, denominator }` (denominator default 100).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FractionConfig {
    /// The numerator.
    pub numerator: u32,
    /// The denominator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denominator: Option<u32>,
}

/// `injectFailure: { status | grpcStatus, ratio, message, delay, delayRatio }` (extension).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InjectFailureConfig {
    /// HTTP status of the failure (`routes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    /// gRPC code of the failure (`grpcRoutes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
    /// Share of requests failed (default 1 when a status is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// The failure's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Latency added (Gateway API duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// Share of requests delayed (default 1 when a delay is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ratio: Option<f64>,
}

/// One `backendRefs[]` entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendRefConfig {
    /// A backend defined in `backends`.
    pub name: String,
    /// Relative weight (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Accepted and ignored.
    #[serde(default, skip_serializing)]
    pub port: Option<IgnoredAny>,
    /// Accepted and ignored.
    #[serde(default, skip_serializing)]
    pub kind: Option<IgnoredAny>,
    /// Accepted and ignored.
    #[serde(default, skip_serializing)]
    pub group: Option<IgnoredAny>,
    /// Accepted and ignored.
    #[serde(default, skip_serializing)]
    pub namespace: Option<IgnoredAny>,
}

/// `timeouts: { request, backendRequest }` (GEP-1742; `0s` disables).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// Bounds the whole request, retries included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Bounds each attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<String>,
}

/// `retry: { codes, attempts, backoff, maxBackoff, maxRequestBytes, budget }`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryConfig {
    /// Retryable HTTP statuses (`routes`) or gRPC codes, by name or number (`grpcRoutes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<CodeConfig>,
    /// Maximum number of retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Minimum wait before a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
    /// Maximum wait before a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<String>,
    /// Largest request body buffered for replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_bytes: Option<u64>,
    /// Retry budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetConfig>,
}

/// A retry code: a number (`503`, `14`) or a name (`unavailable`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CodeConfig {
    /// A number.
    Number(u32),
    /// A name (or a number written as a string).
    Name(String),
}

/// `budget: { ratio, minPerSecond }`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetConfig {
    /// Retries allowed per request, as a share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// Retries always allowed per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_per_second: Option<u32>,
}

/// `streamTimeouts: { responseHeaders, response, idle }` (extension).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamTimeoutsConfig {
    /// Until the response headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<String>,
    /// Until the end of the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// Between frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<String>,
}

/// One `grpcRoutes[]` entry: `name` plus a GRPCRoute spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcRouteConfig {
    /// The route's name.
    pub name: String,
    /// Accepted and ignored.
    #[serde(default, skip_serializing)]
    pub parent_refs: Option<IgnoredAny>,
    /// Hostnames; none means any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<GrpcRuleConfig>,
}

/// One `grpcRoutes[].rules[]` entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcRuleConfig {
    /// Accepted and ignored.
    #[serde(default, skip_serializing)]
    pub name: Option<IgnoredAny>,
    /// Matches (any one); none matches every gRPC request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<GrpcMatchConfig>,
    /// Filters (`RequestHeaderModifier`, `ResponseHeaderModifier`, `RequestMirror`,
    /// `InjectFailure`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterConfig>,
    /// Backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<BackendRefConfig>,
    /// Timeouts (extension for GRPCRoute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<TimeoutsConfig>,
    /// Retry (extension for GRPCRoute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// Stream timeouts (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_timeouts: Option<StreamTimeoutsConfig>,
}

/// One `matches[]` entry of a GRPCRoute rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcMatchConfig {
    /// The service/method condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<GrpcMethodMatchConfig>,
    /// Header conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatchConfig>,
}

/// `method: { type, service, method }` (at least one of `service` and `method`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcMethodMatchConfig {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(rename = "type", default)]
    pub kind: ValueMatchType,
    /// The service (`helloworld.Greeter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The method (`SayHello`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// The validated extensions of a rule (`timeouts`, `retry`, `streamTimeouts`): the policy
/// type of compiled routes, for the application to map into its own.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RuleExtensions {
    /// `timeouts`.
    pub timeouts: Option<Timeouts>,
    /// `retry`.
    pub retry: Option<Retry>,
    /// `streamTimeouts`.
    pub stream_timeouts: Option<StreamTimeouts>,
}

/// Validated `timeouts` (`Some(Duration::ZERO)` means disabled, as configured with `0s`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// `request`.
    pub request: Option<Duration>,
    /// `backendRequest`.
    pub backend_request: Option<Duration>,
}

/// Validated `retry`; absent fields are left to the application's defaults.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Retry {
    /// Retryable HTTP statuses (`routes`).
    pub http_codes: Vec<StatusCode>,
    /// Retryable gRPC codes (`grpcRoutes`).
    pub grpc_codes: Vec<GrpcCode>,
    /// `attempts`: the maximum number of retries.
    pub attempts: Option<u32>,
    /// `backoff`.
    pub backoff: Option<Duration>,
    /// `maxBackoff`.
    pub max_backoff: Option<Duration>,
    /// `maxRequestBytes`.
    pub max_request_bytes: Option<u64>,
    /// `budget.ratio`.
    pub budget_ratio: Option<f64>,
    /// `budget.minPerSecond`.
    pub budget_min_per_second: Option<u32>,
}

/// Validated `streamTimeouts`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamTimeouts {
    /// `responseHeaders`.
    pub response_headers: Option<Duration>,
    /// `response`.
    pub response: Option<Duration>,
    /// `idle`.
    pub idle: Option<Duration>,
}

/// Routes ready for [`RouteTable::new`](crate::RouteTable::new) (after the application maps
/// the policies with `map_policy`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CompiledRoutes {
    /// The HTTPRoutes, in file order.
    pub http: Vec<HttpRoute<RuleExtensions>>,
    /// The GRPCRoutes, in file order.
    pub grpc: Vec<GrpcRoute<RuleExtensions>>,
}

fn root_path() -> String {
    "/".to_owned()
}

/// Parses a Gateway API duration: 1 to 4 parts of 1 to 5 digits followed by `h`, `m`, `s` or
/// `ms` (`500ms`, `10s`, `1m30s`, `1h`).
///
/// # Errors
///
/// When `s` does not have that form.
pub fn parse_duration(s: &str) -> Result<Duration, InvalidValue> {
    let invalid = || {
        InvalidValue::new(format!(
            "invalid duration {s:?}: expected Gateway API syntax such as 500ms, 10s, 1m30s or 1h"
        ))
    };
    let mut rest = s;
    let mut total = Duration::ZERO;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return Err(invalid());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else {
            return Err(invalid());
        };
        rest = &rest[len..];
        let n = u32::try_from(n).map_err(|_| invalid())?;
        total += unit * n;
        parts += 1;
        if parts > 4 {
            return Err(invalid());
        }
    }
    if parts == 0 {
        return Err(invalid());
    }
    Ok(total)
}

/// Collects errors while compiling.
struct Errors(Vec<ConfigError>);

impl Errors {
    fn add(&mut self, path: FieldPath, message: impl Into<String>) {
        self.0.push(ConfigError::new(path, message));
    }

    fn check<T>(&mut self, path: &FieldPath, r: Result<T, InvalidValue>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(path.clone(), e.message());
                None
            }
        }
    }

    fn duration(&mut self, path: &FieldPath, value: Option<&String>) -> Option<Duration> {
        let value = value?;
        self.check(path, parse_duration(value))
    }

    fn ratio(&mut self, path: FieldPath, value: Option<f64>) -> f64 {
        match value {
            None => 1.0,
            Some(r) if (0.0..=1.0).contains(&r) => r,
            Some(r) => {
                self.add(path, format!("ratio {r} is outside [0, 1]"));
                0.0
            }
        }
    }
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

impl RoutesConfig {
    /// Accepted-and-ignored fields present in the config, for a warning each.
    pub fn ignored_fields(&self) -> Vec<FieldPath> {
        let mut out = Vec::new();
        // Per rule: each backend reference's, and each mirror's `backendRef`'s.
        let rule_ignored = |out: &mut Vec<FieldPath>,
                            rule: &FieldPath,
                            refs: &[BackendRefConfig],
                            filters: &[FilterConfig]| {
            for (k, b) in refs.iter().enumerate() {
                ignored_of_ref(out, &rule.field("backendRefs").index(k), b);
            }
            for (k, f) in filters.iter().enumerate() {
                if let Some(m) = &f.request_mirror {
                    let path = rule
                        .field("filters")
                        .index(k)
                        .field("requestMirror")
                        .field("backendRef");
                    ignored_of_ref(out, &path, &m.backend_ref);
                }
            }
        };
        for (i, r) in self.routes.iter().enumerate() {
            let rp = FieldPath::root().field("routes").index(i);
            if r.parent_refs.is_some() {
                out.push(rp.field("parentRefs"));
            }
            for (j, rule) in r.rules.iter().enumerate() {
                let up = rp.field("rules").index(j);
                if rule.name.is_some() {
                    out.push(up.field("name"));
                }
                rule_ignored(&mut out, &up, &rule.backend_refs, &rule.filters);
            }
        }
        for (i, r) in self.grpc_routes.iter().enumerate() {
            let rp = FieldPath::root().field("grpcRoutes").index(i);
            if r.parent_refs.is_some() {
                out.push(rp.field("parentRefs"));
            }
            for (j, rule) in r.rules.iter().enumerate() {
                let up = rp.field("rules").index(j);
                if rule.name.is_some() {
                    out.push(up.field("name"));
                }
                rule_ignored(&mut out, &up, &rule.backend_refs, &rule.filters);
            }
        }
        out
    }

    /// Validates every value and builds the routes; `backend_exists` says whether a
    /// `backendRefs[].name` (or mirror `backendRef.name`) names a configured backend.
    ///
    /// # Errors
    ///
    /// Every problem, each with its field path from the top of the file.
    pub fn compile(
        &self,
        backend_exists: impl Fn(&str) -> bool,
    ) -> Result<CompiledRoutes, Vec<ConfigError>> {
        let mut errors = Errors(Vec::new());
        let mut names = std::collections::HashSet::new();
        let http: Vec<_> = self
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let path = FieldPath::root().field("routes").index(i);
                if !names.insert(r.name.as_str()) {
                    errors.add(
                        path.field("name"),
                        format!("duplicate route name {:?}", r.name),
                    );
                }
                compile_http_route(&mut errors, &path, r, &backend_exists)
            })
            .collect();
        let grpc: Vec<_> = self
            .grpc_routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let path = FieldPath::root().field("grpcRoutes").index(i);
                if !names.insert(r.name.as_str()) {
                    errors.add(
                        path.field("name"),
                        format!("duplicate route name {:?}", r.name),
                    );
                }
                compile_grpc_route(&mut errors, &path, r, &backend_exists)
            })
            .collect();
        errors.0.extend(crate::validate(&http, &grpc));
        if errors.0.is_empty() {
            Ok(CompiledRoutes { http, grpc })
        } else {
            Err(errors.0)
        }
    }
}

/// The accepted-and-ignored fields present in a backend reference.
fn ignored_of_ref(out: &mut Vec<FieldPath>, path: &FieldPath, b: &BackendRefConfig) {
    for (field, present) in [
        ("port", b.port.is_some()),
        ("kind", b.kind.is_some()),
        ("group", b.group.is_some()),
        ("namespace", b.namespace.is_some()),
    ] {
        if present {
            out.push(path.field(field));
        }
    }
}

fn hostnames(errors: &mut Errors, path: &FieldPath, hosts: &[String]) -> Vec<Hostname> {
    hosts
        .iter()
        .enumerate()
        .filter_map(|(i, h)| errors.check(&path.field("hostnames").index(i), gateway_hostname(h)))
        .collect()
}

/// A hostname as the Gateway API's `Hostname` type takes it: [`Hostname::parse`]'s DNS name
/// or `*.` wildcard, with the API's two further rules: no IP address ("IPs are not
/// allowed"), and labels of lower-case letters, digits and `-` only (no upper case, no
/// trailing dot: "No other punctuation is allowed").
fn gateway_hostname(value: &str) -> Result<Hostname, InvalidValue> {
    let name = value.strip_prefix("*.").unwrap_or(value);
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(InvalidValue::new(format!(
            "invalid hostname {value:?}: IP addresses are not allowed"
        )));
    }
    if name.ends_with('.') || name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(InvalidValue::new(format!(
            "invalid hostname {value:?}: expected lower-case labels without a trailing dot"
        )));
    }
    Hostname::parse(value)
}

fn compile_http_route(
    errors: &mut Errors,
    path: &FieldPath,
    r: &HttpRouteConfig,
    backend_exists: &impl Fn(&str) -> bool,
) -> HttpRoute<RuleExtensions> {
    if r.name.is_empty() {
        errors.add(path.field("name"), "route name must not be empty");
    }
    let mut route = HttpRoute::new(r.name.as_str());
    route.hostnames = hostnames(errors, path, &r.hostnames);
    for (j, rule) in r.rules.iter().enumerate() {
        let up = path.field("rules").index(j);
        let mut out = HttpRule::new(extensions(
            errors,
            &up,
            rule.timeouts.as_ref(),
            rule.retry.as_ref(),
            rule.stream_timeouts.as_ref(),
            false,
        ));
        for (k, m) in rule.matches.iter().enumerate() {
            out.matches
                .push(http_match(errors, &up.field("matches").index(k), m));
        }
        out.filters = filters(errors, &up, &rule.filters, backend_exists, false);
        out.backends = backends(errors, &up, &rule.backend_refs, backend_exists);
        route.rules.push(out);
    }
    route
}

fn compile_grpc_route(
    errors: &mut Errors,
    path: &FieldPath,
    r: &GrpcRouteConfig,
    backend_exists: &impl Fn(&str) -> bool,
) -> GrpcRoute<RuleExtensions> {
    if r.name.is_empty() {
        errors.add(path.field("name"), "route name must not be empty");
    }
    let mut route = GrpcRoute::new(r.name.as_str());
    route.hostnames = hostnames(errors, path, &r.hostnames);
    for (j, rule) in r.rules.iter().enumerate() {
        let up = path.field("rules").index(j);
        let mut out = GrpcRule::new(extensions(
            errors,
            &up,
            rule.timeouts.as_ref(),
            rule.retry.as_ref(),
            rule.stream_timeouts.as_ref(),
            true,
        ));
        for (k, m) in rule.matches.iter().enumerate() {
            let mp = up.field("matches").index(k);
            let mut gm = GrpcRequestMatch {
                headers: header_matches(errors, &mp, &m.headers),
                ..GrpcRequestMatch::default()
            };
            if let Some(method) = &m.method {
                let mp = mp.field("method");
                if method.service.is_none() && method.method.is_none() {
                    errors.add(mp.clone(), "a method match needs `service` or `method`");
                }
                let name = |errors: &mut Errors, field: &'static str, v: Option<&String>| {
                    let v = v?;
                    match method.kind {
                        ValueMatchType::Exact => {
                            if v.is_empty() || v.contains('/') {
                                errors.add(
                                    mp.field(field),
                                    format!("invalid gRPC {field} name {v:?}"),
                                );
                                None
                            } else {
                                Some(GrpcNameMatch::Exact(v.as_str().into()))
                            }
                        }
                        ValueMatchType::RegularExpression => errors
                            .check(&mp.field(field), Pattern::new(v))
                            .map(GrpcNameMatch::Regex),
                    }
                };
                gm.service = name(errors, "service", method.service.as_ref());
                gm.method = name(errors, "method", method.method.as_ref());
            }
            out.matches.push(gm);
        }
        out.filters = filters(errors, &up, &rule.filters, backend_exists, true);
        out.backends = backends(errors, &up, &rule.backend_refs, backend_exists);
        route.rules.push(out);
    }
    route
}

fn header_matches(
    errors: &mut Errors,
    path: &FieldPath,
    headers: &[ValueMatchConfig],
) -> Vec<HeaderMatch> {
    headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let hp = path.field("headers").index(i);
            let name = errors.check(&hp.field("name"), header_name(&h.name))?;
            match h.kind {
                ValueMatchType::Exact => errors
                    .check(&hp.field("value"), header_value(&h.value))
                    .map(|v| HeaderMatch::Exact(name, v)),
                ValueMatchType::RegularExpression => errors
                    .check(&hp.field("value"), Pattern::new(&h.value))
                    .map(|p| HeaderMatch::Regex(name, p)),
            }
        })
        .collect()
}

fn http_match(errors: &mut Errors, path: &FieldPath, m: &HttpMatchConfig) -> HttpRequestMatch {
    let mut out = HttpRequestMatch {
        headers: header_matches(errors, path, &m.headers),
        ..HttpRequestMatch::default()
    };
    if let Some(p) = &m.path {
        let value = path.field("path").field("value");
        out.path = errors.check(
            &value,
            match p.kind {
                PathMatchType::Exact => PathMatch::exact(&p.value),
                PathMatchType::PathPrefix => PathMatch::prefix(&p.value),
                PathMatchType::RegularExpression => PathMatch::regex(&p.value),
            },
        );
    }
    for (i, q) in m.query_params.iter().enumerate() {
        let qp = path.field("queryParams").index(i);
        let r = match q.kind {
            ValueMatchType::Exact => QueryParamMatch::exact(&q.name, &q.value),
            ValueMatchType::RegularExpression => QueryParamMatch::regex(&q.name, &q.value),
        };
        let field = if q.name.is_empty() { "name" } else { "value" };
        if let Some(q) = errors.check(&qp.field(field), r) {
            out.query_params.push(q);
        }
    }
    if let Some(method) = &m.method {
        if METHODS.contains(&method.as_str()) {
            out.method = Method::from_bytes(method.as_bytes()).ok();
        } else {
            errors.add(
                path.field("method"),
                format!("method {method:?} must be one of {}", METHODS.join(", ")),
            );
        }
    }
    out
}

/// The largest `backendRefs[].weight` (the Gateway API's bound).
const MAX_WEIGHT: u32 = 1_000_000;

fn backends(
    errors: &mut Errors,
    path: &FieldPath,
    refs: &[BackendRefConfig],
    backend_exists: &impl Fn(&str) -> bool,
) -> Vec<BackendRef> {
    refs.iter()
        .enumerate()
        .filter_map(|(i, b)| {
            let bp = path.field("backendRefs").index(i);
            if !backend_exists(&b.name) {
                errors.add(bp.field("name"), format!("unknown backend {:?}", b.name));
                return None;
            }
            let weight = b.weight.unwrap_or(1);
            if weight > MAX_WEIGHT {
                errors.add(
                    bp.field("weight"),
                    format!("weight {weight} is over the maximum, {MAX_WEIGHT}"),
                );
            }
            Some(BackendRef::new(b.name.as_str(), weight))
        })
        .collect()
}

fn header_modifier(
    errors: &mut Errors,
    path: &FieldPath,
    m: Option<&HeaderModifierConfig>,
) -> HeaderModifier {
    let Some(m) = m else {
        errors.add(path.clone(), "missing for this filter type");
        return HeaderModifier::default();
    };
    let mut out = HeaderModifier::default();
    // Each header is named once across `set`, `add` and `remove` (names compare without
    // case): two operations on one header would depend on the order they run in.
    let mut named: Vec<http::HeaderName> = Vec::new();
    let mut once = |errors: &mut Errors, at: FieldPath, n: &http::HeaderName| {
        if named.contains(n) {
            errors.add(at, format!("header {n} is named twice in this filter"));
            return false;
        }
        named.push(n.clone());
        true
    };
    for (field, list, dst) in [("set", &m.set, &mut out.set), ("add", &m.add, &mut out.add)] {
        for (i, h) in list.iter().enumerate() {
            let hp = path.field(field).index(i);
            let name = errors.check(&hp.field("name"), modifiable_header_name(&h.name));
            let value = errors.check(&hp.field("value"), header_value(&h.value));
            if let (Some(n), Some(v)) = (name, value)
                && once(errors, hp.field("name"), &n)
            {
                dst.push((n, v));
            }
        }
    }
    for (i, name) in m.remove.iter().enumerate() {
        let at = path.field("remove").index(i);
        if let Some(n) = errors.check(&at, modifiable_header_name(name))
            && once(errors, at, &n)
        {
            out.remove.push(n);
        }
    }
    out
}

/// A header name a modifier may touch: not one that frames the message (`content-length`,
/// `transfer-encoding`: a value that disagrees with the body would corrupt the connection)
/// nor a hop-by-hop one (stripped before the filters run; added after, it would reach the
/// next hop and, for `upgrade`, turn a request into an upgrade).
fn modifiable_header_name(name: &str) -> Result<http::HeaderName, InvalidValue> {
    const RESERVED: [&str; 8] = [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "te",
        "http2-settings",
    ];
    let n = header_name(name)?;
    if RESERVED.contains(&n.as_str()) {
        return Err(InvalidValue::new(format!(
            "header {n} cannot be modified by a filter (it frames the message or is hop-by-hop)"
        )));
    }
    Ok(n)
}

fn path_modifier(
    errors: &mut Errors,
    path: &FieldPath,
    m: Option<&PathModifierConfig>,
) -> Option<PathModifier> {
    let m = m?;
    let path = path.field("path");
    let (field, value) = match m.kind {
        PathModifierType::ReplaceFullPath => ("replaceFullPath", m.replace_full_path.as_ref()),
        PathModifierType::ReplacePrefixMatch => {
            ("replacePrefixMatch", m.replace_prefix_match.as_ref())
        }
    };
    let other = match m.kind {
        PathModifierType::ReplaceFullPath => m.replace_prefix_match.is_some(),
        PathModifierType::ReplacePrefixMatch => m.replace_full_path.is_some(),
    };
    if other {
        errors.add(
            path.clone(),
            format!("only `{field}` may be set for this type"),
        );
    }
    let Some(value) = value else {
        errors.add(path.field(field), "missing for this path modifier type");
        return None;
    };
    // The rules of match paths hold (no `?`, `#`, `//`, dot segments or `%2F`): the
    // rewritten path is what the upstream gets, past the proxy's own normalisation.
    if !(value.is_empty() && m.kind == PathModifierType::ReplacePrefixMatch) {
        if let Err(e) = crate::model::check_path_value(value) {
            errors.add(path.field(field), e.to_string());
            return None;
        }
        if http::uri::PathAndQuery::try_from(value.as_str()).is_err() {
            errors.add(path.field(field), format!("invalid path {value:?}"));
            return None;
        }
    }
    Some(match m.kind {
        PathModifierType::ReplaceFullPath => PathModifier::ReplaceFullPath(value.as_str().into()),
        PathModifierType::ReplacePrefixMatch => {
            PathModifier::ReplacePrefixMatch(value.as_str().into())
        }
    })
}

fn exact_hostname(
    errors: &mut Errors,
    path: FieldPath,
    h: Option<&String>,
) -> Option<std::sync::Arc<str>> {
    let h = h?;
    match gateway_hostname(h) {
        Ok(Hostname::Exact(h)) => Some(h),
        Ok(Hostname::Wildcard(_)) => {
            errors.add(path, "a wildcard hostname cannot be used here");
            None
        }
        Err(e) => {
            errors.add(path, e.message());
            None
        }
    }
}

#[allow(clippy::too_many_lines)]
fn filters(
    errors: &mut Errors,
    path: &FieldPath,
    filters: &[FilterConfig],
    backend_exists: &impl Fn(&str) -> bool,
    grpc: bool,
) -> Vec<Filter> {
    let mut out = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let fp = path.field("filters").index(i);
        let present = [
            (
                "requestHeaderModifier",
                f.request_header_modifier.is_some(),
                FilterType::RequestHeaderModifier,
            ),
            (
                "responseHeaderModifier",
                f.response_header_modifier.is_some(),
                FilterType::ResponseHeaderModifier,
            ),
            (
                "requestRedirect",
                f.request_redirect.is_some(),
                FilterType::RequestRedirect,
            ),
            (
                "urlRewrite",
                f.url_rewrite.is_some(),
                FilterType::UrlRewrite,
            ),
            (
                "requestMirror",
                f.request_mirror.is_some(),
                FilterType::RequestMirror,
            ),
            (
                "injectFailure",
                f.inject_failure.is_some(),
                FilterType::InjectFailure,
            ),
        ];
        for (field, is_set, kind) in present {
            if is_set && kind != f.kind {
                errors.add(
                    fp.field(field),
                    format!(
                        "`{field}` does not belong to a filter of type {}",
                        f.kind.name()
                    ),
                );
            }
        }
        if grpc && matches!(f.kind, FilterType::RequestRedirect | FilterType::UrlRewrite) {
            errors.add(
                fp.field("type"),
                format!("{} is not supported in grpcRoutes", f.kind.name()),
            );
            continue;
        }
        let filter = match f.kind {
            FilterType::RequestHeaderModifier => Filter::RequestHeaderModifier(header_modifier(
                errors,
                &fp.field("requestHeaderModifier"),
                f.request_header_modifier.as_ref(),
            )),
            FilterType::ResponseHeaderModifier => Filter::ResponseHeaderModifier(header_modifier(
                errors,
                &fp.field("responseHeaderModifier"),
                f.response_header_modifier.as_ref(),
            )),
            FilterType::RequestRedirect => {
                let rp = fp.field("requestRedirect");
                let Some(r) = &f.request_redirect else {
                    errors.add(rp, "missing for this filter type");
                    continue;
                };
                let mut out = RequestRedirect::new();
                if let Some(s) = &r.scheme {
                    match s.as_str() {
                        "http" => out.scheme = Some(http::uri::Scheme::HTTP),
                        "https" => out.scheme = Some(http::uri::Scheme::HTTPS),
                        _ => errors.add(
                            rp.field("scheme"),
                            format!("redirect scheme {s:?} must be http or https"),
                        ),
                    }
                }
                out.hostname = exact_hostname(errors, rp.field("hostname"), r.hostname.as_ref());
                if let Some(p) = r.port {
                    match u16::try_from(p) {
                        Ok(p) if p > 0 => out.port = Some(p),
                        _ => errors.add(rp.field("port"), format!("port {p} is out of range")),
                    }
                }
                if let Some(code) = r.status_code {
                    match u16::try_from(code)
                        .ok()
                        .and_then(|c| StatusCode::from_u16(c).ok())
                    {
                        Some(s) => out.status = s,
                        None => errors.add(
                            rp.field("statusCode"),
                            format!("status code {code} is out of range"),
                        ),
                    }
                }
                out.path = path_modifier(errors, &rp, r.path.as_ref());
                Filter::RequestRedirect(out)
            }
            FilterType::UrlRewrite => {
                let rp = fp.field("urlRewrite");
                let Some(r) = &f.url_rewrite else {
                    errors.add(rp, "missing for this filter type");
                    continue;
                };
                Filter::UrlRewrite(UrlRewrite {
                    hostname: exact_hostname(errors, rp.field("hostname"), r.hostname.as_ref()),
                    path: path_modifier(errors, &rp, r.path.as_ref()),
                })
            }
            FilterType::RequestMirror => {
                let mp = fp.field("requestMirror");
                let Some(m) = &f.request_mirror else {
                    errors.add(mp, "missing for this filter type");
                    continue;
                };
                if !backend_exists(&m.backend_ref.name) {
                    errors.add(
                        mp.field("backendRef").field("name"),
                        format!("unknown backend {:?}", m.backend_ref.name),
                    );
                }
                if m.backend_ref.weight.is_some() {
                    // A mirror's reference is a BackendObjectReference: no weight.
                    errors.add(
                        mp.field("backendRef").field("weight"),
                        "unknown field `weight`: a mirror's backendRef has no weight",
                    );
                }
                let ratio = match (m.percent, &m.fraction) {
                    (Some(_), Some(_)) => {
                        errors.add(mp.clone(), "set `percent` or `fraction`, not both");
                        0.0
                    }
                    (Some(p), None) if p <= 100 => f64::from(p) / 100.0,
                    (Some(p), None) => {
                        errors.add(mp.field("percent"), format!("percent {p} exceeds 100"));
                        0.0
                    }
                    (None, Some(fr)) => {
                        let d = fr.denominator.unwrap_or(100);
                        if d == 0 || fr.numerator > d {
                            errors.add(
                                mp.field("fraction"),
                                "fraction needs 0 < denominator and numerator <= denominator",
                            );
                            0.0
                        } else {
                            f64::from(fr.numerator) / f64::from(d)
                        }
                    }
                    (None, None) => 1.0,
                };
                Filter::RequestMirror(RequestMirror {
                    backend: BackendName::new(m.backend_ref.name.as_str()),
                    ratio,
                })
            }
            FilterType::InjectFailure => {
                let ip = fp.field("injectFailure");
                let Some(inj) = &f.inject_failure else {
                    errors.add(ip, "missing for this filter type");
                    continue;
                };
                let (status, grpc_code) = if grpc {
                    if inj.status.is_some() {
                        errors.add(
                            ip.field("status"),
                            "grpcRoutes inject `grpcStatus`, not `status`",
                        );
                    }
                    match inj.grpc_status {
                        Some(c) if c <= 16 => {
                            let code = GrpcCode::from_u32(c);
                            (Some(http_status_for_grpc(code)), Some(code))
                        }
                        Some(c) => {
                            errors.add(
                                ip.field("grpcStatus"),
                                format!("gRPC status {c} is out of range (0-16)"),
                            );
                            (None, None)
                        }
                        None => (None, None),
                    }
                } else {
                    if inj.grpc_status.is_some() {
                        errors.add(
                            ip.field("grpcStatus"),
                            "routes inject an HTTP `status`, not `grpcStatus`",
                        );
                    }
                    match inj.status {
                        Some(c) if (100..=599).contains(&c) => (
                            u16::try_from(c)
                                .ok()
                                .and_then(|c| StatusCode::from_u16(c).ok()),
                            None,
                        ),
                        Some(c) => {
                            errors.add(
                                ip.field("status"),
                                format!("status code {c} is out of range (100-599)"),
                            );
                            (None, None)
                        }
                        None => (None, None),
                    }
                };
                let delay = errors.duration(&ip.field("delay"), inj.delay.as_ref());
                if status.is_none()
                    && inj.delay.is_none()
                    && inj.status.is_none()
                    && inj.grpc_status.is_none()
                {
                    errors.add(
                        ip.clone(),
                        if grpc {
                            "needs `grpcStatus` and/or `delay`"
                        } else {
                            "needs `status` and/or `delay`"
                        },
                    );
                }
                if let Some(m) = &inj.message
                    && !m.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
                {
                    // It is the `l5d-proxy-error` header's value (DESIGN.md section 5).
                    errors.add(
                        ip.field("message"),
                        "the message goes in a header: printable ASCII only",
                    );
                }
                let ratio = errors.ratio(ip.field("ratio"), inj.ratio);
                let delay_ratio = errors.ratio(ip.field("delayRatio"), inj.delay_ratio);
                Filter::InjectFailure(InjectFailure {
                    abort: status.map(|status| InjectAbort {
                        status,
                        grpc: grpc_code,
                        message: inj.message.clone().map(Cow::Owned),
                        ratio,
                    }),
                    delay: delay.map(|delay| InjectDelay {
                        delay,
                        ratio: delay_ratio,
                    }),
                })
            }
        };
        out.push(filter);
    }
    out
}

fn extensions(
    errors: &mut Errors,
    path: &FieldPath,
    timeouts: Option<&TimeoutsConfig>,
    retry: Option<&RetryConfig>,
    stream: Option<&StreamTimeoutsConfig>,
    grpc: bool,
) -> RuleExtensions {
    let timeouts = timeouts.map(|t| {
        let tp = path.field("timeouts");
        let out = Timeouts {
            request: errors.duration(&tp.field("request"), t.request.as_ref()),
            backend_request: errors
                .duration(&tp.field("backendRequest"), t.backend_request.as_ref()),
        };
        // GEP-1742: "backendRequest timeout cannot be longer than request timeout" (unless
        // the request timeout is off).
        if let (Some(request), Some(backend)) = (out.request, out.backend_request)
            && !request.is_zero()
            && backend > request
        {
            errors.add(
                tp.field("backendRequest"),
                format!(
                    "backendRequest ({}) cannot be longer than request ({})",
                    t.backend_request.as_deref().unwrap_or_default(),
                    t.request.as_deref().unwrap_or_default()
                ),
            );
        }
        out
    });
    let stream_timeouts = stream.map(|t| {
        let tp = path.field("streamTimeouts");
        StreamTimeouts {
            response_headers: errors
                .duration(&tp.field("responseHeaders"), t.response_headers.as_ref()),
            response: errors.duration(&tp.field("response"), t.response.as_ref()),
            idle: errors.duration(&tp.field("idle"), t.idle.as_ref()),
        }
    });
    let retry = retry.map(|r| {
        let rp = path.field("retry");
        let mut out = Retry {
            attempts: r.attempts,
            backoff: errors.duration(&rp.field("backoff"), r.backoff.as_ref()),
            max_backoff: errors.duration(&rp.field("maxBackoff"), r.max_backoff.as_ref()),
            max_request_bytes: r.max_request_bytes,
            ..Retry::default()
        };
        for (i, code) in r.codes.iter().enumerate() {
            let cp = rp.field("codes").index(i);
            let number = match code {
                CodeConfig::Number(n) => Some(*n),
                CodeConfig::Name(s) => s.parse().ok(),
            };
            if grpc {
                let parsed = match (number, code) {
                    (Some(n), _) if n <= 16 => Some(GrpcCode::from_u32(n)),
                    (None, CodeConfig::Name(s)) => GrpcCode::from_name(s).ok(),
                    _ => None,
                };
                match parsed {
                    // Retrying `ok` would send every successful call again.
                    Some(c) if c == GrpcCode::OK => errors.add(
                        cp,
                        "ok is not a failure: expected a gRPC error code (e.g. unavailable) or 1-16",
                    ),
                    Some(c) => out.grpc_codes.push(c),
                    None => errors.add(cp, "expected a gRPC code name (e.g. unavailable) or 1-16"),
                }
            } else {
                // GEP-1731: retryable codes are 400-599.
                match number
                    .filter(|n| (400..=599).contains(n))
                    .and_then(|n| u16::try_from(n).ok())
                    .and_then(|n| StatusCode::from_u16(n).ok())
                {
                    Some(s) => out.http_codes.push(s),
                    None => errors.add(cp, "expected an HTTP status code (400-599)"),
                }
            }
        }
        if let Some(b) = &r.budget {
            if let Some(ratio) = b.ratio
                && !(ratio.is_finite() && ratio >= 0.0)
            {
                errors.add(
                    rp.field("budget").field("ratio"),
                    format!("budget ratio {ratio} must be a non-negative number"),
                );
            }
            out.budget_ratio = b.ratio;
            out.budget_min_per_second = b.min_per_second;
        }
        if let (Some(min), Some(max)) = (out.backoff, out.max_backoff)
            && max < min
        {
            errors.add(rp.field("maxBackoff"), "maxBackoff is below backoff");
        }
        out
    });
    RuleExtensions {
        timeouts,
        retry,
        stream_timeouts,
    }
}

#[cfg(test)]
mod tests;
