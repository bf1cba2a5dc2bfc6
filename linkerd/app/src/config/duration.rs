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
    // One grammar for the whole config: the route crate's parser also reads the durations of
    // `timeouts`, `retry` and `streamTimeouts`.
    linkerd_http_route::config::parse_duration(s).map_err(|_| InvalidDuration(s.to_owned()))
}

/// Formats a duration in Gateway API syntax (the inverse of [`parse_duration`] for durations
/// of whole milliseconds that fit the grammar).
///
/// The canonical form (`1h2m3s4ms`) is used whenever its hour count has at most five digits;
/// longer durations that the grammar can still express (up to four components, repeats
/// allowed, such as `99999h99999h99999m99999ms`) get the fewest components that add up.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let canonical = || {
        let mut rest = ms;
        let mut out = String::new();
        for (per, unit) in UNITS {
            let n = rest / per;
            if n > 0 {
                out.push_str(&format!("{n}{unit}"));
                rest -= n * per;
            }
        }
        out
    };
    if ms / UNITS[0].0 <= MAX_COMPONENT {
        return canonical();
    }
    // Try every split of at most four components among the units; keep the shortest.
    let mut best: Option<Vec<(u128, &str)>> = None;
    for n_h in 0..=4u128 {
        for n_m in 0..=4 - n_h {
            for n_s in 0..=4 - n_h - n_m {
                for n_ms in 0..=4 - n_h - n_m - n_s {
                    let Some(parts) = split(ms, [n_h, n_m, n_s, n_ms]) else {
                        continue;
                    };
                    if best.as_ref().is_none_or(|b| parts.len() < b.len()) {
                        best = Some(parts);
                    }
                }
            }
        }
    }
    match best {
        Some(parts) => parts.iter().map(|(n, u)| format!("{n}{u}")).collect(),
        // Longer than the grammar can express: nothing parses to it.
        None => canonical(),
    }
}

/// The units, largest first, with their length in milliseconds.
const UNITS: [(u128, &str); 4] = [(3_600_000, "h"), (60_000, "m"), (1_000, "s"), (1, "ms")];
/// The largest number one component may hold (five digits).
const MAX_COMPONENT: u128 = 99_999;

/// Writes `ms` with `counts[i]` components of `UNITS[i]`, if possible: from the smallest unit
/// up, each unit takes as much as its components hold while leaving a multiple of the next
/// larger unit in use; the largest unit in use takes the rest. Components are in descending
/// unit order, each at most five digits, zeros left out.
fn split(ms: u128, counts: [u128; 4]) -> Option<Vec<(u128, &'static str)>> {
    let mut totals = [0u128; 4];
    let mut rest = ms;
    for i in (0..4).rev() {
        if counts[i] == 0 {
            continue;
        }
        let per = UNITS[i].0;
        let cap = counts[i] * MAX_COMPONENT * per;
        let larger = (0..i).rev().find(|&j| counts[j] > 0).map(|j| UNITS[j].0);
        let take = match larger {
            // Leave a multiple of the larger unit; take as much as fits.
            Some(next) => {
                let residue = rest % next;
                if !residue.is_multiple_of(per) || residue > cap.min(rest) {
                    return None;
                }
                residue + (cap.min(rest) - residue) / next * next
            }
            None => rest,
        };
        if !take.is_multiple_of(per) || take > cap {
            return None;
        }
        totals[i] = take / per;
        rest -= take;
    }
    if rest != 0 {
        return None;
    }
    let mut parts = vec![];
    for (i, total) in totals.into_iter().enumerate() {
        let mut left = total;
        while left > 0 {
            let n = left.min(MAX_COMPONENT);
            parts.push((n, UNITS[i].1));
            left -= n;
        }
    }
    Some(parts)
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

    #[test]
    fn formats_long_durations_that_the_grammar_expresses() {
        for text in [
            "99ms989m989ms99989h",
            "99999h99999h99999m99999ms",
            "99999h99999h99999h99999h",
            "99999h1h99999s99999ms",
        ] {
            let d = parse_duration(text).expect("valid");
            let formatted = format_duration(d);
            assert_eq!(parse_duration(&formatted), Ok(d), "{text} -> {formatted}");
        }
    }

    proptest! {
        #[test]
        fn long_durations_round_trip(parts in proptest::collection::vec((0u64..100_000, 0usize..4), 1..=4)) {
            let text: String = parts
                .iter()
                .map(|(n, u)| format!("{n}{}", ["h", "m", "s", "ms"][*u]))
                .collect();
            let d = parse_duration(&text).expect("valid by construction");
            let formatted = format_duration(d);
            prop_assert_eq!(parse_duration(&formatted), Ok(d), "{} -> {}", text, formatted);
        }

        #[test]
        fn round_trips(h in 0u64..99, m in 0u64..60, s in 0u64..60, ms in 0u64..1000) {
            let d = Duration::from_millis(((h * 60 + m) * 60 + s) * 1000 + ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
