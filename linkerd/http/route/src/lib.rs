//! Gateway API HTTPRoute and GRPCRoute matching, filters and a router service for Tower.
//!
//! ```
//! use linkerd_http_route::{
//!     BackendRef, HttpRequestMatch, HttpRoute, HttpRule, PathMatch, RouteBody, RouteLayer,
//!     RouteMatch, RouteTable, Rule,
//! };
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // The application's per-rule policy: here just a label.
//! let route = HttpRoute::new("api").with_rule(
//!     HttpRule::new("api-policy")
//!         .with_match(HttpRequestMatch::path(PathMatch::prefix("/api").unwrap()))
//!         .with_backend(BackendRef::new("web", 1)),
//! );
//! let table = RouteTable::new(vec![route], vec![]).expect("valid routes");
//!
//! // Called once per rule with backends; each router clone calls its own copy of it.
//! let make = |rule: &Rule<&'static str>| {
//!     let policy = *rule.policy();
//!     tower::service_fn(move |req: http::Request<_>| async move {
//!         let m = req.extensions().get::<RouteMatch>().cloned().expect("set by the router");
//!         assert_eq!(req.extensions().get::<&'static str>(), Some(&policy));
//!         let body = format!("{} rule {}", m.route_name(), m.rule_index());
//!         Ok::<_, std::convert::Infallible>(http::Response::new(body))
//!     })
//! };
//! let router = ServiceBuilder::new().layer(RouteLayer::new(table)).service(make);
//!
//! let req = http::Request::get("http://example.com/api/users").body(String::new()).unwrap();
//! let rsp = router.clone().oneshot(req).await.unwrap();
//! assert_eq!(rsp.into_body().into_inner().as_deref(), Some("api rule 0"));
//!
//! let req = http::Request::get("http://example.com/other").body(String::new()).unwrap();
//! let rsp = router.oneshot(req).await.unwrap();
//! assert_eq!(rsp.status(), 404, "no route");
//! assert_eq!(rsp.headers()["l5d-proxy-error"], "no route");
//! # }
//! ```
//!
//! # Matching
//!
//! [`RouteTable`] compiles [`HttpRoute`]s and [`GrpcRoute`]s into an index (hostname, then exact
//! path, path prefix, regular expressions): a lookup examines only the rules that can match,
//! whatever the table's size. Its docs give the precedence (Gateway API, DESIGN.md section
//! 4.1): hostname, path (`Exact` > `RegularExpression` > longest `PathPrefix`), method, header
//! count, query count, route order, rule order. Regular expressions match whole values.
//! Paths are matched as the request carries them: resolve dot segments first (the
//! `linkerd-http-upgrade` layer does, as the assembled proxy's edge), or `/public/../admin`
//! matches a `PathPrefix /public` rule that an upstream would serve as `/admin`.
//!
//! # Filters
//!
//! Applied in configured order ([`Filter`]): header modifiers (set, then add, then remove),
//! redirects (answered by the router with `Location`, no `l5d-proxy-error`), URL rewrites,
//! request mirroring ([`MirrorService`]), failure injection ([`InjectFailure`]).
//! `ResponseHeaderModifier`s are applied by the router to the final response of the rule
//! (synthetic ones included); to edit each retry attempt's response instead, place
//! [`ResponseHeaderModifierLayer`] inside the retry layer.
//!
//! # Configuration
//!
//! Built in code (the types of this crate) or, with the `serde` feature, deserialized from the
//! YAML of DESIGN.md section 4 (module `config`): `config::RoutesConfig::compile` validates and
//! reports every error with its field path (`routes[0].rules[1].backendRefs[0].name`).
//!
//! # Errors
//!
//! The router answers, through `linkerd_http_classify::ProxyError::to_response` in the
//! client's form (the `Protocol` request extension, else `Protocol::of`, so gRPC clients get
//! trailers-only gRPC answers): no route 404 (`no route`), a rule without backends 500
//! (`no backends`), injected failures with the configured status or gRPC code. Its own error
//! type is the inner service's.
//!
//! # Readiness
//!
//! [`Router`] and [`WeightedSplit`] are always ready: the selected service is cloned and driven
//! to readiness inside the response future (like tower's `Oneshot`), so a saturated rule or
//! backend never blocks the others. Per-rule services are built once, when the layer wraps the
//! [`MakeRoute`] factory.
//!
//! # Cancellation
//!
//! Dropping a response future drops the pending inner call or injected delay. A mirrored copy
//! is sent only when the primary body ends; a body dropped early is not mirrored (counted in
//! [`MirrorStats`]).
//!
//! # Bodies
//!
//! The inner service receives a [`MirrorBody<B>`] (the client's body, copied only when a
//! mirror filter chose the request); the router's response body is [`RouteBody<B>`]: the inner
//! body or the empty body of a synthetic answer, one nameable type without boxing.
//!
//! # Extensions
//!
//! | type | where | written by |
//! | --- | --- | --- |
//! | [`RouteMatch`] | request and response | [`Router`] |
//! | the rule's policy `P` | request | [`Router`] |
//! | [`BackendName`] | request and response | [`WeightedSplit`]; on mirrored requests |
//! | `linkerd_http_classify::Protocol` | request (read) | classify layer |

mod body;
#[cfg(feature = "serde")]
pub mod config;
mod error;
mod filter;
mod mirror;
mod model;
mod ready_call;
mod response_headers;
mod rng;
mod router;
mod split;
mod table;

pub use self::{
    body::RouteBody,
    error::{ConfigError, FieldPath, PathSegment},
    filter::{
        Filter, HeaderModifier, InjectAbort, InjectDelay, InjectFailure, PathModifier,
        RequestMirror, RequestRedirect, UrlRewrite, http_status_for_grpc,
    },
    mirror::{MirrorBody, MirrorConfig, MirrorRequestBody, MirrorService, MirrorStats},
    model::{
        BackendName, BackendRef, GrpcNameMatch, GrpcRequestMatch, GrpcRoute, GrpcRule, HeaderMatch,
        Hostname, HttpRequestMatch, HttpRoute, HttpRule, InvalidValue, PathMatch, Pattern,
        QueryParamMatch,
    },
    response_headers::{ModifyFuture, ResponseHeaderModifier, ResponseHeaderModifierLayer},
    rng::SharedRng,
    router::{MakeRoute, ResponseFuture, RouteLayer, Router},
    split::{BackendError, NoBackends, SplitFuture, WeightedSplit},
    table::{RouteMatch, RoutePathKind, RouteTable, Rule, validate},
};
