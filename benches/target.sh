# Sourced by benches/ab.sh and benches/instructions.sh: the backend and the targets under test.

# bench_setup NAME: a temp dir in TMP, removed on exit after every PID in PIDS is stopped;
# starts the backend (bench_backend) pinned to core 1 on 127.0.0.1:18080. Needs BIN.
bench_setup() {
    TMP=$(mktemp -d "/tmp/linkerd-http-$1.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
    taskset -c 1 "$BIN/bench_backend" --listen 127.0.0.1:18080 >"$TMP/backend.log" 2>&1 &
    PIDS+=($!)
    sleep 0.5
}

bench_cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
#
# target_binary TARGET: the executable TARGET runs (see start_target for TARGET's forms).
target_binary() {
    case $1 in
        passthrough) echo "$BIN/passthrough" ;;
        passthrough:*) echo "${1#passthrough:}" ;;
        *) echo "${1%%:*}" ;;
    esac
}
#
# start_target TARGET PREFIX...: runs TARGET behind the command PREFIX (for example
# `taskset -c 0`) on 127.0.0.1:$TARGET_PORT (default 18082; a proxy's admin on the next port),
# forwarding to the backend on 127.0.0.1:18080, logs to $TMP/target.log (target-PORT.log for
# another port), and waits (up to 30 s) until it accepts connections; sets TARGET_PID. TARGET is BINARY[:CONFIG] (a proxy binary; CONFIG defaults to
# benches/proxy.yaml, its access log redirected into $TMP) or `passthrough` (or
# `passthrough:BINARY`; PASSTHROUGH_ARGS adds flags to it, e.g. `--upstream-http2` to compare
# with a config whose backend is `protocol: http2`). Needs ROOT, BIN and TMP.
start_target() {
    local target=$1
    shift
    local bin port=${TARGET_PORT:-18082} suffix=
    bin=$(target_binary "$target")
    [[ "$port" == 18082 ]] || suffix=-$port
    if [[ "$target" == passthrough || "$target" == passthrough:* ]]; then
        # shellcheck disable=SC2086 # PASSTHROUGH_ARGS: extra flags, e.g. --upstream-http2
        "$@" "$bin" --listen "127.0.0.1:$port" --upstream 127.0.0.1:18080 ${PASSTHROUGH_ARGS:-} \
            >"$TMP/target$suffix.log" 2>&1 &
    else
        local config=$ROOT/benches/proxy.yaml
        [[ "$target" == *:* ]] && config=${target#*:}
        sed "s#/tmp/linkerd-http-bench-access.log#$TMP/access$suffix.log#" "$config" \
            >"$TMP/proxy$suffix.yaml"
        "$@" "$bin" --config "$TMP/proxy$suffix.yaml" --listen "127.0.0.1:$port" \
            --admin "127.0.0.1:$((port + 1))" >"$TMP/target$suffix.log" 2>&1 &
    fi
    TARGET_PID=$!
    local _
    for _ in $(seq 1 300); do
        (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
}
