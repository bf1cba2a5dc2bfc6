//! The headers a retry sends again, packed into one buffer while the first attempt runs.

use http::{HeaderMap, HeaderName, HeaderValue};

/// A request's header fields as one byte buffer, in the map's iteration order (names in the
/// order they were first inserted, each name's values in order): per field, the name's
/// length (`u32`, little-endian) and bytes, the value's length and bytes, and a byte that is
/// 1 when the value is [sensitive](HeaderValue::is_sensitive). Up to [`INLINE`] bytes are
/// kept in the value itself (the retry layer keeps it in the box it already allocates for
/// the request's template), more in one allocation of their own.
///
/// Why not a clone of the `HeaderMap`: a clone allocates the map's index and entries and
/// takes a reference on the buffer behind every value, and it is dropped when the request's
/// answer comes back. By then, with hundreds of requests in flight, all of it has left the
/// CPU's caches, and the drop walks it: about a dozen last-level cache misses per request for
/// a copy that a request without a retry never reads. A packed copy is dropped without being
/// read; a retry (the rare case) parses the fields back.
pub(crate) struct PackedHeaders(Buf);

/// Packed fields of at most this many bytes are kept inline: a few short fields, as many
/// internal API and gRPC clients send (a browser's cookies or a bearer token take more, and
/// go to the heap).
pub(crate) const INLINE: usize = 128;

enum Buf {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl PackedHeaders {
    /// `headers`, packed; `None` when a field is longer than `u32::MAX` bytes.
    pub(crate) fn pack(headers: &HeaderMap) -> Option<Self> {
        let len = headers
            .iter()
            .map(|(name, value)| 9 + name.as_str().len() + value.len())
            .sum::<usize>();
        let fill = |out: &mut [u8]| -> Option<()> {
            let mut at = 0;
            for (name, value) in headers {
                put(out, &mut at, name.as_str().as_bytes())?;
                put(out, &mut at, value.as_bytes())?;
                out[at] = u8::from(value.is_sensitive());
                at += 1;
            }
            Some(())
        };
        let buf = match u8::try_from(len) {
            Ok(short) if len <= INLINE => {
                let mut bytes = [0; INLINE];
                fill(&mut bytes[..len])?;
                Buf::Inline { len: short, bytes }
            }
            _ => {
                let mut bytes = vec![0; len].into_boxed_slice();
                fill(&mut bytes)?;
                Buf::Heap(bytes)
            }
        };
        Some(Self(buf))
    }

    fn bytes(&self) -> &[u8] {
        match &self.0 {
            Buf::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Buf::Heap(bytes) => bytes,
        }
    }

    /// The headers as they were packed.
    ///
    /// `None` only if a field does not parse back, which cannot happen to fields taken from a
    /// `HeaderMap`: [`HeaderName::from_bytes`] takes every name's text, and
    /// [`HeaderValue::from_bytes`] accepts exactly the bytes a value may hold.
    pub(crate) fn unpack(&self) -> Option<HeaderMap> {
        let mut map = HeaderMap::new();
        let mut rest = self.bytes();
        while !rest.is_empty() {
            let name = HeaderName::from_bytes(take(&mut rest)?).ok()?;
            let mut value = HeaderValue::from_bytes(take(&mut rest)?).ok()?;
            let (&sensitive, tail) = rest.split_first()?;
            rest = tail;
            value.set_sensitive(sensitive == 1);
            map.append(name, value);
        }
        Some(map)
    }
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

/// The next length-prefixed field of `rest`, which moves past it.
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

#[cfg(test)]
mod tests {
    use super::{Buf, INLINE, PackedHeaders};
    use http::{HeaderMap, HeaderName, HeaderValue};
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

    #[test]
    fn an_empty_map_packs_into_nothing() {
        let packed = PackedHeaders::pack(&HeaderMap::new()).unwrap();
        assert!(packed.bytes().is_empty());
        assert!(packed.unpack().unwrap().is_empty());
    }

    #[test]
    fn small_maps_stay_inline_and_larger_ones_go_to_the_heap() {
        let mut map = HeaderMap::new();
        map.insert("x-a", HeaderValue::from_static("1"));
        assert!(matches!(
            PackedHeaders::pack(&map).unwrap().0,
            Buf::Inline { .. }
        ));
        // 9 + 3 + value bytes: exactly `INLINE` stays inline, one more does not.
        for (extra, inline) in [(0, true), (1, false)] {
            let value = "v".repeat(INLINE - 12 + extra);
            map.insert("x-a", HeaderValue::from_str(&value).unwrap());
            let packed = PackedHeaders::pack(&map).unwrap();
            assert_eq!(
                matches!(packed.0, Buf::Inline { .. }),
                inline,
                "{} bytes",
                packed.bytes().len()
            );
            assert_eq!(packed.unpack().unwrap(), map);
        }
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
        let back = PackedHeaders::pack(&map).unwrap().unpack().unwrap();
        assert_eq!(back, map);
        assert_eq!(fields(&back), fields(&map));
        assert!(back["authorization"].is_sensitive());
        assert!(!back["x-b"].is_sensitive());
    }

    #[test]
    fn a_truncated_buffer_is_refused_not_misread() {
        let mut map = HeaderMap::new();
        map.insert("x-a", HeaderValue::from_static("value"));
        let packed = PackedHeaders::pack(&map).unwrap();
        for cut in 0..packed.bytes().len() {
            let short = PackedHeaders(Buf::Heap(packed.bytes()[..cut].into()));
            let back = short.unpack();
            assert!(
                back.as_ref().is_none_or(HeaderMap::is_empty),
                "a buffer cut at {cut} unpacked as {back:?}"
            );
        }
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

    proptest! {
        #[test]
        fn any_map_comes_back_field_for_field(
            pairs in proptest::collection::vec((name(), value()), 0..24)
        ) {
            let mut map = HeaderMap::new();
            for (n, v) in pairs {
                map.append(n, v);
            }
            let back = PackedHeaders::pack(&map).unwrap().unpack().unwrap();
            prop_assert_eq!(fields(&back), fields(&map));
        }
    }
}
