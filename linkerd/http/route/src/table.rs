use crate::{
    BackendRef, ConfigError, FieldPath, Filter, GrpcNameMatch, GrpcRequestMatch, GrpcRoute,
    HeaderMatch, Hostname, HttpRequestMatch, HttpRoute, PathMatch, PathModifier, QueryParamMatch,
};
use http::{HeaderMap, Method, Request, Uri};
use std::{borrow::Cow, cmp::Reverse, fmt, sync::Arc};

/// The index maps: keyed by configured hosts, paths and gRPC names, and looked up with each
/// request's. foldhash rather than the standard SipHash: a lookup hashes the request's path
/// once per candidate prefix, and SipHash took three times the instructions. Flooding does
/// not apply: requests only look keys up, and the keys come from the config.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Which route and rule a request matched, and how its path matched (request extension written
/// by the [`Router`](crate::Router) before filters and the inner service run; copied onto the
/// response extensions).
#[derive(Clone, PartialEq, Eq)]
pub struct RouteMatch {
    route: Arc<str>,
    route_index: usize,
    rule_index: usize,
    grpc: bool,
    kind: RoutePathKind,
    path_len: usize,
    rule_id: u32,
}

/// How the path of a [`RouteMatch`] matched.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum RoutePathKind {
    /// An `Exact` path match.
    Exact,
    /// A `RegularExpression` path match.
    RegularExpression,
    /// A `PathPrefix` match (also a rule without matches).
    Prefix,
    /// A GRPCRoute match (on service and method, not on the path).
    Grpc,
}

/// A compiled rule, as the router and the per-rule service factory see it.
#[derive(Debug)]
pub struct Rule<P> {
    route_name: Arc<str>,
    route_index: usize,
    index: usize,
    grpc: bool,
    filters: Vec<Filter>,
    backends: Vec<BackendRef>,
    policy: P,
}

/// A compiled route table: HTTPRoutes and GRPCRoutes indexed by hostname, then by exact path,
/// path prefix and (scanned) regular expressions, so a lookup examines the few rules that can
/// match rather than every rule.
///
/// # Precedence
///
/// Among the rules whose matches hold, the winner has, in order (DESIGN.md sections 4 and
/// 4.1):
/// 1. the most specific hostname: exact, then wildcards longest first, then routes without
///    hostnames;
/// 2. for HTTPRoutes, the path: `Exact`, then `RegularExpression` (longer pattern first), then
///    `PathPrefix` (longer first); for GRPCRoutes, the service then the method, each `Exact`
///    (longer first) over `RegularExpression` (longer pattern first) over absent;
/// 3. a method match (HTTPRoute);
/// 4. more header matches;
/// 5. more query parameter matches (HTTPRoute);
/// 6. the route given first; 7. the rule given first.
///
/// gRPC requests (`POST` with `content-type: application/grpc*`) are matched against the
/// GRPCRoutes first and fall through to the HTTPRoutes; other requests never match GRPCRoutes.
pub struct RouteTable<P> {
    rules: Vec<Arc<Rule<P>>>,
    http_cands: Vec<HttpCand>,
    grpc_cands: Vec<GrpcCand>,
    http: HostIndex<HttpBucket>,
    grpc: HostIndex<GrpcBucket>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PathRank {
    Prefix(usize),
    Regex(usize),
    Exact(usize),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct HttpRank {
    path: PathRank,
    method: bool,
    headers: usize,
    query: usize,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum NameRank {
    Any,
    Regex(usize),
    Exact(usize),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct GrpcRank {
    service: NameRank,
    method: NameRank,
    headers: usize,
}

#[derive(Debug)]
struct HttpCand {
    rule_id: u32,
    route: u32,
    rule: u32,
    rank: HttpRank,
    path: PathMatch,
    method: Option<Method>,
    headers: Vec<HeaderMatch>,
    query: Vec<QueryParamMatch>,
}

#[derive(Debug)]
struct GrpcCand {
    rule_id: u32,
    route: u32,
    rule: u32,
    rank: GrpcRank,
    service: Option<GrpcNameMatch>,
    method: Option<GrpcNameMatch>,
    headers: Vec<HeaderMatch>,
}

#[derive(Debug)]
struct HostIndex<B> {
    exact: HashMap<Box<str>, B>,
    wildcard: HashMap<Box<str>, B>,
    any: Option<B>,
}

#[derive(Debug, Default)]
struct HttpBucket {
    exact: HashMap<Box<str>, Vec<u32>>,
    regex: Vec<u32>,
    prefix: HashMap<Box<str>, Vec<u32>>,
}

#[derive(Debug, Default)]
struct GrpcBucket {
    /// Keyed by `service/method`.
    full: HashMap<Box<str>, Vec<u32>>,
    by_service: HashMap<Box<str>, Vec<u32>>,
    rest: Vec<u32>,
}

struct Req<'a> {
    method: &'a Method,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
}

// === impl RouteMatch ===

impl RouteMatch {
    /// The matched route's name.
    pub fn route_name(&self) -> &str {
        &self.route
    }

    /// The matched route's name, shared.
    pub fn route_name_arc(&self) -> &Arc<str> {
        &self.route
    }

    /// The route's position in its list (`routes` or `grpcRoutes`).
    pub fn route_index(&self) -> usize {
        self.route_index
    }

    /// The rule's position in its route.
    pub fn rule_index(&self) -> usize {
        self.rule_index
    }

    /// Whether a GRPCRoute matched.
    pub fn is_grpc(&self) -> bool {
        self.grpc
    }

    /// How the path matched.
    pub fn path_kind(&self) -> RoutePathKind {
        self.kind
    }

    /// The length that ranked the path match: the `Exact` path's length, the `PathPrefix`
    /// value's length without its trailing slash (0 for `/`), the regular expression's length
    /// in characters; for gRPC, the length of `service/method` as requested.
    pub fn path_len(&self) -> usize {
        self.path_len
    }
}

impl fmt::Debug for RouteMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteMatch")
            .field("route", &self.route)
            .field("rule", &self.rule_index)
            .field("grpc", &self.grpc)
            .field("kind", &self.kind)
            .field("path_len", &self.path_len)
            .finish()
    }
}

// === impl Rule ===

impl<P> Rule<P> {
    /// The route's name.
    pub fn route_name(&self) -> &Arc<str> {
        &self.route_name
    }

