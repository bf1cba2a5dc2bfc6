#!/usr/bin/env bash
# User-space instructions per request of proxy builds and passthrough, under callgrind: the
# noise-free companion of benches/ab.sh (CPU time on this shared machine moves 10-20% between
# runs; instruction counts repeat within about 0.5%). It leaves out the kernel and the cost of
# cache misses, so it ranks user-space changes, not whole-process CPU; `-c` adds callgrind's
# cache simulation, which counts those misses too.
#
# usage: benches/instructions.sh [-p h1|h2c] [-s STREAMS] [-n REQUESTS] [-d FILE] [-k DIR] [-c] [-a] TARGET...
#   TARGET is BINARY[:CONFIG] (a proxy binary, CONFIG defaults to benches/proxy.yaml) or
#   `passthrough` (or `passthrough:BINARY`). Example, before and after a change:
#     cp target/release/examples/proxy /tmp/proxy-before   # ... change, rebuild ...
#     benches/instructions.sh /tmp/proxy-before target/release/examples/proxy passthrough
#   -p: h1 (`h2load --h1 -c16`, default) or h2c (`h2load -c16 -m32`).
#   -s: h2c streams per connection (default 32, as benches/load.sh; `-s 1` keeps only 16
#       requests in flight, where whatever touches cold memory per request stands out).
#   -n: requests measured (default 4000), after 2,000 warm-up requests that are not counted.
#   -d: send FILE as every request's body (a POST; h2load's `-d`), to measure the body path
#       (with `benches/proxy.yaml` the retry layer buffers bodies up to 64 KiB for replay).
#   -k: keep each target's callgrind file in DIR (for callgrind_annotate or a per-function
#       breakdown).
#   -c: simulate the caches (64 KiB 8-way L1d, 1 MiB 16-way last level: this machine's L1d
#       and L2; the L1i as valgrind reads it from the CPU) and print, per request, the
#       instruction-cache misses, L1d read / write misses and last-level read / write misses,
#       and an estimate of the cycles they cost together: instructions + 10 x L1 misses
#       (instruction and data) + 100 x last-level misses, callgrind's usual weights (on h2c
#       its proxy/passthrough ratio came within 1% of the full runs' CPU ratio; on HTTP/1.1,
#       where about half the CPU per request is the kernel's, it says nothing about the whole).
#       Slower (about 2x).
#   -a: also count the locked (atomic read-modify-write) instructions the target's own binary
#       executes per request: callgrind counts each as one instruction, but on hardware each
#       costs tens of cycles. Records per-instruction counts (`--dump-instr=yes`) and matches
#       the executed addresses against `objdump`'s `lock`-prefixed and `xchg` instructions
#       (the C library's are not counted). Needs binutils.
#
# Work paced by the clock is over-weighted: under callgrind the proxy serves a few hundred
# requests a second, so its tap (at most 200 recorded a second) records about two thirds of
# the measured requests, against about 1% in load runs; that adds about 4k estimated cycles to
# each proxy h2c request (BENCHMARKS.md, "Eleventh profile").
#
# Each target runs under `valgrind --tool=callgrind` (every thread counted) with the
# backend pinned to core 1; the counters are zeroed after the warm-up and dumped after the
# measured requests. Loopback only (ports 18080/18082/18083); every process is stopped by its
# PID. Installs valgrind and nghttp2-client with apt-get when missing; needs release builds
# of bench_backend and passthrough (benches/load.sh builds them).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release/examples
PROTO=h1
REQUESTS=4000
STREAMS=32
KEEP=
DATA=()
CACHE=()
ATOMICS=
while getopts "p:s:n:d:k:ca" opt; do
    case $opt in
        p) PROTO=$OPTARG ;;
        s) STREAMS=$OPTARG ;;
        n) REQUESTS=$OPTARG ;;
        d) DATA=(-d "$OPTARG") ;;
        k) KEEP=$OPTARG ;;
        c) CACHE=(--cache-sim=yes --D1=65536,8,64 --LL=1048576,16,64) ;;
        a) ATOMICS=1 ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[[ $# -gt 0 && "$REQUESTS" =~ ^[0-9]+$ && "$REQUESTS" -gt 0 && "$STREAMS" =~ ^[0-9]+$ &&
    "$STREAMS" -gt 0 ]] ||
    { echo "usage: benches/instructions.sh [-p h1|h2c] [-s STREAMS] [-n REQUESTS] [-d FILE] [-k DIR] [-c] [-a] TARGET..." >&2; exit 2; }
