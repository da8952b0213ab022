#!/usr/bin/env bash
# benches/webrtc-load.sh — WebRTC (WS + ICE + DTLS-SRTP) ↔ G.711 desk-phone calls, Tambun next to
# Kamailio 5.6 + rtpengine 10.5 bridging the same calls, in one run, with the load client
# benches/webrtc_load.rs (`cargo bench --bench webrtc_load -- …`).
#
# Both switches run at once on CPU 1 (Tambun: `serve --ws-listen`; Kamailio + rtpengine from
# ../shared/peers/webrtc/baseline with its flags), the load client on CPU 0. Then:
#  1. idle WS registrations: K flows registered and left idle; server memory before/after / K;
#  2. call sweep, alternating Tambun / Kamailio at each step (CALLS), until a side has loss
#     >= 0.1 % or p99 one-way latency >= 10 ms (either direction) or a call that fails;
#  3. DTLS burst: BURST calls set up (SIP), then all browsers start ICE + DTLS at once; the
#     server CPU over that burst / BURST = CPU per handshake.
# Prints a table and RESULT/RATIO lines. Env: CALLS, DURATION (s per step), WARMUP, K, BURST,
# NICE (niceness of servers and client, default -10: the machine is shared), RETRIES (a failing
# step is run again up to this many times, default 1; every try is in the table), SKIP_BUILD=1,
# NO_KAMAILIO=1, KEEP_TMP=1. Needs: kamailio kamailio-websocket-modules rtpengine-daemon.
. "$(dirname "$0")/lib.sh"
CALLS="${CALLS:-50 100 200 400 600 800 1000 1200 1600 2000}"
DURATION="${DURATION:-6}" WARMUP="${WARMUP:-1}" K="${K:-2000}" BURST="${BURST:-1000}"
NICE="${NICE:--10}" RETRIES="${RETRIES:-1}" RT="${RT:-10}"
# The machine is shared: servers and client run SCHED_RR at priority RT (0: off, niceness NICE
# only), so other work cannot preempt them; the kernel's RT throttle (95 %) bounds them.
PRIO=(nice -n "$NICE")
[[ "$RT" != 0 ]] && PRIO=(chrt -r "$RT")
T_SIP=5064 T_ADMIN=8964 T_WS=8090 K_SIP=5072 K_WS=8088
for p in $T_SIP $T_WS $K_SIP $K_WS 5077 5076 5096 5097; do
    if ss -Hlntu | awk '{print $5}' | grep -q ":$p\$"; then echo "port $p is busy" >&2; exit 2; fi
done

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$ROOT" && cargo build --release --quiet)
fi
LOAD="$(cd "$ROOT" && cargo build --release --bench webrtc_load --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "webrtc_load" and m.get("executable"):
        print(m["executable"])')"
[[ -x "$LOAD" ]] || { echo "cannot build benches/webrtc_load.rs" >&2; exit 2; }
CLIENT=("${PRIO[@]}" taskset -c 0 "$LOAD")

# Tambun: users 10000..19999 / pwN in one office (a temporary dialplan, as registration-memory.sh)
mkdir -p "$TMP/dialplan"
province_without_rooms "$TMP/dialplan"
printf 'code = "bench"\nname = "Benchmark office"\nblocks = ["10000-19999"]\nreception = "10000"\n' \
    >"$TMP/dialplan/bench.toml"
{ echo "number,opd,name,password"; for ((u = 10000; u <= 19999; u++)); do echo "$u,bench,User $u,pw$u"; done; } >"$TMP/users.csv"
"$TAMBUN" --db "$TMP/t.db" --dialplan "$TMP/dialplan" ext import "$TMP/users.csv" >/dev/null
printf '[guard]\nallow = ["127.0.0.0/8"]\n' >"$TMP/tambun.toml"
RUST_LOG=warn "${PRIO[@]}" taskset -c 1 "$TAMBUN" serve --config "$TMP/tambun.toml" \
    --listen "127.0.0.1:$T_SIP" --admin "127.0.0.1:$T_ADMIN" --db "$TMP/t.db" --dialplan "$TMP/dialplan" \
    --no-tls --no-web --ws-listen "127.0.0.1:$T_WS" --rtp-ports 10000-19999 \
    </dev/null >"$TMP/tambun.log" 2>&1 &
TAMBUN_PID=$!; PIDS+=("$TAMBUN_PID")
for _ in $(seq 1 50); do python3 "$PEERS/sip_ping.py" 127.0.0.1 "$T_SIP" >/dev/null 2>&1 && break; sleep 0.1; done
log "tambun pid $TAMBUN_PID: sip udp 127.0.0.1:$T_SIP, ws://127.0.0.1:$T_WS"
TARGETS=("tambun")
T_ARGS=(--label tambun --sip "127.0.0.1:$T_SIP" --ws "127.0.0.1:$T_WS" --server-pid "tambun=$TAMBUN_PID")

