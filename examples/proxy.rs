//! The assembled linkerd-http proxy.
//!
//! ```text
//! cargo run --release --example proxy                       # embedded config + demo backend
//! cargo run --release --example proxy -- --config examples/proxy.yaml
//! cargo run --release --example proxy -- --config examples/proxy.yaml --check
//! ```
//!
//! Flags: `--config FILE`, `--listen ADDR`, `--admin ADDR`, `--access-log FORMAT`, `--check`.
//! Once bound it prints `listening on <addr>; admin on <addr>` to stderr.

fn main() {
    let code = linkerd_app::main_with_args(std::env::args_os().skip(1));
    std::process::exit(code);
}
