use http::{HeaderMap, HeaderValue, Method, Uri, Version};
use std::{
    fmt::{self, Write},
    net::SocketAddr,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

/// The client's address (request extension, written by the server that accepted the
/// connection).
///
/// hyper and hyper-util do not record the peer address on requests, so the application
/// inserts it; [`AccessLogLayer`](crate::AccessLogLayer) reads `ClientAddr` first, then a
/// bare `std::net::SocketAddr` extension.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub SocketAddr);

/// One access-log record: the fields of DESIGN.md section 7.
///
/// Request header values are kept as received (cloning a `HeaderValue` or `Uri` from hyper
/// shares its buffer), and are turned into text only when the record is formatted, on the
/// writer's thread.
#[derive(Clone, Debug)]
pub struct Record {
    /// When the request arrived.
    pub timestamp: SystemTime,
    /// The client's address, when known ([`ClientAddr`]).
    pub client_addr: Option<SocketAddr>,
    /// The request method.
    pub method: Method,
    /// The request URI as received.
    pub uri: Uri,
    /// The `host` header (the URI authority is used when it is absent).
    pub host: Option<HeaderValue>,
    /// The request's HTTP version.
    pub version: Version,
    /// The status sent, 0 when the client got a reset (or a closed connection) and no
    /// response.
    pub status: u16,
    /// The gRPC status, for gRPC requests that got one.
    pub grpc_status: Option<u32>,
    /// The matched route's name.
    pub route: Option<Arc<str>>,
    /// The backend that answered.
    pub backend: Option<Arc<str>>,
    /// 1 + retries.
    pub attempts: u32,
    /// Request body bytes read.
    pub request_bytes: u64,
    /// Response body bytes sent.
    pub response_bytes: u64,
    /// Milliseconds from the request's arrival to the end of the response (or failure).
    pub duration_ms: f64,
    /// Milliseconds from the request's arrival to the response headers (or the failure that
    /// replaced them).
    pub headers_ms: f64,
    /// The `user-agent` header.
    pub user_agent: Option<HeaderValue>,
    /// The `referer` header (used by the Apache combined format only; not a JSON field).
    pub referer: Option<HeaderValue>,
    /// Where the trace id comes from; see [`Record::trace_id`].
    pub trace: Option<TraceHeader>,
    /// The metric `error` label of DESIGN.md section 5, when the request failed.
    pub error: Option<&'static str>,
}

/// The header a trace id was taken from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceHeader {
    /// A W3C `traceparent` whose trace-id part is 32 hex digits.
    TraceParent(HeaderValue),
    /// `x-b3-traceid`.
    B3(HeaderValue),
    /// `x-request-id`.
    RequestId(HeaderValue),
}

/// The JSON (and template) field names, in output order.
pub const FIELDS: [&str; 18] = [
    "timestamp",
    "client_addr",
    "method",
    "uri",
    "host",
    "version",
    "status",
    "grpc_status",
    "route",
    "backend",
    "attempts",
    "request_bytes",
    "response_bytes",
    "duration_ms",
    "headers_ms",
    "user_agent",
    "trace_id",
    "error",
];

// === impl Record ===

impl Record {
    /// A record of a request with `method`, `uri`, `version` and `headers`, at `timestamp`;
    /// the response fields are zero until filled in.
    pub fn from_request(
        timestamp: SystemTime,
        method: &Method,
        uri: &Uri,
        version: Version,
        headers: &HeaderMap,
    ) -> Self {
        let found = Found::scan(headers);
        Self {
            timestamp,
            client_addr: None,
            method: method.clone(),
            uri: without_userinfo(uri),
            host: found.host.cloned(),
            version,
            status: 0,
            grpc_status: None,
            route: None,
            backend: None,
            attempts: 1,
            request_bytes: 0,
            response_bytes: 0,
            duration_ms: 0.0,
            headers_ms: 0.0,
            user_agent: found.user_agent.cloned(),
            referer: found.referer.cloned(),
            trace: found.trace(),
            error: None,
        }
    }

