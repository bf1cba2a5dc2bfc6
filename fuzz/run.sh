#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: `fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]`
# (default 60 s each, all targets). Needs the nightly toolchain; installs cargo-fuzz when it
# is missing. Inputs that once crashed a target live in `regressions/<target>/` and are
# replayed first, so a fixed crash stays fixed. Route matching has its own fuzz crate:
# linkerd/http/route/fuzz/run.sh.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(config_yaml grpc_timeout retry_after duration hop_by_hop)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz
fi
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    if [ -d "regressions/$t" ] && [ -n "$(ls -A "regressions/$t")" ]; then
        echo "=== $t: replaying regressions"
        cargo +nightly fuzz run "$t" "regressions/$t"/* -- -runs=0
    fi
    echo "=== $t: fuzzing for ${secs}s"
    cargo +nightly fuzz run "$t" "corpus/$t" -- \
        -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048
done
