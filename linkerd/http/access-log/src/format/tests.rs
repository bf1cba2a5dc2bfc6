use super::*;
use http::{HeaderValue, Method, Uri, Version};
use std::{
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

fn record() -> Record {
    let mut r = Record::from_request(
        UNIX_EPOCH + Duration::from_micros(971_092_536_000_042),
        &Method::POST,
        &Uri::from_static("/a?q=%22x%22"),
        Version::HTTP_11,
        &http::HeaderMap::new(),
    );
    r.client_addr = Some("127.0.0.1:4000".parse().expect("addr"));
    r.host = Some(HeaderValue::from_static("example.com"));
    r.status = 503;
    r.grpc_status = Some(14);
    r.route = Some(Arc::from("r\"1"));
    r.backend = Some(Arc::from("b"));
    r.attempts = 3;
    r.request_bytes = 10;
    r.response_bytes = 20;
    r.duration_ms = 1.5;
    r.headers_ms = 0.25;
    r.user_agent = Some(HeaderValue::from_static("curl/8 \"x\""));
    r.referer = Some(HeaderValue::from_static("http://ref/"));
    r.error = Some("LOAD_SHED");
    r
}

#[test]
fn json_line_has_every_field_in_order() {
    let line = Format::Json.to_line(&record());
    assert_eq!(
        line,
        "{\"timestamp\":\"2000-10-09T11:55:36.000042Z\",\"client_addr\":\"127.0.0.1:4000\",\
         \"method\":\"POST\",\"uri\":\"/a?q=%22x%22\",\"host\":\"example.com\",\"version\":\"HTTP/1.1\",\
         \"status\":503,\"grpc_status\":14,\"route\":\"r\\\"1\",\"backend\":\"b\",\"attempts\":3,\
         \"request_bytes\":10,\"response_bytes\":20,\"duration_ms\":1.500,\"headers_ms\":0.250,\
         \"user_agent\":\"curl/8 \\\"x\\\"\",\"trace_id\":null,\"error\":\"LOAD_SHED\"}\n",
        "JSON line"
    );
}

#[test]
fn apache_combined() {
    let line = Format::Apache.to_line(&record());
    assert_eq!(
        line,
        "127.0.0.1 - - [09/Oct/2000:11:55:36 +0000] \"POST /a?q=%22x%22 HTTP/1.1\" 503 20 \"http://ref/\" \"curl/8 \\\"x\\\"\"\n",
        "combined log format"
    );
    let mut r = record();
    r.status = 0;
    r.response_bytes = 0;
    r.client_addr = None;
    r.referer = None;
    assert!(
        Format::Apache.to_line(&r).starts_with("- - - ["),
        "unknown client is -"
    );
    assert!(
        Format::Apache
            .to_line(&r)
            .ends_with("\" - - \"-\" \"curl/8 \\\"x\\\"\"\n"),
        "no status, no bytes, no referer are -: {}",
        Format::Apache.to_line(&r)
    );
}

#[test]
fn templates() {
    let t: Format = "%method% %status% 100%% %trace_id% %grpc_status%"
        .parse()
        .expect("valid");
    assert_eq!(
        t.to_line(&record()),
        "POST 503 100% - 14\n",
        "fields, literal percent, null"
    );
    assert!("%nope%".parse::<Format>().is_err(), "unknown field");
    // A `%` that opens no placeholder is text (DESIGN.md section 7: "any text").
    let t: Format = "rate 100% ok %status% 5%"
        .parse()
        .expect("a lone percent is text");
    assert_eq!(t.to_line(&record()), "rate 100% ok 503 5%\n");
    // Field names are lower-case: another case names no field (not text either).
    assert!(
        "%Method% %status%".parse::<Format>().is_err(),
        "unknown field"
    );
    assert!("%STATUS%".parse::<Format>().is_err(), "unknown field");
    // A template with no placeholder would log the same text for every request: most
    // likely a misspelt format.
    for constant in ["JSON", "json ", "Apache", "static text", "100%"] {
        assert!(constant.parse::<Format>().is_err(), "{constant:?}");
    }
    assert_eq!("json".parse::<Format>(), Ok(Format::Json));
    assert_eq!("apache".parse::<Format>(), Ok(Format::Apache));
    let mut r = record();
    r.route = Some(Arc::from("a\nb"));
    let t: Format = "%route%".parse().expect("valid");
    assert_eq!(
        t.to_line(&r),
        "a\\x0ab\n",
        "control characters never break the line"
    );
}

proptest::proptest! {
    #[test]
    fn json_escaping_round_trips(ua in proptest::collection::vec(0x20u8..0x7f, 0..40), route in ".{0,20}") {
        let mut r = record();
        r.user_agent = Some(HeaderValue::from_bytes(&ua).expect("visible ASCII"));
        r.route = Some(Arc::from(route.as_str()));
        let line = Format::Json.to_line(&r);
        proptest::prop_assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "one line");
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        proptest::prop_assert_eq!(v["user_agent"].as_str(), Some(std::str::from_utf8(&ua).expect("ascii")));
        proptest::prop_assert_eq!(v["route"].as_str(), Some(route.as_str()));
    }
}

