#!/usr/bin/env bash
# benches/video-room-load.sh — video rooms (Tambun's SFU, issue 12): video packets forwarded
# per second per core, with real sockets, by the load client benches/conference_load.rs
# (`cargo bench --bench conference_load -- tambun … --video-pps N`).
#
# The switch runs on CPU 1 (SERVER_CPUS), the load client on CPU 0 (CLIENT_CPUS), both SCHED_RR
# at priority RT as in conference-load.sh. Tambun: `serve` with a temporary DB (extensions
# 10000.. / pwN in a bench OPD) and a temporary dialplan whose province.toml has the shipped
# settings but only bench rooms 8000.. (max = ROOM_SIZE, video_mbps = 1000, so the room's
# egress budget does not cap N). For each video rate in PPS and each N in STEPS: N
# participants join (rooms of at most ROOM_SIZE, TALKERS_PCT % of each room talking, at
# least MIN_TALKERS), each sends 20 ms PCMU frames and, on a video line of its own (one VP8
# m-line, rtcp-mux), VIDEO_BYTES-byte VP8 packets at the rate (a keyframe every 2 s of
# packets and after each PLI) for WARMUP + DURATION s, and leaves. Each participant's one
# video line is one slot: the room sends it the camera of whoever spoke last (the one before
# that to the last talker), so the room should send N × rate packets a second.
# Prints one table: video in/out pps (what the participants sent / received in the window),
# out / expected, server CPU %, video packets out per core = out pps / (CPU s / wall s; the
# switch's CPU includes the audio mixing of the same participants), video loss (sequence
# numbers of each slot), PLIs received, the rooms' own forwarded count per second, the client's
# CPU. ~20 s a step. Env: STEPS, PPS, ROOM_SIZE, TALKERS_PCT, MIN_TALKERS, VIDEO_BYTES,
# DURATION, WARMUP, RT (0: off, then niceness NICE), SERVER_CPUS, CLIENT_CPUS, SKIP_BUILD=1,
# BIN and LOAD (the switch and the client, already built: no cargo), KEEP_TMP=1,
# RESULTS_COPY=FILE (the raw RESULT lines). Needs python3. Method and one run's
# numbers: docs/bench-conference.md ("Video rooms (SFU)").
. "$(dirname "$0")/lib.sh"
STEPS="${STEPS:-10 20 43}" PPS="${PPS:-30 100 300}"
ROOM_SIZE="${ROOM_SIZE:-50}" TALKERS_PCT="${TALKERS_PCT:-10}" MIN_TALKERS="${MIN_TALKERS:-3}"
VIDEO_BYTES="${VIDEO_BYTES:-1100}" DURATION="${DURATION:-5}" WARMUP="${WARMUP:-3}"
SERVER_CPUS="${SERVER_CPUS:-1}" CLIENT_CPUS="${CLIENT_CPUS:-0}"
NICE="${NICE:--10}" RT="${RT:-10}"
PRIO=(nice -n "$NICE")
[[ "$RT" != 0 ]] && PRIO=(chrt -r "$RT")
# Relay ports below the tests' band (18000-32000); a participant takes four (audio and video,
# RTP and RTCP).
T_SIP=5070 T_ADMIN=8970 T_RTP=10000-17999
for p in $T_SIP $T_ADMIN; do
    if ss -Hlntu | awk '{print $5}' | grep -q ":$p\$"; then echo "port $p is busy" >&2; exit 2; fi
done
MAX_N=0
for n in $STEPS; do ((n > MAX_N)) && MAX_N=$n; done
((MAX_N <= 2000)) || { echo "at most 2000 participants (the relay port range)" >&2; exit 2; }
((ROOM_SIZE >= 2 && ROOM_SIZE <= 500)) || { echo "ROOM_SIZE must be 2-500 (a room's max in the dialplan)" >&2; exit 2; }

conference_binaries
CLIENT=("${PRIO[@]}" taskset -c "$CLIENT_CPUS" "$LOAD_CLIENT")
SERVER=("${PRIO[@]}" taskset -c "$SERVER_CPUS")

