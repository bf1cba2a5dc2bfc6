use crate::filter::Filter;
use http::{HeaderName, HeaderValue, Method};
use std::{fmt, sync::Arc};

/// A value rejected by one of the match or filter constructors, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidValue(String);

/// A regular expression that must match a whole value (path, header value, query value, gRPC
/// service or method), as Envoy's `safe_regex` does.
///
/// The pattern uses the `regex` crate's syntax (RE2-like: no backreferences, linear-time
/// matching). Its length in characters ranks regular-expression path matches: a longer pattern
/// wins.
#[derive(Clone)]
pub struct Pattern {
    source: Arc<str>,
    regex: regex::Regex,
}

/// A hostname a route serves: exact (`api.example.com`) or wildcard (`*.example.com`, one or more
/// labels in front of `example.com`, never `example.com` itself).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Hostname {
    /// Matches this hostname only (lowercase, no port, no trailing dot).
    Exact(Arc<str>),
    /// Matches any hostname ending in `.` + this suffix.
    Wildcard(Arc<str>),
}

/// How a request path is matched.
#[derive(Clone, Debug)]
pub enum PathMatch {
    /// The path equals this value.
    Exact(Arc<str>),
    /// The path starts with this value element by element: `/v2` matches `/v2`, `/v2/` and
    /// `/v2/x`, not `/v2example`. Stored without its trailing slash (`/` is stored as the empty
    /// string and matches every path).
    Prefix(Arc<str>),
    /// The whole path matches this pattern.
    Regex(Pattern),
}

/// A condition on one request header. Names are case-insensitive; a header that appears
/// several times matches when any of its values does.
#[derive(Clone, Debug)]
pub enum HeaderMatch {
    /// A value equals this one exactly (case-sensitive).
    Exact(HeaderName, HeaderValue),
    /// A value (as UTF-8) matches this pattern as a whole.
    Regex(HeaderName, Pattern),
}

/// A condition on one query parameter (names and values case-sensitive, compared after
/// percent-decoding); a parameter given several times matches when any of its values does.
#[derive(Clone, Debug)]
pub enum QueryParamMatch {
    /// A value equals this one.
    Exact(String, String),
    /// A value matches this pattern as a whole.
    Regex(String, Pattern),
}

/// One `matches[]` entry of an HTTPRoute rule: every condition present must hold.
#[derive(Clone, Debug, Default)]
pub struct HttpRequestMatch {
    /// The path condition; `None` means `PathPrefix /`.
    pub path: Option<PathMatch>,
    /// Header conditions (all must hold).
    pub headers: Vec<HeaderMatch>,
    /// Query parameter conditions (all must hold).
    pub query_params: Vec<QueryParamMatch>,
    /// The request method, if constrained.
    pub method: Option<Method>,
}

/// The name of a backend, as `backendRefs[].name` gives it (response extension written by
/// [`WeightedSplit`](crate::WeightedSplit); also set on the request it forwards, and on
/// mirrored requests).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendName(Arc<str>);

/// One `backendRefs[]` entry: a backend and its weight (default 1; 0 never receives traffic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendRef {
    /// The backend's name.
    pub name: BackendName,
    /// Its relative share of the rule's requests.
    pub weight: u32,
}

/// A Gateway API HTTPRoute: a name, the hostnames it serves and its rules.
#[derive(Clone, Debug)]
pub struct HttpRoute<P> {
    /// The route's name (the `route_name` of metrics and logs).
    pub name: Arc<str>,
    /// Hostnames served; empty means any host.
    pub hostnames: Vec<Hostname>,
    /// Rules, in configured order.
    pub rules: Vec<HttpRule<P>>,
}

/// One HTTPRoute rule.
#[derive(Clone, Debug)]
pub struct HttpRule<P> {
    /// Any one of these must hold; empty means `PathPrefix /`.
    pub matches: Vec<HttpRequestMatch>,
    /// Filters, applied in this order.
    pub filters: Vec<Filter>,
    /// Backends; empty (or all weights 0) answers 500 `no backends`.
    pub backends: Vec<BackendRef>,
    /// The application's per-rule policy, inserted into each matched request's extensions.
    pub policy: P,
}