proptest::proptest! {
    /// The hand-written number, duration, address and timestamp writers agree with the
    /// standard formatting they replace.
    #[test]
    fn fast_writers_match_std_formatting(
        n in proptest::num::u64::ANY,
        micros in 0u64..1_000_000_000_000,
        v4 in proptest::num::u32::ANY,
        v6 in proptest::num::u128::ANY,
        port in proptest::num::u16::ANY,
        secs in 0u64..8_000_000_000,
        sub_micros in 0u32..1_000_000,
    ) {
        let mut s = String::new();
        write_u64(n, &mut s).expect("write");
        proptest::prop_assert_eq!(&s, &n.to_string());

        let ms = micros as f64 / 1000.0;
        s.clear();
        write_ms(ms, &mut s).expect("write");
        proptest::prop_assert_eq!(&s, &format!("{ms:.3}"));

        for addr in [
            std::net::SocketAddr::from((std::net::Ipv4Addr::from(v4), port)),
            std::net::SocketAddr::from((std::net::Ipv6Addr::from(v6), port)),
        ] {
            let mut b = Vec::new();
            json::addr(addr, &mut b);
            proptest::prop_assert_eq!(std::str::from_utf8(&b).expect("ascii"), &addr.to_string());
        }
        let mut b = Vec::new();
        json::millis(ms, &mut b);
        proptest::prop_assert_eq!(std::str::from_utf8(&b).expect("ascii"), &format!("{ms:.3}"));

        let t = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(secs)
            + std::time::Duration::from_micros(u64::from(sub_micros));
        let c = crate::record::Civil::from_system(t);
        s.clear();
        c.rfc3339(&mut s).expect("write");
        let want = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            c.year, c.month, c.day, c.hour, c.minute, c.second, c.micros
        );
        proptest::prop_assert_eq!(s, want);
    }
}

#[test]
fn durations_round_to_microseconds_and_odd_values_stay_numbers() {
    let mut s = String::new();
    for (ms, want) in [
        (0.0, "0.000"),
        (1.5, "1.500"),
        (0.0004, "0.000"),
        (2.0006, "2.001"),
        (-3.0, "0.000"),
        (f64::NAN, "0"),
        (f64::INFINITY, "0"),
    ] {
        s.clear();
        write_ms(ms, &mut s).expect("write");
        assert_eq!(s, want, "{ms}");
        let mut b = Vec::new();
        json::millis(ms, &mut b);
        assert_eq!(b, want.as_bytes(), "JSON {ms}");
    }
}

#[test]
fn json_keys_and_template_positions_follow_fields() {
    // Every field once, in the order of `FIELDS`, and nothing else: the keys of a line whose
    // strings hold no `"` and whose values hold no `,"`.
    let mut plain = record();
    plain.route = Some(Arc::from("r1"));
    plain.user_agent = Some(HeaderValue::from_static("curl/8"));
    plain.uri = Uri::from_static("/a");
    let line = Format::Json.to_line(&plain);
    let keys: Vec<&str> = line
        .trim_end()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(",\"")
        .map(|field| {
            field
                .trim_start_matches('"')
                .split('"')
                .next()
                .unwrap_or("")
        })
        .collect();
    assert_eq!(keys, FIELDS, "keys and their order: {line}");
    // Each position answers the field of that name: a record whose every field is set
    // differently shows each value under its own name.
    let r = record();
    let line = Format::Json.to_line(&r);
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["status"], r.status);
    assert_eq!(v["attempts"], r.attempts);
    assert_eq!(v["request_bytes"], r.request_bytes);
    assert_eq!(v["response_bytes"], r.response_bytes);
    assert_eq!(v["route"].as_str(), r.route.as_deref());
    assert_eq!(v["backend"].as_str(), r.backend.as_deref());
}

proptest::proptest! {
    #[test]
    fn padded_digits_match_std_formatting(n in proptest::num::u64::ANY, width in 0usize..=20) {
        let n = if width == 0 { 0 } else { n % 10u64.saturating_pow(u32::try_from(width).unwrap_or(19)).max(1) };
        let mut s = String::new();
        write_padded(n, width, &mut s).expect("write");
        let want = if width == 0 { String::new() } else { format!("{n:0width$}") };
        proptest::prop_assert_eq!(s, want);
    }
}

