#!/usr/bin/env bash
# benches/room-idle.sh — what a conference room costs when nobody is in it (issue 12: "an
# empty room costs nothing measurable"). Starts Tambun on the shipped dialplan (rooms 8000 and
# 8001), measures its CPU over W seconds idle, then while N SIPp participants sit in room
# 8000 (each played a short RTP capture, then silent; the room still mixes and sends to
# everyone every 20 ms), then again after they have all hung up. Prints the three CPU
# figures and the ratio after/before, which is ~1 when an empty room leaves no thread, timer
# or tick behind. Everything on 127.0.0.1; every process stopped by PID.
#
# The windows right after the last BYE still hold the calls' ends (records written, ports
# closed, the BYE transactions' 32 s timers); the last of them is the idle room again.
#
# Env: AFTER (windows measured after that one, default 5; the last is the RESULT's),
#      W (seconds per window, default 10), N (participants, default 10), SKIP_BUILD=1.
. "$(dirname "$0")/lib.sh"
W="${W:-10}"
N="${N:-10}"
command -v sipp >/dev/null || { echo "needs sipp (apt-get install sip-tester)" >&2; exit 2; }
build_release
PORT=5073 ADMIN=8973
cp -r "$ROOT/dialplan" "$TMP/dialplan"
{
    echo "SEQUENTIAL"
    for ((i = 0; i < N; i++)); do echo "$((1000 + i));pw$((1000 + i))"; done
} >"$TMP/users.inf"
for ((i = 0; i < N; i++)); do
    "$TAMBUN" --db "$TMP/t.db" --dialplan "$TMP/dialplan" ext add "$((1000 + i))" --opd setda \
        --name "Bench $((1000 + i))" --password "pw$((1000 + i))" >/dev/null
done
TAMBUN_EXTRA="--rtp-ports 30000-30999" start_tambun "$PORT" "$ADMIN" "$TMP/t.db" "$TMP/dialplan"
# CPU time of every thread, in µs, from the scheduler's counters (ns; finer than the clock
# ticks of /proc/PID/stat).
cpu_us() { cat /proc/"$TAMBUN_PID"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { print int(s / 1000) }'; }
window() {
    local a b
    a=$(cpu_us)
    sleep "$W"
    b=$(cpu_us)
    echo $((b - a))
}
participants() {
    curl -s "127.0.0.1:$ADMIN/api/conf" | python3 -c 'import json,sys; print(sum(len(r["participants"]) for r in json.load(sys.stdin)))'
}

sleep 2
log "idle, rooms configured but empty: $W s"
before=$(window)
MP=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$TMP" && exec sipp -sf "$ROOT/tests/sipp/media-uac-pcap.xml" -inf "$TMP/users.inf" -s 8000 \
    -key domain 127.0.0.1 -i 127.0.0.1 -mi 127.0.0.1 -mp "$MP" -m "$N" -l "$N" -r "$N" \
    -d $(((W + 4) * 1000)) -trace_err "127.0.0.1:$PORT" >/dev/null 2>&1) &
SIPP_PID=$!
PIDS+=("$SIPP_PID")
for _ in $(seq 1 50); do
    [[ "$(participants)" == "$N" ]] && break
    sleep 0.1
done
inside=$(participants)
log "$inside participants in room 8000: $W s"
during=$(window)
for _ in $(seq 1 100); do
    [[ "$(participants)" == "0" ]] && break
    sleep 0.2
done
left=$(participants)
sleep 1
log "everyone has left ($left in the room): $W s"
after=$(window)
later=()
for ((k = 0; k < ${AFTER:-5}; k++)); do
    log "and again: $W s"
    later+=("$(window)")
done
wait "$SIPP_PID" 2>/dev/null || true
printf '\n%-44s %10s %8s\n' "window ($W s)" "CPU µs" "% core"
pct() { awk -v us="$1" -v w="$W" 'BEGIN { printf "%.3f", us / (w * 10000) }'; }
printf '%-44s %10d %8s\n' "idle, rooms configured, nobody in them" "$before" "$(pct "$before")"
printf '%-44s %10d %8s\n' "$inside participants in room 8000" "$during" "$(pct "$during")"
printf '%-44s %10d %8s\n' "after everyone left ($left left)" "$after" "$(pct "$after")"
for k in "${!later[@]}"; do
    printf '%-44s %10d %8s\n' "the window after that (+$((k + 1)))" "${later[$k]}" "$(pct "${later[$k]}")"
done
last="${later[-1]}"
python3 -c "import sys; b, d, a = map(int, sys.argv[1:4]); print('RESULT room_idle before_us=%d during_us=%d after_us=%d ratio_after_before=%.2f' % (b, d, a, a / max(b, 1)))" "$before" "$during" "$last"