    /// The route's position in its list.
    pub fn route_index(&self) -> usize {
        self.route_index
    }

    /// The rule's position in its route.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether the rule belongs to a GRPCRoute.
    pub fn is_grpc(&self) -> bool {
        self.grpc
    }

    /// The rule's filters, in order.
    pub fn filters(&self) -> &[Filter] {
        &self.filters
    }

    /// The rule's backends.
    pub fn backends(&self) -> &[BackendRef] {
        &self.backends
    }

    /// Whether any backend can receive traffic (a backend with a non-zero weight).
    pub fn has_backends(&self) -> bool {
        self.backends.iter().any(|b| b.weight > 0)
    }

    /// The application's policy for this rule.
    pub fn policy(&self) -> &P {
        &self.policy
    }
}

// === impl RouteTable ===

impl<P> fmt::Debug for RouteTable<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("rules", &self.rules.len())
            .field("http_matches", &self.http_cands.len())
            .field("grpc_matches", &self.grpc_cands.len())
            .finish_non_exhaustive()
    }
}

impl<P> Default for RouteTable<P> {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            http_cands: Vec::new(),
            grpc_cands: Vec::new(),
            http: HostIndex::default(),
            grpc: HostIndex::default(),
        }
    }
}

fn http_rank(m: &HttpRequestMatch, path: &PathMatch) -> HttpRank {
    HttpRank {
        path: match path {
            PathMatch::Exact(v) => PathRank::Exact(v.len()),
            PathMatch::Regex(p) => PathRank::Regex(p.rank_len()),
            PathMatch::Prefix(v) => PathRank::Prefix(v.len()),
        },
        method: m.method.is_some(),
        headers: m.headers.len(),
        query: m.query_params.len(),
    }
}

fn name_rank(m: Option<&GrpcNameMatch>) -> NameRank {
    match m {
        None => NameRank::Any,
        Some(GrpcNameMatch::Exact(v)) => NameRank::Exact(v.len()),
        Some(GrpcNameMatch::Regex(p)) => NameRank::Regex(p.rank_len()),
    }
}

