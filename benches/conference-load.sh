#!/usr/bin/env bash
# benches/conference-load.sh — conference mixing (issue 12): Tambun's rooms next to Janus 1.1
# AudioBridge on the same load, in one run, with the load client benches/conference_load.rs
# (`cargo bench --bench conference_load -- tambun|janus …`).
#
# Both servers run at once on CPU 1 (SERVER_CPUS), the load client on CPU 0 (CLIENT_CPUS).
# Tambun: `serve` with a temporary DB (extensions 10000.. / pwN in a bench OPD) and a temporary
# dialplan whose province.toml has the shipped settings but only bench rooms 8000.. (max =
# ROOM_SIZE). Janus: a temporary config dir (only the HTTP transport, on 127.0.0.1:J_HTTP,
# only the AudioBridge plugin, plain-RTP ports on 127.0.0.1, no event handlers, loggers,
# recording, STUN or NAT settings). For each N in STEPS, Tambun then Janus: N participants join
# (rooms of at most ROOM_SIZE, TALKERS_PCT % of each room talking, at least 3), send 20 ms
# PCMU frames for WARMUP + DURATION s, leave. A server stops at the first step it fails
# (received-packet loss > 1 %, the packet rate short by > 1 %, a participant that does not
# hear the talkers, or a failed join, or joins that take longer than JOIN_BUDGET s); a failing
# step is run again RETRIES times first unless the server used >= 90 % of its core.
# Prints one table and RESULT/RATIO lines (participants per core of each server and their
# ratio, join time p50/p95; "client-bound" marks a step where the load client itself used
# >= 90 % of its core or sent late). ~4 min. CODEC=opus: every participant speaks Opus instead
# (32 kbps packets encoded from 48 kHz audio, a browser's default, or from OPUS_CAPTURE=8000
# Hz, a browser that honours Tambun's maxplaybackrate=8000; Janus rooms stay at 8 kHz, as
# Tambun's mix). Env: CODEC, OPUS_CAPTURE, STEPS, ROOM_SIZE, TALKERS_PCT, MIN_TALKERS,
# DURATION, WARMUP, RETRIES, JOIN_BUDGET, RT (SCHED_RR priority of servers and client; 0: off,
# then niceness NICE), SERVER_CPUS, CLIENT_CPUS, SKIP_BUILD=1, BIN and LOAD (tambun and the load client, built
# before: no cargo), NO_JANUS=1, ALLOW_OTHERS=1 (measure even beside another load script),
# KEEP_TMP=1,
# RESULTS_COPY=FILE (the raw RESULT lines). Needs: janus (Debian: apt-get install -y janus),
# python3. Method and one run's numbers: docs/bench-conference.md.
. "$(dirname "$0")/lib.sh"
alone_or_exit
STEPS="${STEPS:-50 100 200 400 800 1200 1600 2400 3200}"
ROOM_SIZE="${ROOM_SIZE:-500}" TALKERS_PCT="${TALKERS_PCT:-10}" MIN_TALKERS="${MIN_TALKERS:-3}"
CODEC="${CODEC:-pcmu}" OPUS_CAPTURE="${OPUS_CAPTURE:-48000}"
DURATION="${DURATION:-5}" WARMUP="${WARMUP:-2}" RETRIES="${RETRIES:-1}" JOIN_BUDGET="${JOIN_BUDGET:-45}"
SERVER_CPUS="${SERVER_CPUS:-1}" CLIENT_CPUS="${CLIENT_CPUS:-0}"
NICE="${NICE:--10}" RT="${RT:-10}"
# The machine is shared: servers and client run SCHED_RR at priority RT (as webrtc-load.sh),
# so other work cannot preempt them; the kernel's RT throttle (95 %) bounds them.
PRIO=(nice -n "$NICE")
[[ "$RT" != 0 ]] && PRIO=(chrt -r "$RT")
# Relay ports: Tambun's below the tests' band (18000-32000), Janus's above the kernel's ephemeral
# range (32768-60999); each participant takes two (RTP, RTCP) on either server.
T_SIP=5068 T_ADMIN=8968 T_RTP=10000-17999 J_HTTP=8198 J_RTP=61000-64999
for p in $T_SIP $T_ADMIN $J_HTTP; do
    if ss -Hlntu | awk '{print $5}' | grep -q ":$p\$"; then echo "port $p is busy" >&2; exit 2; fi
