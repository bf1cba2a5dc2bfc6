//! Hop-by-hop header removal (RFC 9110 section 7.6.1) and `Connection`/`Upgrade` token parsing.

use http::{
    HeaderMap, HeaderValue,
    header::{self, HeaderName},
};

/// `Keep-Alive`: obsolete HTTP/1.0 hop-by-hop header (RFC 9110 section 7.6.1 names it).
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// `Proxy-Connection`: a non-standard `Connection` sent by old clients to proxies.
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// `HTTP2-Settings`: only meaningful with an `h2c` upgrade (RFC 7540 section 3.2.1).
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Removes every hop-by-hop header from `headers` (RFC 9110 section 7.6.1).
///
/// Removed: `Connection` and every header it names, `Keep-Alive`, `Proxy-Connection`,
/// `Transfer-Encoding`, `Upgrade`, `HTTP2-Settings`, and `TE` unless it asks for `trailers`
/// (then it is rewritten to exactly `te: trailers`, which HTTP/2 and gRPC need; RFC 9113
/// section 8.2.2). `Host` and `Content-Length` stay even when `Connection` names them: they
/// carry the target and framing of the next hop, and a peer must not be able to make the
/// proxy drop them.
///
/// Use it on any message the proxy forwards; the [`Upgrade`](crate::Upgrade) service calls it
/// on every request and response it does not tunnel.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip(headers, false);
}

/// Strips hop-by-hop headers, keeping `Upgrade` and a `Connection: upgrade` when `upgrading`.
///
/// Most messages carry none: one pass over their few names settles that, where the removals
/// below would look up each hop-by-hop name in the map (hashing the non-standard ones).
pub(crate) fn strip(headers: &mut HeaderMap, upgrading: bool) {
    strip_message(headers, upgrading, true);
}

/// [`strip`] for a response: `TE` goes entirely (it is a request header: a `te: trailers`
/// kept for the next hop of a request means nothing on an answer).
pub(crate) fn strip_response(headers: &mut HeaderMap, upgrading: bool) {
    strip_message(headers, upgrading, false);
}

fn strip_message(headers: &mut HeaderMap, upgrading: bool, request: bool) {
    if !headers.keys().any(is_hop_by_hop) {
        if upgrading {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        return;
    }
    strip_present(headers, upgrading, request);
}

/// Whether `name` is one of the fixed hop-by-hop headers (those `Connection` names aside,
/// which need a `Connection` header to be named).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::TE
        || name == header::UPGRADE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
        || name == HTTP2_SETTINGS
}

/// [`strip`] for a map that has at least one hop-by-hop header.
fn strip_present(headers: &mut HeaderMap, upgrading: bool, request: bool) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(tokens)
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .filter(|n| !is_protected(n))
            .collect();
        for name in named {
            if upgrading && name == header::UPGRADE {
                continue;
            }
            headers.remove(name);
        }
        headers.remove(header::CONNECTION);
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(HTTP2_SETTINGS);
    if !request {
        headers.remove(header::TE);
    } else if headers.contains_key(header::TE) {
        let trailers = headers
            .get_all(header::TE)
            .iter()
            .flat_map(tokens)
            .any(|t| t.eq_ignore_ascii_case("trailers"));
        headers.remove(header::TE);
        if trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
    if upgrading {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Headers a `Connection` option may not remove: the target and framing of the next hop.
fn is_protected(name: &HeaderName) -> bool {
    name == header::HOST || name == header::CONTENT_LENGTH
}

/// The comma-separated tokens of a list header value, trimmed, without empty elements
/// (RFC 9110 section 5.6.1). A value that is not visible ASCII yields no token.
pub(crate) fn tokens(value: &HeaderValue) -> impl Iterator<Item = &str> {
    value
        .to_str()
        .unwrap_or("")
        .split(',')
        .map(|t| t.trim_matches([' ', '\t']))
        .filter(|t| !t.is_empty())
}

/// Whether `Connection` lists `token` (case-insensitively).
pub(crate) fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(tokens)
        .any(|t| t.eq_ignore_ascii_case(token))
}

/// The protocols of an HTTP/1.1 upgrade request, without `h2c` (RFC 9110 section 7.8).
///
/// `None` when the request asks for no upgrade the proxy carries: no `Upgrade`, no
/// `Connection: upgrade` (an `Upgrade` a sender did not mark hop-by-hop is not an upgrade
/// request), or only `h2c`, which the proxy answers itself by ignoring it.
pub(crate) fn upgrade_protocols(headers: &HeaderMap) -> Option<HeaderValue> {
    if !headers.contains_key(header::UPGRADE) || !connection_has(headers, "upgrade") {
        return None;
    }
    let kept: Vec<&str> = headers
        .get_all(header::UPGRADE)
        .iter()
        .flat_map(tokens)
        .filter(|t| !is_h2c(t))
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join(", ")).ok()
}

