//! Gateway API durations: the config parser never panics, agrees with the route crate's
//! parser, and a parsed duration formats to text that parses back to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use linkerd_app::config::{format_duration, parse_duration};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_duration(text);
    let route = linkerd_http_route::config::parse_duration(text);
    assert_eq!(
        parsed.as_ref().ok(),
        route.as_ref().ok(),
        "the config and route parsers disagree on {text:?}"
    );
    if let Ok(d) = parsed {
        let formatted = format_duration(d);
        let again = parse_duration(&formatted)
            .unwrap_or_else(|e| panic!("{d:?} formats to {formatted:?}, which fails: {e}"));
        assert_eq!(again, d, "{text:?} -> {formatted:?} does not round-trip");
    }
});
