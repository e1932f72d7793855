#!/usr/bin/env bash
# diff, verify and `diff -r` through the mount, against reading the same files
# with cat, on the peers.sh corpus; each cold (caches dropped) and then warm
# (the same command again at once):
#   diff A B      rewind diff between the backups of gen1 and gen2 (peers.sh's
#                 "day 2": 2% of the source files edited, a few added/deleted)
#   diff B LIVE   rewind diff of the gen2 snapshot against the unchanged live tree
#   diff -r       GNU diff -r --no-dereference between the gen2 snapshot, in a
#                 fresh `mount --daemon --snapshot` for each cold round, and
#                 the live tree
#   verify        rewind verify of the gen2 snapshot against a full restore of it
#   cat           every file of that restore read by cat (find | xargs), one
#                 at a time, then 8 at a time
# It prints a markdown table (median of ROUNDS, with the range) and the
# measured: line of scripts/bench-lib.sh.
#
#   scripts/bench-diff.sh                       # full corpus, 3 rounds
#   BENCH_SMALL=1 ROUNDS=5 scripts/bench-diff.sh
#   BENCH_MACHINE_NOTE="shared 2-core VM" scripts/bench-diff.sh
#
# The live tree is a copy of gen1 that rsync turns into gen2 between the two
# backups. The repository is encrypted, with the default key derivation
# (Argon2id 64 MiB, 3 passes: part of every rewind figure). Everything lives
# in a directory of its own under BENCH_WORK, deleted at the end. Needs root
# (drop_caches, FUSE), rsync and the peers corpus (peers_corpus in
# bench-lib.sh). REWIND_BIN overrides the binary in cargo's target directory.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
corpus=$(peers_corpus)
rounds=${ROUNDS:-3}
bin=${REWIND_BIN:-$(target_dir)/release/rewind}
[ -x "$bin" ] || { echo "bench-diff: no binary at $bin (cargo build --release)" >&2; exit 1; }
command -v rsync >/dev/null || { echo "bench-diff: needs rsync" >&2; exit 1; }

work=$(scratch_dir "${BENCH_WORK:-/tmp/bench-work}" bench-diff)
repo=$work/repo live=$work/live restored=$work/restored mnt=$work/mnt
unmount() {
  if mountpoint -q "$mnt"; then
    "$bin" umount "$mnt" >/dev/null 2>&1 || fusermount3 -u "$mnt"
  fi
}
cleanup() {
  unmount || true
  # Never delete through a mount that is still there.
  if mountpoint -q "$mnt"; then
    echo "bench-diff: $mnt is still mounted; $work left in place" >&2
  else
    rm -rf -- "$work"
  fi
}
trap cleanup EXIT
export REWIND_PASSWORD=bench-diff-password REWIND_CACHE_DIR=$work/cache
unset REWIND_KDF_PARAMS
rw() { "$bin" --repo "$repo" "$@"; }

echo "bench-diff: backing up gen1 and gen2 of $corpus in $work" >&2
cp -a "$corpus/gen1" "$live"
rw init -q >/dev/null
rw backup -q --tag gen1 "$live"
# --checksum: an edited file may keep its size and peers.sh's fixed mtime.
rsync -a --checksum --delete "$corpus/gen2/" "$live/"
rw backup -q --tag gen2 "$live"
read -r a b < <(rw snapshots --json |
  python3 -c 'import json, sys; s = json.load(sys.stdin); print(s[0]["id"], s[-1]["id"])')
rw restore -q "$b" --target "$restored"
changes=$(rw diff "$a" "$b" | grep -c $'\t' || true)
bytes=$(find "$live" -type f -printf '%s\n' | awk '{s += $1} END{printf "%d", s}')
mkdir -p "$mnt"

# run WANT_RC COMMAND...: runs it, prints its wall time in seconds, and
# stops the script on any other exit code (a failing command is no figure).
run() {
  local want=$1 start rc=0
  shift
  start=$EPOCHREALTIME
  "$@" >"$work/out" 2>&1 || rc=$?
  if [ "$rc" != "$want" ]; then
    echo "bench-diff: $* exited with $rc, not $want:" >&2
    tail -5 "$work/out" >&2
    return 1
  fi
  awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.3f", b-a}'
}
cold() { drop_caches || true; }
mounted() { # a fresh mount of snapshot B, for a cold diff -r
  unmount
  rw mount -q --daemon --snapshot "$b" "$mnt" >/dev/null 2>&1
}
cat_serial() { find "$restored" -type f -print0 | xargs -0 cat >/dev/null; }
cat_parallel() { find "$restored" -type f -print0 | xargs -0 -P8 -n64 cat >/dev/null; }

rows=(diff_ab diff_live diff_r verify cat1 cat8)
declare -A label=(
  [diff_ab]="\`rewind diff A B\`, gen1 to gen2 ($changes changes)"
  [diff_live]="\`rewind diff B LIVE\`, unchanged tree"
  [diff_r]="\`diff -r\` between the mounted snapshot B and the live tree"
  [verify]="\`rewind verify B DIR\` of a full restore"
  [cat1]="\`cat\` of the same files, one at a time"
  [cat8]="\`cat\` of the same files, 8 at a time"
)
declare -A colds warms
for round in $(seq "$rounds"); do
  echo "bench-diff: round $round of $rounds" >&2
  for r in "${rows[@]}"; do
    case $r in
      diff_ab) cmd=(rw diff "$a" "$b") want=1 ;;
      diff_live) cmd=(rw diff "$b" "$live") want=0 ;;
      diff_r) cmd=(diff -r --no-dereference "$mnt$live" "$live") want=0 ;;
      verify) cmd=(rw verify "$b" "$restored") want=0 ;;
      cat1) cmd=(cat_serial) want=0 ;;
      cat8) cmd=(cat_parallel) want=0 ;;
    esac
    cold
    [ "$r" = diff_r ] && mounted
    colds[$r]+="$(run "$want" "${cmd[@]}") "
    warms[$r]+="$(run "$want" "${cmd[@]}") "
  done
done
unmount

# summary "V V V": "median s (min-max)", or "V s" for one round.
summary() {
  tr ' ' '\n' <<<"$1" | grep . | sort -n |
    awk '{v[NR]=$1} END{m=v[int((NR+1)/2)];
      if (NR == 1) printf "%.2f s", m; else printf "%.2f s (%.2f-%.2f)", m, v[1], v[NR]}'
}
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }

echo
echo "| what | cold, median of $rounds (range) | warm |"
echo "|---|---|---|"
for r in "${rows[@]}"; do
  c=$(summary "${colds[$r]}")
  if [ "$r" = verify ]; then
    c+=$(awk -v b="$bytes" -v s="$(median "${colds[$r]}")" 'BEGIN{printf ", %.0f MB/s", b/1e6/s}')
  fi
  echo "| ${label[$r]} | $c | $(summary "${warms[$r]}") |"
done
echo
machine_line "$(basename "$corpus")/gen2, $(corpus_size "$live")"
