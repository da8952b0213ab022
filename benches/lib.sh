# Helpers for the load scripts in benches/. Source it. Everything stays on 127.0.0.1; every
# process started here is stopped by PID on exit.
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
PEERS="${PEERS:-$ROOT/../shared/peers}"
TAMBUN="${TAMBUN:-$ROOT/target/release/tambun}"
PIDS=()
TMP="$(mktemp -d /tmp/tambun-bench.XXXXXX)"
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    [[ "${KEEP_TMP:-0}" == 1 ]] && echo "kept $TMP" >&2 || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# province_without_rooms DST_DIR : the shipped province.toml without its [[room]] tables (they
# name OPDs a bench dialplan of one or two OPD files lacks, which `dialplan check` refuses).
province_without_rooms() {
    awk '/^\[\[room\]\]/ { skip = 1; next } /^\[/ { skip = 0 } !skip' \
        "$ROOT/dialplan/province.toml" >"$1/province.toml"
}

build_release() {
    [[ "${SKIP_BUILD:-0}" == 1 ]] || (cd "$ROOT" && cargo build --release --quiet)
}

# users_csv FIRST LAST DIALPLAN_DIR > csv : number,opd,name,password (password pwN), each
# number assigned to the OPD whose block contains it.
users_csv() {
    "$TAMBUN" --db "$TMP/opd-list.db" --dialplan "$3" opd list --json | python3 -c '
import json, sys
first, last = int(sys.argv[1]), int(sys.argv[2])
blocks = []
for o in json.load(sys.stdin):
    for b in o["blocks"]:
        a, z = map(int, b.split("-"))
        blocks.append((a, z, o["code"]))
print("number,opd,name,password")
for n in range(first, last + 1):
    code = next((c for a, z, c in blocks if a <= n <= z), None)
    if code is None:
        sys.exit(f"{n} is in no OPD block")
    print(f"{n},{code},User {n},pw{n}")
' "$1" "$2"
}

