#!/usr/bin/env bash
# Load and memory benchmark: the full proxy against the floor (examples/passthrough.rs) and nginx.
#
# usage: benches/load.sh [all|load|memory]        (default: all)
#
# Environment (all optional):
#   DURATION=10s        wrk duration per HTTP/1.1 run (whole seconds, `s` suffix optional)
#   RUNS=3              runs per protocol and target (alternating targets)
#   H2_REQUESTS=200000  requests per h2load run (h2load -c16 -m32 -n H2_REQUESTS)
#   CONNS=10000         idle HTTP/1.1 keep-alive connections for the memory figure
#   STREAMS=1000        concurrent HTTP/2 streams in flight for the memory figure
#   TARGETS="direct passthrough proxy nginx"
#   PROXY_CORE=0 LOAD_CORE=1   the proxy under test runs on PROXY_CORE; wrk/h2load and the
#                       backend on LOAD_CORE
#   PGO=1               proxy and passthrough both built profile-guided (benches/pgo.sh:
#                       trained on the same HTTP/1.1 + h2c load; needs rustc's LLVM version
#                       of llvm-profdata, installed with apt-get when missing); PGO=0: the
#                       release builds of target/release, which use the workspace's
#                       committed profile (pgo/, .cargo/pgo-rustc.sh) unless built with
#                       LINKERD_HTTP_PGO=0. When no matching llvm-profdata can be had, the
#                       run uses the release builds and its report says so.
#   SKIP_BUILD=1        use the binaries already built (target/release/examples, and
#                       target/pgo/bin with PGO=1)
#   KEEP_TMP=1          keep the temp dir (configs, logs, raw results) after the run
#   RESULTS=FILE        also write the result tables (markdown) to FILE
#
# Everything listens on 127.0.0.1 only, every run is bounded in time and count, and every
# process this script starts is stopped by its PID on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=${1:-all}
DURATION=${DURATION:-10s}
DURATION_S=${DURATION%s}
RUNS=${RUNS:-3}
H2_REQUESTS=${H2_REQUESTS:-200000}
CONNS=${CONNS:-10000}
STREAMS=${STREAMS:-1000}
TARGETS=${TARGETS:-"direct passthrough proxy nginx"}
PROXY_CORE=${PROXY_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
RESULTS=${RESULTS:-}
PGO=${PGO:-1}

BACKEND_PORT=18080
PASS_PORT=18081
PROXY_PORT=18082
ADMIN_PORT=18083
NGINX_H1_PORT=18084
NGINX_H2_PORT=18085

case "$MODE" in all | load | memory) ;; *)
    echo "usage: $0 [all|load|memory]" >&2
    exit 2
    ;;
esac
if ! [[ "$DURATION_S" =~ ^[0-9]+$ && "$RUNS" =~ ^[0-9]+$ && "$H2_REQUESTS" =~ ^[0-9]+$ &&
    "$CONNS" =~ ^[0-9]+$ && "$STREAMS" =~ ^[0-9]+$ ]]; then
    echo "DURATION (e.g. 10s), RUNS, H2_REQUESTS, CONNS and STREAMS must be whole numbers" >&2
    exit 2
fi

log() { echo "[load.sh] $*" >&2; }

TMP=$(mktemp -d /tmp/linkerd-http-bench.XXXXXX)
chmod 0755 "$TMP"
declare -a PIDS=()
declare -A PID_OF=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "${KEEP_TMP:-}" ]]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Tools, limits and binaries.

ensure_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v h2load >/dev/null || missing+=(nghttp2-client)
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v python3 >/dev/null || missing+=(python3)
    command -v curl >/dev/null || missing+=(curl)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}" >&2
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

raise_fd_limit() {
    local want=$((CONNS * 2 + 4096))
    ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    log "ulimit -n = $(ulimit -n)"
    if (($(ulimit -n) < CONNS + 1024)); then
        log "warning: the open-file limit is below CONNS + 1024; the idle-connection test may fail"
    fi
}

