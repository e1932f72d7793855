#!/usr/bin/env bash
# Build rewind in release mode, then run the shared peer benchmark
# (shared/bench/peers.sh, found by scripts/bench-lib.sh; see README.md next
# to it) from the project root.
#
#   scripts/bench-peers.sh                                  # full run, ~15 min
#   BENCH_SMALL=1 TOOLS="rewind restic" scripts/bench-peers.sh   # quick run
#
# BENCH_SMALL, TOOLS, REF, BENCH_WORK and the other peers.sh settings pass
# through the environment unchanged. PEERS_SH overrides the script's path
# (REWIND_SHARED the shared folder's) and REWIND_BIN the binary's. peers.sh wants root (drop_caches, FUSE).
# Ends with the measured: line of scripts/bench-lib.sh.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
peers=${PEERS_SH:-$(shared_dir)/bench/peers.sh}
work=${BENCH_WORK:-/tmp/bench-work}
cd "$root"

[ -x "$peers" ] || { echo "bench-peers: $peers not found or not executable" >&2; exit 1; }

cargo build --release

# The binary sits in cargo's target dir, which CARGO_TARGET_DIR or a
# .cargo/config may move away from ./target: cargo says where.
if [ -z "${REWIND_BIN:-}" ]; then
  target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  REWIND_BIN=$target/release/rewind
fi
export REWIND_BIN
[ -x "$REWIND_BIN" ] || { echo "bench-peers: no binary at $REWIND_BIN" >&2; exit 1; }

echo "bench-peers: $REWIND_BIN ($("$REWIND_BIN" --version))" \
  "BENCH_SMALL=${BENCH_SMALL:-0} TOOLS=\"${TOOLS:-rewind restic borg squashfs tarzst}\"" \
  "REF=${REF:-restic} BENCH_WORK=$work" >&2

status=0
"$peers" || status=$?

echo
echo "bench-peers: peers.sh exited with status $status"
echo "  table:  $work/results.md"
echo "  values: $work/results.tsv"
echo "  logs:   $work/logs/"
corpus=$work/corpus-full
[ "${BENCH_SMALL:-0}" = 1 ] && corpus=$work/corpus-small
[ -d "$corpus/gen1" ] && machine_line "$(basename "$corpus")/gen1, $(corpus_size "$corpus/gen1")"
exit "$status"
