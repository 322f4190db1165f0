#!/usr/bin/env bash
# The README's command 1: installs the missing Debian packages, builds the
# release preset and runs the main job.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh
cmake --preset release
cmake --build --preset release -j"$(nproc)"

# ---------------------------------------------------------------------------
# Main job. Later issues replace this function: first with the async demo,
# then with the throughput benchmark (asqlite-bench).
# Now: a fresh database made by the CLI, then the sync demo stores and reads
# back a few FileInfo rows in it with echo on.
# ---------------------------------------------------------------------------
main_job() {
    local bin=build/release
    local db_dir=$bin/main-job
    local db=$db_dir/demo.db

    rm -rf "$db_dir"
    mkdir -p "$db_dir"
    echo "== main job: asqlite-init-db --db $db"
    "$bin/asqlite-init-db" --db "$db"
    echo "== main job: asqlite-demo --db $db"
    "$bin/examples/asqlite-demo" --db "$db"
    echo "== main job done; the database is $db"
}

main_job