build() {
    if [[ -z "${SKIP_BUILD:-}" ]]; then
        log "building release binaries (this takes minutes on 2 cores)"
        (cd "$ROOT" && cargo build --release --example proxy --example passthrough \
            --example bench_backend >&2)
    fi
    BUILDS="release builds with the committed profile (pgo/linkerd-http.profdata; PGO=0)"
    if [[ "${LINKERD_HTTP_PGO:-1}" == 0 ]]; then BUILDS="plain release builds (PGO=0)"; fi
    if [[ "$PGO" != 0 ]]; then
        if [[ -n "${SKIP_BUILD:-}" ]]; then
            [[ -x "$PGO_BIN/proxy" && -x "$PGO_BIN/passthrough" ]] || {
                log "SKIP_BUILD with PGO=1: missing $PGO_BIN/{proxy,passthrough} (run benches/pgo.sh)"
                exit 1
            }
        elif ! "$ROOT/benches/pgo.sh"; then
            log "warning: profile-guided builds failed; using the plain release builds"
            BUILDS="release builds (PGO=1 asked for, but benches/pgo.sh failed)"
            return
        fi
        BUILDS="proxy and passthrough both profile-guided (benches/pgo.sh), bench_backend plain"
        TARGET_BIN=$PGO_BIN
    fi
}

BIN="$ROOT/target/release/examples"
PGO_BIN="$ROOT/target/pgo/bin"
# Where the proxy and passthrough under test come from (PGO builds replace BIN's).
TARGET_BIN=$BIN
BUILDS=

# ---------------------------------------------------------------------------------------------
# Processes.

# start_proc NAME CORE CMD...: start CMD pinned to CORE, output to $TMP/NAME.log.
start_proc() {
    local name=$1 core=$2
    shift 2
    taskset -c "$core" "$@" >"$TMP/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    PID_OF[$name]=$pid
}

# wait_port NAME PORT: wait (at most 10 s) until 127.0.0.1:PORT accepts connections.
wait_port() {
    local name=$1 port=$2 pid=${PID_OF[$1]}
    for _ in $(seq 1 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited early:"
            cat "$TMP/$name.log" >&2
            exit 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "$name did not listen on $port within 10 s"
    cat "$TMP/$name.log" >&2
    exit 1
}

# stop_proc NAME: SIGTERM by PID, then SIGKILL after 5 s.
stop_proc() {
    local name=$1 pid=${PID_OF[$1]:-} kids
    [[ -n "$pid" ]] || return 0
    kids=$(children_of "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
    if [[ "$name" == nginx ]]; then
        local k
        for k in $kids; do
            for _ in $(seq 1 50); do
                kill -0 "$k" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$k" 2>/dev/null || true
            forget_pid "$k"
        done
    fi
    unset "PID_OF[$name]"
}

# forget_pid PID: drop PID from the cleanup list once it has been reaped.
forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

children_of() { cat "/proc/$1/task/$1/children" 2>/dev/null || true; }

write_proxy_config() {
    sed -e "s#/tmp/linkerd-http-bench-access.log#$TMP/proxy-access.log#" \
        "$ROOT/benches/proxy.yaml" >"$TMP/proxy.yaml"
}

write_nginx_config() {
    mkdir -p "$TMP/nginx"
    chmod 0755 "$TMP/nginx"
    cat >"$TMP/nginx/nginx.conf" <<EOF
# Written by benches/load.sh: one worker, upstream keepalive, JSON access log like the proxy's.
worker_processes 1;
user www-data;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 20000; }
http {
    client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    log_format bench_json escape=json '{"timestamp":"\$time_iso8601","client_addr":"\$remote_addr",'
        '"method":"\$request_method","uri":"\$request_uri","host":"\$host","version":"\$server_protocol",'
        '"status":\$status,"grpc_status":null,"route":"bench","backend":"\$upstream_addr",'
        '"attempts":1,"request_bytes":\$request_length,"response_bytes":\$body_bytes_sent,'
        '"duration_ms":\$request_time,"headers_ms":"\$upstream_header_time",'
        '"user_agent":"\$http_user_agent","trace_id":"\$http_x_request_id","error":null}';
    access_log $TMP/nginx/access.log bench_json buffer=64k flush=1s;
    keepalive_requests 10000000;
    keepalive_timeout 1h;
    http2_max_concurrent_streams 1000;
    upstream bench_backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 1024;
        keepalive_requests 10000000;
        keepalive_timeout 1h;
    }
    server {
        listen 127.0.0.1:$NGINX_H1_PORT;
        listen 127.0.0.1:$NGINX_H2_PORT http2;
        location / {
            proxy_pass http://bench_backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header x-bench "1";
        }
    }
}
EOF
}

