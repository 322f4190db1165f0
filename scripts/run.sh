#!/usr/bin/env bash
# The README's command 1: installs the missing Debian packages, builds the
# release preset and runs the main job.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh
cmake --preset release
cmake --build --preset release -j"$(nproc)"

# ---------------------------------------------------------------------------
# Main job: the throughput benchmark, short run. asqlite-bench seeds a fresh
# temporary database with 10,000 FileInfo rows, runs the read, write, upsert,
# mixed, seq5 and write-tx workloads through the async engine (one
# coroutine: a quiet server; 64: a busy one) and through raw sqlite3 in the
# same run, prints both side by side, checks that the idle engine uses no
# CPU, and removes the database; then the writes again with
# synchronous=full. Longer runs and the figures: docs/benchmarks.md.
# ---------------------------------------------------------------------------
main_job() {
    local bin=build/release
    echo "== main job: asqlite-bench --concurrency 1,64 --ops 20000 --repeat 3 --idle 5"
    "$bin/bench/asqlite-bench" --concurrency 1,64 --ops 20000 --repeat 3 --idle 5
    echo "== main job, writes with synchronous=full (one fsync per commit; group commit shares it):"
    echo "== asqlite-bench --workload write,upsert,mixed --synchronous full --concurrency 64 --ops 20000 --repeat 3"
    "$bin/bench/asqlite-bench" --workload write,upsert,mixed --synchronous full --concurrency 64 \
        --ops 20000 --repeat 3
    echo "== main job done (figures and how to read them: docs/benchmarks.md)"
}

main_job
