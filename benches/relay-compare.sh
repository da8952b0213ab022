#!/usr/bin/env bash
# benches/relay-compare.sh — the RTP relay under ../shared/peers/rtp-relay-bench, in one run:
# the generator alone (direct), Tambun's relay engine (`tambun bench relay-alloc`, one
# forwarding thread pinned to CPU 1), the bare recvmmsg/sendmmsg forwarder (`--bare`, same
# sockets, no latching/counters), and rtpengine userspace (1 thread, CPU 1) driven over ng.
# N concurrent G.711 calls (2 streams, 172-byte RTP every 20 ms each) per step.
# Prints each harness's table and RESULT lines. Env: CALLS (steps), DURATION (s/step),
# SKIP_BUILD=1, NO_RTPENGINE=1, BUSY_POLL=µs (adds a Tambun run with SO_BUSY_POLL on its sockets).
# Needs: cc, python3, taskset; rtpengine-daemon for the 4th.
. "$(dirname "$0")/lib.sh"
build_release
export CALLS="${CALLS:-200 400 800 1000 1200 1400}" DURATION="${DURATION:-6}"
cd "$PEERS"
run() { log "$1"; shift; "$@" 2>&1 | grep -E '^(calls|[0-9]|RESULT|added)' | tee -a "$TMP/all.out"; }
run "direct (no relay)"    ./rtp-relay-bench direct
run "tambun relay"         ./rtp-relay-bench cmd "taskset -c 1 $TAMBUN bench relay-alloc --threads 1 --report $TMP/tambun.cpu"
if [[ -n "${BUSY_POLL:-}" ]]; then
    run "tambun relay, SO_BUSY_POLL ${BUSY_POLL} us" ./rtp-relay-bench cmd "taskset -c 1 $TAMBUN bench relay-alloc --threads 1 --busy-poll $BUSY_POLL --report $TMP/busy.cpu"
fi
run "bare forwarder"       ./rtp-relay-bench cmd "taskset -c 1 $TAMBUN bench relay-alloc --threads 1 --bare --report $TMP/bare.cpu"
if [[ "${NO_RTPENGINE:-0}" != 1 ]] && command -v rtpengine >/dev/null; then
    RTPE_PIDFILE="$TMP/rtpe.pid" "$PEERS/baseline/rtpengine-run.sh" >"$TMP/rtpe.log" 2>&1 &
    PIDS+=("$!"); sleep 2
    run "rtpengine (userspace)" env RELAY_PID="$(cat "$TMP/rtpe.pid")" ./rtp-relay-bench ng 127.0.0.1:5079
fi
for f in tambun busy bare; do [[ -f "$TMP/$f.cpu" ]] && { echo "relay-alloc CPU report ($f):"; cat "$TMP/$f.cpu"; }; done
