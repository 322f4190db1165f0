#!/usr/bin/env bash
# The README's command 2: installs the missing Debian packages, then builds
# and runs the whole ctest suite in the debug, asan (ASan+UBSan) and tsan
# (ThreadSanitizer) presets, then the fuzz preset (clang++-14, libFuzzer with
# ASan+UBSan: a short fixed-seed smoke run of every fuzz target and the
# replay of test/fuzz/regressions/). Stops at the first failure. The last
# thing printed is ctest's summary of the last preset. ASQLITE_PRESETS="debug"
# (a space-separated list) runs fewer while developing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh

read -r -a presets <<< "${ASQLITE_PRESETS:-debug asan tsan fuzz}"

for preset in "${presets[@]}"; do
    echo "==== preset $preset: configure, build, ctest"
    cmake --preset "$preset"
    cmake --build --preset "$preset" -j"$(nproc)"
    ctest --preset "$preset" -j2
done