if [[ "${NO_KAMAILIO:-0}" != 1 ]]; then
    command -v kamailio >/dev/null && command -v rtpengine >/dev/null ||
        { echo "apt-get install kamailio kamailio-websocket-modules rtpengine-daemon, or NO_KAMAILIO=1" >&2; exit 2; }
    # The baseline's flags; 12,000 media ports (the script's 1,000 hold ~300 calls); log level 4
    # (warnings) so that per-call NOTICE lines do not cost rtpengine CPU.
    RTPE_LOGLEVEL=4 SERVER_CPUS=1 RTPE_PIDFILE="$TMP/rtpe.pid" "${PRIO[@]}" \
        "$PEERS/webrtc/baseline/rtpengine-run.sh" --port-min=20000 --port-max=32000 \
        </dev/null >"$TMP/rtpengine.log" 2>&1 &
    RTPE_PID=$!; PIDS+=("$RTPE_PID")
    sleep 1.5
    SERVER_CPUS=1 USERS=10000 FIRST=10000 KAM_DIR="$TMP/kamailio" "${PRIO[@]}" \
        "$PEERS/webrtc/baseline/kamailio-run.sh" </dev/null >"$TMP/kamailio.log" 2>&1 &
    KAM_PID=$!; PIDS+=("$KAM_PID")
    for _ in $(seq 1 50); do python3 "$PEERS/sip_ping.py" 127.0.0.1 "$K_SIP" >/dev/null 2>&1 && break; sleep 0.2; done
    log "kamailio pid $KAM_PID (sip udp 127.0.0.1:$K_SIP, ws://127.0.0.1:$K_WS) + rtpengine pid $RTPE_PID"
    TARGETS+=("kamailio")
    K_ARGS=(--label kamailio --sip "127.0.0.1:$K_SIP" --ws "127.0.0.1:$K_WS"
            --server-pid "kamailio=$KAM_PID" --server-pid "rtpengine=$RTPE_PID")
fi
args_of() { if [[ "$1" == tambun ]]; then echo "${T_ARGS[@]}"; else echo "${K_ARGS[@]}"; fi; }
phone_port() { if [[ "$1" == tambun ]]; then echo 5096; else echo 5097; fi; }
OUT="$TMP/results.txt"; : >"$OUT"

# 1. idle registrations (first, on fresh servers), users 12000.. (never called below)
for t in "${TARGETS[@]}"; do
    log "$t: $K idle WS registrations"
    # shellcheck disable=SC2046 # args_of prints a flag list
    "${CLIENT[@]}" idle-regs $(args_of "$t") --count "$K" --first 12000 | tee -a "$OUT"
done

