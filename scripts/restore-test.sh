#!/usr/bin/env bash
# restore-test.sh: prove that a snapshot restores. Restore (or mount) a snapshot
# into a scratch directory, `rewind verify` it, load a database dump from it into
# a throw-away database and check it, run a smoke command, print one verdict line
# and clean up. Exit 0 only when every step passed: fit for cron and alerting.
#
#   scripts/restore-test.sh --repo /var/backups/rewind --path /srv/www \
#       --db-kind postgres --db-dump /db/app.sql --min-rows orders=1000 \
#       --smoke 'test -s "$RESTORE_DIR/index.php"'
#
# See `--help` and the README ("Scripted restore tests").
set -euo pipefail

usage() {
  cat <<'EOF'
usage: restore-test.sh [options]

  -r, --repo DIR          repository (default: $REWIND_REPO)
  -s, --snapshot SNAP     snapshot id, id prefix or latest (default: latest)
      --host H, --tag T   narrow `latest` (as rewind's --host and --tag)
  -p, --path PATH         test only this path of the snapshot (default: /)
  -m, --mode MODE         restore (default): restore into scratch space;
                          mount: `rewind mount --daemon` and test the mount
  -w, --work DIR          where to make the scratch directory (default: $TMPDIR or /tmp)
      --verify-ignore CAT passed to `rewind verify --ignore` (repeatable)
      --no-verify         skip `rewind verify`
  -d, --db-kind KIND      sqlite or postgres
      --db-dump PATH      the dump's absolute path in the snapshot (e.g. /db/app.sql)
      --expect-rows T=N   table T must hold exactly N rows (repeatable)
      --min-rows T=N      table T must hold at least N rows (repeatable)
      --db-check SQL      a query that must print `t`, `1` or `ok` (repeatable)
  -c, --smoke CMD         run CMD with bash; it sees RESTORE_DIR (the tested tree,
                          at PATH), RESTORE_SNAPSHOT and, with a database,
                          RESTORE_DB (sqlite: the database file; postgres: its
                          name, also as PGDATABASE)
  -k, --keep              keep the scratch directory and database (debugging)
  -q, --quiet             print only failures and the verdict

PostgreSQL: the dump is loaded into a new database on the server that libpq's
environment names (PGHOST, PGPORT, PGUSER, PGPASSWORD), then dropped. A plain
dump (pg_dump's default) goes through psql with ON_ERROR_STOP, a custom or tar
one through pg_restore --no-owner. SQLite: a database file is copied, a .dump
is loaded with sqlite3 -bail; `PRAGMA integrity_check` must say ok.

REWIND_BIN names the rewind binary (default: rewind from PATH).
Exit status: 0 PASS, 1 FAIL, 2 usage error.
EOF
}

die_usage() { echo "restore-test: $*" >&2; echo "try: restore-test.sh --help" >&2; exit 2; }

rewind_bin=${REWIND_BIN:-rewind}
repo=${REWIND_REPO:-}
snapshot=latest
filters=()
path=/
mode=restore
work=${TMPDIR:-/tmp}
verify=1
verify_ignore=()
db_kind=
db_dump=
expect_rows=()
min_rows=()
db_checks=()
smoke=
keep=0
quiet=0

while [ $# -gt 0 ]; do
  case $1 in
    -r|--repo) repo=${2:?}; shift ;;
    -s|--snapshot) snapshot=${2:?}; shift ;;
    --host|--tag) filters+=("$1" "${2:?}"); shift ;;
    -p|--path) path=${2:?}; shift ;;
    -m|--mode) mode=${2:?}; shift ;;
    -w|--work) work=${2:?}; shift ;;
    --verify-ignore) verify_ignore+=(--ignore "${2:?}"); shift ;;
    --no-verify) verify=0 ;;
    -d|--db-kind) db_kind=${2:?}; shift ;;
    --db-dump) db_dump=${2:?}; shift ;;
    --expect-rows) expect_rows+=("${2:?}"); shift ;;
    --min-rows) min_rows+=("${2:?}"); shift ;;
    --db-check) db_checks+=("${2:?}"); shift ;;
    -c|--smoke) smoke=${2:?}; shift ;;
    -k|--keep) keep=1 ;;
    -q|--quiet) quiet=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown argument: $1" ;;
  esac
  shift
done

