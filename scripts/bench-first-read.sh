#!/usr/bin/env bash
# Time from starting a mount to the first readable byte of a file in it,
# cold cache, for rewind and squashfuse_ll measured the same way, two ways:
#   waitfile  start the mount in the background and poll the file at once
#             with peers.sh's own `waitfile` (python), as peers.sh does for
#             squashfs. Python's cold start (~0.1 s) is most of the figure.
#             (peers.sh waits for rewind's mount with `mountpoint -q` every
#             50 ms, then probes its root, before it starts python; this
#             leaves that out, for both tools.)
#   shell     poll with a shell builtin (no program to start): the mount's
#             own start-up, lookups and first read.
#
#   scripts/bench-first-read.sh            # 7 rounds each, after a peers.sh run
#   ROUNDS=15 scripts/bench-first-read.sh
#
# It uses the corpus and repositories a peers.sh run left in BENCH_WORK
# (default /tmp/bench-work): repo/rewind and repo/squashfs/gen2.sqfs. Needs
# root (drop_caches, FUSE). REWIND_BIN overrides the release binary in
# cargo's target directory (CARGO_TARGET_DIR), PEERS_HELPER the helper's
# path (REWIND_SHARED the shared folder's). Ends with the measured: line of
# scripts/bench-lib.sh.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
work=${BENCH_WORK:-/tmp/bench-work}
rounds=${ROUNDS:-7}
helper=${PEERS_HELPER:-$(shared_dir)/bench/peers_helper.py}
bin=${REWIND_BIN:-$(target_dir)/release/rewind}
probe=site/db/dump.sql
# peers.sh's password for its encrypted repository, and its local cache.
export REWIND_PASSWORD=${REWIND_PASSWORD:-peers-bench-fixed-password}
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-$work/cache/rewind}
mnt=$work/mnt/first-read

for f in "$helper" "$bin" "$work/repo/rewind/config"; do
  [ -e "$f" ] || { echo "bench-first-read: $f missing (run peers.sh first)" >&2; exit 1; }
done
mkdir -p "$mnt"
mountpoint -q "$mnt" && fusermount3 -u "$mnt"

# Where the backed-up tree sits in a mount of the latest snapshot: the
# snapshot keeps absolute paths.
live=$("$bin" --repo "$work/repo/rewind" snapshots --json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)[-1]["paths"][0])')

# A warm run is still timed, but says so (drop_caches warns).
drop() { drop_caches || true; }

one() { # TOOL HOW: one cold round, prints seconds
  local pid start file v c
  drop
  start=$EPOCHREALTIME
  case $1 in
    rewind)
      "$bin" mount --repo "$work/repo/rewind" --snapshot latest "$mnt" 2>/dev/null & pid=$!
      file=$mnt$live/$probe ;;
    squashfuse)
      squashfuse_ll -f "$work/repo/squashfs/gen2.sqfs" "$mnt" & pid=$!
      file=$mnt/$probe ;;
  esac
  case $2 in
    waitfile) v=$(python3 "$helper" waitfile "$file" "$start" 60 "$pid") ;;
    shell) # spins: the most exact poll, on one of the two cores, for both tools
      SECONDS=0
      until { IFS= read -r -n1 c <"$file"; } 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -gt 60 ]; then
          v="gave up" && break
        fi
      done
      [ -n "${v:-}" ] || v=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.4f", b-a}') ;;
  esac
  fusermount3 -u "$mnt" 2>/dev/null || kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "$v"
}

tools=(rewind)
if command -v squashfuse_ll >/dev/null && [ -e "$work/repo/squashfs/gen2.sqfs" ]; then
  tools+=(squashfuse)
fi
for how in waitfile shell; do
  for t in "${tools[@]}"; do
    vals=()
    for _ in $(seq "$rounds"); do
      v=$(one "$t" "$how")
      [[ $v =~ ^[0-9.]+$ ]] || { echo "bench-first-read: $t ($how): $v" >&2; exit 1; }
      vals+=("$v")
    done
    median=$(printf '%s\n' "${vals[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
    echo "$t first_read_s ($how) median $median of ${vals[*]}"
  done
done
machine_line "the peers.sh repositories in $work ($probe of the latest snapshot)"
