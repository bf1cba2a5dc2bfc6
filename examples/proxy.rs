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

// The proxy allocates and frees a few dozen small objects per request (extension boxes,
// timers, header maps); mimalloc's per-thread free lists serve them in fewer instructions
// than the system allocator (benches/instructions.sh: about 6% fewer per HTTP/1.1 request,
// 9% per h2c one), as linkerd2-proxy picks jemalloc. Built without transparent huge pages,
// its memory per idle connection stays at the system allocator's (BENCHMARKS.md).
//
// It replaces `malloc` and `free` (the crate's `override` feature) rather than being the
// `#[global_allocator]`: that one hands every allocation to `mi_malloc_aligned`, whose fast
// path only covers blocks of at most 1 KiB, so each larger one (a request's boxed future)
// took the over-allocating path. Through `malloc`, Rust's system allocator asks for an
// alignment only when it exceeds 16 bytes: 1.3% fewer instructions per HTTP/1.1 request,
// 0.3% per h2c one (benches/instructions.sh). Linking the crate is all it takes: no item of
// it is named, hence the `allow`.
#[allow(unused_extern_crates)]
extern crate mimalloc;

fn main() {
    let code = linkerd_app::main_with_args(std::env::args_os().skip(1));
    std::process::exit(code);
}