done
MAX_N=0
for n in $STEPS; do ((n > MAX_N)) && MAX_N=$n; done
((MAX_N <= 4000)) || { echo "at most 4000 participants (the relay port ranges)" >&2; exit 2; }
((ROOM_SIZE >= 2 && ROOM_SIZE <= 500)) || { echo "ROOM_SIZE must be 2-500 (a room's max in the dialplan)" >&2; exit 2; }

if [[ "${NO_JANUS:-0}" != 1 ]] && ! command -v janus >/dev/null; then
    echo "janus is missing: apt-get update && apt-get install -y janus (or NO_JANUS=1)" >&2
    exit 2
fi

conference_binaries
CLIENT=("${PRIO[@]}" taskset -c "$CLIENT_CPUS" "$LOAD_CLIENT")
SERVER=("${PRIO[@]}" taskset -c "$SERVER_CPUS")

ROOMS=$(((MAX_N + ROOM_SIZE - 1) / ROOM_SIZE))
start_room_switch "$ROOMS" "$ROOM_SIZE" "$MAX_N" "$T_SIP" "$T_ADMIN" "$T_RTP"
log "tambun pid $TAMBUN_PID: sip udp 127.0.0.1:$T_SIP, admin 127.0.0.1:$T_ADMIN, relay $T_RTP, $ROOMS room(s) of at most $ROOM_SIZE"
TARGETS=(tambun)
T_ARGS=(tambun --label tambun --sip "127.0.0.1:$T_SIP" --admin "127.0.0.1:$T_ADMIN" --server-pid "tambun=$TAMBUN_PID")

if [[ "${NO_JANUS:-0}" != 1 ]]; then
    start_janus audiobridge "general: { rtp_port_range = \"$J_RTP\" local_ip = \"127.0.0.1\" events = false }"
    log "janus pid $JANUS_PID (janus $(dpkg-query -W -f '${Version}' janus 2>/dev/null)): http://127.0.0.1:$J_HTTP/janus, plain RTP $J_RTP"
    TARGETS+=(janus)
    J_ARGS=(janus --label janus --http "127.0.0.1:$J_HTTP" --server-pid "janus=$JANUS_PID")
fi
args_of() { if [[ "$1" == tambun ]]; then echo "${T_ARGS[@]}"; else echo "${J_ARGS[@]}"; fi; }
OUT="$TMP/results.txt"; : >"$OUT"

pass() { # RESULT line -> 0 when the step passes
    awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END { n = v["participants"] + 0
              ok = v["joined"] == n && v["join_failed"] == 0 && v["no_rtp"] == 0 && v["silent"] == 0 &&
                   v["hearing"] == n && v["loss_pct"] <= 1 && v["rate"] >= 0.99
              exit ok ? 0 : 1 }' <<<"$1"
}
declare -A DONE=()
for n in $STEPS; do
    for t in "${TARGETS[@]}"; do
        [[ -n "${DONE[$t]:-}" ]] && continue
        ok=0
        for try in $(seq 0 "$RETRIES"); do
            log "$t: $n participants (try $((try + 1)))"
            # shellcheck disable=SC2046 # args_of prints a flag list
            line=$(timeout -k 5 240 "${CLIENT[@]}" $(args_of "$t") --participants "$n" --room-size "$ROOM_SIZE" \
                --codec "$CODEC" --opus-capture "$OPUS_CAPTURE" --talkers-pct "$TALKERS_PCT" --min-talkers "$MIN_TALKERS" --duration "$DURATION" --warmup "$WARMUP" --join-budget "$JOIN_BUDGET" \
                2>"$TMP/$t-$n-$try.err" | tee -a "$OUT" | grep '^RESULT' || true)
            grep -E "^$t:" "$TMP/$t-$n-$try.err" >&2 || true
            grep -vE "^$t:" "$TMP/$t-$n-$try.err" | head -5 >&2 || true
            if [[ -n "$line" ]] && pass "$line"; then ok=1; break; fi
            # A server that used >= 90 % of its core failed on its own: no retry for noise.
            cpu=$(grep -o 'server_cpu_pct=[0-9.]*' <<<"$line" | cut -d= -f2)
            awk -v c="${cpu:-0}" 'BEGIN { exit c >= 90 ? 0 : 1 }' && break
            sleep 2
        done
        [[ "$ok" == 1 ]] || DONE[$t]="stopped at $n"
        kill -0 "$TAMBUN_PID" 2>/dev/null || { echo "tambun died" >&2; tail -20 "$TMP/tambun.log" >&2; exit 5; }
        if [[ -n "${JANUS_PID:-}" ]] && ! kill -0 "$JANUS_PID" 2>/dev/null; then
            echo "janus died" >&2; tail -20 "$J/janus.log" >&2; DONE[janus]="died at $n"
        fi
        sleep 2
    done
    [[ "${#DONE[@]}" -ge "${#TARGETS[@]}" ]] && break
