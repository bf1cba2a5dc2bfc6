//! Loads arbitrary text as a proxy config: never panics; an accepted config summarises, and
//! every error names the file.

#![no_main]

use libfuzzer_sys::fuzz_target;
use linkerd_app::config::Config;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("fuzz.yaml");
    match Config::from_yaml(file, text) {
        Ok(config) => {
            let _ = config.summary();
        }
        Err(errors) => {
            assert!(
                !errors.0.is_empty(),
                "a failed load reports at least one error"
            );
            let rendered = errors.to_string();
            assert!(
                rendered.contains("fuzz.yaml"),
                "every error names the file: {rendered}"
            );
        }
    }
});