# start_tambun PORT ADMIN_PORT DB DIALPLAN [taskset-cpus] -> sets TAMBUN_PID
# The load generators all send from 127.0.0.1, so the config allow-lists 127.0.0.0/8 (as an
# operator allow-lists the OPDs' subnets): the guard's per-source rate limit would otherwise
# ban the generator. BENCH_TOML: more config text (e.g. "[media]\nthreads = 1"); GUARD_TOML:
# more `[guard]` keys (e.g. "max_transactions = 1000000").
start_tambun() {
    local pin=()
    [[ -n "${5:-}" ]] && pin=(taskset -c "$5")
    printf '%b\n[guard]\nallow = ["127.0.0.0/8"]\n%b\n' "${BENCH_TOML:-}" "${GUARD_TOML:-}" \
        >"$TMP/tambun-$1.toml"
    # shellcheck disable=SC2086 # TAMBUN_EXTRA is a list of flags
    RUST_LOG=warn "${pin[@]}" "$TAMBUN" serve --config "$TMP/tambun-$1.toml" \
        --listen "127.0.0.1:$1" --admin "127.0.0.1:$2" \
        --db "$3" --dialplan "$4" --no-tls ${TAMBUN_EXTRA:-} </dev/null >"$TMP/tambun-$1.log" 2>&1 &
    TAMBUN_PID=$!
    PIDS+=("$TAMBUN_PID")
    local i
    for i in $(seq 1 50); do
        python3 "$PEERS/sip_ping.py" 127.0.0.1 "$1" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    cat "$TMP/tambun-$1.log" >&2
    echo "tambun did not start" >&2
    exit 3
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# artifact KIND NAME -> the executable cargo built for target NAME (KIND: --bin or --bench);
# cargo honours CARGO_TARGET_DIR.
artifact() {
    (cd "$ROOT" && cargo build --release "$1" "$2" --message-format=json 2>/dev/null) | python3 -c '
import json, sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$2"
}

# conference_binaries : builds tambun and the conference load client (unless SKIP_BUILD=1, or
# BIN is given) and copies them into the temp dir, so that another build into the same
# target dir cannot swap them during the run: sets TAMBUN and LOAD_CLIENT. BIN / LOAD:
# executables built before (no cargo at all).
conference_binaries() {
    if [[ "${SKIP_BUILD:-0}" != 1 && -z "${BIN:-}" ]]; then
        (cd "$ROOT" && cargo build --release --quiet --bin tambun)
    fi
    local bin load
    bin="${BIN:-$(artifact --bin tambun | tail -1)}"
    load="${LOAD:-$(artifact --bench conference_load | tail -1)}"
    [[ -x "$bin" && -x "$load" ]] || { echo "cannot build tambun or benches/conference_load.rs" >&2; exit 2; }
    cp "$bin" "$TMP/tambun"
    TAMBUN="$TMP/tambun"
    cp "$load" "$TMP/conference_load"
    LOAD_CLIENT="$TMP/conference_load"
}

# start_room_switch ROOMS ROOM_SIZE MAX_N SIP ADMIN RTP_RANGE [ROOM_KEYS] : a switch for the
# conference load scripts: the shipped province.toml without its rooms (they name OPDs this
# directory lacks), bench rooms 8000.. of at most ROOM_SIZE (ROOM_KEYS: more keys for each,
# e.g. "video_mbps = 1000"), one bench OPD holding extensions 10000.. (password pwN), the
# guard allow-listing loopback; started under SERVER (the caller's priority and CPU
# prefix) with `--no-tls --no-web`. Sets TAMBUN_PID.
start_room_switch() {
    local rooms=$1 size=$2 max_n=$3 sip=$4 admin=$5 rtp=$6 keys=${7:-} r u
    mkdir -p "$TMP/dialplan"
    province_without_rooms "$TMP/dialplan"
    for ((r = 0; r < rooms; r++)); do
        printf '\n[[room]]\nnumber = "%d"\nname = "Bench room %d"\nmax = %d\n' \
            $((8000 + r)) $((r + 1)) "$size" >>"$TMP/dialplan/province.toml"
        [[ -n "$keys" ]] && printf '%s\n' "$keys" >>"$TMP/dialplan/province.toml"
    done
    printf 'code = "bench"\nname = "Benchmark office"\nblocks = ["10000-19999"]\nreception = "10000"\n' \
        >"$TMP/dialplan/bench.toml"
    { echo "number,opd,name,password"; for ((u = 10000; u < 10000 + max_n; u++)); do echo "$u,bench,User $u,pw$u"; done; } >"$TMP/users.csv"
    "$TAMBUN" --db "$TMP/t.db" --dialplan "$TMP/dialplan" dialplan check >&2
    "$TAMBUN" --db "$TMP/t.db" --dialplan "$TMP/dialplan" ext import "$TMP/users.csv" >/dev/null
    printf '[guard]\nallow = ["127.0.0.0/8"]\n' >"$TMP/tambun.toml"
    RUST_LOG=warn "${SERVER[@]}" "$TAMBUN" serve --config "$TMP/tambun.toml" \
        --listen "127.0.0.1:$sip" --admin "127.0.0.1:$admin" --db "$TMP/t.db" --dialplan "$TMP/dialplan" \
        --no-tls --no-web --rtp-ports "$rtp" </dev/null >"$TMP/tambun.log" 2>&1 &
    TAMBUN_PID=$!
    PIDS+=("$TAMBUN_PID")
    for _ in $(seq 1 50); do python3 "$PEERS/sip_ping.py" 127.0.0.1 "$sip" >/dev/null 2>&1 && break; sleep 0.1; done
    kill -0 "$TAMBUN_PID" 2>/dev/null || { cat "$TMP/tambun.log" >&2; echo "tambun did not start" >&2; exit 3; }
}

# alone_or_exit : another load script or client on this machine would share our CPUs and
# ports: refuse to measure beside it (exit 4; ALLOW_OTHERS=1: run anyway). The calling
# script and its ancestors (a `timeout` in front of it, say) do not count.
alone_or_exit() {
    local me=$$ ancestor=$$
    while ancestor=$(ps -o ppid= -p "$ancestor" | tr -d ' ') && ((ancestor > 1)); do me+=" $ancestor"; done
    pgrep -f 'conference-load\.sh|conference_load|video-room-load\.sh|webrtc-load\.sh|webrtc_load' >"$TMP/others.all" || true
    grep -vxF -f <(tr ' ' '\n' <<<"$me") "$TMP/others.all" >"$TMP/others" || true
    if [[ "${ALLOW_OTHERS:-0}" != 1 && -s "$TMP/others" ]]; then
        echo "another load script or client is running (PIDs $(tr '\n' ' ' <"$TMP/others")): not measuring" >&2
        exit 4
    fi
}

# start_janus PLUGIN PLUGIN_CONF : Janus from the Debian package with a config dir of its own
# under $TMP/janus (J): only the HTTP transport (127.0.0.1:$J_HTTP) and the one plugin
# (`audiobridge`, `videoroom`; PLUGIN_CONF is its jcfg), RTP ports $J_RTP on 127.0.0.1, no
# event handlers or loggers, started with "${SERVER[@]}" in front; waits for its HTTP API.
# Sets J and JANUS_PID (in PIDS, stopped at exit).
start_janus() {
    local plugin=$1 conf=$2 so lib
    command -v janus >/dev/null || { echo "janus is missing: apt-get update && apt-get install -y janus (or NO_JANUS=1)" >&2; exit 2; }
    so="$(dpkg -L janus 2>/dev/null | grep -m1 "/plugins/libjanus_$plugin.so\$" || true)"
    lib="$(dirname "$(dirname "${so:-/usr/lib/x86_64-linux-gnu/janus/plugins/x}")")"
    [[ -e "$lib/plugins/libjanus_$plugin.so" && -e "$lib/transports/libjanus_http.so" ]] ||
        { echo "no $plugin plugin or HTTP transport under $lib" >&2; exit 2; }
    J="$TMP/janus"
    mkdir -p "$J/conf" "$J/plugins" "$J/transports" "$J/events" "$J/loggers"
    ln -s "$lib/plugins/libjanus_$plugin.so" "$J/plugins/"
    ln -s "$lib/transports/libjanus_http.so" "$J/transports/"
    cat >"$J/conf/janus.jcfg" <<JCFG
general: {
	configs_folder = "$J/conf"
	plugins_folder = "$J/plugins"
	transports_folder = "$J/transports"
	events_folder = "$J/events"
	loggers_folder = "$J/loggers"
	debug_level = 3
	session_timeout = 0
	interface = "127.0.0.1"
}
certificates: {}
media: { rtp_port_range = "$J_RTP" }
nat: { nice_debug = false ice_enforce_list = "lo" }
plugins: {}
transports: {}
loggers: {}
events: { broadcast = false }
JCFG
    cat >"$J/conf/janus.transport.http.jcfg" <<JCFG
general: { json = "compact" base_path = "/janus" http = true port = $J_HTTP ip = "127.0.0.1" https = false }
admin: { admin_http = false admin_https = false }
JCFG
    printf '%s\n' "$conf" >"$J/conf/janus.plugin.$plugin.jcfg"
    (cd "$J" && exec "${SERVER[@]}" janus -F "$J/conf" -C "$J/conf/janus.jcfg" </dev/null >"$J/janus.log" 2>&1) &
    JANUS_PID=$!
    PIDS+=("$JANUS_PID")
    for _ in $(seq 1 50); do
        python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$J_HTTP/janus/info', timeout=1)" 2>/dev/null && break
        sleep 0.2
    done
    kill -0 "$JANUS_PID" 2>/dev/null || { tail -20 "$J/janus.log" >&2; echo "janus did not start" >&2; exit 3; }
}