[ -n "$repo" ] || die_usage "no repository: give --repo or set REWIND_REPO"
case $mode in restore|mount) ;; *) die_usage "--mode must be restore or mount" ;; esac
case $db_kind in
  "") [ -z "$db_dump" ] || die_usage "--db-dump needs --db-kind" ;;
  sqlite|postgres) [ -n "$db_dump" ] || die_usage "--db-kind needs --db-dump" ;;
  *) die_usage "--db-kind must be sqlite or postgres" ;;
esac
path=/${path#/}
path=${path%/}
[ -n "$path" ] || path=/
if [ -n "$db_dump" ]; then
  db_dump=/${db_dump#/}
  [ "$path" = / ] || case $db_dump in "$path"/*) ;; *) die_usage "--db-dump $db_dump is not below --path $path" ;; esac
fi
for spec in ${expect_rows[@]+"${expect_rows[@]}"} ${min_rows[@]+"${min_rows[@]}"}; do
  [[ $spec =~ ^[^=]+=[0-9]+$ ]] || die_usage "expected TABLE=N, got $spec"
done
export REWIND_REPO=$repo

say() { [ "$quiet" = 1 ] || echo "restore-test: $*"; }
started=$(date +%s)
scratch=
mounted=
database=
passed=()
failed=()

cleanup() {
  set +e
  if [ -n "$mounted" ]; then
    "$rewind_bin" umount "$mounted" >/dev/null 2>&1 \
      || fusermount3 -u "$mounted" >/dev/null 2>&1 \
      || umount -l "$mounted" >/dev/null 2>&1
  fi
  if [ -n "$database" ] && [ "$keep" = 0 ]; then
    dropdb --if-exists "$database" >/dev/null 2>&1
  fi
  if [ -n "$scratch" ] && [ "$keep" = 0 ]; then
    rm -rf -- "$scratch"
  elif [ -n "$scratch" ]; then
    echo "restore-test: kept $scratch${database:+ and database $database}" >&2
  fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# Run a step with its output in a log; print the log when it fails.
step() {
  local name=$1; shift
  local log=$scratch/logs/$name.log
  if "$@" >"$log" 2>&1; then
    say "$name: ok"
    passed+=("$name")
    return 0
  fi
  echo "restore-test: $name: FAILED" >&2
  tail -n 40 "$log" | sed 's/^/  | /' >&2
  failed+=("$name")
  return 1
}

verdict() {
  local secs=$(( $(date +%s) - started ))
  if [ ${#failed[@]} -eq 0 ]; then
    echo "restore-test: PASS snapshot ${snap_id:0:8}:$path ($mode; ${passed[*]}) in ${secs}s"
    exit 0
  fi
  local id=${snap_id:-$snapshot} errors=$scratch/logs/mount-errors.log
  if [ -s "$errors" ]; then
    echo "restore-test: the mount logged read errors:" >&2
    tail -n 20 "$errors" | sed 's/^/  | /' >&2
  fi
  echo "restore-test: FAIL snapshot ${id:0:8}:$path: ${failed[*]} failed${passed[*]:+ (${passed[*]} passed)} in ${secs}s"
  exit 1
}

mkdir -p -- "$work"
scratch=$(mktemp -d "$work/rewind-restore-test.XXXXXX")
mkdir "$scratch/logs"

# Pin the snapshot: a backup finishing meanwhile must not change `latest` between steps.
snap_id=
resolve() {
  # rewind resolves the spec as every command does: `latest:PATH` is the
  # newest snapshot (of --host/--tag) that holds PATH, so a database dump
  # backed up after the files does not hide them.
  # A whole-snapshot test of a dump looks for the newest snapshot holding it.
  local list holding=$path
  if [ "$path" = / ] && [ -n "$db_dump" ]; then holding=$db_dump; fi
  list=$("$rewind_bin" snapshots --json ${filters[@]+"${filters[@]}"} "$snapshot:$holding") || return 1
  snap_id=$(grep -o '"id": *"[0-9a-f]\{64\}"' <<<"$list" | grep -o '[0-9a-f]\{64\}' | tail -n 1) || true
  [ -n "$snap_id" ] || { echo "no snapshot $snapshot:$holding ${filters[*]:-} in $repo"; return 1; }
  echo "snapshot $snap_id"
}
step snapshot resolve || verdict
spec=$snap_id:$path

# The tree under test: a restore of PATH, or PATH inside the mount.
if [ "$mode" = restore ]; then
  tree=$scratch/restore
  step restore "$rewind_bin" restore "$spec" --target "$tree" || verdict
else
  mkdir "$scratch/mnt"
  mount_it() {
    "$rewind_bin" mount "$scratch/mnt" --snapshot "$snap_id" --daemon \
      --log-file "$scratch/logs/mount-errors.log" && mounted=$scratch/mnt
  }
  step mount mount_it || verdict
  tree=$scratch/mnt${path%/}
  [ "$path" != / ] || tree=$scratch/mnt
fi

if [ "$verify" = 1 ]; then
  step verify "$rewind_bin" verify "$spec" "$tree" ${verify_ignore[@]+"${verify_ignore[@]}"} || true
fi

# The dump's place in the tree under test.
dump_file=
if [ -n "$db_dump" ]; then
  if [ "$path" = / ]; then dump_file=$tree$db_dump; else dump_file=$tree${db_dump#"$path"}; fi
fi

# Row and query checks, through a function that runs one SQL query and prints the value.
db_checks_pass() {
  local query=$1 spec table want got
  for spec in ${expect_rows[@]+"${expect_rows[@]}"}; do
    table=${spec%=*}; want=${spec##*=}
    got=$($query "SELECT count(*) FROM $table") || return 1
    echo "$table: $got rows (want $want)"
    [ "$got" = "$want" ] || return 1
  done
  for spec in ${min_rows[@]+"${min_rows[@]}"}; do
    table=${spec%=*}; want=${spec##*=}
    got=$($query "SELECT count(*) FROM $table") || return 1
    echo "$table: $got rows (want at least $want)"
    [ "$got" -ge "$want" ] || return 1
  done
  for sql in ${db_checks[@]+"${db_checks[@]}"}; do
    got=$($query "$sql") || return 1
    echo "$sql: $got"
    case $got in t|true|1|ok) ;; *) return 1 ;; esac
  done
}

sqlite_db=
sqlite_query() { sqlite3 -bail -batch "$sqlite_db" "$1"; }
sqlite_load() {
  [ -f "$dump_file" ] || { echo "no file $db_dump in the snapshot"; return 1; }
  sqlite_db=$scratch/restore-test.sqlite
  if [ "$(head -c 15 "$dump_file")" = "SQLite format 3" ]; then
    cp -- "$dump_file" "$sqlite_db" || return 1
  else
    sqlite3 -bail -batch "$sqlite_db" <"$dump_file" || return 1
  fi
  local ok
  ok=$(sqlite_query "PRAGMA integrity_check") || return 1
  echo "integrity_check: $ok"
  [ "$ok" = ok ] && db_checks_pass sqlite_query
}

pg_query() { psql -X -q -v ON_ERROR_STOP=1 -d "$database" -tAc "$1"; }
pg_load() {
  [ -f "$dump_file" ] || { echo "no file $db_dump in the snapshot"; return 1; }
  local name
  name=rewind_restore_test_$$_$(date +%s)
  createdb "$name" || return 1
  database=$name
  echo "database $database"
  case $(head -c 5 "$dump_file") in
    PGDMP) pg_restore --no-owner --exit-on-error -d "$database" "$dump_file" ;;
    *) if [ "$(head -c 262 "$dump_file" | tail -c 5)" = ustar ]; then
         pg_restore --no-owner --exit-on-error -d "$database" "$dump_file"
       elif grep -q '^\\connect' "$dump_file"; then
         # A dump made with --create would connect to (and load into) its original database.
         echo "$db_dump switches databases (\\connect; made with pg_dump --create?): refusing to load it"
         false
       else
         psql -X -q -v ON_ERROR_STOP=1 -d "$database" -f "$dump_file" >/dev/null
       fi ;;
  esac || return 1
  db_checks_pass pg_query
}

if [ -n "$db_kind" ]; then
  step "$db_kind" "${db_kind/postgres/pg}_load" || true
  [ "$db_kind" = sqlite ] && export RESTORE_DB=$sqlite_db
  [ "$db_kind" = postgres ] && [ -n "$database" ] && export RESTORE_DB=$database PGDATABASE=$database
fi

if [ -n "$smoke" ]; then
  export RESTORE_DIR=$tree RESTORE_SNAPSHOT=$snap_id
  step smoke bash -c "$smoke" || true
fi

verdict
