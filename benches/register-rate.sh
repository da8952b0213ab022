#!/usr/bin/env bash
# benches/register-rate.sh — REGISTER/s with digest auth, Tambun next to Kamailio, in one run.
#
# Both servers are pinned to CPU 1 and SIPp to CPU 0 (the split of ../shared/peers/README.md);
# both get the same 1000 users (1000..1999 / pwN) and the same register-rate.sh sweep.
# Prints each server's RESULT lines and the ratio Tambun / Kamailio.
# Env: RATES (register-rate.sh steps), SKIP_BUILD=1, NO_KAMAILIO=1, KEEP_TMP=1.
# Needs: sipp, python3, kamailio (Debian: kamailio, kamailio-extra-modules) for the baseline.
. "$(dirname "$0")/lib.sh"
build_release
export RATES="${RATES:-1000 2000 4000 6000 8000 10000 12000 15000}"
PORT=5061 ADMIN=8961

users_csv 1000 1999 "$ROOT/dialplan" >"$TMP/users.csv"
"$TAMBUN" --db "$TMP/t.db" --dialplan "$ROOT/dialplan" ext import "$TMP/users.csv" >/dev/null
start_tambun "$PORT" "$ADMIN" "$TMP/t.db" "$ROOT/dialplan" 1

results=()
if [[ "${NO_KAMAILIO:-0}" != 1 ]]; then
    command -v kamailio >/dev/null || { echo "kamailio missing (apt-get install kamailio kamailio-extra-modules), or NO_KAMAILIO=1" >&2; exit 2; }
    KAM_DIR="$TMP/kamailio" "$PEERS/baseline/kamailio-run.sh" </dev/null >"$TMP/kamailio.log" 2>&1 &
    KAM_PID=$!; PIDS+=("$KAM_PID")
    for i in $(seq 1 50); do python3 "$PEERS/sip_ping.py" 127.0.0.1 5070 >/dev/null 2>&1 && break; sleep 0.2; done
    log "Kamailio (pid $KAM_PID) on 127.0.0.1:5070"
    SERVER_PID=$KAM_PID "$PEERS/register-rate.sh" 127.0.0.1:5070 | tee "$TMP/kam.out"
    kill -TERM "$KAM_PID"; sleep 1
fi
log "Tambun (pid $TAMBUN_PID) on 127.0.0.1:$PORT"
SERVER_PID=$TAMBUN_PID "$PEERS/register-rate.sh" "127.0.0.1:$PORT" | tee "$TMP/tambun.out"

t=$(sed -n 's/^RESULT register_rate=\([0-9.]*\).*/\1/p' "$TMP/tambun.out")
t50=$(sed -n 's/^RESULT register_rate_p99_le_50ms=\([0-9.]*\).*/\1/p' "$TMP/tambun.out")
echo "tambun:   register_rate=${t:-?} reg/s, with p99<=50ms ${t50:-?} reg/s, RSS $(rss_kib "$TAMBUN_PID") KiB"
if [[ -f "$TMP/kam.out" ]]; then
    k=$(sed -n 's/^RESULT register_rate=\([0-9.]*\).*/\1/p' "$TMP/kam.out")
    k50=$(sed -n 's/^RESULT register_rate_p99_le_50ms=\([0-9.]*\).*/\1/p' "$TMP/kam.out")
    echo "kamailio: register_rate=${k:-?} reg/s, with p99<=50ms ${k50:-?} reg/s"
    awk -v a="${t:-0}" -v b="${k:-0}" -v c="${t50:-0}" -v d="${k50:-0}" 'BEGIN {
        if (b > 0) printf "RATIO tambun/kamailio register_rate = %.2f\n", a / b
        if (d > 0) printf "RATIO tambun/kamailio register_rate_p99_le_50ms = %.2f\n", c / d }'
fi
