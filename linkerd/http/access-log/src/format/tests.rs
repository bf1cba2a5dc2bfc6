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
    assert!("50% off".parse::<Format>().is_err(), "unterminated percent");
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
            s.clear();
            write_addr(addr, &mut s).expect("write");
            proptest::prop_assert_eq!(&s, &addr.to_string());
        }

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
    }
}

#[test]
fn json_keys_and_value_positions_follow_fields() {
    for (i, name) in FIELDS.iter().enumerate() {
        let sep = if i == 0 { "{" } else { "," };
        assert_eq!(JSON_KEYS[i], format!("{sep}\"{name}\":"), "key {i}");
    }
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
