//! The head a retry sends again, packed into one buffer while the first attempt runs.

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, uri};

/// A request's method, URI and header fields as one byte buffer of exactly their size.
///
/// Layout: the method, then the URI's scheme, authority and path-and-query (each preceded
/// by a byte that is 1 when the URI has it), then per header field (in the map's iteration
/// order: names in the order they were first inserted, each name's values in order) the
/// name, the value and a byte that is 1 when the value is [sensitive](HeaderValue::is_sensitive).
/// Every string is preceded by its length (`u32`, little-endian).
///
/// Why not clones of the `Uri` and the `HeaderMap`: a map's clone allocates its index and
/// entries and takes a reference on the buffer behind every value (so does a URI's), and it
/// is dropped when the request's answer comes back. By then, with hundreds of requests in
/// flight, all of it has left the CPU's caches, and the drop walks it: about a dozen
/// last-level cache misses per request for a copy that a request without a retry never
/// reads. A packed copy is one allocation of a few cache lines, freed without being read; a
/// retry (the rare case) parses the head back.
///
/// ```
/// use http::{HeaderMap, Method, Uri};
/// use linkerd_http_retry::PackedHead;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-a", "1".parse().unwrap());
/// let uri = Uri::from_static("http://example.com/a?b");
/// let packed = PackedHead::pack(&Method::GET, &uri, &headers).unwrap();
/// let (method, back, again) = packed.unpack().unwrap();
/// assert_eq!((method, back, again), (Method::GET, uri, headers));
/// ```
pub struct PackedHead(Box<[u8]>);

impl PackedHead {
    /// The head, packed; `None` when a string is longer than `u32::MAX` bytes.
    pub fn pack(method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Self> {
        let parts = uri_parts(uri);
        let uri_len = parts
            .iter()
            .map(|p| 1 + p.map_or(0, |s| 4 + s.len()))
            .sum::<usize>();
        let headers_len = headers
            .iter()
            .map(|(name, value)| 9 + name.as_str().len() + value.len())
            .sum::<usize>();
        let len = 4 + method.as_str().len() + uri_len + headers_len;
        let mut out = vec![0; len].into_boxed_slice();
        let mut at = 0;
        put(&mut out, &mut at, method.as_str().as_bytes())?;
        for part in parts {
            match part {
                Some(s) => {
                    out[at] = 1;
                    at += 1;
                    put(&mut out, &mut at, s.as_bytes())?;
                }
                None => at += 1,
            }
        }
        for (name, value) in headers {
            put(&mut out, &mut at, name.as_str().as_bytes())?;
            put(&mut out, &mut at, value.as_bytes())?;
            out[at] = u8::from(value.is_sensitive());
            at += 1;
        }
        Some(Self(out))
    }

    /// The head as it was packed.
    ///
    /// `None` only if a part does not parse back, which cannot happen to parts taken from a
    /// request: a URI's parts are accepted by the parsers that made them, [`Method`] takes its
    /// own text back, [`HeaderName::from_bytes`] takes every name's text, and
    /// [`HeaderValue::from_bytes`] accepts exactly the bytes a value may hold.
    pub fn unpack(&self) -> Option<(Method, Uri, HeaderMap)> {
        let mut rest = &self.0[..];
        let method = Method::from_bytes(take(&mut rest)?).ok()?;
        let mut parts = uri::Parts::default();
        if let Some(s) = take_optional(&mut rest)? {
            parts.scheme = Some(uri::Scheme::try_from(s).ok()?);
        }
        if let Some(s) = take_optional(&mut rest)? {
            parts.authority = Some(uri::Authority::try_from(s).ok()?);
        }
        if let Some(s) = take_optional(&mut rest)? {
            parts.path_and_query = Some(uri::PathAndQuery::try_from(s).ok()?);
        }
        let uri = Uri::from_parts(parts).ok()?;
        let mut map = HeaderMap::new();
        while !rest.is_empty() {
            let name = HeaderName::from_bytes(take(&mut rest)?).ok()?;
            let mut value = HeaderValue::from_bytes(take(&mut rest)?).ok()?;
            let (&sensitive, tail) = rest.split_first()?;
            rest = tail;
            value.set_sensitive(sensitive == 1);
            map.append(name, value);
        }
        Some((method, uri, map))
    }

    /// Bytes held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Debug for PackedHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedHead")
            .field("bytes", &self.0.len())
            .finish()
    }
}