/// Keeps the first condition per header name, as the Gateway API asks.
fn dedup_headers(headers: &[HeaderMatch]) -> Vec<HeaderMatch> {
    let mut out: Vec<HeaderMatch> = Vec::with_capacity(headers.len());
    for h in headers {
        if !out.iter().any(|o| o.name() == h.name()) {
            out.push(h.clone());
        }
    }
    out
}

fn dedup_query(query: &[QueryParamMatch]) -> Vec<QueryParamMatch> {
    let mut out: Vec<QueryParamMatch> = Vec::with_capacity(query.len());
    for q in query {
        if !out.iter().any(|o| o.name() == q.name()) {
            out.push(q.clone());
        }
    }
    out
}

fn validate_ratio(errors: &mut Vec<ConfigError>, path: FieldPath, ratio: f64) {
    if !(0.0..=1.0).contains(&ratio) {
        errors.push(ConfigError::new(
            path,
            format!("ratio {ratio} is outside [0, 1]"),
        ));
    }
}

/// Checks the filters of one rule; `path` is the rule's path.
fn validate_filters(
    errors: &mut Vec<ConfigError>,
    path: &FieldPath,
    filters: &[Filter],
    one_prefix: bool,
    has_backends: bool,
    grpc: bool,
) {
    let mut redirect = None;
    let mut rewrite = None;
    // The Gateway API allows each of these once per rule.
    let mut seen: Vec<&'static str> = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let fp = path.field("filters").index(i);
        let once = match f {
            Filter::RequestHeaderModifier(_) => Some("RequestHeaderModifier"),
            Filter::ResponseHeaderModifier(_) => Some("ResponseHeaderModifier"),
            Filter::RequestRedirect(_) => Some("RequestRedirect"),
            Filter::UrlRewrite(_) => Some("URLRewrite"),
            Filter::RequestMirror(_) | Filter::InjectFailure(_) => None,
        };
        if let Some(kind) = once {
            if seen.contains(&kind) {
                errors.push(ConfigError::new(
                    fp.clone(),
                    format!("{kind} cannot be repeated in one rule"),
                ));
            }
            seen.push(kind);
        }
        match f {
            Filter::RequestRedirect(r) => {
                let fp = fp.field("requestRedirect");
                if grpc {
                    errors.push(ConfigError::new(
                        fp.clone(),
                        "RequestRedirect is not supported in grpcRoutes",
                    ));
                }
                redirect = Some(i);
                if has_backends {
                    // The redirect is the answer: no backend would get the request.
                    errors.push(ConfigError::new(
                        fp.clone(),
                        "RequestRedirect cannot be combined with backendRefs",
                    ));
                }
                if ![301, 302, 303, 307, 308].contains(&r.status.as_u16()) {
                    errors.push(ConfigError::new(
                        fp.field("statusCode"),
                        format!(
                            "redirect status {} must be 301, 302, 303, 307 or 308",
                            r.status.as_u16()
                        ),
                    ));
                }
                if matches!(r.path, Some(PathModifier::ReplacePrefixMatch(_))) && !one_prefix {
                    errors.push(ConfigError::new(
                        fp.field("path").field("replacePrefixMatch"),
                        "ReplacePrefixMatch needs exactly one match, with a PathPrefix path",
                    ));
                }
                if let Some(scheme) = &r.scheme
                    && scheme != &http::uri::Scheme::HTTP
                    && scheme != &http::uri::Scheme::HTTPS
                {
                    errors.push(ConfigError::new(
                        fp.field("scheme"),
                        format!("redirect scheme {scheme} must be http or https"),
                    ));
                }
                if r.port == Some(0) {
                    errors.push(ConfigError::new(fp.field("port"), "port must not be 0"));
                }
            }
            Filter::UrlRewrite(r) => {
                let fp = fp.field("urlRewrite");
                if grpc {
                    errors.push(ConfigError::new(
                        fp.clone(),
                        "URLRewrite is not supported in grpcRoutes",
                    ));
                }
                rewrite = Some(i);
                if matches!(r.path, Some(PathModifier::ReplacePrefixMatch(_))) && !one_prefix {
                    errors.push(ConfigError::new(
                        fp.field("path").field("replacePrefixMatch"),
                        "ReplacePrefixMatch needs exactly one match, with a PathPrefix path",
                    ));
                }
            }
            Filter::RequestMirror(m) => {
                validate_ratio(errors, fp.field("requestMirror").field("percent"), m.ratio);
            }
            Filter::InjectFailure(inj) => {
                let fp = fp.field("injectFailure");
                if let Some(a) = &inj.abort {
                    validate_ratio(errors, fp.field("ratio"), a.ratio);
                }
                if let Some(d) = &inj.delay {
                    validate_ratio(errors, fp.field("delayRatio"), d.ratio);
                }
            }
            Filter::RequestHeaderModifier(_) | Filter::ResponseHeaderModifier(_) => {}
        }
    }
    if let (Some(a), Some(b)) = (redirect, rewrite) {
        errors.push(ConfigError::new(
            path.field("filters").index(a.max(b)),
            "RequestRedirect and URLRewrite cannot be combined in one rule",
        ));
    }
}

