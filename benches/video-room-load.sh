#!/usr/bin/env bash
# benches/video-room-load.sh — video rooms (Tambun's SFU, issue 12): video packets forwarded
# per second per core, with real sockets, by the load client benches/conference_load.rs
# (`cargo bench --bench conference_load -- tambun … --video-pps N`), and the same video load on
# Janus 1.1 VideoRoom in the same run (`… -- janus-video …`).
#
# Both servers run at once on CPU 1 (SERVER_CPUS), the load client on CPU 0 (CLIENT_CPUS), all
# SCHED_RR at priority RT as in conference-load.sh. Tambun: `serve` with a temporary DB
# (extensions 10000.. / pwN in a bench OPD) and a temporary dialplan whose province.toml has the
# shipped settings but only bench rooms 8000.. (max = ROOM_SIZE, video_mbps = 1000, so the
# room's egress budget does not cap N). Janus: a temporary config dir (only the HTTP transport
# on 127.0.0.1:J_HTTP and the VideoRoom plugin; no event handlers, loggers, recording, STUN or
# NAT settings). For each video rate in PPS and each N in STEPS, one after the other:
#   tambun        N participants join (rooms of at most ROOM_SIZE, TALKERS_PCT % of each room
#                 talking, at least MIN_TALKERS) by INVITE; each sends 20 ms PCMU frames and, on
#                 a video line of its own (one VP8 m-line, rtcp-mux), VIDEO_BYTES-byte VP8
#                 packets at the rate (a keyframe every 2 s of packets and after each PLI) for
#                 WARMUP + DURATION s, and leaves. Each video line is one slot: the room sends
#                 it the camera of whoever spoke last (the one before that to the last talker).
#   tambun-audio  the same participants with audio only (once per N): what mixing their audio
#                 costs Tambun, to tell its video cost apart (AUDIO_BASE=0: not run).
#   janus         N participants are VideoRoom remote publishers (plain RTP in, the same VP8
#                 packets, no audio); each gets the camera of its room's first talker (the
#                 first talker the second's) by an `rtp_forward` (plain RTP out): the same N
#                 subscribed streams, N − 1 from one publisher and 1 from another.
# Either way the server should send N × rate video packets a second.
# Prints a table (video in/out pps as the participants sent / received them in the window, out
# / expected, server CPU %, video packets out per core = out pps / (CPU s / wall s), subscribed
# streams per core, video loss from each stream's sequence numbers, PLIs, the client's CPU) and
# RATIO lines: Tambun / Janus per core, video packets out and subscribed streams, all-in and
# with Tambun's audio-only CPU taken off. ~20 s a step and server.
# Env: STEPS, PPS, ROOM_SIZE, TALKERS_PCT, MIN_TALKERS, VIDEO_BYTES, DURATION, WARMUP, RT (0:
# off, then niceness NICE), SERVER_CPUS, CLIENT_CPUS, SKIP_BUILD=1, BIN and LOAD (the switch and
# the client, already built: no cargo), NO_JANUS=1, AUDIO_BASE=0, ALLOW_OTHERS=1, KEEP_TMP=1,
# RESULTS_COPY=FILE (the raw RESULT lines). Needs python3, and janus (Debian: apt-get install -y
# janus) unless NO_JANUS=1. Method and one run's numbers: docs/bench-conference.md ("Video
# rooms (SFU)" and "Video rooms: Tambun's SFU next to Janus VideoRoom").
. "$(dirname "$0")/lib.sh"
alone_or_exit
STEPS="${STEPS:-10 20 43}" PPS="${PPS:-30 100 300}"
ROOM_SIZE="${ROOM_SIZE:-50}" TALKERS_PCT="${TALKERS_PCT:-10}" MIN_TALKERS="${MIN_TALKERS:-3}"
VIDEO_BYTES="${VIDEO_BYTES:-1100}" DURATION="${DURATION:-5}" WARMUP="${WARMUP:-3}"
SERVER_CPUS="${SERVER_CPUS:-1}" CLIENT_CPUS="${CLIENT_CPUS:-0}"
NICE="${NICE:--10}" RT="${RT:-10}"
PRIO=(nice -n "$NICE")
[[ "$RT" != 0 ]] && PRIO=(chrt -r "$RT")
# Relay ports below the tests' band (18000-32000); a participant takes four (audio and video,
# RTP and RTCP). Janus's HTTP port is not conference-load.sh's (8198); its remote publishers
# and forwarders bind ports the kernel picks (1.1.2's VideoRoom has no port range setting).
T_SIP=5070 T_ADMIN=8970 T_RTP=10000-17999 J_HTTP=8199 J_RTP=61000-64999
AUDIO_BASE="${AUDIO_BASE:-1}"
for p in $T_SIP $T_ADMIN $J_HTTP; do
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