/// How a gRPC service or method name is matched.
#[derive(Clone, Debug)]
pub enum GrpcNameMatch {
    /// Equal to this name (case-sensitive).
    Exact(Arc<str>),
    /// The whole name matches this pattern.
    Regex(Pattern),
}

/// One `matches[]` entry of a GRPCRoute rule.
#[derive(Clone, Debug, Default)]
pub struct GrpcRequestMatch {
    /// The service condition (`helloworld.Greeter`), if any.
    pub service: Option<GrpcNameMatch>,
    /// The method condition (`SayHello`), if any.
    pub method: Option<GrpcNameMatch>,
    /// Header conditions (all must hold).
    pub headers: Vec<HeaderMatch>,
}

/// A Gateway API GRPCRoute: matches gRPC requests (`POST`, `content-type: application/grpc*`)
/// only.
#[derive(Clone, Debug)]
pub struct GrpcRoute<P> {
    /// The route's name.
    pub name: Arc<str>,
    /// Hostnames served; empty means any host.
    pub hostnames: Vec<Hostname>,
    /// Rules, in configured order.
    pub rules: Vec<GrpcRule<P>>,
}

/// One GRPCRoute rule.
#[derive(Clone, Debug)]
pub struct GrpcRule<P> {
    /// Any one of these must hold; empty matches every gRPC request.
    pub matches: Vec<GrpcRequestMatch>,
    /// Filters, applied in this order (no redirect or rewrite in GRPCRoute).
    pub filters: Vec<Filter>,
    /// Backends; empty answers `no backends` (gRPC `INTERNAL`).
    pub backends: Vec<BackendRef>,
    /// The application's per-rule policy.
    pub policy: P,
}

// === impl InvalidValue ===

impl InvalidValue {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// Why the value was rejected.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidValue {}

// === impl Pattern ===

/// Regexes come from configuration: bound their compiled size so a hostile pattern cannot eat
/// memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A regex error on one line: the syntax error's own words (its message spans lines, with
/// a caret under the pattern as compiled, anchors included).
fn regex_error(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or_else(|| text.lines().last().unwrap_or_default())
            .to_owned(),
        other => other.to_string().replace('\n', " "),
    }
}

impl Pattern {
    /// Compiles `source` to match whole values.
    ///
    /// # Errors
    ///
    /// When `source` is not a valid regular expression or compiles too large.
    pub fn new(source: &str) -> Result<Self, InvalidValue> {
        let regex = regex::RegexBuilder::new(&format!("^(?:{source})$"))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| {
                InvalidValue::new(format!("invalid regular expression: {}", regex_error(&e)))
            })?;
        Ok(Self {
            source: source.into(),
            regex,
        })
    }

    /// The pattern as configured (without the anchors this type adds).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `value` matches the pattern as a whole.
    pub fn is_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }

    /// The pattern's length in characters, which ranks regex path matches.
    pub(crate) fn rank_len(&self) -> usize {
        self.source.chars().count()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.source).finish()
    }
}

// === impl Hostname ===