/// Checks routes as [`RouteTable::new`] does, without compiling them: every problem, each
/// with its field path (`routes[i]` and `grpcRoutes[i]` are positions in `http` and `grpc`).
pub fn validate<P>(http: &[HttpRoute<P>], grpc: &[GrpcRoute<P>]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (ri, route) in http.iter().enumerate() {
        for (ui, rule) in route.rules.iter().enumerate() {
            let path = FieldPath::root()
                .field("routes")
                .index(ri)
                .field("rules")
                .index(ui);
            // The Gateway API's rule: exactly one match, a PathPrefix (no matches is one
            // `PathPrefix /`; a match without a path is one too).
            let one_prefix = rule.matches.len() <= 1
                && rule
                    .matches
                    .iter()
                    .all(|m| matches!(m.path, None | Some(PathMatch::Prefix(_))));
            let has_backends = !rule.backends.is_empty();
            validate_filters(
                &mut errors,
                &path,
                &rule.filters,
                one_prefix,
                has_backends,
                false,
            );
        }
    }
    for (ri, route) in grpc.iter().enumerate() {
        for (ui, rule) in route.rules.iter().enumerate() {
            let path = FieldPath::root()
                .field("grpcRoutes")
                .index(ri)
                .field("rules")
                .index(ui);
            validate_filters(&mut errors, &path, &rule.filters, false, false, true);
        }
    }
    errors
}

fn too_many(errors: &mut Vec<ConfigError>, n: usize) -> Option<u32> {
    match u32::try_from(n) {
        Ok(n) => Some(n),
        Err(_) => {
            errors.push(ConfigError::new(FieldPath::root(), "too many rules"));
            None
        }
    }
}

