#!/usr/bin/env bash
# The cost of opening an encrypted repository: the median wall time of
# `rewind snapshots` on an empty repository with the default key derivation
# (Argon2id, 64 MiB, 3 passes, 4 lanes) against one made with
# --insecure-no-encryption (no key derivation), page cache warm. The
# difference is what every command pays to derive the key from the password.
# Prints a markdown table and the measured: line of scripts/bench-lib.sh.
#
#   scripts/bench-kdf.sh              # 9 rounds
#   ROUNDS=15 scripts/bench-kdf.sh
#
# REWIND_BIN overrides the binary in cargo's target directory. Its scratch
# directory, under BENCH_WORK (default /tmp), is deleted at the end.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
rounds=${ROUNDS:-9}
bin=${REWIND_BIN:-$(target_dir)/release/rewind}
[ -x "$bin" ] || { echo "bench-kdf: no binary at $bin (cargo build --release)" >&2; exit 1; }
work=$(scratch_dir "${BENCH_WORK:-${TMPDIR:-/tmp}}" bench-kdf)
trap 'rm -rf -- "$work"' EXIT
# The defaults, whatever the caller's environment says.
unset REWIND_KDF_PARAMS
export REWIND_PASSWORD=bench-kdf REWIND_CACHE_DIR=$work/cache

"$bin" --repo "$work/encrypted" init -q >/dev/null
"$bin" --repo "$work/plain" init -q --insecure-no-encryption >/dev/null

median_s() { # REPO: median wall time of `snapshots` over the rounds
  local start vals=()
  for _ in $(seq "$rounds"); do
    start=$EPOCHREALTIME
    "$bin" --repo "$1" snapshots >/dev/null
    vals+=("$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.4f", b-a}')")
  done
  printf '%s\n' "${vals[@]}" | sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'
}
enc=$(median_s "$work/encrypted")
plain=$(median_s "$work/plain")
echo "| \`rewind snapshots\`, empty repository | median of $rounds |"
echo "|---|---|"
echo "| encrypted, default key derivation | $(awk -v s="$enc" 'BEGIN{printf "%.2f s", s}') |"
echo "| --insecure-no-encryption | $(awk -v s="$plain" 'BEGIN{printf "%.2f s", s}') |"
echo "| key derivation (the difference) | $(awk -v a="$enc" -v b="$plain" 'BEGIN{printf "%.2f s", a-b}') |"
echo
machine_line "none (an empty repository)"