impl Hostname {
    /// Parses `api.example.com` or `*.example.com` (case-insensitive; stored lowercase).
    ///
    /// # Errors
    ///
    /// When the value is empty, contains a port, or is not a DNS name (a wildcard must be a
    /// leading `*.` label).
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let lower = value.to_ascii_lowercase();
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
            return Err(InvalidValue::new(format!(
                "invalid hostname {value:?}: expected a DNS name or a `*.` wildcard"
            )));
        }
        Ok(if wildcard {
            Self::Wildcard(name.into())
        } else {
            Self::Exact(name.into())
        })
    }

    /// Whether `host` (lowercase, without port) is served by this hostname.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(h) => **h == *host,
            Self::Wildcard(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(&**suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

// === impl PathMatch ===

pub(crate) fn check_path_value(value: &str) -> Result<(), InvalidValue> {
    if !value.starts_with('/') {
        return Err(InvalidValue::new(format!(
            "path {value:?} must start with `/`"
        )));
    }
    if value.contains("//") || value.contains('#') || value.contains('?') {
        return Err(InvalidValue::new(format!(
            "path {value:?} must not contain `//`, `?` or `#`"
        )));
    }
    // The Gateway API's rules: no dot segments, no encoded slash (a path matched raw would
    // mean one thing here and another to a server that normalises it).
    let lower = value.to_ascii_lowercase();
    if value.contains("/./")
        || value.contains("/../")
        || value.ends_with("/.")
        || value.ends_with("/..")
        || lower.contains("%2f")
    {
        return Err(InvalidValue::new(format!(
            "path {value:?} must not contain `/./`, `/../` or `%2F`, nor end with `/.` or `/..`"
        )));
    }
    Ok(())
}

impl PathMatch {
    /// An `Exact` path match.
    ///
    /// # Errors
    ///
    /// When `value` does not start with `/`, contains `//`, `?`, `#`, a dot segment or `%2F`.
    pub fn exact(value: &str) -> Result<Self, InvalidValue> {
        check_path_value(value)?;
        Ok(Self::Exact(value.into()))
    }

    /// A `PathPrefix` match (a trailing slash in `value` is ignored).
    ///
    /// # Errors
    ///
    /// As for [`PathMatch::exact`].
    pub fn prefix(value: &str) -> Result<Self, InvalidValue> {
        check_path_value(value)?;
        Ok(Self::Prefix(
            value.strip_suffix('/').unwrap_or(value).into(),
        ))
    }

    /// A `RegularExpression` path match (whole path).
    ///
    /// # Errors
    ///
    /// When the pattern does not compile.
    pub fn regex(pattern: &str) -> Result<Self, InvalidValue> {
        Pattern::new(pattern).map(Self::Regex)
    }

    /// Whether `path` satisfies this match.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(v) => **v == *path,
            Self::Prefix(p) => {
                path.starts_with(&**p)
                    && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
            }
            Self::Regex(r) => r.is_match(path),
        }
    }
}

// === impl HeaderMatch ===

impl HeaderMatch {
    /// An `Exact` header match.
    ///
    /// # Errors
    ///
    /// When the name or value is not valid in an HTTP header.
    pub fn exact(name: &str, value: &str) -> Result<Self, InvalidValue> {
        Ok(Self::Exact(header_name(name)?, header_value(value)?))
    }

    /// A `RegularExpression` header match.
    ///
    /// # Errors
    ///
    /// When the name is invalid or the pattern does not compile.
    pub fn regex(name: &str, pattern: &str) -> Result<Self, InvalidValue> {
        Ok(Self::Regex(header_name(name)?, Pattern::new(pattern)?))
    }

    /// The header name this condition reads.
    pub fn name(&self) -> &HeaderName {
        match self {
            Self::Exact(n, _) | Self::Regex(n, _) => n,
        }
    }

    /// Whether `headers` satisfy this condition.
    pub fn matches(&self, headers: &http::HeaderMap) -> bool {
        match self {
            Self::Exact(name, value) => headers.get_all(name).iter().any(|v| v == value),
            Self::Regex(name, pattern) => headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| pattern.is_match(v))),
        }
    }
}

pub(crate) fn header_name(name: &str) -> Result<HeaderName, InvalidValue> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| InvalidValue::new(format!("invalid header name {name:?}")))
}

pub(crate) fn header_value(value: &str) -> Result<HeaderValue, InvalidValue> {
    HeaderValue::from_str(value)
        .map_err(|_| InvalidValue::new(format!("invalid header value {value:?}")))
}

// === impl QueryParamMatch ===

impl QueryParamMatch {
    /// An `Exact` query parameter match.
    ///
    /// # Errors
    ///
    /// When the name is empty.
    pub fn exact(name: &str, value: &str) -> Result<Self, InvalidValue> {
        check_query_name(name)?;
        Ok(Self::Exact(name.to_owned(), value.to_owned()))
    }

    /// A `RegularExpression` query parameter match.
    ///
    /// # Errors
    ///
    /// When the name is empty or the pattern does not compile.
    pub fn regex(name: &str, pattern: &str) -> Result<Self, InvalidValue> {
        check_query_name(name)?;
        Ok(Self::Regex(name.to_owned(), Pattern::new(pattern)?))
    }

    /// The parameter name this condition reads.
    pub fn name(&self) -> &str {
        match self {
            Self::Exact(n, _) | Self::Regex(n, _) => n,
        }
    }

