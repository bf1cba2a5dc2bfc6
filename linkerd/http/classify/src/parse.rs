use http::{HeaderMap, HeaderValue, StatusCode};
use std::{
    fmt,
    time::{Duration, SystemTime},
};

/// What a `grpc-retry-pushback-ms` trailer asks for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Pushback {
    /// Retry no sooner than this.
    After(Duration),
    /// A negative value: the server asks not to retry.
    DoNotRetry,
}

/// A `grpc-timeout` value that does not follow the gRPC spec (1 to 8 ASCII digits and one of
/// the units `H`, `M`, `S`, `m`, `u`, `n`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidGrpcTimeout(String);

/// Reads `Retry-After` (RFC 9110 section 10.2.3) for a 429 or 503 response: delay-seconds or
/// an HTTP-date relative to `now` (a date in the past means "now": zero), clamped to `max`.
///
/// `None` for other statuses, a missing header or a malformed value (never a panic).
pub fn retry_after(
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
    max: Duration,
) -> Option<Duration> {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let delay = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds still means "a long time": clamp.
        value
            .parse::<u64>()
            .map(Duration::from_secs)
            .unwrap_or(Duration::MAX)
    } else {
        let when = httpdate::parse_http_date(value).ok()?;
        when.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(max))
}

/// Reads `grpc-retry-pushback-ms` (gRPC A6): a decimal number of milliseconds; a negative
/// value means do not retry. `None` when absent or malformed.
pub fn grpc_retry_pushback(headers: &HeaderMap) -> Option<Pushback> {
    const PUSHBACK: http::HeaderName = http::HeaderName::from_static("grpc-retry-pushback-ms");
    let value = headers.get(PUSHBACK)?.to_str().ok()?.trim();
    let (negative, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if negative {
        return Some(Pushback::DoNotRetry);
    }
    digits
        .parse::<u64>()
        .ok()
        .map(|ms| Pushback::After(Duration::from_millis(ms)))
}

/// Parses a `grpc-timeout` header value (gRPC over HTTP/2 spec): 1 to 8 ASCII digits followed
/// by a unit: `H` hours, `M` minutes, `S` seconds, `m` milliseconds, `u` microseconds,
/// `n` nanoseconds.
///
/// # Errors
/// Any other form is an [`InvalidGrpcTimeout`].
pub fn parse_grpc_timeout(value: &[u8]) -> Result<Duration, InvalidGrpcTimeout> {
    let invalid = || InvalidGrpcTimeout(String::from_utf8_lossy(value).into_owned());
    let (&unit, digits) = value.split_last().ok_or_else(invalid)?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    let d = match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(invalid()),
    };
    Ok(d)
}

/// Encodes `d` as a `grpc-timeout` value in the finest unit whose value fits in 8 digits,
/// rounding down (a propagated deadline may shrink, never grow).
pub fn encode_grpc_timeout(d: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = d.as_nanos();
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    for (per, unit) in units {
        let v = nanos / per;
        if v <= MAX {
            return HeaderValue::try_from(format!("{v}{unit}"))
                .expect("digits and a unit are a valid header value");
        }
    }
    HeaderValue::from_static("99999999H")
}

// === impl InvalidGrpcTimeout ===

impl fmt::Display for InvalidGrpcTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid grpc-timeout {:?}", self.0)
    }
}

impl std::error::Error for InvalidGrpcTimeout {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    const MAX: Duration = Duration::from_secs(10);

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let h = headers("retry-after", "3");
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &h, now, MAX),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &h, now, MAX),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(StatusCode::BAD_GATEWAY, &h, now, MAX),
            None,
            "only 429 and 503 carry a meaningful Retry-After"
        );
        let h = headers("retry-after", "99999999999999999999999");
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &h, now, MAX),
            Some(MAX),
            "huge values clamp"
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(5));
        let h = headers("retry-after", &date);
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &h, now, MAX),
            Some(Duration::from_secs(5))
        );
        let date = httpdate::fmt_http_date(now - Duration::from_secs(5));
        let h = headers("retry-after", &date);
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &h, now, MAX),
            Some(Duration::ZERO),
            "a past date means now"
        );
        for bad in ["", "-1", "1.5", "soon", "Mon, 99 Foo 2020 00:00:00 GMT"] {
            let h = headers("retry-after", bad);
            assert_eq!(
                retry_after(StatusCode::SERVICE_UNAVAILABLE, &h, now, MAX),
                None,
                "{bad:?} is malformed"
            );
        }
    }

    #[test]
    fn pushback() {
        assert_eq!(
            grpc_retry_pushback(&headers("grpc-retry-pushback-ms", "250")),
            Some(Pushback::After(Duration::from_millis(250)))
        );
        assert_eq!(
            grpc_retry_pushback(&headers("grpc-retry-pushback-ms", "-1")),
            Some(Pushback::DoNotRetry)
        );
        for bad in ["", "-", "1s", "abc", "99999999999999999999999"] {
            assert_eq!(
                grpc_retry_pushback(&headers("grpc-retry-pushback-ms", bad)),
                None,
                "{bad:?} is malformed"
            );
        }
        assert_eq!(grpc_retry_pushback(&HeaderMap::new()), None);
    }

    #[test]
    fn grpc_timeout_units() {
        let cases = [
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("10S", Duration::from_secs(10)),
            ("500m", Duration::from_millis(500)),
            ("100u", Duration::from_micros(100)),
            ("5n", Duration::from_nanos(5)),
            ("99999999S", Duration::from_secs(99_999_999)),
        ];
        for (v, d) in cases {
            assert_eq!(parse_grpc_timeout(v.as_bytes()), Ok(d), "{v}");
        }
        for bad in [
            "",
            "S",
            "1",
            "123456789S",
            "1s",
            "-1S",
            "1.5S",
            "1 S",
            "1SS",
        ] {
            assert!(parse_grpc_timeout(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn grpc_timeout_encoding() {
        assert_eq!(encode_grpc_timeout(Duration::from_nanos(5)), "5n");
        assert_eq!(encode_grpc_timeout(Duration::from_millis(1500)), "1500000u");
        assert_eq!(encode_grpc_timeout(Duration::from_secs(100)), "100000m");
        assert_eq!(
            encode_grpc_timeout(Duration::from_secs(1_000_000)),
            "1000000S"
        );
        assert_eq!(encode_grpc_timeout(Duration::MAX), "99999999H");
    }

    proptest! {
        #[test]
        fn grpc_timeout_round_trip_never_grows(nanos in any::<u64>()) {
            let d = Duration::from_nanos(nanos);
            let encoded = encode_grpc_timeout(d);
            let back = parse_grpc_timeout(encoded.as_bytes()).expect("we encode valid values");
            prop_assert!(back <= d, "{encoded:?} lengthened {d:?}");
        }

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
            let _ = parse_grpc_timeout(&bytes);
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                let mut h = HeaderMap::new();
                h.insert("retry-after", v.clone());
                h.insert("grpc-retry-pushback-ms", v);
                let _ = retry_after(StatusCode::SERVICE_UNAVAILABLE, &h, SystemTime::UNIX_EPOCH, MAX);
                let _ = grpc_retry_pushback(&h);
            }
        }
    }
}