case $PROTO in
    h1) LOAD=(--h1 -c16 "${DATA[@]}") ;;
    h2c) LOAD=(-c16 -m"$STREAMS" "${DATA[@]}") ;;
    *) echo "-p must be h1 or h2c" >&2; exit 2 ;;
esac
missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v h2load >/dev/null || missing+=(nghttp2-client)
if ((${#missing[@]})); then
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
[[ -n "$KEEP" ]] && mkdir -p "$KEEP"

# shellcheck source=benches/target.sh
source "$ROOT/benches/target.sh"
bench_setup instr

i=0
for target in "$@"; do
    i=$((i + 1))
    out=$TMP/cg.$i
    cg=(valgrind --tool=callgrind "${CACHE[@]}" --compress-strings=no --compress-pos=no
        --callgrind-out-file="$out")
    [[ -n "$ATOMICS" ]] && cg+=(--dump-instr=yes)
    start_target "$target" "${cg[@]}"
    pid=$TARGET_PID
    PIDS+=("$pid")
    taskset -c 1 timeout 300 h2load "${LOAD[@]}" -n2000 http://127.0.0.1:18082/ >/dev/null 2>&1 || true
    callgrind_control -z "$pid" >/dev/null 2>&1
    done_n=$(taskset -c 1 timeout 600 h2load "${LOAD[@]}" -n"$REQUESTS" http://127.0.0.1:18082/ 2>&1 |
        awk '/^requests:/{print $8}')
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    # The dump after the zeroing is the newest part file.
    part=$(ls -t "$out".* 2>/dev/null | head -1)
    total=$(awk '/^(summary|totals):/ {print $2; exit}' "$part" 2>/dev/null || true)
    if [[ -z "$total" || "${done_n:-0}" != "$REQUESTS" ]]; then
        echo "$target: measurement failed (${done_n:-0} of $REQUESTS requests succeeded)"
        continue
    fi
    [[ -n "$KEEP" ]] && cp "$part" "$KEEP/$(basename "${target%%:*}").$PROTO.callgrind"
    echo "$target ($PROTO): $((total / REQUESTS)) instructions per request"
    if ((${#CACHE[@]})); then
        # summary: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
        awk -v n="$REQUESTS" -v t="$target" '/^(summary|totals):/ {
            printf "%s: per request %.0f I1 misses, %.0f / %.0f L1d read / write misses, %.1f / %.1f last-level read / write misses, %.1fk estimated cycles\n",
                t, $5 / n, $6 / n, $7 / n, $9 / n, $10 / n,
                ($2 + 10 * ($5 + $6 + $7) + 100 * ($8 + $9 + $10)) / n / 1000; exit }' "$part"
    fi
    if [[ -n "$ATOMICS" ]]; then
        bin=$(readlink -f "$(target_binary "$target")")
        # The addresses of the binary's locked instructions, then the executed count of each
        # (an instruction line's third field; the line after `calls=` is a call's inclusive
        # cost, not an instruction's), for lines of the binary's own object.
        objdump -d --no-show-raw-insn "$bin" |
            awk '$2 == "lock" || $2 ~ /^xchg/ { a = $1; sub(":", "", a); print a }' >"$TMP/locks"
        awk -v n="$REQUESTS" -v t="$target" -v bin="$bin" '
            FNR == NR { sub(/^0+/, "", $1); lock[$1] = 1; next }
            /^ob=/ { own = (substr($0, 4) == bin); next }
            /^calls=/ { skip = 1; next }
            /^0x/ {
                if (skip) { skip = 0; next }
                if (!own) next
                a = substr($1, 3); sub(/^0+/, "", a)
                if (a in lock) count += $3
                next
            }
            { skip = 0 }
            END { printf "%s: %.1f locked instructions per request\n", t, count / n }
        ' "$TMP/locks" "$part"
    fi
done
