//! The README's "What works" table is checked against the end-to-end suites: every test it
//! names exists, and every test of those suites is named.

use std::collections::BTreeSet;

/// The suites the table covers.
const SUITES: &[&str] = &[
    "proxy_edge",
    "proxy_matrix",
    "proxy_backends",
    "proxy_default",
    "proxy_tonic",
];

fn read(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {full}: {e}"))
}

/// `suite::name` for every `#[test]`/`#[tokio::test]` function of `suite`.
fn tests_in(suite: &str) -> BTreeSet<String> {
    let text = read(&format!("tests/{suite}.rs"));
    let mut found = BTreeSet::new();
    let mut attribute = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("#[test]") || line.starts_with("#[tokio::test") {
            attribute = true;
            continue;
        }
        if attribute {
            let name = line
                .strip_prefix("async fn ")
                .or_else(|| line.strip_prefix("fn "))
                .and_then(|rest| rest.split('(').next());
            if let Some(name) = name {
                found.insert(format!("{suite}::{name}"));
                attribute = false;
            }
        }
    }
    found
}

/// The second column of each row of the `## What works` table, without backticks.
fn table_tests() -> Vec<String> {
    let readme = read("README.md");
    let section = readme
        .split("\n## What works\n")
        .nth(1)
        .expect("README.md has a `## What works` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut rows = section
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>());
    let header = rows.next().expect("a table header");
    assert_eq!(
        header.get(1..3),
        Some(&["behaviour", "test"][..]),
        "the header is `| behaviour | test |`"
    );
    rows.filter(|cells| !cells.get(1).is_some_and(|c| c.starts_with("---")))
        .map(|cells| {
            assert_eq!(cells.len(), 4, "two columns: {cells:?}");
            assert!(!cells[1].is_empty(), "a behaviour is described: {cells:?}");
            cells[2].trim_matches('`').to_owned()
        })
        .collect()
}

#[test]
fn readme_table_matches_the_tests() {
    let named = table_tests();
    let existing: BTreeSet<String> = SUITES.iter().flat_map(|s| tests_in(s)).collect();
    assert!(existing.len() > 30, "the suites were read: {existing:?}");
    let mut seen = BTreeSet::new();
    for name in &named {
        assert!(
            existing.contains(name),
            "README names `{name}`, which is not a test of {SUITES:?}"
        );
        assert!(seen.insert(name.clone()), "`{name}` is listed twice");
    }
    let missing: Vec<_> = existing.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "tests missing from the README's What works table: {missing:?}"
    );
}