    /// Whether the (decoded) `value` satisfies this condition.
    pub(crate) fn value_matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(_, v) => v == value,
            Self::Regex(_, p) => p.is_match(value),
        }
    }

    /// Whether the raw query string `query` satisfies this condition: the parameter's first
    /// value does (a repeated parameter is matched on its first value, as the Gateway API
    /// recommends).
    pub fn matches(&self, query: Option<&str>) -> bool {
        query
            .and_then(|q| {
                q.split('&').find_map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(k) == self.name()).then_some(v)
                })
            })
            .is_some_and(|v| self.value_matches(&percent_decode(v)))
    }
}

fn check_query_name(name: &str) -> Result<(), InvalidValue> {
    if name.is_empty() {
        return Err(InvalidValue::new("query parameter name must not be empty"));
    }
    Ok(())
}

/// Decodes `%XX` escapes (invalid escapes are kept as written; invalid UTF-8 is replaced).
pub(crate) fn percent_decode(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('%') {
        return std::borrow::Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

// === impl BackendName ===

impl BackendName {
    /// A backend name.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared name: cloning it is a reference-count increment.
    pub fn as_arc(&self) -> &Arc<str> {
        &self.0
    }
}

impl fmt::Debug for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for BackendName {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

// === impl BackendRef ===

impl BackendRef {
    /// A backend with `weight`.
    pub fn new(name: impl Into<BackendName>, weight: u32) -> Self {
        Self {
            name: name.into(),
            weight,
        }
    }
}

// === impl HttpRoute / HttpRule ===

impl<P> HttpRoute<P> {
    /// A route named `name` serving any host, without rules.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            hostnames: Vec::new(),
            rules: Vec::new(),
        }
    }

    /// Adds a hostname.
    #[must_use]
    pub fn with_hostname(mut self, hostname: Hostname) -> Self {
        self.hostnames.push(hostname);
        self
    }

    /// Adds a rule.
    #[must_use]
    pub fn with_rule(mut self, rule: HttpRule<P>) -> Self {
        self.rules.push(rule);
        self
    }

    /// The same route with each rule's policy mapped by `f`.
    pub fn map_policy<Q>(self, mut f: impl FnMut(P) -> Q) -> HttpRoute<Q> {
        HttpRoute {
            name: self.name,
            hostnames: self.hostnames,
            rules: self
                .rules
                .into_iter()
                .map(|r| HttpRule {
                    matches: r.matches,
                    filters: r.filters,
                    backends: r.backends,
                    policy: f(r.policy),
                })
                .collect(),
        }
    }
}

impl<P> HttpRule<P> {
    /// A rule with `policy`, no matches (so `PathPrefix /`), no filters and no backends.
    pub fn new(policy: P) -> Self {
        Self {
            matches: Vec::new(),
            filters: Vec::new(),
            backends: Vec::new(),
            policy,
        }
    }

    /// Adds a match.
    #[must_use]
    pub fn with_match(mut self, m: HttpRequestMatch) -> Self {
        self.matches.push(m);
        self
    }

    /// Adds a filter.
    #[must_use]
    pub fn with_filter(mut self, f: Filter) -> Self {
        self.filters.push(f);
        self
    }

    /// Adds a backend.
    #[must_use]
    pub fn with_backend(mut self, b: BackendRef) -> Self {
        self.backends.push(b);
        self
    }
}

impl HttpRequestMatch {
    /// A match on the path alone.
    pub fn path(path: PathMatch) -> Self {
        Self {
            path: Some(path),
            ..Self::default()
        }
    }
}

// === impl GrpcRoute / GrpcRule ===

impl<P> GrpcRoute<P> {
    /// A gRPC route named `name` serving any host, without rules.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            hostnames: Vec::new(),
            rules: Vec::new(),
        }
    }

    /// Adds a hostname.
    #[must_use]
    pub fn with_hostname(mut self, hostname: Hostname) -> Self {
        self.hostnames.push(hostname);
        self
    }

    /// Adds a rule.
    #[must_use]
    pub fn with_rule(mut self, rule: GrpcRule<P>) -> Self {
        self.rules.push(rule);
        self
    }

    /// The same route with each rule's policy mapped by `f`.
    pub fn map_policy<Q>(self, mut f: impl FnMut(P) -> Q) -> GrpcRoute<Q> {
        GrpcRoute {
            name: self.name,
            hostnames: self.hostnames,
            rules: self
                .rules
                .into_iter()
                .map(|r| GrpcRule {
                    matches: r.matches,
                    filters: r.filters,
                    backends: r.backends,
                    policy: f(r.policy),
                })
                .collect(),
        }
    }
}

