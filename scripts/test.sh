#!/usr/bin/env bash
# The README's command 2: installs the missing Debian packages, then builds
# and runs the whole ctest suite in the debug and asan (ASan+UBSan) presets,
# and in tsan too when ASQLITE_WITH_TSAN=1. Stops at the first failure. The
# last thing printed is ctest's summary of the last preset.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh

presets=(debug asan)
if [[ ${ASQLITE_WITH_TSAN:-0} == 1 ]]; then
    presets+=(tsan)
fi

for preset in "${presets[@]}"; do
    echo "==== preset $preset: configure, build, ctest"
    cmake --preset "$preset"
    cmake --build --preset "$preset" -j"$(nproc)"
    ctest --preset "$preset" -j2
done