/// A URI's scheme, authority and path-and-query, as [`Uri::into_parts`] would split them
/// (which [`Uri::from_parts`] puts back together).
fn uri_parts(uri: &Uri) -> [Option<&str>; 3] {
    [
        uri.scheme_str(),
        uri.authority().map(uri::Authority::as_str),
        uri.path_and_query().map(uri::PathAndQuery::as_str),
    ]
}

/// Writes `bytes` with its length at `out[*at..]` (sized by `pack` to fit) and moves `at`
/// past them.
fn put(out: &mut [u8], at: &mut usize, bytes: &[u8]) -> Option<()> {
    let len = u32::try_from(bytes.len()).ok()?;
    out[*at..*at + 4].copy_from_slice(&len.to_le_bytes());
    out[*at + 4..*at + 4 + bytes.len()].copy_from_slice(bytes);
    *at += 4 + bytes.len();
    Some(())
}

/// The next length-prefixed string of `rest`, which moves past it.
fn take<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, tail) = rest.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
    if tail.len() < len {
        return None;
    }
    let (field, tail) = tail.split_at(len);
    *rest = tail;
    Some(field)
}

/// The next presence byte and, when it is 1, the string after it.
fn take_optional<'a>(rest: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    let (&present, tail) = rest.split_first()?;
    *rest = tail;
    match present {
        0 => Some(None),
        1 => take(rest).map(Some),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::PackedHead;
    use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
    use proptest::prelude::*;

    /// Every field, in iteration order, with its sensitivity.
    fn fields(map: &HeaderMap) -> Vec<(String, Vec<u8>, bool)> {
        map.iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    v.as_bytes().to_vec(),
                    v.is_sensitive(),
                )
            })
            .collect()
    }

    fn round_trip(method: &Method, uri: &Uri, headers: &HeaderMap) -> (Method, Uri, HeaderMap) {
        PackedHead::pack(method, uri, headers)
            .unwrap()
            .unpack()
            .unwrap()
    }

    #[test]
    fn a_bare_head_packs_into_a_few_bytes() {
        let packed = PackedHead::pack(&Method::GET, &Uri::from_static("/"), &HeaderMap::new());
        // "GET" and "/" with their lengths, and three presence bytes.
        assert_eq!(packed.as_ref().unwrap().len(), 7 + 5 + 3);
        let (method, uri, headers) = packed.unwrap().unpack().unwrap();
        assert_eq!(method, Method::GET);
        assert_eq!(uri, "/");
        assert!(headers.is_empty());
    }

    #[test]
    fn every_request_target_form_comes_back_as_it_was() {
        let targets = [
            "/",
            "/a/b?c=d&e",
            "*",
            "http://example.com",
            "http://example.com/",
            "https://user@example.com:8443/p?q",
            "foo+bar://h/x",
            "example.com:443",
            "[::1]:80",
        ];
        for target in targets {
            let uri: Uri = target.parse().unwrap();
            let (_, back, _) = round_trip(&Method::GET, &uri, &HeaderMap::new());
            assert_eq!(back, uri, "{target}");
            assert_eq!(back.to_string(), uri.to_string(), "{target}");
            assert_eq!(back.path_and_query(), uri.path_and_query(), "{target}");
            assert_eq!(back.authority(), uri.authority(), "{target}");
            assert_eq!(back.scheme(), uri.scheme(), "{target}");
        }
    }

    #[test]
    fn extension_methods_come_back() {
        let method = Method::from_bytes(b"PURGE").unwrap();
        let (back, _, _) = round_trip(&method, &Uri::from_static("/"), &HeaderMap::new());
        assert_eq!(back, method);
    }

    #[test]
    fn repeated_names_sensitive_values_and_odd_bytes_come_back_as_they_were() {
        let mut map = HeaderMap::new();
        map.append("x-b", HeaderValue::from_static("2"));
        map.append("cookie", HeaderValue::from_static("a=1"));
        map.append("x-b", HeaderValue::from_static(""));
        let mut secret = HeaderValue::from_static("Bearer t");
        secret.set_sensitive(true);
        map.append("authorization", secret);
        map.append("cookie", HeaderValue::from_bytes(b"b=\t\x80\xff").unwrap());
        let (_, _, back) = round_trip(&Method::POST, &Uri::from_static("/"), &map);
        assert_eq!(back, map);
        assert_eq!(fields(&back), fields(&map));
        assert!(back["authorization"].is_sensitive());
        assert!(!back["x-b"].is_sensitive());
    }

    #[test]
    fn a_truncated_or_altered_buffer_is_refused_not_misread() {
        let mut map = HeaderMap::new();
        map.insert("x-a", HeaderValue::from_static("value"));
        let uri = Uri::from_static("http://h/p");
        let packed = PackedHead::pack(&Method::GET, &uri, &map).unwrap();
        for cut in 0..packed.len() {
            let short = PackedHead(packed.0[..cut].into());
            let back = short.unpack();
            assert!(
                back.as_ref().is_none_or(|(_, _, h)| h.is_empty()),
                "a buffer cut at {cut} unpacked as {back:?}"
            );
        }
        // A presence byte other than 0 or 1.
        let mut odd = packed.0;
        odd[7] = 2;
        assert!(PackedHead(odd).unpack().is_none());
    }

    fn name() -> impl Strategy<Value = HeaderName> {
        prop_oneof![
            Just(HeaderName::from_static("host")),
            Just(HeaderName::from_static("content-type")),
            Just(HeaderName::from_static("cookie")),
            "[a-z][a-z0-9-]{0,20}".prop_map(|s| HeaderName::from_bytes(s.as_bytes()).unwrap()),
        ]
    }

    fn value() -> impl Strategy<Value = HeaderValue> {
        let byte = prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff];
        (proptest::collection::vec(byte, 0..40), any::<bool>()).prop_map(|(bytes, sensitive)| {
            let mut v = HeaderValue::from_bytes(&bytes).unwrap();
            v.set_sensitive(sensitive);
            v
        })
    }

    fn uri() -> impl Strategy<Value = Uri> {
        let path = "(/[a-zA-Z0-9._~%!$&'()*+,;=:@-]{0,12}){0,4}(\\?[a-zA-Z0-9=&%/?-]{0,16})?";
        prop_oneof![
            path.prop_filter_map("origin-form", |p| {
                let p = if p.is_empty() || p.starts_with('?') {
                    format!("/{p}")
                } else {
                    p
                };
                p.parse().ok()
            }),
            ("https?", "[a-z][a-z0-9.-]{0,20}(:[0-9]{1,5})?", path)
                .prop_filter_map("absolute-form", |(s, a, p)| format!("{s}://{a}{p}")
                    .parse()
                    .ok()),
            "[a-z][a-z0-9.-]{0,20}:[0-9]{1,5}"
                .prop_filter_map("authority-form", |a| a.parse().ok()),
        ]
    }

    proptest! {
        #[test]
        fn any_head_comes_back_part_for_part(
            method in "[A-Z]{1,10}",
            uri in uri(),
            pairs in proptest::collection::vec((name(), value()), 0..24)
        ) {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let mut map = HeaderMap::new();
            for (n, v) in pairs {
                map.append(n, v);
            }
            let (m, u, h) = round_trip(&method, &uri, &map);
            prop_assert_eq!(m, method);
            prop_assert_eq!(u.to_string(), uri.to_string());
            prop_assert_eq!(u, uri);
            prop_assert_eq!(fields(&h), fields(&map));
        }
    }
}
