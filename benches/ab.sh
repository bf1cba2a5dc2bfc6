#!/usr/bin/env bash
# A/B CPU comparison of proxy builds or configs, alternating runs against one backend.
#
# usage: benches/ab.sh RUNS TARGET...
#   TARGET is BINARY[:CONFIG] (a proxy binary, CONFIG defaults to benches/proxy.yaml) or
#   `passthrough` (or `passthrough:BINARY`, a passthrough build of its own). Example, comparing a saved build with the current one:
#     cp target/release/examples/proxy /tmp/proxy-before   # ... change, rebuild ...
#     benches/ab.sh 3 /tmp/proxy-before target/release/examples/proxy passthrough
#
# Each run: start the target pinned to core 0 (backend and wrk on core 1), warm up 1 s, then
# `wrk -t1 -c64 -d4s` (with AB_PROTO=h2c: `h2load -c16 -m32 -n$AB_H2_REQUESTS`); prints the
# target's user and system CPU microseconds per request (from /proc/<pid>/stat), the same per
# thread name (`threads=NAME:USER/SYS,...`, from /proc/<pid>/task: for the proxy the runtime's
# worker and the access-log writer) and the run's p99 latency in ms (wrk's, or from h2load's
# per-request log). Loopback only (ports
# 18080/18082); every process is stopped by its PID.
# Needs release builds of bench_backend and passthrough (benches/load.sh builds them) and wrk.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release/examples
RUNS=${1:?usage: benches/ab.sh RUNS TARGET...}
shift
[[ $# -gt 0 && "$RUNS" =~ ^[0-9]+$ ]] || { echo "usage: benches/ab.sh RUNS TARGET..." >&2; exit 2; }
# shellcheck source=benches/target.sh
source "$ROOT/benches/target.sh"
bench_setup ab
TICK=$(getconf CLK_TCK)

# thread_ticks PID: one line per thread, "TID NAME UTIME STIME" (clock ticks).
thread_ticks() {
    local t s
    local -a f
    for t in /proc/"$1"/task/*; do
        [[ -r "$t/stat" ]] || continue
        s=$(<"$t/stat") || continue
        s=${s##*) }
        read -r -a f <<<"$s"
        echo "${t##*/} $(tr ' ' _ <"$t/comm") ${f[11]} ${f[12]}"
    done
}
# AB_PROTO=h2c measures h2c instead (h2load -c16 -m32, AB_H2_REQUESTS requests per run).
PROTO=${AB_PROTO:-http1}
H2_REQUESTS=${AB_H2_REQUESTS:-150000}
for run in $(seq 1 "$RUNS"); do
    for target in "$@"; do
        start_target "$target" taskset -c 0
        pid=$TARGET_PID
        PIDS+=("$pid")
        if [[ "$PROTO" == h2c ]]; then
            taskset -c 1 timeout 30 h2load -c16 -m32 -n20000 http://127.0.0.1:18082/ \
                >/dev/null 2>&1 || true
            read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
            thread_ticks "$pid" >"$TMP/threads0"
            n=$(taskset -c 1 timeout 60 h2load -c16 -m32 -n"$H2_REQUESTS" \
                --log-file="$TMP/h2load.log" http://127.0.0.1:18082/ 2>&1 |
                awk '/^requests:/{print $8}')
            p99=$(cut -f3 "$TMP/h2load.log" | sort -n |
                awk '{ a[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.3f", a[i] / 1000 }')
        else
            taskset -c 1 timeout 30 wrk -t1 -c64 -d1s http://127.0.0.1:18082/ >/dev/null 2>&1 || true
            read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
            thread_ticks "$pid" >"$TMP/threads0"
            out=$(taskset -c 1 timeout 60 wrk -t1 -c64 -d4s --latency http://127.0.0.1:18082/ 2>&1)
            n=$(awk '/requests in/{print $1}' <<<"$out")
            p99=$(awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 }
                else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }
                printf "%.3f", v }' <<<"$out")
        fi
        read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
        thread_ticks "$pid" >"$TMP/threads1"
        # Per thread name: the ticks of the threads alive at both ends.
        threads=$(awk -v n="${n:-0}" -v hz="$TICK" '
            FNR == NR { u[$1] = $3; s[$1] = $4; next }
            ($1 in u) { du[$2] += $3 - u[$1]; ds[$2] += $4 - s[$1]; if (!($2 in seen)) { seen[$2] = 1; order[++k] = $2 } }
            END { if (n == 0) exit
                  for (i = 1; i <= k; i++) {
                      t = order[i]
                      if (du[t] + ds[t] == 0) continue
                      out = out sep t ":" sprintf("%.2f/%.2f", du[t] * 1e6 / hz / n, ds[t] * 1e6 / hz / n); sep = ","
                  }
                  print out }' "$TMP/threads0" "$TMP/threads1")
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        awk -v r="$run" -v t="$target" -v n="${n:-0}" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$TICK" \
            -v p99="${p99:-?}" -v th="${threads:-}" \
            'BEGIN { if (n == 0) { printf "run %s %s: no requests\n", r, t; exit }
                     printf "run %s %s: requests=%d user_us/req=%.2f sys_us/req=%.2f p99_ms=%s threads=%s\n",
                            r, t, n, u * 1e6 / hz / n, s * 1e6 / hz / n, p99, th }'
    done
done
