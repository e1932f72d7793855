#!/usr/bin/env bash
# `rewind dump` against `rewind restore` on the peers corpus, cold cache:
#   restore    rewind restore latest:LIVE --target DIR, then sync
#   dump-null  rewind dump latest:LIVE >/dev/null (decode and tar framing only)
#   dump-tar   rewind dump latest:LIVE | tar -xpf - -C DIR, then sync
#   dump-xattr the same with tar --xattrs --xattrs-include='*' --acls
# Each is run ROUNDS times (caches dropped before each); the median wall time,
# its MB/s (corpus bytes / s, 10^6) and the largest peak RSS of rewind are
# printed. Before timing, one dump | tar -x is checked against the corpus
# itself (diff -r, and the type, mode, size and mtime of every entry).
#
#   scripts/bench-dump.sh              # 5 rounds each, after a peers.sh run
#   ROUNDS=3 scripts/bench-dump.sh
#
# It uses the corpus and repository a peers.sh run left in BENCH_WORK
# (default /tmp/bench-work): repo/rewind, whose latest snapshot is gen2, and
# corpus-*/gen2. Make them with `TOOLS=rewind BENCH_SMALL=1 scripts/bench-peers.sh`
# (or the full corpus without BENCH_SMALL). Needs root (drop_caches, owners).
# REWIND_BIN overrides the binary in cargo's target directory. Ends with the
# measured: line of scripts/bench-lib.sh.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
work=${BENCH_WORK:-/tmp/bench-work}
rounds=${ROUNDS:-5}
bin=${REWIND_BIN:-$(target_dir)/release/rewind}
# peers.sh's password for the encrypted repository, and its local cache.
export REWIND_PASSWORD=${REWIND_PASSWORD:-peers-bench-fixed-password}
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-$work/cache/rewind}
repo=$work/repo/rewind
out=$(scratch_dir "$work" dump-bench)
trap 'rm -rf -- "$out"' EXIT

for f in "$bin" "$repo/config"; do
  [ -e "$f" ] || { echo "bench-dump: $f missing (run TOOLS=rewind scripts/bench-peers.sh first)" >&2; exit 1; }
done
command -v /usr/bin/time >/dev/null || { echo "bench-dump: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

# The snapshot keeps the absolute path that was backed up (corpus-*/live);
# peers.sh leaves gen2 under its own name afterwards.
live=$("$bin" --repo "$repo" snapshots --json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)[-1]["paths"][0])')
gen2=$(dirname "$live")/gen2
[ -d "$gen2" ] || gen2=$live
bytes=$(find "$gen2" -type f -printf '%s\n' | awk '{s += $1} END{printf "%d", s}')
files=$(find "$gen2" -type f | wc -l)

drop() { drop_caches || true; } # a warm run is still timed, but says so
fresh() { rm -rf "$out/dir" && mkdir -p "$out/dir"; }

# One cold run of HOW; prints "seconds peak_rss_kib".
one() {
  local rss=$out/rss start
  fresh
  drop
  start=$EPOCHREALTIME
  case $1 in
    restore)
      /usr/bin/time -o "$rss" -f %M "$bin" --repo "$repo" restore "latest:$live" --target "$out/dir" >/dev/null
      sync ;;
    dump-null)
      /usr/bin/time -o "$rss" -f %M "$bin" --repo "$repo" dump "latest:$live" >/dev/null ;;
    dump-tar)
      /usr/bin/time -o "$rss" -f %M "$bin" --repo "$repo" dump "latest:$live" | tar -xpf - -C "$out/dir"
      sync ;;
    dump-xattr)
      /usr/bin/time -o "$rss" -f %M "$bin" --repo "$repo" dump "latest:$live" |
        tar --xattrs --xattrs-include='*' --acls -xpf - -C "$out/dir"
      sync ;;
  esac
  awk -v a="$start" -v b="$EPOCHREALTIME" -v r="$(tail -1 "$rss")" 'BEGIN{printf "%.3f %d\n", b-a, r}'
}

manifest() { # type, mode, owner, mtime (ns), file size, link target of every entry, sorted
  (cd "$1" && find . -mindepth 1 \( -type f -printf '%P f %m %U:%G %T@ %s\n' \) \
    -o -printf '%P %y %m %U:%G %T@ %l\n' | LC_ALL=C sort)
}

echo "corpus: $gen2 ($files files, $bytes bytes); rewind $("$bin" --version)"
echo "checking dump | tar -x against the corpus..."
fresh
"$bin" --repo "$repo" dump "latest:$live" | tar -xpf - -C "$out/dir"
top=$out/dir/$(basename "$live")
diff -r --no-dereference "$gen2" "$top" >/dev/null || { echo "bench-dump: content differs" >&2; exit 1; }
cmp -s <(manifest "$gen2") <(manifest "$top") || { echo "bench-dump: metadata differs" >&2; exit 1; }
echo "ok: identical content and metadata"

declare -A label=(
  [restore]="\`rewind restore latest:LIVE --target DIR\`"
  [dump-null]="\`rewind dump latest:LIVE >/dev/null\`"
  [dump-tar]="\`rewind dump latest:LIVE \\| tar -xpf -\`"
  [dump-xattr]="the same with \`--xattrs --acls\`"
)
echo "| command | median of $rounds (all) | MB/s | peak RSS |"
echo "|---|---|---|---|"
for how in restore dump-null dump-tar dump-xattr; do
  times=() peak=0
  for _ in $(seq "$rounds"); do
    read -r s r < <(one "$how")
    times+=("$s")
    [ "$r" -gt "$peak" ] && peak=$r
  done
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  printf '| %s | %s (%s) | %s |\n' "${label[$how]}" \
    "$(awk -v m="$median" 'BEGIN{printf "%.1f s", m}')" "${times[*]}" \
    "$(awk -v m="$median" -v b="$bytes" -v k="$peak" 'BEGIN{printf "%.1f | %.1f MiB", b/1e6/m, k/1024}')"
done
machine_line "$gen2, $(corpus_size "$gen2")"
