#!/usr/bin/env bash
# rewind and restic against the same S3 server on loopback (s3s-fs, or a
# one-node Garage with S3_SERVER=garage), on
# peers.sh's corpus (shared/bench, found by bench-lib.sh), one run, cold client caches; and
# rewind to a local directory for scale. Prints a markdown table of wall
# times, rewind's S3 requests per phase (REWIND_REQUEST_STATS), and the
# mount's time to the first byte of a file with a warm and a cold cache.
#
#   scripts/bench-s3.sh                 # peers.sh's full corpus (~1.7 GB)
#   BENCH_SMALL=1 scripts/bench-s3.sh   # the small one (~200 MB)
#   S3_SERVER=garage scripts/bench-s3.sh  # against Garage (one node, no
#                                       # compression; garage on the PATH)
#
# The server shares the machine's cores with the client: s3s-fs reads each
# object in 4 KiB pieces through tokio's blocking pool (about 4 ns of its own
# CPU per byte served here, 2.5 s for a restore of this corpus), Garage in
# 1 MiB blocks.
#
# Phases, as peers.sh runs them: backup1 (gen1, empty repository), backup2
# (gen2, a night's changes), nochange (gen2 again), restore (gen2, client
# cache removed first). The page cache is dropped before each phase (root).
# Settings: BENCH_WORK (scratch, default /tmp/rewind-bench-s3), BENCH_SMALL,
# LINUX_TARBALL, PEERS_DIR (where peers_helper.py is), REWIND_BIN, S3S_FS,
# S3_SERVER (s3s-fs or garage),
# CONNECTIONS (rewind --connections), RESTORE_FS (loop: a fresh journaled
# ext4 on a loop device, the default; root: in place), TOOLS (default
# "rewind-local rewind-s3 restic-s3").
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
work=${BENCH_WORK:-/tmp/rewind-bench-s3}
claim_dir "$work"
peers_dir=${PEERS_DIR:-$(shared_dir)/bench}
helper=(python3 "$peers_dir/peers_helper.py")
tarball=${LINUX_TARBALL:-/usr/src/linux-source-6.1.tar.xz}
tools=${TOOLS:-rewind-local rewind-s3 restic-s3}
probe=site/db/dump.sql
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret-not-for-use AWS_DEFAULT_REGION=us-east-1
export REWIND_PASSWORD=bench-password RESTIC_PASSWORD=bench-password

if [ "${BENCH_SMALL:-0}" = 1 ]; then
  mode=small linux_files=15000 linux_bytes=200000000 media=50000000 dump=20000000
else
  mode=full linux_files=0 linux_bytes=0 media=300000000 dump=100000000
fi
corpus=$work/corpus-$mode
live=$corpus/live

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

cd "$root"
cargo build --release >&2
rewind=${REWIND_BIN:-$(target_dir)/release/rewind}
s3s=${S3S_FS:-$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")}
[ "${S3_SERVER:-s3s-fs}" != s3s-fs ] || [ -x "$s3s" ] || { echo "bench-s3: s3s-fs not found (cargo install s3s-fs --version 0.14.1 --features binary)" >&2; exit 1; }
command -v restic >/dev/null || tools=${tools//restic-s3/}

# ------------------------------------------------------------ corpus
# peers.sh's corpus, made by its helper the same way (gen2: gen1's hard-link
# farm with a night's changes); each generation is renamed onto $live so
# every backup reads the same path.
stamp="bench-s3 $mode $linux_files $media $dump"
if [ "$(cat "$corpus/.stamp" 2>/dev/null)" != "$stamp" ]; then
  log "building the $mode corpus in $corpus"
  rm -rf "$corpus" && mkdir -p "$corpus/gen1/linux"
  if [ "$mode" = small ]; then
    "${helper[@]}" linux-head "$tarball" "$corpus/gen1/linux" "$linux_files" "$linux_bytes"
  else
    tar -I 'xz -T0' -xf "$tarball" -C "$corpus/gen1/linux" --strip-components=1
  fi
  "${helper[@]}" site "$corpus/gen1/site" "$media" "$dump"
  cp -al "$corpus/gen1" "$corpus/gen2"
  "${helper[@]}" mutate "$corpus/gen2" "$media" "$dump"
  echo "$stamp" >"$corpus/.stamp"
fi
[ -d "$live" ] && mv "$live" "$corpus/$(cat "$corpus/live.gen")"
activate() { [ -d "$live" ] && mv "$live" "$corpus/$(cat "$corpus/live.gen")"; mv "$corpus/$1" "$live"; echo "$1" >"$corpus/live.gen"; }
bytes=$(du -sb --apparent-size "$corpus/gen2" | cut -f1)

# ------------------------------------------------------------ server
server_kind=${S3_SERVER:-s3s-fs}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mountpoint -q "$work/restore" && umount "$work/restore"
rm -rf "$work/s3" "$work/garage" "$work/repo-local" "$work/cache" "$work/restore" "$work/mnt" "$work/results"
mkdir -p "$work/s3" "$work/cache" "$work/restore" "$work/mnt" "$work/results"
# Restores go into a journaled ext4 made for this run on a loop device, as
# on a server (RESTORE_FS=root: into $work/restore on the file system
# $work is on). A file system without a journal (this VM's root) checks
# every inode it hands out against those freed in the last 60-300 s
# (ext4's recently_deleted): after another 79,000-file tree was deleted, a
# restore spent 40% of its CPU there (perf, 2026-12-05), for any tool.
if [ "${RESTORE_FS:-loop}" = loop ]; then
  truncate -s 8G "$work/restore.img"
  mkfs.ext4 -q -F "$work/restore.img"
  mount -o loop "$work/restore.img" "$work/restore" || {
    echo "bench-s3: cannot mount a loop file system (root needed); RESTORE_FS=root restores in place" >&2
    exit 1
  }
fi
restore_fs=$(findmnt -no FSTYPE,SOURCE -T "$work/restore" | tr -s ' ')
case $server_kind in
  s3s-fs)
    "$s3s" --host 127.0.0.1 --port "$port" --access-key "$AWS_ACCESS_KEY_ID" \
      --secret-key "$AWS_SECRET_ACCESS_KEY" "$work/s3" >"$work/s3s-fs.log" 2>&1 &
    server=$!
    server_name=s3s-fs
    ;;
  garage)
    garage=$(command -v garage || echo "$HOME/.cargo/bin/garage")
    [ -x "$garage" ] || { echo "bench-s3: garage not found (cargo install --locked garage)" >&2; exit 1; }
    g=$work/garage && mkdir -p "$g/meta" "$g/data"
    # The RPC secret lets anyone who reads it join the node.
    (umask 077 && : >"$g/garage.toml")
    cat >"$g/garage.toml" <<EOF