# start_target TARGET: start the process under test (not `direct`) pinned to PROXY_CORE.
start_target() {
    case "$1" in
    direct) ;;
    passthrough)
        start_proc passthrough "$PROXY_CORE" "$TARGET_BIN/passthrough" \
            --listen "127.0.0.1:$PASS_PORT" --upstream "127.0.0.1:$BACKEND_PORT"
        wait_port passthrough "$PASS_PORT"
        ;;
    proxy)
        : >"$TMP/proxy-access.log"
        start_proc proxy "$PROXY_CORE" "$TARGET_BIN/proxy" --config "$TMP/proxy.yaml" \
            --listen "127.0.0.1:$PROXY_PORT" --admin "127.0.0.1:$ADMIN_PORT"
        wait_port proxy "$PROXY_PORT"
        ;;
    nginx)
        start_proc nginx "$PROXY_CORE" "$NGINX" -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" \
            -g 'daemon off;'
        wait_port nginx "$NGINX_H1_PORT"
        local w
        for w in $(children_of "${PID_OF[nginx]}"); do PIDS+=("$w"); done
        ;;
    *)
        log "unknown target $1"
        exit 2
        ;;
    esac
}

# measured_pids TARGET: the PIDs whose CPU is the target's (nginx: master + workers).
measured_pids() {
    case "$1" in
    direct) echo "${PID_OF[backend]}" ;;
    nginx) echo "${PID_OF[nginx]}" $(children_of "${PID_OF[nginx]}") ;;
    *) echo "${PID_OF[$1]}" ;;
    esac
}

port_of() {
    case "$1:$2" in
    direct:*) echo "$BACKEND_PORT" ;;
    passthrough:*) echo "$PASS_PORT" ;;
    proxy:*) echo "$PROXY_PORT" ;;
    nginx:h1) echo "$NGINX_H1_PORT" ;;
    nginx:h2) echo "$NGINX_H2_PORT" ;;
    esac
}

access_log_of() {
    case "$1" in
    proxy) echo "$TMP/proxy-access.log" ;;
    nginx) echo "$TMP/nginx/access.log" ;;
    *) echo "" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Measurements.

CLK_TCK=$(getconf CLK_TCK)

