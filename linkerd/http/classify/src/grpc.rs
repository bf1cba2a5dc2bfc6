use http::StatusCode;
use std::fmt;

/// A gRPC status code (<https://grpc.github.io/grpc/core/md_doc_statuscodes.html>).
///
/// Codes 0 to 16 are defined by the gRPC spec; other values can be carried (a peer may send
/// them) and are treated as `UNKNOWN` where a decision depends on the code.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GrpcCode(u32);

const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// A `grpc-status` value or a code name that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidGrpcCode(pub(crate) String);

// === impl GrpcCode ===

impl GrpcCode {
    /// `0`: not an error.
    pub const OK: Self = Self(0);
    /// `1`: the operation was cancelled, typically by the caller.
    pub const CANCELLED: Self = Self(1);
    /// `2`: unknown error.
    pub const UNKNOWN: Self = Self(2);
    /// `3`: the client specified an invalid argument.
    pub const INVALID_ARGUMENT: Self = Self(3);
    /// `4`: the deadline expired before the operation could complete.
    pub const DEADLINE_EXCEEDED: Self = Self(4);
    /// `5`: some requested entity was not found.
    pub const NOT_FOUND: Self = Self(5);
    /// `6`: the entity the client tried to create already exists.
    pub const ALREADY_EXISTS: Self = Self(6);
    /// `7`: the caller lacks permission.
    pub const PERMISSION_DENIED: Self = Self(7);
    /// `8`: some resource has been exhausted.
    pub const RESOURCE_EXHAUSTED: Self = Self(8);
    /// `9`: the system is not in a state required for the operation.
    pub const FAILED_PRECONDITION: Self = Self(9);
    /// `10`: the operation was aborted.
    pub const ABORTED: Self = Self(10);
    /// `11`: the operation was attempted past the valid range.
    pub const OUT_OF_RANGE: Self = Self(11);
    /// `12`: the operation is not implemented.
    pub const UNIMPLEMENTED: Self = Self(12);
    /// `13`: internal error.
    pub const INTERNAL: Self = Self(13);
    /// `14`: the service is currently unavailable.
    pub const UNAVAILABLE: Self = Self(14);
    /// `15`: unrecoverable data loss or corruption.
    pub const DATA_LOSS: Self = Self(15);
    /// `16`: the request lacks valid authentication credentials.
    pub const UNAUTHENTICATED: Self = Self(16);

    /// A code from its number, defined by the spec or not.
    pub const fn from_u32(code: u32) -> Self {
        Self(code)
    }

    /// The numeric value.
    pub const fn as_u32(self) -> u32 {
        self.0
    }

    /// Whether the gRPC spec defines this code (0 to 16).
    pub const fn is_defined(self) -> bool {
        self.0 <= 16
    }