    /// The host: the `host` header, else the URI's authority; without a userinfo part
    /// (`user:pw@`): credentials are not logged.
    pub fn host(&self) -> Option<&str> {
        match &self.host {
            Some(h) => Some(std::str::from_utf8(host_bytes(h.as_bytes())).unwrap_or("")),
            // The record's URI has no userinfo (see `without_userinfo`).
            None => self.uri.authority().map(http::uri::Authority::as_str),
        }
    }

    /// The trace id: the trace-id part of `traceparent`, else `x-b3-traceid`, else
    /// `x-request-id` (the first present; a `traceparent` that is not well-formed is skipped).
    pub fn trace_id(&self) -> Option<&str> {
        match self.trace.as_ref()? {
            TraceHeader::TraceParent(v) => text(v).split('-').nth(1),
            TraceHeader::B3(v) | TraceHeader::RequestId(v) => Some(text(v)),
        }
    }

    /// The `version` field: `HTTP/1.1`, `HTTP/2.0`, ...
    pub fn version_str(&self) -> &'static str {
        version_str(self.version)
    }
}

/// A `host` value's bytes without a userinfo part (up to the last `@`).
pub(crate) fn host_bytes(value: &[u8]) -> &[u8] {
    match value.iter().rposition(|&b| b == b'@') {
        Some(at) => &value[at + 1..],
        None => value,
    }
}

/// `uri` without the userinfo of its authority (`user:pw@`, which the proxy refuses, but
/// logs): credentials are not logged.
fn without_userinfo(uri: &Uri) -> Uri {
    let Some((_, host)) = uri.authority().and_then(|a| a.as_str().rsplit_once('@')) else {
        return uri.clone();
    };
    let mut parts = uri.clone().into_parts();
    parts.authority = http::uri::Authority::try_from(host).ok();
    Uri::from_parts(parts).unwrap_or_else(|_| {
        // (Not without an authority: a path alone, or `/`.)
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        Uri::try_from(path).unwrap_or_else(|_| Uri::from_static("/"))
    })
}

fn text(v: &HeaderValue) -> &str {
    std::str::from_utf8(v.as_bytes()).unwrap_or("")
}

pub(crate) fn version_str(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

// === impl TraceHeader ===

// Names as constants: a lookup by `&str` parses and validates the name on every call.
const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
const X_B3_TRACEID: http::HeaderName = http::HeaderName::from_static("x-b3-traceid");
const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

impl TraceHeader {
    /// The first trace header present in `headers`.
    pub fn find(headers: &HeaderMap) -> Option<Self> {
        if headers.is_empty() {
            return None;
        }
        if let Some(v) = headers.get(TRACEPARENT)
            && traceparent_ok(v.as_bytes())
        {
            return Some(Self::TraceParent(v.clone()));
        }
        if let Some(v) = headers.get(X_B3_TRACEID) {
            return Some(Self::B3(v.clone()));
        }
        headers
            .get(X_REQUEST_ID)
            .map(|v| Self::RequestId(v.clone()))
    }
}

/// The first value of each header a record keeps.
#[derive(Default)]
struct Found<'a> {
    host: Option<&'a HeaderValue>,
    user_agent: Option<&'a HeaderValue>,
    referer: Option<&'a HeaderValue>,
    traceparent: Option<&'a HeaderValue>,
    b3: Option<&'a HeaderValue>,
    request_id: Option<&'a HeaderValue>,
}

impl<'a> Found<'a> {
    /// Up to this many header values, one pass comparing names beats six hashed lookups.
    const SCAN_MAX: usize = 16;

