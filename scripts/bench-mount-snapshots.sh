#!/usr/bin/env bash
# Mount a repository of many snapshots and list them, cold: the time from
# `rewind mount --daemon` to the answer of the first `ls snapshots/`, and the
# mount process's peak memory.
#
#   scripts/bench-mount-snapshots.sh [SOURCE_DIR]     # 200 snapshots, 3 rounds
#   SNAPSHOTS=50 ROUNDS=5 scripts/bench-mount-snapshots.sh
#
# SOURCE_DIR defaults to the peers.sh corpus ($BENCH_WORK/corpus-full/gen2,
# 80k files). The repository is built once in $BENCH_WORK/many-snapshots
# (the first backup, then one unchanged backup per further snapshot: a few
# minutes) and reused while it holds enough snapshots. Needs root
# (drop_caches, FUSE). REWIND_BIN overrides target/release/rewind. Ends with
# the measured: line of scripts/bench-lib.sh.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
work=${BENCH_WORK:-/tmp/bench-work}
src=${1:-$work/corpus-full/gen2}
want=${SNAPSHOTS:-200}
rounds=${ROUNDS:-3}
bin=${REWIND_BIN:-$(target_dir)/release/rewind}
repo=$work/many-snapshots/repo
mnt=$work/many-snapshots/mnt

[ -x "$bin" ] || { echo "bench-mount-snapshots: no binary at $bin (cargo build --release)" >&2; exit 1; }
[ -d "$src" ] || { echo "bench-mount-snapshots: no source $src (run peers.sh, or name a directory)" >&2; exit 1; }
mkdir -p "$mnt"
mountpoint -q "$mnt" && "$bin" umount "$mnt"

count() { "$bin" --repo "$repo" snapshots --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'; }
[ -e "$repo/config" ] || "$bin" init --repo "$repo" >/dev/null
have=$(count)
if [ "$have" -lt "$want" ]; then
  echo "bench-mount-snapshots: writing $((want - have)) snapshots of $src" >&2
  for _ in $(seq "$have" $((want - 1))); do
    "$bin" --repo "$repo" backup --host bench --tag many "$src" >/dev/null
  done
fi
echo "bench-mount-snapshots: $(count) snapshots of $src in $repo" >&2

now() { date +%s.%N; }
for _ in $(seq "$rounds"); do
  drop_caches || true
  start=$(now)
  msg=$("$bin" mount --repo "$repo" --daemon "$mnt" 2>&1)
  listed=$(ls "$mnt/snapshots" | wc -l)
  end=$(now)
  pid=$(sed -n 's/.*(process \([0-9]*\)).*/\1/p' <<<"$msg")
  hwm=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")
  "$bin" umount "$mnt"
  awk -v a="$start" -v b="$end" -v n="$listed" -v k="$hwm" \
    'BEGIN{printf "mount + first ls of %d names: %.3f s, mount process peak RSS %.1f MiB\n", n, b-a, k/1024}'
done
machine_line "$(count) snapshots of $src ($(corpus_size "$src"))"
