#!/usr/bin/env bash
# Installs the Debian 12 packages asqlite needs to build, test, fuzz (clang-14
# and its libFuzzer and sanitizer runtimes, llvm-14's symbolizer) and benchmark,
# and only those that are missing: apt is not touched when everything is
# there. Without root it prints the command to run and exits 1.
set -euo pipefail

packages=(
    cmake g++ make pkg-config
    libboost1.81-dev libsqlite3-dev sqlite3 libfmt-dev libssl-dev
    libgtest-dev libgmock-dev googletest libbenchmark-dev
    clang-14 libclang-rt-14-dev llvm-14
)

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    if [[ $status != installed ]]; then
        missing+=("$package")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "install-deps: all ${#packages[@]} Debian packages are installed; apt skipped"
    exit 0
fi

echo "install-deps: missing: ${missing[*]}"
if ((EUID != 0)); then
    echo "install-deps: not running as root; install them with:" >&2
    echo "sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
