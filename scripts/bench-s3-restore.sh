#!/usr/bin/env bash
# Restores from the bucket scripts/bench-s3.sh leaves behind, with several
# rewind binaries (or argument sets) taking turns: the A/B measure behind the
# README's remote-restore figures. Each restore starts with a cold client
# cache and an empty page cache, goes into its own fresh directory (deleted
# right after), and prints wall, user and system time, peak RSS, the server's
# CPU time and rewind's pack requests.
#
#   scripts/bench-s3-restore.sh OLD_BIN NEW_BIN          # 4 rounds, tmpfs
#   ROUNDS=3 EXTRA="--connections 16" scripts/bench-s3-restore.sh BIN BIN
#   TARGET=/var/tmp/r scripts/bench-s3-restore.sh BIN    # into that directory
#   TIMELINE=0.25 ROUNDS=1 scripts/bench-s3-restore.sh BIN  # and where the time goes
#   WHAT=latest:/path/in/snapshot scripts/bench-s3-restore.sh BIN  # a part of it
#
# The server is the one bench-s3.sh last ran, started again on its data:
# Garage when BENCH_WORK/garage is there, else s3s-fs on BENCH_WORK/s3.
# Settings: BENCH_WORK (default /tmp/rewind-bench-s3), ROUNDS (4), TARGET
# (default: a tmpfs the script mounts, so the file system's own state does
# not differ between turns), EXTRA (arguments for every restore; EXTRA_2
# replaces them on every second binary's turn), TIMELINE (seconds: under
# each restore, a sample every so often of the client's and the server's
# CPU-seconds so far and the bytes the client has written), WHAT (what to
# restore: default `latest`, the whole snapshot).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
[ $# -ge 1 ] || { sed -n '2,23p' "$0" >&2; exit 2; }
work=${BENCH_WORK:-/tmp/rewind-bench-s3}
rounds=${ROUNDS:-4}
export REWIND_PASSWORD=bench-password
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

if [ -f "$work/garage/garage.toml" ]; then
  garage=$(command -v garage || echo "$HOME/.cargo/bin/garage")
  g() { "$garage" -c "$work/garage/garage.toml" "$@"; }
  "$garage" -c "$work/garage/garage.toml" server >"$work/restore-ab-server.log" 2>&1 &
  server=$!
  port=$(awk -F'"' '/api_bind_addr/ {print $2}' "$work/garage/garage.toml" | head -1 | cut -d: -f2)
  for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  sleep 1
  key=$(g key info bench-key --show-secret)
  export AWS_ACCESS_KEY_ID=$(awk -F': *' '/Key ID/ {print $2}' <<<"$key")
  export AWS_SECRET_ACCESS_KEY=$(awk -F': *' '/Secret key/ {print $2}' <<<"$key")
  export AWS_DEFAULT_REGION=garage
  name=garage
elif [ -d "$work/s3/rewind" ]; then
  export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret-not-for-use AWS_DEFAULT_REGION=us-east-1
  s3s=${S3S_FS:-$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")}
  "$s3s" --host 127.0.0.1 --port "$port" --access-key "$AWS_ACCESS_KEY_ID" \
    --secret-key "$AWS_SECRET_ACCESS_KEY" "$work/s3" >"$work/restore-ab-server.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  name=s3s-fs
else
  echo "bench-s3-restore: no bucket in $work: run scripts/bench-s3.sh first" >&2
  exit 1
fi

target=${TARGET:-$work/restore-ab}
mkdir -p "$target"
mounted=
if [ -z "${TARGET:-}" ]; then
  mount -t tmpfs -o size=8g tmpfs "$target" && mounted=1
fi
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  [ -n "$mounted" ] && umount "$target"
  rm -rf "$work/restore-ab-cache" "$work/restore-ab.time" "$work/restore-ab.err" "$work/restore-ab.timeline"
  [ -n "${TARGET:-}" ] || rmdir "$target" 2>/dev/null || true
}
trap cleanup EXIT

cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# sample TIME_PID SERVER_CPU0: TIMELINE lines while the restore under
# /usr/bin/time (pid TIME_PID) runs.
sample() {
  local t0 c cc sc w
  t0=$(date +%s.%N)
  while kill -0 "$1" 2>/dev/null; do
    c=$(pgrep -P "$1" | head -1 || true)
    if [ -n "$c" ]; then
      cc=$(cpu_of "$c" 2>/dev/null || echo 0)
      w=$(awk '/^wchar/ {print $2}' "/proc/$c/io" 2>/dev/null || echo 0)
      sc=$(cpu_of "$server")
      awk -v t0="$t0" -v now="$(date +%s.%N)" -v cc="$cc" -v sc="$((sc - $2))" -v w="$w" \
        'BEGIN { printf "    %6.2f s  client %5.2f CPU-s  server %5.2f CPU-s  written %5d MiB\n", now - t0, cc / 100, sc / 100, w / 1048576 }'
    fi
    sleep "$TIMELINE"
  done
}
echo "bench-s3-restore: $name on 127.0.0.1, restores into $(findmnt -no FSTYPE -T "$target"), $(date -u '+%F %T') UTC"
for round in $(seq "$rounds"); do
  i=0
  for bin in "$@"; do
    i=$((i + 1))
    extra=${EXTRA:-}
    [ $((i % 2)) = 0 ] && [ -n "${EXTRA_2+set}" ] && extra=$EXTRA_2
    dest=$target/r$round-$i
    rm -rf "$work/restore-ab-cache" "$dest" && mkdir -p "$dest"
    drop_caches || true
    s0=$(cpu_of "$server")
    # shellcheck disable=SC2086
    /usr/bin/time -o "$work/restore-ab.time" -f '%e %U %S %M' \
      env REWIND_REQUEST_STATS=1 XDG_CACHE_HOME="$work/restore-ab-cache" \
      "$bin" --repo "s3:http://127.0.0.1:$port/rewind" restore "${WHAT:-latest}" --target "$dest" $extra \
      >/dev/null 2>"$work/restore-ab.err" &
    restore=$!
    : >"$work/restore-ab.timeline"
    [ -n "${TIMELINE:-}" ] && sample "$restore" "$s0" >"$work/restore-ab.timeline"
    wait "$restore" || { tail -3 "$work/restore-ab.err" >&2; exit 1; }
    s1=$(cpu_of "$server")
    rm -rf "$dest"
    read -r wall user sys rss <"$work/restore-ab.time"
    packs=$(grep -o 'pack: [A-Z0-9 ]*' "$work/restore-ab.err" | head -1 || true)
    printf 'round %s  %-28s %s  wall %s s  user %s  sys %s  rss %s MiB  server %.2f CPU-s  %s\n' \
      "$round" "$(basename "$bin")" "$extra" "$wall" "$user" "$sys" $((rss / 1024)) \
      "$(awk -v t=$((s1 - s0)) 'BEGIN { print t / 100 }')" "$packs"
    cat "$work/restore-ab.timeline"
  done
done
