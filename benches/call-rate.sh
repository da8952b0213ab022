#!/usr/bin/env bash
# benches/call-rate.sh — calls/s with digest auth and setup time, Tambun next to Kamailio, in
# one run, with ../shared/peers/call-rate.sh (INVITE → 407 → INVITE with credentials →
# 100/180/200 → ACK → 1 s hold → BYE).
#
# Both servers are pinned to CPU 1 and SIPp to CPU 0; both get the users 1000..1999 / pwN and
# the same sweep. Prints each server's RESULT lines and the ratios Tambun / Kamailio.
# MEDIA=0 (default): Tambun with --no-media against Kamailio alone (signalling only).
# MEDIA=1: Tambun anchoring media in its relay against Kamailio + rtpengine (userspace), both
#          servers on CPU 1 (rtpengine-daemon needed).
# Env: RATES (call-rate.sh steps), PRECISE (tshark timing of the first step, default 1 when
# tshark is installed), SKIP_BUILD=1, NO_KAMAILIO=1, KEEP_TMP=1.
. "$(dirname "$0")/lib.sh"
build_release
export RATES="${RATES:-100 250 500 1000 1500 2000 2500 3000}"
command -v tshark >/dev/null || export PRECISE=0
PORT=5063 ADMIN=8963

users_csv 1000 1999 "$ROOT/dialplan" >"$TMP/users.csv"
"$TAMBUN" --db "$TMP/t.db" --dialplan "$ROOT/dialplan" ext import "$TMP/users.csv" >/dev/null
MEDIA="${MEDIA:-0}"
if [[ "$MEDIA" == 1 ]]; then
    TAMBUN_EXTRA="--rtp-ports 30000-39999" start_tambun "$PORT" "$ADMIN" "$TMP/t.db" "$ROOT/dialplan" 1
else
    TAMBUN_EXTRA="--no-media" start_tambun "$PORT" "$ADMIN" "$TMP/t.db" "$ROOT/dialplan" 1
fi

if [[ "${NO_KAMAILIO:-0}" != 1 ]]; then
    command -v kamailio >/dev/null || { echo "kamailio missing (apt-get install kamailio kamailio-extra-modules), or NO_KAMAILIO=1" >&2; exit 2; }
    SRV_PIDS=""
    if [[ "$MEDIA" == 1 ]]; then
        command -v rtpengine >/dev/null || { echo "rtpengine missing (apt-get install rtpengine-daemon)" >&2; exit 2; }
        RTPE_PIDFILE="$TMP/rtpe.pid" "$PEERS/baseline/rtpengine-run.sh" </dev/null >"$TMP/rtpengine.log" 2>&1 &
        RTPE_PID=$!; PIDS+=("$RTPE_PID"); SRV_PIDS="$RTPE_PID"
        sleep 1
    fi
    WITH_RTPENGINE="$MEDIA" KAM_DIR="$TMP/kamailio" "$PEERS/baseline/kamailio-run.sh" </dev/null >"$TMP/kamailio.log" 2>&1 &
    KAM_PID=$!; PIDS+=("$KAM_PID")
    for i in $(seq 1 50); do python3 "$PEERS/sip_ping.py" 127.0.0.1 5070 >/dev/null 2>&1 && break; sleep 0.2; done
    log "Kamailio (pid $KAM_PID) on 127.0.0.1:5070"
    SERVER_PID="$KAM_PID $SRV_PIDS" "$PEERS/call-rate.sh" 127.0.0.1:5070 | tee "$TMP/kam.out"
    kill -TERM "$KAM_PID" $SRV_PIDS; sleep 1
fi
log "Tambun (pid $TAMBUN_PID) on 127.0.0.1:$PORT"
SERVER_PID=$TAMBUN_PID "$PEERS/call-rate.sh" "127.0.0.1:$PORT" | tee "$TMP/tambun.out"
cdrs=$("$TAMBUN" --db "$TMP/t.db" cdr --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "tambun: $cdrs call records written, RSS $(rss_kib "$TAMBUN_PID") KiB"

val() { sed -n "s/^RESULT $2=\([0-9.]*\).*/\1/p" "$1" | head -1; }
if [[ -f "$TMP/kam.out" ]]; then
    for key in cps cps_p99_le_50ms; do
        awk -v k="$key" -v a="$(val "$TMP/tambun.out" "$key")" -v b="$(val "$TMP/kam.out" "$key")" \
            'BEGIN { if (b > 0) printf "RATIO tambun/kamailio %s = %.2f (%s / %s)\n", k, a / b, a, b }'
    done
fi
