#!/usr/bin/env bash
# Runs two asqlite-bench binaries alternately, N times each, with the same
# arguments, and prints one summary line per run: on a shared machine only
# runs made back to back in the same minutes can be compared.
#
#   bash bench/compare_builds.sh OLD_BINARY NEW_BINARY N [asqlite-bench args...]
#   bash bench/compare_builds.sh /tmp/old/build/bench/asqlite-bench \
#        build/release/bench/asqlite-bench 3 --workload read,mixed --ops 30000
set -euo pipefail
if [[ $# -lt 3 ]]; then
  sed -n '2,8p' "$0" >&2
  exit 2
fi
old=$1 new=$2 n=$3
shift 3
for bin in "$old" "$new"; do
  [[ -x $bin ]] || { echo "compare_builds: $bin is not an executable" >&2; exit 2; }
done
for ((i = 1; i <= n; i++)); do
  for side in old new; do
    bin=$old
    [[ $side == new ]] && bin=$new
    out=$("$bin" "$@" 2>/dev/null) || { echo "compare_builds: $side run $i failed" >&2; exit 1; }
    # Rows: "<workload> [<conc>] asqlite <ops/s> ... <CPU us/op> <sys>" and
    # "<workload> [<conc>] raw ..." (builds before the conc column lack it).
    awk -v s="$side" -v i="$i" '
      { o = ($2 ~ /^[0-9]+$/) ? 1 : 0 }
      $(2 + o) == "asqlite" { w = $1 (o ? "@" $2 : ""); a = $(3 + o); c = $(7 + o); y = $(8 + o) }
      $(2 + o) == "raw"     { printf "%s run %d %-9s asqlite %8d ops/s  raw %8d ops/s  ratio %.2f  CPU us/op %6.2f (sys %5.2f) vs raw %5.2f\n", s, i, w, a, $(3 + o), a / $(3 + o), c, y, $(7 + o) }
    ' <<<"$out"
  done
done
