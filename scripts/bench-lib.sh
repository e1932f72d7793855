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
