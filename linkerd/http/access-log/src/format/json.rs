//! The JSON line, written straight into bytes.
//!
//! The writer thread formats every record of the proxy, so this path avoids what the
//! `fmt::Write` path pays per piece: a trait call and a capacity check for each key, quote and
//! digit run, a `Display` pass for the URI, the calendar arithmetic for each timestamp (the
//! date and time up to the second are kept from the previous line while the second is the
//! same), and a UTF-8 check for values that are known to be text.

use super::PAIRS;
use crate::record::{Civil, Record};
use std::{
    io::Write as _,
    net::SocketAddr,
    time::{SystemTime, UNIX_EPOCH},
};

/// The timestamp text up to the seconds' `.` (`2024-05-06T07:08:09.`) of the last second
/// written, so a line in the same second only adds its microseconds.
#[derive(Debug, Default)]
pub(crate) struct Stamp {
    second: Option<u64>,
    prefix: [u8; PREFIX],
}

/// `YYYY-MM-DDTHH:MM:SS.`
const PREFIX: usize = 20;

impl Stamp {
    /// `t` in RFC 3339 (UTC, microseconds), as [`Civil::rfc3339`] writes it.
    fn write(&mut self, t: SystemTime, out: &mut Vec<u8>) {
        // Before 1970 is clamped to the epoch, as `Civil::from_system` does.
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since.as_secs();
        if self.second != Some(second) {
            let mut text = String::with_capacity(32);
            // Writing to a String cannot fail.
            let _ = Civil::from_system(t).rfc3339(&mut text);
            match text.as_bytes().get(..PREFIX) {
                // `YYYY-MM-DDTHH:MM:SS.ffffffZ`: the usual shape, kept for the next lines.
                Some(prefix) if text.len() == PREFIX + 7 => {
                    self.prefix.copy_from_slice(prefix);
                    self.second = Some(second);
                }
                // Any other shape is written as it is and not kept.
                _ => return out.extend_from_slice(text.as_bytes()),
            }
        }
        out.extend_from_slice(&self.prefix);
        let mut micros = since.subsec_micros();
        let mut digits = [b'0'; 6];
        for d in digits.iter_mut().rev() {
            // A digit: below 10.
            #[allow(clippy::cast_possible_truncation)]
            {
                *d = b'0' + (micros % 10) as u8;
            }
            micros /= 10;
        }
        out.extend_from_slice(&digits);
        out.push(b'Z');
    }
}

/// `r` as a JSON object (no newline); `stamp` carries the timestamp prefix between lines.
///
/// The fields of [`FIELDS`](crate::FIELDS), in order, each key with its separator as one
/// constant (a test checks names and order).
pub(crate) fn line(r: &Record, out: &mut Vec<u8>, stamp: &mut Stamp) {
    out.reserve(384);
    out.extend_from_slice(b"{\"timestamp\":\"");
    stamp.write(r.timestamp, out);
    out.extend_from_slice(b"\",\"client_addr\":");
    match r.client_addr {
        Some(a) => {
            out.push(b'"');
            addr(a, out);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"method\":");
    // A method is a token (RFC 9110 section 5.6.2), which holds nothing JSON escapes.
    quoted(r.method.as_str().as_bytes(), out);
    out.extend_from_slice(b",\"uri\":");
    uri(&r.uri, out);
    out.extend_from_slice(b",\"host\":");
    match &r.host {
        // As `Record::host` reads it: text that is not UTF-8 is empty.
        Some(h) => header(crate::record::host_bytes(h.as_bytes()), Invalid::Empty, out),
        None => optional(r.host().map(str::as_bytes), out),
    }
    out.extend_from_slice(b",\"version\":");
    quoted(r.version_str().as_bytes(), out);
    out.extend_from_slice(b",\"status\":");
    out.extend_from_slice(digits(u64::from(r.status), &mut [0; 20]));
    out.extend_from_slice(b",\"grpc_status\":");
    match r.grpc_status {
        Some(code) => out.extend_from_slice(digits(u64::from(code), &mut [0; 20])),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"route\":");
    optional(r.route.as_deref().map(str::as_bytes), out);
    out.extend_from_slice(b",\"backend\":");
    optional(r.backend.as_deref().map(str::as_bytes), out);
    out.extend_from_slice(b",\"attempts\":");
    out.extend_from_slice(digits(u64::from(r.attempts), &mut [0; 20]));
    out.extend_from_slice(b",\"request_bytes\":");
    out.extend_from_slice(digits(r.request_bytes, &mut [0; 20]));
    out.extend_from_slice(b",\"response_bytes\":");
    out.extend_from_slice(digits(r.response_bytes, &mut [0; 20]));
    out.extend_from_slice(b",\"duration_ms\":");
    millis(r.duration_ms, out);
    out.extend_from_slice(b",\"headers_ms\":");
    millis(r.headers_ms, out);
    out.extend_from_slice(b",\"user_agent\":");
    match &r.user_agent {
        // Invalid UTF-8 is replaced rather than failing the line.
        Some(h) => header(h.as_bytes(), Invalid::Replaced, out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"trace_id\":");
    optional(r.trace_id().map(str::as_bytes), out);
    out.extend_from_slice(b",\"error\":");
    optional(r.error.map(str::as_bytes), out);
    out.push(b'}');
}

/// A quoted string, or `null`.
fn optional(s: Option<&[u8]>, out: &mut Vec<u8>) {
    match s {
        Some(s) => string(s, out),
        None => out.extend_from_slice(b"null"),
    }
}

/// What `Uri`'s `Display` writes, piece by piece, as a JSON string. A URI holds only visible
/// ASCII, but may hold `"` or `\` in its query.
fn uri(u: &http::Uri, out: &mut Vec<u8>) {
    out.push(b'"');
    if let Some(scheme) = u.scheme() {
        escape(scheme.as_str().as_bytes(), out);
        out.extend_from_slice(b"://");
    }
    if let Some(authority) = u.authority() {
        escape(authority.as_str().as_bytes(), out);
    }
    escape(u.path().as_bytes(), out);
    if let Some(query) = u.query() {
        out.push(b'?');
        escape(query.as_bytes(), out);
    }
    out.push(b'"');
}

/// The decimal digits of `n`, at the end of `buf`.
pub(super) fn digits(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let pairs = PAIRS.as_bytes();
    let mut at = buf.len();
    while n >= 100 {
        // `n % 100` is below 100.
        #[allow(clippy::cast_possible_truncation)]
        let p = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&pairs[p..p + 2]);
    }
    // `n` is below 100 here.
    #[allow(clippy::cast_possible_truncation)]
    let p = n as usize * 2;
    if n >= 10 {
        at -= 2;
        buf[at..at + 2].copy_from_slice(&pairs[p..p + 2]);
    } else {
        at -= 1;
        buf[at] = pairs[p + 1];
    }
    &buf[at..]
}

/// Milliseconds with three decimals, as `write_ms` writes them.
pub(super) fn millis(f: f64, out: &mut Vec<u8>) {
    if !f.is_finite() {
        return out.push(b'0');
    }
    let micros = (f.max(0.0) * 1000.0).round();
    if micros >= 1e18 {
        // Beyond u64 precision: rare enough for the general path (a Vec takes every write).
        let _ = write!(out, "{:.3}", f.max(0.0));
        return;
    }
    // In range and non-negative: the cast is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let micros = micros as u64;
    out.extend_from_slice(digits(micros / 1000, &mut [0; 20]));
    let frac = micros % 1000;
    let pairs = PAIRS.as_bytes();
    // `frac` is below 1000: its hundreds are one digit, its last two one pair.
    #[allow(clippy::cast_possible_truncation)]
    let (hundreds, p) = ((frac / 100) as u8, (frac % 100) as usize * 2);
    out.extend_from_slice(&[b'.', b'0' + hundreds, pairs[p], pairs[p + 1]]);
}

/// A socket address as `Display` writes it, with a fast path for IPv4.
pub(super) fn addr(a: SocketAddr, out: &mut Vec<u8>) {
    match a {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits(u64::from(octet), &mut [0; 20]));
            }
            out.push(b':');
            out.extend_from_slice(digits(u64::from(v4.port()), &mut [0; 20]));
        }
        // A Vec takes every write.
        v6 => drop(write!(out, "{v6}")),
    }
}

