#!/usr/bin/env bash
# rustc wrapper (`.cargo/config.toml`): optimised builds (`-C opt-level=3`, the release profile)
# use the committed profile `pgo/linkerd-http.profdata`, so `cargo build --release` produces
# profile-guided binaries without a training run. Everything else (debug builds and tests,
# build scripts, cargo's queries) reaches rustc unchanged.
#
# The profile is skipped, and the build is a plain release build, when:
# - LINKERD_HTTP_PGO=0 is set;
# - the command line already carries a profile flag (benches/pgo.sh trains and builds with
#   its own profiles through RUSTFLAGS);
# - rustc's LLVM major version is not the one that wrote the profile (`pgo/LLVM_VERSION`):
#   another LLVM may be unable to read it.
# Functions changed since the profile was recorded simply get no profile data (their mismatch
# warnings are silenced); `benches/pgo.sh --commit` records a fresh profile. Cargo does not
# know about this file's inputs: after changing LINKERD_HTTP_PGO or the profile, rebuild with
# `cargo clean --release` first.
#
# `.cargo/pgo-rustc.sh --check` (run by .ci/run): the pinned rustc's LLVM is the profile's and
# it reads the profile (a damaged profile makes rustc fail, so every release build would).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
profile=$root/pgo/linkerd-http.profdata

if [[ "${1:-}" == --check ]]; then
    want=$(cat "$root/pgo/LLVM_VERSION")
    have=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
    if [[ "$want" != "$have" ]]; then
        echo "pgo/LLVM_VERSION is $want but rustc's LLVM is $have: re-record with benches/pgo.sh --commit" >&2
        exit 1
    fi
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    echo 'fn main() {}' >"$dir/main.rs"
    rustc -C opt-level=3 "-Cprofile-use=$profile" -o "$dir/main" "$dir/main.rs"
    echo "rustc (LLVM $have) reads $profile"
    exit 0
fi

rustc=$1
shift

optimised=false
prev=
for arg in "$@"; do
    case "$prev|$arg" in
        -C\|opt-level=3 | *\|-Copt-level=3) optimised=true ;;
        *profile-generate* | *profile-use* | *\|-Cprofile-* | -C\|profile-*) exec "$rustc" "$@" ;;
    esac
    prev=$arg
done

if [[ $optimised == true && "${LINKERD_HTTP_PGO:-1}" != 0 && -f "$profile" ]]; then
    want=$(cat "$root/pgo/LLVM_VERSION" 2>/dev/null || true)
    have=$("$rustc" -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
    if [[ -n "$want" && "$want" == "$have" ]]; then
        exec "$rustc" "$@" "-Cprofile-use=$profile" -Cllvm-args=-no-pgo-warn-mismatch
    fi
fi
exec "$rustc" "$@"
