#!/usr/bin/env bash
# A 3-node Garage cluster (replication factor 3) on 127.0.0.1 as a rewind
# repository: a backup of a few GB with one node killed in the middle (the
# backup completes on the two left, or fails cleanly and completes when run
# again), the node back, `check --read-data`, a restore compared byte for
# byte, and a mount reading from the cluster. Prints its figures.
#
#   scripts/garage-cluster.sh              # 3 GB of data
#   DATA_GB=1 scripts/garage-cluster.sh
#
# Installs Garage with `cargo install --locked garage` when `garage` is not
# on the PATH (about 8 minutes on two cores). Not part of CI: too slow.
# Settings: GARAGE_WORK (scratch, default /tmp/rewind-garage), DATA_GB,
# GARAGE_PORT (first of 9 ports, default 39100), KILL_AFTER_MB (uploaded
# before the node is killed, default a third of the data), REWIND_BIN.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
work=${GARAGE_WORK:-/tmp/rewind-garage}
data_gb=${DATA_GB:-3}
base=${GARAGE_PORT:-39100}
kill_after_mb=${KILL_AFTER_MB:-$((data_gb * 1024 / 3))}

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1e6 / s }'; }

cd "$root"
cargo build --release >&2
rewind=${REWIND_BIN:-$(target_dir)/release/rewind}
export PATH=$PATH:$HOME/.cargo/bin
if ! command -v garage >/dev/null; then
  log "installing garage (cargo install --locked garage)"
  cargo install --locked garage >&2
fi
log "$(garage --version 2>/dev/null || garage -V)"

