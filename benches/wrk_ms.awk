# Shared by benches/load.sh and benches/interleave.sh (`awk -f benches/wrk_ms.awk -f PROGRAM`).
# ms(v): a latency as wrk prints it ("850.00us", "2.31ms", "1.02s") in milliseconds.
function ms(v) {
    if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
    if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
    if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
    return v + 0
}
