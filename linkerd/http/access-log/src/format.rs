use crate::record::{Civil, FIELDS, Record};

mod json;
use std::{
    fmt::{self, Write},
    str::FromStr,
};

/// How records are written, one line each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line with the fields of DESIGN.md section 7.
    Json,
    /// The Apache combined log format:
    /// `%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"`.
    Apache,
    /// Text with `%field%` placeholders (JSON field names); `%%` is a literal `%`.
    Template(Template),
}

/// A parsed `%field%` template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// A template that names an unknown field or leaves a `%` open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    why: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(usize),
}

/// A field's value, for JSON and templates.
enum Value<'a> {
    Null,
    Str(&'a str),
    Uint(u64),
    Float(f64),
    Timestamp(&'a Record),
    Addr(std::net::SocketAddr),
    Uri(&'a http::Uri),
    Header(&'a http::HeaderValue),
}

// === impl Format ===

impl Format {
    /// Writes `record` as one line (with the trailing `\n`) to `out`.
    ///
    /// # Errors
    /// Only when `out` fails.
    pub fn write(&self, record: &Record, out: &mut impl Write) -> fmt::Result {
        match self {
            Self::Json => {
                let mut line = Vec::with_capacity(384);
                json::line(record, &mut line, &mut json::Stamp::default());
                // Every piece of the line is text or ASCII, so this holds.
                out.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)?;
            }
            Self::Apache => apache(record, out)?,
            Self::Template(t) => t.write(record, out)?,
        }
        out.write_char('\n')
    }

    /// `record` as one line, with the trailing `\n`.
    pub fn to_line(&self, record: &Record) -> String {
        let mut s = String::with_capacity(256);
        // Writing to a String cannot fail.
        let _ = self.write(record, &mut s);
        s
    }

    /// Appends `record` as one line (with the trailing `\n`) to `out`: the writer thread's
    /// path. JSON goes straight into the bytes; the other formats through `scratch`.
    pub(crate) fn write_bytes(&self, record: &Record, out: &mut Vec<u8>, lines: &mut LineState) {
        match self {
            Self::Json => json::line(record, out, &mut lines.stamp),
            other => {
                lines.scratch.clear();
                // Writing to a String cannot fail.
                let _ = match other {
                    Self::Apache => apache(record, &mut lines.scratch),
                    Self::Template(t) => t.write(record, &mut lines.scratch),
                    Self::Json => Ok(()),
                };
                out.extend_from_slice(lines.scratch.as_bytes());
            }
        }
        out.push(b'\n');
    }
}

/// What [`Format::write_bytes`] keeps from one line to the next.
#[derive(Debug, Default)]
pub(crate) struct LineState {
    stamp: json::Stamp,
    scratch: String,
}

impl FromStr for Format {
    type Err = TemplateError;

    /// `json`, `apache` (or `combined`), or else a `%field%` template.
    fn from_str(s: &str) -> Result<Self, TemplateError> {
        match s {
            "json" => Ok(Self::Json),
            "apache" | "combined" => Ok(Self::Apache),
            t => Template::parse(t).map(Self::Template),
        }
    }
}

/// Milliseconds with three decimals (microsecond resolution), written without the float
/// formatting machinery: the value is rounded to whole microseconds first.
fn write_ms(f: f64, out: &mut impl Write) -> fmt::Result {
    if !f.is_finite() {
        return out.write_char('0');
    }
    let micros = (f.max(0.0) * 1000.0).round();
    if micros >= 1e18 {
        // Beyond u64 precision: rare enough for the general path.
        return write!(out, "{:.3}", f.max(0.0));
    }
    // In range and non-negative: the cast is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let micros = micros as u64;
    write_u64(micros / 1000, out)?;
    out.write_char('.')?;
    write_padded(micros % 1000, 3, out)
}

/// `"00"` to `"99"`, back to back: two digits are one slice of it.
const PAIRS: &str = "\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// The two digits of `n % 100`.
fn pair(n: u64) -> &'static str {
    // `n % 100` is below 100, so the cast and the slice are in range.
    #[allow(clippy::cast_possible_truncation)]
    let i = (n % 100) as usize * 2;
    &PAIRS[i..i + 2]
}

/// A decimal integer, without the formatting machinery.
fn write_u64(n: u64, out: &mut impl Write) -> fmt::Result {
    // Digits are ASCII: the conversion cannot fail.
    out.write_str(std::str::from_utf8(json::digits(n, &mut [0; 20])).map_err(|_| fmt::Error)?)
}

/// `n` as exactly `width` digits (zero-padded; `n` must fit).
pub(crate) fn write_padded(n: u64, width: usize, out: &mut impl Write) -> fmt::Result {
    match width {
        0 => Ok(()),
        1 => out.write_str(&pair(n % 10)[1..]),
        2 => out.write_str(pair(n)),
        w => {
            write_padded(n / 100, w - 2, out)?;
            out.write_str(pair(n))
        }
    }
}

/// Header bytes as text: invalid UTF-8 is replaced rather than failing the line.
fn header_text(v: &http::HeaderValue) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(v.as_bytes())
}

