#!/usr/bin/env bash
# prune's peak memory against the number of blobs it weighs: for each N in
# SIZES, a repository of 4 backups of N small files (every file new in each
# backup, so 4 * N blobs), all but the newest forgotten, then
# `rewind prune --max-unused 0%`, whose peak RSS (/usr/bin/time's maximum
# resident set), its growth per added blob, and wall time are printed as a
# markdown table, with the measured: line of scripts/bench-lib.sh. The
# repositories are those of the test prune_memory_does_not_grow_with_the_repository
# (tests/it/promises), which checks the growth.
#
#   scripts/bench-prune-memory.sh                  # SIZES="500 5000 50000"
#   SIZES="500 5000" scripts/bench-prune-memory.sh
#
# The key derivation is made small (REWIND_KDF_PARAMS, as the tests set it),
# so that Argon2id's 64 MiB do not hide prune's own memory. Everything lives
# in a directory of its own under BENCH_WORK (default /tmp), deleted at the
# end. REWIND_BIN overrides the binary in cargo's target directory.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
sizes=${SIZES:-500 5000 50000}
bin=${REWIND_BIN:-$(target_dir)/release/rewind}
[ -x "$bin" ] || { echo "bench-prune-memory: no binary at $bin (cargo build --release)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench-prune-memory: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
work=$(scratch_dir "${BENCH_WORK:-${TMPDIR:-/tmp}}" bench-prune-memory)
trap 'rm -rf -- "$work"' EXIT
export REWIND_PASSWORD=bench-prune-memory REWIND_KDF_PARAMS=m=64K,t=1,p=1
export REWIND_CACHE_DIR=$work/cache

echo "| blobs | prune peak RSS | growth per blob from the row above | prune wall time |"
echo "|---|---|---|---|"
for n in $sizes; do
  repo=$work/repo-$n src=$work/src-$n
  mkdir -p "$src"
  "$bin" --repo "$repo" init -q >/dev/null
  for round in 0 1 2 3; do
    for i in $(seq 0 $((n - 1))); do
      echo "round $round file $i" >"$src/f$i"
    done
    "$bin" --repo "$repo" backup -q "$src"
  done
  "$bin" --repo "$repo" forget -q --keep-last 1 >/dev/null
  /usr/bin/time -o "$work/time" -f '%M %e' "$bin" --repo "$repo" prune -q --max-unused 0% >/dev/null
  read -r kib secs <"$work/time"
  awk -v n="$n" -v k="$kib" -v s="$secs" -v pn="${prev_n:-}" -v pk="${prev_kib:-}" 'BEGIN{
    g = pn == "" ? "-" : sprintf("%.0f bytes", (k - pk) * 1024 / (4 * (n - pn)))
    printf "| %d | %.1f MB | %s | %.2f s |\n", 4*n, k*1024/1e6, g, s}'
  prev_n=$n prev_kib=$kib
  rm -rf -- "$repo" "$src"
done
echo
machine_line "4 x N files of about 20 bytes"