# cpu_ticks PID...: utime + stime (clock ticks) summed over the PIDs.
cpu_ticks() {
    local total=0 pid s
    local -a f
    for pid in "$@"; do
        s=$(<"/proc/$pid/stat")
        s=${s##*) }
        read -r -a f <<<"$s"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# core_ticks CORE: "busy total" jiffies of one core from /proc/stat.
core_ticks() {
    awk -v c="cpu$1" '$1 == c {
        t = 0; for (i = 2; i <= NF; i++) t += $i
        print t - $5 - $6, t }' /proc/stat
}

# calc EXPR: floating-point arithmetic (awk).
calc() { awk "BEGIN { printf \"%.6f\", $* }"; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

now() { date +%s.%N; }

RAW="$TMP/results.tsv"

# measure PROTO TARGET RUN CMD...: run the load generator CMD (pinned to LOAD_CORE) and append
# one row to $RAW. The CMD's stdout goes to $TMP/out.
measure() {
    local proto=$1 target=$2 run=$3
    shift 3
    local pids c0 c1 t0 t1 k0 k1 logf logged=-
    pids=$(measured_pids "$target")
    logf=$(access_log_of "$target")
    if [[ -n "$logf" && -f "$logf" ]]; then : >"$logf"; fi
    # shellcheck disable=SC2086
    c0=$(cpu_ticks $pids)
    k0=$(core_ticks "$PROXY_CORE")
    t0=$(now)
    taskset -c "$LOAD_CORE" "$@" >"$TMP/out" 2>&1 || log "$proto $target run $run: load generator exited $?"
    t1=$(now)
    k1=$(core_ticks "$PROXY_CORE")
    # shellcheck disable=SC2086
    c1=$(cpu_ticks $pids)
    if [[ -n "$logf" && -f "$logf" ]]; then
        if [[ "$target" == nginx ]]; then sleep 1.2; fi # its log buffer flushes every second
        logged=$(wc -l <"$logf")
    fi
    local requests rps p50 p99 errors k0b k0t k1b k1t
    read -r k0b k0t <<<"$k0"
    read -r k1b k1t <<<"$k1"
    if [[ "$proto" == h1 ]]; then
        read -r requests rps p50 p99 errors < <(awk -f "$ROOT/benches/wrk_ms.awk" -f <(printf '%s\n' '
            / requests in / { req = $1 }
            /^Requests\/sec:/ { rps = $2 }
            $1 == "50%" { p50 = ms($2) }
            $1 == "99%" { p99 = ms($2) }
            /Socket errors:/ { err += $4 + $6 + $8 + $10 }
            /Non-2xx or 3xx responses:/ { err += $5 }
            END { printf "%d %.1f %.3f %.3f %d\n", req, rps, p50, p99, err }') "$TMP/out")
    else
        local pct
        pct=$(cut -f3 "$TMP/h2load.log" | sort -n | awk '{ a[NR] = $1 }
            END { if (NR == 0) { print "0 0"; exit }
                  i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
                  i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
                  printf "%.3f %.3f\n", a[i50] / 1000, a[i99] / 1000 }')
        read -r requests rps errors < <(awk '
            /^finished in/ { rps = $4 }
            /^requests:/ { ok = $8; err = $10 + $12 + $14 }
            /^status codes:/ { non2xx = $5 + $7 + $9 }
            END { printf "%d %.1f %d\n", ok - non2xx, rps, err + non2xx }' "$TMP/out")
        read -r p50 p99 <<<"$pct"
    fi
    if [[ "${requests:-0}" -le 0 ]]; then
        log "$proto $target run $run: no requests completed; output:"
        cat "$TMP/out" >&2
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$proto" "$target" "$run" "$requests" "$(calc "$t1 - $t0")" \
        "$(calc "($c1 - $c0) / $CLK_TCK")" "$((k1b - k0b))" "$((k1t - k0t))" \
        "$rps" "$p50" "$p99" "$errors" "$logged" >>"$RAW"
    log "$(tail -n1 "$RAW" | tr '\t' ' ')"
}

run_h1() {
    local target=$1 run=$2 port
    port=$(port_of "$target" h1)
    measure h1 "$target" "$run" timeout $((DURATION_S + 30)) \
        wrk -t1 -c64 -d"${DURATION_S}s" --latency "http://127.0.0.1:$port/"
}

run_h2() {
    local target=$1 run=$2 port
    port=$(port_of "$target" h2)
    rm -f "$TMP/h2load.log"
    measure h2 "$target" "$run" timeout 300 \
        h2load -t1 -c16 -m32 -n"$H2_REQUESTS" --log-file="$TMP/h2load.log" \
        "http://127.0.0.1:$port/"
}

warm_up() {
    local target=$1
    taskset -c "$LOAD_CORE" timeout 30 wrk -t1 -c64 -d1s "http://127.0.0.1:$(port_of "$target" h1)/" \
        >/dev/null 2>&1 || true
    taskset -c "$LOAD_CORE" timeout 60 h2load -t1 -c16 -m32 -n20000 \
        "http://127.0.0.1:$(port_of "$target" h2)/" >/dev/null 2>&1 || true
}

# warm_light TARGET: a few sequential requests over each protocol, so the memory baseline
# includes a started runtime and one upstream connection but no load-test high-water mark.
warm_light() {
    local target=$1 i
    for i in 1 2 3; do
        curl -sS -o /dev/null --max-time 5 "http://127.0.0.1:$(port_of "$target" h1)/" || true
        curl -sS -o /dev/null --max-time 5 --http2-prior-knowledge \
            "http://127.0.0.1:$(port_of "$target" h2)/" || true
    done
}

summarize_load() {
    python3 - "$RAW" <<'EOF'
import statistics, sys
rows = []
for line in open(sys.argv[1]):
    p = line.rstrip("\n").split("\t")
    rows.append(dict(proto=p[0], target=p[1], run=int(p[2]), requests=int(p[3]),
                     wall=float(p[4]), cpu=float(p[5]), core_busy=float(p[6]),
                     core_total=float(p[7]), rps=float(p[8]), p50=float(p[9]),
                     p99=float(p[10]), errors=int(p[11]), logged=p[12]))
for r in rows:
    r["cpu100k"] = r["cpu"] / r["requests"] * 1e5 if r["requests"] else float("nan")
    r["util"] = 100 * r["cpu"] / r["wall"] if r["wall"] else 0.0
    r["core"] = 100 * r["core_busy"] / r["core_total"] if r["core_total"] else 0.0
    # `direct` measures the backend, which shares the load core: it is never "saturated".
    r["ok"] = r["target"] != "direct" and r["util"] >= 90.0 and r["errors"] == 0
def med(xs):
    return statistics.median(xs) if xs else float("nan")
names = {"h1": "HTTP/1.1 (wrk -t1 -c64)", "h2": "h2c (h2load -c16 -m32)"}
print("### Per run\n")
print("| proto | target | run | requests | CPU s | CPU s/100k | proc util % | core busy % | req/s | p50 ms | p99 ms | errors | log lines | flag |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    flag = "" if r["ok"] else ("n/a" if r["target"] == "direct" else "NOT SATURATED" if r["errors"] == 0 else "ERRORS")
    print(f"| {r['proto']} | {r['target']} | {r['run']} | {r['requests']} | {r['cpu']:.2f} | {r['cpu100k']:.3f} | "
          f"{r['util']:.0f} | {r['core']:.0f} | {r['rps']:.0f} | {r['p50']:.3f} | {r['p99']:.3f} | {r['errors']} | {r['logged']} | {flag} |")
print()
for proto in ("h1", "h2"):
    prs = [r for r in rows if r["proto"] == proto]
    if not prs:
        continue
    print(f"### {names[proto]}: medians\n")
    print("| target | CPU s/100k req | proc util % | req/s | p50 ms | p99 ms | saturated runs |")
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for t in dict.fromkeys(r["target"] for r in prs):
        trs = [r for r in prs if r["target"] == t]
        good = [r for r in trs if r["ok"]]
        use = good or trs
        s = {k: med([r[k] for r in use]) for k in ("cpu100k", "util", "rps", "p50", "p99")}
        s["all_ok"] = bool(good)
        summary[t] = s
        sat = "n/a" if t == "direct" else f"{len(good)}/{len(trs)}" + ("" if good else " (medians of all runs)")
        print(f"| {t} | {s['cpu100k']:.3f} | {s['util']:.0f} | {s['rps']:.0f} | {s['p50']:.3f} | {s['p99']:.3f} | {sat} |")
    print()
    full = summary.get("proxy")
    starred = False
    for base, cpu_target, p99_target in (("passthrough", 1.18, 1.3), ("nginx", 1.0, None)):
        b = summary.get(base)
        if not full or not b:
            continue
        star = "" if full["all_ok"] and b["all_ok"] else " (*)"
        starred = starred or bool(star)
        cpu_ratio = full["cpu100k"] / b["cpu100k"]
        p99_ratio = full["p99"] / b["p99"] if b["p99"] else float("nan")
        rps_ratio = full["rps"] / b["rps"] if b["rps"] else float("nan")
        verdict = "meets" if cpu_ratio <= cpu_target else "MISSES"
        line = (f"- full/{base}{star}: CPU per request x{cpu_ratio:.2f} (target <= {cpu_target}: {verdict}), "
                f"req/s x{rps_ratio:.2f}, p99 x{p99_ratio:.2f}")
        if p99_target:
            line += f" (target <= {p99_target}: {'meets' if p99_ratio <= p99_target else 'MISSES'})"
        print(line)
        # The same ratio run by run (each proxy run against the base's run of the same round,
        # both saturated): on a noisy machine its median and spread show how far the
        # ratio of medians above can be trusted.
        by_run = {}
        for r in prs:
            if r["ok"] and r["target"] in ("proxy", base):
                by_run.setdefault(r["run"], {})[r["target"]] = r["cpu100k"]
        paired = [v["proxy"] / v[base] for _, v in sorted(by_run.items()) if len(v) == 2]
        if paired:
            print("  - run by run: CPU per request " + " / ".join(f"x{x:.2f}" for x in paired)
                  + f" (median x{med(paired):.2f})")
    if starred:
        print("\n(*) at least one side had no run with its process >= 90% of a core busy: the ratio uses all runs.")
    print()
EOF
}

run_load() {
    write_proxy_config
    write_nginx_config
    : >"$RAW"
    local t
    for t in $TARGETS; do start_target "$t"; done
    for t in $TARGETS; do
        log "warming up $t"
        warm_up "$t"
    done
    local run proto
    for run in $(seq 1 "$RUNS"); do
        for proto in h1 h2; do
            for t in $TARGETS; do
                "run_$proto" "$t" "$run"
                sleep 1
            done
        done
    done
    for t in $TARGETS; do [[ "$t" == direct ]] || stop_proc "$t"; done
    summarize_load
}

# ---------------------------------------------------------------------------------------------
# Memory: RSS with CONNS idle HTTP/1.1 connections and with STREAMS HTTP/2 streams in flight.

upstream_conns() {
    ss -Htn state established "( sport = :$BACKEND_PORT )" 2>/dev/null | wc -l
}

# mem_idle TARGET: sets MEM_RESULT to "base_kib loaded_kib answered failed".
mem_idle() {
    local target=$1 port pid base loaded line=""
    port=$(port_of "$target" h1)
    start_target "$target"
    pid=${PID_OF[$target]}
    warm_light "$target"
    sleep 1
    base=$(rss_kib "$pid")
    start_proc idle_client "$LOAD_CORE" python3 "$ROOT/benches/idle_conns.py" 127.0.0.1 "$port" \
        "$CONNS" 600
    for _ in $(seq 1 1200); do
        line=$(grep -m1 '^ready' "$TMP/idle_client.log" || true)
        [[ -n "$line" ]] && break
        kill -0 "${PID_OF[idle_client]}" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1
    loaded=$(rss_kib "$pid")
    stop_proc idle_client
    stop_proc "$target"
    local ok failed
    read -r _ ok failed <<<"${line:-ready 0 $CONNS}"
    MEM_RESULT="$base $loaded $ok $failed"
}

# mem_streams TARGET: sets MEM_RESULT to "base_kib loaded_kib succeeded upstream_conns".
mem_streams() {
    local target=$1 port pid base loaded conns per_conn ups succeeded
    port=$(port_of "$target" h2)
    start_target "$target"
    pid=${PID_OF[$target]}
    warm_light "$target"
    sleep 1
    base=$(rss_kib "$pid")
    local ups0
    ups0=$(upstream_conns)
    # At most 200 streams per connection: hyper's server default, so passthrough takes them all.
    per_conn=$((STREAMS < 200 ? STREAMS : 200))
    conns=$(((STREAMS + per_conn - 1) / per_conn))
    start_proc h2mem "$LOAD_CORE" timeout 120 h2load -t1 -c"$conns" -m"$per_conn" -n"$STREAMS" \
        "http://127.0.0.1:$port/delay/6000"
    sleep 3
    loaded=$(rss_kib "$pid")
    ups=$(($(upstream_conns) - ups0))
    local h2pid=${PID_OF[h2mem]}
    wait "$h2pid" || true
    forget_pid "$h2pid"
    unset "PID_OF[h2mem]"
    succeeded=$(awk '/^requests:/ { print $8 }' "$TMP/h2mem.log")
    stop_proc "$target"
    MEM_RESULT="$base $loaded ${succeeded:-0} $ups"
}

run_memory() {
    write_proxy_config
    local t
    local -A idle=() streams=() per_c=() per_s=()
    for t in passthrough proxy; do
        log "memory: $CONNS idle HTTP/1.1 connections to $t"
        mem_idle "$t"
        idle[$t]=$MEM_RESULT
        log "  base/loaded KiB, answered, failed: $MEM_RESULT"
        log "memory: $STREAMS HTTP/2 streams in flight through $t"
        mem_streams "$t"
        streams[$t]=$MEM_RESULT
        log "  base/loaded KiB, succeeded, upstream conns: $MEM_RESULT"
    done
    echo "### Memory (RSS from /proc/<pid>/status VmRSS)"
    echo
    echo "| target | RSS before MiB | RSS with $CONNS idle HTTP/1.1 conns MiB | KiB per conn | conns answered/failed | RSS before MiB | RSS with $STREAMS h2c streams in flight MiB | KiB per stream | streams ok | new backend conns at sample |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    local b l ok failed sb sl sok ups
    for t in passthrough proxy; do
        read -r b l ok failed <<<"${idle[$t]}"
        read -r sb sl sok ups <<<"${streams[$t]}"
        per_c[$t]=$(calc "($l - $b) / ($ok > 0 ? $ok : 1)")
        per_s[$t]=$(calc "($sl - $sb) / $STREAMS")
        printf '| %s | %.1f | %.1f | %.2f | %s/%s | %.1f | %.1f | %.2f | %s | %s |\n' "$t" \
            "$(calc "$b / 1024")" "$(calc "$l / 1024")" "${per_c[$t]}" "$ok" "$failed" \
            "$(calc "$sb / 1024")" "$(calc "$sl / 1024")" "${per_s[$t]}" "$sok" "$ups"
    done
    echo
    printf -- '- proxy/passthrough memory per idle connection: x%.2f (target <= 1.25)\n' \
        "$(calc "${per_c[proxy]} / (${per_c[passthrough]} != 0 ? ${per_c[passthrough]} : 1)")"
    printf -- '- proxy/passthrough memory per in-flight stream: x%.2f (target <= 1.25)\n' \
        "$(calc "${per_s[proxy]} / (${per_s[passthrough]} != 0 ? ${per_s[passthrough]} : 1)")"
    echo
}

# ---------------------------------------------------------------------------------------------

main() {
    ensure_tools
    raise_fd_limit
    build
    local b
    for b in "$TARGET_BIN/proxy" "$TARGET_BIN/passthrough" "$BIN/bench_backend"; do
        if [[ ! -x "$b" ]]; then
            log "missing $b"
            exit 1
        fi
    done
    log "temp dir $TMP; proxy core $PROXY_CORE, load core $LOAD_CORE; $(nproc) cpus"
    start_proc backend "$LOAD_CORE" "$BIN/bench_backend" --listen "127.0.0.1:$BACKEND_PORT"
    wait_port backend "$BACKEND_PORT"
    local report="$TMP/report.md"
    {
        echo "## linkerd-http load benchmark"
        echo
        echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); nproc: $(nproc); CPU: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
        echo "- commit: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown) ($(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null | wc -l) tracked files modified in the work tree)"
        echo "- builds: $BUILDS"
        echo "- settings: DURATION=${DURATION_S}s RUNS=$RUNS H2_REQUESTS=$H2_REQUESTS CONNS=$CONNS STREAMS=$STREAMS; proxy under test on core $PROXY_CORE, load generator + backend on core $LOAD_CORE"
        echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo
    } >"$report"
    if [[ "$MODE" != memory ]]; then run_load >>"$report"; fi
    if [[ "$MODE" != load ]]; then run_memory >>"$report"; fi
    echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$report"
    cat "$report"
    if [[ -n "$RESULTS" ]]; then cp "$report" "$RESULTS"; fi
}

main
