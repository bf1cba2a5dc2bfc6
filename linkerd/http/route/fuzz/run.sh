#!/usr/bin/env bash
# Runs the route-matching fuzz target for a bounded time (default 60 s): `./run.sh [SECONDS]`.
# Needs the nightly toolchain; installs cargo-fuzz when it is missing.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz
fi
mkdir -p corpus/match_requests
exec cargo +nightly fuzz run match_requests corpus/match_requests -- \
    -max_total_time="$secs" -max_len=512 -rss_limit_mb=2048