    /// The spec's UPPER_SNAKE name (`UNAVAILABLE`), or `None` for a code the spec does not
    /// define.
    pub fn name(self) -> Option<&'static str> {
        NAMES.get(self.0 as usize).copied()
    }

    /// Parses a `grpc-status` header value: ASCII decimal digits only (at most 10), as the
    /// spec sends it.
    ///
    /// # Errors
    /// Anything else (empty, signs, spaces, letters, overflow) is an [`InvalidGrpcCode`].
    pub fn from_header(value: &[u8]) -> Result<Self, InvalidGrpcCode> {
        let invalid = || InvalidGrpcCode(String::from_utf8_lossy(value).into_owned());
        if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
            return Err(invalid());
        }
        let mut n: u64 = 0;
        for d in value {
            n = n * 10 + u64::from(d - b'0');
        }
        u32::try_from(n).map(Self).map_err(|_| invalid())
    }

    /// Parses a code written in config: a number, the UPPER_SNAKE name, or its lower-case
    /// kebab form (`deadline-exceeded`, `resource-exhausted`).
    ///
    /// # Errors
    /// An unknown name or a number above 16 is an [`InvalidGrpcCode`].
    pub fn from_name(name: &str) -> Result<Self, InvalidGrpcCode> {
        if let Ok(code) = Self::from_header(name.as_bytes()) {
            if code.is_defined() {
                return Ok(code);
            }
            return Err(InvalidGrpcCode(name.to_owned()));
        }
        let upper = name.replace('-', "_").to_ascii_uppercase();
        NAMES
            .iter()
            .position(|n| *n == upper)
            .map(|i| Self(i as u32))
            .ok_or_else(|| InvalidGrpcCode(name.to_owned()))
    }

    /// The gRPC code for a non-200 HTTP status on a gRPC request, per the gRPC spec's
    /// "HTTP to gRPC Status Code Mapping" table: 400 INTERNAL, 401 UNAUTHENTICATED,
    /// 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE, anything else
    /// UNKNOWN.
    pub fn from_http_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => Self::INTERNAL,
            401 => Self::UNAUTHENTICATED,
            403 => Self::PERMISSION_DENIED,
            404 => Self::UNIMPLEMENTED,
            429 | 502 | 503 | 504 => Self::UNAVAILABLE,
            _ => Self::UNKNOWN,
        }
    }

    /// The value for a `grpc-status` header.
    pub fn to_header_value(self) -> http::HeaderValue {
        http::HeaderValue::from(self.0)
    }
}

impl fmt::Debug for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "GrpcCode({})", self.0),
        }
    }
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.0),
        }
    }
}

// === impl InvalidGrpcCode ===

impl fmt::Display for InvalidGrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid grpc status code {:?}", self.0)
    }
}

impl std::error::Error for InvalidGrpcCode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_values() {
        assert_eq!(GrpcCode::from_header(b"14"), Ok(GrpcCode::UNAVAILABLE));
        assert_eq!(GrpcCode::from_header(b"0"), Ok(GrpcCode::OK));
        assert_eq!(GrpcCode::from_header(b"99").map(GrpcCode::as_u32), Ok(99));
        for bad in [&b""[..], b"-1", b" 1", b"1a", b"99999999999", b"4294967296"] {
            assert!(
                GrpcCode::from_header(bad).is_err(),
                "{bad:?} must be rejected"
            );
        }
    }

    #[test]
    fn parses_names() {
        assert_eq!(
            GrpcCode::from_name("deadline-exceeded"),
            Ok(GrpcCode::DEADLINE_EXCEEDED)
        );
        assert_eq!(
            GrpcCode::from_name("resource-exhausted"),
            Ok(GrpcCode::RESOURCE_EXHAUSTED)
        );
        assert_eq!(GrpcCode::from_name("cancelled"), Ok(GrpcCode::CANCELLED));
        assert_eq!(
            GrpcCode::from_name("UNAVAILABLE"),
            Ok(GrpcCode::UNAVAILABLE)
        );
        assert_eq!(GrpcCode::from_name("14"), Ok(GrpcCode::UNAVAILABLE));
        assert!(GrpcCode::from_name("17").is_err());
        assert!(GrpcCode::from_name("nope").is_err());
    }

    #[test]
    fn maps_http_statuses() {
        let cases = [
            (400, GrpcCode::INTERNAL),
            (401, GrpcCode::UNAUTHENTICATED),
            (403, GrpcCode::PERMISSION_DENIED),
            (404, GrpcCode::UNIMPLEMENTED),
            (429, GrpcCode::UNAVAILABLE),
            (502, GrpcCode::UNAVAILABLE),
            (503, GrpcCode::UNAVAILABLE),
            (504, GrpcCode::UNAVAILABLE),
            (500, GrpcCode::UNKNOWN),
            (418, GrpcCode::UNKNOWN),
        ];
        for (status, code) in cases {
            assert_eq!(
                GrpcCode::from_http_status(StatusCode::from_u16(status).unwrap()),
                code,
                "status {status}"
            );
        }
    }
}