if [[ "${NO_JANUS:-0}" != 1 ]]; then
    # No rooms in the file (the client creates them), no admin key: rtp_forward is not locked.
    start_janus videoroom 'general: { events = false }'
    log "janus pid $JANUS_PID (janus $(dpkg-query -W -f '${Version}' janus 2>/dev/null)): http://127.0.0.1:$J_HTTP/janus, VideoRoom only"
fi

OUT="$TMP/results.txt"; : >"$OUT"
# step LABEL N PPS ARGS... : one run of the load client; its RESULT line goes to $OUT.
step() {
    local label=$1 n=$2 pps=$3 line
    shift 3
    log "$label: $n participants, video $pps pps"
    line=$(timeout -k 5 120 "${CLIENT[@]}" "$@" --label "$label" --participants "$n" --room-size "$ROOM_SIZE" \
        --talkers-pct "$TALKERS_PCT" --min-talkers "$MIN_TALKERS" --duration "$DURATION" --warmup "$WARMUP" \
        --join-budget 30 2>"$TMP/$label-$n-$pps.err" | tee -a "$OUT" | grep '^RESULT' || true)
    grep -E "^$label:" "$TMP/$label-$n-$pps.err" >&2 || true
    grep -vE "^$label:" "$TMP/$label-$n-$pps.err" | head -5 >&2 || true
    [[ -n "$line" ]] || echo "no RESULT for $label, $n participants at $pps pps" >&2
    kill -0 "$TAMBUN_PID" 2>/dev/null || { echo "tambun died" >&2; tail -20 "$TMP/tambun.log" >&2; exit 5; }
    if [[ -n "${JANUS_PID:-}" ]] && ! kill -0 "$JANUS_PID" 2>/dev/null; then
        echo "janus died" >&2; tail -20 "$J/janus.log" >&2; exit 5
    fi
    sleep 2
}
T=(tambun --sip "127.0.0.1:$T_SIP" --admin "127.0.0.1:$T_ADMIN" --server-pid "tambun=$TAMBUN_PID")
declare -A AUDIO_DONE=()
for pps in $PPS; do
    for n in $STEPS; do
        step tambun "$n" "$pps" "${T[@]}" --video-pps "$pps" --video-bytes "$VIDEO_BYTES"
        if [[ "$AUDIO_BASE" == 1 && -z "${AUDIO_DONE[$n]:-}" ]]; then
            step tambun-audio "$n" 0 "${T[@]}"
            AUDIO_DONE[$n]=1
        fi
        if [[ -n "${JANUS_PID:-}" ]]; then
            step janus "$n" "$pps" janus-video --http "127.0.0.1:$J_HTTP" --server-pid "janus=$JANUS_PID" \
                --video-pps "$pps" --video-bytes "$VIDEO_BYTES"
        fi
    done
done

python3 - "$OUT" <<'PY'
import sys
rows = []
for line in open(sys.argv[1]):
    if line.startswith("RESULT "):
        rows.append(dict(x.split("=", 1) for x in line.split()[1:] if "=" in x))
f = lambda r, k: float(r.get(k, "nan"))
def problems(r):
    n, bad = int(r["participants"]), []
    if int(r["joined"]) != n or r["join_failed"] != "0":
        bad.append("joins")
    if "video_pps" in r and (f(r, "video_out_rate") < 0.99 or f(r, "video_loss_pct") > 1
                             or int(r["video_receiving"]) != n):
        bad.append("video")
    if int(r.get("audio_lines", n)) > 0 and (f(r, "loss_pct") > 1 or f(r, "rate") < 0.99):
        bad.append("audio")
    return bad
core = lambda r: f(r, "server_cpu_pct") / 100  # cores busy on average over the window
print("\n%-12s %5s %5s %4s %9s %10s %7s %6s %9s %6s %9s %7s %7s %5s %7s  %s" % ("server", "N", "rooms", "pps",
      "video in", "video out", "out/exp", "CPU %", "out/core", "subs", "subs/core", "v loss%", "a loss%", "PLIs",
      "client%", ""))
