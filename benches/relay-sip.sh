#!/usr/bin/env bash
# benches/relay-sip.sh — the RTP relay set up by real SIP calls, in one run: Tambun (its relay
# anchoring the media of calls it routes) next to Kamailio + rtpengine (userspace), both driven
# by ../shared/peers/rtp-relay-bench in `cmd` mode with `sip_alloc.py`: for each of N calls a
# callee registers, a caller INVITEs it with digest auth, the proxy rewrites both SDPs to relay
# ports, then 2 G.711 streams per call (172-byte RTP every 20 ms) flow through the relay for
# DURATION s. Unlike benches/relay-compare.sh (the relay engine alone, ports allocated
# directly), this measures the relay as phones reach it: ports opened by the proxy.
#
# Tambun runs with one forwarding thread, pinned to CPU 1 like rtpengine (1 thread) with
# Kamailio; the generator is on CPU 0. RELAY_PID is the whole tambun process (signalling is
# idle while the media flows); for the other, rtpengine only.
# Prints each sweep's table and RESULT lines, then the ratios Tambun / rtpengine.
# Env: CALLS (steps, ≤ 1000: sip_alloc's users 1000..1999), DURATION (s/step), SKIP_BUILD=1,
#      NO_RTPENGINE=1, KEEP_TMP=1.
. "$(dirname "$0")/lib.sh"
build_release
export CALLS="${CALLS:-200 400 800 1000}" DURATION="${DURATION:-6}"
PORT=5064 ADMIN=8964

users_csv 1000 1999 "$ROOT/dialplan" >"$TMP/users.csv"
"$TAMBUN" --db "$TMP/t.db" --dialplan "$ROOT/dialplan" ext import "$TMP/users.csv" >/dev/null
BENCH_TOML='[media]\nthreads = 1' TAMBUN_EXTRA="--rtp-ports 30000-39999" \
    start_tambun "$PORT" "$ADMIN" "$TMP/t.db" "$ROOT/dialplan" 1

cd "$PEERS"
sweep() { "$@" 2>&1 | grep -E '^(calls|[0-9]|RESULT|added)'; }

log "Tambun (pid $TAMBUN_PID) on 127.0.0.1:$PORT, relay ports 30000-39999"
RELAY_PID=$TAMBUN_PID sweep ./rtp-relay-bench cmd "./sip_alloc.py 127.0.0.1:$PORT" | tee "$TMP/tambun.out"
left=$(curl -s "http://127.0.0.1:$ADMIN/api/relay" || echo '?')
echo "tambun after the sweep: /api/relay $left"
kill -TERM "$TAMBUN_PID"

if [[ "${NO_RTPENGINE:-0}" != 1 ]]; then
    for c in kamailio rtpengine; do
        command -v "$c" >/dev/null || { echo "$c missing (apt-get install kamailio rtpengine-daemon), or NO_RTPENGINE=1" >&2; exit 2; }
    done
    RTPE_PIDFILE="$TMP/rtpe.pid" "$PEERS/baseline/rtpengine-run.sh" </dev/null >"$TMP/rtpengine.log" 2>&1 &
    PIDS+=("$!")
    sleep 1
    SERVER_CPUS=1 WITH_RTPENGINE=1 KAM_DIR="$TMP/kamailio" "$PEERS/baseline/kamailio-run.sh" \
        </dev/null >"$TMP/kamailio.log" 2>&1 &
    PIDS+=("$!")
    for _ in $(seq 1 50); do python3 "$PEERS/sip_ping.py" 127.0.0.1 5070 >/dev/null 2>&1 && break; sleep 0.2; done
    log "Kamailio on 127.0.0.1:5070 + rtpengine (pid $(cat "$TMP/rtpe.pid"))"
    RELAY_PID="$(cat "$TMP/rtpe.pid")" sweep ./rtp-relay-bench cmd "./sip_alloc.py 127.0.0.1:5070" | tee "$TMP/rtpe.out"
fi

# RESULT rtp_relay(<kind>) ... max_calls=N ... : the ratio of max_calls per kind
if [[ -f "$TMP/rtpe.out" ]]; then
    for kind in $(sed -n 's/^RESULT rtp_relay(\([^)]*\)).*/\1/p' "$TMP/tambun.out" | sort -u); do
        a=$(sed -n "s/^RESULT rtp_relay($kind).* max_calls=\([0-9]*\).*/\1/p" "$TMP/tambun.out" | head -1)
        b=$(sed -n "s/^RESULT rtp_relay($kind).* max_calls=\([0-9]*\).*/\1/p" "$TMP/rtpe.out" | head -1)
        awk -v k="$kind" -v a="$a" -v b="$b" \
            'BEGIN { if (b > 0) printf "RATIO tambun/rtpengine max_calls (%s) = %.2f (%s / %s)\n", k, a / b, a, b }'
    done
fi