/// Whether an upgrade token names `h2c` (optionally with a version suffix, `h2c/x`).
fn is_h2c(token: &str) -> bool {
    let name = token.split('/').next().unwrap_or(token);
    name.eq_ignore_ascii_case("h2c")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The shortcut for messages without hop-by-hop headers changes nothing: `strip`
        /// leaves every map as the full removal does.
        #[test]
        fn strip_matches_the_full_removal(
            picks in proptest::collection::vec((0usize..12, 0usize..5), 0..8),
            upgrading in any::<bool>(),
        ) {
            const NAMES: [&str; 12] = [
                "host", "content-type", "connection", "keep-alive", "proxy-connection",
                "transfer-encoding", "te", "upgrade", "http2-settings", "x-custom", "accept",
                "content-length",
            ];
            const VALUES: [&str; 5] = ["x-custom", "trailers", "close, x-custom", "upgrade", "1"];
            let mut h = HeaderMap::new();
            for (n, v) in picks {
                h.append(
                    HeaderName::from_static(NAMES[n]),
                    HeaderValue::from_static(VALUES[v]),
                );
            }
            let mut fast = h.clone();
            strip(&mut fast, upgrading);
            let mut full = h;
            strip_present(&mut full, upgrading, true);
            prop_assert_eq!(fast, full);
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn removes_connection_and_named_headers() {
        let mut h = map(&[
            ("connection", "close, x-foo"),
            ("connection", "X-Bar"),
            ("x-foo", "1"),
            ("x-bar", "2"),
            ("x-keep", "3"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("http2-settings", "AAA"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-keep"], "only end-to-end headers survive");
    }

    #[test]
    fn keeps_te_trailers_only() {
        let mut h = map(&[("te", "gzip, trailers")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(
            h["te"], "trailers",
            "te: trailers is kept for HTTP/2 and gRPC"
        );
        let mut h = map(&[("te", "gzip")]);
        strip_hop_by_hop(&mut h);
        assert!(!h.contains_key("te"), "te without trailers is removed");
        // A response's TE means nothing to the next hop.
        let mut h = map(&[("te", "trailers"), ("trailer", "x-t")]);
        strip_response(&mut h, false);
        assert!(!h.contains_key("te"), "{h:?}");
        assert!(h.contains_key("trailer"), "end-to-end: {h:?}");
    }

    #[test]
    fn connection_cannot_remove_host_or_content_length() {
        let mut h = map(&[
            ("connection", "host, content-length"),
            ("host", "a"),
            ("content-length", "1"),
        ]);
        strip_hop_by_hop(&mut h);
        assert!(h.contains_key("host"), "host is kept");
        assert!(h.contains_key("content-length"), "content-length is kept");
    }

    #[test]
    fn upgrading_keeps_upgrade() {
        let mut h = map(&[
            ("connection", "Upgrade, keep-alive"),
            ("upgrade", "websocket"),
            ("keep-alive", "1"),
        ]);
        strip(&mut h, true);
        assert_eq!(h["upgrade"], "websocket", "upgrade is kept when upgrading");
        assert_eq!(h["connection"], "upgrade", "connection only names upgrade");
        assert!(!h.contains_key("keep-alive"), "keep-alive is removed");
    }

    #[test]
    fn upgrade_protocols_without_h2c() {
        let h = map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ]);
        assert_eq!(upgrade_protocols(&h), None, "h2c alone is no upgrade");
        let h = map(&[("connection", "upgrade"), ("upgrade", "h2c, websocket")]);
        assert_eq!(
            upgrade_protocols(&h).unwrap(),
            "websocket",
            "h2c is dropped from the list"
        );
        let h = map(&[("upgrade", "websocket")]);
        assert_eq!(
            upgrade_protocols(&h),
            None,
            "an upgrade without connection: upgrade is ignored"
        );
    }

    proptest::proptest! {
        #[test]
        fn no_hop_by_hop_header_survives(
            named in proptest::collection::vec("[a-z]{1,8}", 0..5),
            extra in proptest::collection::vec("x-[a-z]{1,8}", 0..5),
        ) {
            let mut h = HeaderMap::new();
            let conn = named.join(", ");
            if let Ok(v) = HeaderValue::from_str(&conn) {
                h.insert(header::CONNECTION, v);
            }
            for n in named.iter().chain(&extra) {
                h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_static("v"));
            }
            h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            strip_hop_by_hop(&mut h);
            for n in &named {
                let protected = n == "host" || n == "content-length";
                proptest::prop_assert!(protected || !h.contains_key(n.as_str()), "{} named by connection survived", n);
            }
            for n in &extra {
                if !named.contains(n) {
                    proptest::prop_assert!(h.contains_key(n.as_str()), "end-to-end {} was removed", n);
                }
            }
            proptest::prop_assert!(!h.contains_key(header::CONNECTION), "connection survived");
            proptest::prop_assert!(!h.contains_key(header::TRANSFER_ENCODING), "transfer-encoding survived");
        }
    }
}
