#!/usr/bin/env bash
# Profile-guided release builds of the proxy and passthrough, for benches/load.sh (PGO=1).
#
# usage: benches/pgo.sh [--commit]
#   --commit: record the workspace's profile instead: merge both targets' training profiles
#   into pgo/linkerd-http.profdata (and rustc's LLVM major version into pgo/LLVM_VERSION),
#   which every `cargo build --release` of this workspace then uses (.cargo/pgo-rustc.sh);
#   stops after step 3. Run it after changes to the request path, then commit pgo/.
#
# 1. Finds `llvm-profdata` of rustc's own LLVM major version (`llvm-profdata-N`, or
#    `llvm-profdata` when it reports that version); when missing and root, installs Debian's
#    `llvm-N` with apt-get. Exits 3 when no matching tool can be had: a profile written by
#    one LLVM major version cannot be read by an older one.
# 2. Builds `proxy` and `passthrough` instrumented (`-Cprofile-generate`) in target/pgo-gen.
# 3. Trains each on the same load, pinned as in load.sh (target on core 0, load generator and
#    backend on core 1), through the plain release build of bench_backend: `wrk -t1 -c64 -d4s`
#    (HTTP/1.1), then `h2load -c16 -m32 -n100000` (h2c); the proxy with benches/proxy.yaml;
#    then a shorter round of both (`-d2s`, `-n50000`) with the backend reached over HTTP/2
#    (the same config with `protocol: http2`; passthrough with `--upstream-http2`).
#    Each target exits on SIGTERM through `exit`, which writes its profile.
# 4. Builds each example with its own profile (`-Cprofile-use`, target/pgo/NAME.profdata) in
#    target/pgo-use-NAME, and copies the binaries to target/pgo/bin.
#
# Needs the plain release build of bench_backend (load.sh builds it first), wrk and h2load.
# Loopback only (ports 18080/18082/18083); every process is stopped by its PID.
set -euo pipefail
COMMIT=false
case "${1:-}" in
    --commit) COMMIT=true ;;
    "") ;;
    *) echo "usage: benches/pgo.sh [--commit]" >&2; exit 2 ;;
esac
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release/examples
PGO_DIR=$ROOT/target/pgo
log() { echo "[pgo.sh] $*" >&2; }

llvm_major=$(rustc -vV | awk '/^LLVM version:/ { split($3, v, "."); print v[1] }')
if [[ -z "$llvm_major" ]]; then
    log "cannot tell rustc's LLVM version"
    exit 3
fi
find_profdata() {
    local c
    for c in "llvm-profdata-$llvm_major" llvm-profdata "/usr/lib/llvm-$llvm_major/bin/llvm-profdata"; do
        if command -v "$c" >/dev/null 2>&1 &&
            "$c" --version 2>/dev/null | grep -q "LLVM version $llvm_major\."; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}
if ! PROFDATA=$(find_profdata); then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        log "installing llvm-$llvm_major (for llvm-profdata)"
        apt-get update -q >&2 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "llvm-$llvm_major" >&2 || true
    fi
    if ! PROFDATA=$(find_profdata); then
        log "no llvm-profdata for LLVM $llvm_major (rustc's); install llvm-$llvm_major"
        exit 3
    fi
fi
if [[ ! -x "$BIN/bench_backend" ]]; then
    log "missing $BIN/bench_backend (cargo build --release --example bench_backend)"
    exit 1
fi

rm -rf "$PGO_DIR"
# raw/: what the instrumented build scripts write while the build runs (not used); train/:
# the targets' profiles (LLVM_PROFILE_FILE overrides the compiled-in directory).
mkdir -p "$PGO_DIR/raw" "$PGO_DIR/train" "$PGO_DIR/bin"
log "building instrumented binaries (target/pgo-gen)"
(cd "$ROOT" && CARGO_TARGET_DIR="$ROOT/target/pgo-gen" \
    RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$PGO_DIR/raw" \
    cargo build --release --example proxy --example passthrough >&2)
GEN=$ROOT/target/pgo-gen/release/examples

# shellcheck source=benches/target.sh
source "$ROOT/benches/target.sh"
bench_setup pgo
# The same benchmark config with an HTTP/2 (h2c) backend, for the second training round.
sed 's/protocol: http1/protocol: http2/' "$ROOT/benches/proxy.yaml" >"$TMP/proxy-h2.yaml"
# train NAME TARGET WRK_SECONDS H2_REQUESTS: one training round of NAME's build.
train() {
    log "training $1 ($2)"
    export LLVM_PROFILE_FILE="$PGO_DIR/train/$1-%p.profraw"
    start_target "$2" taskset -c 0
    unset LLVM_PROFILE_FILE
    local pid=$TARGET_PID
    PIDS+=("$pid")
    taskset -c 1 timeout 60 wrk -t1 -c64 -d"$3"s http://127.0.0.1:18082/ >&2
    taskset -c 1 timeout 120 h2load -c16 -m32 -n"$4" http://127.0.0.1:18082/ |
        grep -E '^(finished|requests):' >&2
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
}
for name in proxy passthrough; do
    target=$GEN/proxy
    [[ "$name" == passthrough ]] && target=passthrough:$GEN/passthrough
    train "$name" "$target" 4 100000
    # Then a shorter round forwarding to the backend over HTTP/2 (both targets), so a
    # config with an `http2` backend runs profiled code too.
    if [[ "$name" == passthrough ]]; then
        PASSTHROUGH_ARGS=--upstream-http2 train "$name" "$target" 2 50000
    else
        train "$name" "$target:$TMP/proxy-h2.yaml" 2 50000
    fi
done

shopt -s nullglob
if [[ $COMMIT == true ]]; then
    raw=("$PGO_DIR/train/"*.profraw)
    if ((${#raw[@]} < 4)); then
        log "the targets wrote ${#raw[@]} profiles, expected 4"
        exit 1
    fi
    mkdir -p "$ROOT/pgo"
    "$PROFDATA" merge -o "$ROOT/pgo/linkerd-http.profdata" "${raw[@]}"
    echo "$llvm_major" >"$ROOT/pgo/LLVM_VERSION"
    log "recorded pgo/linkerd-http.profdata (LLVM $llvm_major); rebuild with cargo clean --release first"
    exit 0
fi

# Each binary is built with its own profile (its own target dir: the flags differ).
for name in proxy passthrough; do
    raw=("$PGO_DIR/train/$name"-*.profraw)
    if ((${#raw[@]} == 0)); then
        log "$name wrote no profile"
        exit 1
    fi
    "$PROFDATA" merge -o "$PGO_DIR/$name.profdata" "${raw[@]}"
    log "building $name with its profile (target/pgo-use-$name)"
    (cd "$ROOT" && CARGO_TARGET_DIR="$ROOT/target/pgo-use-$name" \
        RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$PGO_DIR/$name.profdata" \
        cargo build --release --example "$name" >&2)
    cp "$ROOT/target/pgo-use-$name/release/examples/$name" "$PGO_DIR/bin/$name"
done
log "done: $PGO_DIR/bin/{proxy,passthrough}"
