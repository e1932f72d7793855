#!/usr/bin/env bash
# restore-test.sh: prove that a snapshot restores. Restore (or mount) a snapshot
# into a scratch directory, `rewind verify` it, load a database dump from it into
# a throw-away database and check it, run a smoke command, print one verdict line
# and clean up. Exit 0 only when every step passed: fit for cron and alerting.
#
#   scripts/restore-test.sh --repo /var/backups/rewind --path /srv/www \
#       --db-kind postgres --db-dump /db/app.sql --min-rows orders=1000 \
#       --smoke 'test -s "$RESTORE_DIR/index.php"'
#   scripts/restore-test.sh --repo /var/backups/rewind --tag db \
#       --db-kind mysql --db-dump /db/site.sql --min-rows wp_posts=100
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
  -d, --db-kind KIND      sqlite, postgres or mysql (MySQL and MariaDB alike;
                          mariadb is accepted as a synonym)
      --db-dump PATH      the dump's absolute path in the snapshot (e.g. /db/app.sql);
                          plain, or gzip- or zstd-compressed (.sql.gz, .sql.zst)
      --defaults-file F   mysql: the client option file to use instead of the
                          usual ones (server, user, password)
      --expect-rows T=N   table T must hold exactly N rows (repeatable)
      --min-rows T=N      table T must hold at least N rows (repeatable)
      --db-check SQL      a query that must print `t`, `1` or `ok` (repeatable)
  -c, --smoke CMD         run CMD with bash; it sees RESTORE_DIR (the tested tree,
                          at PATH), RESTORE_SNAPSHOT and, with a database,
                          RESTORE_DB (sqlite: the database file; postgres: its
                          name, also as PGDATABASE; mysql: its name, and
                          RESTORE_DEFAULTS_FILE with --defaults-file)
  -k, --keep              keep the scratch directory and database (debugging)
  -q, --quiet             print only failures and the verdict

PostgreSQL: the dump is loaded into a new database on the server that libpq's
environment names (PGHOST, PGPORT, PGUSER, PGPASSWORD), then dropped. A plain
dump (pg_dump's default) goes through psql with ON_ERROR_STOP, a custom or tar
one through pg_restore --no-owner. SQLite: a database file is copied, a .dump
is loaded with sqlite3 -bail; `PRAGMA integrity_check` must say ok.

MySQL and MariaDB: the dump is loaded with the mariadb (or mysql) client into a
new database on the server that the client's usual settings name (option files
such as ~/.my.cnf, or only --defaults-file; MYSQL_HOST, MYSQL_TCP_PORT,
MYSQL_UNIX_PORT), then dropped. Passwords come from an option file, never from
the command line. A dump that switches databases (USE, CREATE DATABASE: made
with --databases or --all-databases) is refused, and a mysqldump dump must end
with its `-- Dump completed` line.

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
defaults_file=
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
    --defaults-file) defaults_file=${2:?}; shift ;;
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
[ "$db_kind" != mariadb ] || db_kind=mysql
case $db_kind in
  "") [ -z "$db_dump" ] || die_usage "--db-dump needs --db-kind" ;;
  sqlite|postgres|mysql) [ -n "$db_dump" ] || die_usage "--db-kind needs --db-dump" ;;
  *) die_usage "--db-kind must be sqlite, postgres or mysql" ;;
