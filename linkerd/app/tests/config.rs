//! Golden tests for config errors: each names the file, line, column and field path.

use linkerd_app::config::{Config, ConfigError};
use std::path::Path;

fn errors(yaml: &str) -> Vec<ConfigError> {
    Config::from_yaml(Path::new("proxy.yaml"), yaml)
        .expect_err("the config must be rejected")
        .0
}

fn one(yaml: &str) -> ConfigError {
    let errs = errors(yaml);
    assert_eq!(errs.len(), 1, "expected exactly one error, got {errs:#?}");
    errs.into_iter().next().unwrap()
}

#[test]
fn unknown_top_level_field() {
    let e = one("listen: 127.0.0.1:4140\nlisten_typo: 1\n");
    assert_eq!((e.line, e.column), (2, 1), "{e}");
    assert!(e.message.contains("unknown field `listen_typo`"), "{e}");
    assert!(e.to_string().starts_with("proxy.yaml:2:1"), "{e}");
}

#[test]
fn unknown_backend_field() {
    let e = one("backends:\n  - name: web\n    endpoints: []\n    colour: blue\n");
    assert_eq!(e.path, "backends[0].colour", "{e}");
    assert_eq!((e.line, e.column), (4, 5), "{e}");
    assert!(e.message.contains("unknown field `colour`"), "{e}");
}

#[test]
fn bad_duration() {
    let e = one("backends:\n  - name: web\n    endpoints: []\n    connectTimeout: 1.5s\n");
    assert_eq!(e.path, "backends[0].connectTimeout", "{e}");
    assert_eq!((e.line, e.column), (4, 21), "{e}");
    assert!(e.message.contains("invalid duration \"1.5s\""), "{e}");
}

#[test]
fn invalid_yaml() {
    let e = one("listen: [unclosed\n");
    assert!(e.line >= 1, "{e}");
    assert!(e.message.starts_with("invalid YAML"), "{e}");
    assert_eq!(e.file, Path::new("proxy.yaml"));
}

#[test]
fn bad_address_and_all_errors_at_once() {
    let errs = errors(
        "listen: nowhere\nbackends:\n  - name: x\n    endpoints: [1.2.3.4]\n  - name: a\n    endpoints: []\n  - name: a\n    endpoints: []\n",
    );
    let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["listen", "backends[0].endpoints[0]", "backends[2].name"],
        "every error is reported, in file order: {errs:#?}"
    );
    assert_eq!((errs[0].line, errs[0].column), (1, 9));
}

#[test]
fn backend_needs_endpoints_or_dns() {
    let e = one("backends:\n  - name: web\n");
    assert_eq!(e.path, "backends[0]");
    assert!(e.message.contains("`endpoints`"), "{e}");
    let e = one("backends:\n  - name: web\n    dns: nocolon\n");
    assert_eq!(e.path, "backends[0].dns");
}

#[test]
fn missing_file_names_the_path() {
    let errs = Config::from_file(Path::new("/nonexistent/proxy.yaml")).unwrap_err();
    assert!(
        errs.to_string().contains("/nonexistent/proxy.yaml"),
        "{errs}"
    );
}

const BACKENDS: &str = "backends:\n  - name: web\n    endpoints: [127.0.0.1:8080]\n";

#[test]
fn unknown_backend() {
    let yaml = format!(
        "{BACKENDS}routes:\n  - name: api\n    rules:\n      - backendRefs: [{{ name: web }}]\n      - backendRefs: [{{ name: nope }}]\n"
    );
    let e = one(&yaml);
    assert_eq!(e.path, "routes[0].rules[1].backendRefs[0].name", "{e}");
    assert_eq!((e.line, e.column), (8, 31), "{e}");
    assert!(e.message.contains("unknown backend"), "{e}");
}

#[test]
fn bad_regex() {
    let yaml = format!(
        "{BACKENDS}routes:\n  - name: api\n    rules:\n      - matches:\n          - path: {{ type: RegularExpression, value: \"([a-z\" }}\n        backendRefs: [{{ name: web }}]\n"
    );
    let e = one(&yaml);
    assert_eq!(e.path, "routes[0].rules[0].matches[0].path.value", "{e}");
    assert_eq!(e.line, 8, "{e}");
    assert!(e.message.contains("regular expression"), "{e}");
    // One line per error: the regex crate's own message spans several.
    assert!(!e.to_string().contains('\n'), "{e}");
    assert!(e.message.contains("unclosed"), "{e}");
}

#[test]
fn redirect_with_rewrite() {
    let yaml = format!(
        "{BACKENDS}routes:\n  - name: api\n    rules:\n      - filters:\n          - type: RequestRedirect\n            requestRedirect: {{ hostname: x.example.com }}\n          - type: URLRewrite\n            urlRewrite: {{ hostname: y }}\n"
    );
    let e = one(&yaml);
    assert!(e.path.starts_with("routes[0].rules[0].filters"), "{e}");
    assert!(e.line >= 8, "{e}");
    assert!(
        e.message.contains("RequestRedirect") && e.message.contains("URLRewrite"),
        "{e}"
    );
}

#[test]
fn bad_route_duration_and_unknown_route_field() {
    let yaml = format!(
        "{BACKENDS}routes:\n  - name: api\n    rules:\n      - backendRefs: [{{ name: web }}]\n        timeouts: {{ request: 10 }}\n  - name: b\n    colour: red\n"
    );
    let errs = errors(&yaml);
    assert_eq!(errs.len(), 2, "both problems are reported: {errs:#?}");
    assert_eq!(
        errs[0].path, "routes[0].rules[0].timeouts.request",
        "{}",
        errs[0]
    );
    assert_eq!(errs[1].path, "routes[1].colour", "{}", errs[1]);
    assert_eq!((errs[1].line, errs[1].column), (10, 5), "{}", errs[1]);
}

