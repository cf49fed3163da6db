#!/usr/bin/env bash
# Runs every fuzz target under fuzz/ for a bounded time (fuzz/README.md):
# FUZZ_SECONDS each (default 30), never more than FUZZ_TOTAL_SECONDS in all
# (default 300), one job each. Installs what it needs first: the nightly
# toolchain (minimal profile) and cargo-fuzz. A target that fails stops
# nothing else; the script then fails, naming each reproducing input and the
# command that replays it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
export CARGO_TERM_COLOR=never
# The targets build into fuzz/target whatever the caller's target dir.
unset CARGO_TARGET_DIR

per_target="${FUZZ_SECONDS:-30}"
total="${FUZZ_TOTAL_SECONDS:-300}"

rustup toolchain list | grep -q '^nightly' ||
    rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# The fuzz package is outside the main one: check its formatting here.
cargo fmt -- --check

# Debug assertions on: an arithmetic overflow is a crash, as in `cargo test`.
cargo +nightly fuzz build --debug-assertions

mapfile -t targets < <(cargo +nightly fuzz list)
((${#targets[@]})) || { echo "fuzz: no targets found" >&2; exit 1; }
((per_target * ${#targets[@]} <= total)) || per_target=$((total / ${#targets[@]}))

failed=()
for target in "${targets[@]}"; do
    # Longer inputs where the target's limit lies beyond libFuzzer's default
    # of 4096 bytes.
    extra=()
    case "$target" in
        metrics_http) extra=(-max_len=12000) ;;
        report) extra=(-max_len=16384) ;;
        proxy) extra=(-max_len=8192) ;;
    esac
    mkdir -p "corpus/$target" "artifacts/$target" logs
    touch "logs/$target.start"
    echo "fuzz: $target for ${per_target}s (log: fuzz/logs/$target.log)"
    # corpus/ is scratch (new inputs land there); seeds/ is read only.
    if cargo +nightly fuzz run --debug-assertions "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$per_target" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        ${extra[@]+"${extra[@]}"} >"logs/$target.log" 2>&1; then
        grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' \
            "logs/$target.log" || true
    else
        # The panic (or sanitizer report) and where libFuzzer wrote the input.
        grep -E -A4 -m1 "panicked at|ERROR: (libFuzzer|AddressSanitizer)" "logs/$target.log" || true
        grep -E "^SUMMARY|Test unit written" "logs/$target.log" || tail -n 20 "logs/$target.log"
        failed+=("$target")
    fi
done

((${#failed[@]})) || { echo "fuzz: every target ran ${per_target}s, no failure"; exit 0; }
for target in "${failed[@]}"; do
    input="$(find "artifacts/$target" -type f -newer "logs/$target.start" | head -n 1)"
    echo "fuzz: $target FAILED; reproducing input: fuzz/${input:-<none written: see fuzz/logs/$target.log>}" >&2
    echo "fuzz:   replay: (cd fuzz && cargo +nightly fuzz run --debug-assertions $target ${input:-INPUT})" >&2
done
exit 1