    fn scan(headers: &'a HeaderMap) -> Self {
        if headers.len() > Self::SCAN_MAX {
            return Self {
                host: headers.get(http::header::HOST),
                user_agent: headers.get(http::header::USER_AGENT),
                referer: headers.get(http::header::REFERER),
                traceparent: headers.get(TRACEPARENT),
                b3: headers.get(X_B3_TRACEID),
                request_id: headers.get(X_REQUEST_ID),
            };
        }
        let mut found = Self::default();
        // A name's values come together, first value first: keeping the first seen is
        // what `HeaderMap::get` answers.
        for (name, value) in headers {
            let slot = if name == http::header::HOST {
                &mut found.host
            } else if name == http::header::USER_AGENT {
                &mut found.user_agent
            } else if name == http::header::REFERER {
                &mut found.referer
            } else if name == TRACEPARENT {
                &mut found.traceparent
            } else if name == X_B3_TRACEID {
                &mut found.b3
            } else if name == X_REQUEST_ID {
                &mut found.request_id
            } else {
                continue;
            };
            slot.get_or_insert(value);
        }
        found
    }

    /// What [`TraceHeader::find`] answers for the same headers.
    fn trace(&self) -> Option<TraceHeader> {
        if let Some(v) = self.traceparent
            && traceparent_ok(v.as_bytes())
        {
            return Some(TraceHeader::TraceParent(v.clone()));
        }
        if let Some(v) = self.b3 {
            return Some(TraceHeader::B3(v.clone()));
        }
        self.request_id.map(|v| TraceHeader::RequestId(v.clone()))
    }
}

/// `version-traceid-parentid-flags`, with a 32-hex-digit trace id.
fn traceparent_ok(v: &[u8]) -> bool {
    let mut parts = v.split(|b| *b == b'-');
    let _version = parts.next();
    parts
        .next()
        .is_some_and(|id| id.len() == 32 && id.iter().all(u8::is_ascii_hexdigit))
}

// === time formatting ===

/// A UTC civil date-time split from a `SystemTime`.
pub(crate) struct Civil {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    pub(crate) micros: u32,
}