# 2. call sweep, alternating
declare -A DONE=() BEST=()
pass() { # RESULT line -> 0 when the step passes
    awk -v n="$2" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END { ok = v["setup_failed"] == 0 && v["media_ok"] == n && v["silent"] == 0 &&
                   v["loss_b2p"] < 0.1 && v["loss_p2b"] < 0.1 && v["p99_b2p"] < 10 && v["p99_p2b"] < 10;
              exit ok ? 0 : 1 }' <<<"$1"
}
for n in $CALLS; do
    for t in "${TARGETS[@]}"; do
        [[ -n "${DONE[$t]:-}" ]] && continue
        ok=0
        for try in $(seq 0 "$RETRIES"); do
            log "$t: $n calls (try $((try + 1)))"
            # shellcheck disable=SC2046
            line=$(timeout -k 5 300 "${CLIENT[@]}" calls $(args_of "$t") --calls "$n" --duration "$DURATION" \
                --warmup "$WARMUP" --phone-sip-port "$(phone_port "$t")" 2>"$TMP/$t-$n.err" | tee -a "$OUT" | grep '^RESULT' || true)
            grep -E '^(tambun|kamailio):' "$TMP/$t-$n.err" >&2 || true
            grep -vE '^(tambun|kamailio):|^answer' "$TMP/$t-$n.err" | head -5 >&2 || true
            if [[ -n "$line" ]] && pass "$line" "$n"; then ok=1; break; fi
            sleep 2
        done
        if [[ "$ok" == 1 ]]; then BEST[$t]="$line"; else DONE[$t]="stopped at $n"; fi
        kill -0 "$TAMBUN_PID" 2>/dev/null || { echo "tambun died" >&2; tail -20 "$TMP/tambun.log" >&2; exit 5; }
        sleep 2
    done
    [[ "$(printf "%s\n" "${DONE[@]:-}" | grep -c stopped)" -ge ${#TARGETS[@]} ]] && break
done

# 3. DTLS handshake burst
for t in "${TARGETS[@]}"; do
    log "$t: burst of $BURST ICE + DTLS handshakes"
    # shellcheck disable=SC2046
    timeout -k 5 300 "${CLIENT[@]}" calls $(args_of "$t") --calls "$BURST" --duration 1 --warmup 0 \
        --phone-sip-port "$(phone_port "$t")" 2>"$TMP/$t-burst.err" | sed 's/^RESULT /RESULT burst /' | tee -a "$OUT" >/dev/null
    grep -E '^(tambun|kamailio):' "$TMP/$t-burst.err" >&2 || true
    sleep 2
done

# Table and ratios.
python3 - "$OUT" "$(nproc)" <<'PY'
import sys
rows, idle, burst = [], {}, {}
for line in open(sys.argv[1]):
    if not line.startswith("RESULT "):
        continue
    f = line.split()
    kind = "burst" if f[1] == "burst" else None
    kv = dict(x.split("=", 1) for x in f[1:] if "=" in x)
    if "idle_ws_registrations" in kv:
        idle[kv["label"]] = kv
    elif kind:
        burst[kv["label"]] = kv
    else:
        rows.append(kv)
num = lambda kv, k: float(kv.get(k, "nan"))
print("\n%-9s %6s %6s %8s %8s %8s %8s %8s %8s %8s %8s %8s" % ("server", "calls", "media", "loss>ph%", "loss>br%",
      "p50 ms", "p99>ph", "p99>br", "CPU %", "rtpe %", "calls/c", "client%"))
best = {}
for r in rows:
    cpu = 100 * num(r, "cpu_total") / num(r, "wall")
    rtpe = 100 * num(r, "cpu_rtpengine") / num(r, "wall") if "cpu_rtpengine" in r else float("nan")
    ok = (r["setup_failed"] == "0" and r["media_ok"] == r["calls"] and r["silent"] == "0" and
          num(r, "loss_b2p") < 0.1 and num(r, "loss_p2b") < 0.1 and num(r, "p99_b2p") < 10 and num(r, "p99_p2b") < 10)
    print("%-9s %6s %6s %8.3f %8.3f %8.2f %8.2f %8.2f %8.1f %8.1f %8.0f %8.1f %s" % (r["label"], r["calls"], r["media_ok"],
          num(r, "loss_b2p"), num(r, "loss_p2b"), num(r, "p50_b2p"), num(r, "p99_b2p"), num(r, "p99_p2b"), cpu, rtpe,
          num(r, "calls_per_core"), num(r, "client_cpu_pct"), "" if ok else "FAIL"))
    if ok and (r["label"] not in best or int(r["calls"]) > int(best[r["label"]]["calls"])):
        best[r["label"]] = r
print()
for label, r in best.items():
    w = num(r, "wall")
    line = "RESULT %s max_passing_calls=%s calls_per_core=%.0f" % (label, r["calls"], num(r, "calls_per_core"))
    if "cpu_rtpengine" in r:
        line += " calls_per_core_rtpengine_alone=%.0f" % (int(r["calls"]) / (num(r, "cpu_rtpengine") / w))
    print(line)
if "tambun" in best and "kamailio" in best:
    t, k = best["tambun"], best["kamailio"]
    tc = num(t, "calls_per_core")
    kc = num(k, "calls_per_core")
    rc = int(k["calls"]) / (num(k, "cpu_rtpengine") / num(k, "wall"))
    print("RATIO tambun/(kamailio+rtpengine) calls_per_core = %.2f (%.0f / %.0f)" % (tc / kc, tc, kc))
    print("RATIO tambun/rtpengine-alone calls_per_core = %.2f (%.0f / %.0f)" % (tc / rc, tc, rc))
for label, b in burst.items():
    n = int(b["media_ok"])
    c = num(b, "connect_cpu_total")
    extra = ""
    if "connect_cpu_rtpengine" in b:
        extra = " (rtpengine alone %.3f ms)" % (1000 * num(b, "connect_cpu_rtpengine") / max(n, 1))
    print("RESULT %s dtls_burst=%d connected_in_s=%s connect_p99_ms=%s server_cpu_s=%.2f cpu_ms_per_handshake=%.3f%s "
          "handshakes_per_core_second=%.0f setup_cpu_ms_per_call=%.3f" % (label, n, b["connect_s"], b["connect_p99_ms"], c,
          1000 * c / max(n, 1), extra, n / c if c > 0 else float("inf"), 1000 * num(b, "setup_cpu_total") / int(b["calls"])))
for label, i in idle.items():
    per = {k: v for k, v in i.items() if k.startswith("bytes_per_reg")}
    print("RESULT %s idle_ws_registrations=%s %s" % (label, i["idle_ws_registrations"],
          " ".join("%s=%s" % kv for kv in per.items())))
PY
for t in "${TARGETS[@]}"; do echo "$t: ${DONE[$t]:-passed every step}"; done
echo "tambun RSS at the end: $(rss_kib "$TAMBUN_PID") KiB; warnings/errors in its log: $(grep -cE 'WARN|ERROR' "$TMP/tambun.log" || true)"
[[ -n "${RTPE_PID:-}" ]] && echo "rtpengine log ERR lines: $(grep -c 'ERR' "$TMP/rtpengine.log" || true)"
cp "$OUT" "${RESULTS_COPY:-/dev/null}" 2>/dev/null || true