metadata_dir = "$g/meta"
data_dir = "$g/data"
db_engine = "sqlite"
replication_factor = 1
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$((port + 1))"
rpc_public_addr = "127.0.0.1:$((port + 1))"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$port"
root_domain = ".s3.garage.localhost"
EOF
    "$garage" -c "$g/garage.toml" server >"$g/log" 2>&1 &
    server=$!
    server_name="garage $("$garage" --version 2>/dev/null | awk '{print $2}')"
    ;;
  *) echo "bench-s3: S3_SERVER is s3s-fs or garage, not $server_kind" >&2; exit 1 ;;
esac
mountpoint=$work/mnt
cleanup() {
  fusermount3 -u "$mountpoint" 2>/dev/null || true
  mountpoint -q "$work/restore" && umount "$work/restore" && rm -f "$work/restore.img"
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  [ -d "$live" ] && mv "$live" "$corpus/$(cat "$corpus/live.gen")" || true
}
trap cleanup EXIT
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
if [ "$server_kind" = garage ]; then
  gc() { "$garage" -c "$g/garage.toml" "$@"; }
  node=$(gc node id -q)
  gc layout assign -z dc1 -c 100G "${node%@*}" >/dev/null
  gc layout apply --version 1 >/dev/null
  key=$(gc key create bench-key)
  export AWS_ACCESS_KEY_ID=$(awk -F': *' '/Key ID/ {print $2}' <<<"$key")
  export AWS_SECRET_ACCESS_KEY=$(awk -F': *' '/Secret key/ {print $2}' <<<"$key")
  export AWS_DEFAULT_REGION=garage
  for b in rewind restic; do
    gc bucket create "$b" >/dev/null
    gc bucket allow --read --write --owner "$b" --key bench-key >/dev/null
  done
fi
endpoint=http://127.0.0.1:$port