impl<P> GrpcRule<P> {
    /// A rule with `policy`, matching every gRPC request, no filters and no backends.
    pub fn new(policy: P) -> Self {
        Self {
            matches: Vec::new(),
            filters: Vec::new(),
            backends: Vec::new(),
            policy,
        }
    }

    /// Adds a match.
    #[must_use]
    pub fn with_match(mut self, m: GrpcRequestMatch) -> Self {
        self.matches.push(m);
        self
    }

    /// Adds a filter.
    #[must_use]
    pub fn with_filter(mut self, f: Filter) -> Self {
        self.filters.push(f);
        self
    }

    /// Adds a backend.
    #[must_use]
    pub fn with_backend(mut self, b: BackendRef) -> Self {
        self.backends.push(b);
        self
    }
}

impl GrpcNameMatch {
    /// Whether `name` satisfies this condition.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(v) => **v == *name,
            Self::Regex(p) => p.is_match(name),
        }
    }
}

impl GrpcRequestMatch {
    /// A match on `service` and `method` names, both exact.
    pub fn exact(service: &str, method: &str) -> Self {
        Self {
            service: Some(GrpcNameMatch::Exact(service.into())),
            method: Some(GrpcNameMatch::Exact(method.into())),
            headers: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_element_wise() {
        let p = PathMatch::prefix("/v2").expect("valid");
        for ok in ["/v2", "/v2/", "/v2/x", "/v2/x/y"] {
            assert!(p.matches(ok), "/v2 prefix must match {ok}");
        }
        for no in ["/v2example", "/v", "/", "/v3/v2"] {
            assert!(!p.matches(no), "/v2 prefix must not match {no}");
        }
        let slash = PathMatch::prefix("/v2/").expect("valid");
        assert!(
            slash.matches("/v2"),
            "a trailing slash in the value is ignored"
        );
        let root = PathMatch::prefix("/").expect("valid");
        assert!(root.matches("/anything"), "/ matches every path");
    }

    #[test]
    fn wildcard_hostnames_need_a_label() {
        let w = Hostname::parse("*.Example.com").expect("valid");
        assert!(w.matches("foo.example.com"), "one label");
        assert!(w.matches("a.b.example.com"), "several labels");
        assert!(!w.matches("example.com"), "never the bare domain");
        assert!(!w.matches("fooexample.com"), "label boundary");
        assert!(Hostname::parse("a:80").is_err(), "ports are rejected");
        assert!(Hostname::parse("*").is_err(), "a bare star is rejected");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b"), "a b", "escape decoded");
        assert_eq!(percent_decode("a%2"), "a%2", "short escape kept");
        assert_eq!(percent_decode("%zz"), "%zz", "invalid escape kept");
    }

    #[test]
    fn a_repeated_query_parameter_matches_on_its_first_value() {
        let m = QueryParamMatch::exact("v", "1").expect("valid");
        assert!(m.matches(Some("v=1&v=2")));
        assert!(!m.matches(Some("v=2&v=1")), "the first value decides");
        assert!(m.matches(Some("a=b&v=1")), "the first with this name");
        assert!(!m.matches(Some("a=1")));
        assert!(!m.matches(None));
    }

    #[test]
    fn regex_is_whole_value() {
        let p = Pattern::new("[0-9]+").expect("valid");
        assert!(p.is_match("123"), "digits");
        assert!(!p.is_match("a123"), "anchored at the start");
        assert!(!p.is_match("123a"), "anchored at the end");
        let alt = Pattern::new("a|b").expect("valid");
        assert!(
            !alt.is_match("ab"),
            "alternation is grouped under the anchors"
        );
        assert!(Pattern::new("(").is_err(), "bad regex rejected");
    }
}
