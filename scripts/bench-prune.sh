#!/usr/bin/env bash
# bench-prune.sh: 30 daily snapshots of a changing corpus, forget half, prune.
# Compares rewind with restic on the same days, in the same run.
#
#   scripts/bench-prune.sh                 # ~100 MB corpus, 30 days
#   DAYS=10 LINUX_FILES=3000 scripts/bench-prune.sh
#
# Reports, per tool: repository size before, after forget+prune, prune wall time
# and peak RSS; for rewind also the stored bytes that only forgotten snapshots
# used (prune's own accounting) and the share of them freed. Ends with the
# measured: line of scripts/bench-lib.sh.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
cd "$root"
# A directory of this run's own under BENCH_WORK: the only one it deletes.
WORK=$(scratch_dir "${BENCH_WORK:-${TMPDIR:-/tmp}}" bench-prune)
trap 'rm -rf -- "$WORK"' EXIT
DAYS=${DAYS:-30}
LINUX_FILES=${LINUX_FILES:-8000}
MEDIA_BYTES=${MEDIA_BYTES:-30000000}
DUMP_BYTES=${DUMP_BYTES:-20000000}
TARBALL=${LINUX_TARBALL:-/usr/src/linux-source-6.1.tar.xz}
HELPER=${PEERS_HELPER:-$(shared_dir)/bench/peers_helper.py}
cargo build --release -q
REWIND=$(target_dir)/release/rewind
command -v restic >/dev/null || { echo "restic is not installed (apt-get install restic)"; exit 1; }
[ -f "$TARBALL" ] || { echo "need $TARBALL (apt-get install linux-source-6.1)"; exit 1; }

LIVE=$WORK/live
echo "building the corpus in $LIVE"
python3 "$HELPER" linux-head "$TARBALL" "$LIVE/linux" "$LINUX_FILES" 100000000000 >/dev/null
python3 "$HELPER" site "$LIVE/site" "$MEDIA_BYTES" "$DUMP_BYTES" >/dev/null

# One day of changes: 2% of source files edited, a few added and removed,
# 3 uploads replaced, ~1% of dump rows changed in place and 1% appended.
mutate() {
  python3 - "$LIVE" "$1" <<'PY'
import os, random, sys
root, day = sys.argv[1], int(sys.argv[2])
rng = random.Random(1000 + day)
files = []
for d, _, fs in os.walk(os.path.join(root, "linux")):
    files += [os.path.join(d, f) for f in fs if not os.path.islink(os.path.join(d, f))]
files.sort()
for p in rng.sample(files, max(1, len(files) // 50)):
    with open(p, "ab") as f:
        f.write(b"/* day %d */\n" % day)
for p in rng.sample(files, 10):
    os.unlink(p)
for k in range(10):
    with open(os.path.join(os.path.dirname(rng.choice(files)), "day%d_%d.c" % (day, k)), "w") as f:
        f.write("int day%d_%d(void) { return %d; }\n" % (day, k, rng.random() * 1e9) * rng.randint(5, 500))
media = []
for d, _, fs in os.walk(os.path.join(root, "site", "media")):
    media += [os.path.join(d, f) for f in fs]
media.sort()
for p in rng.sample(media, min(3, len(media))):
    os.unlink(p)
    with open(p + ".day%d" % day, "wb") as f:
        f.write(rng.randbytes(rng.randint(50_000, 2_000_000)))
dump = os.path.join(root, "site", "db", "dump.sql")
lines = open(dump, "rb").read().split(b"\n")
n = len(lines)
for i in rng.sample(range(n // 5, n - n // 5), n // 100):
    lines[i] = lines[i].replace(b"'", b"'~", 1)
lines += [b"INSERT INTO wp_postmeta VALUES (%d, 'day %d');" % (n + i, day) for i in range(n // 100)]
open(dump, "wb").write(b"\n".join(lines))
PY
}

export RESTIC_REPOSITORY=$WORK/restic RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$WORK/restic-cache
restic init -q
"$REWIND" init --repo "$WORK/rewind" >/dev/null
for day in $(seq 1 "$DAYS"); do
  mutate "$day"
  (cd "$LIVE" && "$REWIND" backup --repo "$WORK/rewind" --host bench . >/dev/null)
  (cd "$LIVE" && restic backup -q --host bench --compression auto . >/dev/null)
  printf 'day %d backed up\r' "$day"
done
echo
keep=$((DAYS - DAYS / 2))
size() { du -sb "$1" | cut -f1; }
rw_before=$(size "$WORK/rewind/data"); rs_before=$(size "$WORK/restic/data")
"$REWIND" forget --repo "$WORK/rewind" --keep-last "$keep" >/dev/null
restic forget -q --keep-last "$keep" >/dev/null
drop_caches || true
/usr/bin/time -f '%e %M' -o "$WORK/rewind.time" "$REWIND" prune --repo "$WORK/rewind" --json > "$WORK/rewind-prune.json"
drop_caches || true
/usr/bin/time -f '%e %M' -o "$WORK/restic.time" restic prune -q > "$WORK/restic-prune.log"
rw_after=$(size "$WORK/rewind/data"); rs_after=$(size "$WORK/restic/data")
read -r rw_s rw_kib < "$WORK/rewind.time"; read -r rs_s rs_kib < "$WORK/restic.time"
"$REWIND" check --repo "$WORK/rewind" --read-data >/dev/null && rw_check=ok || rw_check=FAIL
python3 - "$WORK/rewind-prune.json" <<PY
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{'':24}{'rewind':>14}{'restic':>14}")
print(f"{'data before (bytes)':24}{$rw_before:>14}{$rs_before:>14}")
print(f"{'data after (bytes)':24}{$rw_after:>14}{$rs_after:>14}")
print(f"{'prune wall (s)':24}{$rw_s:>14}{$rs_s:>14}   ratio {$rw_s / max($rs_s, 0.01):.2f}x")
print(f"{'prune peak RSS (MiB)':24}{$rw_kib / 1024:>14.1f}{$rs_kib / 1024:>14.1f}")
unused = r['bytes_unused']
print(f"rewind: {unused} stored bytes only forgotten snapshots used; freed {r['bytes_freed']} "
      f"({100 * r['bytes_freed'] / max(unused, 1):.1f}%); check --read-data: $rw_check")
PY
machine_line "$DAYS days of $LIVE, $(corpus_size "$LIVE") on the last"
