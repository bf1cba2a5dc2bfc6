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

/// The proxy allocates and frees a few dozen small objects per request (extension boxes,
/// timers, header maps); mimalloc's per-thread free lists serve them in fewer instructions
/// than the system allocator (benches/instructions.sh: about 6% fewer per HTTP/1.1 request,
/// 9% per h2c one), as linkerd2-proxy picks jemalloc. Built without transparent huge pages,
/// its memory per idle connection stays at the system allocator's (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let code = linkerd_app::main_with_args(std::env::args_os().skip(1));
    std::process::exit(code);
}