impl<P> RouteTable<P> {
    /// Compiles `http` and `grpc` routes (in file order: the order breaks precedence ties).
    ///
    /// # Errors
    ///
    /// Every problem found, each with its field path from the top of the file
    /// (`routes[0].rules[1].filters[0].requestRedirect.statusCode`): `RequestRedirect` combined
    /// with `URLRewrite`, `ReplacePrefixMatch` on a rule with non-`PathPrefix` matches, a
    /// redirect status other than 301/302/303/307/308, a ratio outside `[0, 1]`, a redirect or
    /// rewrite in a GRPCRoute.
    pub fn new(http: Vec<HttpRoute<P>>, grpc: Vec<GrpcRoute<P>>) -> Result<Self, Vec<ConfigError>> {
        let mut errors = validate(&http, &grpc);
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut table = Self::default();
        for (ri, route) in http.into_iter().enumerate() {
            let hosts = route.hostnames;
            for (ui, rule) in route.rules.into_iter().enumerate() {
                let Some(rule_id) = too_many(&mut errors, table.rules.len()) else {
                    continue;
                };
                let (Some(route_u32), Some(rule_u32)) =
                    (too_many(&mut errors, ri), too_many(&mut errors, ui))
                else {
                    continue;
                };
                let default_match = [HttpRequestMatch::default()];
                let matches: &[HttpRequestMatch] = if rule.matches.is_empty() {
                    &default_match
                } else {
                    &rule.matches
                };
                for m in matches {
                    let path = m.path.clone().unwrap_or(PathMatch::Prefix("".into()));
                    let Some(cand) = too_many(&mut errors, table.http_cands.len()) else {
                        continue;
                    };
                    table.http_cands.push(HttpCand {
                        rule_id,
                        route: route_u32,
                        rule: rule_u32,
                        rank: http_rank(m, &path),
                        path,
                        method: m.method.clone(),
                        headers: dedup_headers(&m.headers),
                        query: dedup_query(&m.query_params),
                    });
                    let c = &table.http_cands[cand as usize];
                    table.http.for_buckets_mut(&hosts, |bucket| match &c.path {
                        PathMatch::Exact(p) => {
                            bucket.exact.entry(Box::from(&**p)).or_default().push(cand);
                        }
                        PathMatch::Prefix(p) => {
                            bucket.prefix.entry(Box::from(&**p)).or_default().push(cand);
                        }
                        PathMatch::Regex(_) => bucket.regex.push(cand),
                    });
                }
                table.rules.push(Arc::new(Rule {
                    route_name: route.name.clone(),
                    route_index: ri,
                    index: ui,
                    grpc: false,
                    filters: rule.filters,
                    backends: rule.backends,
                    policy: rule.policy,
                }));
            }
        }
        for (ri, route) in grpc.into_iter().enumerate() {
            let hosts = route.hostnames;
            for (ui, rule) in route.rules.into_iter().enumerate() {
                let Some(rule_id) = too_many(&mut errors, table.rules.len()) else {
                    continue;
                };
                let (Some(route_u32), Some(rule_u32)) =
                    (too_many(&mut errors, ri), too_many(&mut errors, ui))
                else {
                    continue;
                };
                let default_match = [GrpcRequestMatch::default()];
                let matches: &[GrpcRequestMatch] = if rule.matches.is_empty() {
                    &default_match
                } else {
                    &rule.matches
                };
                for m in matches {
                    let Some(cand) = too_many(&mut errors, table.grpc_cands.len()) else {
                        continue;
                    };
                    table.grpc_cands.push(GrpcCand {
                        rule_id,
                        route: route_u32,
                        rule: rule_u32,
                        rank: GrpcRank {
                            service: name_rank(m.service.as_ref()),
                            method: name_rank(m.method.as_ref()),
                            headers: m.headers.len(),
                        },
                        service: m.service.clone(),
                        method: m.method.clone(),
                        headers: dedup_headers(&m.headers),
                    });
                    table
                        .grpc
                        .for_buckets_mut(&hosts, |bucket| match (&m.service, &m.method) {
                            (Some(GrpcNameMatch::Exact(s)), Some(GrpcNameMatch::Exact(me))) => {
                                bucket
                                    .full
                                    .entry(format!("{s}/{me}").into_boxed_str())
                                    .or_default()
                                    .push(cand);
                            }
                            (Some(GrpcNameMatch::Exact(s)), _) => bucket
                                .by_service
                                .entry(Box::from(&**s))
                                .or_default()
                                .push(cand),
                            _ => bucket.rest.push(cand),
                        });
                }
                table.rules.push(Arc::new(Rule {
                    route_name: route.name.clone(),
                    route_index: ri,
                    index: ui,
                    grpc: true,
                    filters: rule.filters,
                    backends: rule.backends,
                    policy: rule.policy,
                }));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        table.sort();
        Ok(table)
    }

    fn sort(&mut self) {
        let http = &self.http_cands;
        let hkey = |c: &u32| {
            let c = &http[*c as usize];
            (Reverse(c.rank), c.route, c.rule)
        };
        self.http.for_each_mut(|b| {
            for list in b.exact.values_mut().chain(b.prefix.values_mut()) {
                list.sort_by_key(hkey);
            }
            b.regex.sort_by_key(hkey);
        });
        let grpc = &self.grpc_cands;
        let gkey = |c: &u32| {
            let c = &grpc[*c as usize];
            (Reverse(c.rank), c.route, c.rule)
        };
        self.grpc.for_each_mut(|b| {
            for list in b.full.values_mut().chain(b.by_service.values_mut()) {
                list.sort_by_key(gkey);
            }
            b.rest.sort_by_key(gkey);
        });
    }

    /// The number of compiled rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the table has no rules (every request gets 404).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every compiled rule, HTTPRoutes first then GRPCRoutes, in file order.
    pub fn rules(&self) -> &[Arc<Rule<P>>] {
        &self.rules
    }

    /// The rule a match refers to (`None` for a match from another table).
    pub fn rule(&self, m: &RouteMatch) -> Option<&Arc<Rule<P>>> {
        self.rules.get(m.rule_id as usize)
    }

    pub(crate) fn rule_id(m: &RouteMatch) -> usize {
        m.rule_id as usize
    }

    /// Finds the rule for `req`.
    pub fn find<B>(&self, req: &Request<B>) -> Option<RouteMatch> {
        let mut examined = 0;
        self.find_parts(req.method(), req.uri(), req.headers(), &mut examined)
    }

    /// Finds the rule for `req` and counts the match conditions examined (the table's cost).
    pub fn find_counted<B>(&self, req: &Request<B>) -> (Option<RouteMatch>, usize) {
        let mut examined = 0;
        let m = self.find_parts(req.method(), req.uri(), req.headers(), &mut examined);
        (m, examined)
    }

    /// Finds the rule for a request head.
    pub fn find_parts(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        examined: &mut usize,
    ) -> Option<RouteMatch> {
        // Without hostname-specific routes every request falls to the `any` bucket: the host
        // is not looked at, so it is not worked out.
        let host = if self.http.by_host() || self.grpc.by_host() {
            request_host(uri, headers)
        } else {
            None
        };
        let host = host.as_deref();
        let req = Req {
            method,
            headers,
            query: uri.query(),
        };
        let path = uri.path();
        if !self.grpc_cands.is_empty()
            && method == Method::POST
            && linkerd_http_classify::is_grpc(headers)
            && let Some((service, rpc)) = grpc_path(path)
        {
            let found = self.grpc.find(host, |b| {
                b.find(&self.grpc_cands, &path[1..], service, rpc, &req, examined)
            });
            if let Some(c) = found {
                let c = &self.grpc_cands[c as usize];
                return Some(self.route_match(c.rule_id, RoutePathKind::Grpc, path.len() - 1));
            }
        }
        let found = self
            .http
            .find(host, |b| b.find(&self.http_cands, path, &req, examined))?;
        let c = &self.http_cands[found as usize];
        let (kind, len) = match c.rank.path {
            PathRank::Exact(n) => (RoutePathKind::Exact, n),
            PathRank::Regex(n) => (RoutePathKind::RegularExpression, n),
            PathRank::Prefix(n) => (RoutePathKind::Prefix, n),
        };
        Some(self.route_match(c.rule_id, kind, len))
    }

    fn route_match(&self, rule_id: u32, kind: RoutePathKind, path_len: usize) -> RouteMatch {
        let rule = &self.rules[rule_id as usize];
        RouteMatch {
            route: rule.route_name.clone(),
            route_index: rule.route_index,
            rule_index: rule.index,
            grpc: rule.grpc,
            kind,
            path_len,
            rule_id,
        }
    }
}

/// Splits a gRPC path `/package.Service/Method`.
fn grpc_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((service, method))
}

/// The request's host, lowercase, without port or trailing dot: the URI authority (HTTP/2,
/// absolute-form HTTP/1), else the `Host` header.
pub(crate) fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<Cow<'a, str>> {
    let host = match uri.host() {
        Some(h) => h,
        None => {
            let raw = headers.get(http::header::HOST)?.to_str().ok()?;
            strip_port(raw)
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        // An IPv6 literal keeps its brackets, as `Uri::host` returns it.
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

fn http_conditions_hold(c: &HttpCand, req: &Req<'_>) -> bool {
    c.method.as_ref().is_none_or(|m| m == req.method)
        && c.headers.iter().all(|h| h.matches(req.headers))
        && c.query.iter().all(|q| q.matches(req.query))
}

// === impl HostIndex ===

impl<B> Default for HostIndex<B> {
    fn default() -> Self {
        Self {
            exact: HashMap::default(),
            wildcard: HashMap::default(),
            any: None,
        }
    }
}

impl<B: Default> HostIndex<B> {
    /// Calls `f` on each bucket a route with `hosts` lands in (once per distinct hostname).
    fn for_buckets_mut(&mut self, hosts: &[Hostname], mut f: impl FnMut(&mut B)) {
        if hosts.is_empty() {
            f(self.any.get_or_insert_with(B::default));
            return;
        }
        for (i, h) in hosts.iter().enumerate() {
            if hosts[..i].contains(h) {
                continue;
            }
            let (map, key) = match h {
                Hostname::Exact(k) => (&mut self.exact, k),
                Hostname::Wildcard(k) => (&mut self.wildcard, k),
            };
            f(map.entry(Box::from(&**key)).or_default());
        }
    }
}

impl<B> HostIndex<B> {
    fn for_each_mut(&mut self, mut f: impl FnMut(&mut B)) {
        self.exact.values_mut().for_each(&mut f);
        self.wildcard.values_mut().for_each(&mut f);
        if let Some(b) = &mut self.any {
            f(b);
        }
    }

    /// Tries the buckets for `host` from the most specific: exact, wildcards longest first,
    /// then host-less routes.
    /// Whether any route names a hostname (else `find` goes straight to `any`).
    fn by_host(&self) -> bool {
        !self.exact.is_empty() || !self.wildcard.is_empty()
    }

    fn find<R>(&self, host: Option<&str>, mut f: impl FnMut(&B) -> Option<R>) -> Option<R> {
        if let Some(host) = host {
            if let Some(r) = self.exact.get(host).and_then(&mut f) {
                return Some(r);
            }
            if !self.wildcard.is_empty() {
                let mut rest = host;
                while let Some((_, suffix)) = rest.split_once('.') {
                    if let Some(r) = self.wildcard.get(suffix).and_then(&mut f) {
                        return Some(r);
                    }
                    rest = suffix;
                }
            }
        }
        self.any.as_ref().and_then(f)
    }
}

// === impl HttpBucket ===

impl HttpBucket {
    fn find(
        &self,
        cands: &[HttpCand],
        path: &str,
        req: &Req<'_>,
        examined: &mut usize,
    ) -> Option<u32> {
        let mut first = |list: &[u32], check_path: bool| {
            list.iter().copied().find(|&c| {
                *examined += 1;
                let c = &cands[c as usize];
                (!check_path || c.path.matches(path)) && http_conditions_hold(c, req)
            })
        };
        if let Some(c) = self.exact.get(path).and_then(|l| first(l, false)) {
            return Some(c);
        }
        if let Some(c) = first(&self.regex, true) {
            return Some(c);
        }
        if self.prefix.is_empty() {
            return None;
        }
        // Element-wise prefixes of the path, longest first: the path itself, then the part
        // before each `/` from the right (down to the empty prefix, which is `/`).
        if let Some(c) = self.prefix.get(path).and_then(|l| first(l, false)) {
            return Some(c);
        }
        let bytes = path.as_bytes();
        let mut end = path.len();
        while let Some(slash) = bytes[..end].iter().rposition(|&b| b == b'/') {
            if let Some(c) = self
                .prefix
                .get(&path[..slash])
                .and_then(|l| first(l, false))
            {
                return Some(c);
            }
            end = slash;
        }
        None
    }
}

// === impl GrpcBucket ===

impl GrpcBucket {
    fn find(
        &self,
        cands: &[GrpcCand],
        full: &str,
        service: &str,
        method: &str,
        req: &Req<'_>,
        examined: &mut usize,
    ) -> Option<u32> {
        let mut first = |list: &[u32]| {
            list.iter().copied().find(|&c| {
                *examined += 1;
                let c = &cands[c as usize];
                c.service.as_ref().is_none_or(|s| s.matches(service))
                    && c.method.as_ref().is_none_or(|m| m.matches(method))
                    && c.headers.iter().all(|h| h.matches(req.headers))
            })
        };
        self.full
            .get(full)
            .and_then(|l| first(l))
            .or_else(|| self.by_service.get(service).and_then(|l| first(l)))
            .or_else(|| first(&self.rest))
    }
}

impl fmt::Debug for Req<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Req")
            .field("method", self.method)
            .finish_non_exhaustive()
    }
}