done

python3 - "$OUT" <<'PY'
import sys
rows = []
for line in open(sys.argv[1]):
    if line.startswith("RESULT "):
        rows.append(dict(x.split("=", 1) for x in line.split()[1:] if "=" in x))
f = lambda r, k: float(r.get(k, "nan"))
def ok(r):
    n = int(r["participants"])
    return (int(r["joined"]) == n and r["join_failed"] == "0" and r["no_rtp"] == "0" and r["silent"] == "0"
            and int(r["hearing"]) == n and f(r, "loss_pct") <= 1 and f(r, "rate") >= 0.99)
print("\n%-7s %5s %5s %7s %8s %6s %9s %7s %9s %9s %9s %8s  %s" % ("server", "N", "rooms", "talkers", "loss %",
      "rate", "hear", "CPU %", "part/core", "join p50", "join p95", "client%", ""))
best, last = {}, {}
for r in rows:
    good = ok(r)
    print("%-7s %5s %5s %7s %8.3f %6.3f %4s/%-4s %7.1f %9.0f %9.1f %9.1f %8.1f  %s" % (r["label"], r["participants"],
          r["rooms"], r["talkers"], f(r, "loss_pct"), f(r, "rate"), r["hearing"], r["participants"],
          f(r, "server_cpu_pct"), f(r, "per_core"), f(r, "join_p50_ms"), f(r, "join_p95_ms"), f(r, "client_cpu_pct"),
          ("" if good else "FAIL") + (" client-bound" if f(r, "client_cpu_pct") >= 90 or f(r, "send_lag_p99_ms") > 5 else "")))
    if good:
        n = int(r["participants"])
        if r["label"] not in best or n > int(best[r["label"]]["participants"]):
            best[r["label"]] = r
        last.setdefault(r["label"], {})[n] = r
print()
for label, r in best.items():
    print("RESULT %s max_passing_participants=%s per_core=%.0f cpu_pct=%.1f join_p50_ms=%.1f join_p95_ms=%.1f" % (
          label, r["participants"], f(r, "per_core"), f(r, "server_cpu_pct"), f(r, "join_p50_ms"), f(r, "join_p95_ms")))
if "tambun" in best and "janus" in best:
    t, j = best["tambun"], best["janus"]
    print("RATIO tambun/janus participants_per_core (each at its largest passing step: %s / %s) = %.2f (%.0f / %.0f)" % (
          t["participants"], j["participants"], f(t, "per_core") / f(j, "per_core"), f(t, "per_core"), f(j, "per_core")))
    common = sorted(set(last["tambun"]) & set(last["janus"]))
    if common:
        n = common[-1]
        a, b = last["tambun"][n], last["janus"][n]
        print("RATIO tambun/janus participants_per_core (same load, N=%d) = %.2f (%.0f / %.0f); server CPU %.1f %% / %.1f %%" % (
              n, f(a, "per_core") / f(b, "per_core"), f(a, "per_core"), f(b, "per_core"),
              f(a, "server_cpu_pct"), f(b, "server_cpu_pct")))
    print("RATIO tambun/janus max_passing_participants = %.2f (%s / %s)" % (
          int(t["participants"]) / int(j["participants"]), t["participants"], j["participants"]))
PY
for t in "${TARGETS[@]}"; do echo "$t: ${DONE[$t]:-passed every step}"; done
echo "tambun RSS at the end: $(rss_kib "$TAMBUN_PID") KiB; WARN/ERROR lines in its log: $(grep -cE 'WARN|ERROR' "$TMP/tambun.log" || true)"
[[ -n "${JANUS_PID:-}" ]] && kill -0 "$JANUS_PID" 2>/dev/null &&
    echo "janus RSS at the end: $(rss_kib "$JANUS_PID") KiB; ERR lines in its log: $(grep -c 'ERR' "$J/janus.log" || true)"
cp "$OUT" "${RESULTS_COPY:-/dev/null}" 2>/dev/null || true