fn value(r: &Record, field: usize) -> Value<'_> {
    // By position in `FIELDS` (a test checks the names).
    match field {
        0 => Value::Timestamp(r),
        1 => r.client_addr.map_or(Value::Null, Value::Addr),
        2 => Value::Str(r.method.as_str()),
        3 => Value::Uri(&r.uri),
        4 => r.host().map_or(Value::Null, Value::Str),
        5 => Value::Str(r.version_str()),
        6 => Value::Uint(u64::from(r.status)),
        7 => r
            .grpc_status
            .map_or(Value::Null, |c| Value::Uint(u64::from(c))),
        8 => r.route.as_deref().map_or(Value::Null, Value::Str),
        9 => r.backend.as_deref().map_or(Value::Null, Value::Str),
        10 => Value::Uint(u64::from(r.attempts)),
        11 => Value::Uint(r.request_bytes),
        12 => Value::Uint(r.response_bytes),
        13 => Value::Float(r.duration_ms),
        14 => Value::Float(r.headers_ms),
        15 => r.user_agent.as_ref().map_or(Value::Null, Value::Header),
        16 => r.trace_id().map_or(Value::Null, Value::Str),
        17 => r.error.map_or(Value::Null, Value::Str),
        _ => Value::Null,
    }
}

fn apache(r: &Record, out: &mut impl Write) -> fmt::Result {
    match r.client_addr {
        Some(a) => write!(out, "{}", a.ip())?,
        None => out.write_char('-')?,
    }
    out.write_str(" - - [")?;
    Civil::from_system(r.timestamp).apache(out)?;
    out.write_str("] \"")?;
    out.write_str(r.method.as_str())?;
    out.write_char(' ')?;
    apache_escaped(&r.uri.to_string(), out)?;
    out.write_char(' ')?;
    out.write_str(r.version_str())?;
    out.write_str("\" ")?;
    if r.status == 0 {
        out.write_char('-')?;
    } else {
        write!(out, "{}", r.status)?;
    }
    out.write_char(' ')?;
    if r.response_bytes == 0 {
        out.write_char('-')?;
    } else {
        write!(out, "{}", r.response_bytes)?;
    }
    for h in [&r.referer, &r.user_agent] {
        out.write_str(" \"")?;
        match h {
            Some(v) => apache_escaped(&header_text(v), out)?,
            None => out.write_char('-')?,
        }
        out.write_char('"')?;
    }
    Ok(())
}

/// Escapes `"` and `\` and non-printable bytes, as Apache's logger does.
fn apache_escaped(s: &str, out: &mut impl Write) -> fmt::Result {
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            c if c.is_control() => write!(out, "\\x{:02x}", u32::from(c))?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

// === impl Template ===

impl Template {
    /// Parses `text`: `%name%` (letters and `_`) is replaced by the field `name` (a JSON
    /// field name, lower-case), `%%` is a literal `%`, and any other `%` is text.
    ///
    /// # Errors
    /// A placeholder naming an unknown field (`%STATUS%` too), or no placeholder at all
    /// (every line would be the same text).
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('%') {
            literal.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            // A placeholder is `%` and a field-like name (letters and `_`) closed by `%`;
            // any other `%` is text (`100% ok`). Field names are lower-case: `%STATUS%` is
            // an unknown field, not text.
            let name_len = after
                .bytes()
                .take_while(|b| b.is_ascii_alphabetic() || *b == b'_')
                .count();
            let closed = after.as_bytes().get(name_len) == Some(&b'%');
            if !closed {
                literal.push('%');
                rest = after;
                continue;
            }
            let j = name_len;
            let name = &after[..j];
            if name.is_empty() {
                literal.push('%');
            } else {
                let field =
                    FIELDS
                        .iter()
                        .position(|f| *f == name)
                        .ok_or_else(|| TemplateError {
                            why: format!(
                                "unknown field `%{name}%` (fields: {})",
                                FIELDS.join(", ")
                            ),
                        })?;
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(Part::Field(field));
            }
            rest = &after[j + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        if !parts.iter().any(|p| matches!(p, Part::Field(_))) {
            // Every line would be the same text: a misspelt `json` or `apache`, most likely.
            return Err(TemplateError {
                why: format!(
                    "{text:?} is neither json, apache nor a template with a %field% placeholder (fields: {})",
                    FIELDS.join(", ")
                ),
            });
        }
        Ok(Self { parts })
    }

    /// Writes `record` with this template (no trailing newline). Absent values are `-`;
    /// control characters in values are escaped so a record stays on one line.
    ///
    /// # Errors
    /// Only when `out` fails.
    pub fn write(&self, r: &Record, out: &mut impl Write) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(t) => out.write_str(t)?,
                Part::Field(f) => match value(r, *f) {
                    Value::Null => out.write_char('-')?,
                    Value::Str(s) => apache_escaped(s, out)?,
                    Value::Uint(n) => write!(out, "{n}")?,
                    Value::Float(f) => write_ms(f, out)?,
                    Value::Timestamp(r) => Civil::from_system(r.timestamp).rfc3339(out)?,
                    Value::Addr(a) => write!(out, "{a}")?,
                    Value::Uri(u) => apache_escaped(&u.to_string(), out)?,
                    Value::Header(h) => apache_escaped(&header_text(h), out)?,
                },
            }
        }
        Ok(())
    }
}

// === impl TemplateError ===

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid access-log template: {}", self.why)
    }
}

impl std::error::Error for TemplateError {}

#[cfg(test)]
mod tests;