#[test]
fn ignored_fields_warn() {
    let yaml = format!(
        "{BACKENDS}routes:\n  - name: api\n    parentRefs: [{{ name: gw }}]\n    rules:\n      - name: r\n        backendRefs: [{{ name: web, port: 80, kind: Service }}]\n"
    );
    let c = Config::from_yaml(Path::new("proxy.yaml"), &yaml).expect("a pasted HTTPRoute loads");
    assert_eq!(c.warnings.len(), 4, "{:#?}", c.warnings);
    assert!(
        c.warnings[0].contains("routes[0].parentRefs"),
        "{:#?}",
        c.warnings
    );
}

#[test]
fn reference_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/proxy.yaml");
    let c = Config::from_file(&path).unwrap_or_else(|e| panic!("examples/proxy.yaml: {e}"));
    assert_eq!(c.backends.len(), 3);
    assert_eq!(c.routes.len(), 2);
    assert_eq!(c.grpc_routes.len(), 1);
    assert!(c.summary().starts_with("config ok"));
}

#[test]
fn syntax_errors_name_the_field_they_sit_under() {
    let e = one("backends:\n  - name: web\n    endpoints: [127.0.0.1:1\nroutes: []\n");
    assert!(e.message.starts_with("invalid YAML"), "{e}");
    assert_eq!(e.path, "backends[0].endpoints", "{e}");
    let e = one(
        "routes:\n  - name: a\n    rules:\n      - backendRefs: []\n      - filters:\n          - type: 'x\n",
    );
    assert!(e.message.starts_with("invalid YAML"), "{e}");
    assert!(e.path.starts_with("routes[0].rules[1].filters"), "{e}");
    assert!(
        e.to_string().contains(": routes[0].rules[1].filters"),
        "the rendered error names the path: {e}"
    );
    // An error inside a value on the key's own line names that key.
    let e = one(
        "routes:\n  - name: a\n    rules:\n      - backendRefs: [{ name: web }]\n        timeouts: { request: [1s }\n",
    );
    assert!(e.message.starts_with("invalid YAML"), "{e}");
    assert_eq!(e.path, "routes[0].rules[0].timeouts", "{e}");
}

#[test]
fn a_second_yaml_document_is_an_error() {
    for (yaml, line) in [
        ("listen: 127.0.0.1:4140\n---\nbogus: 1\n", 2),
        ("---\nlisten: 127.0.0.1:4140\n...\nadmin: 127.0.0.1:1\n", 4),
    ] {
        let e = one(yaml);
        assert_eq!(e.line, line, "{e}");
        assert!(e.message.contains("one YAML document"), "{e}");
    }
    // A leading marker and a final end marker are fine.
    Config::from_yaml(Path::new("p.yaml"), "---\nlisten: 127.0.0.1:4140\n...\n")
        .expect("one document");
}

#[test]
fn access_log_format_and_output_are_checked() {
    let e = one("accessLog: { format: '' }\n");
    assert_eq!(e.path, "accessLog.format", "{e}");
    let e = one("accessLog: { output: /nonexistent-dir-for-linkerd-http/x.log }\n");
    assert_eq!(e.path, "accessLog.output", "{e}");
    assert!(e.message.contains("no directory"), "{e}");
    let dir = std::env::temp_dir();
    let e = one(&format!("accessLog: {{ output: {} }}\n", dir.display()));
    assert!(e.message.contains("is a directory"), "{e}");
    Config::from_yaml(
        Path::new("p.yaml"),
        &format!(
            "accessLog: {{ output: {} }}\n",
            dir.join("new.log").display()
        ),
    )
    .expect("a file yet to be created in an existing directory");
}

#[test]
fn values_that_would_stop_the_proxy_working_are_refused() {
    let e = one("server: { http2: { maxConcurrentStreams: 0 } }\n");
    assert_eq!(e.path, "server.http2.maxConcurrentStreams", "{e}");
    assert!(e.message.contains("at least 1"), "{e}");
    let e = one("backends:\n  - { name: web, dns: 'localhost:80', dnsRefresh: 0s }\n");
    assert_eq!(e.path, "backends[0].dnsRefresh", "{e}");
    assert_eq!((e.line, e.column), (2, 51), "{e}");
    for format in ["JSON", "json ", "%STATUS%", "constant"] {
        let e = one(&format!("accessLog: {{ format: '{format}' }}\n"));
        assert_eq!(e.path, "accessLog.format", "{format:?}: {e}");
    }
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_first_key() {
    let config = Config::from_yaml(
        Path::new("bom.yaml"),
        "\u{feff}backends:\n  - { name: web, endpoints: [] }\n",
    )
    .expect("a BOM before the first key");
    assert_eq!(config.backends.len(), 1);
}

#[test]
fn a_duplicate_key_is_named_with_its_own_path() {
    let e = one("backends:\n  - name: a\n    endpoints: []\n    name: b\n");
    assert_eq!((e.line, e.column), (4, 5), "{e}");
    assert_eq!(e.path, "backends[0].name", "{e}");
    assert!(e.message.contains("duplicate key `name`"), "{e}");
    let e = one("backends: []\nroutes: []\nbackends: []\n");
    assert_eq!(e.path, "backends", "{e}");
}