# ------------------------------------------------------------ cluster
claim_dir "$work"
find "$work" -mindepth 1 -maxdepth 1 ! -name .rewind-bench -exec rm -rf -- {} +
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
pids=(0 0 0)
mnt=$work/mnt
cleanup() {
  fusermount3 -u "$mnt" 2>/dev/null || true
  for p in "${pids[@]}"; do [ "$p" != 0 ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
conf() { echo "$work/node$1/garage.toml"; }
rpc_port() { echo $((base + 10 * $1 + 1)); }
s3_port() { echo $((base + 10 * $1)); }
for i in 0 1 2; do
  mkdir -p "$work/node$i/meta" "$work/node$i/data"
  # The RPC secret lets anyone who reads it join the cluster.
  (umask 077 && : >"$(conf $i)")
  cat >"$(conf $i)" <<EOF
metadata_dir = "$work/node$i/meta"
data_dir = "$work/node$i/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:$(rpc_port $i)"
rpc_public_addr = "127.0.0.1:$(rpc_port $i)"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$(s3_port $i)"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$((base + 10 * i + 3))"
EOF
done
start() {
  garage -c "$(conf "$1")" server >>"$work/node$1/log" 2>&1 &
  pids[$1]=$!
  for _ in $(seq 200); do (echo >"/dev/tcp/127.0.0.1/$(s3_port "$1")") 2>/dev/null && return; sleep 0.1; done
  echo "garage node $1 did not start: $(tail -5 "$work/node$1/log")" >&2; exit 1
}
g() { garage -c "$(conf 0)" "$@"; }
for i in 0 1 2; do start $i; done
ids=()
for i in 0 1 2; do ids+=("$(garage -c "$(conf $i)" node id -q)"); done
for i in 1 2; do g node connect "${ids[$i]}" >/dev/null; done
for i in 0 1 2; do g layout assign -z dc1 -c 10G "${ids[$i]%@*}" >/dev/null; done
g layout apply --version 1 >/dev/null
key=$(g key create rewind-key)
export AWS_ACCESS_KEY_ID=$(awk -F': *' '/Key ID/ {print $2}' <<<"$key")
export AWS_SECRET_ACCESS_KEY=$(awk -F': *' '/Secret key/ {print $2}' <<<"$key")
export AWS_DEFAULT_REGION=garage
g bucket create rewind >/dev/null
g bucket allow --read --write --owner rewind --key rewind-key >/dev/null
log "cluster up: 3 nodes, replication factor 3, key $AWS_ACCESS_KEY_ID"

# ------------------------------------------------------------ data
src=$work/src
mkdir -p "$src/media" "$src/text"
log "writing $data_gb GB of data"
for n in $(seq $((data_gb * 16))); do head -c 64M /dev/urandom >"$src/media/blob$n.bin"; done
for n in $(seq 200); do seq $((n * 1000)) | sed "s/^/line $n /" >"$src/text/file$n.txt"; done
bytes=$(du -sb --apparent-size "$src" | cut -f1)

# ------------------------------------------------------------ backup, a node killed
export REWIND_PASSWORD=garage-test-password XDG_CACHE_HOME=$work/cache REWIND_REQUEST_STATS=1
repo=s3:http://127.0.0.1:$(s3_port 0)/rewind
"$rewind" --repo "$repo" init >/dev/null
t0=$(now)
"$rewind" --repo "$repo" backup --json "$src" >"$work/backup1.json" 2>"$work/backup1.err" &
backup=$!
while kill -0 "$backup" 2>/dev/null; do
  # (Garage renames its temporary block files as du walks them.)
  [ "$(du -sm "$work/node2/data" 2>/dev/null | cut -f1)" -ge "$kill_after_mb" ] && break
  sleep 0.2
done
killed_at=$(since "$t0")
kill -9 "${pids[2]}"; wait "${pids[2]}" 2>/dev/null || true; pids[2]=0
log "node 2 killed after $killed_at s"
reran=no
if wait "$backup"; then
  backup_s=$(since "$t0")
  log "backup completed on two nodes: $backup_s s"
else
  log "backup failed with node 2 down: $(tail -2 "$work/backup1.err")"
  reran=yes
  "$rewind" --repo "$repo" backup --json "$src" >"$work/backup1.json" 2>"$work/backup1.err"
  backup_s=$(since "$t0")
  log "backup completed when run again: $backup_s s in all"
fi
requests=$(grep -h 'requests: ' "$work/backup1.err" | sed 's/^[^ ]* requests: //')
start 2
log "node 2 back"

# ------------------------------------------------------------ check, restore, mount
t0=$(now)
"$rewind" --repo "$repo" check --read-data >"$work/check.out" 2>&1 || { cat "$work/check.out" >&2; exit 1; }
check_s=$(since "$t0")
rm -rf "$work/cache"
t0=$(now)
"$rewind" --repo "$repo" restore latest --target "$work/restore" 2>"$work/restore.err"
restore_s=$(since "$t0")
diff -r "$src" "$work/restore$src" >/dev/null || { echo "garage-cluster: the restore differs from the source" >&2; exit 1; }
log "restore identical to the source"
mkdir -p "$mnt"
rm -rf "$work/cache"
t0=$(now)
"$rewind" --repo "$repo" mount --snapshot latest "$mnt" 2>"$work/mount.err" &
mount=$!
until head -c1 "$mnt$src/text/file1.txt" >/dev/null 2>&1; do
  kill -0 "$mount" 2>/dev/null || { cat "$work/mount.err" >&2; exit 1; }
  sleep 0.005
done
first_byte_s=$(since "$t0")
t0=$(now)
cmp "$src/media/blob1.bin" "$mnt$src/media/blob1.bin"
mount_read_s=$(since "$t0")
fusermount3 -u "$mnt"; wait "$mount" || true

echo
echo "garage-cluster: $(garage --version 2>/dev/null | head -1), 3 nodes on 127.0.0.1, replication factor 3; $($rewind --version); $(date -u +%F)"
echo "data: $bytes bytes; node 2 killed (SIGKILL) after $killed_at s of backup; backup run again: $reran"
echo "backup: $backup_s s ($(mbps "$bytes" "$backup_s") MB/s); requests: $requests"
echo "check --read-data (node 2 back): $check_s s ($(mbps "$bytes" "$check_s") MB/s)"
echo "restore, cold cache: $restore_s s ($(mbps "$bytes" "$restore_s") MB/s), identical"
echo "mount, cold cache: first byte $first_byte_s s; a 64 MiB file read and compared in $mount_read_s s"
