//! Hop-by-hop header stripping over arbitrary header maps: never panics, removes every
//! hop-by-hop header (including those `Connection` names), keeps `Host` and `Content-Length`,
//! rewrites `TE` to exactly `trailers` or removes it, and is idempotent.

#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use linkerd_http_upgrade::strip_hop_by_hop;

/// Header lines `name:value` separated by `\n`; lines that are not valid headers are skipped.
/// A few names are chosen by a leading digit so the interesting ones come up often.
fn headers(data: &[u8]) -> HeaderMap {
    const NAMES: [&str; 10] = [
        "connection",
        "keep-alive",
        "te",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
        "http2-settings",
        "host",
        "content-length",
        "x-custom",
    ];
    let mut map = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let name = match name {
            [d] if d.is_ascii_digit() => HeaderName::from_static(NAMES[usize::from(d - b'0')]),
            _ => match HeaderName::from_bytes(name) {
                Ok(n) => n,
                Err(_) => continue,
            },
        };
        if let Ok(value) = HeaderValue::from_bytes(value) {
            map.append(name, value);
        }
    }
    map
}

fuzz_target!(|data: &[u8]| {
    let original = headers(data);
    let mut stripped = original.clone();
    strip_hop_by_hop(&mut stripped);

    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "http2-settings",
    ] {
        assert!(
            !stripped.contains_key(name),
            "{name} survived: {stripped:?}"
        );
    }
    let te: Vec<_> = stripped.get_all(header::TE).iter().collect();
    assert!(
        te.is_empty() || te == [HeaderValue::from_static("trailers")],
        "TE is removed or exactly `trailers`: {te:?}"
    );
    for kept in [header::HOST, header::CONTENT_LENGTH] {
        let before: Vec<_> = original.get_all(&kept).iter().collect();
        let after: Vec<_> = stripped.get_all(&kept).iter().collect();
        assert_eq!(before, after, "{kept} is kept as it was");
    }
    // Headers named by Connection (other than the protected ones) are gone.
    for value in original.get_all(header::CONNECTION) {
        let Ok(list) = value.to_str() else { continue };
        for token in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let Ok(name) = HeaderName::from_bytes(token.as_bytes()) else {
                continue;
            };
            if name == header::HOST || name == header::CONTENT_LENGTH || name == header::TE {
                continue;
            }
            assert!(
                !stripped.contains_key(&name),
                "{name}, named by Connection, survived"
            );
        }
    }
    // Headers that are not hop-by-hop pass unchanged.
    for (name, value) in &original {
        let hop = stripped.contains_key(name)
            || matches!(
                name.as_str(),
                "connection"
                    | "keep-alive"
                    | "proxy-connection"
                    | "transfer-encoding"
                    | "upgrade"
                    | "http2-settings"
                    | "te"
            );
        assert!(
            hop || is_named_by_connection(&original, name),
            "{name}: {value:?} was dropped"
        );
    }
    let mut twice = stripped.clone();
    strip_hop_by_hop(&mut twice);
    assert_eq!(twice, stripped, "stripping is idempotent");
});

fn is_named_by_connection(map: &HeaderMap, name: &HeaderName) -> bool {
    map.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|list| {
            list.split(',')
                .map(str::trim)
                .any(|t| t.eq_ignore_ascii_case(name.as_str()))
        })
    })
}
