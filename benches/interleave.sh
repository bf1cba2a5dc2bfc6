#!/usr/bin/env bash
# Interleaved HTTP/1.1 comparison: every target runs at once, each loaded in turn for a few
# seconds, round after round, so a drift of the shared machine lands on both sides of a pair.
#
# usage: benches/interleave.sh ROUNDS SECONDS TARGET...
#   TARGET is BINARY[:CONFIG] (a proxy binary, CONFIG defaults to benches/proxy.yaml, its access
#   log redirected into the temp dir) or `passthrough` (or `passthrough:BINARY`). The last
#   target is the baseline. Example, a build against passthrough, twelve rounds of 5 s:
#     benches/interleave.sh 12 5 target/release/examples/proxy passthrough
#
# Every target is pinned to core 0 on its own port (127.0.0.1:18100, 18102, ...; a proxy's admin
# on the next port), the backend and `wrk -t1 -c64 --latency` to core 1; each target gets a 2 s
# warm-up first. Per slice it prints: round, target, CPU s per 100k requests (the target's
# user + system time from /proc/<pid>/stat), p50 and p99 in ms, requests. Then per target: the
# median CPU s/100k, the median of its per-round CPU ratios to the baseline, the median p99
# ratio and the median p99/p50 (how wide its latencies spread). Idle targets cost nothing
# measurable, so running them side by side changes no figure beyond the noise. Loopback only;
# every process is stopped by its PID. Needs release builds of bench_backend and passthrough
# (benches/load.sh builds them) and wrk.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release/examples
USAGE="usage: benches/interleave.sh ROUNDS SECONDS TARGET..."
ROUNDS=${1:?$USAGE}
SECS=${2:?$USAGE}
shift 2
[[ $# -gt 0 && "$ROUNDS" =~ ^[0-9]+$ && "$SECS" =~ ^[0-9]+$ ]] || { echo "$USAGE" >&2; exit 2; }
# shellcheck source=benches/target.sh
source "$ROOT/benches/target.sh"
bench_setup interleave
TICK=$(getconf CLK_TCK)

names=() ports=() pids=()
i=0
for target in "$@"; do
    port=$((18100 + 2 * i))
    bin=$(target_binary "$target")
    TARGET_PORT=$port start_target "$target" taskset -c 0
    PIDS+=("$TARGET_PID")
    pids+=("$TARGET_PID")
    ports+=("$port")
    names+=("$i:$(basename "$bin")${target#"${target%%:*}"}")
    taskset -c 1 timeout 30 wrk -t1 -c64 -d2s "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
    i=$((i + 1))
done

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

for round in $(seq 1 "$ROUNDS"); do
    for j in "${!pids[@]}"; do
        c0=$(ticks "${pids[$j]}")
        taskset -c 1 timeout $((SECS + 30)) wrk -t1 -c64 -d"${SECS}s" --latency \
            "http://127.0.0.1:${ports[$j]}/" >"$TMP/out" 2>&1 || true
        c1=$(ticks "${pids[$j]}")
        awk -v r="$round" -v n="${names[$j]}" -v c=$((c1 - c0)) -v t="$TICK" \
            -f "$ROOT/benches/wrk_ms.awk" -f <(printf '%s\n' '
            / requests in / { req = $1 }
            $1 == "50%" { p50 = ms($2) }
            $1 == "99%" { p99 = ms($2) }
            END {
                if (req > 0) printf "%d %s %.3f %.3f %.3f %d\n", r, n, c / t / req * 1e5, p50, p99, req
                else printf "%d %s no-requests\n", r, n
            }') "$TMP/out" | tee -a "$TMP/slices"
    done
done

echo "# per target: median CPU s/100k, median per-round ratio to the baseline (CPU, p99), median p99/p50"
awk -v base="${names[-1]}" '
    function median(a, n,    i, j, t) {
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    NF == 6 { cpu[$2, $1] = $3; p50[$2, $1] = $4; p99[$2, $1] = $5; rounds[$1] = 1
              if (!($2 in seen)) { seen[$2] = 1; order[++k] = $2 } }
    END {
        for (i = 1; i <= k; i++) {
            n = order[i]; m = 0; q = 0
            delete c; delete rc; delete rp; delete sp
            for (r in rounds) if ((n, r) in cpu) {
                c[++m] = cpu[n, r]; sp[m] = p99[n, r] / p50[n, r]
                if ((base, r) in cpu) { rc[++q] = cpu[n, r] / cpu[base, r]; rp[q] = p99[n, r] / p99[base, r] }
            }
            if (m == 0) continue
            printf "%-40s cpu %.3f  ratio x%.2f  p99 x%.2f  p99/p50 %.2f\n", n, median(c, m),
                q ? median(rc, q) : 0, q ? median(rp, q) : 0, median(sp, m)
        }
    }' "$TMP/slices"
