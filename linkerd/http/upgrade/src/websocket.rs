//! The WebSocket opening-handshake key and accept values (RFC 6455 section 4.2.2).
//!
//! SHA-1 and base64 are written here (about 80 lines, checked against the FIPS 180 and
//! RFC 6455 vectors and, in tests, against tungstenite) instead of pulling in the `sha1`
//! and `base64` crates and their dependency trees: the handshake needs one 20-byte digest
//! per tunnel, and RFC 6455 uses SHA-1 as a checksum, not for security.

use http::HeaderValue;

/// The GUID RFC 6455 section 1.3 appends to the key before hashing.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64-encoded (RFC 6455 section 4.1).
pub(crate) fn generate_key() -> HeaderValue {
    let nonce: [u8; 16] = rand::random();
    HeaderValue::from_str(&base64(&nonce)).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Sec-WebSocket-Accept` value a server answers `key` with (RFC 6455 section 4.2.2).
pub fn websocket_accept(key: &[u8]) -> HeaderValue {
    let mut input = Vec::with_capacity(key.len() + WEBSOCKET_GUID.len());
    input.extend_from_slice(key);
    input.extend_from_slice(WEBSOCKET_GUID);
    // base64 output is always a valid header value.
    HeaderValue::from_str(&base64(&sha1(&input))).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// SHA-1 (FIPS 180-4 section 6.1).
fn sha1(input: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let bit_len = (input.len() as u64).wrapping_mul(8);
    let mut msg = input.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());

    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (hi, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hi = hi.wrapping_add(v);
        }
    }

    let mut out = [0u8; 20];
    for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Standard base64 with padding (RFC 4648 section 4).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = (n >> (18 - 6 * i)) & 0x3F;
                out.push(char::from(ALPHABET[idx as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha1_matches_fips_vectors() {
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d",
            "FIPS 180 one-block vector"
        );
        assert_eq!(
            hex(&sha1(b"")),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "empty input"
        );
        assert_eq!(
            hex(&sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1",
            "FIPS 180 two-block vector"
        );
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want, "base64 of {input:?}");
        }
    }

    #[test]
    fn accept_matches_rfc6455_example() {
        assert_eq!(
            websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            "RFC 6455 section 1.3 example"
        );
    }

    #[test]
    fn generated_keys_are_24_chars_and_differ() {
        let a = generate_key();
        let b = generate_key();
        assert_eq!(a.len(), 24, "16 bytes encode to 24 base64 characters");
        assert_ne!(a, b, "keys are random");
    }

    proptest::proptest! {
        #[test]
        fn accept_matches_tungstenite(key in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let ours = websocket_accept(&key);
            let theirs = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
            proptest::prop_assert_eq!(ours.to_str().unwrap(), theirs.as_str(), "accept for the same key differs");
        }
    }
}