/// A quoted JSON string.
fn string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    escape(s, out);
    out.push(b'"');
}

/// Quotes around text that needs no escape.
fn quoted(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    out.extend_from_slice(s);
    out.push(b'"');
}

/// What a header value that is not UTF-8 becomes.
#[derive(Clone, Copy)]
enum Invalid {
    /// The empty string.
    Empty,
    /// Its text with replacement characters.
    Replaced,
}

/// Header bytes as a JSON string. ASCII (nearly every value) needs no UTF-8 check.
fn header(bytes: &[u8], invalid: Invalid, out: &mut Vec<u8>) {
    if bytes.is_ascii() {
        return string(bytes, out);
    }
    match (std::str::from_utf8(bytes), invalid) {
        (Ok(text), _) => string(text.as_bytes(), out),
        (Err(_), Invalid::Empty) => string(b"", out),
        (Err(_), Invalid::Replaced) => string(String::from_utf8_lossy(bytes).as_bytes(), out),
    }
}

/// The bytes a JSON string must escape here: `"`, `\\`, control characters and DEL.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[0x7f] = true;
    t
};

/// `s` (UTF-8) escaped for a JSON string. Only ASCII bytes are escaped, and the bytes of a
/// multi-byte character are never ASCII, so a byte scan is exact.
pub(super) fn escape(s: &[u8], out: &mut Vec<u8>) {
    if !needs_escape(s) {
        return out.extend_from_slice(s);
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        if !NEEDS_ESCAPE[usize::from(b)] {
            continue;
        }
        out.extend_from_slice(&s[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
}

/// Whether any byte of `s` needs an escape, eight bytes at a time: a byte below 0x20, `"`
/// (0x22), `\\` (0x5c) or DEL (0x7f) sets the high bit of its lane in `flags`.
pub(super) fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A lane of `x` that is zero, for `x` with every lane below 0x80: adding 0x7f carries
    // into the high bit exactly when the lane is not zero.
    let zero = |x: u64| !(((x & !HIGH) + !HIGH) | x) & HIGH;
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let mut lanes = [0; 8];
        lanes.copy_from_slice(chunk);
        let v = u64::from_le_bytes(lanes);
        // Bytes of 0x80 and above (UTF-8) never need an escape: they are left out, and
        // become 0x40 or more below, so they cannot borrow from the lane above.
        let ascii = !v & HIGH;
        let low = (v & !HIGH) | ((v & HIGH) >> 1);
        let control = (low.wrapping_sub(0x20 * ONES) & !low) & HIGH;
        let hits = control
            | zero(low ^ (0x22 * ONES))
            | zero(low ^ (0x5c * ONES))
            | zero(low ^ (0x7f * ONES));
        if hits & ascii != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| NEEDS_ESCAPE[usize::from(b)])
}
