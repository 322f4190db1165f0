#!/usr/bin/env bash
# Runs the libFuzzer targets of test/fuzz/ for longer than the ctest smoke:
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
# SECONDS per target (default 600), one target at a time, all targets unless
# some are named. Builds the fuzz preset first (clang++-14, ASan + UBSan).
# Each target's corpus grows in build/fuzz/fuzz-corpus/<target>/ (kept between
# runs; the checked-in seeds in test/fuzz/corpus/<target>/ are only read).
# An input that breaks a property or trips a sanitizer is copied to
# test/fuzz/regressions/<target>/, which ctest replays (fuzz preset); the
# script then exits 1. Logs: build/fuzz/fuzz-logs/<target>.log; the last
# lines printed are one summary line per target (runs, cov, ft, crashes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-600}
shift || true
all_targets=(fuzz_sql_reader fuzz_options fuzz_timestamp fuzz_decode fuzz_file_service)
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=("${all_targets[@]}")
fi

# max_len and dictionary per target (the same as test/fuzz/CMakeLists.txt).
declare -A max_len=([fuzz_sql_reader]=512 [fuzz_options]=512 [fuzz_timestamp]=64
                    [fuzz_decode]=512 [fuzz_file_service]=4096)
declare -A dict=([fuzz_sql_reader]=sql.dict [fuzz_options]=options.dict
                 [fuzz_timestamp]=timestamp.dict [fuzz_file_service]=http.dict)

bash scripts/install-deps.sh
cmake --preset fuzz
cmake --build --preset fuzz -j"${ASQLITE_FUZZ_BUILD_JOBS:-$(nproc)}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

summary=()
failed=0
for target in "${targets[@]}"; do
    bin=build/fuzz/test/fuzz/$target
    corpus=build/fuzz/fuzz-corpus/$target
    artifacts=build/fuzz/fuzz-artifacts/$target
    log=build/fuzz/fuzz-logs/$target.log
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")" "test/fuzz/regressions/$target"
    options=(-max_total_time="$seconds" -max_len="${max_len[$target]}" -timeout=25
             -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/")
    if [[ -n ${dict[$target]:-} ]]; then
        options+=(-dict="test/fuzz/dict/${dict[$target]}")
    fi
    echo "==== $target: ${seconds}s ($bin ${options[*]} $corpus test/fuzz/corpus/$target)"
    known=$(find "$artifacts" -type f | sort)
    status=0
    started=$SECONDS
    "$bin" "${options[@]}" "$corpus" "test/fuzz/corpus/$target" > "$log" 2>&1 || status=$?
    elapsed=$((SECONDS - started))
    tail -n 20 "$log"
    crashes=0
    # New artifacts (crash-, leak-, timeout-, oom-) become regression inputs.
    while IFS= read -r input; do
        cp "$input" "test/fuzz/regressions/$target/"
        echo "$target: saved $(basename "$input") to test/fuzz/regressions/$target/"
        crashes=$((crashes + 1))
    done < <(comm -13 <(printf '%s\n' "$known") <(find "$artifacts" -type f | sort) | sed '/^$/d')
    done_line=$(grep -a -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
    runs=$(grep -a 'stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -n 1)
    cov=$(grep -a -o 'cov: [0-9]*' "$log" | tail -n 1)
    ft=$(grep -a -o 'ft: [0-9]*' "$log" | tail -n 1)
    summary+=("$target: ${elapsed}s, runs ${runs:-?}, ${cov:-cov: ?}, ${ft:-ft: ?}, exit $status, new crashes $crashes${done_line:+, $done_line}")
    if ((status != 0 || crashes != 0)); then
        failed=1
    fi
done

echo "==== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
