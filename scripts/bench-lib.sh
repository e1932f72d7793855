# Sourced by the bench scripts: where things are, found from the project
# rather than from one machine's paths, and cache dropping that says when it
# could not.
#
#   root          the project (the directory above scripts/)
#   target_dir    cargo's target directory: CARGO_TARGET_DIR if set
#                 (relative to the project, as cargo takes it), else target/
#   shared_dir    the shared bench folder: REWIND_SHARED if set, else the
#                 first shared/ holding bench/ beside the project or beside
#                 its parent (a git worktree under wt/)
#   drop_caches   sync and empty the page cache; when that fails (not root,
#                 a container) it warns that the run is warm and returns 1
#   scratch_dir   make a fresh directory for the script's own files and
#                 print it; `rm -rf` goes only there
#   claim_dir     take a work directory the caller names (BENCH_WORK...)
#                 for the script's own, refusing one with other files in it
#   corpus_size   "N files, X.XX GB" (or "N MB") of a directory: the sum of
#                 its regular files' sizes, 10^9 (10^6) bytes
#   machine_line  the line every script prints under its table, which the
#                 README quotes beside the figures: date (UTC), cores, CPU
#                 model, RAM, kernel, load average, BENCH_MACHINE_NOTE if set
#                 (e.g. "shared 2-core VM"), and what was measured on
#   peers_corpus  the peers.sh corpus (gen1/, gen2/): corpus-full, or
#                 corpus-small with BENCH_SMALL=1

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

target_dir() {
  case ${CARGO_TARGET_DIR:-} in
    "") echo "$root/target" ;;
    /*) echo "$CARGO_TARGET_DIR" ;;
    *) echo "$root/$CARGO_TARGET_DIR" ;;
  esac
}

shared_dir() {
  if [ -n "${REWIND_SHARED:-}" ]; then
    echo "$REWIND_SHARED"
    return
  fi
  local d
  for d in "$root/../shared" "$root/../../shared"; do
    if [ -d "$d/bench" ]; then
      (cd "$d" && pwd)
      return
    fi
  done
  echo "no shared/bench beside $root or its parent: set REWIND_SHARED" >&2
  return 1
}

drop_caches() {
  sync
  if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
    echo "warning: could not drop caches: the run is warm" >&2
    return 1
  fi
}

# scratch_dir PARENT NAME: a new directory PARENT/NAME.XXXXXX.
scratch_dir() {
  mkdir -p "$1"
  mktemp -d "$1/$2.XXXXXX"
}

# claim_dir DIR: make DIR (or find it empty, or marked by an earlier run)
# and mark it, so that a script deletes inside it only when it made it;
# refuse a DIR that holds anything else.
claim_dir() {
  if [ -n "$(ls -A "$1" 2>/dev/null)" ] && [ ! -e "$1/.rewind-bench" ]; then
    echo "$1 holds files no rewind script made: choose another directory" >&2
    return 1
  fi
  mkdir -p "$1" && touch "$1/.rewind-bench"
}

# corpus_size DIR: its regular files and their apparent size.
corpus_size() {
  local files bytes
  files=$(find "$1" -type f | wc -l)
  bytes=$(find "$1" -type f -printf '%s\n' | awk '{s += $1} END{printf "%d", s}')
  awk -v f="$files" -v b="$bytes" \
    'BEGIN{if (b >= 1e9) printf "%d files, %.2f GB", f, b/1e9; else printf "%d files, %.0f MB", f, b/1e6}'
}

# machine_line CORPUS: prints "measured: DATE; MACHINE; corpus: CORPUS".
machine_line() {
  local cpu mem load note=""
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
  [ -n "$cpu" ] || cpu=$(uname -m)
  mem=$(awk '/^MemTotal:/{printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)
  load=$(cut -d' ' -f1 /proc/loadavg)
  [ -n "${BENCH_MACHINE_NOTE:-}" ] && note=", ${BENCH_MACHINE_NOTE}"
  echo "measured: $(date -u +%F); $(nproc) cores ($cpu), $mem, Linux $(uname -r)," \
    "load average $load$note; corpus: $1"
}

# peers_corpus: the peers.sh corpus directory (gen1/ and gen2/ in it):
# $BENCH_WORK/corpus-small with BENCH_SMALL=1, else corpus-full. peers.sh
# builds it (deterministic bytes) on its first run; this says so if absent.
peers_corpus() {
  local d=${BENCH_WORK:-/tmp/bench-work}/corpus-full
  [ "${BENCH_SMALL:-0}" = 1 ] && d=${BENCH_WORK:-/tmp/bench-work}/corpus-small
  if [ ! -d "$d/gen1" ] || [ ! -d "$d/gen2" ]; then
    echo "no peers corpus in $d: make it with" \
      "BENCH_SMALL=${BENCH_SMALL:-0} TOOLS=rewind scripts/bench-peers.sh" >&2
    return 1
  fi
  echo "$d"
}
