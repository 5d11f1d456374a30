#!/usr/bin/env bash
# Coverage-guided fuzzing of the cpam-fuzz targets on stable Rust: libFuzzer
# with SanitizerCoverage, whose `-C` flags are stable. AddressSanitizer needs
# nightly (`cargo +nightly fuzz run <target>`); Rust's own checks (bounds,
# overflow, debug assertions) stay on here.
#
#     fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]   (default: 60, all)
#
# Corpora grow under target/fuzz/corpus/<target>, crashes land in
# target/fuzz/artifacts/<target>/ and make the script fail.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(sed -n 's/^name = "\(fuzz_[a-z_]*\)"$/\1/p' fuzz/Cargo.toml)
fi
triple=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks --cfg fuzzing"
# `--target` keeps the coverage flags off build scripts and proc macros.
cargo build --release -p cpam-fuzz --target "$triple" --target-dir target/fuzz
failed=0
for t in "${targets[@]}"; do
    mkdir -p "target/fuzz/corpus/$t" "target/fuzz/artifacts/$t"
    log="target/fuzz/artifacts/$t/last.log"
    if "target/fuzz/$triple/release/$t" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="target/fuzz/artifacts/$t/" "target/fuzz/corpus/$t" >"$log" 2>&1; then
        result=ok
    else
        result="FAILED (see $log)"
        failed=1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    printf '%-22s %12s runs  %-10s %s\n' "$t" "${runs:-?}" "${cov:-}" "$result"
done
exit $failed
