#!/usr/bin/env bash
# .ci/windows.sh: build echoloop for Windows (x86_64-pc-windows-gnu) and run its
# integration tests on that build under Wine.
#
# Runs as root on a fresh Debian 12 machine with rustup/cargo, and again on a
# machine where it already ran (every step is skipped or cheap when done).
# What it does:
#   1. installs the mingw-w64 cross compiler and Wine 8.0 (Debian packages), and
#      the rustup target;
#   2. builds .ci/bcryptprimitives.c into a tiny bcryptprimitives.dll: Rust's std
#      imports ProcessPrng from it and Wine 8.0 has no such DLL, so without it
#      every Rust .exe dies at load with status c0000135 (exit code 53);
#   3. `cargo check --target x86_64-pc-windows-gnu --all-targets`;
#   4. runs the integration test files named in WINDOWS_TESTS under Wine, with
#      the DLL copied next to the test executables, in a Wine prefix under
#      target/, and stops wineserver at the end so CI never hangs.
#
# Environment knobs (all optional):
#   WINDOWS_TESTS       test files to run (default below); a name whose
#                       tests/<name>.rs does not exist is skipped with a note
#   WINDOWS_TEST_ARGS   extra arguments for the test harness (after `--`)
#   WINDOWS_CHECK_ONLY  =1: stop after the cross-compile check
#   CARGO_TARGET_DIR    honoured like cargo does (default: target/)
set -euo pipefail

# The integration test files run on the Windows build. The half-close test
# lives in `echo`.
WINDOWS_TESTS="${WINDOWS_TESTS:-echo backpressure limits shutdown windows_ctrl_c cli examples stress stress_udp udp metrics admission proxy loops tls}"

TARGET=x86_64-pc-windows-gnu
APT_PACKAGES=(gcc-mingw-w64-x86-64-win32 wine wine64)

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
OUT="$TARGET_DIR/$TARGET/debug"
SHIM_DIR="$TARGET_DIR/wine-shim"
SHIM="$SHIM_DIR/bcryptprimitives.dll"

log() { printf '==> windows: %s\n' "$*"; }
now() { date +%s; }
T0=$(now)

# --- 1. tools -----------------------------------------------------------------
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=sudo; fi

if command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 && command -v wine >/dev/null 2>&1 \
    && [ -x /usr/lib/wine/wine64 ] && command -v wineserver >/dev/null 2>&1; then
    log "mingw-w64 and wine already installed"
else
    log "installing ${APT_PACKAGES[*]}"
    t=$(now)
    $SUDO env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive timeout 900 \
        apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}"
    log "apt install took $(( $(now) - t ))s"
fi

if ! rustup target list --installed | grep -qx "$TARGET"; then
    log "rustup target add $TARGET"
    timeout 600 rustup target add "$TARGET"
fi

# --- 2. the bcryptprimitives.dll shim ---------------------------------------------
mkdir -p "$SHIM_DIR"
if [ ! -s "$SHIM" ] || [ "$ROOT/.ci/bcryptprimitives.c" -nt "$SHIM" ]; then
    log "building $SHIM"
    timeout 120 x86_64-w64-mingw32-gcc -shared -O2 -s -static-libgcc -Wall \
        -o "$SHIM.tmp" "$ROOT/.ci/bcryptprimitives.c" -ladvapi32
    mv -f "$SHIM.tmp" "$SHIM"
fi

# --- 3. cross-compile check ---------------------------------------------------
# clippy, not just check: code behind cfg(windows) gets linted nowhere else.
log "cargo clippy --target $TARGET --all-targets -- -D warnings"
t=$(now)
timeout 1800 cargo clippy --target "$TARGET" --all-targets -- -D warnings
log "cross-compile check took $(( $(now) - t ))s"

if [ "${WINDOWS_CHECK_ONLY:-0}" = 1 ]; then
    log "WINDOWS_CHECK_ONLY=1: not running tests under Wine"
    exit 0
fi

# --- 4. tests under Wine ------------------------------------------------------
export WINEPREFIX="$TARGET_DIR/wine/prefix"
export WINEDEBUG=-all                  # also silences the "wine32 is missing" hint
export WINEDLLOVERRIDES="mscoree,mshtml=" # no Mono/Gecko install attempts
export WINEARCH=win64
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
unset DISPLAY WAYLAND_DISPLAY          # no windows, no dialogs: fully headless

stop_wine() { timeout 30 wineserver -k >/dev/null 2>&1 || true; }
trap stop_wine EXIT

mkdir -p "$(dirname "$WINEPREFIX")"
if [ ! -f "$WINEPREFIX/system.reg" ]; then
    log "creating Wine prefix $WINEPREFIX"
    t=$(now)
    timeout 300 wineboot --init </dev/null
    timeout 120 wineserver -w || true  # let wineboot's services settle
    log "wineboot took $(( $(now) - t ))s"
fi
# Installed in the prefix's system32 too, so that any Rust .exe (test, bin,
# example, wherever it lives) finds it.
cp -f "$SHIM" "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"

tests=()
skipped=()
for name in $WINDOWS_TESTS; do
    if [ -f "tests/$name.rs" ]; then tests+=("$name"); else skipped+=("$name"); fi
done
if [ "${#skipped[@]}" -gt 0 ]; then
    log "SKIPPED under Wine (no tests/<name>.rs yet): ${skipped[*]}"
fi
if [ "${#tests[@]}" -eq 0 ]; then
    log "no Windows test files to run"
    exit 0
fi

test_flags=()
for name in "${tests[@]}"; do test_flags+=(--test "$name"); done

log "building test executables (${tests[*]}) and the examples"
timeout 1800 cargo test --target "$TARGET" "${test_flags[@]}" --no-run
# `cargo test --test NAME` does not build examples; tests/examples.rs runs them.
timeout 1800 cargo build --target "$TARGET" --examples

# Next to the executables, as Windows' loader looks there first (deps/ holds
# the test executables, debug/ the binaries that CARGO_BIN_EXE_* points at).
for d in "$OUT" "$OUT/deps" "$OUT/examples"; do
    if [ -d "$d" ]; then cp -f "$SHIM" "$d/bcryptprimitives.dll"; fi
done

failed=()
for name in "${tests[@]}"; do
    log "cargo test --target $TARGET --test $name (under wine)"
    t=$(now)
    # shellcheck disable=SC2086
    if timeout -k 30 1200 cargo test --target "$TARGET" --test "$name" \
            -- ${WINDOWS_TEST_ARGS:-} </dev/null; then
        log "$name passed under Wine in $(( $(now) - t ))s"
    else
        rc=$?
        log "$name FAILED under Wine (exit $rc) after $(( $(now) - t ))s"
        failed+=("$name")
        stop_wine # kill leftovers of a timed-out run before the next file
    fi
done

log "done in $(( $(now) - T0 ))s; ran: ${tests[*]}${skipped:+; skipped: ${skipped[*]}}"
if [ "${#failed[@]}" -gt 0 ]; then
    log "FAILED under Wine: ${failed[*]}"
    exit 1
fi
