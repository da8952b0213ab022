#!/usr/bin/env bash
# scripts/test.sh — run every check Tambun has, the same way locally and in CI.
#
# 1. Installs what the tests need when it is missing (Debian/Ubuntu, apt-get; as root or
#    through sudo): SIPp (`sip-tester`) and baresip (`baresip-core`) for the interop tests,
#    sipvicious for the guard tests, socat (TLS in front of SIPp: a TLS carrier), Chromium
#    for the browser tests, Node.js and npm (the softphone page is bundled from web/'s npm
#    lockfile at build time, and drives Chromium through playwright-core), and a C compiler
#    for the bundled SQLite and aws-lc.
# 2. cargo fmt --check, cargo clippy --all-targets -D warnings, cargo test --all-targets
#    (unit, torture, integration and interop tests: they start the `tambun` binary on
#    loopback ports; --all-targets also builds every bench and runs each benchmark once, in
#    criterion's test mode), cargo test --doc, and the fuzz targets when a nightly toolchain
#    with cargo-fuzz is present. The benches are not compiled a second time optimised: that
#    took ten of CI's minutes and checked nothing the test build does not.
# 3. Prints a summary. A failing check does not stop the later ones (except install, toolchain
#    and build, which everything needs); the exit status is non-zero when any check failed.
#
# Env: SKIP_INSTALL=1 never installs anything; TEST_ARGS="…" extra arguments for the test
#      binaries (e.g. TEST_ARGS="--test-threads=1").
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-$([[ -t 1 ]] && echo auto || echo never)}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
LOCKED=()
[[ "${CI:-}" == true ]] && LOCKED=(--locked)

START=$SECONDS
SUMMARY=()
CURRENT=""

log() { printf '\n==> %s\n' "$*"; }
die() { printf 'scripts/test.sh: %s\n' "$*" >&2; exit 2; }

finish() {
    local rc=$?
    [[ -n "$CURRENT" && $rc -ne 0 ]] && SUMMARY+=("FAIL  $CURRENT")
    printf '\n==> summary (%d s)\n' "$((SECONDS - START))"
    local line
    for line in "${SUMMARY[@]}"; do printf '    %s\n' "$line"; done
    if [[ $rc -eq 0 ]]; then echo "RESULT: all checks passed"; else echo "RESULT: FAILED (exit $rc)"; fi
}
trap finish EXIT

# step NAME CMD ARGS… : runs one check and records its time; a failing check is recorded and
# the later checks still run (the script exits non-zero at the end)
FAILED=0
step() {
    local name="$1" t0=$SECONDS
    shift
    CURRENT="$name"
    log "$name: $*"
    if "$@"; then
        SUMMARY+=("ok    $name ($((SECONDS - t0)) s)")
    else
        local rc=$?
        SUMMARY+=("FAIL  $name ($((SECONDS - t0)) s, exit $rc)")
        FAILED=1
    fi
    CURRENT=""
}

# must STEP…: like step, but nothing after it can run when it fails
must() {
    step "$@"
    ((FAILED == 0)) || exit 1
}

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

install_missing() {
    # command -> Debian package
    # (svwar/svcrack: the guard tests; python3 runs them through tests/data/sipvicious_as.py)
    local -A pkg_of=([sipp]=sip-tester [baresip]=baresip-core [cc]=gcc [svwar]=sipvicious
        [python3]=python3 [chromium]=chromium [node]=nodejs [npm]=npm [socat]=socat)
    local missing=() cmd
    for cmd in sipp baresip cc svwar python3 chromium node npm socat; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}")
    done
    if ((${#missing[@]} == 0)); then
        echo "sipp, baresip, cc, sipvicious, python3, chromium, node, npm and socat are installed"
        return 0
    fi
    [[ "${SKIP_INSTALL:-0}" == 1 ]] && die "missing packages ${missing[*]} and SKIP_INSTALL=1"
    command -v apt-get >/dev/null 2>&1 ||
        die "missing packages ${missing[*]}; install them with your package manager (no apt-get here)"
    [[ " ${missing[*]} " == *" gcc "* ]] && missing+=(libc6-dev)
    echo "installing: ${missing[*]}"
    # (set -e is off inside a function run as an `if` condition: check each command)
    as_root apt-get update -q || return
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

need_toolchain() {
    command -v cargo >/dev/null 2>&1 || die "cargo is missing: install Rust (https://rustup.rs)"
    local comp
    for comp in rustfmt clippy; do
        if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
            command -v rustup >/dev/null 2>&1 || die "cargo $comp is missing and there is no rustup"
            rustup component add "$comp" || return
        fi
    done
    cargo --version
}

fuzz_build() {
    if [[ ! -d fuzz ]]; then
        echo "no fuzz/ crate"
    elif command -v rustup >/dev/null 2>&1 && [[ "$(rustup toolchain list)" == *nightly* ]] &&
        cargo +nightly fuzz --version >/dev/null 2>&1; then
        # --dev: compiled (and so checked) without optimisation, minutes faster
        cargo +nightly fuzz build --dev
    else
        echo "skipped: needs a nightly toolchain and cargo-fuzz (cargo install cargo-fuzz)"
    fi
}

must "install test dependencies" install_missing
must "toolchain" need_toolchain
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy "${LOCKED[@]}" --all-targets -- -D warnings
must "build (binary and tests)" cargo build "${LOCKED[@]}" --all-targets
# shellcheck disable=SC2086 # TEST_ARGS is a list of words
step "cargo test --all-targets" cargo test "${LOCKED[@]}" --no-fail-fast --all-targets -- ${TEST_ARGS:-}
step "cargo test --doc" cargo test "${LOCKED[@]}" --doc
step "fuzz targets" fuzz_build
exit "$FAILED"