ROOMS=$(((MAX_N + ROOM_SIZE - 1) / ROOM_SIZE))
start_room_switch "$ROOMS" "$ROOM_SIZE" "$MAX_N" "$T_SIP" "$T_ADMIN" "$T_RTP" "video_mbps = 1000"
log "tambun pid $TAMBUN_PID: sip udp 127.0.0.1:$T_SIP, admin 127.0.0.1:$T_ADMIN, relay $T_RTP, $ROOMS room(s) of at most $ROOM_SIZE, video_mbps 1000"

OUT="$TMP/results.txt"; : >"$OUT"
for pps in $PPS; do
    for n in $STEPS; do
        log "tambun: $n participants, video $pps pps"
        line=$(timeout -k 5 120 "${CLIENT[@]}" tambun --label tambun --sip "127.0.0.1:$T_SIP" \
            --admin "127.0.0.1:$T_ADMIN" --server-pid "tambun=$TAMBUN_PID" \
            --participants "$n" --room-size "$ROOM_SIZE" --talkers-pct "$TALKERS_PCT" --min-talkers "$MIN_TALKERS" \
            --duration "$DURATION" --warmup "$WARMUP" --join-budget 30 \
            --video-pps "$pps" --video-bytes "$VIDEO_BYTES" \
            2>"$TMP/$n-$pps.err" | tee -a "$OUT" | grep '^RESULT' || true)
        grep -E "^tambun:" "$TMP/$n-$pps.err" >&2 || true
        grep -vE "^tambun:" "$TMP/$n-$pps.err" | head -5 >&2 || true
        [[ -n "$line" ]] || echo "no RESULT for $n participants at $pps pps" >&2
        kill -0 "$TAMBUN_PID" 2>/dev/null || { echo "tambun died" >&2; tail -20 "$TMP/tambun.log" >&2; exit 5; }
        sleep 2
    done
done

python3 - "$OUT" <<'PY'
import sys
rows = []
for line in open(sys.argv[1]):
    if line.startswith("RESULT "):
        rows.append(dict(x.split("=", 1) for x in line.split()[1:] if "=" in x))
f = lambda r, k: float(r.get(k, "nan"))
print("\n%5s %5s %5s %9s %10s %7s %7s %12s %8s %8s %6s %10s %8s  %s" % ("N", "rooms", "pps", "video in", "video out",
      "out/exp", "CPU %", "out/core", "v loss %", "a loss %", "PLIs", "room fwd/s", "client%", ""))
for r in rows:
    n = int(r["participants"])
    bad = []
    if int(r["joined"]) != n or r["join_failed"] != "0":
        bad.append("joins")
    if f(r, "video_out_rate") < 0.99 or f(r, "video_loss_pct") > 1 or int(r["video_receiving"]) != n:
        bad.append("video")
    if f(r, "loss_pct") > 1 or f(r, "rate") < 0.99:
        bad.append("audio")
    note = ("FAIL " + ",".join(bad)) if bad else ""
    if f(r, "client_cpu_pct") >= 90 or f(r, "send_lag_p99_ms") > 5:
        note += " client-bound"
    print("%5d %5s %5s %9.0f %10.0f %7.3f %7.1f %12.0f %8.3f %8.3f %6s %10.0f %8.1f  %s" % (n, r["rooms"], r["video_pps"],
          f(r, "video_in_pps"), f(r, "video_out_pps"), f(r, "video_out_rate"), f(r, "server_cpu_pct"),
          f(r, "video_per_core"), f(r, "video_loss_pct"), f(r, "loss_pct"), r["plis"], f(r, "srv_forwarded_pps"),
          f(r, "client_cpu_pct"), note.strip()))
if rows:
    top = max(rows, key=lambda r: f(r, "video_out_pps"))
    print("\nRESULT video_room most_out_pps=%.0f at N=%s pps=%s: server CPU %.1f %%, %.0f video packets out per core-second" % (
          f(top, "video_out_pps"), top["participants"], top["video_pps"], f(top, "server_cpu_pct"), f(top, "video_per_core")))
PY
echo "tambun RSS at the end: $(rss_kib "$TAMBUN_PID") KiB; WARN/ERROR lines in its log: $(grep -cE 'WARN|ERROR' "$TMP/tambun.log" || true)"
cp "$OUT" "${RESULTS_COPY:-/dev/null}" 2>/dev/null || true
