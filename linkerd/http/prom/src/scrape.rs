use std::{collections::BTreeMap, fmt};

/// A scrape parsed into samples and family descriptions (OpenMetrics or Prometheus text), so
/// tests can assert on `(name, labels, value)` rather than substrings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// Every `# TYPE` line: `(family name, type)`, in order.
    pub families: Vec<(String, String)>,
}

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample name (`outbound_http_route_request_statuses_total`).
    pub name: String,
    /// The labels, unescaped.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// A line that is not valid exposition text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeError {
    line: usize,
    why: &'static str,
}

// === impl Scrape ===

impl Scrape {
    /// Parses `text`.
    ///
    /// # Errors
    /// A sample line that does not parse (bad labels, bad value) or a malformed `# TYPE`.
    pub fn parse(text: &str) -> Result<Self, ScrapeError> {
        let mut scrape = Self::default();
        for (i, line) in text.lines().enumerate() {
            let err = |why| ScrapeError { line: i + 1, why };
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest
                    .split_once(' ')
                    .ok_or_else(|| err("TYPE without a type"))?;
                scrape.families.push((name.to_owned(), ty.to_owned()));
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            scrape.samples.push(parse_sample(line).map_err(err)?);
        }
        Ok(scrape)
    }

    /// The value of the sample named `name` with exactly the labels `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
            })
            .map(|s| s.value)
    }

    /// The sum of the samples named `name` whose labels include `labels` (0 when none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The samples named `name` whose labels include `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        })
    }

    /// The type of the family named `name` (as written on its `# TYPE` line), if described.
    pub fn family_type(&self, name: &str) -> Option<&str> {
        self.families
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    }
}

fn parse_sample(line: &str) -> Result<Sample, &'static str> {
    let end = line.find(['{', ' ']).ok_or("a sample needs a value")?;
    let name = &line[..end];
    if name.is_empty() {
        return Err("empty sample name");
    }
    let mut rest = &line[end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let rest = rest.trim_start();
    let value = rest.split(' ').next().ok_or("a sample needs a value")?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|_| "the value is not a number")?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `k="v",...}` and returns what follows the closing brace.
fn parse_labels<'a>(
    mut s: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, &'static str> {
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let (key, rest) = s.split_once("=\"").ok_or("a label needs =\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value"),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated escape"),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.insert(key.trim().to_owned(), value);
        s = &rest[end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

// === impl ScrapeError ===

impl fmt::Display for ScrapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scrape line {}: {}", self.line, self.why)
    }
}

impl std::error::Error for ScrapeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_values_and_escapes() {
        let text = "# HELP x_total a.\n# TYPE x counter\nx_total{a=\"1\",b=\"q\\\"\\\\\\n\"} 3\ny 1.5\nz{} +Inf\n# EOF\n";
        let s = Scrape::parse(text).expect("valid text parses");
        assert_eq!(s.family_type("x"), Some("counter"), "TYPE lines are kept");
        assert_eq!(
            s.get("x_total", &[("a", "1"), ("b", "q\"\\\n")]),
            Some(3.0),
            "escapes are undone"
        );
        assert_eq!(
            s.get("x_total", &[("a", "1")]),
            None,
            "get needs the exact label set"
        );
        assert_eq!(s.sum("x_total", &[("a", "1")]), 3.0, "sum matches a subset");
        assert_eq!(s.get("y", &[]), Some(1.5));
        assert_eq!(s.get("z", &[]), Some(f64::INFINITY));
    }

    #[test]
    fn rejects_garbage() {
        assert!(
            Scrape::parse("x{a=\"1\" 3\n").is_err(),
            "unterminated labels"
        );
        assert!(Scrape::parse("x abc\n").is_err(), "non-numeric value");
        assert!(Scrape::parse("x\n").is_err(), "no value");
    }
}
