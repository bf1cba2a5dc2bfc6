//! `examples/grafana/linkerd-http.json` queries only metrics the proxy registers, and covers
//! every family of DESIGN.md section 6.

use linkerd_http_metrics::Metrics;
use linkerd_http_prom::{Format, Scrape, prometheus_client::registry::Registry};
use std::collections::BTreeSet;

const DASHBOARD: &str = include_str!("../examples/grafana/linkerd-http.json");

/// PromQL words that are not metric names when they stand alone (aggregations may be
/// followed by `by (...)` rather than `(`).
const KEYWORDS: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "Inf",
    "NaN",
];

/// Modifiers followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression selects: identifiers that are not functions (followed
/// by `(`), keywords, label names in `{...}` or in `by (...)` lists, or inside strings and
/// `[...]` ranges.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let mut skip_list = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    if chars[i] == '"' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            if chars[i] == '\\' {
                                i += 1;
                            }
                            i += 1;
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if skip_list => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                skip_list = false;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                if LABEL_LISTS.contains(&word.as_str()) {
                    skip_list = true;
                } else if next != Some(&'(') && !KEYWORDS.contains(&word.as_str()) {
                    names.push(word);
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // Numbers, including exponents like 1e3 and durations inside ranges.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every PromQL query in the dashboard: panel targets (also inside collapsed rows) and
/// template variables (`label_values(metric, label)` selects `metric`).
fn queries(dashboard: &serde_json::Value) -> Vec<String> {
    fn panels(list: &serde_json::Value, out: &mut Vec<String>) {
        for panel in list.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(expr.to_owned());
                }
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"] != "query" {
            continue;
        }
        let query = var["query"]["query"]
            .as_str()
            .or_else(|| var["query"].as_str())
            .expect("a query variable has a query");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable queries use label_values: {query}"));
        let metric = inner.split(',').next().unwrap_or_default().trim();
        out.push(metric.to_owned());
    }
    out
}

/// The sample names the proxy's registry can produce, with the family each belongs to.
fn registered() -> Vec<(String, String)> {
    let mut registry = Registry::default();
    let _metrics = Metrics::register(&mut registry);
    let text = Format::OpenMetrics
        .encode(&registry)
        .expect("the registry encodes");
    let scrape = Scrape::parse(&text).expect("the encoding parses");
    let mut names = Vec::new();
    for (family, ty) in &scrape.families {
        let suffixes: &[&str] = match ty.as_str() {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        for s in suffixes {
            names.push((format!("{family}{s}"), family.clone()));
        }
    }
    names
}

#[test]
fn every_queried_metric_is_registered_and_every_family_is_shown() {
    let dashboard: serde_json::Value =
        serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let queries = queries(&dashboard);
    assert!(
        queries.len() > 20,
        "the dashboard has its queries: {queries:?}"
    );
    let known = registered();
    let mut used_families = BTreeSet::new();
    for query in &queries {
        let names = metric_names(query);
        assert!(!names.is_empty(), "no metric found in query: {query}");
        for name in names {
            let family = known
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| f.clone())
                .unwrap_or_else(|| {
                    panic!("query uses {name}, which the proxy does not register: {query}")
                });
            used_families.insert(family);
        }
    }
    let all_families: BTreeSet<String> = known.into_iter().map(|(_, f)| f).collect();
    let unused: Vec<_> = all_families.difference(&used_families).collect();
    assert!(
        unused.is_empty(),
        "every family of DESIGN.md section 6 has a panel; missing: {unused:?}"
    );
}

#[test]
fn the_extractor_finds_metrics_and_only_metrics() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, route_name) (rate(a_bucket{route_name=~"$route", x="by (y)"}[$__rate_interval]))) / on (route_name) group_left b_total offset 5m > bool 1e3"#,
    );
    assert_eq!(
        names,
        ["a_bucket", "b_total"],
        "functions, labels, strings, ranges skipped"
    );
    assert_eq!(metric_names("sum(up)"), ["up"], "a bare name inside a call");
    assert!(
        metric_names("vector(1)").is_empty(),
        "no metric in a literal"
    );
}