proptest::proptest! {
    /// Any text survives the JSON line: control characters, quotes, backslashes, DEL and
    /// non-ASCII in a string field; header bytes that are not UTF-8 are replaced, not lost.
    #[test]
    fn json_strings_round_trip_whatever_the_bytes(
        route in "(?s).{0,24}",
        ua in proptest::collection::vec(
            proptest::prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, proptest::strategy::Just(b'\t')],
            0..40,
        ),
    ) {
        let mut r = record();
        r.route = Some(Arc::from(route.as_str()));
        r.user_agent = Some(HeaderValue::from_bytes(&ua).expect("valid header bytes"));
        let line = Format::Json.to_line(&r);
        proptest::prop_assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "one line");
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        proptest::prop_assert_eq!(v["route"].as_str(), Some(route.as_str()));
        let ua_text = String::from_utf8_lossy(&ua);
        proptest::prop_assert_eq!(v["user_agent"].as_str(), Some(&*ua_text));

        // The host as `Record::host` reads it: bytes that are not UTF-8 give an empty host,
        // and a userinfo part (up to the last `@`) is left out.
        r.host = Some(HeaderValue::from_bytes(&ua).expect("valid header bytes"));
        let line = Format::Json.to_line(&r);
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        proptest::prop_assert_eq!(v["host"].as_str(), r.host());
        let host = ua.iter().rposition(|&b| b == b'@').map_or(&ua[..], |at| &ua[at + 1..]);
        proptest::prop_assert_eq!(v["host"].as_str(), Some(std::str::from_utf8(host).unwrap_or("")));
    }

    /// Lines written one after another by the writer thread's path (which keeps the date and
    /// time of the last second) carry the timestamp each record's own calendar formatting
    /// gives, whatever the order of the times (same second, next second, back in time).
    #[test]
    fn kept_timestamp_prefix_matches_each_records_time(
        times in proptest::collection::vec((0u64..4_000_000_000, 0u32..1_000_000, 0u8..3), 1..30),
    ) {
        let mut state = LineState::default();
        let mut prev = 0u64;
        for (secs, micros, shape) in times {
            // Often the same second as the line before, sometimes the next, else anywhere.
            let secs = match shape {
                0 => prev,
                1 => prev + 1,
                _ => secs,
            };
            prev = secs;
            let mut r = record();
            r.timestamp = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(u64::from(micros));
            let mut bytes = Vec::new();
            Format::Json.write_bytes(&r, &mut bytes, &mut state);
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
            let mut want = String::new();
            crate::record::Civil::from_system(r.timestamp).rfc3339(&mut want).expect("write");
            proptest::prop_assert_eq!(v["timestamp"].as_str(), Some(want.as_str()));
            proptest::prop_assert_eq!(bytes, Format::Json.to_line(&r).into_bytes(), "same line as to_line");
        }
    }
}

#[test]
fn byte_path_writes_what_to_line_writes_for_every_format() {
    let template: Format = "%method% %uri% -> %status% (%route%)"
        .parse()
        .expect("template");
    let mut r = record();
    for f in [Format::Json, Format::Apache, template] {
        let mut state = LineState::default();
        let mut bytes = Vec::new();
        for _ in 0..2 {
            Format::write_bytes(&f, &r, &mut bytes, &mut state);
            r.timestamp += Duration::from_micros(1);
        }
        r.timestamp -= Duration::from_micros(2);
        let mut want = f.to_line(&r);
        r.timestamp += Duration::from_micros(1);
        want.push_str(&f.to_line(&r));
        r.timestamp -= Duration::from_micros(1);
        assert_eq!(String::from_utf8(bytes).expect("utf-8"), want, "{f:?}");
    }
}

proptest::proptest! {
    /// The eight-bytes-at-a-time scan says what the byte table says, whatever the bytes.
    #[test]
    fn escape_scan_matches_the_byte_table(s in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
        let by_table = s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f);
        proptest::prop_assert_eq!(json::needs_escape(&s), by_table);
    }
}

#[test]
fn escape_scan_is_not_fooled_by_non_ascii_next_to_a_space() {
    // A UTF-8 byte whose low bits are below 0x20, then a space: a lane-wise subtraction that
    // let the first borrow from the second would flag the space.
    for s in [
        &[0x85, b' ', b'a', b'b', b'c', b'd', b'e', b'f'][..],
        "é ü ñ ß ø".as_bytes(),
    ] {
        assert!(!json::needs_escape(s), "{s:?}");
    }
    assert!(
        json::needs_escape(b"abcdefg\x01"),
        "control in the last lane"
    );
    assert!(json::needs_escape(b"\x7fbcdefgh"), "DEL in the first lane");
}

#[test]
fn non_ascii_header_text_is_kept_when_it_is_utf8() {
    let mut r = record();
    r.host = Some(HeaderValue::from_bytes("café.test".as_bytes()).expect("obs-text"));
    r.user_agent = Some(HeaderValue::from_bytes("agent/ü".as_bytes()).expect("obs-text"));
    let v: serde_json::Value = serde_json::from_str(&Format::Json.to_line(&r)).expect("valid JSON");
    assert_eq!(v["host"], "café.test");
    assert_eq!(v["user_agent"], "agent/ü");
    r.host = Some(HeaderValue::from_bytes(b"caf\xe9.test").expect("obs-text"));
    r.user_agent = Some(HeaderValue::from_bytes(b"agent/\xfc").expect("obs-text"));
    let v: serde_json::Value = serde_json::from_str(&Format::Json.to_line(&r)).expect("valid JSON");
    assert_eq!(v["host"], "", "as Record::host reads it");
    assert_eq!(v["user_agent"], "agent/\u{fffd}", "replaced, not lost");
}
