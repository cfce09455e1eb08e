#!/usr/bin/env bash
# End-to-end ingest benchmark: gdq against the decompression floor (zcat) and DuckDB's flat
# COPY of the same files, in the same run, interleaved, on a corpus made by
# testdata/gen_findings.py. Prints a Markdown table of medians and ratios.
#
#   benches/ingest_peers.sh                      # 20k findings, 3 runs
#   FINDINGS=1000000 ACCOUNTS=8 RUNS=3 benches/ingest_peers.sh
#
# Needs: a release build (cargo build --release), /usr/bin/time, and a Python with duckdb
# (the test venv: PYTHON=.venv/bin/python, the default).
set -euo pipefail
cd "$(dirname "$0")/.."

FINDINGS=${FINDINGS:-20000}
ACCOUNTS=${ACCOUNTS:-5}
SEED=${SEED:-1}
RUNS=${RUNS:-3}
PEERS=${PEERS:-"zcat duckdb"}
PYTHON=${PYTHON:-.venv/bin/python}
WORK=${GDQ_BENCH_DIR:-/tmp/gdq-bench}
GDQ=${GDQ:-${CARGO_TARGET_DIR:-target}/release/gdq}
corpus=$WORK/corpus-$FINDINGS-$SEED-$ACCOUNTS
results=$WORK/results-$(date +%Y%m%dT%H%M%S)
mkdir -p "$results"

[[ -x $GDQ ]] || { echo "no release binary at $GDQ: run cargo build --release" >&2; exit 2; }
if [[ ! -d $corpus ]]; then
  python3 testdata/gen_findings.py --findings "$FINDINGS" --seed "$SEED" --accounts "$ACCOUNTS" --out "$corpus" > "$corpus.summary.json"
fi
find "$corpus" -name '*.jsonl.gz' | sort > "$results/files.txt"
files=$(wc -l < "$results/files.txt")
json_bytes=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['uncompressed_bytes'])" "$corpus.summary.json")

# measure LABEL CMD... : appends "label wall_s maxrss_kb" per run
measure() {
  local label=$1; shift
  /usr/bin/time -f "$label %e %M" -a -o "$results/times.txt" "$@" > "$results/$label.out" 2>&1 \
    || { echo "$label failed:"; cat "$results/$label.out"; exit 1; }
}

for ((i = 1; i <= RUNS; i++)); do
  rm -rf "$WORK/wh-gdq"
  measure gdq "$GDQ" --warehouse "$WORK/wh-gdq" ingest "$corpus"
  if [[ " $PEERS " == *" zcat "* ]]; then
    measure zcat sh -c "xargs -a '$results/files.txt' zcat > /dev/null"
  fi
  if [[ " $PEERS " == *" duckdb "* ]]; then
    rm -rf "$WORK/pq-duckdb"
    measure duckdb "$PYTHON" benches/peer_duckdb.py copy-flat "$corpus" "$WORK/pq-duckdb"
  fi
done

parquet_files=$(find "$WORK/wh-gdq/findings" -path '*/type=*' -name '*.parquet' | wc -l)
types=$(find "$WORK/wh-gdq/findings" -mindepth 1 -maxdepth 1 -type d -name 'type=*' | wc -l)
python3 - "$results/times.txt" "$FINDINGS" "$json_bytes" "$files" "$parquet_files" "$types" <<'PY'
import statistics, sys
path, findings, json_bytes, files, pq, types = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
runs = {}
for line in open(path):
    label, wall, rss = line.split()
    runs.setdefault(label, []).append((float(wall), int(rss)))
med = {k: (statistics.median(w for w, _ in v), statistics.median(r for _, r in v)) for k, v in runs.items()}
print(f"corpus: {findings} findings, {files} files, {json_bytes/1e6:.1f} MB of JSON; gdq wrote {pq} Parquet files for {types} types")
print()
print("| step | median wall s | findings/s | MB/s of JSON | peak RSS MiB | gdq ÷ step |")
print("|---|---|---|---|---|---|")
g = med["gdq"][0]
for k in ["gdq", "zcat", "duckdb"]:
    if k in med:
        w, r = med[k]
        print(f"| {k} | {w:.2f} | {findings / w:,.0f} | {json_bytes / 1e6 / w:,.0f} | {r / 1024:.0f} | {g / w:.2f} |")
PY
