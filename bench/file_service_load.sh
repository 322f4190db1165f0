#!/usr/bin/env bash
# Load test of asqlite-file-service with wrk, on 127.0.0.1 only.
#
#   bench/file_service_load.sh [BUILD_DIR]     (default: build/release)
#
# Seeds a fresh database (in a temporary directory) with FILES uploads made
# through the service itself, then runs wrk for DURATION on three routes:
# GET /preview (database read + file read), POST /get_file (database read
# only) and POST /upload_file (one upsert write transaction per request).
# Stops the server with SIGTERM and checks it exits 0. Prints wrk's output and
# a Markdown summary table.
#
# Environment: DURATION (10s), THREADS (2), CONNECTIONS (32), FILES (1000),
# IO_THREADS (2, the server's --io-threads), plus the server's own ASQLITE_*
# variables. Needs wrk and curl (Debian packages of the same names).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${1:-$root/build/release}
server_bin=$build_dir/examples/file_service/asqlite-file-service
duration=${DURATION:-10s}
threads=${THREADS:-2}
connections=${CONNECTIONS:-32}
files=${FILES:-1000}
io_threads=${IO_THREADS:-2}
scripts=$root/bench/file_service

for tool in wrk curl; do
    if ! command -v "$tool" >/dev/null; then
        echo "file_service_load: '$tool' is not installed; install it with:" >&2
        echo "sudo apt-get install -y --no-install-recommends $tool" >&2
        exit 1
    fi
done
if [[ ! -x $server_bin ]]; then
    echo "file_service_load: no server binary at $server_bin" >&2
    echo "build it first: cmake --build $build_dir --target asqlite-file-service" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/asqlite-file-service-load.XXXXXX")
server_pid=
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The server prints "listening on 127.0.0.1:PORT" once ready (--port 0: a
# free port). SQL echo of init_db and the log go to server.log.
mkfifo "$work/stdout"
ASQLITE_ECHO=${ASQLITE_ECHO:-0} "$server_bin" --db "$work/load.db" --data-dir "$work/data" \
    --bind 127.0.0.1 --port 0 --io-threads "$io_threads" \
    >"$work/stdout" 2>"$work/server.log" &
server_pid=$!
exec 3<"$work/stdout"
if ! read -r -t 20 line <&3 || [[ $line != "listening on 127.0.0.1:"* ]]; then
    echo "file_service_load: the server did not start:" >&2
    cat "$work/server.log" >&2
    exit 1
fi
port=${line##*:}
base=http://127.0.0.1:$port

# Seed through the service: one curl process, one keep-alive connection.
content=$(head -c 2048 /dev/zero | tr '\0' 'y')
for ((i = 0; i < files; i++)); do
    printf 'url = "%s/v1/file_tool/upload_file"\n' "$base"
    printf 'header = "Content-Type: application/json"\n'
    printf 'data = "{\\"request_id\\": \\"seed-%d\\", \\"file_name\\": \\"file-%d.md\\", ' \
        $((i % 100)) "$i"
    printf '\\"description\\": \\"seed\\", \\"content\\": \\"%s\\"}"\n' "$content"
    printf 'output = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n'
    ((i + 1 < files)) && printf 'next\n'
done >"$work/seed.curl"
seeded=$(curl -s -K "$work/seed.curl" | grep -c '^200$' || true)
if ((seeded != files)); then
    echo "file_service_load: seeding stored $seeded of $files files" >&2
    exit 1
fi
echo "seeded $files files (2 KiB each, 100 request ids) through POST /upload_file"

declare -a summary
run_wrk() {
    local name=$1 script=$2
    shift 2
    local cmd=(wrk -t"$threads" -c"$connections" -d"$duration" --latency -s "$script" "$base" "$@")
    echo
    echo "== $name: ${cmd[*]/$scripts\//bench/file_service/}"
    local out
    out=$("${cmd[@]}")
    echo "$out"
    local rps p50 p90 p99 errors
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p90=$(awk '$1 == "90%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    errors=${errors:-0}
    summary+=("| $name | $rps | $p50 | $p90 | $p99 | $errors |")
}

run_wrk "GET /preview" "$scripts/preview.lua" -- "$files"
run_wrk "POST /get_file" "$scripts/get_file.lua" -- "$files"
run_wrk "POST /upload_file" "$scripts/upload.lua"

kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=
if ((status != 0)); then
    echo "file_service_load: the server exited with $status after SIGTERM" >&2
    cat "$work/server.log" >&2
    exit 1
fi
rows=$(sqlite3 "$work/load.db" 'SELECT count(*) FROM fileinfo' 2>/dev/null || echo '?')

echo
echo "server: --io-threads $io_threads; wrk: -t$threads -c$connections -d$duration;" \
    "rows at the end: $rows; $(nproc) CPUs"
echo
echo "| route | requests/s | p50 | p90 | p99 | non-2xx |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${summary[@]}"
