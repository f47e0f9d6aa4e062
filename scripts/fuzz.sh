#!/usr/bin/env bash
# Runs each fuzz target (fuzz/fuzz_targets/) for SECONDS, default 300, one after the other:
#
#   scripts/fuzz.sh [SECONDS]            every target
#   TARGETS="bundle_verify" scripts/fuzz.sh 3600
#
# Needs the nightly toolchain and cargo-fuzz; installs both when missing. RocksDB is not
# compiled again for the sanitizer build: the script links the library that a normal
# `cargo build` produced (ROCKSDB_LIB_DIR), so only the Rust code is instrumented.
#
# New inputs go to target/fuzz/corpus/<target> (the seeds, fuzz/seeds/<target> and for the
# policy parser the shipped packs in deploy/policy, are read, never written). A crash or a failed property leaves its input in
# fuzz/artifacts/<target>/ and the script exits non-zero after running the other targets;
# reproduce it with `cargo +nightly fuzz run <target> <file>`, then add it as a test.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-300}
targets=${TARGETS:-entry_decode state_decode policy_parse bundle_verify request_validation}

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

deploy/build-deps.sh
cargo build --locked --lib
lib=$(ls -t "$PWD"/target/debug/build/librocksdb-sys-*/out/librocksdb.a | head -1)
export ROCKSDB_LIB_DIR=${lib%/*} ROCKSDB_STATIC=1
cargo +nightly fuzz build

mkdir -p target/fuzz/logs
failed=()
for target in $targets; do
    corpus=target/fuzz/corpus/$target
    mkdir -p "$corpus"
    log=target/fuzz/logs/$target.log
    echo "== $target: ${seconds}s (log: $log)"
    seeds=()
    [[ -d fuzz/seeds/$target ]] && seeds+=("fuzz/seeds/$target")
    [[ $target == policy_parse ]] && seeds+=(deploy/policy)
    if cargo +nightly fuzz run "$target" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
        echo "   ok: $runs runs, $coverage, corpus $(ls "$corpus" | wc -l) inputs"
    else
        failed+=("$target")
        echo "   FAILED: see $log and fuzz/artifacts/$target/"
        grep -m1 -A3 -E 'panicked|ERROR: AddressSanitizer|ERROR: libFuzzer' "$log" || true
    fi
done

if ((${#failed[@]})); then
    echo "failed: ${failed[*]}"
    exit 1
fi
echo "all targets ran ${seconds}s without a failure"
