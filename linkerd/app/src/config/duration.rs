use std::{fmt, time::Duration};

/// A duration in Gateway API syntax (GEP-2257): one to four `<digits><unit>` components, each of
/// one to five digits, with units `h`, `m`, `s` and `ms`, e.g. `500ms`, `10s`, `1m30s`, `1h`.
/// `0s` means "disabled" wherever a timeout is optional.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GwDuration(pub Duration);

/// A string that is not a Gateway API duration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidDuration(pub String);

/// Parses a Gateway API duration.
///
/// # Errors
/// Anything outside the GEP-2257 grammar: empty strings, fractions, signs, spaces, unknown
/// units, more than four components or more than five digits in one.
pub fn parse_duration(s: &str) -> Result<Duration, InvalidDuration> {
    let invalid = || InvalidDuration(s.to_owned());
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    let mut i = 0;
    let mut components = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() || digits.len() > 5 {
            return Err(invalid());
        }
        let n: u64 = digits.parse().map_err(|_| invalid())?;
        let unit = if s[i..].starts_with("ms") {
            i += 2;
            Duration::from_millis(n)
        } else {
            let u = bytes.get(i).copied().ok_or_else(invalid)?;
            i += 1;
            match u {
                b'h' => Duration::from_secs(n * 3600),
                b'm' => Duration::from_secs(n * 60),
                b's' => Duration::from_secs(n),
                _ => return Err(invalid()),
            }
        };
        components += 1;
        if components > 4 {
            return Err(invalid());
        }
        total += unit;
    }
    Ok(total)
}

/// Formats a duration in Gateway API syntax (the inverse of [`parse_duration`] for durations
/// of whole milliseconds that fit the grammar).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (per, unit) in [(3_600_000u128, "h"), (60_000, "m"), (1_000, "s"), (1, "ms")] {
        let n = ms / per;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            ms -= n * per;
        }
    }
    out
}

impl fmt::Display for InvalidDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid duration {:?}: expected Gateway API syntax such as 500ms, 10s, 1m30s or 1h",
            self.0
        )
    }
}

impl std::error::Error for InvalidDuration {}

impl<'de> serde::Deserialize<'de> for GwDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(GwDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for GwDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_gateway_api_durations() {
        let ok = [
            ("0s", 0),
            ("500ms", 500),
            ("10s", 10_000),
            ("1m", 60_000),
            ("1h", 3_600_000),
            ("1m30s", 90_000),
            ("1h2m3s4ms", 3_723_004),
            ("99999ms", 99_999),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for bad in [
            "",
            "1",
            "s",
            "1.5s",
            "-1s",
            "1 s",
            "1d",
            "1us",
            "100000s",
            "1h1h1h1h1h",
            "1sm",
            "ms",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    proptest! {
        #[test]
        fn round_trips(h in 0u64..99, m in 0u64..60, s in 0u64..60, ms in 0u64..1000) {
            let d = Duration::from_millis(((h * 60 + m) * 60 + s) * 1000 + ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