impl Civil {
    pub(crate) fn from_system(t: SystemTime) -> Self {
        // Times before 1970 are clamped to the epoch: a proxy's clock never reads them.
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        let rem = secs % 86_400;
        // Days to civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self {
            year,
            month: u32::try_from(month).unwrap_or(1),
            day: u32::try_from(day).unwrap_or(1),
            hour: u32::try_from(rem / 3600).unwrap_or(0),
            minute: u32::try_from(rem % 3600 / 60).unwrap_or(0),
            second: u32::try_from(rem % 60).unwrap_or(0),
            micros: d.subsec_micros(),
        }
    }

    /// RFC 3339 in UTC with microseconds: `2024-05-06T07:08:09.123456Z`.
    pub(crate) fn rfc3339(&self, out: &mut impl Write) -> fmt::Result {
        use crate::format::write_padded;
        // The year is 1970 or later (see `from_system`).
        write_padded(u64::try_from(self.year).unwrap_or(0), 4, out)?;
        out.write_char('-')?;
        write_padded(u64::from(self.month), 2, out)?;
        out.write_char('-')?;
        write_padded(u64::from(self.day), 2, out)?;
        out.write_char('T')?;
        write_padded(u64::from(self.hour), 2, out)?;
        out.write_char(':')?;
        write_padded(u64::from(self.minute), 2, out)?;
        out.write_char(':')?;
        write_padded(u64::from(self.second), 2, out)?;
        out.write_char('.')?;
        write_padded(u64::from(self.micros), 6, out)?;
        out.write_char('Z')
    }

    /// The Apache `%t` form: `06/May/2024:07:08:09 +0000`.
    pub(crate) fn apache(&self, out: &mut impl Write) -> fmt::Result {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = MONTHS[(self.month.clamp(1, 12) - 1) as usize];
        write!(
            out,
            "{:02}/{month}/{:04}:{:02}:{:02}:{:02} +0000",
            self.day, self.year, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn credentials_in_the_target_are_not_logged() {
        let uri = Uri::from_static("http://alice:s3cret@ex.com:8080/a?b");
        let r = Record::from_request(
            SystemTime::UNIX_EPOCH,
            &Method::GET,
            &uri,
            Version::HTTP_2,
            &HeaderMap::new(),
        );
        assert_eq!(r.uri, "http://ex.com:8080/a?b");
        assert_eq!(r.host(), Some("ex.com:8080"));
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("bob@ex.com"));
        let r = Record::from_request(
            SystemTime::UNIX_EPOCH,
            &Method::GET,
            &Uri::from_static("/a"),
            Version::HTTP_11,
            &headers,
        );
        assert_eq!(r.host(), Some("ex.com"));
    }

    proptest::proptest! {
        /// The one-pass scan finds what the lookups by name find, whatever the order,
        /// duplicates and number of headers (above `SCAN_MAX` it looks them up).
        #[test]
        fn the_header_scan_matches_lookups(
            entries in proptest::collection::vec((0usize..9, 0u8..4), 0..24),
        ) {
            let names = [
                "host", "user-agent", "referer", "traceparent", "x-b3-traceid",
                "x-request-id", "accept", "x-other", "content-type",
            ];
            let values = [
                "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01",
                "00-short-01",
                "a",
                "b",
            ];
            let mut headers = HeaderMap::new();
            for (n, v) in entries {
                headers.append(
                    http::HeaderName::from_static(names[n]),
                    HeaderValue::from_static(values[usize::from(v)]),
                );
            }
            let r = Record::from_request(
                UNIX_EPOCH,
                &Method::GET,
                &Uri::from_static("/"),
                Version::HTTP_11,
                &headers,
            );
            proptest::prop_assert_eq!(r.host.as_ref(), headers.get("host"));
            proptest::prop_assert_eq!(r.user_agent.as_ref(), headers.get("user-agent"));
            proptest::prop_assert_eq!(r.referer.as_ref(), headers.get("referer"));
            proptest::prop_assert_eq!(r.trace, TraceHeader::find(&headers));
        }
    }

    fn rfc(secs: u64, micros: u64) -> String {
        let mut s = String::new();
        Civil::from_system(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
            .rfc3339(&mut s)
            .expect("write to string");
        s
    }

    #[test]
    fn formats_rfc3339_with_micros() {
        assert_eq!(rfc(0, 0), "1970-01-01T00:00:00.000000Z", "epoch");
        assert_eq!(
            rfc(951_782_400, 1),
            "2000-02-29T00:00:00.000001Z",
            "leap day"
        );
        assert_eq!(
            rfc(1_709_251_199, 999_999),
            "2024-02-29T23:59:59.999999Z",
            "end of a leap day"
        );
        assert_eq!(
            rfc(4_102_444_800, 0),
            "2100-01-01T00:00:00.000000Z",
            "2100 is not a leap year"
        );
        let mut s = String::new();
        Civil::from_system(UNIX_EPOCH + Duration::from_secs(971_092_536))
            .apache(&mut s)
            .expect("write");
        assert_eq!(s, "09/Oct/2000:11:55:36 +0000", "Apache time");
    }

    #[test]
    fn trace_id_precedence() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("req-1"));
        let rec = |h: &HeaderMap| {
            Record::from_request(
                UNIX_EPOCH,
                &Method::GET,
                &Uri::from_static("/"),
                Version::HTTP_11,
                h,
            )
        };
        assert_eq!(rec(&h).trace_id(), Some("req-1"), "x-request-id alone");
        h.insert("x-b3-traceid", HeaderValue::from_static("b3b3"));
        assert_eq!(rec(&h).trace_id(), Some("b3b3"), "b3 before request id");
        h.insert("traceparent", HeaderValue::from_static("garbage"));
        assert_eq!(
            rec(&h).trace_id(),
            Some("b3b3"),
            "a malformed traceparent is skipped"
        );
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(
            rec(&h).trace_id(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            "traceparent first"
        );
    }
}
