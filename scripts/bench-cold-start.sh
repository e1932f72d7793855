#!/usr/bin/env bash
# Cold start: the time to exec a program from a dropped page cache and have
# it print its version, for rewind and the FUSE peers peers.sh mounts
# (squashfuse_ll, borg). A cold `rewind mount` pays this before it can mount:
# the kernel reads the whole binary at exec (read-around of the device's
# read-ahead, 8 MiB on this VM), and its shared libraries.
#
#   scripts/bench-cold-start.sh            # 9 rounds each
#   ROUNDS=15 scripts/bench-cold-start.sh
#   REWIND_BIN=/tmp/other/rewind scripts/bench-cold-start.sh
#
# Needs root (drop_caches). Prints the median and every round, in ms, and
# the measured: line of scripts/bench-lib.sh.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
rounds=${ROUNDS:-9}
bin=${REWIND_BIN:-$(target_dir)/release/rewind}
[ -x "$bin" ] || { echo "bench-cold-start: $bin missing (cargo build --release)" >&2; exit 1; }

one() { # CMD...: one cold round, prints ms
  local start end
  drop_caches || true
  start=$EPOCHREALTIME
  "$@" >/dev/null 2>&1 || true
  end=$EPOCHREALTIME
  awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", (b-a)*1000}'
}

cmds=("$bin --version")
command -v squashfuse_ll >/dev/null && cmds+=("squashfuse_ll --version")
command -v borg >/dev/null && cmds+=("borg --version")
printf '%s\n' "binary sizes: $(stat -c '%n %s' "$bin")"
for c in "${cmds[@]}"; do
  vals=()
  for _ in $(seq "$rounds"); do
    # shellcheck disable=SC2086 # the command is split on purpose
    vals+=("$(one $c)")
  done
  median=$(printf '%s\n' "${vals[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  echo "${c%% *} cold exec ms: median $median of ${vals[*]}"
done
machine_line "none (the binaries: $bin and its peers)"
