#!/usr/bin/env bash
# benches/registration-memory.sh — resident memory of the switch with N registrations
# (default 10,000), and the bytes each registration adds.
#
# A temporary dialplan (the shipped province.toml plus one OPD with the block 10000-19999)
# holds N extensions; SIPp registers each once with digest auth; the RSS is read from
# /proc before (extensions loaded, no registration) and after, and `tambun regs` must list N.
# Env: N (<= 10000), SKIP_BUILD=1, KEEP_TMP=1. Needs: sipp, python3.
. "$(dirname "$0")/lib.sh"
build_release
N="${N:-10000}"
PORT=5062 ADMIN=8962
mkdir -p "$TMP/dialplan"
province_without_rooms "$TMP/dialplan"
cat >"$TMP/dialplan/bench.toml" <<TOML
code = "bench"
name = "Benchmark office"
blocks = ["10000-19999"]
reception = "10000"
TOML
last=$((10000 + N - 1))
users_csv 10000 "$last" "$TMP/dialplan" >"$TMP/users.csv"
"$TAMBUN" --db "$TMP/t.db" --dialplan "$TMP/dialplan" ext import "$TMP/users.csv" >/dev/null
start_tambun "$PORT" "$ADMIN" "$TMP/t.db" "$TMP/dialplan"
sleep 1
before=$(rss_kib "$TAMBUN_PID")
{ echo SEQUENTIAL; for ((u = 10000; u <= last; u++)); do echo "$u;pw$u"; done; } >"$TMP/sipp.csv"
(cd "$TMP" && sipp "127.0.0.1:$PORT" -sf "$PEERS/scenarios/register-uac.xml" -inf "$TMP/sipp.csv" \
    -key domain 127.0.0.1 -key expires 3600 -i 127.0.0.1 -p 5093 -t u1 -r 2000 -m "$N" -l 4000 \
    -recv_timeout 5000 -max_retrans 3 -nostdin -trace_stat -stf stat.csv >sipp.log 2>&1) || true
sleep 1
count=$("$TAMBUN" --admin "127.0.0.1:$ADMIN" regs --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
during=$(rss_kib "$TAMBUN_PID")
# Completed REGISTER transactions keep their response for Timer J (32 s on UDP); wait them out
# to see what the registrations themselves cost.
sleep "${SETTLE_SECS:-35}"
after=$(rss_kib "$TAMBUN_PID")
echo "registrations: $count of $N"
echo "RSS before: $before KiB, right after the burst: $during KiB, after Timer J: $after KiB"
awk -v a="$after" -v d="$during" -v b="$before" -v n="$count" 'BEGIN {
    if (n > 0) {
        printf "RESULT bytes_per_registration=%.0f (RSS %.1f MiB with %d registrations, transactions expired)\n", (a - b) * 1024 / n, a / 1024, n
        printf "RESULT bytes_per_registration_with_transactions=%.0f (right after the burst)\n", (d - b) * 1024 / n } }'
[[ "$count" == "$N" ]] || { echo "not every registration succeeded" >&2; exit 1; }
