#!/usr/bin/env bash
# `rewind find` and the mount's history/ over many nightly snapshots, cold
# (caches dropped before each run): the time of a find over every snapshot
# against one over a single snapshot, and of listing one file's versions in
# a fresh mount (site/wp-config.php, and a source file 8 levels deep), with
# the mount process's peak memory.
#
#   scripts/bench-history.sh [SOURCE_DIR]        # 200 nights, 3 rounds
#   NIGHTS=50 ROUNDS=5 scripts/bench-history.sh
#   REPO=/tmp/bench-work/many-snapshots/repo FILE=<path in the snapshots> \
#     scripts/bench-history.sh                   # an existing repository
#
# SOURCE_DIR defaults to the peers.sh corpus ($BENCH_WORK/corpus-full/gen2,
# 80k files). The repository is built once in $BENCH_WORK/history-nights and
# reused while it holds enough snapshots: a hard-link copy of SOURCE_DIR is
# backed up, then each further night changes it a little, as a web server's
# night does, and is backed up again: 20 source files get a line appended
# (replaced, not edited, so the corpus stays as it is), one upload is added,
# and every fifth night site/wp-config.php is rewritten. The first backup is
# tagged `first`, so `--tag first` searches one snapshot. Needs root
# (drop_caches, FUSE). REWIND_BIN overrides the binary in cargo's target
# directory. Ends with the measured: line of scripts/bench-lib.sh.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
work=${BENCH_WORK:-/tmp/bench-work}
src=${1:-$work/corpus-full/gen2}
nights=${NIGHTS:-200}
rounds=${ROUNDS:-3}
bin=${REWIND_BIN:-$(target_dir)/release/rewind}
# A password for the repository it makes (and reuses).
export REWIND_PASSWORD=${REWIND_PASSWORD:-history-bench-password}
base=$work/history-nights
repo=${REPO:-$base/repo}
live=$base/live
mnt=$base/mnt

[ -x "$bin" ] || { echo "bench-history: no binary at $bin (cargo build --release)" >&2; exit 1; }
mkdir -p "$mnt"
mountpoint -q "$mnt" && "$bin" umount "$mnt"
rw() { "$bin" --repo "$repo" "$@"; }
count() { rw snapshots --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'; }

# One night's changes to the live copy.
night() {
  local n=$1 f i=0
  while read -r f; do
    cp -p "$f" "$f.new" && echo "/* night $n */" >>"$f.new" && mv "$f.new" "$f"
  done < <(awk -v n="$n" 'NR % 997 == (n * 37) % 997' "$base/sources.list" | head -20)
  head -c $((50000 + n * 1000)) /dev/urandom >"$live/site/media/night-$n.bin"
  if [ $((n % 5)) = 0 ]; then
    printf "<?php\ndefine('DB_PASSWORD', 'night %d');\n" "$n" >"$live/site/wp-config.php"
  fi
}

if [ -z "${REPO:-}" ]; then
  [ -d "$src" ] || { echo "bench-history: no source $src (run peers.sh, or name a directory)" >&2; exit 1; }
  if [ ! -e "$repo/config" ]; then
    rm -rf "$live" && mkdir -p "$base" && cp -al "$src" "$live"
    mkdir -p "$live/site/media"
    printf "<?php\ndefine('DB_PASSWORD', 'first');\n" >"$live/site/wp-config.php"
    (cd "$live" && find linux -type f -name '*.c' | LC_ALL=C sort) >"$base/sources.list"
    sed -i "s|^|$live/|" "$base/sources.list"
    rw init >/dev/null
    rw backup --host bench --tag nightly --tag first "$live" >/dev/null
  fi
  have=$(count)
  if [ "$have" -lt "$nights" ]; then
    echo "bench-history: backing up nights $((have + 1))-$nights of $live" >&2
    for n in $(seq $((have + 1)) "$nights"); do
      night "$n"
      rw backup --host bench --tag nightly "$live" >/dev/null
    done
  fi
  file=${FILE:-${live#/}/site/wp-config.php}
  # A source file deep in the tree that night 2 changed.
  deep=$(awk 'NR % 997 == 74' "$base/sources.list" | head -1)
  listed=("$file" "${deep#/}")
else
  file=${FILE:?FILE: the path (without the leading /) of a file in the snapshots of REPO}
  listed=("$file")
fi
echo "bench-history: $(count) snapshots in $repo; file $file" >&2

now() { date +%s.%N; }
cold() { drop_caches || true; } # a warm run is still timed, but says so
timed() { # LABEL COMMAND...: one cold run, its time and output lines
  local label=$1 start end lines
  shift
  cold
  start=$(now)
  lines=$("$@" | wc -l)
  end=$(now)
  awk -v l="$label" -v a="$start" -v b="$end" -v n="$lines" 'BEGIN{printf "%-44s %.3f s  (%d lines)\n", l, b-a, n}'
}
name=$(basename "$file")
first=()
[ -z "${REPO:-}" ] && first=(--tag first)
for _ in $(seq "$rounds"); do
  set +e
  timed "find $name, every snapshot" rw find "$name"
  [ -n "${first[*]}" ] && timed "find $name, one snapshot (--tag first)" rw find "$name" "${first[@]}"
  timed "find no-such-name, every snapshot" rw find no-such-name
  [ -n "${first[*]}" ] && timed "find no-such-name, one snapshot" rw find no-such-name "${first[@]}"
  set -e
  for f in "${listed[@]}"; do
    cold
    msg=$(rw mount --daemon "$mnt" 2>&1)
    pid=$(sed -n 's/.*(process \([0-9]*\)).*/\1/p' <<<"$msg")
    start=$(now)
    versions=$(ls -l "$mnt/history/$f/" | tail -n +2 | wc -l)
    end=$(now)
    hwm=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")
    rw umount "$mnt"
    awk -v l="ls -l history/…/$(basename "$f")/, fresh mount" -v a="$start" -v b="$end" -v n="$versions" -v k="$hwm" \
      'BEGIN{printf "%-44s %.3f s  (%d versions), mount peak RSS %.1f MiB\n", l, b-a, n, k/1024}'
  done
done
if [ -z "${REPO:-}" ]; then
  machine_line "$(count) nights of $src ($(corpus_size "$src") on the first)"
else
  machine_line "$(count) snapshots in $repo"
fi