# ------------------------------------------------------------ tools
conn=()
[ -n "${CONNECTIONS:-}" ] && conn=(--connections "$CONNECTIONS")
repo_of() {
  case $1 in
    rewind-local) echo "$work/repo-local" ;;
    rewind-s3) echo "s3:$endpoint/rewind" ;;
    restic-s3) echo "s3:$endpoint/restic" ;;
  esac
}
# run TOOL PHASE ARGS...: one command, its stderr kept, its request counts
# (rewind on S3) recorded.
run() {
  local t=$1 phase=$2; shift 2
  local err=$work/results/$t-$phase.log
  case $t in
    rewind-*) REWIND_REQUEST_STATS=1 XDG_CACHE_HOME=$work/cache/$t "$rewind" --repo "$(repo_of "$t")" "${conn[@]}" "$@" 2>"$err" ;;
    restic-*) RESTIC_REPOSITORY=$(repo_of "$t") RESTIC_CACHE_DIR=$work/cache/$t restic "$@" >"$err" 2>&1 ;;
  esac || { echo "bench-s3: $t $phase failed:" >&2; tail -5 "$err" >&2; exit 1; }
  grep -h '^s3:.*requests: ' "$err" | sed 's/^[^ ]* requests: \([^)]*)\).*/\1/' >"$work/results/$t-$phase.requests" || true
}
init() {
  case $1 in
    rewind-*) run "$1" init init >/dev/null ;;
    restic-*) run "$1" init init ;;
  esac
}
backup() {
  case $1 in
    rewind-*) (cd "$live" && run "$1" "$2" backup --host bench --tag "$2" . >/dev/null) ;;
    restic-*) (cd "$live" && run "$1" "$2" backup --host bench --tag "$2" .) ;;
  esac
}
restore() {
  case $1 in
    rewind-*) run "$1" restore restore latest --target "$2" >/dev/null ;;
    restic-*) run "$1" restore restore latest --host bench --target "$2" ;;
  esac
}
time_phase() { # TOOL PHASE CMD...: the wall time of CMD, page cache dropped
  local t=$1 phase=$2; shift 2
  drop
  local t0; t0=$(now)
  "$@"
  since "$t0" >"$work/results/$t-$phase.s"
  log "$t $phase: $(cat "$work/results/$t-$phase.s") s"
}
# The time from exec'ing `rewind mount` to the first byte of the dump.
first_byte() {
  local t=$1 which=$2
  [ "$which" = cold ] && rm -rf "$work/cache/$t"
  drop
  local t0; t0=$(now)
  XDG_CACHE_HOME=$work/cache/$t "$rewind" --repo "$(repo_of "$t")" mount --snapshot latest "$mountpoint" \
    2>"$work/results/$t-mount-$which.log" &
  local pid=$! file=$mountpoint$(cd "$live" && pwd -P)/$probe
  until head -c1 "$file" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { echo "bench-s3: mount exited" >&2; cat "$work/results/$t-mount-$which.log" >&2; exit 1; }
    sleep 0.005
  done
  since "$t0" >"$work/results/$t-firstbyte-$which.s"
  fusermount3 -u "$mountpoint"
  wait "$pid" || true
  log "$t first byte ($which cache): $(cat "$work/results/$t-firstbyte-$which.s") s"
}

for t in $tools; do init "$t"; done
activate gen1
for t in $tools; do rm -rf "$work/cache/$t"; time_phase "$t" backup1 backup "$t" backup1; done
activate gen2
for t in $tools; do time_phase "$t" backup2 backup "$t" backup2; done
for t in $tools; do time_phase "$t" nochange backup "$t" nochange; done
# Each tool restores into a directory of its own, all deleted after the last
# one: a restore started right after the deletion of another (1.7 GB, 79,000
# files) waits on the file system's bookkeeping for it (on ext4 a restore of
# this corpus took 3 s in a fresh directory and 6-7 s right after such a
# deletion, whichever binary).
for t in $tools; do
  dest=$work/restore/$t
  rm -rf "$dest" "$work/cache/$t" && mkdir -p "$dest"
done
for t in $tools; do
  dest=$work/restore/$t
  time_phase "$t" restore restore "$t" "$dest"
  got=$(du -sb --apparent-size "$dest" | cut -f1)
  log "$t restore: $got bytes (source $bytes)"
done
[ "${RESTORE_FS:-loop}" = loop ] || for t in $tools; do rm -rf "$work/restore/$t"; done
if [[ " $tools " == *" rewind-s3 "* ]]; then
  (cd "$live" && run rewind-s3 warmup backup --host bench . >/dev/null) # fills the cache again
  first_byte rewind-s3 warm
  first_byte rewind-s3 cold
fi

# ------------------------------------------------------------ report
cell() { cat "$work/results/$1" 2>/dev/null || echo -; }
ratio() { # A B: A/B, two decimals
  awk -v a="$(cell "$1")" -v b="$(cell "$2")" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'
}
echo
echo "bench-s3: $($rewind --version), $(restic version 2>/dev/null | cut -d' ' -f1-2), $server_name on 127.0.0.1, corpus $mode ($bytes bytes in gen2), restores into $restore_fs, $(date -u +%F)"
echo
echo "| phase | rewind local (s) | rewind S3 (s) | restic S3 (s) | rewind S3 / local | rewind S3 / restic S3 | rewind S3 requests |"
echo "|---|---|---|---|---|---|---|"
for p in backup1 backup2 nochange restore; do
  echo "| $p | $(cell rewind-local-$p.s) | $(cell rewind-s3-$p.s) | $(cell restic-s3-$p.s) | $(ratio rewind-s3-$p.s rewind-local-$p.s) | $(ratio rewind-s3-$p.s restic-s3-$p.s) | $(cell rewind-s3-$p.requests) |"
done
echo
echo "mount on S3, exec to first byte of $probe: warm cache $(cell rewind-s3-firstbyte-warm.s) s, cold cache $(cell rewind-s3-firstbyte-cold.s) s"