esac
if [ -n "$defaults_file" ]; then
  [ "$db_kind" = mysql ] || die_usage "--defaults-file is for --db-kind mysql"
  [ -f "$defaults_file" ] && [ -r "$defaults_file" ] || die_usage "--defaults-file $defaults_file: no such readable file"
  [[ $defaults_file = /* ]] || defaults_file=$PWD/$defaults_file
fi
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
    local err
    case $db_kind in
      postgres) err=$(dropdb --if-exists "$database" 2>&1) ;;
      mysql) err=$(my_client --batch -e "DROP DATABASE IF EXISTS \`$database\`" 2>&1) ;;
    esac || echo "restore-test: could not drop database $database: $err" >&2
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

# The dump, decompressed on the fly: gzip and zstd are told by their first bytes.
dump_codec=cat
dump_open() {
  [ -f "$dump_file" ] || { echo "no file $db_dump in the snapshot"; return 1; }
  case $(od -An -tx1 -N6 -- "$dump_file" | tr -d ' \n') in
    1f8b*) dump_codec=gzip ;;
    28b52ffd*) dump_codec=zstd ;;
    fd377a585a00) echo "$db_dump is xz-compressed: only plain, gzip and zstd dumps load"; return 1 ;;
    425a68*) echo "$db_dump is bzip2-compressed: only plain, gzip and zstd dumps load"; return 1 ;;
    *) dump_codec=cat ;;
  esac
  [ "$dump_codec" = cat ] && return 0
  command -v "$dump_codec" >/dev/null || { echo "$db_dump is $dump_codec-compressed and $dump_codec is not installed"; return 1; }
  echo "$db_dump: $dump_codec-compressed"
}
dump_cat() {
  case $dump_codec in
    gzip) gzip -dc -- "$dump_file" ;;
    zstd) zstd -dcq -- "$dump_file" ;;
    *) cat -- "$dump_file" ;;
  esac
}
# The first $1 bytes of the dump (a read that stops early is no error).
dump_head() { { dump_cat 2>/dev/null || true; } | head -c "$1"; }
# The dump's first line that matches grep's arguments, as N:LINE (nothing if none).
dump_grep() { { dump_cat 2>/dev/null || true; } | grep -a -n -m 1 "$@" | cut -c 1-200 || true; }
# The dump's last line that is not blank.
dump_last_line() {
  # (A decompression error shows when the dump is loaded.)
  if [ "$dump_codec" = cat ]; then tail -c 4096 -- "$dump_file"; else dump_cat 2>/dev/null | tail -c 4096; fi \
    | grep -a '[^[:space:]]' | tail -n 1
}

sqlite_db=
sqlite_query() { sqlite3 -bail -batch "$sqlite_db" "$1"; }
sqlite_load() {
  dump_open || return 1
  sqlite_db=$scratch/restore-test.sqlite
  if [ "$(dump_head 15)" = "SQLite format 3" ]; then
    dump_cat >"$sqlite_db" || return 1
  else
    dump_cat | sqlite3 -bail -batch "$sqlite_db" || return 1
  fi
  local ok
  ok=$(sqlite_query "PRAGMA integrity_check") || return 1
  echo "integrity_check: $ok"
  [ "$ok" = ok ] && db_checks_pass sqlite_query
}

# A name no other run (on this or another host) picks, and safe unquoted in SQL.
throwaway_name() { echo "rewind_restore_test_$$_$(date +%s)_$RANDOM"; }

pg_query() { psql -X -q -v ON_ERROR_STOP=1 -d "$database" -tAc "$1"; }
pg_load() {
  dump_open || return 1
  local archive= line
  [ "$(dump_head 5)" = PGDMP ] && archive=custom
  [ "$(dump_head 262 | tail -c 5)" = ustar ] && archive=tar
  if [ -z "$archive" ]; then
    line=$(dump_grep '^\\connect')
    if [ -n "$line" ]; then
      # A dump made with --create would connect to (and load into) its original database.
      echo "$db_dump switches databases (line ${line%%:*}: \\connect; made with pg_dump --create?): refusing to load it"
      return 1
    fi
  fi
  local name
  name=$(throwaway_name)
  createdb "$name" || return 1
  database=$name
  echo "database $database"
  if [ -z "$archive" ]; then
    dump_cat | psql -X -q -v ON_ERROR_STOP=1 -d "$database" -f - >/dev/null
  elif [ "$dump_codec" = cat ]; then
    pg_restore --no-owner --exit-on-error -d "$database" "$dump_file"
  else
    # pg_restore is given the decompressed archive as a file in scratch space.
    dump_cat >"$scratch/pg-archive" && pg_restore --no-owner --exit-on-error -d "$database" "$scratch/pg-archive"
  fi || return 1
  db_checks_pass pg_query
}

# The mariadb client (mysql where MariaDB's is not installed). Option files give
# the server and the credentials; --defaults-file, when given, must come first.
my_client() {
  local client
  client=$(command -v mariadb || command -v mysql) || { echo "no mariadb or mysql client installed"; return 1; }
  "$client" ${defaults_file:+"--defaults-file=$defaults_file"} "$@"
}
# Checks are UTF-8 text, whatever character set the option files name.
mysql_query() { my_client --default-character-set=utf8mb4 --batch --skip-column-names -e "$1" "$database"; }
# Statements that act on another database than the one the client was given
# (mysqldump --databases writes CREATE DATABASE and USE), with or without a
# version comment around them, and the client's own \u and connect.
mysql_switch='^[[:space:]]*(/\*M?![0-9]*[[:space:]]*)?((create|alter|drop)[[:space:]]+(database|schema)|use([[:space:]]|;|$)|connect([[:space:]]|;|$)|\\[ur])'
mysql_load() {
  dump_open || return 1
  local line complete=1 tables
  line=$(dump_grep -i -E "$mysql_switch")
  if [ -n "$line" ]; then
    echo "$db_dump acts on another database (line ${line%%:*}: ${line#*:})"
    echo "it would load into the original database, not a throw-away one: refusing it"
    echo "(dump one database without --databases: mysqldump --single-transaction NAME)"
    return 1
  fi
  # mysqldump ends its dump with a comment line unless told to skip comments.
  if dump_head 4096 | grep -a -E '^-- (MySQL|MariaDB) dump' >/dev/null; then
    line=$(dump_last_line)
    case $line in
      "-- Dump completed"*) ;;
      *) echo "$db_dump does not end with mysqldump's \"-- Dump completed\" line: it is truncated"; complete=0 ;;
    esac
  fi
  local name
  name=$(throwaway_name)
  my_client --batch -e "CREATE DATABASE \`$name\`" || return 1
  database=$name
  echo "database $database"
  local errors=$scratch/logs/mysql-client.err
  # --skip-force: `force` in an option file would go on past errors, and exit 0.
  dump_cat | my_client --batch --skip-force "$database" 2>"$errors"
  local loaded=$?
  # MariaDB's client repeats a failing statement between dashed lines before
  # the server's message: a whole line of the dump, site data in a log that
  # cron may mail. Keep the rest, each line cut short.
  awk '/^-{14}$/ { inside = !inside; next } !inside && NF { print substr($0, 1, 400) }' "$errors"
  [ "$loaded" = 0 ] && [ "$complete" = 1 ] || return 1
  tables=$(mysql_query "SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE()") || return 1
  echo "$tables tables"
  [ "$tables" -gt 0 ] || { echo "the dump created no tables"; return 1; }
  db_checks_pass mysql_query
}

if [ -n "$db_kind" ]; then
  step "$db_kind" "${db_kind/postgres/pg}_load" || true
  [ "$db_kind" = sqlite ] && export RESTORE_DB=$sqlite_db
  [ "$db_kind" = postgres ] && [ -n "$database" ] && export RESTORE_DB=$database PGDATABASE=$database
  [ "$db_kind" = mysql ] && [ -n "$database" ] && export RESTORE_DB=$database
  [ -n "$defaults_file" ] && export RESTORE_DEFAULTS_FILE=$defaults_file
fi

if [ -n "$smoke" ]; then
  export RESTORE_DIR=$tree RESTORE_SNAPSHOT=$snap_id
  step smoke bash -c "$smoke" || true
fi

verdict