ok = {}
for r in rows:
    bad = problems(r)
    note = ("FAIL " + ",".join(bad)) if bad else ""
    if f(r, "client_cpu_pct") >= 90 or f(r, "send_lag_p99_ms") > 5:
        note += " client-bound"
    video = "video_pps" in r
    subs = int(r.get("srv_subscriptions", "-1")) if video else -1
    print("%-12s %5s %5s %4s %9s %10s %7s %6.1f %9s %6s %9s %7s %7s %5s %7.1f  %s" % (r["label"], r["participants"],
          r["rooms"], r.get("video_pps", "-"),
          "%.0f" % f(r, "video_in_pps") if video else "-", "%.0f" % f(r, "video_out_pps") if video else "-",
          "%.3f" % f(r, "video_out_rate") if video else "-", f(r, "server_cpu_pct"),
          "%.0f" % f(r, "video_per_core") if video else "-", subs if subs >= 0 else "-",
          "%.0f" % (subs / core(r)) if subs >= 0 and core(r) > 0 else "-",
          "%.3f" % f(r, "video_loss_pct") if video else "-",
          "%.3f" % f(r, "loss_pct") if int(r.get("audio_lines", 1)) > 0 else "-",
          r.get("plis", "-"), f(r, "client_cpu_pct"), note.strip()))
    if not bad:
        ok[(r["label"], r["participants"], r.get("video_pps", "0"))] = r
# Tambun / Janus at each step both passed. all-in: Tambun's whole CPU (audio mixing, SIP,
# timers included); video: Tambun's CPU less its audio-only run of the same N.
print("\n%5s %4s %12s %12s %12s %7s %11s %11s %7s %12s %7s" % ("N", "pps", "tambun out/c", "janus out/c",
      "tambun CPU %", "audio %", "video CPU %", "video out/c", "ratio", "ratio video", "subs r"))
best = None
for (label, n, pps), t in ok.items():
    j = ok.get(("janus", n, pps))
    if label != "tambun" or j is None:
        continue
    a = ok.get(("tambun-audio", n, "0"))
    vcore = core(t) - core(a) if a else float("nan")
    vpc = f(t, "video_out_pps") / vcore if vcore > 0 else float("nan")
    subs_t, subs_j = int(t["srv_subscriptions"]), int(j["srv_subscriptions"])
    sr = (subs_t / core(t)) / (subs_j / core(j)) if subs_j > 0 and core(t) > 0 else float("nan")
    ratio = f(t, "video_per_core") / f(j, "video_per_core")
    print("%5s %4s %12.0f %12.0f %12.1f %7s %11s %11s %7.2f %12s %7.2f" % (n, pps, f(t, "video_per_core"),
          f(j, "video_per_core"), f(t, "server_cpu_pct"), "%.1f" % f(a, "server_cpu_pct") if a else "-",
          "%.1f" % (100 * vcore) if a else "-", "%.0f" % vpc if a else "-", ratio,
          "%.2f" % (vpc / f(j, "video_per_core")) if a else "-", sr))
    if best is None or f(t, "video_out_pps") > f(best[0], "video_out_pps"):
        best = (t, j, a, vpc, sr, ratio)
for label in ("tambun", "janus"):
    mine = [r for (l, _, _), r in ok.items() if l == label]
    if mine:
        top = max(mine, key=lambda r: f(r, "video_out_pps"))
        print("RESULT %s most_out_pps=%.0f at N=%s pps=%s: server CPU %.1f %%, %.0f video packets out per core-second, %s subscribed streams" % (
              label, f(top, "video_out_pps"), top["participants"], top["video_pps"], f(top, "server_cpu_pct"),
              f(top, "video_per_core"), top["srv_subscriptions"]))
if best:
    t, j, a, vpc, sr, ratio = best
    print("RATIO tambun/janus video_out_per_core (N=%s, %s pps, the largest step both passed; Tambun all-in) = %.2f (%.0f / %.0f)" % (
          t["participants"], t["video_pps"], ratio, f(t, "video_per_core"), f(j, "video_per_core")))
    if a:
        print("RATIO tambun/janus video_out_per_core (same step; Tambun's audio-only CPU at N=%s taken off) = %.2f (%.0f / %.0f)" % (
              t["participants"], vpc / f(j, "video_per_core"), vpc, f(j, "video_per_core")))
    print("RATIO tambun/janus subscribed_streams_per_core (same step; all-in) = %.2f (%.0f / %.0f)" % (
          sr, int(t["srv_subscriptions"]) / core(t), int(j["srv_subscriptions"]) / core(j)))
PY
echo "tambun RSS at the end: $(rss_kib "$TAMBUN_PID") KiB; WARN/ERROR lines in its log: $(grep -cE 'WARN|ERROR' "$TMP/tambun.log" || true)"
[[ -n "${JANUS_PID:-}" ]] && kill -0 "$JANUS_PID" 2>/dev/null &&
    echo "janus RSS at the end: $(rss_kib "$JANUS_PID") KiB; ERR lines in its log: $(grep -c 'ERR' "$J/janus.log" || true)"
cp "$OUT" "${RESULTS_COPY:-/dev/null}" 2>/dev/null || true
